package capture

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/pcapot/pcapot/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// libpcapProgram compiles expr with libpcap through `tcpdump -ddd` for DLT_EN10MB.
func libpcapProgram(t testing.TB, expr string) []bpf.RawInstruction {
	t.Helper()
	tcpdump := testenv.LookPath(t, "tcpdump")
	out, err := exec.Command(tcpdump, "-ddd", "-y", "EN10MB", expr).Output()
	if err != nil {
		// Some tcpdump builds want an interface to pick the link type from.
		var err2 error
		out, err2 = exec.Command(tcpdump, "-ddd", "-i", "lo", expr).Output()
		if err2 != nil {
			t.Fatalf("tcpdump -ddd (%d-byte expression): %v / -i lo: %v", len(expr), err, err2)
		}
	}
	prog, err := ParseBytecode(string(out))
	if err != nil {
		t.Fatalf("parse tcpdump -ddd output (%d-byte expression): %v", len(expr), err)
	}
	return prog
}

// vmFilter returns a function that runs prog in bpf.NewVM. The VM lacks the ExtType
// extension, so a leading PACKET_OUTGOING check (ld type; jeq #4) is stripped; the
// check itself is proven live.
func vmFilter(t testing.TB, prog []bpf.RawInstruction) func([]byte) bool {
	t.Helper()
	ins, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatalf("cannot disassemble %v", prog)
	}
	if len(ins) > 2 {
		if le, ok := ins[0].(bpf.LoadExtension); ok && le.Num == bpf.ExtType {
			ins = ins[2:]
		}
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	return func(pkt []byte) bool {
		n, err := vm.Run(pkt)
		if err != nil {
			t.Fatalf("vm.Run: %v", err)
		}
		return n > 0
	}
}

// truncations returns prefixes of frame cut inside the headers the filters read.
func truncations(frame []byte) [][]byte {
	var out [][]byte
	for _, n := range []int{13, 14, 20, 23, 24, 30, 34, 36, 38, 40, 54, 56} {
		if n < len(frame) {
			out = append(out, frame[:n])
		}
	}
	return out
}

// variants are the shapes every 5-tuple combination of the corpus is built in.
func variants(v6 bool) []frameSpec {
	if v6 {
		return []frameSpec{{}, {hopByHop: true}, {vlan: 1}, {frag: "first", fragID: 77}, {frag: "last", fragID: 77}}
	}
	return []frameSpec{{}, {ip4Options: true}, {vlan: 1}, {vlan: 2}, {frag: "first", fragID: 77}, {frag: "last", fragID: 77}}
}

type corpusFrame struct {
	name string
	data []byte
}

// corpus builds every combination of hosts × hosts × ports × ports × protocols ×
// variants, plus truncated copies of the plain frames.
func corpus(t testing.TB, hosts []netip.Addr, ports []uint16, protos []uint8) []corpusFrame {
	t.Helper()
	var out []corpusFrame
	for _, src := range hosts {
		for _, dst := range hosts {
			if src.Is4() != dst.Is4() {
				continue
			}
			for _, sp := range ports {
				for _, dp := range ports {
					for _, proto := range protos {
						for i, v := range variants(src.Is6()) {
							v.proto, v.src, v.dst, v.sport, v.dport = proto, src, dst, sp, dp
							v.flags, v.payload = tcpACK|tcpPSH, []byte("ics request")
							name := fmt.Sprintf("p%d %v:%d>%v:%d v%d", proto, src, sp, dst, dp, i)
							f := v.build(t)
							out = append(out, corpusFrame{name, f})
							if i == 0 {
								for _, tr := range truncations(f) {
									out = append(out, corpusFrame{fmt.Sprintf("%s cut%d", name, len(tr)), tr})
								}
							}
						}
					}
				}
			}
		}
	}
	return out
}

