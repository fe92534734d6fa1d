package capture

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Packet is one captured Ethernet frame.
type Packet struct {
	Time time.Time
	// Data is the whole Ethernet frame. It is only valid during Demux.Handle, which
	// copies what it keeps.
	Data []byte
	// Length is the original length on the wire (at least len(Data)).
	Length int
}

// Config configures a Demux. Zero values take the defaults named on each field.
type Config struct {
	// Format is "pcap" (default: classic pcap, nanosecond timestamps,
	// LINKTYPE_ETHERNET) or "pcapng".
	Format string
	// Snaplen is the largest frame written; default 262144. A longer frame is cut and
	// its part flagged PossiblyIncomplete.
	Snaplen int
	// Interface names the capture interface in the pcapng interface block.
	Interface string
	// Linger is how long a TCP session stays open after FIN from both sides or an RST,
	// for the last ACK and retransmissions; default 1s.
	Linger time.Duration
	// TCPIdle and UDPIdle end sessions without packets for that long; defaults 120s
	// and 30s.
	TCPIdle, UDPIdle time.Duration
	// PendingTimeout drops flows that were never registered (counted as probes);
	// default 10s.
	PendingTimeout time.Duration
	// MaxPending caps unregistered flows (default 4096); packets of new flows beyond
	// it are counted and summarised as probes, not buffered. MaxSessions caps
	// registered sessions (default 65536); Register fails beyond it.
	MaxPending, MaxSessions int
	// MaxPendingPackets caps the packets buffered per unregistered flow (default 64).
	MaxPendingPackets int
	// MaxPendingBytes caps the bytes buffered by all unregistered flows together
	// (default 32 MiB).
	MaxPendingBytes int64
	// MaxSessionBytes and MaxLifetime rotate a session into numbered parts, each a
	// complete file; defaults 16 MiB and 1h. Nothing is truncated.
	MaxSessionBytes int64
	MaxLifetime     time.Duration
	// MaxBufferedBytes caps the memory of all open parts together, writer buffers
	// included (default 1 GiB): beyond it the largest parts are emitted early (reason
	// "size").
	MaxBufferedBytes int64
	// MaxProbeSources caps the sources in the probe summary between two Probes calls
	// (default 4096); further sources are only counted.
	MaxProbeSources int
	// AutoRegister is for offline carving: every flow that starts with a SYN (TCP) or
	// any UDP flow is registered at its first packet with an id from NewID.
	AutoRegister bool
	// NewID returns session ids for AutoRegister; default random UUIDv4.
	NewID func() string
}

// Defaults of Config.
const (
	DefaultSnaplen          = 262144
	DefaultLinger           = time.Second
	DefaultTCPIdle          = 120 * time.Second
	DefaultUDPIdle          = 30 * time.Second
	DefaultPendingTimeout   = 10 * time.Second
	DefaultMaxPending       = 4096
	DefaultMaxSessions      = 65536
	DefaultMaxPendingPkts   = 64
	DefaultMaxPendingBytes  = 32 << 20
	DefaultMaxSessionBytes  = 16 << 20
	DefaultMaxLifetime      = time.Hour
	DefaultMaxBufferedBytes = 1 << 30
	DefaultMaxProbeSources  = 4096

	// fragTimeout forgets a fragmented datagram's id (Linux ipfrag_time).
	fragTimeout = 30 * time.Second
	// maxFrags caps the datagram ids remembered for fragment matching.
	maxFrags = 16384
	// Caps on non-first fragments that wait for their datagram's first fragment:
	// datagrams, fragments per datagram, bytes in all.
	maxEarlyDatagrams = 1024
	maxEarlyFrags     = 64
	maxEarlyBytes     = 4 << 20
	// maxProbePorts caps the distinct ports kept per probe source.
	maxProbePorts = 64
)

