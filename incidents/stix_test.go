package incidents_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/incidents/stixcheck"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// schemaDir is the OASIS schemas/ tree, beside the clone (shared/ in CI).
const schemaDir = "../../shared/stix2-json-schemas"

var loadChecker = sync.OnceValues(func() (*stixcheck.Checker, error) {
	return stixcheck.New(schemaDir,
		stixcheck.WithExtensionSchema(incidents.ICSExtensionID, incidents.ICSExtensionSchema()))
})

func checker(t *testing.T) *stixcheck.Checker {
	t.Helper()
	c, err := loadChecker()
	if err != nil {
		t.Fatalf("load the STIX schemas: %v", err)
	}
	return c
}

var (
	t0       = time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC)
	buildNow = time.Date(2026, 3, 14, 9, 30, 0, 123456789, time.UTC)
	sensor   = incidents.Sensor{
		ID:              "plant-a-01",
		Name:            "Plant A honeypot 01",
		IdentityID:      "identity--0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
		IdentityCreated: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Vendor:          "Schneider Electric",
		Product:         "BMX P34 2020",
	}
)

const (
	sha1Hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	sha2Hex = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
)

func pcapFor(t *testing.T, sessionID string, start time.Time, part int, sha string, size int64) incidents.PCAP {
	t.Helper()
	key, _, err := incidents.Keys(sensor.ID, start, sessionID)
	if err != nil {
		t.Fatal(err)
	}
	if key, err = incidents.PartKey(key, part); err != nil {
		t.Fatal(err)
	}
	return incidents.PCAP{Key: key, URL: "http://127.0.0.1:9000/pcapot/" + key, SHA256: sha, Size: size, Part: part}
}

