// Command modbusload is the Modbus/TCP load client of pcapot's benchmarks
// (scripts/bench). Every transaction is FC 3, read holding registers (by default 10
// registers from address 0, unit 1); a response is checked (transaction id, unit,
// function code, byte count) and its round trip is timed from the write of the
// request to the last byte of the response. It prints one JSON object on stdout.
//
// Modes:
//
//	closed  -conns N -tx M: N connections at once, each sends M transactions one after
//	        the other, then closes. Reports transactions/s and latency percentiles.
//	pool    -sessions K -inflight C -tx M: K short sessions (connect, M transactions,
//	        close), C at a time, each worker starting its next session at once.
//	rate    -rate R -duration D -tx M -inflight C: starts R short sessions per second
//	        (connect, M transactions, close) for D, at most C in flight; a session
//	        that would exceed C is skipped and counted. Reports the achieved rate.
//	hold    -conns N -inflight C: opens N connections (at most C being opened at
//	        once), sends one transaction on each and keeps them all open; prints
//	        "HELD n" on stderr when all are held, then waits for -hold-time or for
//	        stdin to close, and closes them all. With -s7 the connections go to an
//	        S7comm server (ISO-on-TCP, port 102) and the one exchange on each is the
//	        S7 handshake instead: COTP connection request, then Setup Communication.
//
// -src a,b,c binds the connections to these local addresses in turn (several source
// addresses give more ports than one, and spread a per-address session limit).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	addr     string
	mode     string
	conns    int
	sessions int
	tx       int
	rate     float64
	duration time.Duration
	inflight int
	holdTime time.Duration
	timeout  time.Duration
	unit     uint
	start    uint
	count    uint
	src      []net.IP
	label    string
	s7       bool
}

// result is the JSON line the scripts read.
type result struct {
	Label          string  `json:"label,omitempty"`
	Mode           string  `json:"mode"`
	Addr           string  `json:"addr"`
	Conns          int     `json:"conns,omitempty"`
	TxPerConn      int     `json:"tx_per_conn"`
	TargetRate     float64 `json:"target_rate,omitempty"`
	Sessions       int64   `json:"sessions"`
	SessionsFailed int64   `json:"sessions_failed"`
	Skipped        int64   `json:"skipped,omitempty"`
	Transactions   int64   `json:"transactions"`
	Errors         int64   `json:"errors"`
	FirstError     string  `json:"first_error,omitempty"`
	ElapsedS       float64 `json:"elapsed_s"`
	TPS            float64 `json:"tps"`
	SessionsPerS   float64 `json:"sessions_per_s"`
	LatP50us       float64 `json:"lat_p50_us"`
	LatP90us       float64 `json:"lat_p90_us"`
	LatP99us       float64 `json:"lat_p99_us"`
	LatMaxus       float64 `json:"lat_max_us"`
	ConnectP50us   float64 `json:"connect_p50_us,omitempty"`
	ConnectP99us   float64 `json:"connect_p99_us,omitempty"`
	Held           int     `json:"held,omitempty"`
}