func (c Config) withDefaults() Config {
	if c.Format != FormatPCAPNG {
		c.Format = FormatPCAP
	}
	orDefault(&c.Snaplen, DefaultSnaplen)
	orDefault(&c.Linger, DefaultLinger)
	orDefault(&c.TCPIdle, DefaultTCPIdle)
	orDefault(&c.UDPIdle, DefaultUDPIdle)
	orDefault(&c.PendingTimeout, DefaultPendingTimeout)
	orDefault(&c.MaxPending, DefaultMaxPending)
	orDefault(&c.MaxSessions, DefaultMaxSessions)
	orDefault(&c.MaxPendingPackets, DefaultMaxPendingPkts)
	orDefault(&c.MaxPendingBytes, DefaultMaxPendingBytes)
	orDefault(&c.MaxSessionBytes, DefaultMaxSessionBytes)
	orDefault(&c.MaxLifetime, DefaultMaxLifetime)
	orDefault(&c.MaxBufferedBytes, DefaultMaxBufferedBytes)
	orDefault(&c.MaxProbeSources, DefaultMaxProbeSources)
	if c.NewID == nil {
		c.NewID = newUUID
	}
	return c
}

// orDefault replaces a zero or negative setting with its default.
func orDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Finish reasons.
const (
	ReasonFIN      = "fin"
	ReasonRST      = "rst"
	ReasonIdle     = "idle"
	ReasonLifetime = "lifetime"
	ReasonSize     = "size"
	ReasonShutdown = "shutdown"
)

// Finished is one complete part of a session's capture.
type Finished struct {
	ID    string
	Tuple Tuple
	Part  int  // 1-based
	Last  bool // the session's final part
	// Start and End are the times of the part's first and last packet.
	Start, End time.Time
	// Reason is why the part ended: "fin", "rst", "idle", "lifetime", "size" or
	// "shutdown".
	Reason                       string
	ClientPackets, ServerPackets int
	ClientBytes, ServerBytes     int64 // wire lengths
	Format, MimeType             string
	PCAP                         []byte
	SHA256                       [32]byte
	Filter                       Filter
	// Drops counts the kernel drops reported (NoteDrops) while the part was open; the
	// kernel cannot tell whose packets they were.
	Drops uint64
	// PossiblyIncomplete is set when the part may lack packets: kernel drops during its
	// lifetime, a pending-buffer cap hit, a TCP session seen without its SYN, or a cut
	// frame.
	PossiblyIncomplete bool
}

// ProbeSummary aggregates, per source address, the flows that were never registered
// (SYN scans, RST-only probes, flows beyond MaxPending).
type ProbeSummary struct {
	Source netip.Addr
	// Ports are the distinct destination ports probed, ascending; at most 64.
	Ports []uint16
	// Flows counts expired unregistered flows and, beyond MaxPending, the opening
	// packets (TCP SYN, UDP datagram) of flows that were not buffered; Packets counts
	// the packets of both.
	Flows, Packets int
	First, Last    time.Time
}

// Stats are the demux counters. Pending, Active and BufferedBytes are current values,
// the rest count since NewDemux.
type Stats struct {
	Pending, Active     int
	BufferedBytes       int64
	Registered          uint64 // sessions registered (Register or AutoRegister)
	RegisterErrors      uint64
	Finished            uint64 // parts emitted
	Sessions            uint64 // sessions ended (parts with Last)
	ProbeFlows          uint64 // unregistered flows expired or dropped at Close
	PendingOverflow     uint64 // packets of new flows not buffered: MaxPending reached
	PendingDropped      uint64 // packets of pending flows not buffered: per-flow or byte cap
	ProbeSourcesDropped uint64 // probe sources not summarised: MaxProbeSources reached
	PacketsSeen         uint64
	PacketsMatched      uint64 // written to a session or buffered in a pending flow
	PacketsUnparsed     uint64 // not Ethernet/IP/TCP/UDP, or truncated
	Fragments           uint64 // non-first fragments given to their flow
	FragmentsLost       uint64 // non-first fragments whose first fragment was not seen within fragTimeout, or over the early-fragment caps
	KernelDrops         uint64
	WriteErrors         uint64
}

