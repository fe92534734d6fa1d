package api

import (
	"bytes"
	"cmp"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/incidents"
)

// Collection ids: fixed UUIDv4 constants, exposed in collection URLs.
const (
	IncidentsCollectionID  = "760bc5d0-18c6-44d3-a2b9-53fca5222b27"
	IndicatorsCollectionID = "362425bd-b375-4e28-bca5-bac50383a487"
)

type colKind int

const (
	colIncidents colKind = iota
	colIndicators
	numCollections
)

type collectionInfo struct {
	ID, Alias, Title, Description string
}

// collectionInfos lists the collections in their fixed order.
var collectionInfos = [numCollections]collectionInfo{
	colIncidents: {
		ID: IncidentsCollectionID, Alias: "pcapot-incidents", Title: "pcapot-incidents",
		Description: "Every STIX 2.1 object of every ICS honeypot session: incident, observed-data, network-traffic, addresses, " +
			"pcap artifact (URL and SHA-256), indicator, sighting, relationships, sensor identity and the pcapot ICS extension.",
	},
	colIndicators: {
		ID: IndicatorsCollectionID, Alias: "pcapot-indicators", Title: "pcapot-indicators",
		Description: "Indicators of ICS honeypot attackers (their addresses), the sensors' sightings of them and the " +
			"identities these reference, for SIEMs that ingest indicators.",
	},
}

// source locates one object: its bundle (index in index.bundles) and position in the
// bundle's objects.
type source struct {
	bundle, pos int32
}

// entry is one (object, version) of a collection.
type entry struct {
	added int64 // date_added, µs since the Unix epoch
	verNS int64 // version as ns since the epoch (date_added for unversioned objects)
	id    string
	// version is the object's modified (or created) value as stored; "" when the
	// object is unversioned (SCOs).
	version string
	spec    string
	src     source
}

func (e *entry) typ() string {
	t, _, _ := strings.Cut(e.id, "--")
	return t
}

// versionString is the manifest version: modified/created, or date_added for
// unversioned objects (TAXII: "a value consistent to the server").
func (e *entry) versionString() string {
	if e.version != "" {
		return e.version
	}
	return formatMicros(e.added)
}

type dedupKey struct {
	id    string
	verNS int64 // 0 for unversioned objects
}

// collection is the sealed content of one collection, in date_added order.
type collection struct {
	entries   []entry
	byID      map[string][]int32 // entry indices by object id, ordered by version, then date_added
	alts      map[dedupKey][]source
	keys      map[dedupKey]int32
	lastAdded int64
}

func newCollection() *collection {
	return &collection{byID: map[string][]int32{}, alts: map[dedupKey][]source{}, keys: map[dedupKey]int32{}}
}

func (c *collection) key(o *parsedObject) dedupKey {
	if o.version == "" {
		return dedupKey{id: o.id}
	}
	return dedupKey{id: o.id, verNS: o.verNS}
}

// add appends object o found at src, with date_added = max(floor, last + 1 µs). A
// version already in the collection only records src as an alternative source.
func (c *collection) add(o *parsedObject, src source, floor int64) {
	k := c.key(o)
	if _, dup := c.keys[k]; dup {
		c.alts[k] = append(c.alts[k], src)
		return
	}
	e := entry{added: max(floor, c.lastAdded+1), verNS: o.verNS, id: o.id, version: o.version, spec: o.spec, src: src}
	if e.version == "" {
		e.verNS = e.added * 1000
	}
	c.lastAdded = e.added
	c.entries = append(c.entries, e)
	i := int32(len(c.entries) - 1)
	c.keys[k] = i
	ids := c.byID[e.id]
	at, _ := slices.BinarySearchFunc(ids, i, func(a, b int32) int {
		return cmp.Or(cmp.Compare(c.entries[a].verNS, c.entries[b].verNS), cmp.Compare(c.entries[a].added, c.entries[b].added))
	})
	c.byID[e.id] = slices.Insert(ids, at, i)
}

// dropBundles removes the sources in gone bundles: an entry whose bundle is gone moves
// to its next source (keeping its date_added) or leaves the collection.
func (c *collection) dropBundles(gone map[int32]bool) (removed int) {
	keep := c.entries[:0:0]
	for _, e := range c.entries {
		k := dedupKey{id: e.id}
		if e.version != "" {
			k.verNS = e.verNS
		}
		alts := slices.DeleteFunc(c.alts[k], func(s source) bool { return gone[s.bundle] })
		if gone[e.src.bundle] {
			if len(alts) == 0 {
				delete(c.alts, k)
				removed++
				continue
			}
			e.src, alts = alts[0], alts[1:]
		}
		if len(alts) == 0 {
			delete(c.alts, k)
		} else {
			c.alts[k] = alts
		}
		keep = append(keep, e)
	}
	c.entries = keep
	c.byID = map[string][]int32{}
	c.keys = map[dedupKey]int32{}
	for i := range c.entries {
		e := &c.entries[i]
		k := dedupKey{id: e.id}
		if e.version != "" {
			k.verNS = e.verNS
		}
		c.keys[k] = int32(i)
		c.byID[e.id] = append(c.byID[e.id], int32(i))
	}
	for _, ids := range c.byID {
		slices.SortFunc(ids, func(a, b int32) int {
			return cmp.Or(cmp.Compare(c.entries[a].verNS, c.entries[b].verNS), cmp.Compare(c.entries[a].added, c.entries[b].added))
		})
	}
	return removed
}

