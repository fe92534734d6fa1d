// Package eventlog writes the sensor's attack events as Elastic Common Schema (ECS)
// records, one JSON object per line (NDJSON): one record when a session starts, one per
// protocol event, one when the session ends (with its pcap's hash and URL and the STIX
// ids of its incident, so a SIEM can join log events with the TAXII feed). Records go
// to a file with size-based rotation or to standard output, and optionally to a syslog
// server (RFC 5424 over UDP, TCP or TLS).
//
// The log never blocks the sensor: records are queued in bounded queues and counted as
// dropped when a queue is full. Attacker bytes are always JSON-escaped; text that is not
// valid UTF-8 is written with U+FFFD replacements plus a hex copy of its exact bytes.
//
// The package uses standard types only; the sensor converts its sessions and protocol
// events into Session and Event.
package eventlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Observer describes the sensor (ECS observer.*).
type Observer struct {
	// Name is observer.name, e.g. the sensor id or a site name.
	Name string
	// SensorID is pcapot.sensor_id, the id used in object keys.
	SensorID string
	Hostname string
	IPs      []netip.Addr
	// Vendor and Product default to "pcapot"; Version is the sensor's version.
	Vendor, Product, Version string
}

// PCAP is one stored capture file of a session.
type PCAP struct {
	Part     int
	Key, URL string
	// SHA256 is lowercase hex.
	SHA256   string
	Size     int64
	MimeType string
}

// Session is one attacker session. SessionStart needs the identity fields (ID,
// Protocol, Transport, Client, Server, Start); SessionEnd uses all of them.
type Session struct {
	// ID is the session UUID.
	ID string
	// Protocol is the emulator ("modbus"), Service the IANA service name ("mbap"),
	// Transport "tcp" or "udp".
	Protocol, Service, Transport string
	// Client is the attacker, Server the sensor's address.
	Client, Server netip.AddrPort
	Start, End     time.Time

	ClientPackets, ServerPackets, ClientBytes, ServerBytes int64

	PCAPs []PCAP
	// STIX ids of the session's bundle (known once the incident is built).
	BundleID, IncidentID, ObservedDataID, IndicatorID, SightingID string
	// Reason is why the session ended ("fin", "rst", "idle").
	Reason             string
	PossiblyIncomplete bool
	Drops              uint64
	// Events and EventsDropped count the session's protocol events (kept, over the cap).
	Events, EventsDropped int
}

// Event is one protocol operation; it mirrors protocols.Event. Its strings and Data may
// hold attacker bytes.
type Event struct {
	Time     time.Time
	Protocol string
	Op       string
	Code     int
	// Unit is the unit/station address, negative when none applies.
	Unit              int
	Area              string
	Address, Quantity int
	Data              []byte
	Exception         int
	Write             bool
	Detail            map[string]string
}

// Config configures a Log.
type Config struct {
	// Path is the NDJSON file; "-" is standard output; "" writes no file (syslog only).
	Path string
	// MaxBytes rotates the file before it would grow beyond this size (default
	// 100 MiB); MaxFiles rotated files are kept as Path.1 (newest) ... Path.N (default
	// 5). A negative MaxBytes disables rotation.
	MaxBytes int64
	MaxFiles int
	// QueueSize bounds the records waiting for the file writer (default 8192).
	QueueSize int
	// Syslog, when set, also sends every record to a syslog server.
	Syslog   *SyslogConfig
	Observer Observer
	// Now returns the current time (event.created); tests replace it.
	Now func() time.Time
	// Stdout is where Path "-" writes; os.Stdout when nil.
	Stdout io.Writer
}

// Defaults.
const (
	DefaultMaxBytes  = 100 << 20
	DefaultMaxFiles  = 5
	DefaultQueueSize = 8192
)

// Stats counts records since the log was created.
type Stats struct {
	// Written, Dropped (queue full or log closed) and Errors (write failed) count
	// records of the file/stdout sink.
	Written, Dropped, Errors uint64
	// Syslog* count records of the syslog sink.
	SyslogSent, SyslogDropped, SyslogErrors uint64
}

// Log writes ECS records. It is safe for concurrent use.
type Log struct {
	b   builder
	log *slog.Logger

	mu     sync.RWMutex // guards closed and sends on the queue
	closed bool
	// queue carries what happened to the writer goroutine, which builds the records
	// and encodes them: building and JSON encoding stay off the protocol handlers'
	// goroutines (their latency, and the stack each idle session keeps).
	queue chan *queued
	done  chan struct{}
	out   *fileSink // nil without a file sink
	// abandon makes the writer drop what is still queued (Close ran out of time).
	abandon  atomic.Bool
	closeErr error // of the file, set by run before done is closed

	syslog *syslogSink

	written, dropped, errs atomic.Uint64
}

// queued is one record waiting for the writer to build it: what happened (a copy of
// the caller's session and event), with its syslog severity and msgid.
type queued struct {
	kind     recordKind
	s        Session
	ev       *EventRecord
	p        Probe
	severity int
	msgID    string
}

type recordKind uint8

const (
	kindStart recordKind = iota
	kindEvent
	kindEnd
	kindProbe
)

// build returns the ECS record of q.
func (b builder) build(q *queued) *record {
	switch q.kind {
	case kindStart:
		return b.sessionStart(&q.s)
	case kindEnd:
		return b.sessionEnd(&q.s)
	case kindProbe:
		return b.probe(&q.p)
	default:
		return b.event(&q.ev.Session, &q.ev.Event)
	}
}

