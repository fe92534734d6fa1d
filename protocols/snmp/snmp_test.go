package snmp

import (
	"context"
	"fmt"
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

// testIdentity is the persona of the tests: an S7-1200 in a water works.
func testIdentity() *protocols.Identity {
	return &protocols.Identity{
		Vendor:      "Siemens",
		Product:     "SIMATIC S7-1200",
		Model:       "CPU 1214C DC/DC/DC",
		OrderNumber: "6ES7 214-1AG40-0XB0",
		Firmware:    "V4.5.2",
		Hardware:    "3",
		Serial:      "S C-J7UD43012026",
		MAC:         net.HardwareAddr{0x00, 0x1b, 0x1b, 0x4a, 0x10, 0xfe},
		Hostname:    "plc-pumpstation-2",
		ModuleName:  "PS2_PLC1",
		Location:    "Pumpstation 2, cabinet A3",
		Contact:     "Leitwarte +49 911 5555 310",
		SysObjectID: "1.3.6.1.4.1.4329.6.1.2",
	}
}

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
	env := protocoltest.Env(t, testIdentity())
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
