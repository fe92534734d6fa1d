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

// pipeSession serves h on one end of a net.Pipe, in a session from 127.0.0.1:40000 to
// 127.0.0.1 (no listener, so port 0), and returns the other end. done receives what
// ServeStream returned, after which the handler's end is closed.
func pipeSession(t testing.TB, h protocols.StreamHandler) (peer net.Conn, sess *Session, cancel context.CancelFunc, done <-chan error) {
	server, peer := net.Pipe()
	sess = NewSession(t, netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("127.0.0.1:40000"))
	ctx, cancel := context.WithCancel(context.Background())
	d := make(chan error, 1)
	go func() {
		d <- h.ServeStream(ctx, sess, server)
		server.Close()
	}()
	return peer, sess, cancel, d
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
