package eventlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testStart = time.Date(2026, 3, 14, 9, 26, 53, 589793000, time.UTC)
	testSess  = Session{
		ID: "3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f", Protocol: "modbus", Service: "mbap", Transport: "tcp",
		Client: netip.MustParseAddrPort("203.0.113.7:51234"), Server: netip.MustParseAddrPort("[::ffff:192.0.2.10]:502"),
		Start: testStart,
	}
	testObserver = Observer{Name: "plant-a-01", SensorID: "plant-a-01", Hostname: "hp1", IPs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}, Version: "0.1.0"}
	// hostile is attacker text: quotes, a newline, a NUL, HTML, U+2028 and bytes that
	// are not UTF-8.
	hostile = "x\"}\n{\"evil\":1}\x00<script>\u2028\xff\xfe"
)

func endedSession() Session {
	s := testSess
	s.End = testStart.Add(1500 * time.Millisecond)
	s.ClientPackets, s.ServerPackets, s.ClientBytes, s.ServerBytes = 12, 10, 840, 610
	s.PCAPs = []PCAP{{Part: 1, Key: "plant-a-01/2026/03/14/3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f.pcap",
		URL:    "http://127.0.0.1:9000/pcaps/plant-a-01/2026/03/14/3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f.pcap",
		SHA256: strings.Repeat("ab", 32), Size: 2048, MimeType: "application/vnd.tcpdump.pcap"}}
	s.BundleID = "bundle--0c3b9c61-5f4e-4d8a-9a1b-2c3d4e5f6a7b"
	s.IncidentID = "incident--1c3b9c61-5f4e-4d8a-9a1b-2c3d4e5f6a7b"
	s.ObservedDataID = "observed-data--2c3b9c61-5f4e-4d8a-9a1b-2c3d4e5f6a7b"
	s.IndicatorID = "indicator--3c3b9c61-5f4e-4d8a-9a1b-2c3d4e5f6a7b"
	s.SightingID = "sighting--4c3b9c61-5f4e-4d8a-9a1b-2c3d4e5f6a7b"
	s.Reason = "fin"
	s.Events, s.EventsDropped = 2, 0
	return s
}

var testEvents = []Event{
	{Time: testStart.Add(100 * time.Millisecond), Protocol: "modbus", Op: "read_holding_registers", Code: 3, Unit: 1, Area: "holding_registers", Address: 0, Quantity: 10},
	{Time: testStart.Add(200 * time.Millisecond), Protocol: "modbus", Op: "write_multiple_registers", Code: 16, Unit: 1, Area: hostile,
		Address: 40, Quantity: 2, Data: []byte{0x00, 0x01, 0xff, 0x0a}, Exception: 2, Write: true,
		Detail: map[string]string{"community": hostile, "User.Agent": "curl/8"}},
}

