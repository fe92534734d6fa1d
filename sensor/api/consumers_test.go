package api

// Clients that behave as the real TAXII consumers do (shared/reference/stix-taxii.md
// §5.2), reimplemented from their source: taxii2-client (OASIS cti-taxii-client, v21),
// the OpenCTI taxii2 connector, Elastic's ti_custom CEL program and Microsoft
// Sentinel's TAXII connector.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ---- taxii2-client (taxii2client/common.py, taxii2client/v21/__init__.py) ----

type taxii2Client struct {
	c *client
}

// validContentType is taxii2-client's check: every ';'-token of the Accept value must
// be a token of the Content-Type (spaces removed), and the first must be the TAXII type.
func validContentType(contentType, accept string) bool {
	at := strings.Split(strings.ReplaceAll(accept, " ", ""), ";")
	ct := strings.Split(strings.ReplaceAll(contentType, " ", ""), ";")
	for _, a := range at {
		found := false
		for _, c := range ct {
			found = found || a == c
		}
		if !found {
			return false
		}
	}
	return ct[0] == "application/taxii+json"
}

// get is _HTTPConnection.get: Accept defaults to the TAXII 2.1 type, raise_for_status,
// then the content-type check.
func (x *taxii2Client) get(u string, params url.Values) (map[string]any, http.Header, error) {
	resp, body := x.c.get(u, params)
	if resp.StatusCode >= 400 {
		return nil, resp.Header, fmt.Errorf("HTTPError %d: %s", resp.StatusCode, body)
	}
	if !validContentType(resp.Header.Get("Content-Type"), x.c.accept) {
		return nil, resp.Header, fmt.Errorf("TAXIIServiceException: Unexpected Response. Got Content-Type: %q for Accept: %q", resp.Header.Get("Content-Type"), x.c.accept)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, resp.Header, fmt.Errorf("InvalidJSONError: %w", err)
	}
	return m, resp.Header, nil
}

// formatDatetime is taxii2client.common._format_datetime for a datetime without a
// precision attribute: seconds, plus the microseconds with trailing zeros stripped.
func formatDatetime(t time.Time) string {
	t = t.UTC()
	s := t.Format("2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us > 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%06d", us), "0")
	}
	return s + "Z"
}

// filterParams is _filter_kwargs_to_query_params: falsy values (0, "", nil) are left
// out; every other keyword but added_after, limit and next becomes match[<kw>].
func filterParams(kw map[string]any) url.Values {
	q := url.Values{}
	for k, v := range kw {
		switch v := v.(type) {
		case nil:
			continue
		case string:
			if v == "" {
				continue
			}
			switch k {
			case "added_after", "next":
				q.Set(k, v)
			default:
				q.Set("match["+k+"]", v)
			}
		case int:
			if v == 0 {
				continue
			}
			q.Set(k, strconv.Itoa(v))
		case time.Time:
			q.Set(k, formatDatetime(v))
		}
	}
	return q
}

type taxii2Collection struct {
	x    *taxii2Client
	url  string
	info map[string]any
}

// collections walks Server(discovery).api_roots -> ApiRoot.collections, with
// Collection._validate_collection (required fields, id in the URL).
func (x *taxii2Client) collections(discovery string) ([]*taxii2Collection, error) {
	d, _, err := x.get(discovery, nil)
	if err != nil {
		return nil, err
	}
	base, _ := url.Parse(discovery)
	var out []*taxii2Collection
	roots, _ := d["api_roots"].([]any)
	for _, r := range roots {
		ref, err := url.Parse(r.(string))
		if err != nil {
			return nil, err
		}
		rootURL := base.ResolveReference(ref).String() // urlparse.urljoin
		if !strings.HasSuffix(rootURL, "/") {
			rootURL += "/"
		}
		info, _, err := x.get(rootURL, nil)
		if err != nil {
			return nil, err
		}
		if _, ok := info["title"]; !ok {
			return nil, errors.New("ValidationError: no title in API root")
		}
		cs, _, err := x.get(rootURL+"collections/", nil)
		if err != nil {
			return nil, err
		}
		list, _ := cs["collections"].([]any)
		for _, c := range list {
			ci := c.(map[string]any)
			col := &taxii2Collection{x: x, url: rootURL + "collections/" + str(ci["id"]) + "/", info: ci}
			for _, f := range []string{"id", "title", "can_read", "can_write"} {
				if _, ok := ci[f]; !ok {
					return nil, fmt.Errorf("ValidationError: No '%s' in Collection", f)
				}
			}
			if !strings.Contains(col.url, str(ci["id"])) {
				return nil, fmt.Errorf("ValidationError: The collection '%s' does not match the url for queries '%s'", ci["id"], col.url)
			}
			out = append(out, col)
		}
	}
	return out, nil
}

