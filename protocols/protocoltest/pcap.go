package protocoltest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// Pcap builds a classic pcap file (LINKTYPE_RAW) of IPv4 packets between ports of
// 127.0.0.1, so that a test can have tshark dissect exchanges it made without a
// network. Packet i (from 0) is stamped 1741944615+i seconds. The zero value is an
// empty capture.
type Pcap struct {
	buf []byte
	n   int
}

// UDP appends a datagram.
func (p *Pcap) UDP(from, to uint16, payload []byte) {
	udp := binary.BigEndian.AppendUint16(nil, from)
	udp = binary.BigEndian.AppendUint16(udp, to)
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(payload)))
	udp = append(udp, 0, 0) // no checksum
	p.packet(17, append(udp, payload...))
}

// TCP appends a segment with PSH and ACK set.
func (p *Pcap) TCP(from, to uint16, seq, ack uint32, payload []byte) {
	tcp := binary.BigEndian.AppendUint16(nil, from)
	tcp = binary.BigEndian.AppendUint16(tcp, to)
	tcp = binary.BigEndian.AppendUint32(tcp, seq)
	tcp = binary.BigEndian.AppendUint32(tcp, ack)
	tcp = append(tcp, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0) // 20 octets, PSH|ACK, window, no checksum
	p.packet(6, append(tcp, payload...))
}

// pcapHeader is the file header: microsecond timestamps, snap length 65535, LINKTYPE_RAW.
var pcapHeader = []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0}

// packet appends an IPv4 packet (don't fragment, TTL 64) carrying the layer-4 data.
func (p *Pcap) packet(proto byte, l4 []byte) {
	if len(p.buf) == 0 {
		p.buf = append(p.buf, pcapHeader...)
	}
	n := 20 + len(l4)
	ip := []byte{0x45, 0, byte(n >> 8), byte(n), 0, 0, 0x40, 0, 64, proto, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1}
	var sum uint32
	for j := 0; j < len(ip); j += 2 {
		sum += uint32(ip[j])<<8 | uint32(ip[j+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	ip[10], ip[11] = byte(^sum>>8), byte(^sum)
	rec := binary.LittleEndian.AppendUint32(nil, uint32(1741944615+p.n))
	rec = binary.LittleEndian.AppendUint32(rec, 0)
	rec = binary.LittleEndian.AppendUint32(rec, uint32(n))
	rec = binary.LittleEndian.AppendUint32(rec, uint32(n))
	p.buf = append(append(append(p.buf, rec...), ip...), l4...)
	p.n++
}

// Write writes the capture into the test's temporary directory as name and returns
// its path.
func (p *Pcap) Write(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	b := p.buf
	if len(b) == 0 {
		b = pcapHeader
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