// Errors of Register.
var (
	ErrClosed            = errors.New("capture: demux closed")
	ErrAlreadyRegistered = errors.New("capture: tuple already registered to another session")
	ErrTooManySessions   = errors.New("capture: too many sessions (MaxSessions)")
)

type flowState uint8

const (
	statePending flowState = iota
	stateActive
	stateClosing
)

// pendingPacket is a buffered frame of an unregistered flow: its bytes are
// flow.pendData[off:off+n].
type pendingPacket struct {
	ts      time.Time
	wire    int
	off, n  int
	fromLow bool
	flags   uint8
}

// First capacities of a pending flow's buffers: a handshake and a request or two fit
// without growing. One slab per flow, not one allocation per frame: on the capture
// goroutine every allocation brings the next GC cycle nearer, and GC work there is
// what made the ring overflow under load (docs/BENCHMARKS.md §2b).
const (
	pendInitPackets = 4
	pendInitBytes   = 512
)

// partStats are the counters of the open part.
type partStats struct {
	start, end   time.Time
	cPk, sPk     int
	cB, sB       int64
	drops        uint64
	incomplete   bool
	packetsTotal int
}

type flow struct {
	key       flowKey
	proto     uint8
	v6        bool
	low, high endpoint
	state     flowState
	dead      bool // finalized; stale references (fragment table) ignore it

	created, lastSeen time.Time
	packets           int // all packets seen, buffered or not

	// TCP teardown, in low/high terms so that it works before registration.
	finLow, finHigh bool
	closeReason     string
	closeAt         time.Time

	// pending
	pend         []pendingPacket
	pendData     []byte
	pendBytes    int64
	firstFromLow bool
	firstFlags   uint8
	// carried into the next part that opens: kernel drops and "a packet could not be
	// buffered" noted while no part was open.
	carryDrops      uint64
	carryIncomplete bool

	// registered
	id        string
	tuple     Tuple
	clientLow bool
	part      int
	w         partWriter // nil when no part is open
	st        partStats
	seenAny   bool // a packet reached a part
}

// earlyFrags are the non-first fragments of one datagram that arrived before its first
// fragment (reordered on the way, or sent last first, as some stacks and evasion tools
// do): they wait, up to fragTimeout, and go into the first fragment's flow before it,
// in the order they arrived.
type earlyFrags struct {
	pkts  []pendingPacket // bytes in data; fromLow and flags unused
	data  []byte
	first time.Time
}

type fragEntry struct {
	f       *flow
	fromLow bool
	seen    time.Time
}

// Demux splits captured packets into sessions by canonical 5-tuple and emits each
// session as pcap parts. All methods are safe for concurrent use. emit is called from
// the goroutine calling Handle, Tick or Close (never from Register), one call at a
// time and in order. It may call Register, Stats and Probes, not Handle, Tick or
// Close; it should hand the part on quickly (the reader waits for it).
type Demux struct {
	cfg  Config
	log  *slog.Logger
	emit func(*Finished)

	emitMu sync.Mutex // serializes emit calls

	mu           sync.Mutex
	closed       bool
	now          time.Time // latest packet or Tick time
	flows        map[flowKey]*flow
	frags        map[fragKey]*fragEntry
	early        map[fragKey]*earlyFrags
	earlyBytes   int64
	probes       map[netip.Addr]*ProbeSummary
	ready        []*Finished
	pending      int
	active       int
	pendingBytes int64
	buffered     int64
	stats        Stats
}

// NewDemux returns a Demux that calls emit with every finished part. logger receives
// internal errors only; attacker data is never logged.
func NewDemux(cfg Config, logger *slog.Logger, emit func(*Finished)) *Demux {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Demux{
		cfg:    cfg.withDefaults(),
		log:    logger,
		emit:   emit,
		flows:  make(map[flowKey]*flow),
		frags:  make(map[fragKey]*fragEntry),
		early:  make(map[fragKey]*earlyFrags),
		probes: make(map[netip.Addr]*ProbeSummary),
	}
}

