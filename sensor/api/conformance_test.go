package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pcapot/pcapot/incidents"
)

// writeMany writes n sessions for each sensor, the sensors concurrently, and returns
// every bundle written.
func writeMany(t testing.TB, store incidents.Store, sensors []incidents.Sensor, n int, pause time.Duration) []*incidents.Bundle {
	t.Helper()
	var mu sync.Mutex
	var all []*incidents.Bundle
	var wg sync.WaitGroup
	for si, s := range sensors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				b, _ := writeSession(t, context.Background(), store, s, si*1000+i)
				mu.Lock()
				all = append(all, b)
				mu.Unlock()
				time.Sleep(pause)
			}
		}()
	}
	wg.Wait()
	return all
}

// pollWhileWriting calls poll until the writers are done (done delivers their
// bundles), settle has passed and quiet polls in a row received nothing, pausing
// between polls. poll returns the number of objects it received.
func pollWhileWriting(done <-chan []*incidents.Bundle, settle time.Duration, quiet int, pause time.Duration, poll func() int) []*incidents.Bundle {
	var bundles []*incidents.Bundle
	finished, empty := false, 0
	for empty < quiet {
		n := poll()
		if !finished {
			select {
			case bundles = <-done:
				finished = true
				time.Sleep(settle)
			default:
			}
		} else if n == 0 {
			empty++
		}
		time.Sleep(pause)
	}
	return bundles
}

// sameJSON reports whether two JSON values are equal.
func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var x, y any
	_ = json.Unmarshal(ja, &x)
	_ = json.Unmarshal(jb, &y)
	return reflect.DeepEqual(x, y)
}

