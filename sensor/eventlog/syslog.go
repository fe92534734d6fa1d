package eventlog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// SyslogConfig configures the syslog output: RFC 5424 messages whose MSG is the ECS
// record (JSON, no BOM), sent over UDP (one message per datagram, RFC 5426), TCP or TLS
// (octet-counting framing, RFC 6587 / RFC 5425, or LF framing).
type SyslogConfig struct {
	// Network is "udp", "tcp" or "tls"; Address is host:port.
	Network, Address string
	// TLS configures "tls" (TLS 1.2 at least); nil uses the system roots and the host of
	// Address as server name.
	TLS *tls.Config
	// Facility is the syslog facility, 1-23; 0 means 16 (local0).
	Facility int
	// AppName defaults to "pcapot", Hostname to the machine's host name.
	AppName, Hostname string
	// NewlineFraming frames TCP/TLS messages with a trailing LF (RFC 6587
	// non-transparent framing) instead of octet counting, for receivers that split a
	// stream on newlines (Splunk's raw TCP input). Records are single-line JSON, so the
	// LF is unambiguous.
	NewlineFraming bool
	// QueueSize bounds the messages waiting to be sent (default 4096).
	QueueSize int
	// DialTimeout and WriteTimeout default to 5 s.
	DialTimeout, WriteTimeout time.Duration
}

// Syslog severities used.
const (
	syslogWarning = 4
	syslogNotice  = 5
	syslogInfo    = 6
)

const (
	maxBackoff = 30 * time.Second
	// maxUDPMessage is the largest message sent over UDP (IPv4 payload limit).
	maxUDPMessage = 65507
)

type syslogSink struct {
	cfg  SyslogConfig
	log  *slog.Logger
	pid  string
	q    chan []byte
	done chan struct{}
	stop chan struct{} // closed when Close gives up waiting

	conn    net.Conn
	backoff time.Duration
	retryAt time.Time

	sent, dropped, errs atomic.Uint64
}

func newSyslogSink(cfg SyslogConfig, log *slog.Logger) (*syslogSink, error) {
	switch cfg.Network {
	case "udp", "tcp", "tls":
	default:
		return nil, fmt.Errorf("eventlog: syslog network %q: want udp, tcp or tls", cfg.Network)
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("eventlog: syslog address %q: %w", cfg.Address, err)
	}
	if cfg.Facility < 0 || cfg.Facility > 23 {
		return nil, fmt.Errorf("eventlog: syslog facility %d: want 0-23", cfg.Facility)
	}
	if cfg.Facility == 0 {
		cfg.Facility = 16
	}
	if cfg.AppName == "" {
		cfg.AppName = "pcapot"
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	cfg.AppName = headerField(cfg.AppName, 48)
	cfg.Hostname = headerField(cfg.Hostname, 255)
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	s := &syslogSink{
		cfg: cfg, log: log.With("syslog", cfg.Network+"://"+cfg.Address),
		pid: strconv.Itoa(os.Getpid()), q: make(chan []byte, cfg.QueueSize),
		done: make(chan struct{}), stop: make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII without
// spaces (33-126), at most n characters, "-" when empty.
func headerField(s string, n int) string {
	b := []byte(s)
	if len(b) > n {
		b = b[:n]
	}
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// format builds an RFC 5424 message: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
// STRUCTURED-DATA MSG. The timestamp has microseconds (RFC 5424 allows at most 6
// fraction digits).
func (s *syslogSink) format(now time.Time, severity int, msgID string, msg []byte) []byte {
	pri := s.cfg.Facility*8 + severity
	head := fmt.Sprintf("<%d>1 %s %s %s %s %s - ", pri, now.UTC().Format("2006-01-02T15:04:05.000000Z07:00"),
		s.cfg.Hostname, s.cfg.AppName, s.pid, headerField(msgID, 32))
	out := make([]byte, 0, len(head)+len(msg))
	return append(append(out, head...), msg...)
}

// enqueue queues one message without blocking.
func (s *syslogSink) enqueue(severity int, msgID string, msg []byte) {
	m := s.format(time.Now(), severity, msgID, msg)
	select {
	case s.q <- m:
	default:
		s.dropped.Add(1)
	}
}

func (s *syslogSink) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: s.cfg.DialTimeout}
	switch s.cfg.Network {
	case "tls":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.cfg.TLS != nil {
			cfg = s.cfg.TLS.Clone()
			if cfg.MinVersion < tls.VersionTLS12 {
				cfg.MinVersion = tls.VersionTLS12
			}
		}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(s.cfg.Address)
			cfg.ServerName = host
		}
		return tls.DialWithDialer(d, "tcp", s.cfg.Address, cfg)
	default:
		return d.Dial(s.cfg.Network, s.cfg.Address)
	}
}

// send writes one message on the connection, dialing first when needed. While the
// server is unreachable, messages are dropped (counted as errors) without waiting, and
// dialing is retried with exponential backoff.
func (s *syslogSink) send(m []byte) error {
	if s.cfg.Network == "udp" && len(m) > maxUDPMessage {
		return fmt.Errorf("message of %d bytes does not fit a UDP datagram", len(m))
	}
	frame := m
	switch {
	case s.cfg.Network == "udp":
	case s.cfg.NewlineFraming:
		frame = append(m[:len(m):len(m)], '\n')
	default: // octet counting: "MSG-LEN SP SYSLOG-MSG"
		frame = append([]byte(strconv.Itoa(len(m))+" "), m...)
	}
	for attempt := 0; attempt < 2; attempt++ {
		if s.conn == nil {
			if time.Now().Before(s.retryAt) {
				return errors.New("server unreachable, waiting to redial")
			}
			c, err := s.dial()
			if err != nil {
				s.backoff = min(max(2*s.backoff, 500*time.Millisecond), maxBackoff)
				s.retryAt = time.Now().Add(s.backoff)
				return fmt.Errorf("dial: %w", err)
			}
			s.conn, s.backoff = c, 0
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if _, err := s.conn.Write(frame); err != nil {
			// A broken stream (or a UDP socket that got an ICMP error): redial once.
			_ = s.conn.Close()
			s.conn = nil
			if attempt == 1 {
				return fmt.Errorf("write: %w", err)
			}
			continue
		}
		return nil
	}
	return nil
}

func (s *syslogSink) run() {
	defer close(s.done)
	failing := false
	for m := range s.q {
		select {
		case <-s.stop:
			s.dropped.Add(1)
			continue
		default:
		}
		if err := s.send(m); err != nil {
			s.errs.Add(1)
			if !failing {
				s.log.Warn("syslog send failed; records are dropped until it recovers", "err", err)
				failing = true
			}
			continue
		}
		if failing {
			s.log.Info("syslog send recovered")
			failing = false
		}
		s.sent.Add(1)
	}
	if s.conn != nil {
		_ = s.conn.Close()
	}
}

// close sends what is queued, until ctx is done, and closes the connection.
func (s *syslogSink) close(ctx context.Context) error {
	close(s.q)
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		close(s.stop)
		return fmt.Errorf("eventlog: syslog close: %w (queued messages dropped)", ctx.Err())
	}
}
