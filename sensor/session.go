package sensor

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pcapot/pcapot/capture"
	"github.com/pcapot/pcapot/protocols"
)

// session is one attacker session: one TCP connection or one UDP flow. The handler
// emits events into it; the capture engine's Finished parts are joined to it by id.
type session struct {
	id      string
	spec    protocols.Spec
	tuple   capture.Tuple
	started time.Time
	// base is the sensor's logger; logp the session's, made from it with the
	// session's id and protocol on first use (most sessions log only at their start
	// and end, and an idle session should not keep a logger of its own).
	base *slog.Logger
	logp atomic.Pointer[slog.Logger]

	maxEvents int
	sensor    *Sensor // observes every event (event log and metrics)
	maxFiles  int     // uploads kept per session
	maxFileB  int64   // bytes of uploads kept per session
	// forget removes a UDP session from its service's flow table once it is complete.
	forget func()
	// link opens a linked session (see LinkFlow).
	link func(parent *session, name, service string, local, remote netip.AddrPort) (*session, error)

	mu        sync.Mutex
	events    []protocols.Event
	dropped   int
	files     []protocols.File
	fileBytes int64
	filesLost int
	parts     []*capture.Finished
	finished  bool // the capture engine emitted the last part
	datagrams int
	handlerOK chan struct{} // closed when the handler returned
}

var (
	_ protocols.Session    = (*session)(nil)
	_ protocols.FlowLinker = (*session)(nil)
)

func (s *session) ID() string             { return s.id }
func (s *session) Local() netip.AddrPort  { return s.tuple.Server }
func (s *session) Remote() netip.AddrPort { return s.tuple.Client }
func (s *session) Logger() *slog.Logger {
	if l := s.logp.Load(); l != nil {
		return l
	}
	s.logp.CompareAndSwap(nil, s.base.With("session", s.id, "protocol", s.spec.Name))
	return s.logp.Load()
}

// Emit records e, stamping its time and protocol when the handler left them empty.
func (s *session) Emit(e protocols.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Protocol == "" {
		e.Protocol = s.spec.Name
	}
	s.mu.Lock()
	if len(s.events) >= s.maxEvents {
		s.dropped++
		s.mu.Unlock()
		return
	}
	s.events = append(s.events, e)
	s.mu.Unlock()
	s.sensor.observeEvent(s, &e) // a method, not a func value: e stays on the stack
}

// LinkFlow registers a further TCP connection of this attacker that the handler
// accepted or opened itself as a session of its own.
func (s *session) LinkFlow(name, service string, local, remote netip.AddrPort) (protocols.Session, func(), error) {
	if s.link == nil {
		return nil, nil, errors.New("sensor: this session cannot link flows")
	}
	child, err := s.link(s, name, service, local, remote)
	if err != nil {
		return nil, nil, err
	}
	var once sync.Once
	return child, func() { once.Do(child.handlerDone) }, nil
}

// KeepFile keeps an upload as evidence within the session's caps.
func (s *session) KeepFile(f protocols.File) {
	if f.Time.IsZero() {
		f.Time = time.Now()
	}
	if f.Protocol == "" {
		f.Protocol = s.spec.Name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.files) >= s.maxFiles || s.fileBytes+int64(len(f.Data)) > s.maxFileB {
		s.filesLost++
		return
	}
	f.Data = append([]byte(nil), f.Data...)
	s.fileBytes += int64(len(f.Data))
	s.files = append(s.files, f)
}

// handlerDone marks the handler as returned; safe to call once.
func (s *session) handlerDone() { close(s.handlerOK) }

// addPart stores a finished capture part and reports whether it was the last one.
func (s *session) addPart(f *capture.Finished) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.parts = append(s.parts, f)
	return f.Last
}

// countDatagram counts one datagram and reports whether it is within max.
func (s *session) countDatagram(max int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.datagrams++
	return s.datagrams <= max
}

func (s *session) markFinished() {
	s.mu.Lock()
	s.finished = true
	s.mu.Unlock()
}

func (s *session) isFinished() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.finished
}

// recorded is what a session recorded: its events, files and capture parts.
type recorded struct {
	events        []protocols.Event
	eventsDropped int
	files         []protocols.File
	filesDropped  int
	parts         []*capture.Finished
}

// snapshot returns what the session recorded so far.
func (s *session) snapshot() recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return recorded{
		events:        append([]protocols.Event(nil), s.events...),
		eventsDropped: s.dropped,
		files:         append([]protocols.File(nil), s.files...),
		filesDropped:  s.filesLost,
		parts:         append([]*capture.Finished(nil), s.parts...),
	}
}
