package sensor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/capture"
	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/protocols"
)

// finish joins the capture engine's finished parts with their sessions and hands each
// complete session to the uploader. It returns when the queue is closed and drained.
func (s *Sensor) finish() {
	for {
		f, ok := s.finished.pop()
		if !ok {
			return
		}
		s.mu.Lock()
		sess := s.sessions[f.ID]
		s.mu.Unlock()
		if sess == nil {
			s.log.Warn("capture finished a session the sensor does not know", "session", f.ID)
			continue
		}
		if !sess.addPart(f) {
			continue
		}
		s.complWG.Add(1)
		go func() {
			defer s.complWG.Done()
			// The last packets usually arrive after the handler returned; if the capture
			// finished first (RST, idle), give the handler a moment to record its events.
			select {
			case <-sess.handlerOK:
			case <-time.After(5 * time.Second):
			}
			s.complete(sess)
		}()
	}
}

// complete builds the session's incident and submits pcap(s) and bundle for upload.
func (s *Sensor) complete(sess *session) {
	var (
		rec *record
		r   recorded
	)
	defer func() {
		s.observeEnd(sess, r, rec)
		if sess.forget != nil {
			sess.forget()
		}
		s.mu.Lock()
		delete(s.sessions, sess.id)
		ip := sess.tuple.Client.Addr()
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
		s.mu.Unlock()
	}()
	r = sess.snapshot()
	var err error
	rec, err = assemble(s.sensor, s.store, sess.spec, sess.tuple, sess.id, r)
	if err != nil {
		sess.Logger().Error("build incident", "err", err)
		return
	}
	is := rec.session
	// Submit fails only when the spool cannot be written (disk full, permissions):
	// retry for a while before giving the session up, loudly.
	for wait := time.Second; ; wait *= 2 {
		err = s.uploader.Submit(context.Background(), rec.objects, rec.bundleKey, rec.bundle)
		s.metrics.SpoolSubmit(err == nil)
		if err == nil {
			break
		}
		if wait > time.Minute {
			sess.Logger().Error("session LOST: its pcap and incident could not be spooled", "err", err, "pcap", rec.session.PCAPs[0].Key)
			return
		}
		sess.Logger().Warn("spool write failed; retrying", "err", err, "retry_in", wait)
		time.Sleep(wait)
	}
	sess.Logger().Info("session end",
		"remote", sess.tuple.Client.String(), "reason", is.Reason,
		"packets", is.ClientPackets+is.ServerPackets, "bytes", is.ClientBytes+is.ServerBytes,
		"events", len(r.events), "files", len(r.files), "possibly_incomplete", is.PossiblyIncomplete, "pcap", rec.session.PCAPs[0].Key)
}

// record is one session ready for the store: pcap objects and the bundle naming them.
type record struct {
	session   incidents.Session
	objects   []incidents.Object
	bundleKey string
	bundle    []byte
	ids       struct{ bundle, incident, observedData, indicator, sighting string }
}