// Handle processes one captured frame. It copies what it keeps; p.Data may be reused
// after it returns.
func (d *Demux) Handle(p Packet) {
	var pi pinfo
	res := parse(p.Data, &pi)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.stats.PacketsSeen++
	d.advance(p.Time)
	switch {
	case res != parseOK:
		d.stats.PacketsUnparsed++
	case !pi.hasPorts:
		d.handleFragment(p, &pi)
	default:
		d.handleFlow(p, &pi)
	}
	ready := len(d.ready) > 0
	d.mu.Unlock()
	if ready {
		d.flush()
	}
}

func (d *Demux) advance(t time.Time) {
	if t.After(d.now) {
		d.now = t
	}
}

func (d *Demux) handleFragment(p Packet, pi *pinfo) {
	k := pi.fragKey()
	e := d.frags[k]
	if e == nil || e.f.dead {
		d.holdEarly(k, p)
		return
	}
	e.seen = p.Time
	d.stats.Fragments++
	d.add(e.f, p, e.fromLow, 0)
}

func (d *Demux) handleFlow(p Packet, pi *pinfo) {
	key, srcLow := makeKey(pi.proto, pi.v6, pi.src, pi.dst)
	f := d.flows[key]
	if f != nil && f.closeReason != "" {
		// A new connection on the tuple of a closed one (the client's SYN), or a packet
		// after the linger, ends the old flow first: a registered session is emitted,
		// a pending one (say, a refused first attempt) counts as a probe.
		newSYN := f.proto == ProtoTCP && pi.flags&(flagSYN|flagACK) == flagSYN
		if newSYN || !p.Time.Before(f.closeAt.Add(d.cfg.Linger)) {
			d.finalize(f, f.closeReason)
			f = nil
		}
	}
	if f == nil {
		if f = d.newFlow(key, pi, srcLow, p.Time); f == nil {
			return
		}
	}
	if pi.frag {
		k := pi.fragKey()
		if len(d.frags) < maxFrags {
			d.frags[k] = &fragEntry{f: f, fromLow: srcLow, seen: p.Time}
		}
		if ef := d.early[k]; ef != nil { // fragments that came before this first one
			delete(d.early, k)
			d.earlyBytes -= int64(len(ef.data))
			for _, ep := range ef.pkts {
				d.stats.Fragments++
				d.add(f, Packet{Time: ep.ts, Data: ef.data[ep.off : ep.off+ep.n], Length: ep.wire}, srcLow, 0)
			}
		}
	}
	d.add(f, p, srcLow, pi.flags)
}

// holdEarly keeps a non-first fragment whose first fragment has not been seen, within
// the early-fragment caps; beyond them it is counted lost.
func (d *Demux) holdEarly(k fragKey, p Packet) {
	ef := d.early[k]
	if ef == nil {
		if len(d.early) >= maxEarlyDatagrams {
			d.stats.FragmentsLost++
			return
		}
		ef = &earlyFrags{first: p.Time}
		d.early[k] = ef
	}
	if len(ef.pkts) >= maxEarlyFrags || d.earlyBytes+int64(len(p.Data)) > maxEarlyBytes {
		d.stats.FragmentsLost++
		return
	}
	ef.pkts = append(ef.pkts, pendingPacket{ts: p.Time, wire: p.Length, off: len(ef.data), n: len(p.Data)})
	ef.data = append(ef.data, p.Data...)
	d.earlyBytes += int64(len(p.Data))
}

// dropEarly forgets the early fragments of k, counting them lost.
func (d *Demux) dropEarly(k fragKey, ef *earlyFrags) {
	d.stats.FragmentsLost += uint64(len(ef.pkts))
	d.earlyBytes -= int64(len(ef.data))
	delete(d.early, k)
}