// sessions are the inputs every STIX test runs over.
func sessions(t *testing.T) map[string]incidents.Session {
	t.Helper()
	modbus := incidents.Session{
		ID: "3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f", Protocol: "modbus", Service: "mbap", Transport: "tcp",
		Client: netip.MustParseAddrPort("203.0.113.7:50123"), Server: netip.MustParseAddrPort("192.0.2.10:502"),
		Start: t0, End: t0.Add(2*time.Second + 345678*time.Microsecond), Reason: "fin",
		ClientPackets: 9, ServerPackets: 7, ClientBytes: 702, ServerBytes: 611,
		Filter:         "tcp and ((src host 203.0.113.7 and src port 50123 and dst host 192.0.2.10 and dst port 502) or (src host 192.0.2.10 and src port 502 and dst host 203.0.113.7 and dst port 50123))",
		FilterBytecode: "(000) ldh [12]\n(001) jeq #0x800 jt 2 jf 20\n",
		Events: []incidents.Event{
			{Time: t0.Add(100 * time.Millisecond), Protocol: "modbus", Op: "read_holding_registers", Code: 3, Unit: 1, Area: "holding_registers", Address: 0, Quantity: 10},
			{Time: t0.Add(200 * time.Millisecond), Protocol: "modbus", Op: "write_single_register", Code: 6, Unit: 1, Area: "holding_registers", Address: 40, Quantity: 1, Data: []byte{0x00, 0xff}, Write: true},
			{Time: t0.Add(300 * time.Millisecond), Protocol: "modbus", Op: "read_coils", Code: 1, Unit: 0, Area: "coils", Address: 9999, Quantity: 2000, Exception: 2},
		},
	}
	modbus.PCAPs = []incidents.PCAP{pcapFor(t, modbus.ID, t0, 1, sha1Hex, 1830)}

	snmp := incidents.Session{
		ID: "b7c1d2e3-f405-4617-8829-3a4b5c6d7e8f", Protocol: "snmp", Service: "snmp", Transport: "udp",
		Client: netip.MustParseAddrPort("[2001:db8::7]:40000"), Server: netip.MustParseAddrPort("[2001:db8::10]:161"),
		Start: t0, End: t0.Add(30 * time.Second), Reason: "idle",
		ClientPackets: 2, ServerPackets: 2, ClientBytes: 120, ServerBytes: 300,
		PossiblyIncomplete: true, Drops: 3,
		Events: []incidents.Event{{Time: t0, Protocol: "snmp", Op: "get_request", Code: 0xa0, Unit: -1, Area: "1.3.6.1.2.1.1.1.0",
			Detail: map[string]string{"community": "public", "version": "2c"}}},
	}
	snmp.PCAPs = []incidents.PCAP{
		pcapFor(t, snmp.ID, t0, 2, sha2Hex, 900), // out of order on purpose
		pcapFor(t, snmp.ID, t0, 1, sha1Hex, 5000),
	}
	snmp.PCAPs[0].MimeType = incidents.PCAPNGMimeType

	hostile := modbus
	hostile.ID = "c0ffee00-1234-4abc-8def-0123456789ab"
	hostile.Client = netip.MustParseAddrPort("[::ffff:198.51.100.2]:1234") // IPv4-mapped
	hostile.Server = netip.MustParseAddrPort("[::ffff:192.0.2.10]:502")
	hostile.PCAPs = []incidents.PCAP{pcapFor(t, hostile.ID, t0, 1, sha2Hex, 77)}
	hostile.Events = []incidents.Event{{
		Time: t0, Protocol: "modbus\x00", Op: "op\"'\n\r\t\x00<script>alert(1)</script>", Code: -5, Unit: 300,
		Area: "area\xff\xfe\x80 bytes", Address: -1, Quantity: 1 << 20, Data: []byte("\x00\x01\xff"), Write: true,
		Detail: map[string]string{
			"User-Agent":    "<img src=x onerror=alert(1)>",
			"user_agent":    "collides after mapping",
			"":              "empty key",
			"bin\xff":       "\xc3\x28 invalid \x00 NUL",
			"quote\"key\n":  `'; DROP TABLE--`,
			"unicode-é-key": "ok é 😀 \u2028",
		},
	}}

	many := modbus
	many.ID = "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6"
	many.PCAPs = []incidents.PCAP{pcapFor(t, many.ID, t0, 1, sha1Hex, 1)}
	many.Events = make([]incidents.Event, 2000)
	for i := range many.Events {
		many.Events[i] = incidents.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Protocol: "modbus",
			Op: "write_multiple_registers", Code: 16, Unit: i % 248, Area: "holding_registers", Address: i, Quantity: 2,
			Data: []byte{byte(i), byte(i >> 8), 0, 1}, Write: true}
	}
	many.EventsDropped = 12345

	bare := incidents.Session{ // no pcap stored, no events, same host, clock stepped back
		ID: "e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9", Protocol: "s7comm", Service: "iso-tsap", Transport: "tcp",
		Client: netip.MustParseAddrPort("127.0.0.1:41000"), Server: netip.MustParseAddrPort("127.0.0.1:102"),
		Start: t0, End: t0.Add(-time.Second),
	}

	zoned := snmp
	zoned.ID = "f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f"
	zoned.Client = netip.MustParseAddrPort("[fe80::1%eth0]:40000")
	zoned.Server = netip.MustParseAddrPort("[fe80::2%eth0]:161")
	zoned.PCAPs = nil

	upload := modbus
	upload.ID = "a9b8c7d6-e5f4-4a3b-9c2d-1e0f9a8b7c6d"
	upload.Protocol, upload.Service = "ftp", "ftp"
	upload.Server = netip.MustParseAddrPort("192.0.2.10:21")
	upload.PCAPs = []incidents.PCAP{pcapFor(t, upload.ID, t0, 1, sha1Hex, 4096)}
	pk, _, err := incidents.Keys(sensor.ID, t0, upload.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"../../etc/passwd\x00<b>.bin", "firmware.bin"} {
		key, err := incidents.FileKey(pk, i+1)
		if err != nil {
			t.Fatal(err)
		}
		sum := []string{sha2Hex, sha1Hex}[i]
		upload.Files = append(upload.Files, incidents.File{Key: key, URL: "https://s3.example/bucket/" + key, SHA256: sum,
			Size: int64(100 * (i + 1)), Name: name, Protocol: "ftp", Time: t0.Add(time.Second), Truncated: i == 0})
	}

	return map[string]incidents.Session{
		"ftp_upload":          upload,
		"modbus_ipv4_tcp":     modbus,
		"snmp_ipv6_udp_parts": snmp,
		"hostile_strings":     hostile,
		"many_events":         many,
		"bare_same_host":      bare,
		"ipv6_link_local":     zoned,
	}
}

// seeded returns a deterministic source for the random UUIDs of a build.
func seeded(name string) incidents.BuildOption {
	var seed [32]byte
	copy(seed[:], name)
	return incidents.WithRandom(rand.NewChaCha8(seed))
}

