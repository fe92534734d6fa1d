// Package protocols holds the contracts between the sensor and the protocol emulators.
//
// A protocol package (protocols/<name>) exports a Spec. The sensor opens the listener,
// accepts the connection (or the first datagram of a flow), registers the 5-tuple with
// the capture engine, and only then hands the traffic to the handler. A handler never
// logs attacker data itself as free text: it reports typed Events through the Session,
// and the sensor writes them (escaped) into the event log and the STIX incident.
//
// This package imports the standard library only, so that protocols, capture and
// incidents stay independent of each other.
package protocols

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Transport is the layer-4 protocol a handler serves.
type Transport string

const (
	TCP Transport = "tcp"
	UDP Transport = "udp"
)

// Session is one attacker session as a handler sees it: one TCP connection or one UDP
// flow (5-tuple). Its methods are safe for concurrent use.
type Session interface {
	// ID is the session UUID (also the name of its pcap and incident).
	ID() string
	// Local is the sensor's address of the session, Remote the attacker's.
	Local() netip.AddrPort
	Remote() netip.AddrPort
	// Logger is the process logger with the session id attached. Attacker bytes never go
	// into a log message; put them into an Event.
	Logger() *slog.Logger
	// Emit records one protocol operation. It never blocks for long; events beyond the
	// per-session cap are counted and dropped. The session keeps e: its Data and Detail
	// must not be changed after the call.
	Emit(Event)
	// KeepFile keeps content the attacker transferred to the device (an FTP STOR, a
	// TFTP WRQ...) as evidence: the sensor hashes it and stores it beside the
	// session's pcap, under a key of its own choosing (never File.Name), and names it
	// in the incident. Files beyond the per-session caps are counted and dropped.
	KeepFile(File)
}

// File is content an attacker transferred to the emulated device.
type File struct {
	Time     time.Time
	Protocol string
	// Name is the name the attacker gave (attacker text: never a path on disk).
	Name string
	// Data is the content, up to the handler's cap; Truncated says it was cut there
	// (the session's pcap still holds all of it).
	Data      []byte
	Truncated bool
}

// StreamHandler serves one accepted TCP connection until the peer closes it, an error
// occurs, a limit is hit, or ctx is cancelled. It must set a deadline before every read
// and return when a read returns io.EOF. The sensor closes conn after ServeStream
// returns. The returned error is logged once by the sensor; io.EOF and timeouts are not
// errors and should be returned as nil.
type StreamHandler interface {
	ServeStream(ctx context.Context, s Session, conn net.Conn) error
}

// DatagramHandler answers datagrams of UDP flows. It is called once per datagram, with
// the session of the flow the datagram belongs to. reply sends one datagram back to the
// flow's remote address; it may be called zero or more times before the call returns.
// req is only valid during the call.
type DatagramHandler interface {
	ServeDatagram(ctx context.Context, s Session, req []byte, reply func([]byte) error) error
}

// Spec describes one protocol emulator. Each protocols/<name> package exports a
// function returning its Spec; protocols/all lists them.
type Spec struct {
	// Name is the registry and config name, lowercase, e.g. "modbus".
	Name string
	// Transport is TCP or UDP. A protocol served on both has two specs.
	Transport Transport
	// Port is the standard port, used when the config does not name one.
	Port uint16
	// Service is the IANA service name used in STIX network-traffic protocols, e.g. "mbap".
	Service string
	// NewConfig returns a pointer to the protocol's own configuration struct filled with
	// defaults; the sensor decodes the persona's section for this protocol into it
	// (strictly: unknown keys are errors). Nil when the protocol has no configuration.
	NewConfig func() any
	// New builds the handler. cfg is what NewConfig returned, after decoding. The
	// result must implement StreamHandler for TCP or DatagramHandler for UDP.
	New func(env Env, cfg any) (any, error)
	// CapturePorts, when set, lists further TCP ports the handler uses with this
	// configuration (an FTP server's data ports), so that the capture sees them.
	CapturePorts func(cfg any) []uint16
}