// tail reads n complete lines from path while it is being written, as a log shipper
// would, and decodes each with encoding/json.
func tail(t *testing.T, path string, n int, timeout time.Duration) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var f *os.File
	for {
		var err error
		if f, err = os.Open(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open %s: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out []map[string]any
	var partial []byte
	for len(out) < n {
		b, err := r.ReadBytes('\n')
		partial = append(partial, b...)
		if errors.Is(err, io.EOF) {
			if time.Now().After(deadline) {
				t.Fatalf("tail: %d of %d records after %v", len(out), n, timeout)
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(partial))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("record %d is not JSON: %v\n%s", len(out)+1, err, partial)
		}
		if dec.More() {
			t.Fatalf("record %d: more than one JSON value on a line: %s", len(out)+1, partial)
		}
		out = append(out, m)
		partial = nil
	}
	return out
}

// field returns the value at a dotted path ("event.type"), treating keys with dots
// (like "@timestamp") literally at the top level.
func field(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

type kind int

const (
	str kind = iota
	integer
	boolean
	strList
	object
	timestamp
	ipAddr
)

func checkKind(t *testing.T, rec map[string]any, path string, k kind) {
	t.Helper()
	v, ok := field(rec, path)
	if !ok {
		t.Errorf("%s missing", path)
		return
	}
	switch k {
	case str, timestamp, ipAddr:
		s, ok := v.(string)
		if !ok || s == "" {
			t.Errorf("%s = %#v, want a non-empty string", path, v)
			return
		}
		if k == timestamp {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil || !strings.HasSuffix(s, "Z") {
				t.Errorf("%s = %q, want an RFC 3339 UTC date: %v", path, s, err)
			}
		}
		if k == ipAddr {
			if _, err := netip.ParseAddr(s); err != nil {
				t.Errorf("%s = %q, want an IP address", path, s)
			}
		}
	case integer:
		n, ok := v.(json.Number)
		if !ok {
			t.Errorf("%s = %#v, want a number", path, v)
			return
		}
		if _, err := n.Int64(); err != nil {
			t.Errorf("%s = %s, want an integer", path, n)
		}
	case boolean:
		if _, ok := v.(bool); !ok {
			t.Errorf("%s = %#v, want a boolean", path, v)
		}
	case strList:
		l, ok := v.([]any)
		if !ok || len(l) == 0 {
			t.Errorf("%s = %#v, want a non-empty list", path, v)
			return
		}
		for _, e := range l {
			if _, ok := e.(string); !ok {
				t.Errorf("%s has %#v, want strings", path, e)
			}
		}
	case object:
		if _, ok := v.(map[string]any); !ok {
			t.Errorf("%s = %#v, want an object", path, v)
		}
	}
}

func want(t *testing.T, rec map[string]any, path string, value any) {
	t.Helper()
	got, ok := field(rec, path)
	if !ok {
		t.Errorf("%s missing, want %v", path, value)
		return
	}
	if n, isNum := got.(json.Number); isNum {
		got = n.String()
	}
	if fmt.Sprint(got) != fmt.Sprint(value) {
		t.Errorf("%s = %v, want %v", path, got, value)
	}
}

func absent(t *testing.T, rec map[string]any, path string) {
	t.Helper()
	if v, ok := field(rec, path); ok {
		t.Errorf("%s = %v, want absent", path, v)
	}
}

func TestNDJSONTailECSTypes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	now := time.Date(2026, 3, 14, 9, 27, 0, 0, time.UTC)
	l, err := New(Config{Path: path, Observer: testObserver, Now: func() time.Time { return now }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the reader runs while the records are written
		defer wg.Done()
		recs = tail(t, path, 4, 10*time.Second)
	}()
	l.SessionStart(testSess)
	for _, e := range testEvents {
		l.Event(&EventRecord{Session: testSess, Event: e})
	}
	l.SessionEnd(endedSession())
	wg.Wait()
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Written != 4 || st.Dropped != 0 || st.Errors != 0 {
		t.Errorf("stats = %+v", st)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records", len(recs))
	}
	start, read, write, end := recs[0], recs[1], recs[2], recs[3]
	community := CommunityID(0, ProtoTCP, netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("192.0.2.10"), 51234, 502)

	common := []struct {
		path string
		k    kind
	}{
		{"@timestamp", timestamp}, {"ecs.version", str}, {"message", str},
		{"event.kind", str}, {"event.category", strList}, {"event.type", strList}, {"event.action", str},
		{"event.dataset", str}, {"event.module", str}, {"event.id", str}, {"event.created", timestamp},
		{"event.severity", integer},
		{"source.ip", ipAddr}, {"source.address", str}, {"source.port", integer},
		{"destination.ip", ipAddr}, {"destination.address", str}, {"destination.port", integer},
		{"network.transport", str}, {"network.protocol", str}, {"network.type", str}, {"network.iana_number", str},
		{"network.community_id", str}, {"network.direction", str},
		{"observer.name", str}, {"observer.type", str}, {"observer.vendor", str}, {"observer.product", str},
		{"observer.hostname", str}, {"observer.ip", strList}, {"related.ip", strList},
		{"pcapot.session_id", str}, {"pcapot.sensor_id", str},
	}
	for i, rec := range recs {
		t.Run(fmt.Sprintf("record %d common fields", i+1), func(t *testing.T) {
			for _, c := range common {
				checkKind(t, rec, c.path, c.k)
			}
			want(t, rec, "ecs.version", ECSVersion)
			want(t, rec, "event.kind", "event")
			want(t, rec, "event.category", []any{"network"})
			want(t, rec, "event.module", "pcapot")
			want(t, rec, "source.ip", "203.0.113.7")
			want(t, rec, "source.port", 51234)
			want(t, rec, "destination.ip", "192.0.2.10") // v4-mapped address unmapped
			want(t, rec, "destination.port", 502)
			want(t, rec, "network.transport", "tcp")
			want(t, rec, "network.protocol", "modbus")
			want(t, rec, "network.type", "ipv4")
			want(t, rec, "network.iana_number", "6")
			want(t, rec, "network.community_id", community)
			want(t, rec, "network.direction", "ingress")
			want(t, rec, "observer.type", "honeypot")
			want(t, rec, "observer.vendor", "pcapot")
			want(t, rec, "related.ip", []any{"203.0.113.7", "192.0.2.10"})
			want(t, rec, "pcapot.session_id", testSess.ID)
			want(t, rec, "pcapot.service", "mbap")
			want(t, rec, "event.created", "2026-03-14T09:27:00.000000Z")
		})
	}
	t.Run("session start", func(t *testing.T) {
		want(t, start, "@timestamp", "2026-03-14T09:26:53.589793Z")
		want(t, start, "event.type", []any{"connection", "start"})
		want(t, start, "event.action", ActionSessionStart)
		want(t, start, "event.dataset", DatasetSession)
		want(t, start, "event.start", "2026-03-14T09:26:53.589793Z")
		for _, p := range []string{"event.end", "event.duration", "source.bytes", "network.bytes", "file", "pcapot.stix"} {
			absent(t, start, p)
		}
	})
	t.Run("read event", func(t *testing.T) {
		want(t, read, "event.type", []any{"protocol"})
		want(t, read, "event.action", "read_holding_registers")
		want(t, read, "event.dataset", DatasetProtocol)
		want(t, read, "event.outcome", "success")
		checkKind(t, read, "pcapot.ics.code", integer)
		checkKind(t, read, "pcapot.ics.unit", integer)
		checkKind(t, read, "pcapot.ics.address", integer)
		checkKind(t, read, "pcapot.ics.quantity", integer)
		checkKind(t, read, "pcapot.ics.exception", integer)
		checkKind(t, read, "pcapot.ics.write", boolean)
		want(t, read, "pcapot.ics.code", 3)
		want(t, read, "pcapot.ics.quantity", 10)
		want(t, read, "pcapot.ics.write", false)
		absent(t, read, "pcapot.ics.data_hex")
	})
	t.Run("write event with hostile text", func(t *testing.T) {
		want(t, write, "event.outcome", "failure")
		want(t, write, "pcapot.ics.exception", 2)
		want(t, write, "pcapot.ics.write", true)
		want(t, write, "pcapot.ics.data_hex", "0001ff0a")
		want(t, write, "pcapot.ics.data_len", 4)
		area, _ := field(write, "pcapot.ics.area")
		if area != strings.ToValidUTF8(hostile, "\uFFFD") {
			t.Errorf("area = %q, want the hostile text with U+FFFD replacements", area)
		}
		want(t, write, "pcapot.ics.area_hex", hex.EncodeToString([]byte(hostile)))
		want(t, write, "pcapot.ics.detail.community", strings.ToValidUTF8(hostile, "\uFFFD"))
		want(t, write, "pcapot.ics.detail_hex.community", hex.EncodeToString([]byte(hostile)))
		want(t, write, "pcapot.ics.detail.user_agent", "curl/8") // key mapped to [a-z0-9_]
		checkKind(t, write, "pcapot.ics.detail", object)
		if _, ok := field(write, "evil"); ok {
			t.Error("attacker text injected a top-level field")
		}
	})
	t.Run("session end", func(t *testing.T) {
		want(t, end, "@timestamp", "2026-03-14T09:26:55.089793Z")
		want(t, end, "event.type", []any{"connection", "end"})
		want(t, end, "event.action", ActionSessionEnd)
		want(t, end, "event.reason", "fin")
		checkKind(t, end, "event.duration", integer)
		want(t, end, "event.duration", 1500*time.Millisecond.Nanoseconds())
		checkKind(t, end, "event.start", timestamp)
		checkKind(t, end, "event.end", timestamp)
		for _, p := range []string{"source.bytes", "source.packets", "destination.bytes", "destination.packets", "network.bytes", "network.packets", "file.size", "pcapot.kernel_drops", "pcapot.events"} {
			checkKind(t, end, p, integer)
		}
		want(t, end, "source.packets", 12)
		want(t, end, "destination.bytes", 610)
		want(t, end, "network.bytes", 1450)
		want(t, end, "network.packets", 22)
		want(t, end, "file.hash.sha256", strings.Repeat("ab", 32))
		want(t, end, "file.name", "3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f.pcap")
		want(t, end, "pcapot.pcap.url", endedSession().PCAPs[0].URL)
		want(t, end, "pcapot.stix.incident_id", endedSession().IncidentID)
		want(t, end, "pcapot.stix.observed_data_id", endedSession().ObservedDataID)
		want(t, end, "pcapot.stix.indicator_id", endedSession().IndicatorID)
		want(t, end, "pcapot.stix.sighting_id", endedSession().SightingID)
		checkKind(t, end, "pcapot.possibly_incomplete", boolean)
	})
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(raw, []byte("\n")); n != 4 {
		t.Errorf("file has %d lines, want 4 (attacker newlines must stay escaped)", n)
	}
	for _, b := range [][]byte{[]byte("<script>"), []byte("\xff"), {0}} {
		if bytes.Contains(raw, b) {
			t.Errorf("raw file contains %q unescaped", b)
		}
	}
}

func TestStdout(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Config{Path: "-", Stdout: &buf, Observer: testObserver}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.SessionStart(testSess)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["@timestamp"] == nil {
		t.Fatalf("stdout got %q (%v)", buf.String(), err)
	}
	if err := l.Close(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	l.SessionStart(testSess) // after Close: dropped, no panic
	if st := l.Stats(); st.Dropped != 1 || st.Written != 1 {
		t.Errorf("stats after close = %+v", st)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.ndjson")
	const maxBytes = 4096
	l, err := New(Config{Path: path, MaxBytes: maxBytes, MaxFiles: 2, Observer: testObserver}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := 0; i < n; i++ {
		s := testSess
		s.ID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		l.SessionStart(s)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, name := range []string{"events.ndjson", "events.ndjson.1", "events.ndjson.2"} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(raw) > maxBytes {
			t.Errorf("%s has %d bytes, over %d", name, len(raw), maxBytes)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
			var m struct {
				Pcapot struct {
					SessionID string `json:"session_id"`
				} `json:"pcapot"`
			}
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("%s: bad line %q: %v", name, line, err)
			}
			seen[m.Pcapot.SessionID] = true
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "events.ndjson.3")); !os.IsNotExist(err) {
		t.Errorf("events.ndjson.3 exists (%v): more files kept than MaxFiles", err)
	}
	// The kept files hold the newest records, without gaps.
	last := fmt.Sprintf("00000000-0000-4000-8000-%012d", n-1)
	if !seen[last] {
		t.Errorf("newest record %s not kept", last)
	}
	oldest := n
	for i := n - 1; i >= 0; i-- {
		if !seen[fmt.Sprintf("00000000-0000-4000-8000-%012d", i)] {
			break
		}
		oldest = i
	}
	if len(seen) != n-oldest {
		t.Errorf("kept %d records but only the newest %d are contiguous", len(seen), n-oldest)
	}
	if st := l.Stats(); st.Written != n || st.Errors != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	release chan struct{}
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.buf.Write(p)
}

func TestNonBlockingDrops(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	l, err := New(Config{Path: "-", Stdout: w, QueueSize: 4, Observer: testObserver}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			l.SessionStart(testSess)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("logging blocked on a stuck writer")
	}
	close(w.release)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Dropped == 0 || st.Written+st.Dropped != n {
		t.Errorf("stats = %+v, want drops and written+dropped = %d", st, n)
	}
}

func TestCloseTimeout(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	l, err := New(Config{Path: "-", Stdout: w, QueueSize: 16, Observer: testObserver}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		l.SessionStart(testSess)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close with a stuck writer = %v, want a deadline error", err)
	}
	close(w.release)
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no output", Config{}},
		{"directory as file", Config{Path: dir}},
		{"missing parent", Config{Path: filepath.Join(dir, "no", "such", "x.ndjson")}},
		{"bad syslog network", Config{Path: "-", Stdout: io.Discard, Syslog: &SyslogConfig{Network: "quic", Address: "127.0.0.1:514"}}},
		{"bad syslog address", Config{Path: "-", Stdout: io.Discard, Syslog: &SyslogConfig{Network: "udp", Address: "nowhere"}}},
		{"bad facility", Config{Path: "-", Stdout: io.Discard, Syslog: &SyslogConfig{Network: "udp", Address: "127.0.0.1:514", Facility: 24}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := New(tc.cfg, nil); err == nil {
				_ = l.Close(context.Background())
				t.Error("New succeeded")
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Config{Path: "-", Stdout: &buf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	detail := map[string]string{}
	for i := 0; i < 100; i++ {
		detail[fmt.Sprintf("k%03d", i)] = "v"
	}
	l.Event(&EventRecord{Session: testSess, Event: Event{Op: "http_request", Area: strings.Repeat("/a", 5000), Data: bytes.Repeat([]byte{1}, 5000), Detail: detail, Unit: -1}})
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want(t, m, "pcapot.ics.truncated", true)
	want(t, m, "pcapot.ics.data_len", 5000)
	absent(t, m, "pcapot.ics.unit")
	if v, _ := field(m, "pcapot.ics.data_hex"); len(v.(string)) != 2*maxDataBytes {
		t.Errorf("data_hex has %d hex digits, want %d", len(v.(string)), 2*maxDataBytes)
	}
	if v, _ := field(m, "pcapot.ics.area"); len(v.(string)) != maxStringBytes {
		t.Errorf("area has %d bytes, want %d", len(v.(string)), maxStringBytes)
	}
	if v, _ := field(m, "pcapot.ics.detail"); len(v.(map[string]any)) != maxDetailFields {
		t.Errorf("detail has %d keys, want %d", len(v.(map[string]any)), maxDetailFields)
	}
}

func TestProbeRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.ndjson")
	now := time.Date(2026, 3, 14, 9, 27, 0, 0, time.UTC)
	l, err := New(Config{Path: path, Observer: testObserver, Now: func() time.Time { return now }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := now.Add(-30 * time.Second)
	for _, p := range []Probe{
		{Source: netip.MustParseAddr("::ffff:198.51.100.9"), Ports: []uint16{102, 502}, Flows: 3, Packets: 7, First: first, Last: first.Add(2 * time.Second)},
		{Source: netip.MustParseAddr("2001:db8::9"), Ports: []uint16{161}, Flows: 1, Packets: 1, First: first, Last: first},
	} {
		l.Probe(p)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := tail(t, path, 2, 10*time.Second)
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	v4, v6 := recs[0], recs[1]
	for _, rec := range recs {
		for _, c := range []struct {
			path string
			k    kind
		}{
			{"@timestamp", timestamp}, {"event.created", timestamp}, {"event.start", timestamp}, {"event.end", timestamp},
			{"event.duration", integer}, {"event.id", str}, {"source.ip", ipAddr}, {"network.packets", integer},
			{"pcapot.probe.flows", integer}, {"pcapot.sensor_id", str}, {"message", str},
		} {
			checkKind(t, rec, c.path, c.k)
		}
		want(t, rec, "event.kind", "event")
		want(t, rec, "event.category", []any{"network"})
		want(t, rec, "event.type", []any{"connection"})
		want(t, rec, "event.action", ActionProbeSummary)
		want(t, rec, "event.dataset", DatasetProbe)
		for _, p := range []string{"pcapot.session_id", "source.port", "destination", "network.community_id", "pcapot.ics"} {
			absent(t, rec, p) // a probe is no session
		}
	}
	want(t, v4, "source.ip", "198.51.100.9") // v4-mapped address unmapped
	want(t, v4, "network.type", "ipv4")
	want(t, v4, "pcapot.probe.ports", []any{102, 502})
	want(t, v4, "pcapot.probe.flows", 3)
	want(t, v4, "network.packets", 7)
	want(t, v4, "event.duration", (2 * time.Second).Nanoseconds())
	want(t, v4, "@timestamp", "2026-03-14T09:26:32.000000Z")
	want(t, v6, "source.ip", "2001:db8::9")
	want(t, v6, "network.type", "ipv6")
	want(t, v6, "related.ip", []any{"2001:db8::9"})
}
