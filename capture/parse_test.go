package capture

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestParse(t *testing.T) {
	t.Parallel()
	c4, s4 := mustAddr("192.0.2.10"), mustAddr("198.51.100.5")
	c6, s6 := mustAddr("2001:db8::10"), mustAddr("2001:db8::5")
	tcp4 := frameSpec{proto: ProtoTCP, src: c4, dst: s4, sport: 40000, dport: 502, flags: tcpSYN, payload: []byte("x")}
	udp6 := frameSpec{proto: ProtoUDP, src: c6, dst: s6, sport: 5353, dport: 161, payload: []byte("get")}
	with := func(s frameSpec, f func(*frameSpec)) frameSpec { f(&s); return s }
	type want struct {
		res      parseResult
		hasPorts bool
		frag     bool
		flags    uint8
	}
	cases := []struct {
		name string
		spec frameSpec
		cut  int // truncate the frame to this many bytes (0: keep)
		raw  []byte
		want want
	}{
		{name: "tcp4", spec: tcp4, want: want{parseOK, true, false, tcpSYN}},
		{name: "tcp4 options", spec: with(tcp4, func(s *frameSpec) { s.ip4Options = true }), want: want{parseOK, true, false, tcpSYN}},
		{name: "tcp4 vlan", spec: with(tcp4, func(s *frameSpec) { s.vlan = 1 }), want: want{parseOK, true, false, tcpSYN}},
		{name: "tcp4 qinq", spec: with(tcp4, func(s *frameSpec) { s.vlan = 2 }), want: want{parseOK, true, false, tcpSYN}},
		{name: "tcp4 first fragment", spec: with(tcp4, func(s *frameSpec) { s.frag, s.fragID = "first", 9 }), want: want{parseOK, true, true, 0}},
		{name: "tcp4 last fragment", spec: with(tcp4, func(s *frameSpec) { s.frag, s.fragID = "last", 9 }), want: want{parseOK, false, true, 0}},
		{name: "udp6", spec: udp6, want: want{parseOK, true, false, 0}},
		{name: "udp6 hop-by-hop", spec: with(udp6, func(s *frameSpec) { s.hopByHop = true }), want: want{parseOK, true, false, 0}},
		{name: "udp6 vlan", spec: with(udp6, func(s *frameSpec) { s.vlan = 1 }), want: want{parseOK, true, false, 0}},
		{name: "udp6 first fragment", spec: with(udp6, func(s *frameSpec) { s.frag, s.fragID = "first", 0x01020304 }), want: want{parseOK, true, true, 0}},
		{name: "udp6 middle fragment after hop-by-hop", spec: with(udp6, func(s *frameSpec) { s.frag, s.fragID, s.hopByHop = "middle", 7, true }), want: want{parseOK, false, true, 0}},
		{name: "icmp4", spec: with(tcp4, func(s *frameSpec) { s.proto = 1 }), want: want{res: parseNotTCPUDP}},
		{name: "tcp4 cut in ports", spec: tcp4, cut: 14 + 20 + 3, want: want{res: parseShort}},
		{name: "tcp4 cut before flags", spec: tcp4, cut: 14 + 20 + 13, want: want{parseOK, true, false, 0}},
		{name: "tcp6 cut in header", spec: with(udp6, func(s *frameSpec) { s.proto = ProtoTCP }), cut: 14 + 39, want: want{res: parseShort}},
		{name: "hop-by-hop cut", spec: with(udp6, func(s *frameSpec) { s.hopByHop = true }), cut: 14 + 41, want: want{res: parseShort}},
		{name: "short ethernet", raw: make([]byte, 13), want: want{res: parseShort}},
		{name: "arp", raw: append(make([]byte, 12), 0x08, 0x06, 0, 1), want: want{res: parseNotIP}},
		{name: "three vlan tags", raw: []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x81, 0, 0, 1, 0x08, 0}, want: want{res: parseNotIP}},
		{name: "ihl 4", raw: append(append(make([]byte, 12), 0x08, 0x00, 0x44), make([]byte, 40)...), want: want{res: parseBadHeader}},
		{name: "ihl 15 truncated", raw: append(append(make([]byte, 12), 0x08, 0x00, 0x4f), make([]byte, 40)...), want: want{res: parseShort}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.raw
			if b == nil {
				b = tc.spec.build(t)
			}
			if tc.cut > 0 {
				b = b[:tc.cut]
			}
			var p pinfo
			got := want{res: parse(b, &p)}
			if got.res == parseOK {
				got.hasPorts, got.frag, got.flags = p.hasPorts, p.frag, p.flags
			}
			if got != tc.want {
				t.Fatalf("parse = %+v, want %+v", got, tc.want)
			}
			if got.res != parseOK || tc.raw != nil {
				return
			}
			v4 := tc.spec.src.Is4()
			if p.v6 == v4 || p.src.addrPort(v4).Addr() != tc.spec.src || p.dst.addrPort(v4).Addr() != tc.spec.dst {
				t.Errorf("addresses %v -> %v, want %v -> %v", p.src.addrPort(v4), p.dst.addrPort(v4), tc.spec.src, tc.spec.dst)
			}
			if p.hasPorts && (p.src.port != tc.spec.sport || p.dst.port != tc.spec.dport) {
				t.Errorf("ports %d -> %d, want %d -> %d", p.src.port, p.dst.port, tc.spec.sport, tc.spec.dport)
			}
			if p.frag && p.fragID != tc.spec.fragID {
				t.Errorf("fragment id %#x, want %#x", p.fragID, tc.spec.fragID)
			}
		})
	}
}

