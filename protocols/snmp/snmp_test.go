package snmp

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// wantDescr is the sysDescr of protocoltest.Identity().
const wantDescr = "Siemens, SIMATIC S7-1200, CPU 1214C DC/DC/DC, 6ES7 214-1AG40-0XB0, HW: 3, FW: V4.5.2"

// testBoot is when the test device booted; clocks start 1000 s later.
var testBoot = time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: testBoot.Add(1000 * time.Second)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestHandler builds a handler on a test clock; mod edits the default config.
func newTestHandler(t testing.TB, mod func(*Config)) (*Handler, *clock) {
	t.Helper()
	clk := newClock()
	cfg := NewConfig()
	cfg.WriteCommunity = "s3cr3t-rw"
	if mod != nil {
		mod(cfg)
	}
	env := protocoltest.Env(t, protocoltest.Identity())
	env.Boot = testBoot
	env.Now = clk.now
	h, err := New(env, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h, clk
}

var (
	testLocal  = netip.MustParseAddrPort("192.0.2.10:161")
	testRemote = netip.MustParseAddrPort("198.51.100.7:40123")
)

// exchange serves one datagram and returns the reply (nil if none) and the events.
func exchange(t testing.TB, h *Handler, req []byte) ([]byte, []protocols.Event) {
	t.Helper()
	s := protocoltest.NewSession(t, testLocal, testRemote)
	var out []byte
	replies := 0
	err := h.ServeDatagram(context.Background(), s, req, func(b []byte) error {
		replies++
		out = append([]byte(nil), b...)
		return nil
	})
	if err != nil {
		t.Fatalf("ServeDatagram: %v", err)
	}
	if replies > 1 {
		t.Fatalf("%d replies to one datagram", replies)
	}
	return out, s.Events()
}

// encode builds a request with gosnmp, the way a gosnmp-based manager sends it.
func encode(t testing.TB, version gosnmp.SnmpVersion, community string, pdu gosnmp.PDUType, nonRep uint8, maxRep uint32, vars ...gosnmp.SnmpPDU) []byte {
	t.Helper()
	g := &gosnmp.GoSNMP{Version: version, Community: community, MaxOids: gosnmp.MaxOids}
	b, err := g.SnmpEncodePacket(pdu, vars, nonRep, maxRep)
	if err != nil {
		t.Fatalf("encode request: %v", err)
	}
	return b
}

func nulls(oids ...string) []gosnmp.SnmpPDU {
	out := make([]gosnmp.SnmpPDU, len(oids))
	for i, o := range oids {
		out[i] = gosnmp.SnmpPDU{Name: o, Type: gosnmp.Null}
	}
	return out
}

func str(oid, v string) gosnmp.SnmpPDU {
	return gosnmp.SnmpPDU{Name: oid, Type: gosnmp.OctetString, Value: []byte(v)}
}

// decodeResponse decodes a response with gosnmp, as a manager would.
func decodeResponse(t testing.TB, b []byte) *gosnmp.SnmpPacket {
	t.Helper()
	g := &gosnmp.GoSNMP{MaxOids: gosnmp.MaxOids}
	p, err := g.SnmpDecodePacket(b)
	if err != nil {
		t.Fatalf("decode response %x: %v", b, err)
	}
	if p.PDUType != gosnmp.GetResponse {
		t.Fatalf("response PDU %v", p.PDUType)
	}
	return p
}

// vb is an expected binding: name, type and, when want is not nil, value.
type vb struct {
	name string
	typ  gosnmp.Asn1BER
	want any
}

func checkVars(t testing.TB, got []gosnmp.SnmpPDU, want []vb) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d bindings %v, want %d %v", len(got), got, len(want), want)
	}
	for i, w := range want {
		g := got[i]
		if strings.TrimPrefix(g.Name, ".") != strings.TrimPrefix(w.name, ".") || g.Type != w.typ {
			t.Errorf("binding %d = %s %v, want %s %v", i+1, g.Name, g.Type, w.name, w.typ)
			continue
		}
		if w.want == nil {
			continue
		}
		gv := g.Value
		if b, ok := gv.([]byte); ok {
			gv = string(b)
		}
		if fmt.Sprint(gv) != fmt.Sprint(w.want) {
			t.Errorf("binding %d %s = %v, want %v", i+1, g.Name, gv, w.want)
		}
	}
}

const (
	sysDescr0    = "1.3.6.1.2.1.1.1.0"
	sysObjectID0 = "1.3.6.1.2.1.1.2.0"
	sysUpTime0   = "1.3.6.1.2.1.1.3.0"
	sysContact0  = "1.3.6.1.2.1.1.4.0"
	sysName0     = "1.3.6.1.2.1.1.5.0"
	sysLocation0 = "1.3.6.1.2.1.1.6.0"
	sysServices0 = "1.3.6.1.2.1.1.7.0"
	ifPhys1      = "1.3.6.1.2.1.2.2.1.6.1"
	ifInOctets1  = "1.3.6.1.2.1.2.2.1.10.1"
	lastOID      = "1.3.6.1.2.1.47.1.4.1.0" // entLastChangeTime.0
	firstOID     = "1.0.8802.1.1.2.1.1.1.0" // lldpMessageTxInterval.0
)

