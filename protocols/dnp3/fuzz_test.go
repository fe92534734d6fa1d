package dnp3

import (
	"bytes"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// FuzzParseLinkFrame checks that the link and application parsers never panic and
// that accepted link frames re-encode to the same octets.
func FuzzParseLinkFrame(f *testing.F) {
	for _, s := range []string{
		"056405C001000004E921",
		"056414F3010000040A3BC0C3013C02063C03063C04063C01069A12",
		"056405C9",
		"0564",
		"C0C3013C02063C03063C04063C0106",
		"C3040C0128010000008101640000000000000000",
	} {
		f.Add(protocoltest.Unhex(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if fr, n, err := ParseLinkFrame(b); err == nil {
			if n > len(b) || n < linkHeaderLen {
				t.Fatalf("consumed %d of %d", n, len(b))
			}
			if re := AppendLinkFrame(nil, fr.Control, fr.Dest, fr.Src, fr.Data); !bytes.Equal(re, b[:n]) {
				t.Fatalf("re-encoded % X, parsed % X", re, b[:n])
			}
		}
		// The same octets as an application request.
		_, objs, err := ParseRequest(b)
		if err != nil {
			return
		}
		for len(objs) > 0 {
			h, n, err := ParseObjectHeader(objs)
			if err != nil {
				return
			}
			if n < 3 || n > len(objs) || h.Count < 0 || h.Count > maxObjects {
				t.Fatalf("header %+v consumed %d of %d", h, n, len(objs))
			}
			objs = objs[n:]
		}
		parseControls(b)
	})
}

// FuzzServeStream drives an outstation with arbitrary input: when the first octet is
// odd the rest goes onto the wire raw (link resynchronisation, CRC checks), otherwise
// it is an application fragment wrapped in valid transport segments and link frames,
// so that the fuzzer reaches the application layer. The station must neither panic
// nor hang.
func FuzzServeStream(f *testing.F) {
	for _, s := range []string{
		"00" + "C0013C0106",
		"00" + "C0013C02063C03063C04063C0106",
		"00" + "C1025001000707" + "00",
		"00" + "C2030C0128010000008101640000000000000000",
		"00" + "C30529021701002003" + "00",
		"00" + "C40100FE06",
		"00" + "C51406" + "3C0206",
		"00" + "C60D",
		"01" + "056405C90A000100" + "0000" + "056405C00A000100",
	} {
		f.Add(protocoltest.Unhex(f, s))
	}
	cfg := NewConfig()
	cfg.ScanInterval = time.Millisecond
	h, err := New(protocoltest.Env(f, testIdentity), cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		wire := in[1:]
		if in[0]&1 == 0 {
			wire, _ = AppendSegments(nil, ctrlData, outst, master, 0, in[1:])
		}
		if _, _, err := protocoltest.Drive(t, h, wire, protocoltest.Cancel, 5*time.Second); err != nil {
			t.Fatalf("ServeStream: %v", err)
		}
	})
}