func build(t *testing.T, name string, sess incidents.Session) []byte {
	t.Helper()
	b, err := incidents.Build(sensor, sess, buildNow, seeded(name))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	out, err := b.JSON()
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	return out
}

// TestBundlesValidate validates every object of every built bundle against the OASIS
// schemas and the STIX MUST rules (package stixcheck).
func TestBundlesValidate(t *testing.T) {
	c := checker(t)
	for name, sess := range sessions(t) {
		t.Run(name, func(t *testing.T) {
			out := build(t, name, sess)
			for _, err := range c.CheckBundle(out) {
				t.Error(err)
			}
			// Built with crypto/rand ids too.
			b, err := incidents.Build(sensor, sess, buildNow)
			if err != nil {
				t.Fatal(err)
			}
			out2, err := b.JSON()
			if err != nil {
				t.Fatal(err)
			}
			for _, err := range c.CheckBundle(out2) {
				t.Error(err)
			}
		})
	}
}

func TestBuildDeterministic(t *testing.T) {
	for name, sess := range sessions(t) {
		t.Run(name, func(t *testing.T) {
			a, b := build(t, name, sess), build(t, name, sess)
			if !bytes.Equal(a, b) {
				t.Error("same input and id source gave different bytes")
			}
			// SCO ids do not depend on the random source or on the build time.
			x, err := incidents.Build(sensor, sess, buildNow.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			y, err := incidents.Build(sensor, sess, buildNow, seeded(name))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := scoIDs(x), scoIDs(y); got != want {
				t.Errorf("SCO ids differ between builds:\n%s\n%s", got, want)
			}
		})
	}
}

func scoIDs(b *incidents.Bundle) string {
	var ids []string
	for _, o := range b.Objects {
		switch o.(type) {
		case *incidents.NetworkTraffic, *incidents.Addr, *incidents.Artifact:
			ids = append(ids, o.STIXID())
		}
	}
	return strings.Join(ids, " ")
}

func TestGolden(t *testing.T) {
	all := sessions(t)
	for _, name := range []string{"modbus_ipv4_tcp", "snmp_ipv6_udp_parts", "hostile_strings", "bare_same_host", "ftp_upload"} {
		t.Run(name, func(t *testing.T) {
			got := build(t, name, all[name])
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("bundle differs from %s (go test -update rewrites it):\n%s", path, firstDiff(got, want))
			}
		})
	}
}

func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, gl, wl)
		}
	}
	return ""
}

// objects decodes a bundle into generic objects keyed by type (first of each type).
func objects(t *testing.T, bundle []byte) (map[string]any, []any) {
	t.Helper()
	var b map[string]any
	d := json.NewDecoder(bytes.NewReader(bundle))
	d.UseNumber()
	if err := d.Decode(&b); err != nil {
		t.Fatal(err)
	}
	return b, b["objects"].([]any)
}

func firstOf(list []any, typ string) map[string]any {
	for _, o := range list {
		if m := o.(map[string]any); m["type"] == typ {
			return m
		}
	}
	return nil
}

// TestSCOIDVectors: a session from the spec's example address gets the spec's id.
func TestSCOIDVectors(t *testing.T) {
	sess := sessions(t)["hostile_strings"] // client ::ffff:198.51.100.2, emitted as IPv4
	_, list := objects(t, build(t, "vector", sess))
	nt := firstOf(list, "network-traffic")
	if got, want := nt["src_ref"], "ipv4-addr--9cf4a8ec-7640-5f40-a006-79942896168b"; got != want {
		t.Errorf("src_ref = %v, want the spec's id of 198.51.100.2 %s", got, want)
	}
	if p := nt["protocols"].([]any); p[0] != "ipv4" {
		t.Errorf("protocols = %v, want ipv4 first for an IPv4-mapped peer", p)
	}
}

