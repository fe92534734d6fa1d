package api

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/pcapot/pcapot/incidents"
)

// serveFiltered answers the objects, object, versions and manifest endpoints.
func (s *Server) serveFiltered(w http.ResponseWriter, r *http.Request, rt route, principal string) {
	req, err := parseQuery(r.URL.RawQuery, rt.endpoint)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	q := &req.q
	var pos *int64
	if req.next != "" {
		tok, err := openToken(s.key, req.next, s.cfg.Now(), s.cfg.NextTTL)
		switch {
		case errors.Is(err, errTokenMalformed):
			s.fail(w, http.StatusBadRequest, "Bad request", "next: "+err.Error())
			return
		case err != nil && q.AddedAfter != nil:
			// OpenCTI re-sends its last next with a new added_after on every run; a
			// token from before a restart must not wedge it.
			s.log.Info("ignoring a next token that does not verify; added_after applies", "err", err)
		case err != nil:
			s.fail(w, http.StatusBadRequest, "Bad request", "next: "+err.Error()+"; start again without next")
			return
		case tok.Endpoint != rt.endpoint || tok.Coll != collectionInfos[rt.coll].ID || tok.Object != rt.object:
			s.fail(w, http.StatusBadRequest, "Bad request", "next: the token belongs to another endpoint, collection or object")
			return
		case tok.Principal != principalTag(principal):
			s.fail(w, http.StatusForbidden, "Forbidden", "next: the token was issued to another client")
			return
		default:
			limit := q.Limit
			*q = tok.Query
			if req.limitGiven {
				q.Limit = limit
			}
			pos = &tok.Pos
		}
	}
	limit := q.Limit
	if limit == 0 {
		limit = s.cfg.PageSize
	}
	limit = min(limit, s.cfg.MaxPageSize)
	q.Limit = limit

	if err := s.ensureFresh(r.Context(), pos == nil); err != nil {
		w.Header().Set("Retry-After", "5")
		s.fail(w, http.StatusServiceUnavailable, "Store unavailable", "The object store cannot be read; try again later.")
		s.log.Error("TAXII index unavailable", "err", err)
		return
	}
	lower, hasLower := lowerBound(q, pos)

	s.idx.mu.RLock()
	c := s.idx.cols[rt.coll]
	exists := rt.object == "" || len(c.byID[rt.object]) > 0
	page, more := selectEntries(c, rt, q, lower, hasLower, limit)
	s.idx.mu.RUnlock()
	var lastSelected int64 // the token position: after every entry selected
	if len(page) > 0 {
		lastSelected = page[len(page)-1].added
	}
	if !exists {
		s.fail(w, http.StatusNotFound, "Not found", "No object "+rt.object+" in collection "+collectionInfos[rt.coll].Title+".")
		return
	}

	var objects []json.RawMessage
	if rt.endpoint == epObjects || rt.endpoint == epObject {
		kept := page[:0]
		for _, e := range page {
			obj, err := s.idx.object(r.Context(), e.src, e.id)
			if errors.Is(err, incidents.ErrNotFound) {
				continue // its bundle was deleted since the last refresh
			}
			if err != nil {
				w.Header().Set("Retry-After", "5")
				s.fail(w, http.StatusServiceUnavailable, "Store unavailable", "An object could not be read from the store; try again later.")
				s.log.Error("TAXII object read", "id", e.id, "err", err)
				return
			}
			objects = append(objects, obj)
			kept = append(kept, e)
		}
		page = kept
	}

	h := w.Header()
	switch {
	case len(page) > 0:
		h.Set("X-TAXII-Date-Added-First", formatMicros(page[0].added))
		h.Set("X-TAXII-Date-Added-Last", formatMicros(page[len(page)-1].added))
	default:
		// An empty page: the headers repeat the query's lower bound (the Unix epoch
		// when it has none), the cursor a client must keep.
		h.Set("X-TAXII-Date-Added-First", formatMicros(lower))
		h.Set("X-TAXII-Date-Added-Last", formatMicros(lower))
	}

	var next string
	if more {
		next, err = sealToken(s.key, &token{
			V: tokenVersion, Endpoint: rt.endpoint, Coll: collectionInfos[rt.coll].ID, Object: rt.object,
			Principal: principalTag(principal), Pos: lastSelected, Issued: s.cfg.Now().Unix(), Query: *q,
		})
		if err != nil {
			s.fail(w, http.StatusInternalServerError, "Internal error", "")
			return
		}
	}

	var body bytes.Buffer
	body.WriteString(`{"more":`)
	body.WriteString(strconv.FormatBool(more))
	if more {
		b, _ := json.Marshal(next)
		body.WriteString(`,"next":`)
		body.Write(b)
	}
	switch rt.endpoint {
	case epObjects, epObject:
		if len(objects) > 0 || s.cfg.EmptyObjectsList {
			body.WriteString(`,"objects":[`)
			for i, o := range objects {
				if i > 0 {
					body.WriteByte(',')
				}
				body.Write(o)
			}
			body.WriteByte(']')
		}
	case epManifest:
		if len(page) > 0 {
			recs := make([]manifestRecord, len(page))
			for i, e := range page {
				recs[i] = manifestRecord{ID: e.id, DateAdded: formatMicros(e.added), Version: e.versionString(), MediaType: STIXMediaType}
			}
			b, _ := json.Marshal(recs)
			body.WriteString(`,"objects":`)
			body.Write(b)
		}
	case epVersions:
		if len(page) > 0 {
			vers := make([]string, len(page))
			for i, e := range page {
				vers[i] = e.versionString()
			}
			b, _ := json.Marshal(vers)
			body.WriteString(`,"versions":`)
			body.Write(b)
		}
	}
	body.WriteByte('}')
	h.Set("Content-Type", TAXIIMediaType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body.Bytes())
}