// after returns the index of the first entry with date_added > us.
func (c *collection) after(us int64) int {
	i, _ := slices.BinarySearchFunc(c.entries, us+1, func(e entry, t int64) int { return cmp.Compare(e.added, t) })
	return i
}

type bundleRef struct {
	key   string
	mtime time.Time
	gone  bool
}

// IndexStats describes the index.
type IndexStats struct {
	// Bundles indexed, Objects per collection (incidents, indicators).
	Bundles                     int
	IncidentObjects, Indicators int
	// Late counts bundles that appeared after their modification time was sealed (see
	// the package documentation); Skipped counts bundles or objects that could not be
	// indexed (not a STIX bundle, bad SHA-256, malformed object).
	Late, Skipped int
	// Horizon is the time of the last successful refresh: every bundle whose
	// modification time plus the visibility delay is before it is indexed.
	Horizon time.Time
	// LastRefresh is when the last successful refresh started.
	LastRefresh time.Time
}

// index is the in-memory index of the store's bundles. It is rebuilt from the store at
// start and refreshed incrementally; see the package documentation for the order.
type index struct {
	store incidents.Store
	delay time.Duration
	now   func() time.Time
	log   *slog.Logger
	cache *bundleCache

	refreshMu sync.Mutex // one refresh at a time

	mu          sync.RWMutex // guards the fields below
	bundles     []bundleRef
	known       map[string]int32
	bad         map[string]bool
	horizon     time.Time
	cols        [numCollections]*collection
	built       bool
	lastRefresh time.Time
	lastTry     time.Time
	late        int
	skipped     int
}

func newIndex(store incidents.Store, delay time.Duration, cacheBytes int64, now func() time.Time, log *slog.Logger) *index {
	x := &index{store: store, delay: delay, now: now, log: log, cache: newBundleCache(cacheBytes),
		known: map[string]int32{}, bad: map[string]bool{}}
	for i := range x.cols {
		x.cols[i] = newCollection()
	}
	return x
}

// isBundleKey reports whether key names a session bundle.
func isBundleKey(key string) bool {
	return strings.HasSuffix(key, ".json") && incidents.ValidKey(key) == nil
}

// errTransient marks refresh failures worth retrying (store unreachable).
var errTransient = errors.New("store unavailable")

type fetched struct {
	ref  bundleRef
	eff  time.Time // mtime + delay, or the refresh time for a late bundle
	late bool
	objs []parsedObject
}