// newFlow creates the entry for a flow's first packet: registered at once with
// AutoRegister, else pending. It returns nil when MaxPending is reached.
func (d *Demux) newFlow(key flowKey, pi *pinfo, srcLow bool, ts time.Time) *flow {
	f := &flow{key: key, proto: pi.proto, v6: pi.v6, created: ts, lastSeen: ts, firstFromLow: srcLow, firstFlags: pi.flags}
	f.low, f.high = pi.src, pi.dst
	if !srcLow {
		f.low, f.high = pi.dst, pi.src
	}
	if d.cfg.AutoRegister && d.active < d.cfg.MaxSessions && (pi.proto == ProtoUDP || pi.flags&(flagSYN|flagACK) == flagSYN) {
		t := Tuple{Proto: pi.proto, Client: pi.src.addrPort(!pi.v6), Server: pi.dst.addrPort(!pi.v6)}
		if _, err := t.Normalize(); err == nil {
			d.flows[key] = f
			d.pending++ // promote counts it out again
			d.promote(f, t, d.cfg.NewID(), srcLow)
			return f
		}
	}
	if d.pending >= d.cfg.MaxPending {
		// Not buffered. Without flow state only a flow's opening packet (a TCP SYN, a
		// UDP datagram: the sensor's replies come after registration) names the
		// attacker reliably; other packets are only counted.
		d.stats.PendingOverflow++
		if pi.proto == ProtoUDP || pi.flags&(flagSYN|flagACK) == flagSYN {
			d.noteProbe(pi.src.addrPort(!pi.v6).Addr(), pi.dst.port, 1, 1, ts, ts)
		}
		return nil
	}
	d.flows[key] = f
	d.pending++
	return f
}

// add accounts one packet to f: TCP teardown, then the pending buffer or the open part.
func (d *Demux) add(f *flow, p Packet, fromLow bool, flags uint8) {
	ts := p.Time
	f.packets++
	f.lastSeen = ts
	if f.proto == ProtoTCP && flags != 0 {
		switch {
		case flags&flagRST != 0:
			d.closing(f, ReasonRST, ts)
		case flags&flagFIN != 0:
			if fromLow {
				f.finLow = true
			} else {
				f.finHigh = true
			}
			if f.finLow && f.finHigh {
				d.closing(f, ReasonFIN, ts)
			}
		}
	}
	if f.state == statePending {
		n := int64(len(p.Data))
		if len(f.pend) >= d.cfg.MaxPendingPackets || d.pendingBytes+n > d.cfg.MaxPendingBytes {
			f.carryIncomplete = true
			d.stats.PendingDropped++
			return
		}
		if f.pend == nil {
			f.pend = make([]pendingPacket, 0, pendInitPackets)
			f.pendData = make([]byte, 0, max(pendInitBytes, len(p.Data)))
		}
		f.pend = append(f.pend, pendingPacket{ts: ts, wire: p.Length, off: len(f.pendData), n: len(p.Data), fromLow: fromLow, flags: flags})
		f.pendData = append(f.pendData, p.Data...)
		f.pendBytes += n
		d.pendingBytes += n
		d.stats.PacketsMatched++
		return
	}
	d.stats.PacketsMatched++
	d.write(f, ts, p.Data, p.Length, fromLow, flags)
}

// closing records the first teardown of f (RST, or FIN from both sides).
func (d *Demux) closing(f *flow, reason string, ts time.Time) {
	if f.closeReason != "" {
		return
	}
	f.closeReason, f.closeAt = reason, ts
	if f.state == stateActive {
		f.state = stateClosing
	}
}