// TestCheckerCatchesBrokenObjects proves the validator fails: each case breaks one rule
// in a valid bundle and expects an error naming it.
func TestCheckerCatchesBrokenObjects(t *testing.T) {
	c := checker(t)
	valid := build(t, "negative", sessions(t)["modbus_ipv4_tcp"])
	if errs := c.CheckBundle(valid); len(errs) > 0 {
		t.Fatalf("baseline bundle is invalid: %v", errs)
	}
	set := func(typ, prop string, v any) func([]any) {
		return func(list []any) { firstOf(list, typ)[prop] = v }
	}
	del := func(typ, prop string) func([]any) {
		return func(list []any) { delete(firstOf(list, typ), prop) }
	}
	idOf := func(list []any, typ string) string { return firstOf(list, typ)["id"].(string) }
	tests := []struct {
		name   string
		mutate func(list []any)
		want   string
	}{
		{"incident without name", del("incident", "name"), "missing property 'name'"},
		{"impossible date", set("incident", "created", "2026-02-30T10:00:00.000Z"), "not a real date"},
		{"created without milliseconds", set("indicator", "created", "2026-03-14T09:30:00Z"), "/created': '2026-03-14T09:30:00Z' does not match pattern"},
		{"offset instead of Z", set("indicator", "valid_from", "2026-03-14T09:30:00+00:00"), "valid_from"},
		{"modified before created", set("incident", "modified", "2020-01-01T00:00:00.000Z"), "modified must not be earlier than created"},
		{"last_observed before first", set("observed-data", "last_observed", "2020-01-01T00:00:00Z"), "last_observed must not be earlier"},
		{"end before start", set("network-traffic", "end", "2020-01-01T00:00:00Z"), "end must not be earlier than start"},
		{"last_seen before first_seen", set("sighting", "last_seen", "2020-01-01T00:00:00Z"), "last_seen must not be earlier"},
		{"is_active with end", set("network-traffic", "is_active", true), "schema"},
		{"port out of range", set("network-traffic", "dst_port", json.Number("70000")), "/dst_port': maximum"},
		{"ipv4 value not an address", set("ipv4-addr", "value", "300.1.1.1"), "/value': '300.1.1.1' does not match pattern"},
		{"artifact url without hashes", del("artifact", "hashes"), "missing property 'hashes'"},
		{"artifact url not a URL", set("artifact", "url", "not a url"), "is not valid uri"},
		{"artifact short SHA-256", set("artifact", "hashes", map[string]any{"SHA-256": "abcd"}), "/hashes/SHA-256'"},
		{"custom property with bad name", set("incident", "Bad-Name", "x"), "'Bad-Name' not allowed"},
		{"missing spec_version on SCO", del("ipv4-addr", "spec_version"), "spec_version"},
		{"SCO id not deterministic", func(list []any) {
			firstOf(list, "ipv4-addr")["value"] = "203.0.113.8" // same id, other value
		}, "deterministic UUIDv5"},
		{"artifact id not deterministic", set("artifact", "hashes", map[string]any{"SHA-256": sha2Hex}), "deterministic UUIDv5"},
		{"network-traffic id not deterministic", set("network-traffic", "dst_port", json.Number("503")), "deterministic UUIDv5"},
		{"SDO id UUIDv1", set("incident", "id", "incident--6ba7b810-9dad-11d1-80b4-00c04fd430c8"), "UUIDv4"},
		{"dangling reference", set("relationship", "target_ref", "indicator--11111111-2222-4333-8444-555555555555"), "not in the bundle"},
		{"created_by_ref not an identity", func(list []any) {
			firstOf(list, "incident")["created_by_ref"] = idOf(list, "indicator")
		}, "created_by_ref must reference identity"},
		{"relationship to an SRO", func(list []any) {
			firstOf(list, "relationship")["target_ref"] = idOf(list, "sighting")
		}, "target_ref must reference"},
		{"src_ref to an artifact", func(list []any) {
			firstOf(list, "network-traffic")["src_ref"] = idOf(list, "artifact")
		}, "src_ref must reference"},
		{"sighting_of_ref to an SCO", func(list []any) {
			firstOf(list, "sighting")["sighting_of_ref"] = idOf(list, "ipv4-addr")
		}, "sighting_of_ref must reference SDO"},
		{"observed-data without SCO refs", func(list []any) {
			firstOf(list, "observed-data")["object_refs"] = []any{idOf(list, "sighting")}
		}, "at least one SCO"},
		{"observed-data refs an SDO", func(list []any) {
			od := firstOf(list, "observed-data")
			od["object_refs"] = append(od["object_refs"].([]any), idOf(list, "incident"))
		}, "object_refs must reference SCO or SRO"},
		{"extension-definition without created_by_ref", del("extension-definition", "created_by_ref"), "created_by_ref"},
		{"incident core bad determination", func(list []any) {
			ext := firstOf(list, "incident")["extensions"].(map[string]any)[incidents.IncidentCoreExtensionID].(map[string]any)
			ext["determination"] = "maybe"
		}, "determination"},
		{"ICS extension bad hex", func(list []any) {
			ext := firstOf(list, "observed-data")["extensions"].(map[string]any)[incidents.ICSExtensionID].(map[string]any)
			ext["events"].([]any)[1].(map[string]any)["data_hex"] = "xyz"
		}, "extension " + incidents.ICSExtensionID},
		{"ICS extension unknown property", func(list []any) {
			ext := firstOf(list, "observed-data")["extensions"].(map[string]any)[incidents.ICSExtensionID].(map[string]any)
			ext["surprise"] = true
		}, "extension " + incidents.ICSExtensionID},
		{"ICS extension used with wrong extension_type", func(list []any) {
			ext := firstOf(list, "observed-data")["extensions"].(map[string]any)[incidents.ICSExtensionID].(map[string]any)
			ext["extension_type"] = "toplevel-property-extension"
		}, "does not list"},
		{"unbalanced pattern", set("indicator", "pattern", "[ipv4-addr:value = '203.0.113.7'"), "pattern"},
		{"duplicate object", func(list []any) {
			// objects is rebuilt below from this slice's first element.
			list[0] = firstOf(list, "ipv4-addr")
		}, "appears twice"},
		{"uuid reused across types", func(list []any) {
			ind := firstOf(list, "indicator")
			_, u, _ := strings.Cut(idOf(list, "incident"), "--")
			old := ind["id"]
			ind["id"] = "indicator--" + u
			for _, o := range list { // keep references consistent
				m := o.(map[string]any)
				for k, v := range m {
					if v == old {
						m[k] = ind["id"]
					}
				}
			}
		}, "also used by"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, list := objects(t, valid)
			tc.mutate(list)
			broken, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			errs := c.CheckBundle(broken)
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("no error containing %q; got %v", tc.want, errs)
		})
	}
	t.Run("bundle envelope", func(t *testing.T) {
		for _, in := range []string{`[]`, `{"type":"bundle","id":"bundle--x","objects":[]}`, `{"type":"report","id":"bundle--11111111-2222-4333-8444-555555555555","objects":[{}]}`, `not json`} {
			if errs := c.CheckBundle([]byte(in)); len(errs) == 0 {
				t.Errorf("CheckBundle(%s): no error", in)
			}
		}
	})
}

