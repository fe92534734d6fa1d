package protocols

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPeerGone(t *testing.T) {
	for _, err := range []error{
		io.EOF, io.ErrUnexpectedEOF, io.ErrClosedPipe, net.ErrClosed, os.ErrDeadlineExceeded,
		syscall.ECONNRESET, syscall.EPIPE, fmt.Errorf("x: read: %w", io.EOF),
		&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
	} {
		if !PeerGone(err) {
			t.Errorf("PeerGone(%v) = false", err)
		}
	}
	for _, err := range []error{nil, errors.New("boom"), ErrConfig, syscall.EACCES} {
		if PeerGone(err) {
			t.Errorf("PeerGone(%v) = true", err)
		}
	}
}

func TestEnvWithDefaults(t *testing.T) {
	e := Env{}.WithDefaults()
	if e.Now == nil || e.Logger == nil || e.Identity != nil {
		t.Fatalf("defaults %+v", e)
	}
	if d := time.Since(e.Boot); d < 0 || d > time.Minute {
		t.Fatalf("Boot %v", e.Boot)
	}
	fixed := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	log := slog.New(slog.DiscardHandler)
	id := &Identity{Vendor: "v"}
	e = Env{Identity: id, Logger: log, Now: func() time.Time { return fixed }}.WithDefaults()
	if !e.Boot.Equal(fixed) || e.Logger != log || e.Identity != id || !e.Now().Equal(fixed) {
		t.Fatalf("kept fields changed: %+v", e)
	}
	boot := fixed.Add(-time.Hour)
	if e := (Env{Boot: boot}).WithDefaults(); !e.Boot.Equal(boot) {
		t.Fatalf("Boot %v, want %v", e.Boot, boot)
	}
}

type testConfig struct{ N int }
type testHandler struct{ n int }

func TestNewFunc(t *testing.T) {
	newHandler := func(_ Env, c *testConfig) (*testHandler, error) {
		if c.N < 0 {
			return nil, fmt.Errorf("%w: negative", ErrConfig)
		}
		return &testHandler{c.N}, nil
	}
	f := NewFunc("test", newHandler)
	h, err := f(Env{}, &testConfig{N: 3})
	if th, ok := h.(*testHandler); err != nil || !ok || th.n != 3 {
		t.Fatalf("New = %v, %v", h, err)
	}
	h, err = f(Env{}, &testConfig{N: -1})
	if h != nil || !errors.Is(err, ErrConfig) {
		t.Fatalf("failed New = %#v, %v; want a nil handler", h, err)
	}
	h, err = f(Env{}, struct{}{})
	if h != nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "test: config is struct {}, want *protocols.testConfig") {
		t.Fatalf("wrong config type: %v, %v", h, err)
	}
}

func TestStreamReader(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func(size, maxBytes int, idle time.Duration) *StreamReader
	}{
		{"own buffer", NewStreamReader},
		{"pooled", func(size, maxBytes int, idle time.Duration) *StreamReader {
			return NewPooledStreamReader(NewBufferPool(size), maxBytes, idle)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testStreamReader(t, tc.new) })
	}
}

func testStreamReader(t *testing.T, newReader func(size, maxBytes int, idle time.Duration) *StreamReader) {
	peer, conn := net.Pipe()
	defer peer.Close()
	defer conn.Close()
	r := newReader(8, 12, time.Second)
	ctx := context.Background()
	send := func(s string) {
		go peer.Write([]byte(s))
	}
	send("abcdef")
	if more, err := r.Read(ctx, conn); !more || err != nil || string(r.Buf) != "abcdef" {
		t.Fatalf("first read: %v %v %q", more, err, r.Buf)
	}
	r.Consume(4) // "ef" is the start of the next message
	send("ghijkl")
	if more, err := r.Read(ctx, conn); !more || err != nil || string(r.Buf) != "efghijkl" {
		t.Fatalf("second read: %v %v %q", more, err, r.Buf)
	}
	if r.Received() != 12 {
		t.Fatalf("received %d", r.Received())
	}
	r.Consume(8)
	if more, err := r.Read(ctx, conn); more || !errors.Is(err, ErrByteLimit) {
		t.Fatalf("over the limit: %v %v", more, err)
	}

	// A message that never completes ends at the idle timeout from its first byte.
	r = newReader(8, 100, 100*time.Millisecond)
	send("ab")
	if more, err := r.Read(ctx, conn); !more || err != nil {
		t.Fatalf("partial: %v %v", more, err)
	}
	start := time.Now()
	if more, err := r.Read(ctx, conn); more || err != nil {
		t.Fatalf("stalled: %v %v", more, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("stalled read took %v", d)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if more, err := r.Read(cancelled, conn); more || err != nil {
		t.Fatalf("cancelled: %v %v", more, err)
	}
	peer.Close()
	if more, err := r.Read(ctx, conn); more || err != nil {
		t.Fatalf("peer closed: %v %v", more, err)
	}
	conn.Close()
	if more, err := r.Read(ctx, conn); more || err != nil {
		t.Fatalf("closed: %v %v", more, err)
	}
}

// TestPooledStreamReaderIdle checks that a pooled reader holds no buffer while it waits
// with nothing unconsumed, keeps it while a message is incomplete, and reads a message
// longer than its peek buffer whole.
func TestPooledStreamReaderIdle(t *testing.T) {
	peer, conn := net.Pipe()
	defer peer.Close()
	defer conn.Close()
	pool := NewBufferPool(256)
	r := NewPooledStreamReader(pool, 1<<20, time.Second)
	ctx := context.Background()
	msg := bytes.Repeat([]byte("0123456789"), 20) // 200 bytes: more than peekLen
	go peer.Write(msg)
	var got []byte
	for len(got) < len(msg) {
		if more, err := r.Read(ctx, conn); !more || err != nil {
			t.Fatalf("read: %v %v", more, err)
		}
		if r.lent == nil {
			t.Fatalf("holds no buffer with %d bytes unconsumed", len(r.Buf))
		}
		got = append(got[:0], r.Buf...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read %q", got)
	}
	r.Consume(len(r.Buf))

	// The next Read blocks with nothing unconsumed: it must wait without the buffer.
	watched := &heldConn{Conn: conn, r: r}
	go peer.Write([]byte("next"))
	if more, err := r.Read(ctx, watched); !more || err != nil || string(r.Buf) != "next" {
		t.Fatalf("read after idle: %v %v %q", more, err, r.Buf)
	}
	if len(watched.held) != 1 || watched.held[0] {
		t.Fatalf("buffer held during the idle read: %v", watched.held)
	}
	r.Release()
	if r.lent != nil || r.Buf != nil {
		t.Fatal("Release kept the buffer")
	}
}

// heldConn records, at each Read, whether its reader held a pool buffer.
type heldConn struct {
	net.Conn
	r    *StreamReader
	held []bool
}

func (c *heldConn) Read(b []byte) (int, error) {
	c.held = append(c.held, c.r.lent != nil)
	return c.Conn.Read(b)
}
