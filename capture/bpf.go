package capture

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"
)

// Offsets for DLT_EN10MB (SOCK_RAW packet sockets, including Linux lo).
const (
	linkOff      = 14
	etherTypeOff = 12
	etherTypeIP4 = 0x0800
	etherTypeIP6 = 0x86dd
	// acceptLen is the return value of an accepting filter: libpcap's MAXIMUM_SNAPLEN,
	// as in tcpdump -ddd output.
	acceptLen = 262144
	// packetOutgoing is the kernel's PACKET_OUTGOING pkt_type.
	packetOutgoing = 4
)

// Filter is the exact 5-tuple filter of one session.
type Filter struct {
	// Expr is the tcpdump/libpcap expression; `tcpdump -r full.pcap EXPR` carves the
	// session out of a full capture.
	Expr string
	// Program is Expr compiled for DLT_EN10MB (link offset 14). It accepts the same
	// packets as libpcap's compilation of Expr.
	Program []bpf.RawInstruction
}

// Bytecode formats the program like `tcpdump -ddd`: the instruction count on the first
// line, then one "code jt jf k" line per instruction, in decimal.
func (f Filter) Bytecode() string {
	return formatBytecode(f.Program)
}

func formatBytecode(prog []bpf.RawInstruction) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(prog)))
	b.WriteByte('\n')
	for _, r := range prog {
		fmt.Fprintf(&b, "%d %d %d %d\n", r.Op, r.Jt, r.Jf, r.K)
	}
	return b.String()
}

// maxParseInsns bounds ParseBytecode; libpcap itself produces programs longer than the
// kernel's limit.
const maxParseInsns = 1 << 16

// ParseBytecode parses `tcpdump -ddd` output (as produced by Filter.Bytecode) back
// into a program.
func ParseBytecode(s string) ([]bpf.RawInstruction, error) {
	rows := strings.Split(strings.TrimSpace(s), "\n")
	if len(rows) == 0 || rows[0] == "" {
		return nil, errors.New("capture: empty bytecode")
	}
	n, err := strconv.Atoi(strings.TrimSpace(rows[0]))
	if err != nil {
		return nil, fmt.Errorf("capture: bytecode count: %w", err)
	}
	if n < 1 || n > maxParseInsns || n != len(rows)-1 {
		return nil, fmt.Errorf("capture: bytecode announces %d instructions, has %d (at most %d)", n, len(rows)-1, maxParseInsns)
	}
	prog := make([]bpf.RawInstruction, n)
	for i, row := range rows[1:] {
		f := strings.Fields(row)
		if len(f) != 4 {
			return nil, fmt.Errorf("capture: bytecode line %d: want 4 fields, got %q", i+2, row)
		}
		var v [4]uint64
		for j, bits := range [4]int{16, 8, 8, 32} {
			if v[j], err = strconv.ParseUint(f[j], 10, bits); err != nil {
				return nil, fmt.Errorf("capture: bytecode line %d: %w", i+2, err)
			}
		}
		prog[i] = bpf.RawInstruction{Op: uint16(v[0]), Jt: uint8(v[1]), Jf: uint8(v[2]), K: uint32(v[3])}
	}
	return prog, nil
}

