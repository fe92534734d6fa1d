package protocols

import (
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
	peer, conn := net.Pipe()
	defer peer.Close()
	defer conn.Close()
	r := NewStreamReader(8, 12, time.Second)
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
	r = NewStreamReader(8, 100, 100*time.Millisecond)
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