func TestGetGetNextGetBulk(t *testing.T) {
	v1, v2 := gosnmp.Version1, gosnmp.Version2c
	tests := []struct {
		name      string
		version   gosnmp.SnmpVersion
		pdu       gosnmp.PDUType
		nonRep    uint8
		maxRep    uint32
		oids      []string
		status    gosnmp.SNMPError
		index     uint8
		want      []vb
		retrieved int
	}{
		{
			name: "v2c get system", version: v2, pdu: gosnmp.GetRequest,
			oids: []string{sysDescr0, sysObjectID0, sysUpTime0, sysContact0, sysName0, sysLocation0, sysServices0},
			want: []vb{
				{sysDescr0, gosnmp.OctetString, wantDescr},
				{sysObjectID0, gosnmp.ObjectIdentifier, ".1.3.6.1.4.1.4329.6.1.2"},
				{sysUpTime0, gosnmp.TimeTicks, uint32(100000)},
				{sysContact0, gosnmp.OctetString, "Leitwarte +49 911 5555 310"},
				{sysName0, gosnmp.OctetString, "plc-pumpstation-2"},
				{sysLocation0, gosnmp.OctetString, "Pumpstation 2, cabinet A3"},
				{sysServices0, gosnmp.Integer, 78},
			},
		},
		{
			name: "v2c get ifPhysAddress is the identity MAC", version: v2, pdu: gosnmp.GetRequest,
			oids: []string{ifPhys1, "1.3.6.1.2.1.2.2.1.6.2", "1.0.8802.1.1.2.1.3.2.0"},
			want: []vb{
				{ifPhys1, gosnmp.OctetString, string([]byte{0x00, 0x1b, 0x1b, 0x4a, 0x10, 0xfe})},
				{"1.3.6.1.2.1.2.2.1.6.2", gosnmp.OctetString, string([]byte{0x00, 0x1b, 0x1b, 0x4a, 0x10, 0xff})},
				{"1.0.8802.1.1.2.1.3.2.0", gosnmp.OctetString, string([]byte{0x00, 0x1b, 0x1b, 0x4a, 0x10, 0xfe})},
			},
		},
		{
			name: "v2c get entity from identity", version: v2, pdu: gosnmp.GetRequest,
			oids: []string{"1.3.6.1.2.1.47.1.1.1.1.2.1", "1.3.6.1.2.1.47.1.1.1.1.9.1", "1.3.6.1.2.1.47.1.1.1.1.11.1",
				"1.3.6.1.2.1.47.1.1.1.1.12.1", "1.3.6.1.2.1.47.1.1.1.1.13.1"},
			want: []vb{
				{"1.3.6.1.2.1.47.1.1.1.1.2.1", gosnmp.OctetString, "SIMATIC S7-1200 CPU 1214C DC/DC/DC"},
				{"1.3.6.1.2.1.47.1.1.1.1.9.1", gosnmp.OctetString, "V4.5.2"},
				{"1.3.6.1.2.1.47.1.1.1.1.11.1", gosnmp.OctetString, "S C-J7UD43012026"},
				{"1.3.6.1.2.1.47.1.1.1.1.12.1", gosnmp.OctetString, "Siemens"},
				{"1.3.6.1.2.1.47.1.1.1.1.13.1", gosnmp.OctetString, "6ES7 214-1AG40-0XB0"},
			},
		},
		{
			name: "v2c get ipAddrTable row of the address asked", version: v2, pdu: gosnmp.GetRequest,
			oids: []string{"1.3.6.1.2.1.4.20.1.1.192.0.2.10", "1.3.6.1.2.1.4.20.1.3.192.0.2.10", "1.3.6.1.2.1.4.20.1.1.192.0.2.11"},
			want: []vb{
				{"1.3.6.1.2.1.4.20.1.1.192.0.2.10", gosnmp.IPAddress, "192.0.2.10"},
				{"1.3.6.1.2.1.4.20.1.3.192.0.2.10", gosnmp.IPAddress, "255.255.255.0"},
				{"1.3.6.1.2.1.4.20.1.1.192.0.2.11", gosnmp.NoSuchInstance, nil},
			},
			retrieved: 2,
		},
		{
			name: "v2c get exceptions", version: v2, pdu: gosnmp.GetRequest,
			oids: []string{"1.3.6.1.2.1.1.1", sysName0, "1.3.6.1.2.1.1", "1.3.6.1.2.1.1.1.0.5", "1.3.6.1.4.1.9.9.9.0", "1.3.6.1.2.1.2.2.1.2.7"},
			want: []vb{
				{"1.3.6.1.2.1.1.1", gosnmp.NoSuchInstance, nil},
				{sysName0, gosnmp.OctetString, "plc-pumpstation-2"},
				{"1.3.6.1.2.1.1", gosnmp.NoSuchObject, nil},
				{"1.3.6.1.2.1.1.1.0.5", gosnmp.NoSuchInstance, nil},
				{"1.3.6.1.4.1.9.9.9.0", gosnmp.NoSuchObject, nil},
				{"1.3.6.1.2.1.2.2.1.2.7", gosnmp.NoSuchInstance, nil},
			},
			retrieved: 1,
		},
		{
			name: "v1 get missing is noSuchName with the request echoed", version: v1, pdu: gosnmp.GetRequest,
			oids:   []string{sysName0, "1.3.6.1.2.1.1.1", sysDescr0},
			status: gosnmp.NoSuchName, index: 2,
			want: []vb{{sysName0, gosnmp.Null, nil}, {"1.3.6.1.2.1.1.1", gosnmp.Null, nil}, {sysDescr0, gosnmp.Null, nil}},
		},
		{
			name: "v1 get", version: v1, pdu: gosnmp.GetRequest, oids: []string{sysDescr0, sysUpTime0},
			want: []vb{{sysDescr0, gosnmp.OctetString, wantDescr}, {sysUpTime0, gosnmp.TimeTicks, uint32(100000)}},
		},
		{
			name: "getnext from group and instance", version: v2, pdu: gosnmp.GetNextRequest,
			oids: []string{"1.3.6.1.2.1.1", sysDescr0, "1.3.6.1.2.1.1.7.0", "1.3.6.1.2.1.2.2.1.1", "0.0"},
			want: []vb{
				{sysDescr0, gosnmp.OctetString, wantDescr},
				{sysObjectID0, gosnmp.ObjectIdentifier, nil},
				{"1.3.6.1.2.1.2.1.0", gosnmp.Integer, 2},
				{"1.3.6.1.2.1.2.2.1.1.1", gosnmp.Integer, 1},
				{firstOID, gosnmp.Integer, 5},
			},
		},
		{
			name: "getnext into the request's ipAddrTable row", version: v2, pdu: gosnmp.GetNextRequest,
			oids: []string{"1.3.6.1.2.1.4.19.0", "1.3.6.1.2.1.4.20.1.5.192.0.2.10"},
			want: []vb{
				{"1.3.6.1.2.1.4.20.1.1.192.0.2.10", gosnmp.IPAddress, "192.0.2.10"},
				{"1.3.6.1.2.1.6.1.0", gosnmp.Integer, 4},
			},
		},
		{
			name: "v2c getnext at the end is endOfMibView", version: v2, pdu: gosnmp.GetNextRequest,
			oids: []string{sysName0, lastOID, "1.3.6.1.4.1"},
			want: []vb{
				{sysLocation0, gosnmp.OctetString, nil},
				{lastOID, gosnmp.EndOfMibView, nil},
				{"1.3.6.1.4.1", gosnmp.EndOfMibView, nil},
			},
			retrieved: 1,
		},
		{
			name: "v1 getnext at the end is noSuchName", version: v1, pdu: gosnmp.GetNextRequest,
			oids:   []string{sysName0, lastOID},
			status: gosnmp.NoSuchName, index: 2,
			want: []vb{{sysName0, gosnmp.Null, nil}, {lastOID, gosnmp.Null, nil}},
		},
		{
			name: "getbulk non-repeaters and repetitions", version: v2, pdu: gosnmp.GetBulkRequest,
			nonRep: 1, maxRep: 3,
			oids: []string{"1.3.6.1.2.1.1", "1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.8"},
			want: []vb{
				{sysDescr0, gosnmp.OctetString, wantDescr},
				{"1.3.6.1.2.1.2.2.1.2.1", gosnmp.OctetString, wantDescr + ", Ethernet Port, X1 P1"},
				{"1.3.6.1.2.1.2.2.1.8.1", gosnmp.Integer, 1},
				{"1.3.6.1.2.1.2.2.1.2.2", gosnmp.OctetString, wantDescr + ", Ethernet Port, X1 P2"},
				{"1.3.6.1.2.1.2.2.1.8.2", gosnmp.Integer, 2},
				{"1.3.6.1.2.1.2.2.1.3.1", gosnmp.Integer, 6},
				{"1.3.6.1.2.1.2.2.1.9.1", gosnmp.TimeTicks, uint32(900)},
			},
		},
		{
			name: "getbulk past the end", version: v2, pdu: gosnmp.GetBulkRequest,
			nonRep: 0, maxRep: 5,
			oids: []string{"1.3.6.1.2.1.47.1.1.1.1.16.1", "1.3.6.1.2.1.47.1.1.1.1.15.1"},
			want: []vb{
				{lastOID, gosnmp.TimeTicks, uint32(0)},
				{"1.3.6.1.2.1.47.1.1.1.1.16.1", gosnmp.Integer, 1},
				{lastOID, gosnmp.EndOfMibView, nil},
				{lastOID, gosnmp.TimeTicks, nil},
				{lastOID, gosnmp.EndOfMibView, nil},
				{lastOID, gosnmp.EndOfMibView, nil},
			},
			retrieved: 3,
		},
		{
			name: "getbulk non-repeaters beyond the bindings", version: v2, pdu: gosnmp.GetBulkRequest,
			nonRep: 9, maxRep: 50, oids: []string{sysDescr0, sysObjectID0},
			want: []vb{{sysObjectID0, gosnmp.ObjectIdentifier, nil}, {sysUpTime0, gosnmp.TimeTicks, nil}},
		},
		{
			name: "getbulk max-repetitions zero", version: v2, pdu: gosnmp.GetBulkRequest,
			nonRep: 1, maxRep: 0, oids: []string{sysDescr0, sysObjectID0},
			want: []vb{{sysObjectID0, gosnmp.ObjectIdentifier, nil}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTestHandler(t, nil)
			out, events := exchange(t, h, encode(t, tc.version, "public", tc.pdu, tc.nonRep, tc.maxRep, nulls(tc.oids...)...))
			if out == nil {
				t.Fatal("no response")
			}
			p := decodeResponse(t, out)
			if p.Version != tc.version || p.Community != "public" {
				t.Errorf("response version %v community %q", p.Version, p.Community)
			}
			if p.Error != tc.status || p.ErrorIndex != tc.index {
				t.Errorf("error-status %v index %d, want %v %d", p.Error, p.ErrorIndex, tc.status, tc.index)
			}
			checkVars(t, p.Variables, tc.want)
			if len(events) != 1 {
				t.Fatalf("%d events, want 1", len(events))
			}
			ev := events[0]
			wantOp := map[gosnmp.PDUType]string{gosnmp.GetRequest: "get_request", gosnmp.GetNextRequest: "get_next_request", gosnmp.GetBulkRequest: "get_bulk_request"}[tc.pdu]
			if ev.Op != wantOp || ev.Protocol != "snmp" || ev.Code != int(tc.pdu) || ev.Area != tc.oids[0] ||
				ev.Quantity != len(tc.oids) || ev.Exception != int(tc.status) || ev.Write ||
				ev.Detail["community"] != "public" || ev.Detail["oids"] != strings.Join(tc.oids, ",") ||
				ev.Detail["version"] != map[gosnmp.SnmpVersion]string{v1: "1", v2: "2c"}[tc.version] {
				t.Errorf("event %+v", ev)
			}
			if tc.pdu == gosnmp.GetBulkRequest && (ev.Detail["non_repeaters"] != strconv.Itoa(int(tc.nonRep)) || ev.Detail["max_repetitions"] != strconv.Itoa(int(tc.maxRep))) {
				t.Errorf("bulk event details %v", ev.Detail)
			}
			retrieved := tc.retrieved
			if retrieved == 0 && tc.status == gosnmp.NoError {
				retrieved = len(tc.want)
			}
			if got := h.dev.stats.inTotalReqVars.Load(); int(got) != retrieved {
				t.Errorf("snmpInTotalReqVars %d, want %d", got, retrieved)
			}
		})
	}
}

// sortedOIDs is every instance a request sent to local sees, sorted independently of
// the view's lookups.
func sortedOIDs(h *Handler, local netip.Addr) []string {
	v := h.mib.view(&request{local: local})
	all := append(slices.Clone(v.static), v.dynamic...)
	slices.SortFunc(all, func(a, b object) int { return slices.Compare(a.oid, b.oid) })
	out := make([]string, len(all))
	for i, o := range all {
		out[i] = o.oid.String()
	}
	return out
}

// run runs a client program and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	path := testenv.LookPath(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	return string(out), err
}

// walkedOIDs extracts the OIDs of net-snmp's -On output.
func walkedOIDs(out string) []string {
	var oids []string
	for line := range strings.Lines(out) {
		name, value, ok := strings.Cut(line, " = ")
		if ok && strings.HasPrefix(name, ".") && !strings.HasPrefix(value, "No more variables") {
			oids = append(oids, strings.TrimPrefix(name, "."))
		}
	}
	return oids
}