func (c *taxii2Collection) getObjects(kw map[string]any) (map[string]any, http.Header, error) {
	if c.info["can_read"] != true {
		return nil, nil, errors.New("AccessError")
	}
	return c.x.get(c.url+"objects/", filterParams(kw))
}

func (c *taxii2Collection) getManifest(kw map[string]any) (map[string]any, http.Header, error) {
	return c.x.get(c.url+"manifest/", filterParams(kw))
}

// asPages is taxii2client.v21.as_pages, which keeps calling while "more" is true,
// with next=envelope.get("next", "") (an empty next is then left out of the query).
// It gives up after maxPages, which a real client never does.
func asPages(fn func(map[string]any) (map[string]any, http.Header, error), perRequest int, filters map[string]any, maxPages int, page func(map[string]any, http.Header)) error {
	kw := func(extra map[string]any) map[string]any {
		m := map[string]any{}
		for k, v := range filters {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	env, hdr, err := fn(kw(map[string]any{"limit": perRequest}))
	if err != nil {
		return err
	}
	page(env, hdr)
	objs, _ := env["objects"].([]any)
	if env["more"] == true && len(objs) != perRequest {
		perRequest = len(objs)
	}
	for n := 1; env["more"] == true; n++ {
		if n >= maxPages {
			return fmt.Errorf("as_pages still going after %d pages (more:true without next loops forever)", n)
		}
		env, hdr, err = fn(kw(map[string]any{"limit": perRequest, "next": str(env["next"])}))
		if err != nil {
			return err
		}
		page(env, hdr)
	}
	return nil
}

// ---- OpenCTI connector (external-import/taxii2: connector.py, client_taxii.py) ----

type openCTI struct {
	x         *taxii2Client
	discovery string
	root      string // "<root>.<title>" configuration, split on "."
	title     string
	filters   map[string]any // kept across runs, as the connector's self.filters
	lastRun   *time.Time
	history   time.Duration
	limit     int
}

// run is Connector.process_message + Taxii2.poll for one configured collection.
func (o *openCTI) run() ([]map[string]any, error) {
	now := time.Now().UTC()
	if o.filters == nil {
		o.filters = map[string]any{}
	}
	if o.limit > 0 {
		o.filters["limit"] = o.limit
	}
	if o.lastRun != nil {
		// datetime.fromtimestamp(last_run).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), last_run
		// being int(now.timestamp()): whole seconds.
		o.filters["added_after"] = time.Unix(o.lastRun.Unix(), 0).UTC().Format("2006-01-02T15:04:05.000000Z")
	} else {
		o.filters["added_after"] = now.Add(-o.history)
	}
	cols, err := o.x.collections(o.discovery)
	if err != nil {
		return nil, err
	}
	var coll *taxii2Collection
	for _, c := range cols {
		// _get_root: root.url.split("/")[-2] == root_path; _get_collection: by title.
		parts := strings.Split(strings.TrimSuffix(c.url, "collections/"+str(c.info["id"])+"/"), "/")
		if len(parts) >= 2 && parts[len(parts)-2] == o.root && c.info["title"] == o.title {
			coll = c
		}
	}
	if coll == nil {
		return nil, fmt.Errorf("collection %s.%s not found", o.root, o.title)
	}
	var objects []map[string]any
	resp, _, err := coll.getObjects(o.filters)
	if err != nil {
		return nil, err
	}
	list, _ := resp["objects"].([]any)
	if len(list) == 0 {
		o.lastRun = &now
		return nil, nil
	}
	if sv := str(list[0].(map[string]any)["spec_version"]); sv != "2.1" {
		return nil, fmt.Errorf("first object has spec_version %q: the connector would page the TAXII 2.0 way", sv)
	}
	for pages := 1; ; pages++ {
		list, _ = resp["objects"].([]any)
		for _, v := range list {
			objects = append(objects, v.(map[string]any))
		}
		if resp["more"] != true {
			break
		}
		if pages > 10000 {
			return nil, errors.New("connector loops forever: more:true without next")
		}
		if next, ok := resp["next"]; ok {
			delete(o.filters, "added_after")
			o.filters["next"] = next
			if resp, _, err = coll.getObjects(o.filters); err != nil {
				return nil, err
			}
		}
	}
	o.lastRun = &now
	return objects, nil
}

// ---- Elastic ti_custom (data_stream/indicator/agent/stream/cel.yml.hbs) ----

type elastic struct {
	c               *client
	url             string // the collection's objects URL
	apiKey          string
	limit           int
	initialInterval time.Duration
	cursor          map[string]string // state.cursor, persisted between intervals
}

var errCEL = errors.New("CEL evaluation error")

// interval runs the CEL program until want_more is false, as one interval does.
func (e *elastic) interval() ([]map[string]any, error) {
	e.c.auth = func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+e.apiKey) }
	base := strings.TrimRight(e.url, "/") + "/?"
	q := url.Values{}
	if ts, ok := e.cursor["last_timestamp"]; ok {
		q.Set("added_after", ts)
	} else {
		q.Set("added_after", time.Now().Add(-e.initialInterval).UTC().Format(time.RFC3339)) // seconds
	}
	if e.limit > 0 {
		q.Set("limit", strconv.Itoa(e.limit))
	}
	reqURL := base + q.Encode()
	var events []map[string]any
	for pages := 0; ; pages++ {
		if pages > 10000 {
			return events, errors.New("CEL program loops forever")
		}
		resp, body := e.c.get(reqURL, nil)
		if resp.StatusCode != 200 && resp.StatusCode != 206 {
			return events, fmt.Errorf("GET: %d %s", resp.StatusCode, body)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return events, err
		}
		list, ok := m["objects"].([]any) // body.objects.map(...): no such key is an error
		if !ok {
			return events, fmt.Errorf("%w: no such key: objects", errCEL)
		}
		for _, v := range list {
			events = append(events, v.(map[string]any))
		}
		next := str(m["next"])
		// "cursor": {?"last_timestamp": resp.Header[?"X-Taxii-Date-Added-Last"][0]}:
		// the cursor is replaced, and loses last_timestamp when the header is absent.
		e.cursor = map[string]string{}
		if h := resp.Header.Get("X-TAXII-Date-Added-Last"); h != "" {
			e.cursor["last_timestamp"] = h
		}
		if next == "" {
			return events, nil
		}
		nq := url.Values{"next": {next}}
		if e.limit > 0 {
			nq.Set("limit", strconv.Itoa(e.limit))
		}
		reqURL = base + nq.Encode()
	}
}