// write appends one frame to f's open part, rotating first when the part is full or
// too old.
func (d *Demux) write(f *flow, ts time.Time, data []byte, wire int, fromLow bool, flags uint8) {
	// A frame shorter than on the wire was cut before it reached the demux: by the
	// ring (a frame larger than a block) or by the capture a carved file came from.
	incomplete := wire > len(data)
	if len(data) > d.cfg.Snaplen {
		data, incomplete = data[:d.cfg.Snaplen], true
	}
	if wire < len(data) {
		wire = len(data)
	}
	if f.w != nil && f.st.packetsTotal > 0 {
		switch {
		case ts.Sub(f.st.start) >= d.cfg.MaxLifetime:
			d.closePart(f, ReasonLifetime, false)
		case int64(f.w.size()+f.w.recordSize(len(data))) > d.cfg.MaxSessionBytes:
			d.closePart(f, ReasonSize, false)
		}
	}
	if f.w == nil && !d.openPart(f) {
		return
	}
	fromClient := fromLow == f.clientLow
	if !f.seenAny {
		f.seenAny = true
		// A TCP session whose first packet is not the client's SYN was picked up in
		// the middle: its beginning is missing.
		if f.proto == ProtoTCP && !(fromClient && flags&(flagSYN|flagACK) == flagSYN) {
			f.st.incomplete = true
		}
	}
	before := f.w.size()
	if err := f.w.write(ts, data, wire, fromClient); err != nil {
		d.stats.WriteErrors++
		f.st.incomplete = true
		d.log.Error("capture: write packet", "session", f.id, "err", err)
		return
	}
	d.buffered += int64(f.w.size() - before)
	st := &f.st
	if st.packetsTotal == 0 {
		st.start = ts
	}
	st.end = ts
	st.packetsTotal++
	st.incomplete = st.incomplete || incomplete
	if fromClient {
		st.cPk++
		st.cB += int64(wire)
	} else {
		st.sPk++
		st.sB += int64(wire)
	}
	if d.buffered > d.cfg.MaxBufferedBytes {
		d.relieveMemory()
	}
}

// openPart starts the next part of f.
func (d *Demux) openPart(f *flow) bool {
	f.part++
	meta := partMeta{id: f.id, part: f.part, iface: d.cfg.Interface, snaplen: d.cfg.Snaplen}
	var err error
	if d.cfg.Format == FormatPCAPNG { // its interface block records the session's filter
		meta.filter, err = SessionFilter(f.tuple)
		meta.bytecode = meta.filter.Bytecode()
	}
	var w partWriter
	if err == nil {
		w, err = newPartWriter(d.cfg.Format, meta)
	}
	if err != nil {
		f.part--
		d.stats.WriteErrors++
		d.log.Error("capture: open part", "session", f.id, "err", err)
		return false
	}
	f.w = w
	f.st.drops, f.st.incomplete = f.carryDrops, f.carryIncomplete
	f.carryDrops, f.carryIncomplete = 0, false
	d.buffered += int64(w.size() + w.overhead())
	return true
}

// closePart completes f's open part (opening an empty one if none is open, so that a
// session always ends with a part marked Last) and queues it for emission.
func (d *Demux) closePart(f *flow, reason string, last bool) {
	if f.w == nil && !d.openPart(f) {
		return
	}
	st := f.st
	if !f.seenAny {
		st.incomplete = true // registered, but the capture never saw a packet
	}
	if st.packetsTotal == 0 {
		st.start, st.end = f.lastSeen, f.lastSeen
		if st.start.IsZero() {
			st.start, st.end = d.now, d.now
		}
	}
	// The session's filter is made from its tuple when a part is emitted, not kept
	// with every live session (an idle session should hold little but its packets).
	filter, ferr := SessionFilter(f.tuple)
	mem := f.w.size() + f.w.overhead()
	data, err := f.w.finish(&st)
	err = errors.Join(err, ferr)
	d.buffered -= int64(mem)
	f.w = nil
	f.st = partStats{}
	if err != nil {
		d.stats.WriteErrors++
		d.log.Error("capture: finish part", "session", f.id, "err", err)
		return
	}
	mime := MimePCAP
	if d.cfg.Format == FormatPCAPNG {
		mime = MimePCAPNG
	}
	d.stats.Finished++
	if last {
		d.stats.Sessions++
	}
	d.ready = append(d.ready, &Finished{
		ID: f.id, Tuple: f.tuple, Part: f.part, Last: last,
		Start: st.start, End: st.end, Reason: reason,
		ClientPackets: st.cPk, ServerPackets: st.sPk, ClientBytes: st.cB, ServerBytes: st.sB,
		Format: d.cfg.Format, MimeType: mime, PCAP: data, Filter: filter,
		Drops: st.drops, PossiblyIncomplete: st.incomplete || st.drops > 0,
	})
}