func TestRealClients(t *testing.T) {
	h, _ := newTestHandler(t, func(c *Config) { c.RateLimit = 0 })
	// The real clock: sysUpTime must move for net-snmp and nmap.
	h.now = time.Now
	h.dev.boot = time.Now().Add(-36 * time.Hour)
	srv := protocoltest.ServeUDP(t, "127.0.0.1:0", h)
	agent := srv.Addr.String()
	common := []string{"-On", "-m", "", "-t", "2", "-r", "1"}
	args := func(extra ...string) []string { return append(slices.Clone(common), extra...) }
	want := sortedOIDs(h, netip.MustParseAddr("127.0.0.1"))

	t.Run("snmpget v2c sysDescr", func(t *testing.T) {
		out, err := run(t, "snmpget", args("-v2c", "-c", "public", agent, sysDescr0, sysUpTime0, ifPhys1)...)
		if err != nil {
			t.Fatalf("snmpget: %v\n%s", err, out)
		}
		for _, w := range []string{`STRING: "` + wantDescr + `"`, "Timeticks: (", "1 day, 12:00:", "Hex-STRING: 00 1B 1B 4A 10 FE"} {
			if !strings.Contains(out, w) {
				t.Errorf("snmpget output lacks %q:\n%s", w, out)
			}
		}
	})
	for _, tc := range []struct {
		name string
		cmd  string
		args []string
		end  string
	}{
		{"snmpwalk v1", "snmpwalk", []string{"-v1", "-c", "public"}, ""},
		{"snmpwalk v2c", "snmpwalk", []string{"-v2c", "-c", "public"}, "No more variables left in this MIB View"},
		{"snmpbulkwalk v2c", "snmpbulkwalk", []string{"-v2c", "-c", "public", "-Cr10"}, "No more variables left in this MIB View"},
		{"snmpbulkwalk v2c max-repetitions 60", "snmpbulkwalk", []string{"-v2c", "-c", "public", "-Cr60"}, "No more variables left in this MIB View"},
	} {
		t.Run(tc.name+" whole tree", func(t *testing.T) {
			out, err := run(t, tc.cmd, args(append(tc.args, agent, ".1")...)...)
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.cmd, err, out)
			}
			if strings.Contains(out, "OID not increasing") || strings.Contains(out, "Timeout") || strings.Contains(out, "Error") {
				t.Fatalf("%s reports a problem:\n%s", tc.cmd, out)
			}
			if got := walkedOIDs(out); !slices.Equal(got, want) {
				t.Errorf("%s walked %d OIDs, want %d:\n%s", tc.cmd, len(got), len(want), out)
			}
			if tc.end != "" && !strings.Contains(out, tc.end) {
				t.Errorf("%s did not end at the end of the MIB view:\n%s", tc.cmd, out)
			}
		})
	}
	t.Run("wrong community times out", func(t *testing.T) {
		start := time.Now()
		out, err := run(t, "snmpget", "-On", "-m", "", "-t", "1", "-r", "0", "-v2c", "-c", "private", agent, sysDescr0)
		if err == nil || !strings.Contains(out, "Timeout") {
			t.Fatalf("snmpget with a wrong community: %v\n%s", err, out)
		}
		if time.Since(start) < time.Second {
			t.Errorf("answered in %v", time.Since(start))
		}
	})
	t.Run("snmpset refused with the read-only community", func(t *testing.T) {
		for _, v := range []struct{ version, reason string }{{"-v2c", "noAccess"}, {"-v1", "noSuchName"}} {
			out, err := run(t, "snmpset", args(v.version, "-c", "public", agent, sysContact0, "s", "pwned")...)
			if err == nil || !strings.Contains(out, v.reason) || !strings.Contains(out, "Failed object: ."+sysContact0) {
				t.Errorf("snmpset %s: %v\n%s", v.version, err, out)
			}
		}
		out, err := run(t, "snmpget", args("-v2c", "-c", "public", agent, sysContact0)...)
		if err != nil || !strings.Contains(out, "Leitwarte") {
			t.Errorf("sysContact changed: %v\n%s", err, out)
		}
	})
	t.Run("snmpset with the read-write community", func(t *testing.T) {
		out, err := run(t, "snmpset", args("-v2c", "-c", "s3cr3t-rw", agent, sysLocation0, "s", "Hall 7")...)
		if err != nil {
			t.Fatalf("snmpset: %v\n%s", err, out)
		}
		out, err = run(t, "snmpset", args("-v2c", "-c", "s3cr3t-rw", agent, sysUpTime0, "t", "5")...)
		if err == nil || !strings.Contains(out, "notWritable") {
			t.Errorf("snmpset sysUpTime: %v\n%s", err, out)
		}
		out, err = run(t, "snmpget", args("-v1", "-c", "public", agent, sysLocation0)...)
		if err != nil || !strings.Contains(out, `STRING: "Hall 7"`) {
			t.Errorf("sysLocation after SET: %v\n%s", err, out)
		}
	})
	t.Run("snmpget v3 finds the engine but no such user", func(t *testing.T) {
		for _, sec := range [][]string{
			{"-l", "noAuthNoPriv", "-u", "admin"},
			{"-l", "authPriv", "-u", "admin", "-a", "SHA", "-A", "adminpass1", "-x", "AES", "-X", "adminpass1"},
		} {
			out, err := run(t, "snmpget", args(append(append([]string{"-v3"}, sec...), agent, sysDescr0)...)...)
			if err == nil || !strings.Contains(out, "Unknown user name") {
				t.Errorf("snmpget -v3 %v: %v\n%s", sec, err, out)
			}
		}
	})
	t.Run("nmap", func(t *testing.T) {
		testenv.RequireRoot(t) // UDP scans need raw sockets, and port 161
		// nmap's SNMP scripts run on port 161 only: serve there, on a free loopback address.
		addr := freeSNMPAddr(t)
		protocoltest.ServeUDP(t, addr.String(), h)
		out, err := run(t, "nmap", "-n", "-Pn", "-sU", "-p", "161", "--script", "snmp-sysdescr,snmp-info,snmp-interfaces",
			addr.Addr().String())
		if err != nil {
			t.Fatalf("nmap: %v\n%s", err, out)
		}
		for _, w := range []string{"| snmp-sysdescr: " + wantDescr, "System uptime: 1d12h", "MAC address: 001b1b4a10fe",
			"| snmp-info: ", "engineIDFormat: mac", "enterprise: Siemens AG", "engineIDData: 001b1b4a10fe", fmt.Sprintf("snmpEngineBoots: %d", testBoots()),
			"snmpEngineTime: 1d12h",
			"Type: ethernetCsmacd  Speed: 100 Mbps", "Status: up", "Status: down"} {
			if !strings.Contains(out, w) {
				t.Errorf("nmap output lacks %q:\n%s", w, out)
			}
		}
	})
}

// freeSNMPAddr finds a loopback address whose port 161 is free.
func freeSNMPAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	for i := 1; i < 64; i++ {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}), 161)
		pc, err := net.ListenPacket("udp", a.String())
		if err == nil {
			pc.Close()
			return a
		}
	}
	t.Fatal("no loopback address with a free port 161")
	return netip.AddrPort{}
}

// ber encodes one BER element for hand-made fixtures, independently of wire.go.
func ber(tag byte, parts ...[]byte) []byte {
	c := bytes.Join(parts, nil)
	out := []byte{tag}
	switch n := len(c); {
	case n < 0x80:
		out = append(out, byte(n))
	case n <= 0xff:
		out = append(out, 0x81, byte(n))
	default:
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, c...)
}

func berInt(contents ...byte) []byte { return ber(0x02, contents) }

// berOID encodes a dotted OID (first two arcs below 40, later arcs any size).
func berOID(s string) []byte {
	var o []uint32
	for part := range strings.SplitSeq(s, ".") {
		v, err := strconv.ParseUint(part, 10, 32)
		if err != nil {
			panic(err)
		}
		o = append(o, uint32(v))
	}
	c := []byte{byte(o[0]*40 + o[1])}
	for _, v := range o[2:] {
		var tmp []byte
		for tmp = []byte{byte(v & 0x7f)}; v >= 0x80; {
			v >>= 7
			tmp = append([]byte{byte(v&0x7f) | 0x80}, tmp...)
		}
		c = append(c, tmp...)
	}
	return ber(0x06, c)
}

// rawMsg builds a v1/v2c message from its parts.
func rawMsg(version byte, community string, pdu byte, reqID, f2, f3 []byte, varbinds ...[]byte) []byte {
	return ber(0x30, berInt(version), ber(0x04, []byte(community)),
		ber(pdu, reqID, f2, f3, ber(0x30, varbinds...)))
}

func rawVB(oid string, value []byte) []byte { return ber(0x30, berOID(oid), value) }

var null = []byte{0x05, 0x00}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestSignedFields(t *testing.T) {
	tests := []struct {
		name string
		req  []byte
		// head is the expected start of the response, through the request-id.
		head string
		want []vb
	}{
		{
			name: "negative request-id is echoed as the same INTEGER",
			// GetRequest v2c "public", request-id -5, sysDescr.0
			req: mustHex(`30 26 02 01 01 04 06 70 75 62 6c 69 63 a0 19 02 01 fb 02 01 00 02 01 00
				30 0e 30 0c 06 08 2b 06 01 02 01 01 01 00 05 00`),
			head: "020101 0406 7075626c6963 a2 ?? 0201fb 020100 020100",
			want: []vb{{sysDescr0, gosnmp.OctetString, wantDescr}},
		},
		{
			name: "request-id -2^31",
			req: mustHex(`30 29 02 01 01 04 06 70 75 62 6c 69 63 a0 1c 02 04 80 00 00 00 02 01 00 02 01 00
				30 0e 30 0c 06 08 2b 06 01 02 01 01 05 00 05 00`),
			head: "020101 0406 7075626c6963 a2 ?? 020480000000 020100 020100",
			want: []vb{{sysName0, gosnmp.OctetString, "plc-pumpstation-2"}},
		},
		{
			name: "request-id 2^31-1",
			req: mustHex(`30 29 02 01 00 04 06 70 75 62 6c 69 63 a0 1c 02 04 7f ff ff ff 02 01 00 02 01 00
				30 0e 30 0c 06 08 2b 06 01 02 01 01 05 00 05 00`),
			head: "020100 0406 7075626c6963 a2 ?? 02047fffffff 020100 020100",
			want: []vb{{sysName0, gosnmp.OctetString, "plc-pumpstation-2"}},
		},
		{
			name: "nmap's SNMPv1public probe with long-form lengths",
			req:  []byte("0\x82\x00/\x02\x01\x00\x04\x06public\xa0\x82\x00\x20\x02\x04\x4c\x33\xa7\x56\x02\x01\x00\x02\x01\x00\x30\x82\x00\x10\x30\x82\x00\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x05\x00\x05\x00"),
			head: "020100 0406 7075626c6963 a2 ?? 02044c33a756 020100 020100",
			want: []vb{{sysName0, gosnmp.OctetString, "plc-pumpstation-2"}},
		},
		{
			name: "getbulk non-repeaters 300 and max-repetitions -1",
			// non-repeaters 300 > N: both bindings are non-repeaters; -1 repetitions are none
			req: mustHex(`30 35 02 01 01 04 06 70 75 62 6c 69 63 a5 28 02 01 07 02 02 01 2c 02 01 ff
				30 1c 30 0c 06 08 2b 06 01 02 01 01 01 00 05 00 30 0c 06 08 2b 06 01 02 01 01 05 00 05 00`),
			head: "020101 0406 7075626c6963 a2 ?? 020107 020100 020100",
			want: []vb{{sysObjectID0, gosnmp.ObjectIdentifier, nil}, {sysLocation0, gosnmp.OctetString, nil}},
		},
		{
			name: "getbulk negative non-repeaters",
			req: mustHex(`30 26 02 01 01 04 06 70 75 62 6c 69 63 a5 19 02 01 08 02 01 fd 02 01 02
				30 0e 30 0c 06 08 2b 06 01 02 01 01 01 00 05 00`),
			head: "020101 0406 7075626c6963 a2 ?? 020108 020100 020100",
			want: []vb{{sysObjectID0, gosnmp.ObjectIdentifier, nil}, {sysUpTime0, gosnmp.TimeTicks, nil}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTestHandler(t, nil)
			out, _ := exchange(t, h, tc.req)
			if out == nil {
				t.Fatal("no response")
			}
			// Skip the message header, then compare field by field (?? is any length octet).
			msg, _, err := readTLV(out)
			if err != nil {
				t.Fatal(err)
			}
			got := hex.EncodeToString(msg.contents)
			for _, f := range strings.Fields(tc.head) {
				if f == "??" {
					got = got[2:]
					continue
				}
				if !strings.HasPrefix(got, f) {
					t.Fatalf("response %x: want %s at %s", out, f, got)
				}
				got = got[len(f):]
			}
			checkVars(t, decodeResponse(t, out).Variables, tc.want)
		})
	}
}