// TestParseAgreesWithGopacket decodes the BPF test corpus with gopacket's decoders and
// requires the same addresses and ports wherever gopacket finds a TCP/UDP layer.
func TestParseAgreesWithGopacket(t *testing.T) {
	t.Parallel()
	hosts := []netip.Addr{mustAddr("10.0.0.1"), mustAddr("10.0.0.2"), mustAddr("2001:db8::1"), mustAddr("2001:db8::2")}
	frames := corpus(t, hosts, []uint16{502, 40000}, []uint8{ProtoTCP, ProtoUDP, 1})
	compared := 0
	for _, f := range frames {
		var p pinfo
		res := parse(f.data, &p)
		pkt := gopacket.NewPacket(f.data, layers.LayerTypeEthernet, gopacket.NoCopy)
		var sport, dport uint16
		var proto uint8
		switch l := pkt.TransportLayer().(type) {
		case *layers.TCP:
			sport, dport, proto = uint16(l.SrcPort), uint16(l.DstPort), ProtoTCP
		case *layers.UDP:
			sport, dport, proto = uint16(l.SrcPort), uint16(l.DstPort), ProtoUDP
		default:
			continue
		}
		if pkt.ErrorLayer() != nil {
			continue
		}
		compared++
		nl := pkt.NetworkLayer().NetworkFlow()
		src, _ := netip.AddrFromSlice(nl.Src().Raw())
		dst, _ := netip.AddrFromSlice(nl.Dst().Raw())
		got := fmt.Sprint(res, p.proto, p.src.addrPort(!p.v6), p.dst.addrPort(!p.v6))
		want := fmt.Sprint(parseOK, proto, netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport))
		if got != want {
			t.Errorf("%s: parse %s, gopacket %s", f.name, got, want)
		}
	}
	if compared < 100 {
		t.Fatalf("only %d frames compared", compared)
	}
}

func TestMakeKeySymmetric(t *testing.T) {
	t.Parallel()
	a := endpointOf(mustAddrPort("127.0.0.1:40000"))
	b := endpointOf(mustAddrPort("127.0.0.1:502"))
	k1, aLow1 := makeKey(ProtoTCP, false, a, b)
	k2, aLow2 := makeKey(ProtoTCP, false, b, a)
	if k1 != k2 || aLow1 == aLow2 {
		t.Fatalf("key not canonical: %x/%v vs %x/%v", k1, aLow1, k2, aLow2)
	}
	if k3, _ := makeKey(ProtoUDP, false, a, b); k3 == k1 {
		t.Fatal("protocol not in key")
	}
	if k4, _ := makeKey(ProtoTCP, true, a, b); k4 == k1 {
		t.Fatal("family not in key")
	}
}