func main() {
	var c config
	var src string
	flag.StringVar(&c.addr, "addr", "127.0.0.1:502", "Modbus/TCP server HOST:PORT")
	flag.StringVar(&c.mode, "mode", "closed", "closed, pool, rate or hold")
	flag.IntVar(&c.conns, "conns", 10, "connections (closed, hold)")
	flag.IntVar(&c.sessions, "sessions", 1000, "sessions (pool)")
	flag.IntVar(&c.tx, "tx", 100, "transactions per connection (closed, rate)")
	flag.Float64Var(&c.rate, "rate", 100, "sessions started per second (rate)")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "how long sessions are started (rate)")
	flag.IntVar(&c.inflight, "inflight", 64, "at most this many sessions in flight (pool, rate) or being opened (hold)")
	flag.DurationVar(&c.holdTime, "hold-time", 0, "hold: keep the connections this long (0: until stdin closes)")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout of one connect or transaction")
	flag.UintVar(&c.unit, "unit", 1, "unit identifier")
	flag.UintVar(&c.start, "start", 0, "first holding register")
	flag.UintVar(&c.count, "count", 10, "registers per read (1-125)")
	flag.StringVar(&src, "src", "", "comma-separated local source addresses, used in turn")
	flag.StringVar(&c.label, "label", "", "label copied into the JSON result")
	flag.BoolVar(&c.s7, "s7", false, "hold: S7comm connections (COTP connect + Setup Communication) instead of Modbus")
	flag.Parse()
	if c.count < 1 || c.count > 125 || c.unit > 255 || c.start > 65535 {
		fatalf("bad -count, -unit or -start")
	}
	for _, s := range strings.Split(src, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			fatalf("-src %q: not an IP address", s)
		}
		c.src = append(c.src, ip)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if c.s7 && c.mode != "hold" {
		fatalf("-s7 is for -mode hold")
	}
	var r *result
	switch c.mode {
	case "closed": // a pool with one worker per connection, one session each
		c.sessions, c.inflight = c.conns, c.conns
		r = runPool(ctx, &c)
	case "pool":
		r = runPool(ctx, &c)
	case "rate":
		r = runRate(ctx, &c)
	case "hold":
		r = runHold(ctx, &c)
	default:
		fatalf("unknown -mode %q", c.mode)
	}
	r.Label, r.Mode, r.Addr = c.label, c.mode, c.addr
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(r); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "modbusload: "+format+"\n", a...)
	os.Exit(1)
}

// stats collects outcomes from many goroutines.
type stats struct {
	mu        sync.Mutex
	lat       []time.Duration
	connect   []time.Duration
	tx        atomic.Int64
	errs      atomic.Int64
	sessions  atomic.Int64
	failed    atomic.Int64
	skipped   atomic.Int64
	firstErr  atomic.Value
	srcSerial atomic.Uint64
}

func (s *stats) fail(err error) {
	s.errs.Add(1)
	s.firstErr.CompareAndSwap(nil, err.Error())
}

func (s *stats) add(lat []time.Duration, connect time.Duration) {
	s.mu.Lock()
	s.lat = append(s.lat, lat...)
	if connect > 0 {
		s.connect = append(s.connect, connect)
	}
	s.mu.Unlock()
}

func (s *stats) result(elapsed time.Duration) *result {
	r := &result{
		Sessions: s.sessions.Load(), SessionsFailed: s.failed.Load(), Skipped: s.skipped.Load(),
		Transactions: s.tx.Load(), Errors: s.errs.Load(), ElapsedS: elapsed.Seconds(),
	}
	if v := s.firstErr.Load(); v != nil {
		r.FirstError = v.(string)
	}
	if elapsed > 0 {
		r.TPS = float64(r.Transactions) / elapsed.Seconds()
		r.SessionsPerS = float64(r.Sessions) / elapsed.Seconds()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r.LatP50us, r.LatP90us, r.LatP99us, r.LatMaxus = pct(s.lat, 50), pct(s.lat, 90), pct(s.lat, 99), pct(s.lat, 100)
	r.ConnectP50us, r.ConnectP99us = pct(s.connect, 50), pct(s.connect, 99)
	return r
}

// pct is the nearest-rank percentile in microseconds (it sorts d).
func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(float64(len(d))*p/100+0.999999) - 1
	i = max(0, min(i, len(d)-1))
	return float64(d[i].Nanoseconds()) / 1e3
}

// client is one Modbus/TCP connection.
type client struct {
	c    *config
	conn net.Conn
	tid  uint16
	req  [12]byte
	resp []byte
}

func (s *stats) dial(ctx context.Context, c *config) (*client, time.Duration, error) {
	d := net.Dialer{Timeout: c.timeout}
	if len(c.src) > 0 {
		ip := c.src[int(s.srcSerial.Add(1)-1)%len(c.src)]
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	t0 := time.Now()
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, 0, err
	}
	cl := &client{c: c, conn: conn, resp: make([]byte, 9+2*c.count)}
	binary.BigEndian.PutUint16(cl.req[2:], 0) // protocol id
	binary.BigEndian.PutUint16(cl.req[4:], 6) // length: unit + PDU
	cl.req[6] = byte(c.unit)
	cl.req[7] = 3
	binary.BigEndian.PutUint16(cl.req[8:], uint16(c.start))
	binary.BigEndian.PutUint16(cl.req[10:], uint16(c.count))
	return cl, time.Since(t0), nil
}