func TestSet(t *testing.T) {
	v1, v2 := gosnmp.Version1, gosnmp.Version2c
	long := strings.Repeat("x", 256)
	tests := []struct {
		name      string
		version   gosnmp.SnmpVersion
		community string
		vars      []gosnmp.SnmpPDU
		status    gosnmp.SNMPError
		index     uint8
		// after are sysContact, sysName and sysLocation after the request.
		after [3]string
	}{
		{
			name: "read-only community v2c is noAccess", version: v2, community: "public",
			vars:   []gosnmp.SnmpPDU{str(sysContact0, "pwned")},
			status: gosnmp.NoAccess, index: 1,
		},
		{
			name: "read-only community v1 is noSuchName", version: v1, community: "public",
			vars:   []gosnmp.SnmpPDU{str(sysName0, "pwned"), str(sysLocation0, "pwned")},
			status: gosnmp.NoSuchName, index: 1,
		},
		{
			name: "read-write community writes all three", version: v2, community: "s3cr3t-rw",
			vars:  []gosnmp.SnmpPDU{str(sysContact0, "c"), str(sysName0, "n"), str(sysLocation0, "")},
			after: [3]string{"c", "n", ""},
		},
		{
			name: "v1 read-write", version: v1, community: "s3cr3t-rw",
			vars:  []gosnmp.SnmpPDU{str(sysName0, strings.Repeat("n", 255))},
			after: [3]string{"Leitwarte +49 911 5555 310", strings.Repeat("n", 255), "Pumpstation 2, cabinet A3"},
		},
		{
			name: "read-only object is notWritable and nothing is written", version: v2, community: "s3cr3t-rw",
			vars:   []gosnmp.SnmpPDU{str(sysContact0, "c"), {Name: sysUpTime0, Type: gosnmp.TimeTicks, Value: uint32(5)}},
			status: gosnmp.NotWritable, index: 2,
		},
		{
			name: "missing object is notWritable", version: v2, community: "s3cr3t-rw",
			vars:   []gosnmp.SnmpPDU{str("1.3.6.1.4.1.4329.6.3.2.1.1.1.0", "x")},
			status: gosnmp.NotWritable, index: 1,
		},
		{
			name: "v1 missing object is noSuchName", version: v1, community: "s3cr3t-rw",
			vars:   []gosnmp.SnmpPDU{str(sysDescr0, "x")},
			status: gosnmp.NoSuchName, index: 1,
		},
		{
			name: "wrong type", version: v2, community: "s3cr3t-rw",
			vars:   []gosnmp.SnmpPDU{{Name: sysName0, Type: gosnmp.Integer, Value: 5}},
			status: gosnmp.WrongType, index: 1,
		},
		{
			name: "v1 wrong type is badValue", version: v1, community: "s3cr3t-rw",
			vars:   []gosnmp.SnmpPDU{{Name: sysName0, Type: gosnmp.IPAddress, Value: "10.0.0.1"}},
			status: gosnmp.BadValue, index: 1,
		},
		{
			name: "wrong length", version: v2, community: "s3cr3t-rw",
			vars:   []gosnmp.SnmpPDU{str(sysLocation0, "ok"), str(sysName0, long)},
			status: gosnmp.WrongLength, index: 2,
		},
		{
			name: "v1 wrong length is badValue", version: v1, community: "s3cr3t-rw",
			vars:   []gosnmp.SnmpPDU{str(sysName0, long)},
			status: gosnmp.BadValue, index: 1,
		},
	}
	orig := [3]string{"Leitwarte +49 911 5555 310", "plc-pumpstation-2", "Pumpstation 2, cabinet A3"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTestHandler(t, nil)
			req := encode(t, tc.version, tc.community, gosnmp.SetRequest, 0, 0, tc.vars...)
			out, events := exchange(t, h, req)
			if out == nil {
				t.Fatal("no response")
			}
			p := decodeResponse(t, out)
			if p.Error != tc.status || p.ErrorIndex != tc.index {
				t.Errorf("error-status %v index %d, want %v %d", p.Error, p.ErrorIndex, tc.status, tc.index)
			}
			// The response carries the request's bindings, success or not.
			want := make([]vb, len(tc.vars))
			for i, v := range tc.vars {
				val := v.Value
				if b, ok := val.([]byte); ok {
					val = string(b)
				}
				want[i] = vb{v.Name, v.Type, val}
			}
			checkVars(t, p.Variables, want)
			after := orig
			if tc.status == gosnmp.NoError {
				after = tc.after
			}
			if c, n, l := h.dev.strings(); [3]string{c, n, l} != after {
				t.Errorf("after SET: %q, want %q", [3]string{c, n, l}, after)
			}
			// Later requests, by any community, see the result.
			g := decodeResponse(t, mustExchange(t, h, encode(t, v2, "public", gosnmp.GetRequest, 0, 0, nulls(sysContact0, sysName0, sysLocation0)...)))
			checkVars(t, g.Variables, []vb{{sysContact0, gosnmp.OctetString, after[0]}, {sysName0, gosnmp.OctetString, after[1]}, {sysLocation0, gosnmp.OctetString, after[2]}})
			if len(events) != 1 {
				t.Fatalf("%d events", len(events))
			}
			ev := events[0]
			var data []byte
			for _, v := range tc.vars {
				one := encode(t, tc.version, tc.community, gosnmp.SetRequest, 0, 0, v)
				m, err := parseMessage(one)
				if err != nil {
					t.Fatal(err)
				}
				data = append(data, m.vars[0].raw...)
			}
			if ev.Op != "set_request" || !ev.Write || ev.Exception != int(tc.status) || ev.Area != tc.vars[0].Name ||
				ev.Quantity != len(tc.vars) || !bytes.Equal(ev.Data, data) || ev.Detail["community"] != tc.community {
				t.Errorf("event %+v, want data %x", ev, data)
			}
			if bytes.Contains(req, ev.Data) && &req[0] == &ev.Data[0] {
				t.Error("event data aliases the request buffer")
			}
		})
	}
}

// mustExchange serves one datagram that must be answered.
func mustExchange(t testing.TB, h *Handler, req []byte) []byte {
	t.Helper()
	out, _ := exchange(t, h, req)
	if out == nil {
		t.Fatalf("no response to %x", req)
	}
	return out
}

// snmpCounter reads one counter of the snmp group through the agent.
func snmpCounter(t testing.TB, h *Handler, arc int) uint32 {
	t.Helper()
	name := fmt.Sprintf("1.3.6.1.2.1.11.%d.0", arc)
	p := decodeResponse(t, mustExchange(t, h, encode(t, gosnmp.Version2c, "public", gosnmp.GetRequest, 0, 0, nulls(name)...)))
	v, ok := p.Variables[0].Value.(uint)
	if !ok || p.Variables[0].Type != gosnmp.Counter32 {
		t.Fatalf("%s = %v", name, p.Variables[0])
	}
	return uint32(v)
}

