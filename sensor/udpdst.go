package sensor

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// dstReader reads datagrams together with the local address they were sent to, which
// a socket bound to 0.0.0.0 or :: does not otherwise know, and answers from that
// address: the session's 5-tuple (and so its capture) needs it, and a reply from
// another address would be a tell.
type dstReader struct {
	pc  net.PacketConn
	p4  *ipv4.PacketConn
	p6  *ipv6.PacketConn
	oob bool
}

func newDstReader(pc net.PacketConn, listen netip.Addr) *dstReader {
	d := &dstReader{pc: pc}
	if !listen.IsUnspecified() {
		return d
	}
	if listen.Is4() {
		d.p4 = ipv4.NewPacketConn(pc)
		d.oob = d.p4.SetControlMessage(ipv4.FlagDst, true) == nil
	} else {
		d.p6 = ipv6.NewPacketConn(pc)
		d.oob = d.p6.SetControlMessage(ipv6.FlagDst, true) == nil
	}
	return d
}

// readFrom returns the datagram's size, sender and destination address (invalid when
// the socket is bound to one address: then it is that one).
func (d *dstReader) readFrom(b []byte) (int, net.Addr, netip.Addr, error) {
	switch {
	case d.oob && d.p4 != nil:
		n, cm, from, err := d.p4.ReadFrom(b)
		var dst netip.Addr
		if cm != nil {
			dst, _ = netip.AddrFromSlice(cm.Dst)
		}
		return n, from, dst.Unmap(), err
	case d.oob && d.p6 != nil:
		n, cm, from, err := d.p6.ReadFrom(b)
		var dst netip.Addr
		if cm != nil {
			dst, _ = netip.AddrFromSlice(cm.Dst)
		}
		return n, from, dst.Unmap(), err
	}
	n, from, err := d.pc.ReadFrom(b)
	return n, from, netip.Addr{}, err
}

// writeTo answers to from, from the address the request was sent to.
func (d *dstReader) writeTo(b []byte, to net.Addr, src netip.Addr) error {
	var err error
	switch {
	case d.oob && d.p4 != nil && src.IsValid():
		_, err = d.p4.WriteTo(b, &ipv4.ControlMessage{Src: src.AsSlice()}, to)
	case d.oob && d.p6 != nil && src.IsValid():
		_, err = d.p6.WriteTo(b, &ipv6.ControlMessage{Src: src.AsSlice()}, to)
	default:
		_, err = d.pc.WriteTo(b, to)
	}
	return err
}