// compareWithLibpcap runs both programs over frames and fails on any disagreement. It
// returns how many frames were accepted.
func compareWithLibpcap(t *testing.T, ours, libpcap []bpf.RawInstruction, frames []corpusFrame) int {
	t.Helper()
	o, l := vmFilter(t, ours), vmFilter(t, libpcap)
	accepted, diffs := 0, 0
	for _, f := range frames {
		a, b := o(f.data), l(f.data)
		if a != b {
			diffs++
			if diffs <= 10 {
				t.Errorf("%s: ours accepts=%v, libpcap accepts=%v", f.name, a, b)
			}
		}
		if b {
			accepted++
		}
	}
	if diffs > 0 {
		t.Fatalf("%d of %d frames differ", diffs, len(frames))
	}
	return accepted
}

var sessionTuples = []struct {
	name string
	t    Tuple
}{
	{"tcp4", Tuple{ProtoTCP, mustAddrPort("192.0.2.10:40000"), mustAddrPort("198.51.100.5:502")}},
	{"udp4", Tuple{ProtoUDP, mustAddrPort("203.0.113.7:5353"), mustAddrPort("10.0.0.2:161")}},
	{"tcp6", Tuple{ProtoTCP, mustAddrPort("[2001:db8::10]:40000"), mustAddrPort("[2001:db8::5]:102")}},
	{"udp6", Tuple{ProtoUDP, mustAddrPort("[2001:db8:1::7]:47808"), mustAddrPort("[2001:db8::5]:47808")}},
	{"tcp4-same-host", Tuple{ProtoTCP, mustAddrPort("127.0.0.1:40000"), mustAddrPort("127.0.0.1:502")}},
	{"udp6-same-host", Tuple{ProtoUDP, mustAddrPort("[::1]:40000"), mustAddrPort("[::1]:161")}},
	{"tcp4-mapped", Tuple{ProtoTCP, mustAddrPort("[::ffff:192.0.2.10]:40000"), mustAddrPort("[::ffff:198.51.100.5]:502")}},
	{"tcp4-equal-ports", Tuple{ProtoTCP, mustAddrPort("10.0.0.1:502"), mustAddrPort("10.0.0.2:502")}},
	{"tcp4-self", Tuple{ProtoTCP, mustAddrPort("127.0.0.1:502"), mustAddrPort("127.0.0.1:502")}},
}

// TestSessionFilterMatchesLibpcap proves each session program equal to libpcap's
// compilation of its expression over a corpus built from the tuple's own hosts and
// ports plus foreign ones (exact, reversed, swapped ports, same host, IPv4 options,
// VLAN, fragments, IPv6 hop-by-hop, truncation).
func TestSessionFilterMatchesLibpcap(t *testing.T) {
	t.Parallel()
	for _, tc := range sessionTuples {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := SessionFilter(tc.t)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := tc.t.Normalize()
			foreign, foreign6 := mustAddr("192.0.2.99"), mustAddr("2001:db8::99")
			hosts := []netip.Addr{n.Client.Addr(), n.Server.Addr(), foreign}
			other := []netip.Addr{mustAddr("2001:db8::10"), foreign6}
			if n.Client.Addr().Is6() {
				hosts[2], other = foreign6, []netip.Addr{mustAddr("192.0.2.10"), foreign}
			}
			hosts = slices.Compact(hosts)
			ports := slices.Compact([]uint16{n.Client.Port(), n.Server.Port(), 1234})
			frames := corpus(t, hosts, ports, []uint8{ProtoTCP, ProtoUDP, 1})
			frames = append(frames, corpus(t, other, ports, []uint8{n.Proto})...)
			accepted := compareWithLibpcap(t, f.Program, libpcapProgram(t, f.Expr), frames)

			// Independent of libpcap: the exact tuple both ways is accepted, the tuple
			// with swapped ports and the other transport are not.
			ok := vmFilter(t, f.Program)
			c, s := n.Client, n.Server
			fwd := frameSpec{proto: n.Proto, src: c.Addr(), dst: s.Addr(), sport: c.Port(), dport: s.Port(), flags: tcpSYN}
			rev := frameSpec{proto: n.Proto, src: s.Addr(), dst: c.Addr(), sport: s.Port(), dport: c.Port(), flags: tcpSYN | tcpACK}
			swapped := frameSpec{proto: n.Proto, src: c.Addr(), dst: s.Addr(), sport: s.Port(), dport: c.Port()}
			otherProto := fwd
			otherProto.proto = ProtoTCP + ProtoUDP - n.Proto
			if !ok(fwd.build(t)) || !ok(rev.build(t)) {
				t.Errorf("exact tuple not accepted in both directions")
			}
			// (With the same host on both sides, swapped ports are the reverse direction.)
			if c.Addr() != s.Addr() && c.Port() != s.Port() && ok(swapped.build(t)) {
				t.Errorf("swapped ports accepted")
			}
			if ok(otherProto.build(t)) {
				t.Errorf("other transport accepted")
			}
			if accepted < 2 {
				t.Errorf("only %d corpus frames accepted; corpus does not exercise the filter", accepted)
			}
			t.Logf("%d instructions, %d frames, %d accepted", len(f.Program), len(frames), accepted)
		})
	}
}

