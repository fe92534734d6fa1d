package eventlog

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
)

// IANA protocol numbers used by Community ID.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

// icmpCounterpart maps ICMP request/reply types onto each other (Community ID v1, after
// Zeek's ICMP4_counterpart/ICMP6_counterpart). Types not listed are one-way.
var (
	icmp4Counterpart = map[uint16]uint16{
		8: 0, 0: 8, // echo
		13: 14, 14: 13, // timestamp
		15: 16, 16: 15, // information
		10: 9,          // router solicitation -> advertisement (advertisement is one-way)
		17: 18, 18: 17, // address mask
	}
	icmp6Counterpart = map[uint16]uint16{
		128: 129, 129: 128, // echo
		133: 134, 134: 133, // router solicitation/advertisement
		135: 136, 136: 135, // neighbor solicitation/advertisement
		130: 131, 131: 130, // multicast listener query/report
		139: 140, 140: 139, // node information query/reply
		144: 145, 145: 144, // home agent address discovery
	}
)

// CommunityID returns the Community ID v1 flow hash ("1:" + base64 SHA-1) of a flow
// from src to dst with IANA protocol proto, as specified by
// https://github.com/corelight/community-id-spec: SHA-1 over the 2-byte seed, the two
// addresses, the protocol, a zero byte and, for TCP, UDP, SCTP, ICMP and ICMPv6, the two
// ports, with the endpoints ordered so that both directions hash alike. For ICMP and
// ICMPv6, sport is the message type and dport the code. IPv4-mapped IPv6 addresses are
// taken as IPv4. It returns "" when the two addresses are not of one family.
func CommunityID(seed uint16, proto uint8, src, dst netip.Addr, sport, dport uint16) string {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return ""
	}
	hasPorts := true
	oneWay := false
	switch proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
	case ProtoICMP, ProtoICMPv6:
		table := icmp4Counterpart
		if proto == ProtoICMPv6 {
			table = icmp6Counterpart
		}
		if reply, ok := table[sport]; ok {
			dport = reply
		} else {
			oneWay = true
		}
	default:
		hasPorts = false
		sport, dport = 0, 0
	}
	if !oneWay {
		if c := src.Compare(dst); c > 0 || (c == 0 && sport > dport) {
			src, dst = dst, src
			sport, dport = dport, sport
		}
	}
	h := sha1.New()
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], seed)
	h.Write(b[:])
	h.Write(src.AsSlice())
	h.Write(dst.AsSlice())
	h.Write([]byte{proto, 0})
	if hasPorts {
		binary.BigEndian.PutUint16(b[:], sport)
		h.Write(b[:])
		binary.BigEndian.PutUint16(b[:], dport)
		h.Write(b[:])
	}
	return "1:" + base64.StdEncoding.EncodeToString(h.Sum(nil))
}