func TestDropped(t *testing.T) {
	sysDescrVB := rawVB(sysDescr0, null)
	get := func(version byte, community string) []byte {
		return rawMsg(version, community, 0xa0, berInt(1), berInt(0), berInt(0), sysDescrVB)
	}
	good := get(1, "public")
	arcs := strings.Repeat(".1", 127)
	tests := []struct {
		name    string
		req     []byte
		op      string
		counter int // snmp group arc that must count it, 0 for none
		detail  map[string]string
		mod     func(*Config)
	}{
		{name: "wrong community v2c", req: get(1, "private"), op: "bad_community", counter: 4,
			detail: map[string]string{"community": "private", "version": "2c", "oids": sysDescr0}},
		{name: "wrong community v1", req: get(0, "admin"), op: "bad_community", counter: 4,
			detail: map[string]string{"community": "admin", "version": "1"}},
		{name: "wrong community set", req: encode(t, gosnmp.Version2c, "Public", gosnmp.SetRequest, 0, 0, str(sysName0, "x")),
			op: "bad_community", counter: 4, detail: map[string]string{"community": "Public"}},
		{name: "empty community", req: get(1, ""), op: "bad_community", counter: 4},
		{name: "SNMPv3 with snmpv3 off (nmap snmp-info probe)", op: "unsupported_version", counter: 3, detail: map[string]string{"version": "3"},
			mod: func(c *Config) { c.SNMPv3 = false }, req: []byte("\x30\x3a\x02\x01\x03\x30\x0f\x02\x02\x4a\x69\x02\x03\x00\xff\xe3\x04\x01\x04\x02\x01\x03\x04\x10\x30\x0e\x04\x00\x02\x01\x00\x02\x01\x00\x04\x00\x04\x00\x04\x00\x30\x12\x04\x00\x04\x00\xa0\x0c\x02\x02\x37\xf0\x02\x01\x00\x02\x01\x00\x30\x00")},
		{name: "version 2", req: get(2, "public"), op: "unsupported_version", counter: 3, detail: map[string]string{"version": "2"}},
		{name: "http", req: []byte("GET / HTTP/1.0\r\n\r\n"), op: "malformed", counter: 6},
		{name: "empty", req: nil, op: "malformed", counter: 6},
		{name: "truncated", req: good[:len(good)-1], op: "malformed", counter: 6},
		{name: "trailing octet", req: append(slices.Clone(good), 0), op: "malformed", counter: 6},
		{name: "indefinite length", req: append([]byte{0x30, 0x80}, append(good[2:], 0, 0)...), op: "malformed", counter: 6},
		{name: "five length octets", req: append([]byte{0x30, 0x85, 0, 0, 0, 0, byte(len(good) - 2)}, good[2:]...), op: "malformed", counter: 6},
		{name: "request-id beyond Integer32",
			req: rawMsg(1, "public", 0xa0, berInt(1, 0, 0, 0, 0), berInt(0), berInt(0), sysDescrVB), op: "malformed", counter: 6},
		{name: "community not an OCTET STRING",
			req: ber(0x30, berInt(1), berInt(5), ber(0xa0, berInt(1), berInt(0), berInt(0), ber(0x30, sysDescrVB))), op: "malformed", counter: 6},
		{name: "varbind without value",
			req: rawMsg(1, "public", 0xa0, berInt(1), berInt(0), berInt(0), ber(0x30, berOID(sysDescr0))), op: "malformed", counter: 6},
		{name: "OID of 129 sub-identifiers",
			req: rawMsg(1, "public", 0xa0, berInt(1), berInt(0), berInt(0), rawVB("1.3"+arcs, null)), op: "malformed", counter: 6},
		{name: "sub-identifier with a leading 0x80 octet (fuzz regression)", // echoed, it would change
			req: rawMsg(1, "public", 0xa0, berInt(1), berInt(0), berInt(0), ber(0x30, ber(0x06, []byte{0x2b, 0x80, 0x06}), null)), op: "malformed", counter: 6},
		{name: "OBJECT IDENTIFIER value with a truncated sub-identifier",
			req: rawMsg(1, "s3cr3t-rw", 0xa3, berInt(1), berInt(0), berInt(0), rawVB(sysName0, ber(0x06, []byte{0x2b, 0x86}))), op: "malformed", counter: 6},
		{name: "BIT STRING value",
			req: rawMsg(1, "s3cr3t-rw", 0xa3, berInt(1), berInt(0), berInt(0), rawVB(sysName0, ber(0x03, []byte{0, 0xff}))), op: "malformed", counter: 6},
		{name: "IpAddress of 5 octets",
			req: rawMsg(1, "s3cr3t-rw", 0xa3, berInt(1), berInt(0), berInt(0), rawVB(sysName0, ber(0x40, []byte{1, 2, 3, 4, 5}))), op: "malformed", counter: 6},
		{name: "INTEGER value beyond Integer32",
			req: rawMsg(1, "s3cr3t-rw", 0xa3, berInt(1), berInt(0), berInt(0), rawVB(sysName0, berInt(1, 0, 0, 0, 0))), op: "malformed", counter: 6},
		{name: "NULL with contents",
			req: rawMsg(1, "public", 0xa0, berInt(1), berInt(0), berInt(0), rawVB(sysDescr0, []byte{0x05, 0x01, 0x00})), op: "malformed", counter: 6},
		{name: "unknown PDU tag", req: rawMsg(1, "public", 0xa9, berInt(1), berInt(0), berInt(0), sysDescrVB), op: "malformed", counter: 6},
		{name: "response PDU", req: rawMsg(1, "public", 0xa2, berInt(1), berInt(0), berInt(0), sysDescrVB), op: "unsupported_pdu", counter: 0},
		{name: "trap PDU", req: rawMsg(1, "public", 0xa7, berInt(1), berInt(0), berInt(0), sysDescrVB), op: "unsupported_pdu", counter: 0},
		{name: "v1 getbulk", req: rawMsg(0, "public", 0xa5, berInt(1), berInt(0), berInt(10), sysDescrVB), op: "unsupported_pdu", counter: 0},
		{name: "larger than max_message_size", req: rawMsg(1, "public", 0xa0, berInt(1), berInt(0), berInt(0),
			rawVB(sysDescr0, ber(0x04, make([]byte, 1500)))), op: "malformed", counter: 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTestHandler(t, tc.mod)
			out, events := exchange(t, h, tc.req)
			if out != nil {
				t.Fatalf("answered %x", out)
			}
			if len(events) != 1 || events[0].Op != tc.op || events[0].Protocol != "snmp" {
				t.Fatalf("events %+v, want one %s", events, tc.op)
			}
			for k, v := range tc.detail {
				if events[0].Detail[k] != v {
					t.Errorf("detail %s = %q, want %q", k, events[0].Detail[k], v)
				}
			}
			reads := uint32(1)
			if tc.counter != 0 {
				reads++
				if got := snmpCounter(t, h, tc.counter); got != 1 {
					t.Errorf("snmp counter .%d = %d, want 1", tc.counter, got)
				}
			}
			if got := snmpCounter(t, h, 1); got != 1+reads { // this message and the reads
				t.Errorf("snmpInPkts = %d, want %d", got, 1+reads)
			}
		})
	}
}

func TestTooBig(t *testing.T) {
	many := make([]string, 65)
	for i := range many {
		many[i] = sysUpTime0
	}
	descrs := []string{sysDescr0, sysDescr0, sysDescr0, sysDescr0, sysDescr0}
	small := func(c *Config) { c.MaxMessageSize = 484 }
	tests := []struct {
		name    string
		mod     func(*Config)
		version gosnmp.SnmpVersion
		pdu     gosnmp.PDUType
		oids    []string
		echo    bool
	}{
		{name: "v2c more bindings than max_varbinds", version: gosnmp.Version2c, pdu: gosnmp.GetRequest, oids: many},
		{name: "v1 more bindings than max_varbinds", version: gosnmp.Version1, pdu: gosnmp.GetNextRequest, oids: many, echo: true},
		{name: "v2c response beyond max_message_size", mod: small, version: gosnmp.Version2c, pdu: gosnmp.GetRequest, oids: descrs},
		{name: "v1 response beyond max_message_size", mod: small, version: gosnmp.Version1, pdu: gosnmp.GetRequest, oids: descrs, echo: true},
		{name: "getbulk more bindings than max_varbinds", version: gosnmp.Version2c, pdu: gosnmp.GetBulkRequest, oids: many},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTestHandler(t, tc.mod)
			out, events := exchange(t, h, encode(t, tc.version, "public", tc.pdu, 0, 10, nulls(tc.oids...)...))
			if out == nil {
				t.Fatal("no response")
			}
			p := decodeResponse(t, out)
			if p.Error != gosnmp.TooBig || p.ErrorIndex != 0 {
				t.Errorf("error-status %v index %d, want tooBig 0", p.Error, p.ErrorIndex)
			}
			var want []vb
			if tc.echo {
				for _, o := range tc.oids {
					want = append(want, vb{o, gosnmp.Null, nil})
				}
			}
			checkVars(t, p.Variables, want)
			if len(out) > h.cfg.MaxMessageSize {
				t.Errorf("response of %d octets", len(out))
			}
			if events[0].Exception != int(gosnmp.TooBig) {
				t.Errorf("event exception %d", events[0].Exception)
			}
			if got := snmpCounter(t, h, 20); got != 1 {
				t.Errorf("snmpOutTooBigs = %d", got)
			}
		})
	}
}

func TestGetBulkFitsMessageSize(t *testing.T) {
	for _, size := range []int{484, 1472, 8192} {
		for _, reps := range []uint32{10, 100, 1000, math.MaxInt32} {
			t.Run(fmt.Sprintf("max_message_size %d max-repetitions %d", size, reps), func(t *testing.T) {
				h, _ := newTestHandler(t, func(c *Config) { c.MaxMessageSize = size })
				out := mustExchange(t, h, encode(t, gosnmp.Version2c, "public", gosnmp.GetBulkRequest, 1, reps,
					nulls(sysUpTime0, "1.3.6.1.2.1.2.2.1.1", "1.3.6.1.2.1.2.2.1.10")...))
				if len(out) > size {
					t.Fatalf("response of %d octets", len(out))
				}
				p := decodeResponse(t, out)
				if p.Error != gosnmp.NoError || len(p.Variables) < 3 {
					t.Fatalf("error %v, %d bindings", p.Error, len(p.Variables))
				}
				wantN := 1 + 2*int(min(reps, uint32(h.cfg.MaxRepetitions)))
				if len(p.Variables) > wantN {
					t.Errorf("%d bindings, at most %d asked", len(p.Variables), wantN)
				}
				// Each repeater walks on from its own previous binding.
				v := h.mib.view(&request{local: testLocal.Addr()})
				prev := []oid{mustOID("1.3.6.1.2.1.2.2.1.1"), mustOID("1.3.6.1.2.1.2.2.1.10")}
				for i, g := range p.Variables[1:] {
					j := i % 2
					want := "end"
					if o := v.next(prev[j]); o != nil {
						want = o.oid.String()
						prev[j] = o.oid
					}
					if g.Type != gosnmp.EndOfMibView && strings.TrimPrefix(g.Name, ".") != want {
						t.Fatalf("binding %d = %s, want %s", i+2, g.Name, want)
					}
				}
				if size >= 8192 && reps >= 100 && len(p.Variables) != wantN {
					// Room for all 201 bindings: none may be cut.
					t.Errorf("%d bindings, want %d", len(p.Variables), wantN)
				}
			})
		}
	}
}

