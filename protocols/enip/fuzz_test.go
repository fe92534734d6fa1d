package enip

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// FuzzServeStream feeds an arbitrary byte stream to one connection (after a
// RegisterSession, so that SendRRData reaches the CIP layer). The handler must return
// (no hang, no spin on a half message), must not panic, and every reply must be a
// well-formed encapsulation message. The seed corpus is in
// testdata/fuzz/FuzzServeStream.
func FuzzServeStream(f *testing.F) {
	f.Add(protocoltest.Unhex(f, "6300 0000 00000000 00000000 00000000c1debed1 00000000"))
	f.Add(rr(0x0101, protocoltest.Unhex(f, "01 02 2001 2401")))
	f.Add(rr(0x0101, protocoltest.Unhex(f, "4c 07 91 0b 4c696e65315f5370656564 00 0100")))
	h := newHandler(f, func(c *Config) { c.IdleTimeout = 2 * time.Second })
	srv := protocoltest.ServeTCP(f, "", h)
	register := protocoltest.Unhex(f, "6500 0400 00000000 00000000 0102030405060708 00000000 0100 0000")
	f.Fuzz(func(t *testing.T, stream []byte) {
		h.mu.Lock()
		h.nextSession = 0x0001 // every run registers handle 0x0101, the one the seeds use
		h.mu.Unlock()
		c, err := net.Dial("tcp", srv.Addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			c.Write(append(append([]byte(nil), register...), stream...))
			c.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(c)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading replies: %v (the handler did not end the connection)", err)
		}
		<-wrote
		for len(out) > 0 {
			hdr, err := ParseHeader(out)
			if err != nil || len(out) < HeaderLen+int(hdr.Length) {
				t.Fatalf("reply stream %x: bad message (%v)", out, err)
			}
			body := out[HeaderLen : HeaderLen+int(hdr.Length)]
			if hdr.Command == CmdSendRRData && hdr.Status == StatusSuccess {
				d, err := ParseRRData(body)
				if err != nil || len(d.Items) != 2 {
					t.Fatalf("SendRRData reply %x: %v", body, err)
				}
				if _, err := ParseResponse(d.Items[1].Data); err != nil {
					t.Fatalf("CIP reply %x: %v", d.Items[1].Data, err)
				}
			}
			out = out[HeaderLen+int(hdr.Length):]
		}
	})
}

// FuzzServeDatagram feeds arbitrary datagrams to the UDP side.
func FuzzServeDatagram(f *testing.F) {
	f.Add(protocoltest.Unhex(f, "6300 0000 00000000 00000000 00000000c1debed1 00000000"))
	f.Add(protocoltest.Unhex(f, "0400 0000 00000000 00000000 0102030405060708 00000000"))
	h := newHandler(f, nil)
	local, remote := netip.MustParseAddrPort("127.0.0.1:44818"), netip.MustParseAddrPort("127.0.0.1:50000")
	f.Fuzz(func(t *testing.T, req []byte) {
		s := protocoltest.NewSession(t, local, remote)
		n := 0
		err := h.ServeDatagram(context.Background(), s, req, func(b []byte) error {
			n++
			if _, err := ParseHeader(b); err != nil {
				t.Fatalf("reply %x: %v", b, err)
			}
			return nil
		})
		if err != nil || n > 1 || len(s.Events()) != 1 {
			t.Fatalf("err %v, %d replies, %d events", err, n, len(s.Events()))
		}
	})
}

// FuzzCIP runs the CIP parsers over arbitrary bytes.
func FuzzCIP(f *testing.F) {
	f.Add(protocoltest.Unhex(f, "52 02 2006 2401 0a0e 0800 0e03 2001 2401 3001 0100 0100"))
	f.Add(protocoltest.Unhex(f, "0a 02 2002 2401 0200 0600 0e00 0e03 2001 2401 3001 4c04 9105 4e6f546167 00 0100"))
	f.Add(protocoltest.Unhex(f, "4c 0a 91 10 5265636970655f536574706f696e7473 2802 0200"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParseRequest(b); err == nil {
			ParsePath(r.Path)
			ParseUnconnectedSend(r.Data)
			ParsePortSegment(r.Data)
			ParseForwardOpen(r.Data, false)
			ParseForwardOpen(r.Data, true)
			if subs, err := MultipleService(r.Data); err == nil && len(subs) == 0 {
				t.Fatal("multiple service packet without services")
			}
		}
		ParseCPF(b)
		ParseRRData(b)
		ParseListIdentityItem(b)
		ParseResponse(b)
	})
}