// TestTaxii2Client drives the server as taxii2-client does: Server -> ApiRoot ->
// Collection (content-type and collection-id-in-URL checks), then as_pages over get
// objects and get manifest. Every object served validates with stixcheck and equals
// the object the sensor built.
func TestTaxii2Client(t *testing.T) {
	st := folderStore(t)
	e := newEnv(t, st, Config{PageSize: 10})
	bundles := writeMany(t, st, []incidents.Sensor{newSensor("plant-a-01"), newSensor("plant-b-02")}, 4, 0)
	waitIndexed(t, e.srv, len(bundles))
	x := &taxii2Client{c: newClient(t)}
	cols, err := x.collections(e.hs.URL + "/taxii2/")
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != 2 {
		t.Fatalf("%d collections", len(cols))
	}
	for i, col := range cols {
		kind := colKind(i)
		want := expected(t, bundles, kind)
		t.Run(str(col.info["title"])+"/objects", func(t *testing.T) {
			got := tally{}
			err := asPages(col.getObjects, 7, nil, 1000, func(env map[string]any, h http.Header) {
				objs, _ := env["objects"].([]any)
				if len(objs) > 7 {
					t.Errorf("page of %d objects for limit 7", len(objs))
				}
				for _, o := range objs {
					m := o.(map[string]any)
					got.add(m)
					raw, _ := json.Marshal(m)
					validate(t, raw)
					if w, ok := want[keyOf(m)]; ok && !sameJSON(w, m) {
						t.Errorf("served %s differs from the stored object:\n got %s", keyOf(m).id, raw)
					}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			got.check(t, want, true)
		})
		t.Run(str(col.info["title"])+"/manifest", func(t *testing.T) {
			var last string
			n := 0
			err := asPages(col.getManifest, 5, nil, 1000, func(env map[string]any, h http.Header) {
				recs, _ := env["objects"].([]any)
				for i, r := range recs {
					da := str(r.(map[string]any)["date_added"])
					if da <= last {
						t.Errorf("date_added %s not after %s", da, last)
					}
					if i == 0 && h.Get("X-TAXII-Date-Added-First") != da || i == len(recs)-1 && h.Get("X-TAXII-Date-Added-Last") != da {
						t.Errorf("date headers %q..%q do not match the records", h.Get("X-TAXII-Date-Added-First"), h.Get("X-TAXII-Date-Added-Last"))
					}
					last = da
					n++
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != len(want) {
				t.Errorf("manifest lists %d objects, want %d", n, len(want))
			}
		})
	}
	t.Run("filters", func(t *testing.T) {
		col := cols[colIncidents]
		got := tally{}
		err := asPages(col.getObjects, 3, map[string]any{"type": "indicator,sighting", "added_after": time.Now().Add(-time.Hour)}, 1000,
			func(env map[string]any, h http.Header) {
				objs, _ := env["objects"].([]any)
				for _, o := range objs {
					m := o.(map[string]any)
					if typ := str(m["type"]); typ != "indicator" && typ != "sighting" {
						t.Errorf("match[type] returned a %s", typ)
					}
					got.add(m)
				}
			})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2*len(bundles) {
			t.Errorf("%d indicators and sightings, want %d", len(got), 2*len(bundles))
		}
	})
	t.Run("content type check fails on a wrong type", func(t *testing.T) {
		if validContentType("application/json", TAXIIMediaType) || !validContentType(TAXIIMediaType, TAXIIMediaType) {
			t.Error("the emulated taxii2-client check is wrong")
		}
	})
}

// TestOpenCTI runs the OpenCTI taxii2 connector's loop: discovery -> API root by its
// last path segment -> collection by title, added_after from the connector's own clock
// (first run: 24 h of history), more/next paging with a limit, and self.filters kept
// between runs (so a stale next is sent again with the new added_after), across a
// server restart with a new next-token key. Sessions are written while it runs.
func TestOpenCTI(t *testing.T) {
	st := folderStore(t)
	cfg := Config{Users: map[string]string{"opencti": "connector-pw"}}
	e := newEnv(t, st, cfg)
	c := newClient(t)
	c.auth = func(r *http.Request) { r.SetBasicAuth("opencti", "connector-pw") }
	o := &openCTI{x: &taxii2Client{c: c}, root: "pcapot", title: "pcapot-incidents", history: 24 * time.Hour, limit: 9}
	sensors := []incidents.Sensor{newSensor("plant-a-01"), newSensor("plant-b-02")}
	got := tally{}
	var bundles []*incidents.Bundle
	var bmu sync.Mutex

	for run := 0; run < 4; run++ {
		if run == 2 { // restart: a new server with a new per-process key
			e = newEnv(t, st, cfg)
		}
		o.discovery = e.hs.URL + "/taxii2/"
		var wg sync.WaitGroup
		if run < 3 {
			wg.Add(1)
			go func() { // sessions arrive while the connector runs
				defer wg.Done()
				b := writeMany(t, st, sensors, 3, 30*time.Millisecond)
				bmu.Lock()
				bundles = append(bundles, b...)
				bmu.Unlock()
			}()
		} else {
			time.Sleep(testDelay + 100*time.Millisecond) // the last run sees everything
		}
		objs, err := o.run()
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		got.add(objs...)
		wg.Wait()
		if run == 1 && o.filters["next"] == nil {
			t.Fatal("no stale next kept in the connector's filters; the test must cover it")
		}
		time.Sleep(1100 * time.Millisecond) // runs are whole seconds apart (last_run is int seconds)
	}
	got.check(t, expected(t, bundles, colIncidents), false)
}

// TestElastic runs Elastic's ti_custom CEL program: first interval added_after = now -
// initial_interval with second precision, follow-ups with only next and limit,
// the cursor taken from X-TAXII-Date-Added-Last between intervals. Sessions are written
// while it polls; every object must arrive exactly once (Elastic does not deduplicate).
func TestElastic(t *testing.T) {
	const key = "elastic-api-key-0123456789"
	st := folderStore(t)
	e := newEnv(t, st, Config{Tokens: []string{key}, EmptyObjectsList: true})
	el := &elastic{c: newClient(t), url: e.collURL(IncidentsCollectionID) + "objects/", apiKey: key, limit: 6, initialInterval: time.Hour}
	got := tally{}
	done := make(chan []*incidents.Bundle)
	go func() {
		done <- writeMany(t, st, []incidents.Sensor{newSensor("plant-a-01"), newSensor("plant-c-03")}, 8, 20*time.Millisecond)
	}()
	bundles := pollWhileWriting(done, testDelay+50*time.Millisecond, 3, 50*time.Millisecond, func() int {
		objs, err := el.interval()
		if err != nil {
			t.Fatal(err)
		}
		got.add(objs...)
		return len(objs)
	})
	got.check(t, expected(t, bundles, colIncidents), true)
	if _, ok := el.cursor["last_timestamp"]; !ok {
		t.Error("cursor lost")
	}

	t.Run("without EmptyObjectsList an empty page breaks the CEL program", func(t *testing.T) {
		strict := newEnv(t, st, Config{Tokens: []string{key}})
		el := &elastic{c: newClient(t), url: strict.collURL(IncidentsCollectionID) + "objects/", apiKey: key,
			cursor: map[string]string{"last_timestamp": "2999-01-01T00:00:00.000000Z"}}
		el.c.auth = func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+key) }
		resp, body := el.c.get(el.url, url.Values{"added_after": {"2999-01-01T00:00:00Z"}})
		if resp.StatusCode != 200 || string(body) != `{"more":false}` {
			t.Errorf("empty page = %d %s, want the spec's empty envelope", resp.StatusCode, body)
		}
		if _, err := el.interval(); err == nil {
			t.Error("the emulated CEL program accepted an envelope without objects")
		}
		if el.cursor["last_timestamp"] != "2999-01-01T00:00:00.000000Z" {
			t.Errorf("cursor = %v", el.cursor)
		}
	})
}

// TestSentinel polls the indicators collection as Microsoft Sentinel does: API root
// URL + collection id, a look-back on the first poll, the last date_added afterwards.
func TestSentinel(t *testing.T) {
	st := folderStore(t)
	e := newEnv(t, st, Config{Users: map[string]string{"sentinel": "pw-sentinel"}})
	c := newClient(t)
	c.auth = func(r *http.Request) { r.SetBasicAuth("sentinel", "pw-sentinel") }
	s := &sentinel{c: c, apiRoot: e.hs.URL + e.srv.APIRootPath(), collectionID: IndicatorsCollectionID, lookback: 24 * time.Hour}
	done := make(chan []*incidents.Bundle)
	go func() {
		done <- writeMany(t, st, []incidents.Sensor{newSensor("plant-a-01"), newSensor("plant-d-04")}, 6, 25*time.Millisecond)
	}()
	got := tally{}
	bundles := pollWhileWriting(done, testDelay+50*time.Millisecond, 2, 40*time.Millisecond, func() int {
		objs, err := s.poll()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			switch str(o["type"]) {
			case "indicator", "sighting", "identity":
			default:
				t.Errorf("indicators collection served a %s", o["type"])
			}
			raw, _ := json.Marshal(o)
			validate(t, raw)
		}
		got.add(objs...)
		return len(objs)
	})
	got.check(t, expected(t, bundles, colIndicators), true)
}

// pollHeaderCursor polls objects with added_after = the last X-TAXII-Date-Added-Last
// and a small limit, without next, while the writers run and until settle has passed
// and two polls came back empty. It checks that date_added only grows.
func pollHeaderCursor(t *testing.T, e *env, done <-chan []*incidents.Bundle, settle time.Duration) (tally, []*incidents.Bundle) {
	t.Helper()
	c := newClient(t)
	got := tally{}
	cursor := ""
	bundles := pollWhileWriting(done, settle, 2, 0, func() int {
		q := url.Values{"limit": {"7"}}
		if cursor != "" {
			q.Set("added_after", cursor)
		}
		resp, body := c.get(e.collURL(IncidentsCollectionID)+"objects/", q)
		if resp.StatusCode != 200 {
			t.Fatalf("poll: %d %s", resp.StatusCode, body)
		}
		objs, _ := decode(t, body)["objects"].([]any)
		first, last := resp.Header.Get("X-TAXII-Date-Added-First"), resp.Header.Get("X-TAXII-Date-Added-Last")
		if len(objs) > 0 {
			if first <= cursor || last < first {
				t.Fatalf("page %s..%s does not start after the cursor %s", first, last, cursor)
			}
			for _, o := range objs {
				got.add(o.(map[string]any))
			}
		} else if cursor != "" && last != cursor {
			t.Errorf("empty page: X-TAXII-Date-Added-Last = %q, want the cursor %q", last, cursor)
		}
		if last != "" {
			cursor = last
		}
		return len(objs)
	})
	return got, bundles
}

// setMtime sets a folder-store object's modification time.
func setMtime(t testing.TB, st *incidents.FolderStore, key string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(filepath.Join(st.Dir(), filepath.FromSlash(key)), at, at); err != nil {
		t.Fatal(err)
	}
}

// TestHeaderCursorSameSecondConcurrentWriters: three sensors write sessions
// concurrently while a client polls page by page with the header cursor. Every bundle
// written in one second gets the same modification time (as S3 servers with second
// precision give), so hundreds of objects share one timestamp; none is skipped or
// repeated.
func TestHeaderCursorSameSecondConcurrentWriters(t *testing.T) {
	st := folderStore(t)
	e := newEnv(t, st, Config{})
	done := make(chan []*incidents.Bundle, 1)
	go func() {
		var bundles []*incidents.Bundle
		var mu sync.Mutex
		var wg sync.WaitGroup
		for si := 0; si < 3; si++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := newSensor("plant-" + string(rune('a'+si)) + "-01")
				for i := 0; i < 15; i++ {
					b, key := writeSession(t, context.Background(), st, s, si*100+i)
					// Forward to the next whole second: never behind a refresh.
					setMtime(t, st, key, time.Now().Truncate(time.Second).Add(time.Second))
					mu.Lock()
					bundles = append(bundles, b)
					mu.Unlock()
					time.Sleep(15 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		done <- bundles
	}()
	// The last bundles are dated up to a second ahead.
	got, bundles := pollHeaderCursor(t, e, done, time.Second+testDelay+50*time.Millisecond)
	got.check(t, expected(t, bundles, colIncidents), true)
	if st := e.srv.Stats(); st.Late != 0 {
		t.Errorf("%d late bundles", st.Late)
	}
}

// TestHeaderCursorS3 is the same with several sensors writing into one MinIO bucket.
func TestHeaderCursorS3(t *testing.T) {
	st := s3Store(t)
	e := newEnv(t, st, Config{})
	done := make(chan []*incidents.Bundle, 1)
	go func() {
		done <- writeMany(t, st, []incidents.Sensor{newSensor("plant-a-01"), newSensor("plant-b-02"), newSensor("plant-c-03")}, 8, 10*time.Millisecond)
	}()
	got, bundles := pollHeaderCursor(t, e, done, testDelay+50*time.Millisecond)
	got.check(t, expected(t, bundles, colIncidents), true)

	t.Run("objects validate", func(t *testing.T) {
		c := newClient(t)
		resp, body := c.get(e.collURL(IndicatorsCollectionID)+"objects/", url.Values{"limit": {"1000"}})
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var env struct {
			Objects []json.RawMessage `json:"objects"`
		}
		if err := json.Unmarshal(body, &env); err != nil || len(env.Objects) == 0 {
			t.Fatalf("%v %s", err, body)
		}
		for _, o := range env.Objects {
			validate(t, o)
		}
	})
}

// eachPage fetches u with q and follows next tokens until more is false, calling fn
// with every page's objects (or manifest records).
func eachPage(t *testing.T, c *client, u string, q url.Values, fn func(list []any)) {
	t.Helper()
	for {
		resp, body := c.get(u, q)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		m := decode(t, body)
		list, _ := m["objects"].([]any)
		fn(list)
		if m["more"] != true {
			return
		}
		q = url.Values{"next": {str(m["next"])}}
	}
}

// fullManifest returns the whole manifest of a collection as "id version date_added".
func fullManifest(t *testing.T, e *env, coll string) []string {
	t.Helper()
	var out []string
	eachPage(t, newClient(t), e.collURL(coll)+"manifest/", url.Values{"limit": {"1000"}}, func(recs []any) {
		for _, r := range recs {
			rec := r.(map[string]any)
			out = append(out, str(rec["id"])+" "+str(rec["version"])+" "+str(rec["date_added"]))
		}
	})
	return out
}

// TestSameDateAddedEverywhere: two server instances over one store, and a server
// started later (an index rebuilt from the bucket), give every object the same
// date_added.
func TestSameDateAddedEverywhere(t *testing.T) {
	st := folderStore(t)
	e1 := newEnv(t, st, Config{})
	e2 := newEnv(t, st, Config{})
	bundles := writeMany(t, st, []incidents.Sensor{newSensor("plant-a-01"), newSensor("plant-b-02")}, 5, 0)
	time.Sleep(testDelay + 50*time.Millisecond)
	m1 := fullManifest(t, e1, IncidentsCollectionID)
	m2 := fullManifest(t, e2, IncidentsCollectionID)
	m3 := fullManifest(t, newEnv(t, st, Config{}), IncidentsCollectionID)
	if len(m1) != len(expected(t, bundles, colIncidents)) {
		t.Fatalf("manifest has %d records, want %d", len(m1), len(expected(t, bundles, colIncidents)))
	}
	if !reflect.DeepEqual(m1, m2) || !reflect.DeepEqual(m1, m3) {
		t.Errorf("instances disagree on date_added:\n%v\n%v\n%v", m1[:3], m2[:3], m3[:3])
	}
}

// TestLateBundle: a bundle whose modification time is far behind what was already
// served (a slow upload, a writer with a wrong clock) is served after the cursor.
func TestLateBundle(t *testing.T) {
	st := folderStore(t)
	e := newEnv(t, st, Config{})
	first, _ := writeSession(t, context.Background(), st, newSensor("plant-a-01"), 1)
	waitIndexed(t, e.srv, 1)
	c := newClient(t)
	resp, body := c.get(e.collURL(IncidentsCollectionID)+"objects/", url.Values{"limit": {"1000"}})
	cursor := resp.Header.Get("X-TAXII-Date-Added-Last")
	if resp.StatusCode != 200 || cursor == "" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	late, key := writeSession(t, context.Background(), st, newSensor("plant-b-02"), 2)
	setMtime(t, st, key, time.Now().Add(-time.Hour))
	waitIndexed(t, e.srv, 2)
	if e.srv.Stats().Late != 1 {
		t.Errorf("Late = %d, want 1", e.srv.Stats().Late)
	}
	resp, body = c.get(e.collURL(IncidentsCollectionID)+"objects/", url.Values{"added_after": {cursor}, "limit": {"1000"}})
	if resp.StatusCode != 200 {
		t.Fatalf("objects after the cursor: status %d", resp.StatusCode)
	}
	got := tally{}
	for _, o := range decode(t, body)["objects"].([]any) {
		got.add(o.(map[string]any))
	}
	want := expected(t, []*incidents.Bundle{late}, colIncidents)
	for k := range expected(t, []*incidents.Bundle{first}, colIncidents) {
		delete(want, k) // shared objects (project identity, extension, sensor address) were served already
	}
	got.check(t, want, true)
}

// TestDeletedBundle: objects of a bundle deleted from the store leave the collections;
// objects it shares with other bundles stay.
func TestDeletedBundle(t *testing.T) {
	st := folderStore(t)
	e := newEnv(t, st, Config{})
	s := newSensor("plant-a-01")
	b1, key1 := writeSession(t, context.Background(), st, s, 1)
	b2, _ := writeSession(t, context.Background(), st, s, 2)
	waitIndexed(t, e.srv, 2)
	before := len(fullManifest(t, e, IncidentsCollectionID))
	for _, p := range []string{key1, filepath.Join(filepath.Dir(key1), "."+filepath.Base(key1)+".meta.json")} {
		if err := os.Remove(filepath.Join(st.Dir(), filepath.FromSlash(p))); err != nil {
			t.Fatal(err)
		}
	}
	after := fullManifest(t, e, IncidentsCollectionID)
	want := expected(t, []*incidents.Bundle{b2}, colIncidents)
	if len(after) != len(want) || len(after) >= before {
		t.Errorf("after deleting a bundle the manifest has %d records (before %d), want %d", len(after), before, len(want))
	}
	c := newClient(t)
	for _, o := range b1.Objects {
		resp, _ := c.get(e.collURL(IncidentsCollectionID)+"objects/"+o.STIXID()+"/", nil)
		_, shared := want[objKey{id: o.STIXID()}]
		for k := range want {
			shared = shared || k.id == o.STIXID()
		}
		if shared && resp.StatusCode != 200 || !shared && resp.StatusCode != 404 {
			t.Errorf("%s (shared %v): status %d", o.STIXID(), shared, resp.StatusCode)
		}
	}
}

// TestClientClockCursor polls as clients that take added_after from their own clock
// do (OpenCTI's last_run, at microsecond precision here rather than OpenCTI's whole
// seconds): every poll asks for what was added after the previous poll started. While
// sessions are being written, no object may be lost (repeats are allowed: the client
// asks for an overlap).
func TestClientClockCursor(t *testing.T) {
	st := folderStore(t)
	e := newEnv(t, st, Config{})
	c := newClient(t)
	done := make(chan []*incidents.Bundle)
	go func() {
		done <- writeMany(t, st, []incidents.Sensor{newSensor("plant-a-01"), newSensor("plant-b-02")}, 12, 35*time.Millisecond)
	}()
	got := tally{}
	var last time.Time
	bundles := pollWhileWriting(done, testDelay+50*time.Millisecond, 1, 45*time.Millisecond, func() int {
		start := time.Now()
		q := url.Values{}
		if !last.IsZero() {
			q.Set("added_after", last.UTC().Format("2006-01-02T15:04:05.000000Z"))
		}
		n := 0
		eachPage(t, c, e.collURL(IncidentsCollectionID)+"objects/", q, func(objs []any) {
			for _, o := range objs {
				got.add(o.(map[string]any))
			}
			n += len(objs)
		})
		last = start
		return n
	})
	got.check(t, expected(t, bundles, colIncidents), false)
}
