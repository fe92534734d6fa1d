package dnp3

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
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
		f.Add(unhex(f, s))
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
		f.Add(unhex(f, s))
	}
	cfg := NewConfig()
	cfg.ScanInterval = time.Millisecond
	env := protocols.Env{Identity: testIdentity, Logger: protocoltest.Env(f, nil).Logger,
		Boot: time.Now().Add(-time.Hour), Now: time.Now}
	h, err := New(env, cfg)
	if err != nil {
		f.Fatal(err)
	}
	addr := netip.MustParseAddrPort("127.0.0.1:20000")
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		var wire []byte
		if in[0]&1 == 1 {
			wire = in[1:]
		} else {
			frag := in[1:]
			seq := byte(0)
			for first := true; first || len(frag) > 0; first = false {
				k := min(MaxSegment, len(frag))
				hdr := seq & 0x3F
				if first {
					hdr |= tpFIR
				}
				if k == len(frag) {
					hdr |= tpFIN
				}
				wire = AppendLinkFrame(wire, ctrlData, outst, master, append([]byte{hdr}, frag[:k]...))
				frag = frag[k:]
				seq++
			}
		}
		srv, cl := net.Pipe()
		sess := protocoltest.NewSession(t, addr, addr)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- h.ServeStream(ctx, sess, srv)
			srv.Close()
		}()
		drained := make(chan struct{})
		go func() { io.Copy(io.Discard, cl); close(drained) }()
		cl.SetWriteDeadline(time.Now().Add(2 * time.Second))
		cl.Write(wire)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("ServeStream: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("ServeStream did not return")
		}
		cl.Close()
		<-drained
	})
}