// FlowLinker is implemented by the sensor's sessions. A handler that accepts or opens
// a further connection of the same attacker itself (an FTP data connection) links it:
// the connection becomes a session of its own, with its own pcap and incident, and
// the handler records the link in an event of both sessions.
type FlowLinker interface {
	// LinkFlow registers the TCP connection between local and remote under a new
	// session named name (e.g. "ftp-data") with IANA service service, and returns it;
	// done must be called once the handler has finished with the connection.
	LinkFlow(name, service string, local, remote netip.AddrPort) (s Session, done func(), err error)
}

// Env is what every handler gets at construction time.
type Env struct {
	// Identity is the device persona shared by every protocol of the sensor.
	Identity *Identity
	// Logger is the process logger with the protocol name attached.
	Logger *slog.Logger
	// Boot is the device's simulated boot time (for uptime counters).
	Boot time.Time
	// Now returns the current time; tests replace it.
	Now func() time.Time
}

// WithDefaults returns e with the fields a handler may not get filled in: Now is
// time.Now, Boot is Now() (the device booted when the handler was built) and Logger
// discards. Identity is left alone: what a missing one means is the protocol's call.
func (e Env) WithDefaults() Env {
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Boot.IsZero() {
		e.Boot = e.Now()
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	return e
}

// ErrConfig wraps configuration errors returned by Spec.New.
var ErrConfig = errors.New("protocol configuration")

// NewFunc adapts a protocol's constructor to Spec.New: cfg must be the *C that
// Spec.NewConfig returned (decoded); anything else is an ErrConfig error naming proto.
// A failed constructor yields a nil handler, not a typed nil.
func NewFunc[C, H any](proto string, newHandler func(Env, *C) (H, error)) func(Env, any) (any, error) {
	return func(env Env, cfg any) (any, error) {
		c, ok := cfg.(*C)
		if !ok {
			return nil, fmt.Errorf("%w: %s: config is %T, want %T", ErrConfig, proto, cfg, c)
		}
		h, err := newHandler(env, c)
		if err != nil {
			return nil, err
		}
		return h, nil
	}
}

// Event is one protocol operation of a session, typed so that the event log (ECS) and
// the STIX ICS extension carry it without parsing. Fields that do not apply stay zero.
// Strings may contain attacker bytes: every sink escapes them.
type Event struct {
	Time     time.Time `json:"time"`
	Protocol string    `json:"protocol"`
	// Op is a stable snake_case operation name, e.g. "read_holding_registers",
	// "setup_communication", "get_request", "http_request".
	Op string `json:"op"`
	// Code is the function/service code on the wire (Modbus FC, S7 function, PDU type).
	Code int `json:"code,omitempty"`
	// Unit is the unit/slave/station/outstation address, -1 when none applies.
	Unit int `json:"unit,omitempty"`
	// Area is the memory area, object or resource addressed ("holding_registers",
	// "DB1", an OID, a URL path).
	Area string `json:"area,omitempty"`
	// Address and Quantity describe the range addressed.
	Address  int `json:"address,omitempty"`
	Quantity int `json:"quantity,omitempty"`
	// Data holds the values written by the attacker, raw (encoders hex/base64 them).
	Data []byte `json:"data,omitempty"`
	// Exception is the protocol error the emulator answered with (Modbus exception code,
	// SNMP error-status...), 0 when the request succeeded.
	Exception int `json:"exception,omitempty"`
	// Write is true for operations that change device state (writes, PLC stop...).
	Write bool `json:"write,omitempty"`
	// Detail carries protocol-specific fields with stable keys (e.g. "community",
	// "method", "user_agent").
	Detail map[string]string `json:"detail,omitempty"`
}

// PeerGone reports whether err only means that the session is over: the peer closed or
// reset the connection, a deadline expired, or the sensor closed the socket. Handlers
// return nil for these instead of an error.
func PeerGone(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		(errors.As(err, &ne) && ne.Timeout())
}