func TestSummarize(t *testing.T) {
	for name, sess := range sessions(t) {
		t.Run(name, func(t *testing.T) {
			b, err := incidents.Build(sensor, sess, buildNow)
			if err != nil {
				t.Fatal(err)
			}
			out, err := b.JSON()
			if err != nil {
				t.Fatal(err)
			}
			s, err := incidents.Summarize(out)
			if err != nil {
				t.Fatal(err)
			}
			unmap := func(ap netip.AddrPort) netip.AddrPort {
				return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
			}
			end := sess.End
			if end.Before(sess.Start) {
				end = sess.Start
			}
			checks := []struct {
				what      string
				got, want any
			}{
				{"bundle id", s.BundleID, b.ID},
				{"session id", s.SessionID, sess.ID},
				{"sensor id", s.SensorID, sensor.ID},
				{"protocol", s.Protocol, sess.Protocol},
				{"service", s.Service, sess.Service},
				{"transport", s.Transport, sess.Transport},
				{"client", s.Client, unmap(sess.Client)},
				{"server", s.Server, unmap(sess.Server)},
				{"start", s.Start, sess.Start.Truncate(time.Microsecond)},
				{"end", s.End, end.Truncate(time.Microsecond)},
				{"reason", s.Reason, sess.Reason},
				{"filter", s.Filter, sess.Filter},
				{"filter bytecode", s.FilterBytecode, sess.FilterBytecode},
				{"client packets", s.ClientPackets, sess.ClientPackets},
				{"server packets", s.ServerPackets, sess.ServerPackets},
				{"client bytes", s.ClientBytes, sess.ClientBytes},
				{"server bytes", s.ServerBytes, sess.ServerBytes},
				{"incomplete", s.PossiblyIncomplete, sess.PossiblyIncomplete},
				{"drops", s.Drops, sess.Drops},
				{"events", s.Events, len(sess.Events)},
				{"events dropped", s.EventsDropped, sess.EventsDropped},
				{"pcaps", len(s.PCAPs), len(sess.PCAPs)},
			}
			for _, c := range checks {
				if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
			for i, p := range s.PCAPs {
				if p.Part != i+1 {
					t.Errorf("pcap %d has part %d; want sorted by part", i, p.Part)
				}
				var in incidents.PCAP
				for _, q := range sess.PCAPs {
					if q.Part == p.Part {
						in = q
					}
				}
				if in.MimeType == "" {
					in.MimeType = incidents.PCAPMimeType
				}
				if p != in {
					t.Errorf("pcap part %d = %+v, want %+v", p.Part, p, in)
				}
			}
		})
	}
}

func TestSummarizeRejects(t *testing.T) {
	good := build(t, "summarize", sessions(t)["modbus_ipv4_tcp"])
	tests := []struct {
		name   string
		mutate func([]any)
	}{
		{"no ICS extension", func(list []any) { delete(firstOf(list, "observed-data"), "extensions") }},
		{"hostile pcap key", func(list []any) {
			ext := firstOf(list, "observed-data")["extensions"].(map[string]any)[incidents.ICSExtensionID].(map[string]any)
			ext["pcaps"].([]any)[0].(map[string]any)["key"] = "../../etc/passwd"
		}},
		{"artifact missing", func(list []any) {
			ext := firstOf(list, "observed-data")["extensions"].(map[string]any)[incidents.ICSExtensionID].(map[string]any)
			ext["pcaps"].([]any)[0].(map[string]any)["artifact_ref"] = "artifact--00000000-0000-5000-8000-000000000000"
		}},
		{"no network-traffic", func(list []any) { firstOf(list, "observed-data")["object_refs"] = []any{} }},
		{"bad address", func(list []any) { firstOf(list, "ipv4-addr")["value"] = "x" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, list := objects(t, good)
			tc.mutate(list)
			broken, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := incidents.Summarize(broken); !errors.Is(err, incidents.ErrInvalid) {
				t.Errorf("Summarize = %v, want an ErrInvalid error", err)
			}
		})
	}
}

func TestBuildRejects(t *testing.T) {
	base := sessions(t)["modbus_ipv4_tcp"]
	tests := []struct {
		name   string
		sensor func(*incidents.Sensor)
		sess   func(*incidents.Session)
	}{
		{"no identity id", func(s *incidents.Sensor) { s.IdentityID = "" }, nil},
		{"identity id not uuid4", func(s *incidents.Sensor) { s.IdentityID = "identity--6ba7b810-9dad-11d1-80b4-00c04fd430c8" }, nil},
		{"identity id wrong type", func(s *incidents.Sensor) { s.IdentityID = "indicator--0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9" }, nil},
		{"sensor id with slash", func(s *incidents.Sensor) { s.ID = "a/b" }, nil},
		{"session id not a uuid", nil, func(s *incidents.Session) { s.ID = "../x" }},
		{"no protocol", nil, func(s *incidents.Session) { s.Protocol = "" }},
		{"bad transport", nil, func(s *incidents.Session) { s.Transport = "sctp" }},
		{"no client", nil, func(s *incidents.Session) { s.Client = netip.AddrPort{} }},
		{"zero start", nil, func(s *incidents.Session) { s.Start = time.Time{} }},
		{"negative counter", nil, func(s *incidents.Session) { s.ClientBytes = -1 }},
		{"pcap uppercase sha", nil, func(s *incidents.Session) {
			s.PCAPs = []incidents.PCAP{{Key: base.PCAPs[0].Key, URL: "http://x/y", SHA256: strings.ToUpper(sha1Hex)}}
		}},
		{"pcap relative url", nil, func(s *incidents.Session) {
			s.PCAPs = []incidents.PCAP{{Key: base.PCAPs[0].Key, URL: "x/y", SHA256: sha1Hex}}
		}},
		{"pcap foreign key", nil, func(s *incidents.Session) {
			s.PCAPs = []incidents.PCAP{{Key: "evil/../../x.pcap", URL: "http://x/y", SHA256: sha1Hex}}
		}},
		{"pcap part twice", nil, func(s *incidents.Session) { s.PCAPs = append(s.PCAPs, s.PCAPs[0]) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, sess := sensor, base
			sess.PCAPs = append([]incidents.PCAP(nil), base.PCAPs...)
			if tc.sensor != nil {
				tc.sensor(&s)
			}
			if tc.sess != nil {
				tc.sess(&sess)
			}
			if _, err := incidents.Build(s, sess, buildNow); !errors.Is(err, incidents.ErrInvalid) {
				t.Errorf("Build = %v, want an ErrInvalid error", err)
			}
		})
	}
}
