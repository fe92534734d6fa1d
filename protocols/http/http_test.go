package http

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// testIdentity is the shared test persona with the station the pages below spell out.
func testIdentity() *protocols.Identity {
	id := protocoltest.Identity()
	id.Serial = "S C-K7Q112233"
	id.Hostname = "plc-line2"
	id.ModuleName = "PLC_1"
	id.PlantID = "LINE2-FILLING"
	id.Location = "Building B, cabinet 4"
	return id
}

// clock is a settable Env.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// server starts the handler built from the default config changed by mod.
func server(t *testing.T, mod func(*Config), env *protocols.Env) *protocoltest.Server {
	t.Helper()
	cfg := NewConfig()
	if mod != nil {
		mod(cfg)
	}
	e := protocoltest.Env(t, testIdentity())
	if env != nil {
		e = *env
	}
	h, err := New(e, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return protocoltest.ServeTCP(t, "", h)
}

func dial(t *testing.T, srv *protocoltest.Server) *net.TCPConn {
	t.Helper()
	c := srv.Dial(t)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// exchange sends raw, half-closes, and returns everything the server sent until it
// closed the connection.
func exchangeRaw(t *testing.T, srv *protocoltest.Server, raw string) string {
	t.Helper()
	c := dial(t, srv)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// parseResponses parses every response in raw with net/http's client-side parser;
// methods gives the request method of each (HEAD responses have no body).
func parseResponses(t *testing.T, raw string, methods ...string) []*nethttp.Response {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(raw))
	var out []*nethttp.Response
	for i := 0; ; i++ {
		if _, err := br.Peek(1); err == io.EOF {
			return out
		}
		m := "GET"
		if i < len(methods) {
			m = methods[i]
		}
		resp, err := nethttp.ReadResponse(br, &nethttp.Request{Method: m})
		if err != nil {
			t.Fatalf("response %d: %v\nraw:\n%s", i, err, raw)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", i, err)
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, resp)
	}
}

func bodyOf(t *testing.T, r *nethttp.Response) string {
	t.Helper()
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return string(b)
}

// events waits until the server recorded n events over all sessions and returns them.
func events(t *testing.T, srv *protocoltest.Server, n int) []protocols.Event {
	t.Helper()
	evs, _ := srv.WaitEvents(5*time.Second, func(evs []protocols.Event) bool { return len(evs) >= n })
	if len(evs) != n {
		t.Fatalf("got %d events, want %d: %+v", len(evs), n, evs)
	}
	return evs
}

func TestStatusAndHeaders(t *testing.T) {
	srv := server(t, nil, nil)
	tests := []struct {
		name     string
		req      string
		method   string
		status   int
		reason   string
		headers  map[string]string // "" = must be absent
		contains []string
		bodyLen  int // -1: don't care
		close    bool
	}{
		{
			name: "root redirects like an S7-1200", req: "GET / HTTP/1.1\r\nHost: plc\r\n\r\n",
			status: 302, reason: "Object Moved",
			headers: map[string]string{"Location": "/Default.mwsl", "Content-Type": "text/html", "Content-Length": "0", "Server": ""},
			bodyLen: 0,
		},
		{
			name: "HTTP/1.0 gets HTTP/1.0 and close", req: "GET / HTTP/1.0\r\n\r\n",
			status: 302, reason: "Object Moved", headers: map[string]string{"Connection": "close"}, bodyLen: 0, close: true,
		},
		{
			name: "intro page", req: "GET /Default.mwsl HTTP/1.1\r\nHost: plc\r\n\r\n", status: 200, reason: "OK",
			headers:  map[string]string{"Content-Type": "text/html; charset=utf-8"},
			contains: []string{"<title>SIMATIC S7-1200 - PLC_1</title>", "ENTER"}, bodyLen: -1,
		},
		{
			name: "start page", req: "GET /Portal/Portal.mwsl?PriNav=Start HTTP/1.1\r\nHost: plc\r\n\r\n", status: 200,
			contains: []string{"Start page", "plc-line2", "CPU 1214C DC/DC/DC", "6ES7 214-1AG40-0XB0", "V4.5.2", `action="/FormLogin"`, `name="Login"`, `name="Password"`, "0d 01:00:0"},
			bodyLen:  -1,
		},
		{
			name: "identification page by query", req: "GET /Portal/Portal.mwsl?PriNav=Ident HTTP/1.1\r\nHost: plc\r\n\r\n", status: 200,
			contains: []string{"Identification", "S C-K7Q112233", "LINE2-FILLING", "Building B, cabinet 4", "Siemens"}, bodyLen: -1,
		},
		{
			name: "unknown query falls back to the first page", req: "GET /Portal/Portal.mwsl?PriNav=Diag HTTP/1.1\r\nHost: plc\r\n\r\n", status: 200,
			contains: []string{"Start page"}, bodyLen: -1,
		},
		{
			name: "percent-encoded path", req: "GET /Portal/Portal%2Emwsl HTTP/1.1\r\nHost: plc\r\n\r\n", status: 200,
			contains: []string{"Start page"}, bodyLen: -1,
		},
		{
			name: "HEAD has GET's length and no body", req: "HEAD /Default.mwsl HTTP/1.1\r\nHost: plc\r\n\r\n", method: "HEAD", status: 200,
			bodyLen: -1,
		},
		{
			name: "unknown path", req: "GET /robots.txt HTTP/1.1\r\nHost: plc\r\n\r\n", status: 404, reason: "Not Found",
			contains: []string{"<TITLE>Error</TITLE>", "/robots.txt", "404 : NOT FOUND"}, bodyLen: -1,
		},
		{
			name: "OPTIONS on a path", req: "OPTIONS /Default.mwsl HTTP/1.1\r\nHost: plc\r\n\r\n", status: 405, reason: "Method Not Allowed",
			headers: map[string]string{"Allow": "GET, HEAD", "Content-Type": "text/html"}, bodyLen: 0,
		},
		{
			name: "OPTIONS *", req: "OPTIONS * HTTP/1.1\r\nHost: plc\r\n\r\n", status: 405,
			headers: map[string]string{"Allow": "GET, HEAD, POST"}, bodyLen: -1,
		},
		{
			name: "OPTIONS on an unknown path", req: "OPTIONS /x HTTP/1.1\r\nHost: plc\r\n\r\n", status: 404, headers: map[string]string{"Allow": ""}, bodyLen: -1,
		},
		{
			name: "DELETE on a known path", req: "DELETE /Default.mwsl HTTP/1.1\r\nHost: plc\r\n\r\n", status: 405,
			headers: map[string]string{"Allow": "GET, HEAD"}, bodyLen: -1,
		},
		{
			name: "TRACE is not echoed", req: "TRACE / HTTP/1.1\r\nHost: plc\r\nX-Probe: <script>\r\n\r\n", status: 405,
			headers: map[string]string{"Allow": "GET, HEAD"}, bodyLen: -1,
		},
		{
			name: "GET on the login target", req: "GET /FormLogin HTTP/1.1\r\nHost: plc\r\n\r\n", status: 405,
			headers: map[string]string{"Allow": "POST"}, bodyLen: -1,
		},
		{
			name: "unknown method", req: "BREW /Default.mwsl HTTP/1.1\r\nHost: plc\r\n\r\n", status: 501, reason: "Not Implemented", bodyLen: -1,
		},
		{
			name: "CONNECT", req: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", status: 405,
			headers: map[string]string{"Allow": "GET, HEAD, POST"}, bodyLen: -1,
		},
		{
			name: "absolute-form target", req: "GET http://plc.example/Default.mwsl HTTP/1.1\r\nHost: other\r\n\r\n", status: 200,
			contains: []string{"ENTER"}, bodyLen: -1,
		},
		{
			name: "leading empty line is ignored", req: "\r\nGET /Default.mwsl HTTP/1.1\r\nHost: plc\r\n\r\n", status: 200, bodyLen: -1,
		},
		{
			name: "bare LF line ends", req: "GET /Default.mwsl HTTP/1.1\nHost: plc\n\n", status: 200, bodyLen: -1,
		},
		{name: "no Host in HTTP/1.1", req: "GET / HTTP/1.1\r\n\r\n", status: 400, reason: "Bad Request", bodyLen: -1, close: true},
		{name: "two Hosts", req: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400, bodyLen: -1, close: true},
		{name: "HTTP/0.9", req: "GET /\r\n\r\n", status: 400, bodyLen: -1, close: true},
		{name: "lower-case version", req: "GET / http/1.1\r\nHost: a\r\n\r\n", status: 400, bodyLen: -1, close: true},
		{name: "space before colon", req: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", status: 400, bodyLen: -1, close: true},
		{name: "obs-fold", req: "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", status: 400, bodyLen: -1, close: true},
		{name: "NUL in value", req: "GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", status: 400, bodyLen: -1, close: true},
		{name: "CL and TE", req: "POST /FormLogin HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400, bodyLen: -1, close: true},
		{name: "conflicting CL", req: "POST /FormLogin HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", status: 400, bodyLen: -1, close: true},
		{name: "negative CL", req: "POST /FormLogin HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", status: 400, bodyLen: -1, close: true},
		{name: "TE in HTTP/1.0", req: "POST /FormLogin HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400, bodyLen: -1, close: true},
		{name: "gzip transfer coding", req: "POST /FormLogin HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", status: 501, bodyLen: -1, close: true},
		{name: "bad percent-encoding", req: "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", status: 400, bodyLen: -1},
		{name: "TLS ClientHello", req: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", status: 400, bodyLen: -1, close: true},
		{name: "HTTP/2 version", req: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", status: 505, bodyLen: -1, close: true},
		{name: "unknown expectation", req: "POST /FormLogin HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", status: 417, bodyLen: -1, close: true},
		{name: "long request-target", req: "GET /" + strings.Repeat("a", 3000) + " HTTP/1.1\r\nHost: a\r\n\r\n", status: 414, reason: "URI Too Long", bodyLen: -1, close: true},
		{name: "too many fields", req: "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 70) + "\r\n", status: 431, bodyLen: -1, close: true},
		{name: "head over 8 KiB", req: "GET / HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("c", 9000) + "\r\n\r\n", status: 431, bodyLen: -1, close: true},
		{name: "body over the cap", req: "POST /FormLogin HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n", status: 413, bodyLen: -1, close: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := exchangeRaw(t, srv, tc.req)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			rs := parseResponses(t, raw, method)
			if len(rs) != 1 {
				t.Fatalf("got %d responses, want 1:\n%s", len(rs), raw)
			}
			r := rs[0]
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d:\n%s", r.StatusCode, tc.status, raw)
			}
			if tc.reason != "" && r.Status != fmt.Sprintf("%d %s", tc.status, tc.reason) {
				t.Errorf("status line %q, want reason %q", r.Status, tc.reason)
			}
			for k, v := range tc.headers {
				got, ok := r.Header[k]
				switch {
				case v == "" && ok:
					t.Errorf("header %s = %q, want none", k, got)
				case v != "" && (len(got) != 1 || got[0] != v):
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if d := r.Header.Get("Date"); d == "" {
				t.Errorf("no Date header")
			} else if _, err := time.Parse(nethttp.TimeFormat, d); err != nil {
				t.Errorf("Date %q: %v", d, err)
			}
			body := bodyOf(t, r)
			cl, err := strconv.Atoi(r.Header.Get("Content-Length"))
			if err != nil {
				t.Fatalf("Content-Length %q: %v", r.Header.Get("Content-Length"), err)
			}
			if method != "HEAD" && cl != len(body) {
				t.Errorf("Content-Length %d, body %d bytes", cl, len(body))
			}
			if method == "HEAD" && (cl == 0 || body != "" || strings.Contains(raw, "<html")) {
				t.Errorf("HEAD: Content-Length %d, body %q", cl, body)
			}
			if tc.bodyLen >= 0 && len(body) != tc.bodyLen {
				t.Errorf("body %d bytes, want %d", len(body), tc.bodyLen)
			}
			for _, s := range tc.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q:\n%s", s, body)
				}
			}
			if r.Close != tc.close {
				t.Errorf("close %v, want %v", r.Close, tc.close)
			}
			if strings.Contains(raw, "<script>") {
				t.Errorf("response reflects <script>:\n%s", raw)
			}
		})
	}
	// One event per request, except the TLS hello, which is answered too.
	evs := events(t, srv, len(tests))
	for _, e := range evs {
		if e.Op != "http_request" || e.Protocol != "http" || e.Code == 0 {
			t.Errorf("event %+v", e)
		}
	}
}

// TestHEADMatchesGET checks that HEAD answers the same head as GET, body excepted.
func TestHEADMatchesGET(t *testing.T) {
	srv := server(t, nil, nil)
	for _, path := range []string{"/", "/Default.mwsl", "/Portal/Portal.mwsl?PriNav=Ident", "/missing"} {
		t.Run(path, func(t *testing.T) {
			get := parseResponses(t, exchangeRaw(t, srv, "GET "+path+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))[0]
			head := parseResponses(t, exchangeRaw(t, srv, "HEAD "+path+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), "HEAD")[0]
			if get.StatusCode != head.StatusCode {
				t.Errorf("status GET %d HEAD %d", get.StatusCode, head.StatusCode)
			}
			for _, k := range []string{"Content-Length", "Content-Type", "Location", "Connection"} {
				if get.Header.Get(k) != head.Header.Get(k) {
					t.Errorf("%s: GET %q HEAD %q", k, get.Header.Get(k), head.Header.Get(k))
				}
			}
		})
	}
}

func TestOptionsAllowMode(t *testing.T) {
	srv := server(t, func(c *Config) { c.Options = OptionsAllow }, nil)
	tests := []struct{ target, allow string }{
		{"/Default.mwsl", "GET, HEAD, OPTIONS"},
		{"/FormLogin", "POST, OPTIONS"},
		{"*", "GET, HEAD, POST, OPTIONS"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			r := parseResponses(t, exchangeRaw(t, srv, "OPTIONS "+tc.target+" HTTP/1.1\r\nHost: a\r\n\r\n"))[0]
			if r.StatusCode != 200 || r.Header.Get("Allow") != tc.allow || r.Header.Get("Content-Length") != "0" {
				t.Errorf("got %s Allow %q Content-Length %q", r.Status, r.Header.Get("Allow"), r.Header.Get("Content-Length"))
			}
		})
	}
}

func TestKeepAliveAndPipelining(t *testing.T) {
	srv := server(t, nil, nil)
	t.Run("pipelined requests answered in order", func(t *testing.T) {
		raw := exchangeRaw(t, srv, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"+
			"HEAD /Default.mwsl HTTP/1.1\r\nHost: a\r\n\r\n"+
			"POST /FormLogin HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 25\r\n\r\nLogin=admin&Password=1234"+
			"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"+
			"GET /Default.mwsl HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"+
			"GET /never HTTP/1.1\r\nHost: a\r\n\r\n")
		rs := parseResponses(t, raw, "GET", "HEAD", "POST", "GET", "GET")
		want := []int{302, 200, 200, 404, 200}
		if len(rs) != len(want) {
			t.Fatalf("got %d responses, want %d:\n%s", len(rs), len(want), raw)
		}
		for i, r := range rs {
			if r.StatusCode != want[i] {
				t.Errorf("response %d: %d, want %d", i, r.StatusCode, want[i])
			}
		}
		if !rs[4].Close {
			t.Errorf("last response does not close")
		}
		if !strings.Contains(bodyOf(t, rs[2]), "Login failed") {
			t.Errorf("login answer lacks the failure")
		}
	})
	t.Run("HTTP/1.0 keep-alive", func(t *testing.T) {
		raw := exchangeRaw(t, srv, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /Default.mwsl HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n")
		rs := parseResponses(t, raw)
		if len(rs) != 2 {
			t.Fatalf("got %d responses, want 2:\n%s", len(rs), raw)
		}
		if rs[0].Header.Get("Connection") != "keep-alive" || rs[0].Proto != "HTTP/1.0" {
			t.Errorf("first: %s Connection %q", rs[0].Proto, rs[0].Header.Get("Connection"))
		}
		if rs[1].Header.Get("Connection") != "close" {
			t.Errorf("second: Connection %q", rs[1].Header.Get("Connection"))
		}
	})
	t.Run("interactive keep-alive on one connection", func(t *testing.T) {
		c := dial(t, srv)
		br := bufio.NewReader(c)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(c, "GET /Default.mwsl HTTP/1.1\r\nHost: a\r\n\r\n")
			r, err := nethttp.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			io.Copy(io.Discard, r.Body)
			if r.StatusCode != 200 || r.Close {
				t.Fatalf("request %d: %s close=%v", i, r.Status, r.Close)
			}
		}
	})
	t.Run("max_requests closes", func(t *testing.T) {
		srv := server(t, func(c *Config) { c.MaxRequests = 2 }, nil)
		raw := exchangeRaw(t, srv, strings.Repeat("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 3))
		rs := parseResponses(t, raw)
		if len(rs) != 2 || !rs[1].Close {
			t.Fatalf("got %d responses (last close=%v), want 2 with close", len(rs), len(rs) > 1 && rs[1].Close)
		}
	})
	t.Run("chunked body and 100-continue", func(t *testing.T) {
		c := dial(t, srv)
		br := bufio.NewReader(c)
		fmt.Fprintf(c, "POST /FormLogin HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("interim response %q, %v", line, err)
		}
		if blank, _ := br.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("interim response not followed by an empty line: %q", blank)
		}
		fmt.Fprintf(c, "6\r\nLogin=\r\n5;ext=1\r\nchunk\r\n11\r\ny&Password=secret\r\n0\r\nX-Trailer: 1\r\n\r\n")
		r, err := nethttp.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := bodyOf(t, r); r.StatusCode != 200 || !strings.Contains(b, `value="chunky"`) {
			t.Fatalf("%s:\n%s", r.Status, b)
		}
	})
}

func TestLoginEvents(t *testing.T) {
	srv := server(t, nil, nil)
	body := "Login=%3Cscript%3Ealert(1)%3C%2Fscript%3E&Password=hunter2&Redirection=%2FPortal%2FPortal.mwsl"
	raw := exchangeRaw(t, srv, "POST /FormLogin HTTP/1.1\r\nHost: 10.0.0.5\r\nUser-Agent: Mozilla/5.0 (X11)\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
	r := parseResponses(t, raw, "POST")[0]
	page := bodyOf(t, r)
	if r.StatusCode != 200 || !strings.Contains(page, "Login failed") {
		t.Fatalf("%s:\n%s", r.Status, page)
	}
	if strings.Contains(raw, "<script>") || !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("username not escaped in the page:\n%s", page)
	}
	if strings.Contains(raw, "hunter2") {
		t.Errorf("password reflected")
	}
	e := events(t, srv, 1)[0]
	want := map[string]string{
		"method": "POST", "version": "HTTP/1.1", "host": "10.0.0.5", "user_agent": "Mozilla/5.0 (X11)",
		"content_type": "application/x-www-form-urlencoded", "username": "<script>alert(1)</script>",
	}
	for k, v := range want {
		if e.Detail[k] != v {
			t.Errorf("Detail[%s] = %q, want %q", k, e.Detail[k], v)
		}
	}
	if e.Code != 200 || e.Area != "/FormLogin" || string(e.Data) != body || e.Unit != -1 {
		t.Errorf("event %+v", e)
	}
}

func TestEventFields(t *testing.T) {
	srv := server(t, func(c *Config) { c.EventDataBytes = 8 }, nil)
	exchangeRaw(t, srv, "GET /Portal/Portal.mwsl?PriNav=Ident&x=%3C HTTP/1.1\r\nHost: plc\r\n\r\n"+
		"PUT /up HTTP/1.1\r\nHost: plc\r\nContent-Length: 20\r\n\r\n01234567890123456789"+
		"GET http://evil.example/ HTTP/1.1\r\nHost: plc\r\n\r\n")
	evs := events(t, srv, 3)
	tests := []struct {
		code   int
		area   string
		data   string
		detail map[string]string
	}{
		{200, "/Portal/Portal.mwsl", "", map[string]string{"method": "GET", "query": "PriNav=Ident&x=%3C", "host": "plc"}},
		{404, "/up", "01234567", map[string]string{"method": "PUT"}},
		{302, "/", "", map[string]string{"host": "evil.example", "target": "http://evil.example/"}},
	}
	for i, tc := range tests {
		e := evs[i]
		if e.Code != tc.code || e.Area != tc.area || string(e.Data) != tc.data {
			t.Errorf("event %d: code %d area %q data %q, want %d %q %q", i, e.Code, e.Area, e.Data, tc.code, tc.area, tc.data)
		}
		for k, v := range tc.detail {
			if e.Detail[k] != v {
				t.Errorf("event %d: Detail[%s] = %q, want %q", i, k, e.Detail[k], v)
			}
		}
		if _, ok := e.Detail["username"]; ok {
			t.Errorf("event %d has a username", i)
		}
	}
}

// TestHostileInputIsEscaped sends attacker markup everywhere it could be reflected.
func TestHostileInputIsEscaped(t *testing.T) {
	srv := server(t, func(c *Config) {
		c.Pages = append(c.Pages, Page{Path: "/echo", Content: Content{ContentType: htmlType,
			Body: `<a href="{{.Path}}?{{.Query}}">{{.Method}} {{.Path}}</a><script>var q="{{.Query}}";</script>`}})
	}, nil)
	hostile := []string{
		"GET /<script>alert(1)</script> HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /\"><script>alert(1)</script> HTTP/1.1\r\nHost: <script>\r\nUser-Agent: <script>\r\n\r\n",
		"GET /echo?\"</script><script>alert(1)</script> HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /echo?x=javascript:alert(1) HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /<img/src=x/onerror=alert(1)> HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /Portal/Portal.mwsl?PriNav=<script>alert(1)</script> HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /<script>" + strings.Repeat("A", 3000) + " HTTP/1.1\r\nHost: a\r\n\r\n",
	}
	for i, req := range hostile {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			raw := exchangeRaw(t, srv, req)
			for _, bad := range []string{"<script>alert", "<img", "\"><script", "onerror=alert(1)>"} {
				if strings.Contains(raw, bad) {
					t.Errorf("response contains %q:\n%s", bad, raw)
				}
			}
			if !strings.HasPrefix(raw, "HTTP/1.1 ") {
				t.Errorf("no response:\n%s", raw)
			}
		})
	}
}

func TestDateIsLive(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 9, 8, 15, 0, 0, time.UTC)}
	env := protocoltest.Env(t, testIdentity())
	env.Now, env.Boot = clk.Now, clk.Now().Add(-26*time.Hour-3*time.Minute-4*time.Second)
	srv := server(t, nil, &env)
	c := dial(t, srv)
	br := bufio.NewReader(c)
	get := func() (string, string) {
		fmt.Fprintf(c, "GET /Portal/Portal.mwsl HTTP/1.1\r\nHost: a\r\n\r\n")
		r, err := nethttp.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Get("Date"), bodyOf(t, r)
	}
	d1, b1 := get()
	clk.Add(90 * time.Minute)
	d2, b2 := get()
	if d1 != "Mon, 09 Mar 2026 08:15:00 GMT" || d2 != "Mon, 09 Mar 2026 09:45:00 GMT" {
		t.Errorf("Date %q then %q", d1, d2)
	}
	for _, tc := range []struct{ body, uptime, now string }{
		{b1, "1d 02:03:04", "09.03.2026 08:15:00"},
		{b2, "1d 03:33:04", "09.03.2026 09:45:00"},
	} {
		if !strings.Contains(tc.body, tc.uptime) || !strings.Contains(tc.body, tc.now) {
			t.Errorf("page lacks uptime %q or time %q", tc.uptime, tc.now)
		}
	}
	// And with the real clock, two requests a second apart differ.
	srv2 := server(t, nil, nil)
	r1 := parseResponses(t, exchangeRaw(t, srv2, "GET / HTTP/1.0\r\n\r\n"))[0]
	time.Sleep(1100 * time.Millisecond)
	r2 := parseResponses(t, exchangeRaw(t, srv2, "GET / HTTP/1.0\r\n\r\n"))[0]
	if r1.Header.Get("Date") == r2.Header.Get("Date") {
		t.Errorf("Date frozen at %q", r1.Header.Get("Date"))
	}
}

func TestConfiguredServerAndHeaders(t *testing.T) {
	srv := server(t, func(c *Config) {
		c.Server = "Embedded-Web/1.2"
		c.Date = false
		c.Headers = []string{"X-Frame-Options: SAMEORIGIN"}
		c.ErrorPages = map[int]Content{404: {ContentType: "text/plain", Body: "no such page: {{.Path}}"}}
	}, nil)
	raw := exchangeRaw(t, srv, "GET /x HTTP/1.0\r\n\r\n")
	want := "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n" +
		"X-Frame-Options: SAMEORIGIN\r\nServer: Embedded-Web/1.2\r\n\r\nno such page: /x"
	if raw != want {
		t.Errorf("got\n%q\nwant\n%q", raw, want)
	}
}

func TestSoftErrorPage(t *testing.T) {
	srv := server(t, func(c *Config) {
		c.ErrorPages[404] = Content{Status: 200, ContentType: htmlType, Body: "<p>{{.Status}} {{.Reason}}</p>"}
	}, nil)
	raw := exchangeRaw(t, srv, "GET /admin HTTP/1.0\r\n\r\n")
	if !strings.HasPrefix(raw, "HTTP/1.0 200 OK\r\n") || !strings.HasSuffix(raw, "<p>200 OK</p>") {
		t.Errorf("answer %q", raw)
	}
	if e := events(t, srv, 1)[0]; e.Code != 200 {
		t.Errorf("event code %d", e.Code)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"options", func(c *Config) { c.Options = "yes" }, `options "yes"`},
		{"timeout", func(c *Config) { c.IdleTimeout = 0 }, "must be positive"},
		{"header bytes", func(c *Config) { c.MaxHeaderBytes = 10 }, "max_header_bytes 10"},
		{"uri bytes", func(c *Config) { c.MaxURIBytes = 100000 }, "max_uri_bytes"},
		{"no pages", func(c *Config) { c.Pages = nil }, "no pages"},
		{"relative path", func(c *Config) { c.Pages[0].Path = "x" }, "must start with /"},
		{"bad method", func(c *Config) { c.Pages[0].Methods = []string{"FETCH"} }, `method "FETCH"`},
		{"server method", func(c *Config) { c.Pages[0].Methods = []string{"OPTIONS"} }, "answered by the server"},
		{"template", func(c *Config) { c.Pages[0].Body = "{{.Nope" }, "body"},
		{"reserved header", func(c *Config) { c.Pages[0].Headers = []string{"Content-Length: 5"} }, "set by the server"},
		{"header injection", func(c *Config) { c.Headers = []string{"X-A: b\r\nX-B: c"} }, "control byte"},
		{"server injection", func(c *Config) { c.Server = "a\nb" }, "control byte"},
		{"bad header line", func(c *Config) { c.Headers = []string{"no colon"} }, "Name: value"},
		{"duplicate page", func(c *Config) { c.Pages = append(c.Pages, c.Pages[1]) }, "duplicate path"},
		{"login without POST", func(c *Config) { c.Pages[4].Methods = []string{"GET"} }, "login needs method POST"},
		{"login fields", func(c *Config) { c.Pages[4].Login.UsernameField = "" }, "username_field"},
		{"204 body", func(c *Config) { c.Pages[1].Status = 204 }, "cannot have a body"},
		{"status", func(c *Config) { c.Pages[1].Status = 99 }, "status 99"},
		{"error page status", func(c *Config) { c.ErrorPages = map[int]Content{200: {}} }, "not an error"},
		{"query", func(c *Config) { c.Pages[3].Query = "a=1&b=2" }, "one key=value"},
		{"version", func(c *Config) { c.Version = "2.0" }, `version "2.0"`},
		{"page version", func(c *Config) { c.Pages[1].Version = "0.9" }, `version "0.9"`},
		{"connection header", func(c *Config) { c.ConnectionHeader = "sometimes" }, `connection_header "sometimes"`},
		{"date format without a date", func(c *Config) { c.DateFormat = "soon" }, `date_format "soon"`},
		{"date format line break", func(c *Config) { c.DateFormat = "Mon\r\n2006" }, "date_format"},
		{"header order name", func(c *Config) { c.HeaderOrder = []string{"Content Length"} }, "not a header name"},
		{"header order twice", func(c *Config) { c.HeaderOrder = []string{"Date", "Server", "date"} }, "date twice"},
		{"page header order", func(c *Config) { c.Pages[1].HeaderOrder = []string{""} }, "page header_order"},
		{"header template field", func(c *Config) { c.Headers = []string{"X-A: {{.Nope}}"} }, "can't evaluate field Nope"},
		{"header template syntax", func(c *Config) { c.Headers = []string{"X-A: {{if}}"} }, "headers X-A"},
		{"header template line break", func(c *Config) { c.Headers = []string{`X-A: {{"a\r\nSet-Cookie: b"}}`} }, "control byte"},
		{"header template has no request text", func(c *Config) { c.Pages[1].Headers = []string{"X-Path: {{.Path}}"} }, "can't evaluate field Path"},
		{"repeat limit", func(c *Config) { c.Headers = []string{`X-A: {{repeat "ab" 600}}`} }, "repeat: 600 times"},
		{"location and Location line", func(c *Config) { c.Pages[0].Location = "/x" }, "both location and a Location header line"},
		{"location has no request text", func(c *Config) { c.Pages[0].Headers = nil; c.Pages[0].Location = "{{.Query}}" }, "can't evaluate field Query"},
		{"body template kind", func(c *Config) { c.Pages[1].BodyTemplate = "xml" }, `body_template "xml"`},
		{"text body has no request text", func(c *Config) { c.ErrorPage.BodyTemplate = "text" }, "can't evaluate field Path"},
		{"content length adjust", func(c *Config) { c.Pages[1].ContentLengthAdjust = 100 }, "content_length_adjust 100"},
		{"server method", func(c *Config) { c.ServerMethods = []string{"GET", "BREW"} }, `server_methods: "BREW"`},
		{"server methods without GET", func(c *Config) { c.ServerMethods = []string{"HEAD"} }, "GET is missing"},
		{"page method the server lacks", func(c *Config) { c.ServerMethods = []string{"GET", "HEAD"} }, "POST is not in server_methods"},
		{"options allowed but unknown", func(c *Config) { c.Options = OptionsAllow; c.ServerMethods = []string{"GET", "HEAD", "POST"} }, "OPTIONS is not in server_methods"},
		{"unknown method status", func(c *Config) { c.UnknownMethodStatus = 302 }, "unknown_method_status 302"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewConfig()
			tc.mod(cfg)
			_, err := New(protocoltest.Env(t, testIdentity()), cfg)
			if err == nil || !errors.Is(err, protocols.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrConfig with %q", err, tc.want)
			}
		})
	}
	t.Run("identity string with a line break", func(t *testing.T) {
		env := protocoltest.Env(t, testIdentity())
		env.Identity.Model = "CPU\r\nSet-Cookie: x=1"
		cfg := NewConfig()
		cfg.Headers = []string{"X-Model: {{.Identity.Model}}"}
		if _, err := New(env, cfg); !errors.Is(err, protocols.ErrConfig) || !strings.Contains(err.Error(), "control byte") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no identity", func(t *testing.T) {
		if _, err := New(protocols.Env{}, NewConfig()); !errors.Is(err, protocols.ErrConfig) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("spec", func(t *testing.T) {
		protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "http", Transport: protocols.TCP, Port: 80, Service: "http"},
			protocoltest.Env(t, testIdentity()))
	})
}

// TestReadLoop covers the connection-level limits.
func TestReadLoop(t *testing.T) {
	fast := func(c *Config) {
		c.IdleTimeout = 300 * time.Millisecond
		c.HeaderTimeout = 600 * time.Millisecond
		c.BodyTimeout = 600 * time.Millisecond
		c.MaxBodyBytes = 1024
	}
	// The peer closes inside a request: nothing (or only the interim answer) goes back,
	// and the event has code 0 with what arrived.
	for _, tc := range []struct {
		name, send, answer, data, method string
	}{
		{"EOF inside the head", "GET / HTTP/1.1\r\nHost: a\r\nUser-", "", "GET / HTTP/1.1\r\nHost: a\r\nUser-", ""},
		// Regression (FuzzServe): the interim answer is all a client gets when it never
		// sends the body it announced.
		{"100-continue then EOF in the body", "POST /FormLogin HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\nLog",
			"HTTP/1.1 100 Continue\r\n\r\n", "Log", "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := server(t, fast, nil)
			if raw := exchangeRaw(t, srv, tc.send); raw != tc.answer {
				t.Errorf("answer %q, want %q", raw, tc.answer)
			}
			e := events(t, srv, 1)[0]
			if e.Code != 0 || string(e.Data) != tc.data || e.Detail["method"] != tc.method || e.Detail["error"] == "" {
				t.Errorf("event %+v", e)
			}
			if errs := srv.Errors(); len(errs) != 0 {
				t.Errorf("handler errors %v", errs)
			}
		})
	}
	t.Run("idle connection closes quietly", func(t *testing.T) {
		srv := server(t, fast, nil)
		c := dial(t, srv)
		start := time.Now()
		b, err := io.ReadAll(c)
		if err != nil || len(b) != 0 {
			t.Fatalf("read %q, %v", b, err)
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Errorf("closed after %v, want about 300ms", d)
		}
		if evs := srv.Sessions()[0].Events(); len(evs) != 0 {
			t.Errorf("events %+v", evs)
		}
	})
	t.Run("slowloris drip stops at the header deadline", func(t *testing.T) {
		srv := server(t, fast, nil)
		c := dial(t, srv)
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			drip := "GET / HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("a", 200)
			for i := 0; i < len(drip); i++ {
				if _, err := c.Write([]byte{drip[i]}); err != nil {
					return
				}
				time.Sleep(20 * time.Millisecond) // faster than the idle timeout
			}
		}()
		b, _ := io.ReadAll(c)
		d := time.Since(start)
		c.Close()
		<-done
		if !strings.HasPrefix(string(b), "HTTP/1.1 408 Request Timeout\r\n") || !strings.Contains(string(b), "Connection: close") {
			t.Errorf("answer %q", b)
		}
		if d < 550*time.Millisecond || d > 3*time.Second {
			t.Errorf("closed after %v, want about 600ms", d)
		}
		e := events(t, srv, 1)[0]
		if e.Code != 408 || !strings.HasPrefix(string(e.Data), "GET / HTTP/1.1") {
			t.Errorf("event %+v", e)
		}
	})
	t.Run("slow body times out", func(t *testing.T) {
		srv := server(t, fast, nil)
		c := dial(t, srv)
		fmt.Fprintf(c, "POST /FormLogin HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nLogin=")
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.1 408 ") {
			t.Errorf("answer %q", b)
		}
		e := events(t, srv, 1)[0]
		if e.Code != 408 || string(e.Data) != "Login=" || e.Area != "/FormLogin" {
			t.Errorf("event %+v", e)
		}
	})
	t.Run("oversized body is refused unread", func(t *testing.T) {
		srv := server(t, fast, nil)
		c := dial(t, srv)
		fmt.Fprintf(c, "POST /FormLogin HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
		br := bufio.NewReader(c)
		r, err := nethttp.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.StatusCode != 413 || !r.Close {
			t.Errorf("%s close=%v", r.Status, r.Close)
		}
		io.Copy(io.Discard, r.Body)
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("connection not closed: %v", err)
		}
	})
	t.Run("oversized chunked body", func(t *testing.T) {
		srv := server(t, fast, nil)
		raw := exchangeRaw(t, srv, "POST /FormLogin HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"+strings.Repeat("x", 0x800)+"\r\n0\r\n\r\n")
		if !strings.HasPrefix(raw, "HTTP/1.1 413 ") {
			t.Errorf("answer %q", raw[:min(len(raw), 200)])
		}
	})
	t.Run("many tiny chunks hit the encoded-size cap", func(t *testing.T) {
		srv := server(t, fast, nil)
		raw := exchangeRaw(t, srv, "POST /FormLogin HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+strings.Repeat("1;a=bcdefghijk\r\nx\r\n", 1000))
		if !strings.HasPrefix(raw, "HTTP/1.1 413 ") {
			t.Errorf("answer %q", raw[:min(len(raw), 200)])
		}
	})
	t.Run("client that does not read is cut at the write timeout", func(t *testing.T) {
		srv := server(t, func(c *Config) {
			fast(c)
			c.WriteTimeout = 300 * time.Millisecond
			c.MaxRequests = 1 << 20
			c.Pages = append(c.Pages, Page{Path: "/big", Content: Content{ContentType: "text/plain", Body: strings.Repeat("x", 64<<10)}})
		}, nil)
		c := dial(t, srv)
		// 400 answers of 64 KiB are more than the loopback socket buffers hold.
		const n = 400
		go io.WriteString(c, strings.Repeat("GET /big HTTP/1.1\r\nHost: a\r\n\r\n", n))
		time.Sleep(1500 * time.Millisecond) // not reading: the server's write blocks, then times out
		b, _ := io.ReadAll(c)               // what was buffered, then the close
		if got := strings.Count(string(b), "HTTP/1.1 200 OK\r\n"); got == 0 || got >= n {
			t.Errorf("%d of %d answered; want the connection cut in between", got, n)
		}
		if errs := srv.Errors(); len(errs) != 0 {
			t.Errorf("handler errors %v", errs)
		}
	})
	t.Run("context cancellation ends the session", func(t *testing.T) {
		h, err := New(protocoltest.Env(t, testIdentity()), NewConfig())
		if err != nil {
			t.Fatal(err)
		}
		protocoltest.CancelEnds(t, h)
	})
}