// ---- Microsoft Sentinel "Threat Intelligence - TAXII" connector ----

type sentinel struct {
	c            *client
	apiRoot      string
	collectionID string
	lookback     time.Duration
	lastAdded    string
}

// poll is one polling cycle: API root and collection checks, then the objects since
// the look-back (first poll) or since the last date_added seen, following next.
func (s *sentinel) poll() ([]map[string]any, error) {
	root, body := s.c.get(s.apiRoot, nil)
	if root.StatusCode != 200 {
		return nil, fmt.Errorf("API root: %d %s", root.StatusCode, body)
	}
	var info struct {
		Versions []string `json:"versions"`
	}
	if err := json.Unmarshal(body, &info); err != nil || !contains(info.Versions, TAXIIMediaType) {
		return nil, fmt.Errorf("API root does not offer TAXII 2.1: %s", body)
	}
	resp, body := s.c.get(s.apiRoot+"collections/"+s.collectionID+"/", nil)
	if resp.StatusCode != 200 || decode(s.c.t, body)["can_read"] != true {
		return nil, fmt.Errorf("collection: %d %s", resp.StatusCode, body)
	}
	q := url.Values{}
	if s.lastAdded == "" {
		q.Set("added_after", time.Now().Add(-s.lookback).UTC().Format("2006-01-02T15:04:05.000Z"))
	} else {
		q.Set("added_after", s.lastAdded)
	}
	var out []map[string]any
	for pages := 0; ; pages++ {
		if pages > 10000 {
			return out, errors.New("loops forever")
		}
		resp, body := s.c.get(s.apiRoot+"collections/"+s.collectionID+"/objects/", q)
		if resp.StatusCode != 200 {
			return out, fmt.Errorf("objects: %d %s", resp.StatusCode, body)
		}
		m := decode(s.c.t, body)
		list, _ := m["objects"].([]any)
		for _, v := range list {
			out = append(out, v.(map[string]any))
		}
		if h := resp.Header.Get("X-TAXII-Date-Added-Last"); h != "" {
			s.lastAdded = h
		}
		if m["more"] != true {
			return out, nil
		}
		q.Set("next", str(m["next"]))
	}
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// tally counts received objects by (id, version), to find repeats and losses.
type tally map[objKey]int

func (t tally) add(objs ...map[string]any) {
	for _, o := range objs {
		t[keyOf(o)]++
	}
}

// check reports objects received more than once (when noRepeat) and expected objects
// never received.
func (t tally) check(tb testing.TB, want map[objKey]map[string]any, noRepeat bool) {
	tb.Helper()
	for k, n := range t {
		if _, ok := want[k]; !ok {
			tb.Errorf("received unexpected object %v", k)
		}
		if noRepeat && n > 1 {
			tb.Errorf("object %v received %d times", k, n)
		}
	}
	missing := 0
	for k := range want {
		if t[k] == 0 {
			if missing < 5 {
				tb.Errorf("object %v never received", k)
			}
			missing++
		}
	}
	if missing > 0 {
		tb.Errorf("%d of %d objects never received", missing, len(want))
	}
}