// refresh indexes the bundles that became old enough: those whose mtime + delay is
// before the time sampled when the refresh starts, after the lock and before the
// listing (see the package documentation). A refresh that started after `since` (a
// caller's arrival) already did the work, and a caller that waited for it returns.
func (x *index) refresh(ctx context.Context, since time.Time) error {
	x.refreshMu.Lock()
	defer x.refreshMu.Unlock()
	x.mu.RLock()
	done := x.built && !x.lastRefresh.Before(since)
	x.mu.RUnlock()
	if done {
		return nil
	}
	now := x.now()
	list, err := x.store.List(ctx, "")
	if err != nil {
		x.mu.Lock()
		x.lastTry = now
		x.mu.Unlock()
		return fmt.Errorf("api: index: list store: %w: %w", errTransient, err)
	}
	x.mu.RLock()
	horizon := x.horizon
	present := make(map[string]bool, len(list))
	var todo []fetched
	for _, o := range list {
		if !isBundleKey(o.Key) {
			continue
		}
		present[o.Key] = true
		if _, ok := x.known[o.Key]; ok || x.bad[o.Key] {
			continue
		}
		base := o.Modified.Add(x.delay)
		if !base.Before(now) {
			continue // not sealed yet
		}
		f := fetched{ref: bundleRef{key: o.Key, mtime: o.Modified}, eff: base}
		if x.built && base.Before(horizon) {
			f.late, f.eff = true, now
		}
		todo = append(todo, f)
	}
	var gone []int32
	for key, i := range x.known {
		if !present[key] && !x.bundles[i].gone {
			gone = append(gone, i)
		}
	}
	x.mu.RUnlock()

	// Fetch outside the lock, a few at a time.
	var (
		wg      sync.WaitGroup
		sem     = make(chan struct{}, 4)
		errMu   sync.Mutex
		fetchEr error
		badKeys = map[string]string{}
	)
	for i := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func(f *fetched) {
			defer func() { <-sem; wg.Done() }()
			body, _, err := x.store.Get(ctx, f.ref.key)
			var objs []parsedObject
			var raw []json.RawMessage
			if err == nil {
				objs, raw, err = parseBundle(body)
				if err == nil {
					x.cache.put(f.ref.key, raw)
				}
			}
			errMu.Lock()
			defer errMu.Unlock()
			switch {
			case err == nil:
				f.objs = objs
			case errors.Is(err, incidents.ErrNotFound):
				badKeys[f.ref.key] = "" // deleted since the listing: forget it
			case errors.Is(err, incidents.ErrHashMismatch), errors.Is(err, errBadBundle), errors.Is(err, incidents.ErrInvalid):
				badKeys[f.ref.key] = err.Error()
			default:
				if fetchEr == nil {
					fetchEr = err
				}
			}
		}(&todo[i])
	}
	wg.Wait()
	if fetchEr != nil {
		// Nothing is applied: the horizon stays, so these bundles are not late later.
		x.mu.Lock()
		x.lastTry = now
		x.mu.Unlock()
		return fmt.Errorf("api: index: %w: %w", errTransient, fetchEr)
	}
	todo = slices.DeleteFunc(todo, func(f fetched) bool { _, bad := badKeys[f.ref.key]; return bad })
	slices.SortFunc(todo, func(a, b fetched) int {
		return cmp.Or(a.eff.Compare(b.eff), a.ref.mtime.Compare(b.ref.mtime), strings.Compare(a.ref.key, b.ref.key))
	})

	x.mu.Lock()
	defer x.mu.Unlock()
	for key, why := range badKeys {
		if why == "" {
			continue
		}
		x.bad[key] = true
		x.skipped++
		x.log.Warn("TAXII index: bundle skipped", "key", key, "err", why)
	}
	if len(gone) > 0 {
		goneSet := map[int32]bool{}
		for _, i := range gone {
			x.bundles[i].gone = true
			goneSet[i] = true
			x.cache.drop(x.bundles[i].key)
			delete(x.known, x.bundles[i].key)
		}
		removed := 0
		for _, c := range x.cols {
			removed += c.dropBundles(goneSet)
		}
		x.log.Info("TAXII index: bundles deleted from the store", "bundles", len(gone), "objects_removed", removed)
	}
	for _, f := range todo {
		bi := int32(len(x.bundles))
		x.bundles = append(x.bundles, f.ref)
		x.known[f.ref.key] = bi
		if f.late {
			x.late++
			x.log.Warn("TAXII index: bundle listed later than its modification time plus the visibility delay; served after everything indexed so far. Raise the API visibility delay if this repeats",
				"key", f.ref.key, "modified", f.ref.mtime, "sealed_until", horizon, "delay", x.delay)
		}
		floor := f.eff.UnixMicro()
		for pos := range f.objs {
			o := &f.objs[pos]
			if o.skip {
				x.skipped++
				continue
			}
			for k, c := range x.cols {
				if o.member[k] {
					c.add(o, source{bundle: bi, pos: int32(pos)}, floor)
				}
			}
		}
	}
	if now.After(x.horizon) {
		x.horizon = now
	}
	x.built = true
	x.lastRefresh, x.lastTry = now, now
	return nil
}

func (x *index) stats() IndexStats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return IndexStats{
		Bundles:         len(x.known),
		IncidentObjects: len(x.cols[colIncidents].entries),
		Indicators:      len(x.cols[colIndicators].entries),
		Late:            x.late,
		Skipped:         x.skipped,
		Horizon:         x.horizon,
		LastRefresh:     x.lastRefresh,
	}
}

// parsedObject is what the index keeps from one object of a bundle.
type parsedObject struct {
	id, version, spec string
	verNS             int64
	member            [numCollections]bool
	skip              bool
}

var errBadBundle = errors.New("not a STIX bundle")

