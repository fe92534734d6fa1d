package iec104

import (
	"bytes"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// FuzzParseAPDU checks that the APCI/ASDU parsers never panic, never consume more
// than they were given, and that what they accept re-encodes to the same octets.
func FuzzParseAPDU(f *testing.F) {
	for _, s := range []string{
		"680407000000", "680443000000", "680401000a00",
		"680e0000000064010600ffff00000014",
		"680e0200040064010600010000000014",
		"681400000000670106000100000000d5dd220caf0318",
		"680e000000002e0106000100711700" + "81",
		"68040f000000", "68fe",
	} {
		f.Add(protocoltest.Unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, asdu, n, err := ParseAPDU(b)
		if err != nil {
			return
		}
		if n < 6 || n > len(b) || n != 2+int(b[1]) {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		var re []byte
		switch a.Format {
		case FormatI:
			re = AppendIFrame(nil, a.SendSeq, a.RecvSeq, asdu)
		case FormatS:
			re = AppendSFrame(nil, a.RecvSeq)
		case FormatU:
			re = AppendUFrame(nil, a.U)
		}
		if !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded % x, parsed % x", re, b[:n])
		}
		h, err := ParseASDU(asdu)
		if err != nil {
			return
		}
		if !bytes.Equal(h.AppendHeader(nil), asdu[:6]) {
			t.Fatalf("header round trip % x", asdu[:6])
		}
		objs, err := h.Objects()
		if err != nil {
			return
		}
		size, _ := ElementSize(h.Type)
		for _, o := range objs {
			if len(o.Element) != size || o.IOA > 0xFFFFFF {
				t.Fatalf("object %+v size %d", o, size)
			}
			if len(o.Element) >= 7 {
				if c, err := ParseCP56Time2a(o.Element[len(o.Element)-7:]); err == nil {
					_ = AppendCP56Time2a(nil, c)
				}
			}
		}
	})
}

// FuzzServeStream feeds arbitrary octets to a station and checks that it neither
// panics nor hangs: once the station has read the input (net.Pipe writes return when
// read), cancelling the session must end it promptly and without error.
func FuzzServeStream(f *testing.F) {
	for _, s := range []string{
		"680407000000" + "680e0000000064010600ffff00000014",
		"680407000000" + "680e000000002d0106000100771700" + "00",
		"680407000000" + "680e000000002e0106000100711700" + "81" + "680e020000002e0106000100711700" + "01",
		"680407000000" + "681400000000670106000100000000d5dd220caf0318",
		"680407000000" + "680e0000000065010600010000000005",
		"680443000000" + "681300000000",
		"680407000000" + "6808000000006401060001",
	} {
		f.Add(protocoltest.Unhex(f, s))
	}
	cfg := NewConfig()
	h, err := New(protocoltest.Env(f, &protocols.Identity{}), cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// The write may fail when the station closed on a violation.
		if _, _, err := protocoltest.Drive(t, h, in, protocoltest.Cancel, 5*time.Second); err != nil {
			t.Fatalf("ServeStream: %v", err)
		}
	})
}
