package http

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

var fuzzLimits = Limits{MaxHeaderBytes: 8192, MaxURIBytes: 2048, MaxHeaders: 64}

// FuzzParseHead checks the head parser's invariants: it never panics, an accepted head
// lies within the limits, every strict prefix of an accepted head is merely incomplete
// (a request arriving in pieces is never refused), and a head rebuilt from the parse
// parses the same.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: plc\r\n\r\n"))
	f.Add([]byte("POST /FormLogin HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseHead(b, fuzzLimits)
		if err != nil {
			if errors.Is(err, ErrIncomplete) {
				if len(b) >= fuzzLimits.MaxHeaderBytes {
					t.Fatalf("incomplete with %d bytes", len(b))
				}
			} else if StatusOf(err) == 0 {
				t.Fatalf("error without a status: %v", err)
			}
			return
		}
		checkRequest(t, r, n, len(b))
		// Every strict prefix is incomplete. Check them all for short heads, a sample
		// for long ones.
		step := 1
		if n > 512 {
			step = n / 257
		}
		for k := 0; k < n; k += step {
			if _, _, err := ParseHead(b[:k], fuzzLimits); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("prefix of %d/%d bytes: %v\nhead %q", k, n, err, b[:n])
			}
		}
		r2, n2, err := ParseHead(b[:n], fuzzLimits)
		if err != nil || n2 != n || !reflect.DeepEqual(r, r2) {
			t.Fatalf("head alone parses differently: %v %d/%d", err, n2, n)
		}
		rebuilt := rebuild(r)
		r3, n3, err := ParseHead(rebuilt, fuzzLimits)
		if err != nil {
			// Only a longer rebuilt head may exceed the limits.
			if len(rebuilt) > fuzzLimits.MaxHeaderBytes && StatusOf(err) == 431 {
				return
			}
			t.Fatalf("rebuilt head %q: %v", rebuilt, err)
		}
		if n3 != len(rebuilt) || !reflect.DeepEqual(r, r3) {
			t.Fatalf("rebuilt head parses differently:\n%+v\n%+v", r, r3)
		}
	})
}

func checkRequest(t *testing.T, r *Request, n, size int) {
	t.Helper()
	switch {
	case n <= 0 || n > size || n > fuzzLimits.MaxHeaderBytes:
		t.Fatalf("consumed %d of %d", n, size)
	case !isToken(r.Method) || len(r.Method) > maxMethodBytes:
		t.Fatalf("method %q", r.Method)
	case r.Major != 1 || r.Minor > 1 || r.Minor < 0:
		t.Fatalf("version %d.%d", r.Major, r.Minor)
	case len(r.Target) > fuzzLimits.MaxURIBytes || len(r.Fields) > fuzzLimits.MaxHeaders:
		t.Fatalf("limits: target %d fields %d", len(r.Target), len(r.Fields))
	case r.Chunked && r.ContentLength >= 0:
		t.Fatalf("chunked with Content-Length %d", r.ContentLength)
	case r.ContentLength < -1:
		t.Fatalf("Content-Length %d", r.ContentLength)
	case r.Form == OriginForm && !strings.HasPrefix(r.Path, "/"):
		t.Fatalf("origin-form path %q", r.Path)
	case r.Form == AbsoluteForm && !strings.HasPrefix(r.Path, "/"):
		t.Fatalf("absolute-form path %q", r.Path)
	case r.Form != OriginForm && r.Form != AbsoluteForm && r.Form != AuthorityForm && r.Form != AsteriskForm:
		t.Fatalf("form %q", r.Form)
	case strings.ContainsAny(r.Target, " \r\n\x00"):
		t.Fatalf("target %q", r.Target)
	}
	for _, f := range r.Fields {
		if !isToken(f.Name) || strings.ContainsAny(f.Value, "\r\n\x00") {
			t.Fatalf("field %q: %q", f.Name, f.Value)
		}
	}
}

func rebuild(r *Request) []byte {
	var b bytes.Buffer
	b.WriteString(r.Method + " " + r.Target + " " + r.Version() + "\r\n")
	for _, f := range r.Fields {
		b.WriteString(f.Name + ": " + f.Value + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// FuzzChunked checks the chunked decoder: it never panics, respects its cap, and gives
// the same result whether the bytes come at once or in two parts.
func FuzzChunked(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), uint16(3))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		whole := ChunkedBody{Max: 1024}
		n, err := whole.Decode(b)
		if err == nil && (n <= 0 || n > len(b)) {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		if err != nil && !errors.Is(err, ErrIncomplete) && StatusOf(err) == 0 {
			t.Fatalf("error without a status: %v", err)
		}
		if len(whole.Body) > whole.Max {
			t.Fatalf("body %d over %d", len(whole.Body), whole.Max)
		}
		k := int(cut) % (len(b) + 1)
		parts := ChunkedBody{Max: 1024}
		n1, err1 := parts.Decode(b[:k])
		if err1 == nil {
			// Complete within the first part already: the whole gives the same.
			if err != nil || n1 != n || !bytes.Equal(parts.Body, whole.Body) {
				t.Fatalf("first part complete (%d) but whole: %d %v", n1, n, err)
			}
			return
		}
		if !errors.Is(err1, ErrIncomplete) {
			// An error in a prefix is an error of the whole.
			if err == nil || StatusOf(err) != StatusOf(err1) {
				t.Fatalf("prefix error %v, whole %v", err1, err)
			}
			return
		}
		n2, err2 := parts.Decode(b)
		if n2 != n || StatusOf(err2) != StatusOf(err) || errors.Is(err2, ErrIncomplete) != errors.Is(err, ErrIncomplete) {
			t.Fatalf("in two parts: %d %v; at once: %d %v", n2, err2, n, err)
		}
		if err == nil && !bytes.Equal(parts.Body, whole.Body) {
			t.Fatalf("bodies differ: %q / %q", parts.Body, whole.Body)
		}
	})
}