// relieveMemory emits the largest open parts early until the buffered bytes are below
// three quarters of MaxBufferedBytes. One sort per relief keeps it O(n log n) however
// many parts must go.
func (d *Demux) relieveMemory() {
	var open []*flow
	for _, f := range d.flows {
		if f.w != nil && f.st.packetsTotal > 0 {
			open = append(open, f)
		}
	}
	slices.SortFunc(open, func(a, b *flow) int { return b.w.size() - a.w.size() })
	for _, f := range open {
		if d.buffered <= d.cfg.MaxBufferedBytes/4*3 {
			return
		}
		d.closePart(f, ReasonSize, false)
	}
}

// finalize ends f: a registered session emits its last part, a pending flow becomes a
// probe.
func (d *Demux) finalize(f *flow, reason string) {
	if f.state == statePending {
		d.expirePending(f)
		return
	}
	d.closePart(f, reason, true)
	f.dead = true
	delete(d.flows, f.key)
	d.active--
}

func (d *Demux) expirePending(f *flow) {
	d.stats.ProbeFlows++
	d.pendingBytes -= f.pendBytes
	d.pending--
	f.pend, f.pendData, f.dead = nil, nil, true
	delete(d.flows, f.key)
	src, dst := f.high, f.low
	if f.firstFromLow {
		src, dst = f.low, f.high
	}
	if f.proto == ProtoTCP && f.firstFlags&(flagSYN|flagACK) == flagSYN|flagACK {
		src, dst = dst, src
	}
	d.noteProbe(src.addrPort(!f.v6).Addr(), dst.port, 1, f.packets, f.created, f.lastSeen)
}

func (d *Demux) noteProbe(src netip.Addr, port uint16, flows, packets int, first, last time.Time) {
	a := d.probes[src]
	if a == nil {
		if len(d.probes) >= d.cfg.MaxProbeSources {
			d.stats.ProbeSourcesDropped++
			return
		}
		a = &ProbeSummary{Source: src, First: first, Last: last}
		d.probes[src] = a
	}
	a.Flows += flows
	a.Packets += packets
	if first.Before(a.First) {
		a.First = first
	}
	if last.After(a.Last) {
		a.Last = last
	}
	if i, found := slices.BinarySearch(a.Ports, port); !found && len(a.Ports) < maxProbePorts {
		a.Ports = slices.Insert(a.Ports, i, port)
	}
}

// Register attaches the session id to the flow of t (the sensor calls it on Accept or
// a flow's first datagram). A pending flow is promoted with the packets it already
// buffered (SYN, SYN-ACK, ACK); if the capture has not seen the flow yet, the entry
// is created and takes the packets when they arrive. Registering the same tuple and
// id twice is a no-op.
func (d *Demux) Register(t Tuple, id string) error {
	n, err := t.Normalize()
	if err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("capture: register %v: empty session id", n)
	}
	key, clientLow := n.key()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	f := d.flows[key]
	if f != nil && f.state != statePending {
		if f.id == id {
			return nil
		}
		if f.state != stateClosing {
			d.stats.RegisterErrors++
			return fmt.Errorf("%w: %v", ErrAlreadyRegistered, n)
		}
		d.finalize(f, f.closeReason) // a closed connection's tuple is reused
		f = nil
	}
	if d.active >= d.cfg.MaxSessions {
		d.stats.RegisterErrors++
		return ErrTooManySessions
	}
	if f == nil {
		f = &flow{key: key, proto: n.Proto, v6: !n.Client.Addr().Is4(), lastSeen: d.now}
		f.low, f.high = endpointOf(n.Client), endpointOf(n.Server)
		if !clientLow {
			f.low, f.high = f.high, f.low
		}
		d.flows[key] = f
		d.pending++
	}
	d.promote(f, n, id, clientLow)
	return nil
}

