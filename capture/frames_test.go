package capture

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// frameSpec describes one synthetic Ethernet frame for the test corpora. The frames
// are built with gopacket/layers; extension headers and fragments are assembled from
// raw bytes around a gopacket-serialized TCP/UDP header.
type frameSpec struct {
	proto      uint8 // 6, 17, or anything else (ICMP: no ports)
	src, dst   netip.Addr
	sport      uint16
	dport      uint16
	flags      uint8 // TCP flags (tcpFIN...)
	seq, ack   uint32
	payload    []byte
	vlan       int    // number of 802.1Q tags (0, 1 or 2)
	ip4Options bool   // IPv4 with a 4-byte option (IHL 6)
	frag       string // "", "first", "middle", "last": fragment of an IPv4 or IPv6 packet
	fragID     uint32
	hopByHop   bool // IPv6 hop-by-hop header before the transport header
	ipID       uint16
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// l4 serializes the TCP/UDP header and payload with a correct checksum.
func (s frameSpec) l4(t testing.TB) []byte {
	t.Helper()
	var nl gopacket.NetworkLayer
	if s.src.Is4() {
		nl = &layers.IPv4{SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(), Protocol: layers.IPProtocol(s.proto)}
	} else {
		nl = &layers.IPv6{SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(), NextHeader: layers.IPProtocol(s.proto)}
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var err error
	switch s.proto {
	case 6:
		tcp := &layers.TCP{
			SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
			Seq: s.seq, Ack: s.ack, Window: 65535,
			FIN: s.flags&tcpFIN != 0, SYN: s.flags&tcpSYN != 0, RST: s.flags&tcpRST != 0,
			PSH: s.flags&tcpPSH != 0, ACK: s.flags&tcpACK != 0,
		}
		if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		err = gopacket.SerializeLayers(buf, opts, tcp, gopacket.Payload(s.payload))
	case 17:
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		err = gopacket.SerializeLayers(buf, opts, udp, gopacket.Payload(s.payload))
	default:
		// ICMP echo (or anything else): the port bytes still sit where ports would be.
		b := make([]byte, 8+len(s.payload))
		b[0] = 8
		binary.BigEndian.PutUint16(b[4:], s.sport)
		binary.BigEndian.PutUint16(b[6:], s.dport)
		copy(b[8:], s.payload)
		return b
	}
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// build returns the frame's bytes.
func (s frameSpec) build(t testing.TB) []byte {
	t.Helper()
	l4 := s.l4(t)
	// A fragment carries a slice of the transport bytes: the first fragment the first 8
	// bytes (with ports), later fragments a copy of the transport header, so that a
	// filter that forgets the fragment check would wrongly see matching ports.
	body := l4
	var fragOff uint16
	more := false
	switch s.frag {
	case "first":
		body, more = l4[:8], true
	case "middle":
		body, fragOff, more = l4, 1, true
	case "last":
		body, fragOff = l4, 2
	}
	eth := &layers.Ethernet{
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2},
	}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	etype := layers.EthernetTypeIPv4
	if s.src.Is6() {
		etype = layers.EthernetTypeIPv6
	}
	switch s.vlan {
	case 0:
		eth.EthernetType = etype
	case 1:
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 100, Type: etype})
	default:
		eth.EthernetType = layers.EthernetTypeQinQ
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 100, Type: etype})
	}
	if s.src.Is4() {
		ip := &layers.IPv4{
			Version: 4, TTL: 64, Id: s.ipID, Protocol: layers.IPProtocol(s.proto),
			SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(),
		}
		if s.frag != "" {
			ip.Id = uint16(s.fragID)
			ip.FragOffset = fragOff * uint16((len(l4)+7)/8)
		}
		if more {
			ip.Flags = layers.IPv4MoreFragments
		}
		if s.ip4Options {
			ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
		}
		ls = append(ls, ip, gopacket.Payload(body))
	} else {
		var ext []byte
		first := layers.IPProtocol(s.proto)
		if s.hopByHop {
			// next header, length 0 (8 bytes), PadN option of 4 bytes
			ext = append(ext, s.proto, 0, 1, 4, 0, 0, 0, 0)
			first = 0
		}
		if s.frag != "" {
			fh := make([]byte, 8)
			fh[0] = s.proto
			off := fragOff * uint16((len(l4)+7)/8)
			m := uint16(0)
			if more {
				m = 1
			}
			binary.BigEndian.PutUint16(fh[2:], off<<3|m)
			binary.BigEndian.PutUint32(fh[4:], s.fragID)
			if s.hopByHop {
				ext[0] = 44
			} else {
				first = 44
			}
			ext = append(ext, fh...)
		}
		ip := &layers.IPv6{
			Version: 6, HopLimit: 64, NextHeader: first,
			SrcIP: s.src.AsSlice(), DstIP: s.dst.AsSlice(),
		}
		ls = append(ls, ip, gopacket.Payload(append(ext, body...)))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
