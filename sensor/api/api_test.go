package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/sensor/metrics"
)

// oneSession returns an indexed server over a folder store holding one session.
func oneSession(t *testing.T, cfg Config) (*env, []string) {
	t.Helper()
	st := folderStore(t)
	e := newEnv(t, st, cfg)
	b, _ := writeSession(t, context.Background(), st, newSensor("plant-a-01"), 1)
	waitIndexed(t, e.srv, 1)
	var ids []string
	for _, o := range b.Objects {
		ids = append(ids, o.STIXID())
	}
	return e, ids
}

func TestResources(t *testing.T) {
	e, ids := oneSession(t, Config{})
	c := newClient(t)
	root := e.hs.URL + "/taxii2/pcapot/"
	var indicatorID string
	for _, id := range ids {
		if strings.HasPrefix(id, "indicator--") {
			indicatorID = id
		}
	}

	type check func(t *testing.T, m map[string]any, h http.Header)
	tests := []struct {
		name string
		url  string
		code int
		want check
	}{
		{"discovery", e.hs.URL + "/taxii2/", 200, func(t *testing.T, m map[string]any, h http.Header) {
			if m["title"] == "" || m["default"] != "/taxii2/pcapot/" || len(m["api_roots"].([]any)) != 1 || m["api_roots"].([]any)[0] != "/taxii2/pcapot/" {
				t.Errorf("discovery = %v", m)
			}
		}},
		{"api root", root, 200, func(t *testing.T, m map[string]any, h http.Header) {
			if m["title"] == nil || m["versions"].([]any)[0] != TAXIIMediaType || m["max_content_length"].(float64) <= 0 {
				t.Errorf("api root = %v", m)
			}
		}},
		{"collections", root + "collections/", 200, func(t *testing.T, m map[string]any, h http.Header) {
			cs := m["collections"].([]any)
			if len(cs) != 2 {
				t.Fatalf("collections = %v", m)
			}
			for i, want := range []string{IncidentsCollectionID, IndicatorsCollectionID} {
				c := cs[i].(map[string]any)
				if c["id"] != want || c["can_read"] != true || c["can_write"] != false || c["media_types"].([]any)[0] != STIXMediaType {
					t.Errorf("collection %d = %v", i, c)
				}
			}
		}},
		{"collection by id", root + "collections/" + IncidentsCollectionID + "/", 200, func(t *testing.T, m map[string]any, h http.Header) {
			if m["title"] != "pcapot-incidents" || m["alias"] != "pcapot-incidents" {
				t.Errorf("collection = %v", m)
			}
		}},
		{"collection by alias", root + "collections/pcapot-indicators/", 200, func(t *testing.T, m map[string]any, h http.Header) {
			if m["id"] != IndicatorsCollectionID {
				t.Errorf("collection = %v", m)
			}
		}},
		{"no trailing slash", root + "collections/" + IncidentsCollectionID + "/objects", 200, nil},
		{"object by id", root + "collections/" + IncidentsCollectionID + "/objects/" + indicatorID + "/", 200, func(t *testing.T, m map[string]any, h http.Header) {
			objs := m["objects"].([]any)
			if len(objs) != 1 || objs[0].(map[string]any)["id"] != indicatorID || m["more"] != false {
				t.Errorf("object envelope = %v", m)
			}
			if h.Get("X-TAXII-Date-Added-First") == "" || h.Get("X-TAXII-Date-Added-Last") == "" {
				t.Error("date headers missing")
			}
		}},
		{"versions", root + "collections/" + IncidentsCollectionID + "/objects/" + indicatorID + "/versions/", 200, func(t *testing.T, m map[string]any, h http.Header) {
			if v := m["versions"].([]any); len(v) != 1 || h.Get("X-TAXII-Date-Added-Last") == "" {
				t.Errorf("versions = %v", m)
			}
		}},
		{"manifest", root + "collections/" + IncidentsCollectionID + "/manifest/", 200, func(t *testing.T, m map[string]any, h http.Header) {
			recs := m["objects"].([]any)
			if len(recs) != len(ids) {
				t.Errorf("manifest has %d records, bundle %d objects", len(recs), len(ids))
			}
			r := recs[0].(map[string]any)
			if r["media_type"] != STIXMediaType || r["version"] == "" || len(r["date_added"].(string)) != len("2006-01-02T15:04:05.000000Z") {
				t.Errorf("manifest record = %v", r)
			}
			if h.Get("X-TAXII-Date-Added-First") != r["date_added"] {
				t.Errorf("X-TAXII-Date-Added-First = %q, first record %v", h.Get("X-TAXII-Date-Added-First"), r["date_added"])
			}
		}},
		{"unknown object", root + "collections/" + IncidentsCollectionID + "/objects/indicator--00000000-0000-4000-8000-000000000000/", 404, nil},
		{"object not in the indicators collection", root + "collections/" + IndicatorsCollectionID + "/objects/" + ids[len(ids)-1] + "/", 404, nil},
		{"unknown collection", root + "collections/00000000-0000-4000-8000-000000000000/", 404, nil},
		{"unknown api root", e.hs.URL + "/taxii2/other/", 404, nil},
		{"status", root + "status/2d086da7-4bdc-4f91-900e-d77486753710/", 404, nil},
		{"bad object id", root + "collections/" + IncidentsCollectionID + "/objects/not-an-id/", 404, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := c.get(tc.url, nil)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != TAXIIMediaType {
				t.Errorf("Content-Type = %q, want exactly %q", ct, TAXIIMediaType)
			}
			m := decode(t, body)
			if tc.code != 200 {
				if m["title"] == nil || m["http_status"] != http.StatusText(tc.code) && m["http_status"] != itoa(tc.code) {
					t.Errorf("error body = %v, want a TAXII error with http_status %d", m, tc.code)
				}
				return
			}
			if tc.want != nil {
				tc.want(t, m, resp.Header)
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestMethods(t *testing.T) {
	e, _ := oneSession(t, Config{})
	objects := e.collURL(IncidentsCollectionID) + "objects/"
	tests := []struct {
		method, url string
		code        int
	}{
		{http.MethodPost, objects, http.StatusForbidden},
		{http.MethodDelete, objects + "indicator--00000000-0000-4000-8000-000000000000/", http.StatusForbidden},
		{http.MethodPut, objects, http.StatusMethodNotAllowed},
		{http.MethodHead, objects, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(`{"objects":[]}`))
			req.Header.Set("Accept", TAXIIMediaType)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("%s = %d, want %d", tc.method, resp.StatusCode, tc.code)
			}
		})
	}
}

func TestAccept(t *testing.T) {
	e, _ := oneSession(t, Config{})
	tests := []struct {
		accept string
		code   int
	}{
		{"application/taxii+json;version=2.1", 200},
		{"application/taxii+json; version=2.1", 200},
		{"application/taxii+json", 200},
		{"application/stix+json;version=2.1", 200},
		{"application/taxii+json;version=2.1,application/stix+json;version=2.1", 200},
		{"*/*", 200},
		{"", 200},
		{"application/json, */*;q=0.5", 200},
		{"application/taxii+json;version=2.0", 406},
		{"application/vnd.oasis.taxii+json; version=2.0", 406},
		{"application/json", 406},
		{"text/html", 406},
		{"application/taxii+json;version=2.1;q=0", 406},
	}
	for _, tc := range tests {
		t.Run(tc.accept, func(t *testing.T) {
			c := newClient(t)
			c.accept = tc.accept
			resp, body := c.get(e.collURL(IncidentsCollectionID)+"objects/", nil)
			if resp.StatusCode != tc.code {
				t.Errorf("Accept %q: status %d, want %d: %s", tc.accept, resp.StatusCode, tc.code, body)
			}
			if resp.Header.Get("Content-Type") != TAXIIMediaType {
				t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestAuth(t *testing.T) {
	const token = "k3y-0123456789abcdef"
	m := metrics.New(nil)
	e, _ := oneSession(t, Config{Users: map[string]string{"soc": "s3cret pass"}, Tokens: []string{token}, Metrics: m})
	url := e.collURL(IncidentsCollectionID) + "objects/"
	tests := []struct {
		name string
		auth func(*http.Request)
		code int
	}{
		{"none", nil, 401},
		{"basic", func(r *http.Request) { r.SetBasicAuth("soc", "s3cret pass") }, 200},
		{"basic wrong password", func(r *http.Request) { r.SetBasicAuth("soc", "s3cret") }, 401},
		{"basic unknown user", func(r *http.Request) { r.SetBasicAuth("x", "s3cret pass") }, 401},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, 200},
		{"token scheme (taxii2-client TokenAuth)", func(r *http.Request) { r.Header.Set("Authorization", "Token "+token) }, 200},
		{"bearer wrong", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token+"x") }, 401},
		{"unknown scheme", func(r *http.Request) { r.Header.Set("Authorization", "Digest "+token) }, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t)
			c.auth = tc.auth
			resp, body := c.get(url, nil)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			if tc.code == 401 {
				ch := strings.Join(resp.Header.Values("WWW-Authenticate"), ", ")
				if !strings.Contains(ch, "Basic realm=") || !strings.Contains(ch, "Bearer realm=") {
					t.Errorf("WWW-Authenticate = %q", ch)
				}
				if resp.Header.Get("Content-Type") != TAXIIMediaType || decode(t, body)["title"] == nil {
					t.Errorf("401 without a TAXII error body: %s", body)
				}
			}
		})
	}
	t.Run("metrics need credentials", func(t *testing.T) {
		c := newClient(t)
		if resp, _ := c.get(e.hs.URL+"/metrics", nil); resp.StatusCode != 401 {
			t.Errorf("/metrics without credentials: %d", resp.StatusCode)
		}
		c.auth = func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
		resp, body := c.get(e.hs.URL+"/metrics", nil)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `pcapot_taxii_requests_total{code="401",endpoint="objects"}`) {
			t.Errorf("/metrics: %d, TAXII 401s not counted:\n%.2000s", resp.StatusCode, body)
		}
	})
}