func TestSessionFilterGolden(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for _, tc := range sessionTuples {
		f, err := SessionFilter(tc.t)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "== %s %v\n%s\n%s\n", tc.name, tc.t, f.Expr, f.Bytecode())
		back, err := ParseBytecode(f.Bytecode())
		if err != nil || !slices.Equal(back, f.Program) {
			t.Errorf("%s: Bytecode does not round-trip: %v", tc.name, err)
		}
	}
	golden(t, "session_filters.golden", b.String())
}

func TestSessionFilterErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		t    Tuple
	}{
		{"icmp", Tuple{1, mustAddrPort("10.0.0.1:0"), mustAddrPort("10.0.0.2:0")}},
		{"zero", Tuple{Proto: ProtoTCP}},
		{"mixed", Tuple{ProtoTCP, mustAddrPort("10.0.0.1:1"), mustAddrPort("[2001:db8::1]:2")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SessionFilter(tc.t); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

var sensorConfigs = []struct {
	name string
	c    SensorFilterConfig
}{
	{"full", SensorFilterConfig{
		Addrs:    []netip.Addr{mustAddr("10.0.0.2"), mustAddr("10.0.0.3"), mustAddr("2001:db8::5"), mustAddr("::ffff:10.0.0.2")},
		TCPPorts: []uint16{502, 102, 502}, UDPPorts: []uint16{161},
		Exclude: []netip.AddrPort{mustAddrPort("10.0.0.9:9000"), mustAddrPort("[2001:db8::9]:22"), mustAddrPort("10.0.0.8:0")},
	}},
	{"any", SensorFilterConfig{TCPPorts: []uint16{502}, UDPPorts: []uint16{161, 47808}, Exclude: []netip.AddrPort{mustAddrPort("10.0.0.9:9000"), mustAddrPort("[2001:db8::9]:0")}}},
	{"v4-tcp", SensorFilterConfig{Addrs: []netip.Addr{mustAddr("10.0.0.2")}, TCPPorts: []uint16{502}}},
	{"v6-udp", SensorFilterConfig{Addrs: []netip.Addr{mustAddr("2001:db8::5")}, UDPPorts: []uint16{161}}},
}

// TestSensorFilterMatchesLibpcap proves the sensor-wide program equal to libpcap's
// compilation of its expression.
func TestSensorFilterMatchesLibpcap(t *testing.T) {
	t.Parallel()
	hosts := []netip.Addr{
		mustAddr("10.0.0.2"), mustAddr("10.0.0.3"), mustAddr("10.0.0.8"), mustAddr("10.0.0.9"), mustAddr("192.0.2.1"),
		mustAddr("2001:db8::5"), mustAddr("2001:db8::9"), mustAddr("2001:db8::77"),
	}
	ports := []uint16{502, 161, 9000, 22, 40000}
	frames := corpus(t, hosts, ports, []uint8{ProtoTCP, ProtoUDP, 1})
	for _, tc := range sensorConfigs {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prog, expr, err := SensorFilter(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			accepted := compareWithLibpcap(t, prog, libpcapProgram(t, expr), frames)
			if accepted == 0 {
				t.Fatal("no frame accepted")
			}
			t.Logf("%d instructions, %d of %d frames accepted", len(prog), accepted, len(frames))
		})
	}
}

func TestSensorFilterLoopbackPrefix(t *testing.T) {
	t.Parallel()
	c := sensorConfigs[0].c
	plain, plainExpr, err := SensorFilter(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Loopback = true
	lo, loExpr, err := SensorFilter(c)
	if err != nil {
		t.Fatal(err)
	}
	want := []bpf.Instruction{bpf.LoadExtension{Num: bpf.ExtType}, bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4, SkipTrue: uint8(len(plain) - 1)}}
	got, _ := bpf.Disassemble(lo[:2])
	if !slices.Equal(got, want) {
		t.Errorf("prefix = %v, want %v", got, want)
	}
	if !slices.Equal(lo[2:], plain) {
		t.Errorf("loopback program is not prefix + plain program")
	}
	if loExpr != "inbound and ("+plainExpr+")" {
		t.Errorf("loopback expr = %q", loExpr)
	}
	libpcapProgram(t, loExpr) // libpcap must compile it
}

// TestSensorFilterLarge needs jumps farther than 255 instructions (relaxed through
// "ja" stubs) and is compared with libpcap as well.
func TestSensorFilterLarge(t *testing.T) {
	t.Parallel()
	c := SensorFilterConfig{Exclude: []netip.AddrPort{mustAddrPort("10.0.0.9:9000")}}
	for i := range 20 {
		c.Addrs = append(c.Addrs, netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}))
	}
	c.Addrs = append(c.Addrs, mustAddr("10.0.0.2"), mustAddr("2001:db8::5"))
	for p := range uint16(150) {
		c.TCPPorts = append(c.TCPPorts, 1000+p)
	}
	c.TCPPorts = append(c.TCPPorts, 502)
	c.UDPPorts = []uint16{161}
	prog, expr, err := SensorFilter(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(prog) < 600 {
		t.Fatalf("program has only %d instructions; no far jumps exercised", len(prog))
	}
	hosts := []netip.Addr{mustAddr("10.0.0.2"), mustAddr("10.0.1.19"), mustAddr("10.0.0.9"), mustAddr("192.0.2.1"), mustAddr("2001:db8::5"), mustAddr("2001:db8::77")}
	frames := corpus(t, hosts, []uint16{502, 1149, 161, 9000, 40000}, []uint8{ProtoTCP, ProtoUDP})
	accepted := compareWithLibpcap(t, prog, libpcapProgram(t, expr), frames)
	t.Logf("%d instructions, %d of %d frames accepted", len(prog), accepted, len(frames))
}

func TestSensorFilterErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		c    SensorFilterConfig
	}{
		{"no ports", SensorFilterConfig{Addrs: []netip.Addr{mustAddr("10.0.0.1")}}},
		{"port 0", SensorFilterConfig{TCPPorts: []uint16{0}}},
		{"unspecified addr", SensorFilterConfig{Addrs: []netip.Addr{netip.IPv4Unspecified()}, TCPPorts: []uint16{1}}},
		{"invalid exclude", SensorFilterConfig{TCPPorts: []uint16{1}, Exclude: []netip.AddrPort{{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := SensorFilter(tc.c); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestSensorFilterGolden(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for _, tc := range sensorConfigs {
		_, expr, err := SensorFilter(tc.c)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "== %s\n%s\n", tc.name, expr)
	}
	golden(t, "sensor_filters.golden", b.String())
}

func TestParseBytecodeErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "x", "2\n1 2 3 4\n", "1\n1 2 3\n", "1\n1 2 300 4\n", "1\n70000 0 0 0\n"} {
		if _, err := ParseBytecode(in); err == nil {
			t.Errorf("ParseBytecode(%q): no error", in)
		}
	}
}

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
