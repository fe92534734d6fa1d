package protocols

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrByteLimit is returned (wrapped) by StreamReader.Read once a session has sent its
// byte limit.
var ErrByteLimit = errors.New("session byte limit reached")

// StreamReader is the receive side of a handler that answers the messages of a TCP
// stream in order, several in one segment or one split over many: Buf holds what was
// received and not consumed yet. A read waits at most the idle timeout, counted from the
// first byte of the incomplete message at the front of Buf, or from the read when Buf
// is empty: a message dripped byte by byte cannot hold the session, and a client that
// keeps pipelining complete messages is never cut off.
type StreamReader struct {
	// Buf is the received bytes the handler has not consumed.
	Buf []byte

	backing  []byte
	idle     time.Duration
	maxBytes int
	received int
	consumed bool
	lastRead time.Time // of the last read that returned data
	partial  time.Time // when the first byte of the incomplete message arrived
}

// NewStreamReader returns a reader with a buffer of size bytes (at least the largest
// message) for a session that may send at most maxBytes bytes.
func NewStreamReader(size, maxBytes int, idle time.Duration) *StreamReader {
	b := make([]byte, size)
	return &StreamReader{Buf: b[:0], backing: b, idle: idle, maxBytes: maxBytes}
}

// Consume drops the first n bytes of Buf: a message the handler has taken.
func (r *StreamReader) Consume(n int) {
	r.Buf = r.Buf[n:]
	r.consumed = true
}

// Received is the number of bytes read so far.
func (r *StreamReader) Received() int { return r.received }

// Read moves what is left of Buf to the front of the buffer and appends one read of
// conn. It reports false with a nil error when the session is over without fault: the
// peer closed, reset or stalled (PeerGone), a read returned nothing, or ctx is done (the
// handler's context.AfterFunc is expected to expire conn's read deadline then). Other
// errors come wrapped ("read: ...", "set read deadline: ..."), and ErrByteLimit once
// maxBytes have been received.
func (r *StreamReader) Read(ctx context.Context, conn net.Conn) (bool, error) {
	r.Buf = r.backing[:copy(r.backing, r.Buf)]
	if r.consumed {
		r.partial = r.lastRead // what is left began in the last read
		r.consumed = false
	}
	if r.received >= r.maxBytes {
		return false, fmt.Errorf("%w: %d bytes", ErrByteLimit, r.received)
	}
	deadline := time.Now().Add(r.idle)
	if len(r.Buf) > 0 {
		deadline = r.partial.Add(r.idle)
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		if PeerGone(err) {
			return false, nil // net.Pipe refuses deadlines once the peer closed
		}
		return false, fmt.Errorf("set read deadline: %w", err)
	}
	if ctx.Err() != nil {
		return false, nil
	}
	room := min(cap(r.Buf)-len(r.Buf), r.maxBytes-r.received)
	n, err := conn.Read(r.Buf[len(r.Buf) : len(r.Buf)+room])
	if n > 0 {
		r.lastRead = time.Now()
		if len(r.Buf) == 0 {
			r.partial = r.lastRead
		}
		r.Buf = r.Buf[:len(r.Buf)+n]
		r.received += n
		return true, nil // a read that returns data and an error returns the error again
	}
	if err == nil || PeerGone(err) {
		// A zero-byte read without an error is treated as a closed peer rather than
		// read again.
		return false, nil
	}
	return false, fmt.Errorf("read: %w", err)
}