// TestCurl drives the server with curl.
func TestCurl(t *testing.T) {
	curl := testenv.LookPath(t, "curl")
	srv := server(t, nil, nil)
	base := "http://" + srv.Addr.String()
	tests := []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"GET /", []string{"-si", base + "/"}, []string{"HTTP/1.1 302 Object Moved\r\n", "Location: /Default.mwsl\r\n", "Content-Length: 0\r\n", "Date: "}, []string{"Server:"}},
		{"follow redirect", []string{"-sL", base + "/"}, []string{"<title>SIMATIC S7-1200 - PLC_1</title>"}, nil},
		{"HEAD", []string{"-sI", base + "/Default.mwsl"}, []string{"HTTP/1.1 200 OK\r\n", "Content-Type: text/html; charset=utf-8\r\n"}, []string{"<html"}},
		{"OPTIONS", []string{"-si", "-X", "OPTIONS", base + "/Default.mwsl"}, []string{"HTTP/1.1 405 Method Not Allowed\r\n", "Allow: GET, HEAD\r\n"}, nil},
		{"login", []string{"-si", "--data-urlencode", "Login=admin", "--data-urlencode", "Password=s3cret", "-d", "Redirection=/Portal/Portal.mwsl", base + "/FormLogin"},
			[]string{"HTTP/1.1 200 OK\r\n", "Login failed.", `value="admin"`}, []string{"s3cret"}},
		{"HTTP/1.0", []string{"-si", "-0", base + "/nothing"}, []string{"HTTP/1.0 404 Not Found\r\n", "Connection: close\r\n", "404 : NOT FOUND"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(curl, append([]string{"--max-time", "10"}, tc.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			checkOutput(t, string(out), tc.want, tc.not)
		})
	}
	var login *protocols.Event
	for _, e := range srv.Events() {
		if e.Detail["username"] != "" {
			login = &e
		}
	}
	if login == nil || login.Detail["username"] != "admin" || !strings.Contains(string(login.Data), "Password=s3cret") ||
		!strings.HasPrefix(login.Detail["user_agent"], "curl/") {
		t.Errorf("login event %+v", login)
	}
}