func TestMetricsNoAuthAndAbsent(t *testing.T) {
	e, _ := oneSession(t, Config{Users: map[string]string{"soc": "pw"}, Metrics: metrics.New(nil), MetricsNoAuth: true})
	if resp, _ := newClient(t).get(e.hs.URL+"/metrics", nil); resp.StatusCode != 200 {
		t.Errorf("/metrics with MetricsNoAuth: %d", resp.StatusCode)
	}
	e2, _ := oneSession(t, Config{})
	if resp, _ := newClient(t).get(e2.hs.URL+"/metrics", nil); resp.StatusCode != 404 {
		t.Errorf("/metrics without Metrics: %d, want 404", resp.StatusCode)
	}
}

func TestQueryValidation(t *testing.T) {
	e, ids := oneSession(t, Config{Users: map[string]string{"a": "pa", "b": "pb"}})
	asA := func(r *http.Request) { r.SetBasicAuth("a", "pa") }
	objects := e.collURL(IncidentsCollectionID) + "objects/"
	c := newClient(t)
	c.auth = asA
	// A real next token of user a on the incidents objects endpoint.
	resp, body := c.get(objects, url.Values{"limit": {"1"}})
	next := str(decode(t, body)["next"])
	if resp.StatusCode != 200 || next == "" {
		t.Fatalf("no next token: %s", body)
	}
	tampered := next[:len(next)-2] + map[bool]string{true: "AA", false: "BA"}[strings.HasSuffix(next, "AA")]
	tests := []struct {
		name   string
		url    string
		params string
		auth   func(*http.Request)
		code   int
	}{
		{"limit 0", objects, "limit=0", asA, 400},
		{"limit negative", objects, "limit=-3", asA, 400},
		{"limit text", objects, "limit=ten", asA, 400},
		{"limit plus sign", objects, "limit=%2B5", asA, 400},
		{"limit decimal", objects, "limit=1.5", asA, 400},
		{"limit twice", objects, "limit=1&limit=2", asA, 400},
		{"limit huge is capped", objects, "limit=1000000", asA, 200},
		{"added_after date only", objects, "added_after=2026-01-01", asA, 400},
		{"added_after no zone", objects, "added_after=2026-01-01T00:00:00", asA, 400},
		{"added_after junk", objects, "added_after=yesterday", asA, 400},
		{"added_after 10 digits", objects, "added_after=2026-01-01T00:00:00.0123456789Z", asA, 400},
		{"added_after not a date", objects, "added_after=2026-02-30T00:00:00Z", asA, 400},
		{"added_after twice", objects, "added_after=2026-01-01T00:00:00Z&added_after=2026-01-02T00:00:00Z", asA, 400},
		{"added_after seconds", objects, "added_after=2026-01-01T00:00:00Z", asA, 200},
		{"added_after 1 digit", objects, "added_after=2026-01-01T00:00:00.1Z", asA, 200},
		{"added_after millis", objects, "added_after=2026-01-01T00:00:00.123Z", asA, 200},
		{"added_after micros", objects, "added_after=2026-01-01T00:00:00.123456Z", asA, 200},
		{"added_after nanos", objects, "added_after=2026-01-01T00:00:00.123456789Z", asA, 200},
		{"added_after offset", objects, "added_after=2026-01-01T01:00:00%2B01:00", asA, 200},
		{"match[id] bad", objects, "match[id]=indicator--nope", asA, 400},
		{"match[id] empty item", objects, "match[id]=" + ids[0] + ",", asA, 400},
		{"match[id] duplicate", objects, "match[id]=" + ids[0] + "," + ids[0], asA, 400},
		{"match[type] uppercase", objects, "match[type]=Indicator", asA, 400},
		{"match[type] custom ok", objects, "match[type]=x-custom-thing", asA, 200},
		{"match[version] all and last", objects, "match[version]=all,last", asA, 400},
		{"match[version] bad", objects, "match[version]=newest", asA, 400},
		{"match[version] timestamp", objects, "match[version]=2026-01-01T00:00:00.000Z,first", asA, 200},
		{"match[spec_version] bad", objects, "match[spec_version]=two", asA, 400},
		{"unknown match field ignored", objects, "match[color]=red", asA, 200},
		{"malformed query", objects, "limit=%zz", asA, 400},
		{"next garbage", objects, "next=garbage", asA, 400},
		{"next tampered", objects, "next=" + url.QueryEscape(tampered), asA, 400},
		{"next tampered with added_after", objects, "added_after=2026-01-01T00:00:00Z&next=" + url.QueryEscape(tampered), asA, 200},
		{"next on another endpoint", e.collURL(IncidentsCollectionID) + "manifest/", "next=" + url.QueryEscape(next), asA, 400},
		{"next on another collection", e.collURL(IndicatorsCollectionID) + "objects/", "next=" + url.QueryEscape(next), asA, 400},
		{"next of another user", objects, "next=" + url.QueryEscape(next), func(r *http.Request) { r.SetBasicAuth("b", "pb") }, 403},
		{"next", objects, "next=" + url.QueryEscape(next), asA, 200},
		{"empty next ignored", objects, "next=", asA, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl := newClient(t)
			cl.auth = tc.auth
			resp, body := cl.get(tc.url+"?"+tc.params, nil)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			if resp.Header.Get("Content-Type") != TAXIIMediaType {
				t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
			}
			m := decode(t, body)
			if tc.code != 200 && (m["title"] == nil || m["description"] == nil) {
				t.Errorf("error without a TAXII error body: %s", body)
			}
			if tc.code == 200 && m["more"] == true && str(m["next"]) == "" {
				t.Errorf("more:true without next: %s", body)
			}
		})
	}
}