// transact sends one FC 3 request and reads and checks its response.
func (cl *client) transact() (time.Duration, error) {
	cl.tid++
	binary.BigEndian.PutUint16(cl.req[0:], cl.tid)
	if err := cl.conn.SetDeadline(time.Now().Add(cl.c.timeout)); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := cl.conn.Write(cl.req[:]); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(cl.conn, cl.resp[:8]); err != nil {
		return 0, err
	}
	tid, length := binary.BigEndian.Uint16(cl.resp[0:]), binary.BigEndian.Uint16(cl.resp[4:])
	if tid != cl.tid || cl.resp[6] != byte(cl.c.unit) {
		return 0, fmt.Errorf("response tid %d unit %d, want %d %d", tid, cl.resp[6], cl.tid, cl.c.unit)
	}
	if cl.resp[7] != 3 {
		rest := make([]byte, max(int(length)-2, 0))
		_, _ = io.ReadFull(cl.conn, rest)
		return 0, fmt.Errorf("function code 0x%02x in response (exception %v)", cl.resp[7], rest)
	}
	if int(length) != 3+2*int(cl.c.count) {
		return 0, fmt.Errorf("MBAP length %d, want %d", length, 3+2*cl.c.count)
	}
	if _, err := io.ReadFull(cl.conn, cl.resp[8:]); err != nil {
		return 0, err
	}
	if int(cl.resp[8]) != 2*int(cl.c.count) {
		return 0, fmt.Errorf("byte count %d, want %d", cl.resp[8], 2*cl.c.count)
	}
	return time.Since(t0), nil
}

// The S7 handshake of a client such as snap7: a COTP connection request (TPDU size
// 1024, source TSAP 0x0100, destination TSAP 0x0101: rack 0, slot 1, an S7-1200) and an S7 Setup
// Communication job (1 job each way, PDU 480).
var (
	s7ConnRequest = []byte{0x03, 0x00, 0x00, 0x16, 0x11, 0xe0, 0x00, 0x00, 0x00, 0x01, 0x00,
		0xc0, 0x01, 0x0a, 0xc1, 0x02, 0x01, 0x00, 0xc2, 0x02, 0x01, 0x01}
	s7Setup = []byte{0x03, 0x00, 0x00, 0x19, 0x02, 0xf0, 0x80,
		0x32, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00,
		0xf0, 0x00, 0x00, 0x01, 0x00, 0x01, 0x01, 0xe0}
)

// s7Handshake connects COTP and sets up S7 communication, checking that the answers
// are a connection confirm and an Ack-Data.
func (cl *client) s7Handshake() (time.Duration, error) {
	if err := cl.conn.SetDeadline(time.Now().Add(cl.c.timeout)); err != nil {
		return 0, err
	}
	t0 := time.Now()
	for i, req := range [][]byte{s7ConnRequest, s7Setup} {
		if _, err := cl.conn.Write(req); err != nil {
			return 0, err
		}
		var hdr [4]byte
		if _, err := io.ReadFull(cl.conn, hdr[:]); err != nil {
			return 0, err
		}
		n := int(binary.BigEndian.Uint16(hdr[2:]))
		if hdr[0] != 3 || n < 7 || n > 4096 {
			return 0, fmt.Errorf("s7: bad TPKT header % x", hdr)
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(cl.conn, body); err != nil {
			return 0, err
		}
		switch {
		case i == 0 && body[1]&0xf0 != 0xd0:
			return 0, fmt.Errorf("s7: COTP answer 0x%02x, want a connection confirm", body[1])
		case i == 1 && (len(body) < 5 || body[3] != 0x32 || body[4] != 0x03):
			return 0, fmt.Errorf("s7: setup answer % x, want Ack-Data", body[:min(len(body), 12)])
		}
	}
	return time.Since(t0), nil
}

// session runs connect, n transactions, close.
func (s *stats) session(ctx context.Context, c *config, n int) {
	cl, ct, err := s.dial(ctx, c)
	if err != nil {
		s.failed.Add(1)
		s.fail(err)
		return
	}
	defer cl.conn.Close()
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		d, err := cl.transact()
		if err != nil {
			s.failed.Add(1)
			s.fail(err)
			s.add(lat, ct)
			s.tx.Add(int64(len(lat)))
			return
		}
		lat = append(lat, d)
	}
	s.add(lat, ct)
	s.tx.Add(int64(len(lat)))
	s.sessions.Add(1)
}