// checkOutput checks that a tool's output has every string of want and none of not.
func checkOutput(t *testing.T, out string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	for _, w := range not {
		if strings.Contains(out, w) {
			t.Errorf("output has %q:\n%s", w, out)
		}
	}
}

// TestGoClient drives the server with net/http's client, which follows the redirect.
func TestGoClient(t *testing.T) {
	srv := server(t, nil, nil)
	resp, err := (&nethttp.Client{Timeout: 10 * time.Second}).Get("http://" + srv.Addr.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/Default.mwsl" || !strings.Contains(string(b), "<title>SIMATIC S7-1200 - PLC_1</title>") {
		t.Errorf("%s %s:\n%s", resp.Status, resp.Request.URL, b)
	}
}

// TestNmap runs nmap's http-title, http-server-header and http-methods scripts (forced
// with "+": nmap runs them by itself only on well-known HTTP ports), and service
// detection.
func TestNmap(t *testing.T) {
	nmap := testenv.LookPath(t, "nmap")
	scripts := []string{"-sT", "--script", "+http-title,+http-server-header,+http-methods"}
	tests := []struct {
		name string
		mod  func(*Config)
		args []string
		want []string
		not  []string
	}{
		{"scripts, defaults", nil, scripts, []string{
			"http-title: SIMATIC S7-1200 - PLC_1",
			"Requested resource was /Default.mwsl",
			"Supported Methods: GET HEAD",
		}, []string{"http-server-header"}},
		{"scripts, configured server header", func(c *Config) { c.Server = "Embedded-Web/1.2"; c.Options = OptionsAllow }, scripts, []string{
			"http-server-header: Embedded-Web/1.2",
			"Supported Methods: GET HEAD OPTIONS",
		}, nil},
		// Without a Date header the redirect is byte for byte the answer nmap's service
		// fingerprints know for the S7-1200 web server.
		{"service detection", func(c *Config) { c.Date = false }, []string{"-sT", "-sV", "--version-intensity", "2"}, []string{
			"Siemens Simatic S7-1200 PLC httpd",
		}, nil},
		// The Schneider M340 and Tridium JACE personas' sites: nmap names the product
		// as it names the real devices.
		{"service detection, Schneider-WEB", schneiderWEB, []string{"-sT", "-sV", "--version-intensity", "2"}, []string{
			"http    Schneider-WEB 2.1.4",
		}, nil},
		{"service detection, Niagara 4", niagara4, []string{"-sT", "-sV", "--version-intensity", "2"}, []string{
			"http    Tridium Niagara 4",
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := server(t, tc.mod, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"-Pn", "-n", "-p", strconv.Itoa(int(srv.Addr.Port()))}, tc.args...)
			out, err := exec.CommandContext(ctx, nmap, append(args, "127.0.0.1")...).CombinedOutput()
			if err != nil {
				t.Fatalf("nmap: %v\n%s", err, out)
			}
			checkOutput(t, string(out), tc.want, tc.not)
			if errs := srv.Errors(); len(errs) != 0 {
				t.Errorf("handler errors %v", errs)
			}
		})
	}
}