// assemble joins a session's finished capture parts and its events into the objects to
// store and the STIX bundle that names them.
func assemble(sensor incidents.Sensor, store incidents.Store, spec protocols.Spec, t capture.Tuple, id string, r recorded) (*record, error) {
	parts := r.parts
	first := parts[0]
	start := first.Start
	pcapKey, bundleKey, err := incidents.Keys(sensor.ID, start, id)
	if err != nil {
		return nil, err
	}
	is := incidents.Session{
		ID:             id,
		Protocol:       spec.Name,
		Service:        spec.Service,
		Transport:      string(spec.Transport),
		Client:         t.Client,
		Server:         t.Server,
		Start:          start,
		Filter:         first.Filter.Expr,
		FilterBytecode: first.Filter.Bytecode(),
		EventsDropped:  r.eventsDropped + r.filesDropped,
	}
	rec := &record{bundleKey: bundleKey}
	for i, p := range parts {
		key := pcapKey
		if p.Part > 1 {
			if key, err = incidents.PartKey(pcapKey, p.Part); err != nil {
				return nil, err
			}
		}
		body, sum := p.PCAP, hex.EncodeToString(p.SHA256[:])
		if p.Format == capture.FormatPCAPNG {
			// The emulator's events become comments of the packets that caused them;
			// the annotated file is the part, hashed here as it is made.
			if body, err = capture.AnnotatePCAPNG(p.PCAP, partNotes(r.events, parts, i)); err != nil {
				return nil, err
			}
			sum = sha256hex(body)
		}
		is.PCAPs = append(is.PCAPs, incidents.PCAP{
			Key: key, URL: store.URL(key), SHA256: sum, Size: int64(len(body)), MimeType: p.MimeType, Part: p.Part,
		})
		rec.objects = append(rec.objects, incidents.Object{Key: key, Body: body, Meta: incidents.Meta{ContentType: p.MimeType, SHA256: sum, Size: int64(len(body))}})
		is.ClientPackets += int64(p.ClientPackets)
		is.ServerPackets += int64(p.ServerPackets)
		is.ClientBytes += p.ClientBytes
		is.ServerBytes += p.ServerBytes
		is.Drops += p.Drops
		is.PossiblyIncomplete = is.PossiblyIncomplete || p.PossiblyIncomplete
		if p.End.After(is.End) {
			is.End = p.End
		}
		is.Reason = p.Reason
	}
	if is.End.Before(is.Start) {
		is.End = is.Start
	}
	for _, e := range r.events {
		is.Events = append(is.Events, toIncidentEvent(e))
	}
	for i, f := range r.files {
		key, err := incidents.FileKey(pcapKey, i+1)
		if err != nil {
			return nil, err
		}
		sum := sha256hex(f.Data)
		size := int64(len(f.Data))
		is.Files = append(is.Files, incidents.File{
			Key: key, URL: store.URL(key), SHA256: sum, Size: size, Name: f.Name, Protocol: f.Protocol,
			Time: f.Time, Truncated: f.Truncated,
		})
		// Uploads are stored before the pcaps and the bundle that names them.
		rec.objects = append([]incidents.Object{{Key: key, Body: f.Data, Meta: incidents.Meta{ContentType: incidents.FileMimeType, SHA256: sum, Size: size}}}, rec.objects...)
	}
	b, err := incidents.Build(sensor, is, time.Now())
	if err != nil {
		return nil, err
	}
	if rec.bundle, err = b.MarshalJSON(); err != nil {
		return nil, err
	}
	rec.session = is
	rec.ids.bundle = b.ID
	for _, o := range b.Objects {
		switch o.STIXType() {
		case "incident":
			rec.ids.incident = o.STIXID()
		case "observed-data":
			rec.ids.observedData = o.STIXID()
		case "indicator":
			rec.ids.indicator = o.STIXID()
		case "sighting":
			rec.ids.sighting = o.STIXID()
		}
	}
	return rec, nil
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// partNotes returns the events of part i of parts (those from its start, or from the
// session's start for the first part, to the next part's start) as packet notes.
func partNotes(events []protocols.Event, parts []*capture.Finished, i int) []capture.Note {
	var notes []capture.Note
	for _, e := range events {
		if i > 0 && e.Time.Before(parts[i].Start) || i+1 < len(parts) && !e.Time.Before(parts[i+1].Start) {
			continue
		}
		notes = append(notes, capture.Note{Time: e.Time, Text: eventNote(e)})
	}
	return notes
}

// eventNote is the one-line packet comment of an emulator event, such as
// "pcapot modbus read_holding_registers code=3 unit=1 area=holding_registers ...".
func eventNote(e protocols.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pcapot %s %s", noteWord(e.Protocol), noteWord(e.Op))
	if e.Code != 0 {
		fmt.Fprintf(&b, " code=%d", e.Code)
	}
	if e.Unit > 0 {
		fmt.Fprintf(&b, " unit=%d", e.Unit)
	}
	if e.Area != "" {
		fmt.Fprintf(&b, " area=%s", noteWord(e.Area))
	}
	if e.Address != 0 || e.Quantity != 0 {
		fmt.Fprintf(&b, " address=%d quantity=%d", e.Address, e.Quantity)
	}
	if len(e.Data) > 0 {
		fmt.Fprintf(&b, " data_len=%d", len(e.Data))
	}
	if e.Exception != 0 {
		fmt.Fprintf(&b, " exception=%d", e.Exception)
	}
	if e.Write {
		b.WriteString(" write")
	}
	for _, k := range slices.Sorted(maps.Keys(e.Detail)) {
		fmt.Fprintf(&b, " %s=%s", noteWord(k), noteWord(e.Detail[k]))
	}
	return b.String()
}

// noteWord is s as it is when it is a plain word (letters, digits, "_.-:/"), else
// quoted in Go syntax with everything but printable ASCII escaped: attacker text (an
// area, an HTTP path, an SNMP community, an operation some emulators take from the
// request) can then neither break the comment's line nor pass for another field.
func noteWord(s string) string {
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_.-:/", c) >= 0) {
			return strconv.QuoteToASCII(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

func toIncidentEvent(e protocols.Event) incidents.Event {
	return incidents.Event{
		Time: e.Time, Protocol: e.Protocol, Op: e.Op, Code: e.Code, Unit: e.Unit, Area: e.Area,
		Address: e.Address, Quantity: e.Quantity, Data: e.Data, Exception: e.Exception,
		Write: e.Write, Detail: e.Detail,
	}
}

// OpenStore opens the configured store: S3 when an endpoint is set, else the folder.
func OpenStore(ctx context.Context, cfg *Config) (incidents.Store, error) {
	if cfg.S3.Endpoint == "" {
		st, err := incidents.NewFolderStore(cfg.Data)
		if err != nil {
			return nil, fmt.Errorf("folder store %s: %w", cfg.Data, err)
		}
		return st, nil
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := incidents.NewS3Store(sctx, incidents.S3Config{
		Endpoint:  cfg.S3.Endpoint,
		Bucket:    cfg.S3.Bucket,
		AccessKey: cfg.S3.AccessKey,
		SecretKey: cfg.S3.SecretKey,
		Region:    cfg.S3.Region,
		Insecure:  cfg.S3.Insecure,
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func spoolDir(cfg *Config) string { return filepath.Join(cfg.Data, "spool") }

// connection tracking, so that shutdown can close live connections.
func (s *Sensor) trackConn(id string, c net.Conn) {
	s.connsMu.Lock()
	if s.conns == nil {
		s.conns = map[string]net.Conn{}
	}
	s.conns[id] = c
	s.connsMu.Unlock()
}

func (s *Sensor) untrackConn(id string) {
	s.connsMu.Lock()
	delete(s.conns, id)
	s.connsMu.Unlock()
}

func (s *Sensor) closeConns() {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// queue is an unbounded FIFO: the capture engine must never block on its consumer.
type queue[T any] struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []T
	closed bool
}

func newQueue[T any]() *queue[T] {
	q := &queue[T]{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// pop blocks for the next item; false once closed and empty.
func (q *queue[T]) pop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	var zero T
	if len(q.items) == 0 {
		return zero, false
	}
	v := q.items[0]
	q.items[0] = zero
	q.items = q.items[1:]
	return v, true
}
