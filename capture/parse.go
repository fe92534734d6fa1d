package capture

import "encoding/binary"

// pinfo is what the demux needs from one frame. It is filled by parse without
// allocating; every read is bounds-checked.
type pinfo struct {
	proto    uint8 // IPPROTO_TCP or IPPROTO_UDP
	v6       bool
	src, dst endpoint // ports are zero when !hasPorts
	hasPorts bool     // false for a non-first fragment
	flags    uint8    // TCP flags (0 for UDP, fragments and TCP headers cut before byte 13)
	frag     bool     // the packet is a fragment (first or later)
	fragID   uint32   // IPv4 identification or IPv6 fragment identification
}

// parseResult tells why a frame was not parsed; the demux counts the reasons.
type parseResult uint8

const (
	parseOK        parseResult = iota
	parseShort                 // truncated inside a header the demux needs
	parseNotIP                 // not IPv4/IPv6 (or more than two VLAN tags)
	parseNotTCPUDP             // IP, but no TCP/UDP (ICMP, ESP, unknown extension...)
	parseBadHeader             // IPv4 IHL below 5
)

// Header values.
const (
	etherTypeVLAN   = 0x8100
	etherTypeQinQ   = 0x88a8
	etherTypeQinQ2  = 0x9100
	maxVLANTags     = 2
	maxIP6ExtHeader = 8 // extension headers walked before giving up

	ip6HopByHop = 0
	ip6Routing  = 43
	ip6Fragment = 44
	ip6AH       = 51
	ip6DestOpts = 60
	ip6Mobility = 135
	ip6HIP      = 139
	ip6Shim6    = 140
)

// TCP flag bits.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// parse decodes an Ethernet frame (optionally with up to two 802.1Q/802.1ad tags),
// IPv4 (any IHL, fragments) or IPv6 (extension headers walked), and the ports and flags
// of TCP/UDP. It reads no more than the ports and TCP flags of the transport header:
// like the BPF programs, it does not require a complete transport header.
func parse(b []byte, p *pinfo) parseResult {
	*p = pinfo{}
	if len(b) < linkOff {
		return parseShort
	}
	off := etherTypeOff
	et := binary.BigEndian.Uint16(b[off:])
	for tags := 0; et == etherTypeVLAN || et == etherTypeQinQ || et == etherTypeQinQ2; tags++ {
		if tags == maxVLANTags {
			return parseNotIP
		}
		off += 4
		if len(b) < off+2 {
			return parseShort
		}
		et = binary.BigEndian.Uint16(b[off:])
	}
	l3 := off + 2
	var l4 int
	switch et {
	case etherTypeIP4:
		ip := b[l3:]
		if len(ip) < 20 {
			return parseShort
		}
		ihl := int(ip[0]&0x0f) * 4
		if ihl < 20 {
			return parseBadHeader
		}
		if len(ip) < ihl {
			return parseShort
		}
		p.proto = ip[9]
		if p.proto != ProtoTCP && p.proto != ProtoUDP {
			return parseNotTCPUDP
		}
		copy(p.src.addr[:], v4InV6Prefix[:])
		copy(p.dst.addr[:], v4InV6Prefix[:])
		copy(p.src.addr[12:], ip[12:16])
		copy(p.dst.addr[12:], ip[16:20])
		fragField := binary.BigEndian.Uint16(ip[6:])
		p.fragID = uint32(binary.BigEndian.Uint16(ip[4:]))
		p.frag = fragField&0x3fff != 0 // more-fragments flag or an offset
		if fragField&0x1fff != 0 {
			return parseOK // non-first fragment: no transport header
		}
		l4 = l3 + ihl
	case etherTypeIP6:
		ip := b[l3:]
		if len(ip) < 40 {
			return parseShort
		}
		p.v6 = true
		copy(p.src.addr[:], ip[8:24])
		copy(p.dst.addr[:], ip[24:40])
		nh := ip[6]
		off := 40
		for n := 0; ; n++ {
			if nh == ProtoTCP || nh == ProtoUDP {
				break
			}
			if n == maxIP6ExtHeader {
				return parseNotTCPUDP
			}
			switch nh {
			case ip6HopByHop, ip6Routing, ip6DestOpts, ip6Mobility, ip6HIP, ip6Shim6:
				if len(ip) < off+2 {
					return parseShort
				}
				nh, off = ip[off], off+(int(ip[off+1])+1)*8
			case ip6AH:
				if len(ip) < off+2 {
					return parseShort
				}
				nh, off = ip[off], off+(int(ip[off+1])+2)*4
			case ip6Fragment:
				if len(ip) < off+8 {
					return parseShort
				}
				p.frag = true
				p.fragID = binary.BigEndian.Uint32(ip[off+4:])
				fragOff := binary.BigEndian.Uint16(ip[off+2:]) >> 3
				nh, off = ip[off], off+8
				if fragOff != 0 {
					// Non-first fragment: its next header names the first header of the
					// fragmentable part, which may be another extension header.
					p.proto = nh
					return parseOK
				}
			default:
				return parseNotTCPUDP
			}
		}
		p.proto = nh
		l4 = l3 + off
	default:
		return parseNotIP
	}
	if len(b) < l4+4 {
		return parseShort
	}
	p.hasPorts = true
	p.src.port = binary.BigEndian.Uint16(b[l4:])
	p.dst.port = binary.BigEndian.Uint16(b[l4+2:])
	if p.proto == ProtoTCP && len(b) > l4+13 {
		p.flags = b[l4+13]
	}
	return parseOK
}

var v4InV6Prefix = [12]byte{10: 0xff, 11: 0xff}

// fragKey identifies the fragments of one IP datagram: family, source, destination,
// identification, and for IPv4 the protocol (RFC 791 reassembly key; an IPv6 fragment
// header's next header may name an extension header, so it is left out there).
type fragKey [1 + 1 + 16 + 16 + 4]byte

func (p *pinfo) fragKey() fragKey {
	var k fragKey
	k[0] = 4
	if p.v6 {
		k[0] = 6
	} else {
		k[1] = p.proto
	}
	copy(k[2:18], p.src.addr[:])
	copy(k[18:34], p.dst.addr[:])
	binary.BigEndian.PutUint32(k[34:], p.fragID)
	return k
}