// TestNoConpotTells checks the HTTP fingerprints Conpot is known by.
func TestNoConpotTells(t *testing.T) {
	srv := server(t, nil, nil)
	raw := exchangeRaw(t, srv, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /index.html HTTP/1.1\r\nHost: a\r\n\r\n"+
		"GET /tests/unittest_databus.html HTTP/1.1\r\nHost: a\r\n\r\nGET /Default.mwsl HTTP/1.1\r\nHost: a\r\n\r\n"+
		"GET /Portal/Portal.mwsl HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	rs := parseResponses(t, raw)
	if len(rs) != 5 || rs[1].StatusCode != 404 || rs[2].StatusCode != 404 {
		t.Fatalf("responses:\n%s", raw)
	}
	for _, tell := range []string{"Last-Modified", "Set-cookie: path=/", "1993", "Technodrome", "Mouser", "S7-200", "conpot", "Overview - Siemens"} {
		if strings.Contains(strings.ToLower(raw), strings.ToLower(tell)) {
			t.Errorf("response has Conpot tell %q", tell)
		}
	}
	if !regexp.MustCompile(`Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n`).MatchString(raw) {
		t.Errorf("no RFC 9110 Date")
	}
}

// TestHostTemplates covers header values and locations executed with the request's
// host: a valid Host is copied, anything else (spaces, markup, CR/LF smuggled through
// percent-encoding, a bad port) gives way to the sensor's own address, and the
// template can tell a missing Host apart.
func TestHostTemplates(t *testing.T) {
	srv := server(t, func(c *Config) {
		c.Headers = []string{"X-Device: {{.Identity.Model}} ({{.Identity.Serial}})", "X-Where: {{.LocalAddr}} {{.LocalPort}}"}
		c.Pages[0] = Page{Path: "/", Content: Content{Status: 302, ContentType: "text/html",
			Location: `http://{{if .HostMissing}}{{repeat "\xee" 4}}P{{else}}{{.Host}}{{end}}/index.htm`,
			Body:     `<a href="{{.Location}}">{{.Host}}</a>`}}
		c.Pages = append(c.Pages, Page{Path: "/raw", Content: Content{Status: 302, Location: "http://{{.Host}}/raw2",
			BodyTemplate: "text", Body: "moved to {{.Location}} ({{.Identity.Vendor}})"}})
	}, nil)
	local := srv.Addr.String() // 127.0.0.1:<port>: not 80, so the port is part of the host
	tests := []struct {
		name, req  string
		status     int
		location   string // "" = no Location header
		bodyPrefix string
	}{
		{"host copied", "GET / HTTP/1.1\r\nHost: plc.example\r\n\r\n", 302, "http://plc.example/index.htm", `<a href="http://plc.example/index.htm">plc.example</a>`},
		{"host with port", "GET / HTTP/1.1\r\nHost: 10.1.2.3:8080\r\n\r\n", 302, "http://10.1.2.3:8080/index.htm", ""},
		{"IPv6 host", "GET / HTTP/1.1\r\nHost: [2001:db8::7]:80\r\n\r\n", 302, "http://[2001:db8::7]:80/index.htm", ""},
		{"absolute-form target names the host", "GET http://plc.example:81/ HTTP/1.1\r\nHost: other\r\n\r\n", 302, "http://plc.example:81/index.htm", ""},
		{"host with a space", "GET / HTTP/1.1\r\nHost: evil.example X-Injected: 1\r\n\r\n", 302, "http://" + local + "/index.htm", ""},
		{"host with markup", "GET / HTTP/1.1\r\nHost: <script>alert(1)</script>\r\n\r\n", 302, "http://" + local + "/index.htm", `<a href="http://` + local + `/index.htm">`},
		{"host with encoded CRLF", "GET / HTTP/1.1\r\nHost: a%0d%0aSet-Cookie:x\r\n\r\n", 302, "http://" + local + "/index.htm", ""},
		{"absolute-form with encoded CRLF", "GET http://a%0d%0aSet-Cookie:%20x/ HTTP/1.1\r\nHost: a\r\n\r\n", 302, "http://" + local + "/index.htm", ""},
		{"host with userinfo", "GET / HTTP/1.1\r\nHost: user@evil.example\r\n\r\n", 302, "http://" + local + "/index.htm", ""},
		{"host with a path", "GET / HTTP/1.1\r\nHost: evil.example/x\r\n\r\n", 302, "http://" + local + "/index.htm", ""},
		{"port out of range", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 302, "http://" + local + "/index.htm", ""},
		{"empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 302, "http://" + local + "/index.htm", ""},
		{"unclosed IPv6", "GET / HTTP/1.1\r\nHost: [2001:db8::7\r\n\r\n", 302, "http://" + local + "/index.htm", ""},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 302, "http://" + local + "/index.htm", ""},
		{"no host at all", "GET / HTTP/1.0\r\n\r\n", 302, "http://\xee\xee\xee\xeeP/index.htm", `<a href="http://%ee%ee%ee%eeP/index.htm">` + local + `</a>`},
		{"text body keeps the bytes", "GET /raw HTTP/1.0\r\n\r\n", 302, "http://" + local + "/raw2", "moved to http://" + local + "/raw2 (Siemens)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := exchangeRaw(t, srv, tc.req)
			r := parseResponses(t, raw)[0]
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d:\n%q", r.StatusCode, tc.status, raw)
			}
			if got := r.Header.Values("Location"); len(got) != 1 || got[0] != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if got := r.Header.Get("X-Device"); got != "CPU 1214C DC/DC/DC (S C-K7Q112233)" {
				t.Errorf("X-Device %q", got)
			}
			if got, want := r.Header.Get("X-Where"), "127.0.0.1 "+strconv.Itoa(int(srv.Addr.Port())); got != want {
				t.Errorf("X-Where %q, want %q", got, want)
			}
			for k := range r.Header {
				if !slices.Contains([]string{"Content-Type", "Content-Length", "Connection", "Location", "Date", "X-Device", "X-Where"}, k) {
					t.Errorf("header %s: %q", k, r.Header[k])
				}
			}
			if b := bodyOf(t, r); !strings.HasPrefix(b, tc.bodyPrefix) {
				t.Errorf("body %q, want it to start with %q", b, tc.bodyPrefix)
			}
			if strings.Contains(raw, "<script") || strings.Contains(strings.ToLower(raw), "set-cookie") {
				t.Errorf("request text reflected:\n%q", raw)
			}
		})
	}
}

