package ftp

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// The seed corpora are committed in testdata/fuzz/FuzzWire and testdata/fuzz/FuzzSession:
// logins, navigation, listings, transfers, uploads, PORT/EPRT bounce attempts, Telnet
// sequences, over-long and malformed lines.

// FuzzWire checks the line and address parsers: no panic, and what they accept
// re-encodes consistently.
func FuzzWire(f *testing.F) {
	f.Add([]byte("PORT 127,0,0,1,4,1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		stripped := StripTelnet(b)
		if len(stripped) > len(b) || bytes.IndexByte(b, iac) < 0 && !bytes.Equal(stripped, b) {
			t.Fatalf("StripTelnet(%q) = %q", b, stripped)
		}
		verb, arg, err := ParseCommand(b)
		if err == nil {
			if len(verb) < 3 || len(verb) > maxVerbLen || strings.ToUpper(verb) != verb {
				t.Fatalf("verb %q from %q", verb, b)
			}
			if ap, err := ParseHostPort(arg); err == nil {
				if back, err := ParseHostPort(FormatHostPort(ap)); err != nil || back != ap {
					t.Fatalf("host-port %v does not round-trip", ap)
				}
			}
			if ap, err := ParseEPRT(arg); err == nil && (!ap.IsValid() || ap.Port() == 0) {
				t.Fatalf("EPRT %q gave %v", arg, ap)
			}
			ParseEPSVReply(arg)
			ParsePASVReply(arg)
		}
		if code, lines, n, err := ParseReply(b); err == nil && n > 0 {
			if n > len(b) || code < 100 || code > 599 || len(lines) == 0 {
				t.Fatalf("reply %d %q n=%d from %q", code, lines, n, b)
			}
		}
		out, _ := ToNetASCII(nil, b, false)
		if bytes.Count(out, []byte("\n")) != bytes.Count(b, []byte("\n")) || len(out) < len(b) {
			t.Fatalf("ToNetASCII(%q) = %q", b, out)
		}
	})
}

var (
	netipLocal  = netip.MustParseAddrPort("127.0.0.1:21")
	netipRemote = netip.MustParseAddrPort("127.0.0.1:40000")
)

// scriptConn is a control connection that delivers a fixed input in small reads and
// records what the server writes.
type scriptConn struct {
	in  []byte
	out bytes.Buffer
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], c.in) // small reads split lines and commands
	c.in = c.in[n:]
	return n, nil
}
func (c *scriptConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *scriptConn) Close() error                { return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 21} }
func (c *scriptConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzSession runs arbitrary control input through a whole session and checks the
// output: a 220 greeting, then only well-formed replies, and the session ends.
func FuzzSession(f *testing.F) {
	f.Add([]byte("USER USER\r\nPASS USER\r\nPWD\r\nQUIT\r\n"))
	cfg := testConfig()
	cfg.LoginDelay = 0
	cfg.DataTimeout = 5 * time.Millisecond
	cfg.MaxCommands = 200
	f.Fuzz(func(t *testing.T, in []byte) {
		h := newTestHandler(t, cfg)
		sess := protocoltest.NewSession(t, netipLocal, netipRemote)
		conn := &scriptConn{in: in}
		done := make(chan error, 1)
		go func() { done <- h.ServeStream(context.Background(), sess, conn) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("session on %q did not end", in)
		}
		out := conn.out.Bytes()
		first := true
		for len(out) > 0 {
			code, _, n, err := ParseReply(out)
			if err != nil || n == 0 {
				t.Fatalf("malformed output %q (%v)", out, err)
			}
			if first && code != 220 {
				t.Fatalf("first reply %d", code)
			}
			first = false
			out = out[n:]
		}
		if h.held.Load() != 0 {
			t.Fatalf("%d upload bytes held after the session", h.held.Load())
		}
	})
}