type manifestRecord struct {
	ID        string `json:"id"`
	DateAdded string `json:"date_added"`
	Version   string `json:"version"`
	MediaType string `json:"media_type"`
}

// selectEntries returns up to limit entries of c matching q with date_added above the
// lower bound, in date_added order, and whether more match. The caller holds the
// index's read lock.
func selectEntries(c *collection, rt route, q *query, lower int64, hasLower bool, limit int) ([]entry, bool) {
	match := func(i int32) bool {
		e := &c.entries[i]
		if hasLower && e.added <= lower {
			return false
		}
		if len(q.Types) > 0 && !slices.Contains(q.Types, e.typ()) {
			return false
		}
		versions := c.byID[e.id]
		if len(q.Specs) > 0 {
			if !slices.Contains(q.Specs, e.spec) {
				return false
			}
		} else if e.spec != latestSpec(c, versions) {
			return false
		}
		if rt.endpoint == epVersions {
			return true // every version is listed
		}
		isFirst, isLast := versions[0] == i, versions[len(versions)-1] == i
		if len(q.Versions) == 0 {
			return isLast
		}
		ns := strconv.FormatInt(e.verNS, 10)
		for _, v := range q.Versions {
			switch v {
			case "all":
				return true
			case "first":
				if isFirst {
					return true
				}
			case "last":
				if isLast {
					return true
				}
			default:
				if v == ns {
					return true
				}
			}
		}
		return false
	}

	var out []entry
	take := func(i int32) bool {
		if match(i) {
			out = append(out, c.entries[i])
		}
		return len(out) > limit
	}
	var ids []string
	switch {
	case rt.object != "":
		ids = []string{rt.object}
	case len(q.IDs) > 0:
		ids = q.IDs
	}
	if ids != nil {
		var cand []int32
		for _, id := range ids {
			cand = append(cand, c.byID[id]...)
		}
		slices.SortFunc(cand, func(a, b int32) int { return cmp.Compare(c.entries[a].added, c.entries[b].added) })
		for _, i := range cand {
			if take(i) {
				break
			}
		}
	} else {
		start := 0
		if hasLower {
			start = c.after(lower)
		}
		for i := start; i < len(c.entries); i++ {
			if take(int32(i)) {
				break
			}
		}
	}
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

// latestSpec returns the highest spec_version among an object's versions.
func latestSpec(c *collection, versions []int32) string {
	best := ""
	for _, i := range versions {
		if s := c.entries[i].spec; best == "" || compareSpec(s, best) > 0 {
			best = s
		}
	}
	return best
}

// compareSpec compares "major.minor" spec versions numerically.
func compareSpec(a, b string) int {
	am, an := splitSpec(a)
	bm, bn := splitSpec(b)
	return cmp.Or(cmp.Compare(am, bm), cmp.Compare(an, bn))
}

func splitSpec(s string) (int, int) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			major, _ := strconv.Atoi(s[:i])
			minor, _ := strconv.Atoi(s[i+1:])
			return major, minor
		}
	}
	major, _ := strconv.Atoi(s)
	return major, 0
}