// TestResponseShape covers the configurable form of a response: Date format, header
// order and spelling, status line version, Connection header and Content-Length
// adjustment, byte for byte on a fake clock.
func TestResponseShape(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 9, 8, 5, 7, 0, time.UTC)}
	env := protocoltest.Env(t, testIdentity())
	env.Now = clk.Now
	page := func(c *Config, ct Content) { c.Pages = []Page{{Path: "/", Content: ct}} }
	tests := []struct {
		name string
		mod  func(*Config)
		req  string
		want string
	}{
		{"default date is IMF-fixdate", nil, "GET /x HTTP/1.0\r\n\r\n", "" +
			"HTTP/1.0 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 112\r\nConnection: close\r\n" +
			"Date: Mon, 09 Mar 2026 08:05:07 GMT\r\n\r\n"},
		{"asctime", func(c *Config) { c.DateFormat = "asctime"; page(c, Content{}) }, "GET / HTTP/1.0\r\n\r\n",
			"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nDate: Mon Mar  9 08:05:07 2026\r\n\r\n"},
		{"rfc850", func(c *Config) { c.DateFormat = "rfc850"; page(c, Content{}) }, "GET / HTTP/1.0\r\n\r\n",
			"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nDate: Monday, 09-Mar-26 08:05:07 GMT\r\n\r\n"},
		{"upper-case ctime layout", func(c *Config) {
			c.DateFormat, c.DateUpper = "Mon Jan 02 15:04:05 2006", true
			page(c, Content{})
		}, "GET / HTTP/1.0\r\n\r\n",
			"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\nDate: MON MAR 09 08:05:07 2026\r\n\r\n"},
		{"GoAhead redirect", func(c *Config) {
			c.Server, c.Version, c.ConnectionHeader = "Schneider-WEB/V2.1.4", "1.1", ConnectionWhenNeeded
			c.DateFormat, c.DateUpper = "Mon Jan 02 15:04:05 2006", true
			c.HeaderOrder = []string{"Server", "Date", "Pragma", "Cache-Control", "Content-length", "Content-Type", "Location"}
			page(c, Content{Status: 302, Reason: "Redirect", Version: "1.0", ContentType: "text/html",
				Headers: []string{"Pragma: no-cache", "Cache-Control: no-cache"}, Location: "http://{{.Host}}/index.htm",
				ContentLengthAdjust: -2, BodyTemplate: "text", Body: "<a href=\"{{.Location}}\">x</a>\r\n\r\n"})
		}, "GET / HTTP/1.1\r\nHost: plc\r\n\r\n", "" +
			"HTTP/1.0 302 Redirect\r\nServer: Schneider-WEB/V2.1.4\r\nDate: MON MAR 09 08:05:07 2026\r\nPragma: no-cache\r\n" +
			"Cache-Control: no-cache\r\nContent-length: 38\r\nContent-Type: text/html\r\nLocation: http://plc/index.htm\r\n\r\n" +
			"<a href=\"http://plc/index.htm\">x</a>\r\n\r\n"},
		{"per-page order and version", func(c *Config) {
			c.Server, c.Version = "Srv", "1.1"
			c.HeaderOrder = []string{"Server", "Date"}
			page(c, Content{ContentType: "text/plain", Version: "1.0", HeaderOrder: []string{"Date", "Server", "Content-length", "Content-type"}, Body: "hi"})
		}, "GET / HTTP/1.0\r\n\r\n",
			"HTTP/1.0 200 OK\r\nDate: Mon, 09 Mar 2026 08:05:07 GMT\r\nServer: Srv\r\nContent-length: 2\r\nContent-type: text/plain\r\nConnection: close\r\n\r\nhi"},
		{"error pages take the global order", func(c *Config) {
			c.Server, c.Version = "Srv", "1.1"
			c.HeaderOrder = []string{"Server", "Date"}
			c.ErrorPages = map[int]Content{404: {ContentType: "text/html", Body: "gone"}}
		}, "GET /x HTTP/1.0\r\n\r\n",
			"HTTP/1.1 404 Not Found\r\nServer: Srv\r\nDate: Mon, 09 Mar 2026 08:05:07 GMT\r\nContent-Type: text/html\r\nContent-Length: 4\r\nConnection: close\r\n\r\ngone"},
		{"Jetty-like redirect to HTTP/1.0", func(c *Config) {
			c.Date, c.Version, c.ConnectionHeader = false, "1.1", ConnectionWhenNeeded
			c.HeaderOrder = []string{"Location", "Content-Length"}
			page(c, Content{Status: 302, Location: "http://{{.Host}}/ord"})
		}, "GET / HTTP/1.0\r\n\r\n",
			"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1/ord\r\nContent-Length: 0\r\n\r\n"},
		{"close announced to HTTP/1.1 when needed", func(c *Config) {
			c.Date, c.ConnectionHeader = false, ConnectionWhenNeeded
			page(c, Content{})
		}, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"keep-alive answered to HTTP/1.0 in HTTP/1.1", func(c *Config) {
			c.Date, c.Version, c.ConnectionHeader = false, "1.1", ConnectionWhenNeeded
			page(c, Content{})
		}, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
			"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"HTTP/1.0 answer to HTTP/1.1 closes", func(c *Config) {
			c.Date, c.ConnectionHeader = false, ConnectionWhenNeeded
			page(c, Content{Version: "1.0"})
		}, "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
			"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"GoAhead refuses methods it does not know", func(c *Config) {
			c.Date, c.Version, c.ConnectionHeader = false, "1.1", ConnectionWhenNeeded
			c.ServerMethods, c.UnknownMethodStatus = []string{"GET", "HEAD", "POST"}, 400
			c.ErrorPages = map[int]Content{400: {Reason: "Page not found", ContentType: "text/html", Body: "<p>{{.Reason}}: {{.Method}}</p>"}}
		}, "OPTIONS / HTTP/1.0\r\n\r\n",
			"HTTP/1.1 400 Page not found\r\nContent-Type: text/html\r\nContent-Length: 30\r\n\r\n<p>Page not found: OPTIONS</p>"},
		{"GoAhead closes after an error without saying so", func(c *Config) {
			c.Date, c.Version, c.ConnectionHeader = false, "1.1", ConnectionNever
			c.ErrorPages = map[int]Content{404: {Close: true}}
		}, "GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
			"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"},
		{"keep-alive still answered in never mode", func(c *Config) {
			c.Date, c.ConnectionHeader = false, ConnectionNever
			page(c, Content{})
		}, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"},
		{"HTTP/1.0 answer to an HTTP/1.1 keep-alive request", func(c *Config) {
			c.Date, c.ConnectionHeader = false, ConnectionNever
			page(c, Content{Version: "1.0"})
		}, "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
			"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"},
		{"adjusted length of HEAD", func(c *Config) {
			c.Date = false
			page(c, Content{ContentType: "text/html", ContentLengthAdjust: -2, Body: "abc\r\n"})
		}, "HEAD / HTTP/1.0\r\n\r\n",
			"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"},
		{"adjusted length never negative", func(c *Config) {
			c.Date = false
			page(c, Content{ContentLengthAdjust: -5, Body: "ab"})
		}, "GET / HTTP/1.0\r\n\r\n",
			"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\nab"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewConfig()
			if tc.mod != nil {
				tc.mod(cfg)
			}
			h, err := New(env, cfg)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			conn := &memConn{in: bytes.NewReader([]byte(tc.req))}
			sess := protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:80"), netip.MustParseAddrPort("127.0.0.1:40000"))
			if err := h.ServeStream(context.Background(), sess, conn); err != nil {
				t.Fatalf("ServeStream: %v", err)
			}
			got := conn.out.String()
			if tc.name == "default date is IMF-fixdate" {
				got = got[:strings.Index(got, "\r\n\r\n")+4] // the body is the default error page
			}
			if got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

// schneiderWEB is the http section of sensor/personas/schneider-m340.yaml as far as
// it shapes the answers to scanners: Schneider-WEB, GoAhead-Webs 2.1 with an upper-case
// ctime Date, Content-length counted without the appended CRLF, HTTP/1.0 redirects and
// file pages, HTTP/1.1 errors after which it closes without a Connection header, 400
// for methods other than GET, HEAD and POST.
func schneiderWEB(c *Config) {
	c.Server = "Schneider-WEB/V2.1.4"
	c.DateFormat, c.DateUpper = "Mon Jan 02 15:04:05 2006", true
	c.Version, c.ConnectionHeader = "1.1", ConnectionNever
	c.ServerMethods, c.UnknownMethodStatus = []string{"GET", "HEAD", "POST"}, 400
	c.HeaderOrder = []string{"Server", "Date", "WWW-Authenticate", "Pragma", "Cache-Control", "Content-length", "Content-Type", "Location"}
	nocache := []string{"Pragma: no-cache", "Cache-Control: no-cache"}
	c.Pages = []Page{
		{Path: "/", Content: Content{Status: 302, Reason: "Redirect", Version: "1.0", ContentType: "text/html", Headers: nocache, Close: true,
			Location:            `http://{{if .HostMissing}}{{repeat "\xee" 64}}P{{else}}{{.Host}}{{end}}/index.htm`,
			ContentLengthAdjust: -2, BodyTemplate: "text",
			Body: "<html><head></head><body>\r\n\t\tThis document has moved to a new <a href=\"{{.Location}}\">location</a>.\r\n" +
				"\t\tPlease update your documents to reflect the new location.\r\n\t\t</body></html>\r\n\r\n"}},
		{Path: "/index.htm", Content: Content{Version: "1.0", HeaderOrder: []string{"Date", "Server", "Content-length", "Content-type", "Connection"},
			ContentType: "text/html", Body: "<html><head><title>{{.Identity.Product}} - {{.Identity.Model}}</title></head><body></body></html>\n"}},
	}
	page := func(reason, msg string) Content {
		return Content{Reason: reason, ContentType: "text/html", Headers: nocache, ContentLengthAdjust: -2, Close: true,
			Body: "<html><head><title>Document Error: {{.Reason}}</title></head>\r\n\t\t<body><h2>Access Error: {{.Reason}}</h2>\r\n" +
				"\t\t<p>" + msg + "</p></body></html>\r\n\r\n"}
	}
	c.ErrorPage = page("", "Bad request type")
	c.ErrorPages = map[int]Content{400: page("Page not found", "Bad request type"), 404: page("Site or Page Not Found", "Cannot open URL"),
		405: page("Access Denied", "Bad request type")}
}

// niagara4 is the http section of sensor/personas/tridium-jace-8000.yaml as far as it
// shapes the answers to scanners: a Niagara 4 station, HTTP/1.1 always, absolute
// redirects with Location first, no Date, Server or Connection: close.
func niagara4(c *Config) {
	c.Date, c.Server, c.Version, c.ConnectionHeader = false, "", "1.1", ConnectionWhenNeeded
	redirect := []string{"Location", "Content-Length"}
	c.Pages = []Page{
		{Path: "/", Content: Content{Status: 302, HeaderOrder: redirect, Location: "http://{{.Host}}/ord"}},
		{Path: "/ord", Content: Content{Status: 302, HeaderOrder: redirect, Location: "http://{{.Host}}/prelogin"}},
		{Path: "/prelogin", Methods: []string{"GET", "POST"}, Content: Content{ContentType: "text/html; charset=UTF-8",
			Body: "<!DOCTYPE html>\n<html><head><title>{{.Identity.ModuleName}}</title></head><body></body></html>\n"}},
	}
	c.ErrorPages = map[int]Content{404: {ContentType: "text/html; charset=UTF-8", Body: "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"}}
}

// nmapMatch is a match line of nmap-service-probes.
type nmapMatch struct {
	line    int
	re      *regexp.Regexp
	product string
	version string // the v/ field, $1 not expanded
}

// nmapMatches returns the "match http" lines of the given probe in nmap's
// nmap-service-probes whose product field is product, compiled as Go regexps over
// Latin-1 text (nmap matches bytes; \xNN stands for the byte).
func nmapMatches(t *testing.T, probe, product string) []nmapMatch {
	t.Helper()
	nmap := testenv.LookPath(t, "nmap")
	data, err := os.ReadFile(filepath.Join(filepath.Dir(nmap), "..", "share", "nmap", "nmap-service-probes"))
	if err != nil {
		data, err = os.ReadFile("/usr/share/nmap/nmap-service-probes")
	}
	if err != nil {
		t.Fatalf("nmap-service-probes: %v", err)
	}
	var out []nmapMatch
	in := false
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "Probe ") {
			in = strings.HasPrefix(l, "Probe TCP "+probe+" ")
		}
		rest, ok := strings.CutPrefix(l, "match http m")
		if !in || !ok || len(rest) < 2 {
			continue
		}
		delim := rest[:1]
		pattern, rest, ok := strings.Cut(rest[1:], delim)
		if !ok {
			continue
		}
		flags, fields, _ := strings.Cut(rest, " ")
		m := nmapMatch{line: i + 1}
		for _, f := range []struct {
			key string
			dst *string
		}{{" p/", &m.product}, {" v/", &m.version}} {
			if _, v, ok := strings.Cut(" "+fields, f.key); ok {
				*f.dst, _, _ = strings.Cut(v, "/")
			}
		}
		if m.product != product {
			continue
		}
		if flags != "" { // nmap's s and i mean the same in Go
			pattern = "(?" + flags + ")" + pattern
		}
		if m.re, err = regexp.Compile(pattern); err != nil {
			t.Fatalf("nmap-service-probes line %d: %v", i+1, err)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		t.Fatalf("nmap-service-probes has no %s match for %q", probe, product)
	}
	return out
}

func latin1(b string) string {
	r := make([]rune, len(b))
	for i := 0; i < len(b); i++ {
		r[i] = rune(b[i])
	}
	return string(r)
}

// TestNmapFingerprints sends nmap's GetRequest and HTTPOptions probes to the
// Schneider-WEB and Niagara 4 sites of the personas and matches the answers against
// the fingerprints nmap-service-probes has for those servers (HTTPOptions falls back
// to GetRequest's matches): byte for byte as the real devices answered.
func TestNmapFingerprints(t *testing.T) {
	const getRequest, httpOptions = "GET / HTTP/1.0\r\n\r\n", "OPTIONS / HTTP/1.0\r\n\r\n"
	for _, tc := range []struct {
		name, product, version string
		mod                    func(*Config)
		probes                 []string // each must be matched by one of the product's lines
	}{
		{"Schneider-WEB", "Schneider-WEB", "2.1.4", schneiderWEB, []string{getRequest, httpOptions}},
		{"Niagara 4", "Tridium Niagara", "4", niagara4, []string{getRequest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			matches := nmapMatches(t, "GetRequest", tc.product)
			srv := server(t, tc.mod, nil)
			for _, probe := range tc.probes {
				raw := exchangeRaw(t, srv, probe)
				matched := false
				for _, m := range matches {
					sub := m.re.FindStringSubmatch(latin1(raw))
					if sub == nil {
						continue
					}
					matched = true
					v := m.version
					if len(sub) > 1 {
						v = strings.ReplaceAll(v, "$1", sub[1])
					}
					if v != tc.version {
						t.Errorf("%q: line %d gives version %q, want %q", probe, m.line, v, tc.version)
					}
				}
				if !matched {
					t.Errorf("%q: no %s fingerprint matches the answer:\n%q", probe, tc.product, raw)
				}
			}
		})
	}
}

// sizedConn records the size of every read buffer the handler offers.
type sizedConn struct {
	memConn
	reads []int
}

func (c *sizedConn) Read(p []byte) (int, error) {
	c.reads = append(c.reads, len(p))
	return c.memConn.Read(p)
}

// TestIdleConnectionHoldsNoBuffer checks that a keep-alive connection with nothing
// unconsumed waits with its small peek buffer, not a read buffer of its own, and that
// requests longer than the peek buffer are still answered whole, one after the other.
func TestIdleConnectionHoldsNoBuffer(t *testing.T) {
	env := protocoltest.Env(t, testIdentity())
	h, err := New(env, NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	req := "GET /does-not-exist HTTP/1.1\r\nHost: plc\r\nUser-Agent: " + strings.Repeat("x", 200) + "\r\n\r\n"
	conn := &sizedConn{memConn: memConn{in: bytes.NewReader([]byte(req + req))}}
	sess := protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:80"), netip.MustParseAddrPort("127.0.0.1:40000"))
	if err := h.ServeStream(context.Background(), sess, conn); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(conn.out.String(), "HTTP/1.1 404 "); n != 2 {
		t.Fatalf("%d answers, want 2:\n%s", n, conn.out.String())
	}
	// The first read of each request (idle: nothing unconsumed) and the last one
	// (at EOF, after the second request) use the 64-byte peek buffer.
	if len(conn.reads) == 0 || conn.reads[0] != 64 || conn.reads[len(conn.reads)-1] != 64 {
		t.Fatalf("read sizes %v: idle reads should offer the 64-byte peek buffer", conn.reads)
	}
}