func TestWalkIsSortedTree(t *testing.T) {
	for _, local := range []netip.AddrPort{testLocal, netip.MustParseAddrPort("[2001:db8::10]:161")} {
		h, _ := newTestHandler(t, func(c *Config) { c.RateLimit = 0 })
		want := sortedOIDs(h, local.Addr())
		if len(want) < 150 {
			t.Fatalf("only %d instances", len(want))
		}
		if len(slices.Compact(slices.Clone(want))) != len(want) {
			t.Fatal("duplicate instances")
		}
		walk := func(t *testing.T, version gosnmp.SnmpVersion, pdu gosnmp.PDUType, reps uint32) []string {
			var got []string
			cur := "0.0"
			s := protocoltest.NewSession(t, local, testRemote)
			for range 1000 {
				var out []byte
				req := encode(t, version, "public", pdu, 0, reps, nulls(cur)...)
				if err := h.ServeDatagram(context.Background(), s, req, func(b []byte) error { out = b; return nil }); err != nil || out == nil {
					t.Fatalf("ServeDatagram: %v, reply %x", err, out)
				}
				p := decodeResponse(t, out)
				if version == gosnmp.Version1 && p.Error == gosnmp.NoSuchName {
					return got
				}
				if p.Error != gosnmp.NoError {
					t.Fatalf("error %v", p.Error)
				}
				for _, v := range p.Variables {
					if v.Type == gosnmp.EndOfMibView {
						return got
					}
					name := strings.TrimPrefix(v.Name, ".")
					if len(got) > 0 && slices.Compare(mustOID(name), mustOID(got[len(got)-1])) <= 0 {
						t.Fatalf("OID not increasing: %s after %s", name, got[len(got)-1])
					}
					got = append(got, name)
					cur = name
				}
			}
			t.Fatal("walk does not end")
			return nil
		}
		for _, tc := range []struct {
			name    string
			version gosnmp.SnmpVersion
			pdu     gosnmp.PDUType
			reps    uint32
		}{
			{"v1 getnext", gosnmp.Version1, gosnmp.GetNextRequest, 0},
			{"v2c getnext", gosnmp.Version2c, gosnmp.GetNextRequest, 0},
			{"v2c getbulk 1", gosnmp.Version2c, gosnmp.GetBulkRequest, 1},
			{"v2c getbulk 7", gosnmp.Version2c, gosnmp.GetBulkRequest, 7},
			{"v2c getbulk 100", gosnmp.Version2c, gosnmp.GetBulkRequest, 100},
		} {
			t.Run(local.Addr().String()+" "+tc.name, func(t *testing.T) {
				if got := walk(t, tc.version, tc.pdu, tc.reps); !slices.Equal(got, want) {
					t.Errorf("walk of %d instances differs from the sorted tree of %d:\n%v\n%v", len(got), len(want), got, want)
				}
			})
		}
	}
}

func TestMIBContents(t *testing.T) {
	h, _ := newTestHandler(t, nil)
	all := sortedOIDs(h, testLocal.Addr())
	for _, prefix := range []string{
		"1.0.8802.1.1.2.1.3.7.1.3.",  // lldpLocPortId
		"1.3.6.1.2.1.1.",             // system
		"1.3.6.1.2.1.2.2.1.22.",      // ifSpecific
		"1.3.6.1.2.1.4.20.1.5.",      // ipAdEntReasmMaxSize
		"1.3.6.1.2.1.6.15.",          // tcpOutRsts
		"1.3.6.1.2.1.7.4.",           // udpOutDatagrams
		"1.3.6.1.2.1.11.32.",         // snmpProxyDrops
		"1.3.6.1.2.1.47.1.1.1.1.16.", // entPhysicalIsFRU
	} {
		if !slices.ContainsFunc(all, func(o string) bool { return strings.HasPrefix(o, prefix) }) {
			t.Errorf("no instance under %s", prefix)
		}
	}
	// None of Conpot's and pysnmp's tells: no engine MIB, no pysnmp enterprise.
	for _, o := range all {
		if strings.HasPrefix(o, "1.3.6.1.6.3.") || strings.HasPrefix(o, "1.3.6.1.4.1.20408") {
			t.Errorf("instance %s", o)
		}
	}
	if got := NewConfig().WriteCommunity; got != "" {
		t.Errorf("default write community %q", got)
	}
}

func TestUptimeAndCounters(t *testing.T) {
	h, clk := newTestHandler(t, nil)
	getVals := func(h *Handler, oids ...string) []uint32 {
		t.Helper()
		p := decodeResponse(t, mustExchange(t, h, encode(t, gosnmp.Version2c, "public", gosnmp.GetRequest, 0, 0, nulls(oids...)...)))
		out := make([]uint32, len(p.Variables))
		for i, v := range p.Variables {
			switch x := v.Value.(type) {
			case uint32:
				out[i] = x
			case uint:
				out[i] = uint32(x)
			default:
				t.Fatalf("%s = %v (%v)", v.Name, v.Value, v.Type)
			}
		}
		return out
	}
	t.Run("sysUpTime in hundredths since boot", func(t *testing.T) {
		if got := getVals(h, sysUpTime0)[0]; got != 100000 {
			t.Errorf("sysUpTime after 1000 s = %d", got)
		}
		clk.advance(1530 * time.Millisecond)
		if got := getVals(h, sysUpTime0)[0]; got != 100153 {
			t.Errorf("sysUpTime 1.53 s later = %d, want 100153", got)
		}
		clk.advance(500 * 24 * time.Hour) // TimeTicks wrap after 497 days
		want := uint32((uint64(1001530*time.Millisecond+500*24*time.Hour) / uint64(10*time.Millisecond)) % (1 << 32))
		if got := getVals(h, sysUpTime0)[0]; got != want {
			t.Errorf("sysUpTime after 500 days = %d, want %d", got, want)
		}
	})
	t.Run("counters grow plausibly", func(t *testing.T) {
		h, clk := newTestHandler(t, nil)
		h.limits = nil
		oids := []string{ifInOctets1, "1.3.6.1.2.1.2.2.1.11.1", "1.3.6.1.2.1.2.2.1.16.1", "1.3.6.1.2.1.2.2.1.17.1",
			"1.3.6.1.2.1.4.3.0", "1.3.6.1.2.1.4.10.0", "1.3.6.1.2.1.6.10.0", "1.3.6.1.2.1.7.1.0", "1.3.6.1.2.1.7.4.0",
			"1.3.6.1.2.1.11.1.0", "1.3.6.1.2.1.2.2.1.10.2"}
		prev := getVals(h, oids...)
		for step := range 400 {
			clk.advance(time.Duration(1+step%37) * time.Second)
			cur := getVals(h, oids...)
			for i := range oids[:len(oids)-1] {
				if d := cur[i] - prev[i]; d == 0 || d > 1<<31 { // every counter moves, none goes back
					t.Fatalf("step %d: %s went from %d to %d", step, oids[i], prev[i], cur[i])
				}
			}
			if cur[len(cur)-1] != 0 {
				t.Fatalf("port without link counts %d octets", cur[len(cur)-1])
			}
			prev = cur
		}
		// About 1850 octets/s in over the ~19 000 s walked, plus the SNMP requests.
		up := clk.now().Sub(testBoot).Seconds() - linkUpAfter.Seconds()
		if rate := float64(prev[0]) / up; rate < 1850*0.9 || rate > 1850*1.3 {
			t.Errorf("ifInOctets rate %.0f/s", rate)
		}
	})
	t.Run("the agent's own traffic shows", func(t *testing.T) {
		h, _ := newTestHandler(t, nil)
		before := getVals(h, "1.3.6.1.2.1.11.1.0", "1.3.6.1.2.1.7.1.0", ifInOctets1, "1.3.6.1.2.1.2.2.1.17.1")
		for range 10 {
			mustExchange(t, h, encode(t, gosnmp.Version2c, "public", gosnmp.GetRequest, 0, 0, nulls(sysDescr0)...))
		}
		after := getVals(h, "1.3.6.1.2.1.11.1.0", "1.3.6.1.2.1.7.1.0", ifInOctets1, "1.3.6.1.2.1.2.2.1.17.1")
		if d := after[0] - before[0]; d != 11 {
			t.Errorf("snmpInPkts grew by %d, want 11", d)
		}
		if d := after[1] - before[1]; d != 11 {
			t.Errorf("udpInDatagrams grew by %d, want 11", d)
		}
		if d := after[2] - before[2]; d < 11*(40+frameOverhead) {
			t.Errorf("ifInOctets grew by %d", d)
		}
		if d := after[3] - before[3]; d != 11 {
			t.Errorf("ifOutUcastPkts grew by %d, want 11", d)
		}
	})
}

func TestRateLimit(t *testing.T) {
	h, clk := newTestHandler(t, func(c *Config) { c.RateLimit = 10; c.RateBurst = 5 })
	req := encode(t, gosnmp.Version2c, "public", gosnmp.GetRequest, 0, 0, nulls(sysDescr0)...)
	s := protocoltest.NewSession(t, testLocal, testRemote)
	other := protocoltest.NewSession(t, testLocal, netip.MustParseAddrPort("203.0.113.9:161"))
	send := func(s *protocoltest.Session) bool {
		answered := false
		if err := h.ServeDatagram(context.Background(), s, req, func([]byte) error { answered = true; return nil }); err != nil {
			t.Fatal(err)
		}
		return answered
	}
	for i := range 5 {
		if !send(s) {
			t.Fatalf("request %d of the burst dropped", i+1)
		}
	}
	for i := range 3 {
		if send(s) {
			t.Fatalf("request %d beyond the burst answered", i+1)
		}
	}
	if !send(other) {
		t.Error("another source is limited too")
	}
	clk.advance(200 * time.Millisecond) // two tokens
	if first, second, third := send(s), send(s), send(s); !first || !second || third {
		t.Error("tokens do not refill at the rate")
	}
	var limited int
	for _, ev := range s.Events() {
		if ev.Op == "rate_limited" {
			limited++
		}
	}
	if limited != 2 { // one per run of drops
		t.Errorf("%d rate_limited events, want 2", limited)
	}
}

func TestLimiterForgetsIdleSources(t *testing.T) {
	l := newLimiter(1, 2)
	now := testBoot
	for i := range maxSources {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if ok, _ := l.allow(a, now); !ok {
			t.Fatalf("source %d refused", i)
		}
	}
	if ok, _ := l.allow(netip.MustParseAddr("192.0.2.1"), now); ok {
		t.Error("a new source past the table size is allowed while every source is active")
	}
	if ok, _ := l.allow(netip.MustParseAddr("192.0.2.1"), now.Add(3*time.Second)); !ok {
		t.Error("idle sources are not forgotten")
	}
	if len(l.buckets) != 1 {
		t.Errorf("%d sources kept", len(l.buckets))
	}
}