// STIX type names (3-250 characters of a-z, 0-9 and '-') and identifiers.
var (
	typeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,248}[a-z0-9]$`)
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	specRE = regexp.MustCompile(`^[0-9]{1,3}\.[0-9]{1,3}$`)
)

func validID(id string) bool {
	t, u, ok := strings.Cut(id, "--")
	return ok && typeRE.MatchString(t) && uuidRE.MatchString(u)
}

// parseBundle reads a stored bundle: the index data of each object, and each object
// compacted for serving.
func parseBundle(body []byte) ([]parsedObject, []json.RawMessage, error) {
	var b struct {
		Type    string            `json:"type"`
		Objects []json.RawMessage `json:"objects"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errBadBundle, err)
	}
	if b.Type != "bundle" {
		return nil, nil, fmt.Errorf("%w: type %q", errBadBundle, b.Type)
	}
	type header struct {
		Type             string   `json:"type"`
		ID               string   `json:"id"`
		SpecVersion      *string  `json:"spec_version"`
		Created          string   `json:"created"`
		Modified         string   `json:"modified"`
		CreatedByRef     string   `json:"created_by_ref"`
		WhereSightedRefs []string `json:"where_sighted_refs"`
	}
	objs := make([]parsedObject, len(b.Objects))
	raw := make([]json.RawMessage, len(b.Objects))
	heads := make([]header, len(b.Objects))
	referenced := map[string]bool{} // identities referenced by indicators and sightings
	for i, r := range b.Objects {
		var compact bytes.Buffer
		if err := json.Compact(&compact, r); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", errBadBundle, err)
		}
		raw[i] = compact.Bytes()
		h := &heads[i]
		o := &objs[i]
		if err := json.Unmarshal(r, h); err != nil || !typeRE.MatchString(h.Type) || !validID(h.ID) || !strings.HasPrefix(h.ID, h.Type+"--") {
			o.skip = true
			continue
		}
		o.id, o.spec = h.ID, "2.1"
		if h.SpecVersion != nil {
			if !specRE.MatchString(*h.SpecVersion) {
				o.skip = true
				continue
			}
			o.spec = *h.SpecVersion
		}
		switch {
		case h.Modified != "":
			o.version = h.Modified
		case h.Created != "":
			o.version = h.Created
		}
		if o.version != "" {
			t, err := time.Parse(time.RFC3339Nano, o.version)
			if err != nil {
				o.skip = true
				continue
			}
			o.verNS = t.UnixNano()
		}
		o.member[colIncidents] = true
		if h.Type == "indicator" || h.Type == "sighting" {
			o.member[colIndicators] = true
			referenced[h.CreatedByRef] = true
			for _, r := range h.WhereSightedRefs {
				referenced[r] = true
			}
		}
	}
	for i := range objs {
		if !objs[i].skip && heads[i].Type == "identity" && referenced[heads[i].ID] {
			objs[i].member[colIndicators] = true
		}
	}
	return objs, raw, nil
}

// bundleCache keeps the compacted objects of recently used bundles, bounded in bytes.
type bundleCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	order *list.List // front: most recently used
	items map[string]*list.Element
}

type cacheItem struct {
	key  string
	objs []json.RawMessage
	size int64
}

func newBundleCache(maxBytes int64) *bundleCache {
	return &bundleCache{max: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

func (c *bundleCache) get(key string) ([]json.RawMessage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheItem).objs, true
}

func (c *bundleCache) put(key string, objs []json.RawMessage) {
	var size int64
	for _, o := range objs {
		size += int64(len(o)) + 24
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if size > c.max {
		return
	}
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&cacheItem{key: key, objs: objs, size: size})
	c.size += size
	for c.size > c.max {
		el := c.order.Back()
		it := el.Value.(*cacheItem)
		c.order.Remove(el)
		delete(c.items, it.key)
		c.size -= it.size
	}
}

func (c *bundleCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.order.Remove(el)
		delete(c.items, key)
		c.size -= el.Value.(*cacheItem).size
	}
}

// object returns the compacted JSON of the object at src, fetching its bundle from the
// store when it is not cached. The object must still have id (keys never change
// content; a mismatch means the bucket was altered behind the store's back).
func (x *index) object(ctx context.Context, src source, id string) (json.RawMessage, error) {
	x.mu.RLock()
	if int(src.bundle) >= len(x.bundles) {
		x.mu.RUnlock()
		return nil, fmt.Errorf("api: bundle %d not indexed", src.bundle)
	}
	key := x.bundles[src.bundle].key
	x.mu.RUnlock()
	objs, ok := x.cache.get(key)
	if !ok {
		body, _, err := x.store.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if _, objs, err = parseBundle(body); err != nil {
			return nil, fmt.Errorf("api: bundle %s: %w", key, err)
		}
		x.cache.put(key, objs)
	}
	if int(src.pos) >= len(objs) {
		return nil, fmt.Errorf("api: bundle %s changed: object %d missing", key, src.pos)
	}
	var h struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(objs[src.pos], &h); err != nil || h.ID != id {
		return nil, fmt.Errorf("api: bundle %s changed: object %d is not %s", key, src.pos, id)
	}
	return objs[src.pos], nil
}

// formatMicros formats µs since the epoch as a TAXII timestamp (microseconds, Z).
func formatMicros(us int64) string {
	return time.UnixMicro(us).UTC().Format("2006-01-02T15:04:05.000000Z")
}
