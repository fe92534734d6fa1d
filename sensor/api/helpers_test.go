package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/incidents/stixcheck"
	"github.com/pcapot/pcapot/internal/testenv"
)

// schemaDir is the OASIS schemas/ tree (shared/ beside the clone).
const schemaDir = "../../../shared/stix2-json-schemas"

// Test timing: bundles are served testDelay after their modification time.
const (
	testDelay   = 300 * time.Millisecond
	testRefresh = 20 * time.Millisecond
)

var identityCreated = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newSensor(id string) incidents.Sensor {
	return incidents.Sensor{
		ID: id, Name: "pcapot sensor " + id, IdentityID: "identity--" + uuid.NewString(),
		IdentityCreated: identityCreated, IdentityModified: identityCreated,
		Vendor: "Schneider Electric", Product: "Modicon M340",
	}
}

// testPCAP returns a classic pcap file with one TCP SYN from client to server.
func testPCAP(client, server netip.AddrPort, at time.Time) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b2c3d4)
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 65535)
	le.PutUint32(hdr[20:], 101) // LINKTYPE_RAW: IP packets
	b.Write(hdr)
	pkt := make([]byte, 40)
	pkt[0], pkt[3], pkt[8], pkt[9] = 0x45, 40, 64, 6
	c4, s4 := client.Addr().As4(), server.Addr().As4()
	copy(pkt[12:], c4[:])
	copy(pkt[16:], s4[:])
	binary.BigEndian.PutUint16(pkt[20:], client.Port())
	binary.BigEndian.PutUint16(pkt[22:], server.Port())
	pkt[32], pkt[33] = 0x50, 0x02 // data offset 5, SYN
	rec := make([]byte, 16)
	le.PutUint32(rec[0:], uint32(at.Unix()))
	le.PutUint32(rec[4:], uint32(at.Nanosecond()/1000))
	le.PutUint32(rec[8:], uint32(len(pkt)))
	le.PutUint32(rec[12:], uint32(len(pkt)))
	b.Write(rec)
	b.Write(pkt)
	return b.Bytes()
}

// hostileDetail is attacker text carried into bundles by protocol events.
const hostileDetail = "public\"}]\n<script>alert(1)</script>\u2028\x00\xff"

// writeSession stores one session the way the sensor does: its pcap, then the bundle
// built by incidents.Build that names it. n varies the attacker address and port.
func writeSession(t testing.TB, ctx context.Context, store incidents.Store, s incidents.Sensor, n int) (*incidents.Bundle, string) {
	t.Helper()
	start := time.Now().UTC()
	id := uuid.NewString()
	client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + n%250)}), uint16(40000+n%20000))
	server := netip.MustParseAddrPort("192.0.2.10:502")
	pcapKey, bundleKey, err := incidents.Keys(s.ID, start, id)
	if err != nil {
		t.Fatal(err)
	}
	pcap := testPCAP(client, server, start)
	sum := sha256.Sum256(pcap)
	sha := hex.EncodeToString(sum[:])
	if err := store.Put(ctx, pcapKey, pcap, incidents.Meta{ContentType: incidents.PCAPMimeType, SHA256: sha}); err != nil {
		t.Fatal(err)
	}
	sess := incidents.Session{
		ID: id, Protocol: "modbus", Service: "mbap", Transport: "tcp", Client: client, Server: server,
		Start: start, End: start.Add(1200 * time.Millisecond), Reason: "fin",
		ClientPackets: 6, ServerPackets: 5, ClientBytes: 420, ServerBytes: 380,
		PCAPs: []incidents.PCAP{{Key: pcapKey, URL: store.URL(pcapKey), SHA256: sha, Size: int64(len(pcap)), Part: 1}},
		Events: []incidents.Event{
			{Time: start.Add(100 * time.Millisecond), Protocol: "modbus", Op: "read_holding_registers", Code: 3, Unit: 1, Area: "holding_registers", Quantity: 8},
			{Time: start.Add(300 * time.Millisecond), Protocol: "modbus", Op: "write_single_register", Code: 6, Unit: 1, Area: "holding_registers",
				Address: 40 + n, Quantity: 1, Data: []byte{0xde, 0xad}, Write: n%2 == 0, Detail: map[string]string{"note": hostileDetail}},
		},
	}
	b, err := incidents.Build(s, sess, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(ctx, bundleKey, body, incidents.Meta{ContentType: incidents.BundleMimeType}); err != nil {
		t.Fatal(err)
	}
	return b, bundleKey
}

// objKey identifies one version of one object.
type objKey struct{ id, version string }