// SessionFilter returns the exact 5-tuple filter of t:
//
//	proto and ((src host C and src port c and dst host S and dst port s) or
//	           (src host S and src port s and dst host C and dst port c))
//
// (on one line). An IPv4-mapped IPv6 address is treated as IPv4. Like libpcap's
// compilation of the same expression, the program rejects IPv4 non-first fragments,
// IPv6 packets with extension headers and 802.1Q-tagged frames; the Demux keeps the
// fragments of a session regardless (see README.md).
func SessionFilter(t Tuple) (Filter, error) {
	t, err := t.Normalize()
	if err != nil {
		return Filter{}, err
	}
	c, s := t.Client, t.Server
	expr := fmt.Sprintf("%s and ((src host %s and src port %d and dst host %s and dst port %d) or (src host %s and src port %d and dst host %s and dst port %d))",
		protoName(t.Proto), c.Addr(), c.Port(), s.Addr(), s.Port(), s.Addr(), s.Port(), c.Addr(), c.Port())

	var a assembler
	a.emit(bpf.LoadAbsolute{Off: etherTypeOff, Size: 2})
	dirs := [2]struct {
		here, next string
		src, dst   netip.AddrPort
	}{
		{"fwd", "rev", c, s},
		// A mismatch anywhere in the forward branch falls through to the reverse branch:
		// with C == S (same host on lo) the addresses match both ways and only the ports
		// tell the directions apart.
		{"rev", "drop", s, c},
	}
	if c.Addr().Is4() {
		a.jeq(etherTypeIP4, "", "drop")
		a.emit(bpf.LoadAbsolute{Off: linkOff + 9, Size: 1})
		a.jeq(uint32(t.Proto), "", "drop")
		for _, d := range dirs {
			a.label(d.here)
			a.emit(bpf.LoadAbsolute{Off: linkOff + 12, Size: 4})
			a.jeq(ip4Word(d.src.Addr()), "", d.next)
			a.emit(bpf.LoadAbsolute{Off: linkOff + 16, Size: 4})
			a.jeq(ip4Word(d.dst.Addr()), "", d.next)
			a.emit(bpf.LoadAbsolute{Off: linkOff + 6, Size: 2})
			a.jif(bpf.JumpBitsSet, 0x1fff, "drop", "") // libpcap: ports never match a non-first fragment
			a.emit(bpf.LoadMemShift{Off: linkOff})
			a.emit(bpf.LoadIndirect{Off: linkOff, Size: 2})
			a.jeq(uint32(d.src.Port()), "", d.next)
			a.emit(bpf.LoadIndirect{Off: linkOff + 2, Size: 2})
			a.jeq(uint32(d.dst.Port()), "accept", d.next)
		}
	} else {
		a.jeq(etherTypeIP6, "", "drop")
		a.emit(bpf.LoadAbsolute{Off: linkOff + 6, Size: 1})
		a.jeq(uint32(t.Proto), "", "drop")
		for _, d := range dirs {
			a.label(d.here)
			matchIP6(&a, linkOff+8, d.src.Addr(), "", d.next)
			matchIP6(&a, linkOff+24, d.dst.Addr(), "", d.next)
			a.emit(bpf.LoadAbsolute{Off: linkOff + 40, Size: 2})
			a.jeq(uint32(d.src.Port()), "", d.next)
			a.emit(bpf.LoadAbsolute{Off: linkOff + 42, Size: 2})
			a.jeq(uint32(d.dst.Port()), "accept", d.next)
		}
	}
	a.label("accept")
	a.emit(bpf.RetConstant{Val: acceptLen})
	a.label("drop")
	a.emit(bpf.RetConstant{Val: 0})
	prog, err := a.assemble()
	if err != nil {
		return Filter{}, err
	}
	return Filter{Expr: expr, Program: prog}, nil
}

