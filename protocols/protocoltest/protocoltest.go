// Package protocoltest runs protocol handlers on loopback for tests: a recording
// Session, and TCP/UDP servers that serve one handler the way the sensor does (a
// session per connection or per UDP flow, deadlines, close after return).
package protocoltest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Session records events; it implements protocols.Session.
type Session struct {
	id            string
	local, remote netip.AddrPort
	log           *slog.Logger

	mu     sync.Mutex
	events []protocols.Event
	files  []protocols.File
	linked []*Session
}

var (
	_ protocols.Session    = (*Session)(nil)
	_ protocols.FlowLinker = (*Session)(nil)
)

// NewSession returns a recording session with the given addresses.
func NewSession(t testing.TB, local, remote netip.AddrPort) *Session {
	return &Session{
		id:     fmt.Sprintf("test-%s-%s", local, remote),
		local:  local,
		remote: remote,
		log:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (s *Session) ID() string             { return s.id }
func (s *Session) Local() netip.AddrPort  { return s.local }
func (s *Session) Remote() netip.AddrPort { return s.remote }
func (s *Session) Logger() *slog.Logger   { return s.log }

// Emit records e.
func (s *Session) Emit(e protocols.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

// KeepFile records f.
func (s *Session) KeepFile(f protocols.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.Data = append([]byte(nil), f.Data...)
	s.files = append(s.files, f)
}

// Files returns the files kept so far.
func (s *Session) Files() []protocols.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]protocols.File(nil), s.files...)
}

// LinkFlow records a linked connection as a new recording session (see Linked).
func (s *Session) LinkFlow(name, service string, local, remote netip.AddrPort) (protocols.Session, func(), error) {
	child := &Session{id: fmt.Sprintf("test-%s-%s-%s", name, local, remote), local: local, remote: remote, log: s.log}
	s.mu.Lock()
	s.linked = append(s.linked, child)
	s.mu.Unlock()
	return child, func() {}, nil
}

// Linked returns the sessions of connections the handler linked.
func (s *Session) Linked() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Session(nil), s.linked...)
}

// Events returns a copy of the events recorded so far.
func (s *Session) Events() []protocols.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]protocols.Event(nil), s.events...)
}

// EventsOf returns the events recorded so far whose Op is op.
func (s *Session) EventsOf(op string) []protocols.Event {
	var out []protocols.Event
	for _, e := range s.Events() {
		if e.Op == op {
			out = append(out, e)
		}
	}
	return out
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// Env returns a handler Env for tests with a fixed identity and boot time.
func Env(t testing.TB, id *protocols.Identity) protocols.Env {
	return protocols.Env{
		Identity: id,
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Boot:     time.Now().Add(-time.Hour),
		Now:      time.Now,
	}
}

// Server is a loopback server for one handler. Sessions lists the sessions it served.
type Server struct {
	Addr netip.AddrPort

	mu       sync.Mutex
	sessions []*Session
	errs     []error
}

// Sessions returns the sessions served so far.
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Session(nil), s.sessions...)
}

// Events returns the events of every session served so far, session after session.
func (s *Server) Events() []protocols.Event {
	var evs []protocols.Event
	for _, sess := range s.Sessions() {
		evs = append(evs, sess.Events()...)
	}
	return evs
}

// Files returns the files every session served so far kept, session after session.
func (s *Server) Files() []protocols.File {
	var files []protocols.File
	for _, sess := range s.Sessions() {
		files = append(files, sess.Files()...)
	}
	return files
}

// WaitEvents polls Events every 10 ms until ok holds for them or timeout has passed
// (handlers often emit after the client has its answer). It returns the last events
// and whether ok held.
func (s *Server) WaitEvents(timeout time.Duration, ok func([]protocols.Event) bool) ([]protocols.Event, bool) {
	deadline := time.Now().Add(timeout)
	for {
		evs := s.Events()
		if ok(evs) {
			return evs, true
		}
		if time.Now().After(deadline) {
			return evs, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitEvent waits up to 2 s for an event with op for which match (nil: any) holds and
// returns the first; the test fails when none comes.
func (s *Server) WaitEvent(t testing.TB, op string, match func(protocols.Event) bool) protocols.Event {
	t.Helper()
	var found protocols.Event
	evs, ok := s.WaitEvents(2*time.Second, func(evs []protocols.Event) bool {
		var ok bool
		found, ok = firstOp(evs, op, match)
		return ok
	})
	if !ok {
		t.Fatalf("no %s event in %+v", op, evs)
	}
	return found
}

// HasOp returns a condition for WaitEvents: an event with op for which match (nil:
// any) holds.
func HasOp(op string, match func(protocols.Event) bool) func([]protocols.Event) bool {
	return func(evs []protocols.Event) bool {
		_, ok := firstOp(evs, op, match)
		return ok
	}
}

func firstOp(evs []protocols.Event, op string, match func(protocols.Event) bool) (protocols.Event, bool) {
	for _, e := range evs {
		if e.Op == op && (match == nil || match(e)) {
			return e, true
		}
	}
	return protocols.Event{}, false
}

// Dial connects to a TCP server and closes the connection when the test ends.
func (s *Server) Dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Errors returns the errors handlers returned so far.
func (s *Server) Errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

func (s *Server) add(sess *Session) {
	s.mu.Lock()
	s.sessions = append(s.sessions, sess)
	s.mu.Unlock()
}

func (s *Server) fail(err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

// ServeTCP serves h on addr ("127.0.0.1:0" when empty) until the test ends.
func ServeTCP(t testing.TB, addr string, h protocols.StreamHandler) *Server {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Addr: netip.MustParseAddrPort(ln.Addr().String())}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sess := NewSession(t, netip.MustParseAddrPort(c.LocalAddr().String()), netip.MustParseAddrPort(c.RemoteAddr().String()))
			srv.add(sess)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				srv.fail(h.ServeStream(ctx, sess, c))
			}()
		}
	}()
	return srv
}

// ServeUDP serves h on addr ("127.0.0.1:0" when empty) until the test ends; datagrams
// from one remote address share a session.
func ServeUDP(t testing.TB, addr string, h protocols.DatagramHandler) *Server {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Addr: netip.MustParseAddrPort(pc.LocalAddr().String())}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		flows := map[netip.AddrPort]*Session{}
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			remote := netip.MustParseAddrPort(from.String())
			sess, ok := flows[remote]
			if !ok {
				sess = NewSession(t, srv.Addr, remote)
				flows[remote] = sess
				srv.add(sess)
			}
			reply := func(b []byte) error {
				_, err := pc.WriteTo(b, from)
				return err
			}
			srv.fail(h.ServeDatagram(ctx, sess, buf[:n], reply))
		}
	}()
	return srv
}