// expected computes, independently of the server, the (id, version) pairs a collection
// must hold for these bundles, and the JSON of each.
func expected(t testing.TB, bundles []*incidents.Bundle, col colKind) map[objKey]map[string]any {
	t.Helper()
	out := map[objKey]map[string]any{}
	for _, b := range bundles {
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Objects []map[string]any `json:"objects"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		refs := map[string]bool{}
		for _, o := range doc.Objects {
			if o["type"] == "indicator" || o["type"] == "sighting" {
				refs[str(o["created_by_ref"])] = true
				if l, ok := o["where_sighted_refs"].([]any); ok {
					for _, r := range l {
						refs[str(r)] = true
					}
				}
			}
		}
		for _, o := range doc.Objects {
			typ := str(o["type"])
			if col == colIndicators && typ != "indicator" && typ != "sighting" && !(typ == "identity" && refs[str(o["id"])]) {
				continue
			}
			k := objKey{id: str(o["id"]), version: str(o["modified"])}
			if k.version == "" {
				k.version = str(o["created"])
			}
			if _, dup := out[k]; !dup {
				out[k] = o
			}
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// keyOf returns the objKey of a served object (unversioned objects: version "").
func keyOf(o map[string]any) objKey {
	k := objKey{id: str(o["id"]), version: str(o["modified"])}
	if k.version == "" {
		k.version = str(o["created"])
	}
	return k
}

type env struct {
	store incidents.Store
	srv   *Server
	hs    *httptest.Server
}

// newEnv starts a server over store behind a real HTTP listener.
func newEnv(t testing.TB, store incidents.Store, cfg Config) *env {
	t.Helper()
	cfg.Store = store
	if cfg.VisibilityDelay == 0 {
		cfg.VisibilityDelay = testDelay
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = testRefresh
	}
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &env{store: store, srv: srv, hs: hs}
}

func folderStore(t testing.TB) *incidents.FolderStore {
	t.Helper()
	st, err := incidents.NewFolderStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// s3Store returns a store on a fresh bucket of the test MinIO server, removed at the
// end of the test.
func s3Store(t testing.TB) *incidents.S3Store {
	t.Helper()
	e := testenv.RequireS3(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	cfg := incidents.S3Config{Endpoint: e.Endpoint, AccessKey: e.AccessKey, SecretKey: e.SecretKey,
		Bucket: "pcapot-api-test-" + hex.EncodeToString(b[:]), Insecure: true, Region: "us-east-1"}
	st, err := incidents.NewS3Store(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := minio.New(e.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(e.AccessKey, e.SecretKey, ""), BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		for o := range admin.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err == nil {
				_ = admin.RemoveObject(ctx, cfg.Bucket, o.Key, minio.RemoveObjectOptions{})
			}
		}
		if err := admin.RemoveBucket(ctx, cfg.Bucket); err != nil {
			t.Errorf("remove test bucket %s: %v", cfg.Bucket, err)
		}
	})
	return st
}

// waitIndexed refreshes until the server has indexed n bundles.
func waitIndexed(t testing.TB, srv *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := srv.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := srv.Stats().Bundles; got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("indexed %d of %d bundles", srv.Stats().Bundles, n)
		}
		time.Sleep(testRefresh)
	}
}

// client is a plain HTTP client of the API.
type client struct {
	t      testing.TB
	hc     *http.Client
	accept string
	auth   func(*http.Request)
}

func newClient(t testing.TB) *client {
	return &client{t: t, hc: &http.Client{Timeout: 30 * time.Second}, accept: TAXIIMediaType}
}

// get fetches rawURL with params appended.
func (c *client) get(rawURL string, params url.Values) (*http.Response, []byte) {
	c.t.Helper()
	if len(params) > 0 {
		rawURL += "?" + params.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.accept != "" {
		req.Header.Set("Accept", c.accept)
	}
	if c.auth != nil {
		c.auth(req)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, body
}

func decode(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, body)
	}
	return m
}

var (
	checkerOnce sync.Once
	checker     *stixcheck.Checker
	checkerErr  error
)

// validate checks one served object against the OASIS schemas (and pcapot's ICS
// extension schema) with stixcheck.
func validate(t testing.TB, obj []byte) {
	t.Helper()
	checkerOnce.Do(func() {
		checker, checkerErr = stixcheck.New(schemaDir, stixcheck.WithExtensionSchema(incidents.ICSExtensionID, incidents.ICSExtensionSchema()))
	})
	if checkerErr != nil {
		t.Fatal(checkerErr)
	}
	for _, err := range checker.CheckObject(obj) {
		t.Errorf("served object does not validate: %v\n%s", err, obj)
	}
}

func (e *env) collURL(id string) string {
	return e.hs.URL + e.srv.APIRootPath() + "collections/" + id + "/"
}