func runPool(ctx context.Context, c *config) *result {
	var s stats
	var wg sync.WaitGroup
	var next atomic.Int64
	t0 := time.Now()
	for w := 0; w < c.inflight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(c.sessions) && ctx.Err() == nil {
				s.session(ctx, c, c.tx)
			}
		}()
	}
	wg.Wait()
	r := s.result(time.Since(t0))
	r.Conns, r.TxPerConn = c.inflight, c.tx
	return r
}

func runRate(ctx context.Context, c *config) *result {
	var s stats
	var wg sync.WaitGroup
	sem := make(chan struct{}, c.inflight)
	interval := time.Duration(float64(time.Second) / c.rate)
	t0 := time.Now()
	end := t0.Add(c.duration)
	// Open loop: session k is due at t0 + k*interval, whatever happened before.
	for k := 0; ; k++ {
		due := t0.Add(time.Duration(k) * interval)
		if !due.Before(end) || ctx.Err() != nil {
			break
		}
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		select {
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.session(ctx, c, c.tx)
			}()
		default:
			s.skipped.Add(1)
		}
	}
	started := time.Since(t0)
	wg.Wait()
	r := s.result(time.Since(t0))
	// The achieved rate is over the span in which sessions were started.
	r.SessionsPerS = float64(r.Sessions) / max(started.Seconds(), c.duration.Seconds())
	r.TargetRate, r.TxPerConn = c.rate, c.tx
	return r
}

func runHold(ctx context.Context, c *config) *result {
	var s stats
	var (
		mu   sync.Mutex
		held []*client
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, c.inflight)
	t0 := time.Now()
	for i := 0; i < c.conns && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cl, ct, err := s.dial(ctx, c)
			if err != nil {
				s.failed.Add(1)
				s.fail(err)
				return
			}
			transact := cl.transact
			if c.s7 {
				transact = cl.s7Handshake
			}
			d, err := transact()
			if err != nil {
				cl.conn.Close()
				s.failed.Add(1)
				s.fail(err)
				return
			}
			_ = cl.conn.SetDeadline(time.Time{})
			s.add([]time.Duration{d}, ct)
			s.tx.Add(1)
			mu.Lock()
			held = append(held, cl)
			mu.Unlock()
		}()
	}
	wg.Wait()
	opened := time.Since(t0)
	fmt.Fprintf(os.Stderr, "HELD %d\n", len(held))
	if c.holdTime > 0 {
		select {
		case <-time.After(c.holdTime):
		case <-ctx.Done():
		}
	} else {
		done := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	// Are they all still open? A non-blocking peek that finds nothing to read (EAGAIN)
	// means the peer has neither closed nor reset the connection.
	alive := 0
	for _, cl := range held {
		if isOpen(cl.conn) {
			alive++
		}
		cl.conn.Close()
		s.sessions.Add(1)
	}
	r := s.result(opened)
	r.Conns, r.TxPerConn, r.Held = c.conns, 1, alive
	return r
}

// isOpen peeks at the socket without blocking: EAGAIN means open and idle.
func isOpen(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	_ = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = errors.Is(err, syscall.EAGAIN)
		return true // do not wait for readiness
	})
	return open
}