// memConn is a net.Conn over fixed input; what the handler writes is kept. Reads end
// with io.EOF, so the handler's timeouts never matter.
type memConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServe runs the handler over arbitrary input. Every answer must parse as an HTTP
// response with only the headers the site writes (a Host copied into a header or
// location never adds one), there is exactly one answered event per response and its
// code is the response's status, and no attacker markup comes back unescaped.
func FuzzServe(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: plc\r\n\r\nHEAD /Default.mwsl HTTP/1.1\r\nHost: plc\r\n\r\n"))
	f.Add([]byte("GET /<script>alert(1)</script> HTTP/1.0\r\n\r\n"))
	f.Add([]byte("GET /moved HTTP/1.1\r\nHost: a b\r\n\r\nGET /moved HTTP/1.1\r\nHost: [::1]:8080\r\n\r\nGET http://x%0d%0aY:1/moved HTTP/1.0\r\n\r\n"))
	env := protocoltest.Env(f, testIdentity())
	env.Boot = time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	env.Now = func() time.Time { return time.Date(2026, 3, 9, 8, 15, 0, 0, time.UTC) }
	cfg := NewConfig()
	cfg.MaxBodyBytes = 2048
	cfg.MaxRequests = 20
	cfg.Headers = []string{"X-Host: {{.Host}}"}
	cfg.Pages = append(cfg.Pages, Page{Path: "/moved", Content: Content{Status: 301, Location: "http://{{.Host}}/",
		BodyTemplate: "text", Body: "{{.Location}}"}})
	h, err := New(env, cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &memConn{in: bytes.NewReader(in)}
		sess := protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:80"), netip.MustParseAddrPort("127.0.0.1:40000"))
		if err := h.ServeStream(context.Background(), sess, conn); err != nil {
			t.Fatalf("ServeStream: %v", err)
		}
		var answered []protocols.Event
		for _, e := range sess.Events() {
			if e.Code != 0 {
				answered = append(answered, e)
			}
		}
		out := conn.out.Bytes()
		br := bufio.NewReader(bytes.NewReader(out))
		for i, e := range answered {
			method := e.Detail["method"]
			if method == "" {
				method = "GET"
			}
			resp, err := readFinalResponse(br, method)
			if err != nil {
				t.Fatalf("response %d: %v\nout %q", i, err, out)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("response %d body: %v", i, err)
			}
			if resp.StatusCode != e.Code {
				t.Fatalf("response %d: status %d, event code %d", i, resp.StatusCode, e.Code)
			}
			if resp.Header.Get("Date") != "Mon, 09 Mar 2026 08:15:00 GMT" {
				t.Fatalf("response %d: Date %q", i, resp.Header.Get("Date"))
			}
			for k, v := range resp.Header {
				if !slices.Contains([]string{"Content-Type", "Content-Length", "Connection", "Allow", "Location", "Date", "X-Host"}, k) || len(v) != 1 {
					t.Fatalf("response %d: header %s %q", i, k, v)
				}
			}
			if host := resp.Header.Get("X-Host"); host != "127.0.0.1" && !validHost(host) {
				t.Fatalf("response %d: X-Host %q", i, host)
			}
		}
		// A "100 Continue" may end the output when the body never came.
		if rest, _ := io.ReadAll(br); len(rest) != 0 && string(rest) != "HTTP/1.1 100 Continue\r\n\r\n" {
			t.Fatalf("%d bytes after %d responses: %q", len(rest), len(answered), rest)
		}
		lower := strings.ToLower(string(out))
		for _, bad := range []string{"<script", "<img", "<svg", "<iframe", "javascript:"} {
			if strings.Contains(lower, bad) {
				t.Fatalf("output contains %q:\n%s", bad, out)
			}
		}
		if len(answered) > cfg.MaxRequests {
			t.Fatalf("%d answers over max_requests %d", len(answered), cfg.MaxRequests)
		}
	})
}

// readFinalResponse reads one response, skipping interim (1xx) ones.
func readFinalResponse(br *bufio.Reader, method string) (*nethttp.Response, error) {
	for {
		resp, err := nethttp.ReadResponse(br, &nethttp.Request{Method: method})
		if err != nil || resp.StatusCode >= 200 {
			return resp, err
		}
	}
}