func TestNextTokenExpiry(t *testing.T) {
	var skew atomic.Int64 // the server's clock runs ahead of the real one by skew
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	e, _ := oneSession(t, Config{NextTTL: time.Minute, Now: clock})
	objects := e.collURL(IncidentsCollectionID) + "objects/"
	c := newClient(t)
	_, body := c.get(objects, url.Values{"limit": {"1"}})
	next := str(decode(t, body)["next"])
	if resp, body := c.get(objects, url.Values{"next": {next}}); resp.StatusCode != 200 {
		t.Fatalf("fresh token: %d %s", resp.StatusCode, body)
	}
	skew.Store(int64(2 * time.Minute))
	if resp, body := c.get(objects, url.Values{"next": {next}}); resp.StatusCode != 400 || !strings.Contains(string(body), "expired") {
		t.Errorf("expired token: %d %s", resp.StatusCode, body)
	}
}

func TestCheckListen(t *testing.T) {
	tests := []struct {
		addr  string
		creds bool
		ok    bool
	}{
		{"127.0.0.1:8080", false, true},
		{"[::1]:8080", false, true},
		{"localhost:8080", false, true},
		{"127.8.9.10:8080", false, true},
		{"0.0.0.0:8080", false, false},
		{":8080", false, false},
		{"[::]:8080", false, false},
		{"192.0.2.10:8080", false, false},
		{"sensor.example.org:8080", false, false},
		{"0.0.0.0:8080", true, true},
		{":8080", true, true},
		{"127.0.0.1", false, false},
		{"127.0.0.1:http", false, false},
		{"127.0.0.1:70000", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			err := CheckListen(tc.addr, tc.creds)
			if (err == nil) != tc.ok {
				t.Errorf("CheckListen(%q, %v) = %v, want ok=%v", tc.addr, tc.creds, err, tc.ok)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	st := folderStore(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no store", Config{}},
		{"bad root", Config{Store: st, APIRoot: "a/b"}},
		{"short key", Config{Store: st, NextKey: []byte("short")}},
		{"short token", Config{Store: st, Tokens: []string{"abc"}}},
		{"user with colon", Config{Store: st, Users: map[string]string{"a:b": "x"}}},
		{"empty password", Config{Store: st, Users: map[string]string{"a": ""}}},
		{"page above max", Config{Store: st, PageSize: 50, MaxPageSize: 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, nil); err == nil {
				t.Error("New succeeded")
			}
		})
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and returns the files and
// a pool trusting it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "pcapot api test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestListenAndServeTLS(t *testing.T) {
	st := folderStore(t)
	srv, err := New(Config{Store: st, Tokens: []string{"0123456789abcdef0123"}, VisibilityDelay: testDelay}, nil)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, pool := writeCert(t)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.ListenAndServe(ctx, ListenConfig{Addr: addr, CertFile: certFile, KeyFile: keyFile})
	}()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var resp *http.Response
	for i := 0; ; i++ {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/taxii2/", nil)
		req.Header.Set("Authorization", "Token 0123456789abcdef0123")
		if resp, err = hc.Do(req); err == nil {
			break
		}
		if i > 100 {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS discovery: %d %+v", resp.StatusCode, resp.TLS)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe after cancel = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no graceful shutdown")
	}
}

func TestListenAndServeRefuses(t *testing.T) {
	st := folderStore(t)
	open, err := New(Config{Store: st}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := open.ListenAndServe(context.Background(), ListenConfig{Addr: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "without credentials") {
		t.Errorf("open API on 0.0.0.0: %v", err)
	}
	if err := open.ListenAndServe(context.Background(), ListenConfig{Addr: "127.0.0.1:0", CertFile: "x.pem"}); err == nil {
		t.Error("certificate without key accepted")
	}
	if err := open.ListenAndServe(context.Background(), ListenConfig{Addr: "127.0.0.1:0", CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}); err == nil {
		t.Error("missing key pair accepted")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "taxii-next.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil || len(k1) != 32 {
		t.Fatalf("create: %x %v", k1, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi.Mode(), err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || string(k1) != string(k2) {
		t.Errorf("reload gave another key: %v", err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Error("short key file accepted")
	}
	if _, err := LoadOrCreateKey(filepath.Join(path, "x")); err == nil {
		t.Error("key below a file accepted")
	}
}

// flakyStore is the real folder store with an outage switch (fault injection).
type flakyStore struct {
	*incidents.FolderStore
	down atomic.Bool
}

var errOutage = errors.New("injected outage")

func (f *flakyStore) List(ctx context.Context, prefix string) ([]incidents.ObjectInfo, error) {
	if f.down.Load() {
		return nil, errOutage
	}
	return f.FolderStore.List(ctx, prefix)
}

func (f *flakyStore) Get(ctx context.Context, key string) ([]byte, incidents.Meta, error) {
	if f.down.Load() {
		return nil, incidents.Meta{}, errOutage
	}
	return f.FolderStore.Get(ctx, key)
}

func TestStoreOutage(t *testing.T) {
	st := &flakyStore{FolderStore: folderStore(t)}
	e := newEnv(t, st, Config{RefreshInterval: time.Millisecond, CacheBytes: 1 << 20})
	writeSession(t, context.Background(), st, newSensor("plant-a-01"), 1)
	waitIndexed(t, e.srv, 1)
	c := newClient(t)
	objects := e.collURL(IncidentsCollectionID) + "objects/"
	// The manifest needs no object content: a follow-up page is answered from the
	// index while the store is down.
	_, body := c.get(e.collURL(IncidentsCollectionID)+"manifest/", url.Values{"limit": {"2"}})
	next := str(decode(t, body)["next"])
	st.down.Store(true)
	time.Sleep(5 * time.Millisecond)
	resp, body := c.get(objects, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || decode(t, body)["title"] == nil {
		t.Errorf("new query during an outage: %d %s", resp.StatusCode, body)
	}
	if resp, body := c.get(e.collURL(IncidentsCollectionID)+"manifest/", url.Values{"next": {next}}); resp.StatusCode != 200 {
		t.Errorf("follow-up page during an outage: %d %s", resp.StatusCode, body)
	}
	st.down.Store(false)
	if resp, body := c.get(objects, nil); resp.StatusCode != 200 {
		t.Errorf("after the outage: %d %s", resp.StatusCode, body)
	}
}

func TestBrokenBundleSkipped(t *testing.T) {
	st := folderStore(t)
	e := newEnv(t, st, Config{})
	ctx := context.Background()
	_, key := writeSession(t, ctx, st, newSensor("plant-a-01"), 1)
	broken := strings.Replace(key, key[len(key)-41:len(key)-5], "0f0e0d0c-0b0a-4909-8807-060504030201", 1)
	if err := st.Put(ctx, broken, []byte(`{"type":"not-a-bundle"}`), incidents.Meta{}); err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, e.srv, 1)
	time.Sleep(testDelay)
	if resp, body := newClient(t).get(e.collURL(IncidentsCollectionID)+"objects/", nil); resp.StatusCode != 200 || len(decode(t, body)["objects"].([]any)) == 0 {
		t.Errorf("objects with a broken bundle in the store: %d %s", resp.StatusCode, body)
	}
	if s := e.srv.Stats(); s.Skipped != 1 || s.Bundles != 1 {
		t.Errorf("stats = %+v, want 1 bundle indexed and 1 skipped", s)
	}
}

// TestEmptyPageHeaders: an empty page still has both date headers, holding the
// query's lower bound, so that a client copying them keeps its cursor.
func TestEmptyPageHeaders(t *testing.T) {
	e, _ := oneSession(t, Config{})
	tests := []struct {
		name, endpoint, query, want string
	}{
		{"no lower bound", "objects/", "match[type]=x-nothing", "1970-01-01T00:00:00.000000Z"},
		{"added_after in seconds", "objects/", "added_after=2999-01-02T03:04:05Z", "2999-01-02T03:04:05.000000Z"},
		{"added_after in nanoseconds", "manifest/", "added_after=2999-01-02T03:04:05.123456789Z", "2999-01-02T03:04:05.123456Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := newClient(t).get(e.collURL(IncidentsCollectionID)+tc.endpoint+"?"+tc.query, nil)
			if resp.StatusCode != 200 || string(body) != `{"more":false}` {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			for _, h := range []string{"X-TAXII-Date-Added-First", "X-TAXII-Date-Added-Last"} {
				if got := resp.Header.Get(h); got != tc.want {
					t.Errorf("%s = %q, want %q", h, got, tc.want)
				}
			}
		})
	}
}