func TestEventDetailsBounded(t *testing.T) {
	h, _ := newTestHandler(t, nil)
	long := "1.3.6.1.4.1" + strings.Repeat(".4294967295", 10)
	oids := make([]string, 20)
	for i := range oids {
		oids[i] = long
	}
	_, events := exchange(t, h, encode(t, gosnmp.Version2c, "public", gosnmp.GetRequest, 0, 0, nulls(oids...)...))
	d := events[0].Detail["oids"]
	if len(d) > maxDetailOIDs+32 || !strings.HasSuffix(d, "more)") || !strings.HasPrefix(d, long+",") {
		t.Errorf("oids detail of %d octets: %.80s...%s", len(d), d, d[max(0, len(d)-40):])
	}
	if events[0].Quantity != 20 {
		t.Errorf("quantity %d", events[0].Quantity)
	}
	_, events = exchange(t, h, rawMsg(1, strings.Repeat("c", 400), 0xa0, berInt(1), berInt(0), berInt(0), rawVB(sysDescr0, null)))
	if c := events[0].Detail["community"]; events[0].Op != "bad_community" || len(c) != maxDetailText+3 {
		t.Errorf("community detail of %d octets, op %s", len(c), events[0].Op)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config, *protocols.Identity)
		want string // in the error; empty: valid
	}{
		{name: "defaults", mod: func(*Config, *protocols.Identity) {}},
		{name: "one port, no rate limit", mod: func(c *Config, _ *protocols.Identity) {
			c.Interfaces = c.Interfaces[:1]
			c.RateLimit = 0
		}},
		{name: "empty community", mod: func(c *Config, _ *protocols.Identity) { c.Community = "" }, want: "community must be"},
		{name: "long community", mod: func(c *Config, _ *protocols.Identity) { c.Community = strings.Repeat("x", 128) }, want: "community must be"},
		{name: "write equals read", mod: func(c *Config, _ *protocols.Identity) { c.WriteCommunity = "public" }, want: "must differ"},
		{name: "message size", mod: func(c *Config, _ *protocols.Identity) { c.MaxMessageSize = 100 }, want: "max_message_size"},
		{name: "varbinds", mod: func(c *Config, _ *protocols.Identity) { c.MaxVarbinds = 256 }, want: "max_varbinds"},
		{name: "repetitions", mod: func(c *Config, _ *protocols.Identity) { c.MaxRepetitions = 0 }, want: "max_repetitions"},
		{name: "burst", mod: func(c *Config, _ *protocols.Identity) { c.RateBurst = 0 }, want: "rate_burst"},
		{name: "rate", mod: func(c *Config, _ *protocols.Identity) { c.RateLimit = math.NaN() }, want: "rate_limit"},
		{name: "services", mod: func(c *Config, _ *protocols.Identity) { c.SysServices = 128 }, want: "sys_services"},
		{name: "no LLDP-MIB", mod: func(c *Config, _ *protocols.Identity) { c.LLDPMIB = false }},
		{name: "LLDP port id without LLDP-MIB", mod: func(c *Config, _ *protocols.Identity) {
			c.LLDPMIB = false
			c.Interfaces[1].LLDPPortID = "X1 P2"
		}, want: "interfaces[1].lldp_port_id: the device has no LLDP-MIB"},
		{name: "no interfaces", mod: func(c *Config, _ *protocols.Identity) { c.Interfaces = nil }, want: "interfaces"},
		{name: "mtu", mod: func(c *Config, _ *protocols.Identity) { c.Interfaces[1].MTU = 0 }, want: "interfaces[1].mtu"},
		{name: "rate above speed", mod: func(c *Config, _ *protocols.Identity) { c.Interfaces[0].InOctetsPerSec = 2e7 }, want: "interfaces[0]"},
		{name: "netmask", mod: func(c *Config, _ *protocols.Identity) { c.NetMask = "255.0.255.0" }, want: "netmask"},
		{name: "ttl", mod: func(c *Config, _ *protocols.Identity) { c.DefaultTTL = 0 }, want: "default_ttl"},
		{name: "established", mod: func(c *Config, _ *protocols.Identity) { c.TCPEstablished = 40 }, want: "tcp_established"},
		{name: "no sysObjectID", mod: func(_ *Config, id *protocols.Identity) { id.SysObjectID = "" }, want: "sys_object_id"},
		{name: "bad sysObjectID", mod: func(_ *Config, id *protocols.Identity) { id.SysObjectID = "1.55.3" }, want: "sys_object_id"},
		{name: "no MAC", mod: func(_ *Config, id *protocols.Identity) { id.MAC = nil }, want: "MAC"},
		{name: "sysObjectID outside enterprises", mod: func(_ *Config, id *protocols.Identity) { id.SysObjectID = "1.3.6.1.2.1.1" }, want: "set engine_id"},
		{name: "sysObjectID outside enterprises with an engine ID", mod: func(c *Config, id *protocols.Identity) {
			id.SysObjectID = "1.3.6.1.2.1.1"
			c.EngineID = "8000000001020304"
		}},
		{name: "sysObjectID outside enterprises without SNMPv3", mod: func(c *Config, id *protocols.Identity) {
			id.SysObjectID = "1.3.6.1.2.1.1"
			c.SNMPv3 = false
		}},
		{name: "engine ID not hex", mod: func(c *Config, _ *protocols.Identity) { c.EngineID = "80zz" }, want: "engine_id"},
		{name: "engine ID too short", mod: func(c *Config, _ *protocols.Identity) { c.EngineID = "80000001" }, want: "engine_id"},
		{name: "engine boots", mod: func(c *Config, _ *protocols.Identity) { c.EngineBoots = -1 }, want: "engine_boots"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, id := NewConfig(), protocoltest.Identity()
			tc.mod(cfg, id)
			env := protocoltest.Env(t, id)
			h, err := Spec().New(env, cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if _, ok := h.(protocols.DatagramHandler); !ok {
					t.Fatalf("handler %T is not a DatagramHandler", h)
				}
				return
			}
			if !errors.Is(err, protocols.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrConfig containing %q", err, tc.want)
			}
		})
	}
	if _, err := Spec().New(protocoltest.Env(t, protocoltest.Identity()), struct{}{}); !errors.Is(err, protocols.ErrConfig) {
		t.Errorf("foreign config: %v", err)
	}
}

func TestSpec(t *testing.T) {
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "snmp", Transport: protocols.UDP, Port: 161, Service: "snmp"},
		protocoltest.Env(t, protocoltest.Identity()))
	if _, ok := Spec().NewConfig().(*Config); !ok {
		t.Errorf("NewConfig returns %T", Spec().NewConfig())
	}
}

