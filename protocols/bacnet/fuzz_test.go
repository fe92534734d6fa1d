package bacnet

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// FuzzServeDatagram feeds arbitrary datagrams to one handler (its state carries over
// between inputs, as it does between flows). Whatever comes in, the handler must not
// panic, must report one event, and may only answer with a well-formed BACnet/IP
// message that fits in one datagram. The seed corpus is in
// testdata/fuzz/FuzzServeDatagram.
func FuzzServeDatagram(f *testing.F) {
	f.Add(protocoltest.Unhex(f, "810b0008 0100 1008"))
	f.Add(protocoltest.Unhex(f, "810a0011 0104 0005010c 0c023fffff 194d"))
	f.Add(protocoltest.Unhex(f, "810a0013 0104 0005010e 0c0201d4e2 1e 0908 1f"))
	h := newHandler(f, nil)
	local, remote := netip.MustParseAddrPort("127.0.0.1:47808"), netip.MustParseAddrPort("127.0.0.1:40000")
	f.Fuzz(func(t *testing.T, req []byte) {
		s := protocoltest.NewSession(t, local, remote)
		replies := serveOn(t, h, s, req)
		if n := len(s.Events()); n != 1 {
			t.Fatalf("%d events for one datagram", n)
		}
		if len(replies) > 1 {
			t.Fatalf("%d replies", len(replies))
		}
		for _, r := range replies {
			v, err := ParseBVLC(r)
			if err != nil {
				t.Fatalf("reply %x: %v", r, err)
			}
			if v.Function == BVLCResult {
				continue
			}
			n, apdu, err := ParseNPDU(v.Payload)
			if err != nil || n.NetworkLayer {
				t.Fatalf("reply %x: NPDU %+v, %v", r, n, err)
			}
			if len(apdu) > int(h.cfg.MaxAPDU) {
				t.Fatalf("reply APDU of %d octets", len(apdu))
			}
			if _, err := ParseAPDU(apdu); err != nil {
				t.Fatalf("reply %x: %v", r, err)
			}
		}
	})
}

// FuzzNPDU checks that ParseNPDU never panics and that AppendNPDU rebuilds what it
// parsed (when no reserved control bits are set).
func FuzzNPDU(f *testing.F) {
	f.Add(protocoltest.Unhex(f, "0100 1008"))
	f.Add(protocoltest.Unhex(f, "0128 0007 01 0c 0009 02 0a0b ff 1008"))
	f.Add(protocoltest.Unhex(f, "01a0 ffff 00 ff 80 0105 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, apdu, err := ParseNPDU(b)
		if err != nil {
			return
		}
		if b[1]&npduReservedMask != 0 {
			return
		}
		re := AppendNPDU(nil, n)
		if n.NetworkLayer {
			re = append(re, n.NetworkDetail...)
		} else {
			re = append(re, apdu...)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("round trip\n in %x\nout %x", b, re)
		}
	})
}

// FuzzServiceRequests runs every service-request parser over arbitrary bytes.
func FuzzServiceRequests(f *testing.F) {
	f.Add(protocoltest.Unhex(f, "0c00000001 1955 2901"))
	f.Add(protocoltest.Unhex(f, "0c023fffff 1e 0979 0978 1f"))
	f.Add(protocoltest.Unhex(f, "0c00800001 1955 3e 4441940000 3f 4908"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseWhoIs(b)
		ParseWhoHas(b)
		ParseReadProperty(b)
		ParseDeviceCommunicationControl(b)
		ParseReinitializeDevice(b)
		ParseTimeSynchronization(b)
		if specs, err := ParseReadPropertyMultiple(b); err == nil && len(specs) == 0 {
			t.Fatal("ReadPropertyMultiple without specifications accepted")
		}
		if w, err := ParseWriteProperty(b); err == nil && !bytes.Contains(b, w.Value) {
			t.Fatal("write value is not part of the request")
		}
	})
}
