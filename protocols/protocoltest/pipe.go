package protocoltest

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// End is how Drive ends the session once its input is written.
type End int

const (
	// Cancel cancels the session's context, as the sensor does when it stops.
	Cancel End = iota
	// Hangup closes the peer's end of the connection.
	Hangup
)

// Pipe is a session of a handler served over net.Pipe; Conn is the peer's end.
type Pipe struct {
	net.Conn
	Session *Session
	done    chan error
}

// ServePipe serves h in sess on one end of a net.Pipe until ServeStream returns, then
// closes that end, and returns the other end, which is closed when the test ends.
func ServePipe(t testing.TB, ctx context.Context, h protocols.StreamHandler, sess *Session) *Pipe {
	p := servePipe(ctx, h, sess)
	t.Cleanup(func() { p.Close() })
	return p
}

func servePipe(ctx context.Context, h protocols.StreamHandler, sess *Session) *Pipe {
	server, peer := net.Pipe()
	p := &Pipe{Conn: peer, Session: sess, done: make(chan error, 1)}
	go func() {
		defer server.Close()
		p.done <- h.ServeStream(ctx, sess, server)
	}()
	return p
}

// Wait returns what ServeStream returned; the test fails when it is still running
// after within.
func (p *Pipe) Wait(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		return err
	case <-time.After(within):
		t.Fatalf("ServeStream still running after %v", within)
		return nil
	}
}

// pipeSession serves h on one end of a net.Pipe, in a session from 127.0.0.1:40000 to
// 127.0.0.1 (no listener, so port 0), and returns the other end. done receives what
// ServeStream returned, after which the handler's end is closed.
func pipeSession(t testing.TB, h protocols.StreamHandler) (peer net.Conn, sess *Session, cancel context.CancelFunc, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := servePipe(ctx, h, NewSession(t, netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.1:40000")))
	return p.Conn, p.Session, cancel, p.done
}

// Drive serves one session of h over net.Pipe, as a fuzz harness: it writes input (a
// write that h does not take within timeout, or that fails because h closed, is given
// up), ends the session as end says and returns everything h wrote until it returned,
// the events it emitted and ServeStream's result. The test fails when ServeStream does
// not return within timeout after the end.
func Drive(t testing.TB, h protocols.StreamHandler, input []byte, end End, timeout time.Duration) ([]byte, []protocols.Event, error) {
	t.Helper()
	peer, sess, cancel, done := pipeSession(t, h)
	defer cancel()
	defer peer.Close()
	var out bytes.Buffer
	read := make(chan struct{})
	go func() {
		io.Copy(&out, peer)
		close(read)
	}()
	peer.SetWriteDeadline(time.Now().Add(timeout))
	peer.Write(input)
	switch end {
	case Cancel:
		cancel()
	case Hangup:
		peer.Close()
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		t.Fatalf("ServeStream did not return within %v of the end of its input", timeout)
	}
	peer.Close()
	<-read
	return out.Bytes(), sess.Events(), err
}

// CancelEnds checks that cancelling the context ends a session of h that waits for
// input: ServeStream must return nil within 2 s.
func CancelEnds(t testing.TB, h protocols.StreamHandler) {
	t.Helper()
	peer, _, cancel, done := pipeSession(t, h)
	defer cancel()
	defer peer.Close()
	time.Sleep(50 * time.Millisecond) // until h waits in a read
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeStream after cancel: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ServeStream did not return after cancel")
	}
}