// promote turns the pending flow f into a registered session and writes its buffer.
func (d *Demux) promote(f *flow, t Tuple, id string, clientLow bool) {
	d.pending--
	d.active++
	d.stats.Registered++
	f.id, f.tuple, f.clientLow = id, t, clientLow
	f.state = stateActive
	if f.closeReason != "" {
		f.state = stateClosing
	}
	pend, data := f.pend, f.pendData
	f.pend, f.pendData = nil, nil
	d.pendingBytes -= f.pendBytes
	f.pendBytes = 0
	for _, p := range pend {
		d.write(f, p.ts, data[p.off:p.off+p.n], p.wire, p.fromLow, p.flags)
	}
}

// Tick runs the timers: pending expiry, idle timeouts, linger, fragment ids. The
// sensor calls it about every 100 ms with the wall time; a replay calls it with packet
// time.
func (d *Demux) Tick(now time.Time) {
	d.mu.Lock()
	d.advance(now)
	for _, f := range d.flows {
		switch f.state {
		case statePending:
			if now.Sub(f.created) >= d.cfg.PendingTimeout {
				d.expirePending(f)
			}
		case stateActive:
			if f.lastSeen.IsZero() { // registered before any packet or time was seen
				f.lastSeen = now
			}
			idle := d.cfg.UDPIdle
			if f.proto == ProtoTCP {
				idle = d.cfg.TCPIdle
			}
			if now.Sub(f.lastSeen) >= idle {
				d.finalize(f, ReasonIdle)
			}
		case stateClosing:
			if !now.Before(f.closeAt.Add(d.cfg.Linger)) {
				d.finalize(f, f.closeReason)
			}
		}
	}
	for k, e := range d.frags {
		if e.f.dead || now.Sub(e.seen) >= fragTimeout {
			delete(d.frags, k)
		}
	}
	for k, ef := range d.early {
		if now.Sub(ef.first) >= fragTimeout {
			d.dropEarly(k, ef)
		}
	}
	d.mu.Unlock()
	d.flush()
}

// NoteDrops reports n kernel drops since the last call: every open session and pending
// flow is flagged PossiblyIncomplete and carries the count.
func (d *Demux) NoteDrops(n uint64) {
	if n == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.KernelDrops += n
	for _, f := range d.flows {
		if f.w != nil {
			f.st.drops += n
		} else {
			f.carryDrops += n
		}
	}
}

// Close finalizes every registered session (reason "shutdown", or "fin"/"rst" for one
// already in its linger), counts pending flows as probes and stops the Demux: later
// Handle calls are ignored and Register fails.
func (d *Demux) Close(now time.Time) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.advance(now)
	for _, f := range d.flows {
		reason := ReasonShutdown
		if f.state == stateClosing {
			reason = f.closeReason // it ended on packets; only the linger is cut short
		}
		d.finalize(f, reason)
	}
	clear(d.frags)
	for k, ef := range d.early {
		d.dropEarly(k, ef)
	}
	d.closed = true
	d.mu.Unlock()
	d.flush()
}

// Stats returns the counters.
func (d *Demux) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Pending, s.Active, s.BufferedBytes = d.pending, d.active, d.buffered+d.pendingBytes+d.earlyBytes
	return s
}

// Probes returns the probe summaries collected since the last call, by source
// address, and starts new ones. Call it at the rate the summaries should be reported
// (e.g. every 10 s); between two calls at most MaxProbeSources sources are kept.
func (d *Demux) Probes() []ProbeSummary {
	d.mu.Lock()
	probes := d.probes
	d.probes = make(map[netip.Addr]*ProbeSummary)
	d.mu.Unlock()
	out := make([]ProbeSummary, 0, len(probes))
	for _, a := range probes {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b ProbeSummary) int { return a.Source.Compare(b.Source) })
	return out
}

// flush hashes and emits the queued parts, in order, one emit call at a time.
func (d *Demux) flush() {
	d.emitMu.Lock()
	defer d.emitMu.Unlock()
	d.mu.Lock()
	ready := d.ready
	d.ready = nil
	d.mu.Unlock()
	for _, f := range ready {
		f.SHA256 = sha256.Sum256(f.PCAP)
		if d.emit != nil {
			d.emit(f)
		}
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