// ErrClosed is returned by Close on a closed log.
var ErrClosed = errors.New("eventlog: closed")

// New opens the configured outputs and starts their writers. The file is opened (and
// created, mode 0640) before New returns, so a wrong path fails here. A syslog server
// that is down does not fail New: records are queued and the connection is retried.
func New(cfg Config, logger *slog.Logger) (*Log, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.Path == "" && cfg.Syslog == nil {
		return nil, errors.New("eventlog: no output: set a path, \"-\" for standard output, or syslog")
	}
	l := &Log{b: newBuilder(cfg.Observer, cfg.Now), log: logger.With("component", "eventlog"), done: make(chan struct{})}
	if cfg.Path != "" {
		stdout := cfg.Stdout
		if stdout == nil {
			stdout = os.Stdout
		}
		out, err := openFileSink(cfg.Path, cfg.MaxBytes, cfg.MaxFiles, stdout)
		if err != nil {
			return nil, err
		}
		l.out = out
	}
	l.queue = make(chan *queued, cfg.QueueSize)
	if cfg.Syslog != nil {
		s, err := newSyslogSink(*cfg.Syslog, l.log)
		if err != nil {
			if l.out != nil {
				_ = l.out.close()
			}
			return nil, err
		}
		l.syslog = s
	}
	go l.run()
	return l, nil
}

// SessionStart logs the start of session s.
func (l *Log) SessionStart(s Session) {
	l.publish(&queued{kind: kindStart, s: s, severity: syslogInfo, msgID: "session-start"})
}

// SessionEnd logs the end of session s, with its counters, pcaps and STIX ids.
func (l *Log) SessionEnd(s Session) {
	l.publish(&queued{kind: kindEnd, s: s, severity: syslogInfo, msgID: "session-end"})
}

// Probe is a summary of the flows one source sent that never reached a protocol
// handler (SYN scans, closed ports, flows over a limit): capture.ProbeSummary.
type Probe struct {
	Source netip.Addr
	// Ports are the destination ports probed, ascending.
	Ports          []uint16
	Flows, Packets int
	First, Last    time.Time
}

// Probe logs probe summary p.
func (l *Log) Probe(p Probe) {
	l.publish(&queued{kind: kindProbe, p: p, severity: syslogNotice, msgID: "probe-summary"})
}

// EventRecord is a protocol event and its session (which needs its identity fields
// only).
type EventRecord struct {
	Session Session
	Event   Event
}

// Event logs r. The log keeps r: the caller must not change it after the call. A
// protocol handler's goroutine calls this for every request, so the record is made
// by the caller (on the heap) and only queued here: what the handler's stack holds is
// what every idle session keeps.
func (l *Log) Event(r *EventRecord) {
	q := &queued{kind: kindEvent, ev: r, severity: syslogNotice, msgID: "protocol-event"}
	if r.Event.Write {
		q.severity = syslogWarning
	}
	l.publish(q)
}

// encode returns r as one line of JSON.
func encode(r *record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf) // escapes <, >, & too: safe in any viewer
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (l *Log) publish(q *queued) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	select {
	case l.queue <- q:
	default:
		l.dropped.Add(1)
	}
}

// run writes queued records to the file, flushing whenever the queue runs empty, and
// closes the file when the queue is closed and drained.
func (l *Log) run() {
	defer close(l.done)
	reported := false
	for q := range l.queue {
		if l.abandon.Load() {
			l.dropped.Add(1)
			continue
		}
		line, err := encode(l.b.build(q))
		if err != nil { // cannot happen with these types; count it rather than panic
			l.errs.Add(1)
			l.log.Error("encode record", "err", err)
			continue
		}
		if l.syslog != nil {
			l.syslog.enqueue(q.severity, q.msgID, line[:len(line)-1])
		}
		if l.out == nil {
			continue
		}
		if err := l.out.write(line); err != nil {
			l.errs.Add(1)
			if !reported { // one log line per failure streak, not one per record
				l.log.Error("write event log", "err", err)
				reported = true
			}
		} else {
			l.written.Add(1)
			reported = false
		}
		if len(l.queue) == 0 {
			if err := l.out.flush(); err != nil {
				l.errs.Add(1)
				l.log.Error("flush event log", "err", err)
			}
		}
	}
	if l.out != nil {
		l.closeErr = l.out.close()
	}
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	s := Stats{Written: l.written.Load(), Dropped: l.dropped.Load(), Errors: l.errs.Load()}
	if l.syslog != nil {
		s.SyslogSent, s.SyslogDropped, s.SyslogErrors = l.syslog.sent.Load(), l.syslog.dropped.Load(), l.syslog.errs.Load()
	}
	return s
}

// Close stops accepting records, writes what is queued (until ctx is done), and
// closes the outputs. Records still queued when ctx ends are counted as dropped.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()

	var errs []error
	select {
	case <-l.done:
		if l.closeErr != nil {
			errs = append(errs, l.closeErr)
		}
	case <-ctx.Done():
		l.abandon.Store(true)
		errs = append(errs, fmt.Errorf("eventlog: close: %w (records still queued are dropped)", ctx.Err()))
		// The writer hands records to syslog: it must be gone before syslog closes.
		select {
		case <-l.done:
		case <-time.After(time.Second):
			return errors.Join(append(errs, errors.New("eventlog: close: the writer is stuck; syslog left open"))...)
		}
	}
	if l.syslog != nil {
		if err := l.syslog.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