func TestIdentityIsCopied(t *testing.T) {
	id := protocoltest.Identity()
	env := protocoltest.Env(t, id)
	h, err := New(env, NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	id.Hostname = "changed"
	id.MAC[5] = 0
	p := decodeResponse(t, mustExchange(t, h, encode(t, gosnmp.Version2c, "public", gosnmp.GetRequest, 0, 0, nulls(sysName0, ifPhys1)...)))
	checkVars(t, p.Variables, []vb{{sysName0, gosnmp.OctetString, "plc-pumpstation-2"}, {ifPhys1, gosnmp.OctetString, string([]byte{0, 0x1b, 0x1b, 0x4a, 0x10, 0xfe})}})
}

// Test engine: RFC 3411 format 3 under Siemens' enterprise 4329 (0x10e9) with the MAC.
var testEngineID = []byte{0x80, 0x00, 0x10, 0xe9, 0x03, 0x00, 0x1b, 0x1b, 0x4a, 0x10, 0xfe}

// testBoots is snmpEngineBoots derived from the test identity's serial and MAC.
func testBoots() byte {
	f := fnv.New32a()
	f.Write([]byte(protocoltest.Identity().Serial))
	f.Write(protocoltest.Identity().MAC)
	return byte(2 + f.Sum32()%40)
}

// v3Msg builds an SNMPv3 message; msgData is a ScopedPDU or an encryptedPDU.
func v3Msg(msgID []byte, flags byte, model byte, engineID []byte, user string, msgData []byte) []byte {
	usm := ber(0x30, ber(0x04, engineID), berInt(0), berInt(0), ber(0x04, []byte(user)), ber(0x04, nil), ber(0x04, nil))
	return ber(0x30, berInt(3), ber(0x30, berInt(msgID...), berInt(0x00, 0xff, 0xe3), ber(0x04, []byte{flags}), berInt(model)),
		ber(0x04, usm), msgData)
}

func scopedPDU(engineID []byte, context string, pdu byte, reqID []byte, vbs ...[]byte) []byte {
	return ber(0x30, ber(0x04, engineID), ber(0x04, []byte(context)), ber(pdu, berInt(reqID...), berInt(0), berInt(0), ber(0x30, vbs...)))
}

// report is the Report the agent must send: noAuthNoPriv, its engine, 1000 s after boot.
func report(msgID []byte, user, context string, reqID []byte, counter string) []byte {
	usm := ber(0x30, ber(0x04, testEngineID), berInt(testBoots()), berInt(0x03, 0xe8), ber(0x04, []byte(user)), ber(0x04, nil), ber(0x04, nil))
	return ber(0x30, berInt(3), ber(0x30, berInt(msgID...), berInt(0x05, 0xc0), ber(0x04, []byte{0}), berInt(3)),
		ber(0x04, usm), scopedPDU(testEngineID, context, 0xa8, reqID, rawVB(counter, ber(0x41, []byte{1}))))
}

func TestSNMPv3(t *testing.T) {
	nmapProbe := []byte("\x30\x3a\x02\x01\x03\x30\x0f\x02\x02\x4a\x69\x02\x03\x00\xff\xe3\x04\x01\x04\x02\x01\x03\x04\x10\x30\x0e\x04\x00\x02\x01\x00\x02\x01\x00\x04\x00\x04\x00\x04\x00\x30\x12\x04\x00\x04\x00\xa0\x0c\x02\x02\x37\xf0\x02\x01\x00\x02\x01\x00\x30\x00")
	msgID := []byte{0x12, 0x34, 0x56}
	getDescr := scopedPDU(nil, "", 0xa0, []byte{0x01, 0x02}, rawVB(sysDescr0, null))
	tests := []struct {
		name   string
		mod    func(*Config)
		req    []byte
		want   []byte // nil: no answer
		op     string
		detail map[string]string
	}{
		{
			name: "nmap snmp-info discovery probe", req: nmapProbe, op: "get_request",
			want:   report([]byte{0x4a, 0x69}, "", "", []byte{0x37, 0xf0}, "1.3.6.1.6.3.15.1.1.4.0"),
			detail: map[string]string{"version": "3", "report": "unknown_engine_id", "security_level": "noAuthNoPriv", "user": ""},
		},
		{
			name: "discovery with a user and a negative request-id", op: "get_next_request",
			req:  v3Msg(msgID, 0x04, 3, nil, "admin", scopedPDU(nil, "", 0xa1, []byte{0xff}, rawVB(sysDescr0, null))),
			want: report(msgID, "admin", "", []byte{0xff}, "1.3.6.1.6.3.15.1.1.4.0"),
		},
		{
			name: "request for this engine by an unknown user", op: "get_request",
			req:    v3Msg(msgID, 0x04, 3, testEngineID, "operator", scopedPDU(testEngineID, "ctx", 0xa0, []byte{0x01, 0x02}, rawVB(sysDescr0, null))),
			want:   report(msgID, "operator", "ctx", []byte{0x01, 0x02}, "1.3.6.1.6.3.15.1.1.3.0"),
			detail: map[string]string{"report": "unknown_user_name", "user": "operator"},
		},
		{
			name: "authPriv request, encrypted", op: "encrypted_request",
			req:    v3Msg(msgID, 0x07, 3, testEngineID, "admin", ber(0x04, []byte("ciphertext"))),
			want:   report(msgID, "admin", "", []byte{0}, "1.3.6.1.6.3.15.1.1.3.0"),
			detail: map[string]string{"security_level": "authPriv"},
		},
		{name: "not reportable", op: "get_request", req: v3Msg(msgID, 0x00, 3, nil, "", getDescr)},
		{name: "report PDU", op: "unsupported_pdu", req: v3Msg(msgID, 0x04, 3, nil, "", scopedPDU(nil, "", 0xa8, []byte{1}))},
		{name: "privacy without authentication", op: "malformed", req: v3Msg(msgID, 0x06, 3, nil, "", ber(0x04, []byte("x")))},
		{name: "security model 2", op: "unsupported_security_model", req: v3Msg(msgID, 0x04, 2, nil, "", getDescr)},
		{name: "user name of 33 octets", op: "malformed", req: v3Msg(msgID, 0x04, 3, nil, strings.Repeat("u", 33), getDescr)},
		{name: "msgID beyond range", op: "malformed", req: v3Msg([]byte{0x80, 0, 0, 0}, 0x04, 3, nil, "", getDescr)},
		{name: "encrypted data without the privacy flag", op: "malformed", req: v3Msg(msgID, 0x05, 3, nil, "", ber(0x04, []byte("x")))},
		{name: "snmpv3 off", op: "unsupported_version", req: nmapProbe, mod: func(c *Config) { c.SNMPv3 = false }},
		{
			name: "configured engine ID", req: nmapProbe, op: "get_request",
			mod: func(c *Config) { c.EngineID = "800010e905706c632d31"; c.EngineBoots = 7 },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTestHandler(t, tc.mod)
			out, events := exchange(t, h, tc.req)
			if tc.name == "configured engine ID" {
				m, err := scanV3(out)
				if err != nil || !bytes.Equal(m.engineID, mustHex("800010e905706c632d31")) || m.boots != 7 || m.time != 1000 {
					t.Fatalf("report %x: %+v %v", out, m, err)
				}
				return
			}
			if !bytes.Equal(out, tc.want) {
				t.Errorf("answer\n%x, want\n%x", out, tc.want)
			}
			if len(events) != 1 || events[0].Op != tc.op {
				t.Fatalf("events %+v, want one %s", events, tc.op)
			}
			for k, v := range tc.detail {
				if events[0].Detail[k] != v {
					t.Errorf("detail %s = %q, want %q", k, events[0].Detail[k], v)
				}
			}
		})
	}
	t.Run("reports count", func(t *testing.T) {
		h, _ := newTestHandler(t, nil)
		for i := 1; i <= 3; i++ {
			m, err := scanV3(mustExchange(t, h, nmapProbe))
			if err != nil {
				t.Fatal(err)
			}
			if got := m.pdu.varbinds[0].value.contents; !bytes.Equal(got, []byte{byte(i)}) {
				t.Errorf("report %d counts %x", i, got)
			}
		}
	})
}

// TestOptionalMIBs leaves out LLDP-MIB and ENTITY-MIB: their instances are gone from
// GET (noSuchObject), GETNEXT and walks, the rest of the tree is the same, and a device
// without LLDP sends fewer multicasts.
func TestOptionalMIBs(t *testing.T) {
	const (
		lldpChassisID0 = "1.0.8802.1.1.2.1.3.2.0"
		entMfgName1    = "1.3.6.1.2.1.47.1.1.1.1.12.1"
		snmpLast       = "1.3.6.1.2.1.11.32.0" // snmpProxyDrops.0
		ifOutNUcast1   = "1.3.6.1.2.1.2.2.1.18.1"
	)
	get := func(t *testing.T, h *Handler, pdu gosnmp.PDUType, oids ...string) []gosnmp.SnmpPDU {
		t.Helper()
		return decodeResponse(t, mustExchange(t, h, encode(t, gosnmp.Version2c, "public", pdu, 0, 0, nulls(oids...)...))).Variables
	}
	full, _ := newTestHandler(t, nil)
	fullOIDs := sortedOIDs(full, testLocal.Addr())
	fullNUcast := get(t, full, gosnmp.GetRequest, ifOutNUcast1)[0].Value.(uint)
	for _, tc := range []struct {
		name         string
		lldp, entity bool
		first, last  string // first and last instance of the tree
	}{
		{"no LLDP", false, true, sysDescr0, lastOID},
		{"no ENTITY", true, false, firstOID, snmpLast},
		{"neither", false, false, sysDescr0, snmpLast},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTestHandler(t, func(c *Config) { c.LLDPMIB, c.EntityMIB = tc.lldp, tc.entity })
			want := slices.DeleteFunc(slices.Clone(fullOIDs), func(o string) bool {
				return (!tc.lldp && strings.HasPrefix(o, "1.0.8802.")) || (!tc.entity && strings.HasPrefix(o, "1.3.6.1.2.1.47."))
			})
			if got := sortedOIDs(h, testLocal.Addr()); !slices.Equal(got, want) || len(got) == len(fullOIDs) {
				t.Errorf("tree of %d instances, want the %d of the full tree without the left-out MIBs", len(got), len(want))
			}
			lldpType, entType := gosnmp.OctetString, gosnmp.OctetString
			if !tc.lldp {
				lldpType = gosnmp.NoSuchObject
			}
			if !tc.entity {
				entType = gosnmp.NoSuchObject
			}
			checkVars(t, get(t, h, gosnmp.GetRequest, lldpChassisID0, entMfgName1, sysName0), []vb{
				{lldpChassisID0, lldpType, nil}, {entMfgName1, entType, nil}, {sysName0, gosnmp.OctetString, "plc-pumpstation-2"}})
			vars := get(t, h, gosnmp.GetNextRequest, "0.0", tc.last)
			if len(vars) != 2 || strings.TrimPrefix(vars[0].Name, ".") != tc.first || vars[1].Type != gosnmp.EndOfMibView {
				t.Errorf("getnext of 0.0 and %s: %v, want %s and endOfMibView", tc.last, vars, tc.first)
			}
			// LLDP every 5 s is most of a port's multicasts: without it, far fewer.
			nu := get(t, h, gosnmp.GetRequest, ifOutNUcast1)[0].Value.(uint)
			if tc.lldp && nu != fullNUcast || !tc.lldp && (nu == 0 || nu*10 > fullNUcast) {
				t.Errorf("ifOutNUcastPkts.1 = %d, with LLDP %d", nu, fullNUcast)
			}
		})
	}
}

// TestRealClientsWithoutOptionalMIBs walks an agent without LLDP-MIB and ENTITY-MIB
// with net-snmp: the walk is the tree without them, and a GET of an LLDP object is
// "No Such Object".
func TestRealClientsWithoutOptionalMIBs(t *testing.T) {
	h, _ := newTestHandler(t, func(c *Config) { c.RateLimit, c.LLDPMIB, c.EntityMIB = 0, false, false })
	agent := protocoltest.ServeUDP(t, "127.0.0.1:0", h).Addr.String()
	out, err := run(t, "snmpbulkwalk", "-On", "-m", "", "-t", "2", "-r", "1", "-v2c", "-c", "public", "-Cr25", agent, ".1")
	if err != nil {
		t.Fatalf("snmpbulkwalk: %v\n%s", err, out)
	}
	got := walkedOIDs(out)
	if want := sortedOIDs(h, netip.MustParseAddr("127.0.0.1")); !slices.Equal(got, want) || len(got) < 100 {
		t.Errorf("snmpbulkwalk walked %d OIDs, want %d:\n%s", len(got), len(want), out)
	}
	if strings.Contains(out, ".1.0.8802.") || strings.Contains(out, ".1.3.6.1.2.1.47.") {
		t.Errorf("the walk shows LLDP-MIB or ENTITY-MIB:\n%s", out)
	}
	out, err = run(t, "snmpget", "-On", "-m", "", "-t", "2", "-r", "1", "-v2c", "-c", "public", agent, "1.0.8802.1.1.2.1.3.2.0")
	if err != nil || !strings.Contains(out, "No Such Object available on this agent at this OID") {
		t.Errorf("snmpget lldpLocChassisId.0: %v\n%s", err, out)
	}
}
