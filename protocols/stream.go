package protocols

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
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
//
// A reader made by NewPooledStreamReader holds its buffer only while Buf is not empty:
// when the handler has consumed everything, Read hands the buffer back to the pool and
// waits for the next bytes with a small buffer of its own. Idle sessions are the common
// case on a honeypot, and an attacker can hold many thousands of them open.
type StreamReader struct {
	// Buf is the received bytes the handler has not consumed. It is only valid until
	// the next Read or Release.
	Buf []byte

	pool     *BufferPool // nil: backing is the reader's own
	lent     *[]byte     // the pool's buffer, while held
	backing  []byte      // nil while idle with a pool
	idle     time.Duration
	maxBytes int
	received int
	consumed bool
	lastRead time.Time // of the last read that returned data
	partial  time.Time // when the first byte of the incomplete message arrived
	peek     [peekLen]byte
}

// peekLen is what an idle pooled reader reads at first: most requests of the ICS
// protocols fit (a Modbus read is 12 bytes, an EtherNet/IP RegisterSession 28); a
// longer one takes a further read, which finds its bytes already there.
const peekLen = 64

// NewStreamReader returns a reader with a buffer of size bytes (at least the largest
// message) for a session that may send at most maxBytes bytes.
func NewStreamReader(size, maxBytes int, idle time.Duration) *StreamReader {
	b := make([]byte, size)
	return &StreamReader{Buf: b[:0], backing: b, idle: idle, maxBytes: maxBytes}
}

// NewPooledStreamReader returns a reader that borrows its buffer (the pool's size, at
// least the largest message) from pool while it has bytes to work on. Release
// returns it when the session ends.
func NewPooledStreamReader(pool *BufferPool, maxBytes int, idle time.Duration) *StreamReader {
	return &StreamReader{pool: pool, idle: idle, maxBytes: maxBytes}
}

// Release hands a pooled reader's buffer back; Buf is empty afterwards. It is for the
// end of a session (Read releases the buffer of an idle session itself).
func (r *StreamReader) Release() {
	r.Buf = nil
	if r.lent != nil {
		r.pool.Put(r.lent)
		r.lent, r.backing = nil, nil
	}
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
	if r.pool != nil && len(r.Buf) == 0 {
		r.Release() // idle: the buffer goes back to the pool while the reader waits
	} else {
		r.Buf = r.backing[:copy(r.backing, r.Buf)]
	}
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
	var (
		n   int
		err error
	)
	if r.backing == nil {
		n, err = conn.Read(r.peek[:min(peekLen, r.maxBytes-r.received)])
		if n > 0 {
			r.lent = r.pool.Get()
			r.backing = *r.lent
			r.Buf = r.backing[:copy(r.backing, r.peek[:n])]
		}
	} else {
		room := min(cap(r.Buf)-len(r.Buf), r.maxBytes-r.received)
		n, err = conn.Read(r.Buf[len(r.Buf) : len(r.Buf)+room])
		r.Buf = r.Buf[:len(r.Buf)+n]
	}
	if n > 0 {
		r.lastRead = time.Now()
		if len(r.Buf) == n {
			r.partial = r.lastRead
		}
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

// BufferPool lends buffers of one size to the sessions of a handler. It is safe for
// concurrent use.
type BufferPool struct {
	size int
	p    sync.Pool
}

// NewBufferPool returns a pool of size-byte buffers.
func NewBufferPool(size int) *BufferPool { return &BufferPool{size: size} }

// Get returns a buffer of the pool's size (its contents are not cleared). The pointer is what
// Put takes back, so that lending allocates nothing.
func (p *BufferPool) Get() *[]byte {
	if b, ok := p.p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, p.size)
	return &b
}

// Put returns b, from Get, to the pool; b must not be used afterwards.
func (p *BufferPool) Put(b *[]byte) {
	*b = (*b)[:p.size]
	p.p.Put(b)
}