func ip4Word(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// matchIP6 compares the 16-byte address at absolute offset off with addr: all four
// words equal continues at yes, any difference at no.
func matchIP6(a *assembler, off uint32, addr netip.Addr, yes, no string) {
	b := addr.As16()
	for i := range 4 {
		a.emit(bpf.LoadAbsolute{Off: off + uint32(4*i), Size: 4})
		t := ""
		if i == 3 {
			t = yes
		}
		a.jeq(binary.BigEndian.Uint32(b[4*i:]), t, no)
	}
}

// SensorFilterConfig describes the traffic a sensor captures.
type SensorFilterConfig struct {
	// Addrs are the sensor's addresses; empty means any address.
	Addrs []netip.Addr
	// TCPPorts and UDPPorts are the emulated services' ports.
	TCPPorts, UDPPorts []uint16
	// Loopback prefixes the program with a check that drops PACKET_OUTGOING copies.
	// Only for lo, which shows every packet twice; on a real NIC it would delete the
	// sensor's own replies.
	Loopback bool
	// Exclude lists endpoints (management, S3 upload) whose traffic is never captured:
	// a packet from Addr with source port Port or to Addr with destination port Port.
	// Port 0 excludes every packet from or to Addr.
	Exclude []netip.AddrPort
}

// Limits of SensorFilterConfig; with them the program stays far below BPF_MAXINSNS.
const (
	maxSensorAddrs    = 64
	maxSensorPorts    = 512
	maxSensorExcludes = 64
)

// SensorFilter returns the sensor-wide kernel filter and its tcpdump expression. It
// accepts, with the Exclude endpoints removed:
//
//   - TCP/UDP packets to a sensor address and a service port of that transport, or
//     from a sensor address and a service port (the replies);
//   - IPv4 non-first fragments of TCP/UDP to or from a sensor address, which carry
//     no ports (the Demux assigns them to their session by IP ID);
//   - IPv6 packets to or from a sensor address whose first next-header is an
//     extension header (hop-by-hop 0, routing 43, fragment 44, AH 51, destination
//     options 60): the kernel's TCP/UDP stack accepts them, a fixed-offset port check
//     cannot see their ports, and the Demux walks the chain.
//
// With Loopback set, the expression starts with "inbound and" and the program with
// the equivalent PACKET_OUTGOING check (libpcap's `inbound`).
func SensorFilter(c SensorFilterConfig) (prog []bpf.RawInstruction, expr string, err error) {
	s, err := c.normalize()
	if err != nil {
		return nil, "", err
	}
	expr = s.expr()
	var a assembler
	s.build(&a)
	prog, err = a.assemble()
	if err != nil {
		return nil, "", err
	}
	return prog, expr, nil
}

// sensorFilter is a normalized SensorFilterConfig.
type sensorFilter struct {
	any      bool // no address restriction
	v4, v6   []netip.Addr
	tcp, udp []uint16
	loopback bool
	// excludes by family; port 0 means the whole host
	ex4, ex6 []netip.AddrPort
}

var errSensorFilter = errors.New("capture: invalid sensor filter")

func (c SensorFilterConfig) normalize() (sensorFilter, error) {
	var s sensorFilter
	if len(c.Addrs) > maxSensorAddrs || len(c.TCPPorts) > maxSensorPorts || len(c.UDPPorts) > maxSensorPorts || len(c.Exclude) > maxSensorExcludes {
		return s, fmt.Errorf("%w: at most %d addresses, %d ports per transport and %d excludes", errSensorFilter, maxSensorAddrs, maxSensorPorts, maxSensorExcludes)
	}
	s.any = len(c.Addrs) == 0
	for _, a := range c.Addrs {
		a = normAddr(a)
		switch {
		case !a.IsValid() || a.IsUnspecified():
			return s, fmt.Errorf("%w: address %v (leave Addrs empty for any address)", errSensorFilter, a)
		case a.Is4():
			s.v4 = append(s.v4, a)
		default:
			s.v6 = append(s.v6, a)
		}
	}
	s.v4, s.v6 = sortedUnique(s.v4, netip.Addr.Compare), sortedUnique(s.v6, netip.Addr.Compare)
	for _, p := range append(slices.Clone(c.TCPPorts), c.UDPPorts...) {
		if p == 0 {
			return s, fmt.Errorf("%w: port 0", errSensorFilter)
		}
	}
	s.tcp, s.udp = sortedUnique(slices.Clone(c.TCPPorts), cmp.Compare), sortedUnique(slices.Clone(c.UDPPorts), cmp.Compare)
	if len(s.tcp)+len(s.udp) == 0 {
		return s, fmt.Errorf("%w: no TCP or UDP ports", errSensorFilter)
	}
	for _, e := range c.Exclude {
		a := normAddr(e.Addr())
		if !a.IsValid() || a.IsUnspecified() {
			return s, fmt.Errorf("%w: exclude address %v", errSensorFilter, e.Addr())
		}
		ap := netip.AddrPortFrom(a, e.Port())
		if a.Is4() {
			s.ex4 = append(s.ex4, ap)
		} else {
			s.ex6 = append(s.ex6, ap)
		}
	}
	s.ex4, s.ex6 = sortedUnique(s.ex4, netip.AddrPort.Compare), sortedUnique(s.ex6, netip.AddrPort.Compare)
	s.loopback = c.Loopback
	return s, nil
}

func sortedUnique[T comparable](v []T, cmp func(a, b T) int) []T {
	slices.SortFunc(v, cmp)
	return slices.Compact(v)
}

// has4 / has6: whether the filter can accept packets of the family at all.
func (s sensorFilter) has4() bool { return s.any || len(s.v4) > 0 }
func (s sensorFilter) has6() bool { return s.any || len(s.v6) > 0 }

func (s sensorFilter) addrs() []netip.Addr { return append(slices.Clone(s.v4), s.v6...) }

// expr renders the filter as a libpcap expression with exactly the program's meaning.
func (s sensorFilter) expr() string {
	hosts := func(dir string, list []netip.Addr) string {
		parts := make([]string, len(list))
		for i, a := range list {
			parts[i] = dir + "host " + a.String()
		}
		return "(" + strings.Join(parts, " or ") + ")"
	}
	ports := func(dir string, list []uint16) string {
		parts := make([]string, len(list))
		for i, p := range list {
			parts[i] = dir + "port " + strconv.Itoa(int(p))
		}
		return "(" + strings.Join(parts, " or ") + ")"
	}
	var clauses []string
	for _, tr := range []struct {
		name  string
		ports []uint16
	}{{"tcp", s.tcp}, {"udp", s.udp}} {
		if len(tr.ports) == 0 {
			continue
		}
		for _, dir := range []string{"dst ", "src "} {
			c := tr.name
			if !s.any {
				c += " and " + hosts(dir, s.addrs())
			}
			clauses = append(clauses, "("+c+" and "+ports(dir, tr.ports)+")")
		}
	}
	if s.has4() {
		var protos []string
		if len(s.tcp) > 0 {
			protos = append(protos, "ip[9] == 6")
		}
		if len(s.udp) > 0 {
			protos = append(protos, "ip[9] == 17")
		}
		c := "ip[6:2] & 0x1fff != 0 and (" + strings.Join(protos, " or ") + ")"
		if !s.any {
			c += " and " + hosts("", s.v4)
		}
		clauses = append(clauses, "("+c+")")
	}
	if s.has6() {
		var nh []string
		for _, h := range ip6ExtHeaders {
			nh = append(nh, "ip6[6] == "+strconv.Itoa(int(h)))
		}
		c := "ip6 and (" + strings.Join(nh, " or ") + ")"
		if !s.any {
			c += " and " + hosts("", s.v6)
		}
		clauses = append(clauses, "("+c+")")
	}
	e := strings.Join(clauses, " or ")
	if ex := append(slices.Clone(s.ex4), s.ex6...); len(ex) > 0 {
		var parts []string
		for _, x := range ex {
			if x.Port() == 0 {
				parts = append(parts, "host "+x.Addr().String())
				continue
			}
			parts = append(parts,
				fmt.Sprintf("(src host %s and src port %d)", x.Addr(), x.Port()),
				fmt.Sprintf("(dst host %s and dst port %d)", x.Addr(), x.Port()))
		}
		e = "not (" + strings.Join(parts, " or ") + ") and (" + e + ")"
	}
	if s.loopback {
		e = "inbound and (" + e + ")"
	}
	return e
}

// ip6ExtHeaders are the IPv6 next-header values the sensor filter passes on to the
// Demux instead of checking ports at a fixed offset.
var ip6ExtHeaders = [...]uint8{0, 43, 44, 51, 60}

// Offsets (DLT_EN10MB) used by the sensor program.
const (
	ip4ProtoOff = linkOff + 9
	ip4FragOff  = linkOff + 6
	ip4SrcOff   = linkOff + 12
	ip4DstOff   = linkOff + 16
	ip6NextOff  = linkOff + 6
	ip6SrcOff   = linkOff + 8
	ip6DstOff   = linkOff + 24
	ip6SportOff = linkOff + 40
	ip6DportOff = linkOff + 42
)

func (s sensorFilter) build(a *assembler) {
	if s.loopback {
		a.emit(bpf.LoadExtension{Num: bpf.ExtType})
		a.jeq(packetOutgoing, "drop", "")
	}
	a.emit(bpf.LoadAbsolute{Off: etherTypeOff, Size: 2})
	v4, v6 := "drop", "drop"
	if s.has4() {
		v4 = "v4"
	}
	if s.has6() {
		v6 = "v6"
	}
	a.jeq(etherTypeIP4, v4, "")
	a.jeq(etherTypeIP6, v6, "drop")
	if s.has4() {
		a.label("v4")
		s.build4(a)
	}
	if s.has6() {
		a.label("v6")
		s.build6(a)
	}
	a.label("accept")
	a.emit(bpf.RetConstant{Val: acceptLen})
	a.label("drop")
	a.emit(bpf.RetConstant{Val: 0})
}

// excludeHosts emits "drop if src or dst is a port-0 exclude of the family".
func (s sensorFilter) excludeHosts(a *assembler, ex []netip.AddrPort, srcOff, dstOff uint32) {
	for _, x := range ex {
		if x.Port() != 0 {
			continue
		}
		for _, off := range [2]uint32{srcOff, dstOff} {
			next := a.newLabel()
			matchAddr(a, off, x.Addr(), "drop", next)
			a.label(next)
		}
	}
}

// matchAddr jumps to yes if the address at off equals addr, else to no.
func matchAddr(a *assembler, off uint32, addr netip.Addr, yes, no string) {
	if addr.Is4() {
		a.emit(bpf.LoadAbsolute{Off: off, Size: 4})
		a.jeq(ip4Word(addr), yes, no)
		return
	}
	matchIP6(a, off, addr, yes, no)
}

// matchAnyAddr jumps to yes if the address at off is one of list, else to no.
func matchAnyAddr(a *assembler, off uint32, list []netip.Addr, yes, no string) {
	if len(list) > 0 && list[0].Is4() {
		a.emit(bpf.LoadAbsolute{Off: off, Size: 4})
		for i, addr := range list {
			f := ""
			if i == len(list)-1 {
				f = no
			}
			a.jeq(ip4Word(addr), yes, f)
		}
		return
	}
	for _, addr := range list {
		next := a.newLabel()
		matchIP6(a, off, addr, yes, next)
		a.label(next)
	}
	a.jmp(no)
}

// matchPorts jumps to yes if A (a loaded port) is one of ports, else to no.
func matchPorts(a *assembler, ports []uint16, yes, no string) {
	for i, p := range ports {
		f := ""
		if i == len(ports)-1 {
			f = no
		}
		a.jeq(uint32(p), yes, f)
	}
}

// service emits the "to a sensor address and service port, or from one" check for one
// transport. loadSport / loadDport load the ports into A.
func (s sensorFilter) service(a *assembler, list []netip.Addr, ports []uint16, srcOff, dstOff uint32, loadSport, loadDport bpf.Instruction) {
	dst := a.newLabel()
	if !s.any {
		dp := a.newLabel()
		matchAnyAddr(a, dstOff, list, dp, dst)
		a.label(dp)
	}
	a.emit(loadDport)
	matchPorts(a, ports, "accept", dst)
	a.label(dst)
	if !s.any {
		sp := a.newLabel()
		matchAnyAddr(a, srcOff, list, sp, "drop")
		a.label(sp)
	}
	a.emit(loadSport)
	matchPorts(a, ports, "accept", "drop")
}

func (s sensorFilter) build4(a *assembler) {
	s.excludeHosts(a, s.ex4, ip4SrcOff, ip4DstOff)
	a.emit(bpf.LoadAbsolute{Off: ip4FragOff, Size: 2})
	a.jif(bpf.JumpBitsSet, 0x1fff, "", "v4full")

	// Non-first fragment: no ports; TCP/UDP to or from a sensor address.
	a.emit(bpf.LoadAbsolute{Off: ip4ProtoOff, Size: 1})
	var protos []uint32
	if len(s.tcp) > 0 {
		protos = append(protos, uint32(ProtoTCP))
	}
	if len(s.udp) > 0 {
		protos = append(protos, uint32(ProtoUDP))
	}
	s.portless(a, "v4frag", protos, s.v4, ip4SrcOff, ip4DstOff)

	a.label("v4full")
	a.emit(bpf.LoadMemShift{Off: linkOff})
	s.transport(a, "v4", s.v4, s.ex4, ip4ProtoOff, ip4SrcOff, ip4DstOff,
		bpf.LoadIndirect{Off: linkOff, Size: 2}, bpf.LoadIndirect{Off: linkOff + 2, Size: 2})
}

// transport emits the port checks of one family: drop the excluded endpoints, then
// dispatch on the protocol at protoOff to the TCP and UDP service checks.
func (s sensorFilter) transport(a *assembler, fam string, list []netip.Addr, ex []netip.AddrPort, protoOff, srcOff, dstOff uint32, sport, dport bpf.Instruction) {
	s.excludePorts(a, ex, srcOff, dstOff, sport, dport)
	a.emit(bpf.LoadAbsolute{Off: protoOff, Size: 1})
	s.dispatch(a, fam+"tcp", fam+"udp", "drop")
	for _, tr := range []struct {
		lbl   string
		ports []uint16
	}{{fam + "tcp", s.tcp}, {fam + "udp", s.udp}} {
		if len(tr.ports) == 0 {
			continue
		}
		a.label(tr.lbl)
		s.service(a, list, tr.ports, srcOff, dstOff, sport, dport)
	}
}

// portless emits the check for packets whose ports cannot be read: if A is one of vals,
// accept when the source or destination is one of the family's sensor addresses (or
// any address), else drop.
func (s sensorFilter) portless(a *assembler, name string, vals []uint32, list []netip.Addr, srcOff, dstOff uint32) {
	host := "accept"
	if !s.any {
		host = name + "host"
	}
	for i, v := range vals {
		f := ""
		if i == len(vals)-1 {
			f = "drop"
		}
		a.jeq(v, host, f)
	}
	if !s.any {
		a.label(host)
		matchAnyAddr(a, srcOff, list, "accept", name+"dst")
		a.label(name + "dst")
		matchAnyAddr(a, dstOff, list, "accept", "drop")
	}
}

// dispatch jumps on the protocol in A to the TCP or UDP label, or to other.
func (s sensorFilter) dispatch(a *assembler, tcp, udp, other string) {
	if len(s.tcp) > 0 {
		a.jeq(uint32(ProtoTCP), tcp, "")
	}
	if len(s.udp) > 0 {
		a.jeq(uint32(ProtoUDP), udp, "")
	}
	a.jmp(other)
}

// excludePorts emits "drop if (src host X and src port x) or (dst host X and dst port
// x)" for the excludes of one family that have a port.
func (s sensorFilter) excludePorts(a *assembler, ex []netip.AddrPort, srcOff, dstOff uint32, loadSport, loadDport bpf.Instruction) {
	for _, x := range ex {
		if x.Port() == 0 {
			continue
		}
		for _, side := range [2]struct {
			off  uint32
			load bpf.Instruction
		}{{srcOff, loadSport}, {dstOff, loadDport}} {
			port, next := a.newLabel(), a.newLabel()
			matchAddr(a, side.off, x.Addr(), port, next)
			a.label(port)
			a.emit(side.load)
			a.jeq(uint32(x.Port()), "drop", next)
			a.label(next)
		}
	}
}

func (s sensorFilter) build6(a *assembler) {
	s.excludeHosts(a, s.ex6, ip6SrcOff, ip6DstOff)
	a.emit(bpf.LoadAbsolute{Off: ip6NextOff, Size: 1})
	s.dispatch(a, "v6l4", "v6l4", "v6ext")

	a.label("v6ext")
	exts := make([]uint32, len(ip6ExtHeaders))
	for i, h := range ip6ExtHeaders {
		exts[i] = uint32(h)
	}
	s.portless(a, "v6ext", exts, s.v6, ip6SrcOff, ip6DstOff)

	a.label("v6l4")
	s.transport(a, "v6", s.v6, s.ex6, ip6NextOff, ip6SrcOff, ip6DstOff,
		bpf.LoadAbsolute{Off: ip6SportOff, Size: 2}, bpf.LoadAbsolute{Off: ip6DportOff, Size: 2})
}
