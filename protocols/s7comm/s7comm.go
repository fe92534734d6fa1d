// Package s7comm emulates the S7 communication of a Siemens S7-1200/S7-300-class
// CPU on ISO-on-TCP (TPKT/COTP, port 102): COTP connection set-up, Setup
// Communication, SZL reads answered from the device persona, Read/Write Var on DB, M,
// I and Q memory shared by all sessions, and PLC Stop/Start.
package s7comm

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Name is the protocol name in the registry and in events.
const Name = "s7comm"

// Spec returns the registry entry of the S7comm emulator.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      Name,
		Transport: protocols.TCP,
		Port:      102,
		Service:   "iso-tsap",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc("s7comm", New),
	}
}

// Config is the s7comm section of a persona.
type Config struct {
	// MaxPDUSize is the largest S7 PDU the CPU negotiates in Setup Communication
	// (S7-1200 and S7-300 CPUs: 240; S7-400: 480; S7-1500: 960).
	MaxPDUSize int `yaml:"max_pdu_size"`
	// MaxTPDUSize is the largest COTP TPDU the CPU accepts (128..8192, a power of two).
	MaxTPDUSize int `yaml:"max_tpdu_size"`
	// MaxAmQ is the most parallel jobs (AmQ calling/called) the CPU grants.
	MaxAmQ int `yaml:"max_amq"`
	// MaxItems bounds the variables of one Read/Write Var job.
	MaxItems int `yaml:"max_items"`
	// CPUState is the operating mode at start: "run" or "stop".
	CPUState string `yaml:"cpu_state"`
	// Rack and Slots are the positions a called TSAP may address when CheckTSAP is set
	// (S7-1200: rack 0, slot 0 or 1; S7-300: rack 0, slot 2).
	Rack      int   `yaml:"rack"`
	Slots     []int `yaml:"slots"`
	CheckTSAP bool  `yaml:"check_tsap"`
	// ProtectionLevel is the valid protection level reported in SZL 0x0232 (1 = none).
	ProtectionLevel int `yaml:"protection_level"`
	// MaxConnections is reported in SZL 0x0131 index 1.
	MaxConnections int `yaml:"max_connections"`
	// ModuleTypeID is the BGTyp word of the SZL 0x0011 identification records.
	ModuleTypeID int `yaml:"module_type_id"`
	// MemoryCardSerial is SZL 0x001C index 8; empty when no card is plugged.
	MemoryCardSerial string `yaml:"memory_card_serial"`
	// Inputs, Outputs and Merkers are the sizes in bytes of the I, Q and M areas.
	Inputs  int `yaml:"inputs"`
	Outputs int `yaml:"outputs"`
	Merkers int `yaml:"merkers"`
	// DataBlocks lists the data blocks that exist.
	DataBlocks []DataBlock `yaml:"data_blocks"`
	// IdleTimeout closes a session that sends nothing (or no complete TPKT) for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxRequests closes a session after this many S7 PDUs (0 = no limit).
	MaxRequests int `yaml:"max_requests"`
}

// DataBlock is one data block of the CPU.
type DataBlock struct {
	Number int `yaml:"number"`
	Size   int `yaml:"size"`
	// Init is the hex-encoded initial content (shorter than Size: the rest is zero).
	Init string `yaml:"init"`
}

// NewConfig returns the defaults of an S7-1200 CPU running a small process program.
func NewConfig() *Config {
	return &Config{
		MaxPDUSize:      240,
		MaxTPDUSize:     1024,
		MaxAmQ:          3,
		MaxItems:        20,
		CPUState:        "run",
		Rack:            0,
		Slots:           []int{0, 1},
		CheckTSAP:       true,
		ProtectionLevel: 1,
		MaxConnections:  8,
		ModuleTypeID:    0x00C0,
		Inputs:          1024,
		Outputs:         1024,
		Merkers:         8192,
		DataBlocks: []DataBlock{
			// DB1 "Tank": level 63.2 %, setpoint 75.0 %, pump speed 1480 rpm, valve
			// open, auto mode, run hours 12,840.
			{Number: 1, Size: 128, Init: "427cccd0" + "42960000" + "05c8" + "0300" + "00003228"},
			// DB2 "Alarms" and DB3 "Recipe" buffers.
			{Number: 2, Size: 64},
			{Number: 3, Size: 256, Init: "000a" + "0014" + "41200000" + "42480000"},
		},
		IdleTimeout: 60 * time.Second,
		MaxRequests: 100000,
	}
}

const (
	maxAreaSize   = 1 << 16
	maxDataBlocks = 1024
	maxPDUBytes   = 1 << 14 // reassembled S7 PDU bound (several DT TPDUs)
	maxFragments  = 64
)

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.MaxPDUSize < 240 || c.MaxPDUSize > 960 {
		bad("max_pdu_size %d not in 240..960", c.MaxPDUSize)
	}
	if c.MaxTPDUSize < 128 || c.MaxTPDUSize > 8192 || c.MaxTPDUSize&(c.MaxTPDUSize-1) != 0 {
		bad("max_tpdu_size %d is not a power of two in 128..8192", c.MaxTPDUSize)
	}
	if c.MaxAmQ < 1 || c.MaxAmQ > 255 {
		bad("max_amq %d not in 1..255", c.MaxAmQ)
	}
	if c.MaxItems < 1 || c.MaxItems > 255 {
		bad("max_items %d not in 1..255", c.MaxItems)
	}
	if c.CPUState != "run" && c.CPUState != "stop" {
		bad("cpu_state %q is neither \"run\" nor \"stop\"", c.CPUState)
	}
	if c.Rack < 0 || c.Rack > 7 {
		bad("rack %d not in 0..7", c.Rack)
	}
	for _, s := range c.Slots {
		if s < 0 || s > 31 {
			bad("slot %d not in 0..31", s)
		}
	}
	if c.CheckTSAP && len(c.Slots) == 0 {
		bad("check_tsap needs at least one slot")
	}
	if c.ProtectionLevel < 1 || c.ProtectionLevel > 3 {
		bad("protection_level %d not in 1..3", c.ProtectionLevel)
	}
	if c.MaxConnections < 1 || c.MaxConnections > 0xFFFF {
		bad("max_connections %d out of range", c.MaxConnections)
	}
	if c.ModuleTypeID < 0 || c.ModuleTypeID > 0xFFFF {
		bad("module_type_id %d out of range", c.ModuleTypeID)
	}
	for name, n := range map[string]int{"inputs": c.Inputs, "outputs": c.Outputs, "merkers": c.Merkers} {
		if n < 0 || n > maxAreaSize {
			bad("%s %d not in 0..%d", name, n, maxAreaSize)
		}
	}
	if len(c.DataBlocks) > maxDataBlocks {
		bad("%d data_blocks, at most %d", len(c.DataBlocks), maxDataBlocks)
	}
	seen := map[int]bool{}
	for _, db := range c.DataBlocks {
		if db.Number < 1 || db.Number > 0xFFFF {
			bad("data block number %d not in 1..65535", db.Number)
		}
		if seen[db.Number] {
			bad("data block %d listed twice", db.Number)
		}
		seen[db.Number] = true
		if db.Size < 1 || db.Size > maxAreaSize {
			bad("DB%d size %d not in 1..%d", db.Number, db.Size, maxAreaSize)
		}
		b, err := hex.DecodeString(db.Init)
		if err != nil {
			bad("DB%d init: %v", db.Number, err)
		} else if len(b) > db.Size {
			bad("DB%d init is %d bytes, larger than its size %d", db.Number, len(b), db.Size)
		}
	}
	if c.IdleTimeout <= 0 {
		bad("idle_timeout must be positive")
	}
	if c.MaxRequests < 0 {
		bad("max_requests must not be negative")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: s7comm: %w", protocols.ErrConfig, err)
	}
	return nil
}

// Handler serves S7 sessions. Device state (memory, operating mode) is shared by all
// sessions of a handler.
type Handler struct {
	cfg  Config
	id   protocols.Identity
	now  func() time.Time
	boot time.Time
	dev  *device
	// bufs lends TPDU buffers (the largest TPKT body a session accepts) while a
	// packet is read and answered: an idle session holds none.
	bufs *protocols.BufferPool
}

var _ protocols.StreamHandler = (*Handler)(nil)

// New builds a handler from the persona's identity and cfg.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	env = env.WithDefaults()
	h := &Handler{cfg: *cfg, now: env.Now, boot: env.Boot, bufs: protocols.NewBufferPool(max(cfg.MaxTPDUSize, 1024))}
	h.cfg.Slots = slices.Clone(cfg.Slots)
	if env.Identity != nil {
		h.id = *env.Identity
	}
	h.dev = newDevice(&h.cfg, h.boot)
	return h, nil
}

// device is the CPU state shared by all sessions.
type device struct {
	mu          sync.Mutex
	running     bool
	modeChanged time.Time
	inputs      []byte
	outputs     []byte
	merkers     []byte
	dbs         map[int][]byte
	nextRef     uint16
	nextSeq     byte
	nextDURN    byte
}

func newDevice(c *Config, boot time.Time) *device {
	d := &device{
		running:     c.CPUState == "run",
		modeChanged: boot,
		inputs:      make([]byte, c.Inputs),
		outputs:     make([]byte, c.Outputs),
		merkers:     make([]byte, c.Merkers),
		dbs:         make(map[int][]byte, len(c.DataBlocks)),
		nextRef:     uint16(rand.IntN(0xFF00)) + 1,
		nextSeq:     byte(rand.IntN(200)) + 1,
		nextDURN:    byte(rand.IntN(200)) + 1,
	}
	for _, db := range c.DataBlocks {
		b := make([]byte, db.Size)
		init, _ := hex.DecodeString(db.Init) // validated
		copy(b, init)
		d.dbs[db.Number] = b
	}
	return d
}

// allocRef returns a new non-zero COTP source reference.
func (d *device) allocRef() uint16 { return allocNonZero(&d.mu, &d.nextRef) }

// allocSeq returns a new non-zero userdata sequence number.
func (d *device) allocSeq() byte { return allocNonZero(&d.mu, &d.nextSeq) }

// allocDURN returns a new non-zero data unit reference number.
func (d *device) allocDURN() byte { return allocNonZero(&d.mu, &d.nextDURN) }

// allocNonZero advances the counter *next, skipping 0, under mu and returns it.
func allocNonZero[T uint8 | uint16](mu *sync.Mutex, next *T) T {
	mu.Lock()
	defer mu.Unlock()
	*next++
	if *next == 0 {
		*next = 1
	}
	return *next
}

func (d *device) state() (bool, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running, d.modeChanged
}

// setRunning changes the operating mode; it reports false when the CPU already is in
// the requested mode.
func (d *device) setRunning(run bool, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running == run {
		return false
	}
	d.running = run
	d.modeChanged = now
	return true
}

// area returns the memory of an area (nil, false when it does not exist). The caller
// holds d.mu.
func (d *device) area(code byte, db uint16) ([]byte, bool) {
	switch code {
	case AreaInputs:
		return d.inputs, true
	case AreaOutputs:
		return d.outputs, true
	case AreaMerkers:
		return d.merkers, true
	case AreaDB, AreaDI:
		b, ok := d.dbs[int(db)]
		return b, ok
	}
	return nil, false
}

// ServeStream serves one ISO-on-TCP connection.
func (h *Handler) ServeStream(ctx context.Context, s protocols.Session, conn net.Conn) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	c := &session{
		h:    h,
		s:    s,
		conn: conn,
	}
	err := c.serve()
	// The peer hanging up, resetting or going silent ends a session normally.
	if err == nil || protocols.PeerGone(err) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("s7comm: %w", err)
}

// session is one connection's protocol state.
type session struct {
	h    *Handler
	s    protocols.Session
	conn net.Conn
	hdr  [TPKTHeaderLen]byte

	connected bool
	localRef  uint16
	peerRef   uint16
	tpduSize  int
	pduSize   int // 0 until Setup Communication
	requests  int

	assembly  []byte
	fragments int

	// pending holds the rest of a fragmented SZL answer.
	pending struct {
		seq, durn byte
		id, index uint16
		data      []byte
	}
}

// errClose ends a session without an error (the device drops the connection).
var errClose = errors.New("close")

func (c *session) serve() error {
	hdr := c.hdr[:]
	for {
		// One deadline per TPKT: a packet must arrive completely within the idle
		// timeout, however slowly its bytes trickle in.
		if err := c.conn.SetReadDeadline(time.Now().Add(c.h.cfg.IdleTimeout)); err != nil {
			return err
		}
		if _, err := io.ReadFull(c.conn, hdr); err != nil {
			return err
		}
		n, err := ParseTPKTHeader(hdr)
		if err != nil {
			c.emitMalformed("tpkt", err, hdr)
			return nil
		}
		if n > c.maxTPKT() {
			c.emitMalformed("tpkt_too_long", ErrBadLength, hdr)
			return nil
		}
		if err := c.readAndHandle(n - TPKTHeaderLen); err != nil {
			if errors.Is(err, errClose) {
				return nil
			}
			return err
		}
	}
}

// readAndHandle reads a TPDU of n bytes into a buffer borrowed from the handler's pool
// (n is at most maxTPKT, which the pool's buffers hold) and handles it; nothing keeps
// the buffer after (events and reassembly copy what they keep).
func (c *session) readAndHandle(n int) error {
	bp := c.h.bufs.Get()
	defer c.h.bufs.Put(bp)
	buf := (*bp)[:n]
	if _, err := io.ReadFull(c.conn, buf); err != nil {
		return err
	}
	return c.handleTPDU(buf)
}

// maxTPKT bounds an incoming TPKT: the negotiated TPDU size, with slack up to 1024
// octets for clients that ignore it (and for DTs sent before any CR, which are
// answered with a DR).
func (c *session) maxTPKT() int {
	return TPKTHeaderLen + max(c.tpduSize, 1024)
}

func (c *session) write(b []byte) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.h.cfg.IdleTimeout)); err != nil {
		return err
	}
	_, err := c.conn.Write(b)
	return err
}

func (c *session) emit(e protocols.Event) {
	e.Time = c.h.now()
	e.Protocol = Name
	e.Unit = -1
	c.s.Emit(e)
}

func (c *session) emitMalformed(layer string, err error, b []byte) {
	if len(b) > 64 {
		b = b[:64]
	}
	c.emit(protocols.Event{Op: "malformed", Data: slices.Clone(b), Detail: map[string]string{"layer": layer, "error": err.Error()}})
}

func (c *session) handleTPDU(b []byte) error {
	t, err := ParseTPDU(b)
	if err != nil {
		c.emitMalformed("cotp", err, b)
		return errClose
	}
	switch t.Code {
	case TPDUConnRequest:
		return c.handleCR(t)
	case TPDUData:
		if !c.connected {
			return c.refuseData()
		}
		return c.handleDT(t)
	case TPDUDisconnRequest:
		return c.disconnect(t)
	default:
		return c.rejectTPDU(t)
	}
}

// The rare branches of the request path are methods of their own: every frame on the
// path adds to the stack that each idle session's goroutine keeps, and an event
// literal in a branch takes its room in the frame whether the branch runs or not.

// refuseData answers data on a transport connection that does not exist.
func (c *session) refuseData() error {
	c.emit(protocols.Event{Op: "cotp_data_unconnected", Code: TPDUData, Exception: ReasonProtocolError})
	_ = c.write(AppendTPKT(nil, AppendDisconnectRequest(nil, 0, c.h.dev.allocRef(), ReasonProtocolError)))
	return errClose
}

// disconnect confirms a disconnect request and ends the session.
func (c *session) disconnect(t TPDU) error {
	c.emit(protocols.Event{Op: "cotp_disconnect", Code: TPDUDisconnRequest})
	if len(t.Header) >= 6 {
		src := uint16(t.Header[4])<<8 | uint16(t.Header[5])
		_ = c.write(AppendTPKT(nil, AppendDisconnectConfirm(nil, src, c.localRef)))
	}
	return errClose
}

// rejectTPDU answers a TPDU class 0 does not know (it knows CR, CC, DR, DT and ER) with
// an ER TPDU (ISO 8073 §6.22); the connection stays as it is.
func (c *session) rejectTPDU(t TPDU) error {
	c.emit(protocols.Event{Op: "cotp_invalid_tpdu", Code: int(t.Code), Exception: RejectInvalidTPDUType})
	return c.write(AppendTPKT(nil, AppendErrorTPDU(nil, c.peerRef, RejectInvalidTPDUType, t.Header)))
}

// unsupported answers a job or userdata the CPU refuses (Ack 0x8104), with why.
func (c *session) unsupported(h Header, code int, why string) []byte {
	c.emit(protocols.Event{Op: "unsupported_function", Code: code, Exception: 0x8104, Detail: map[string]string{"error": why}})
	return c.ack(h.PDURef, 0x81, 0x04)
}

func tsapString(b []byte) string {
	if b == nil {
		return ""
	}
	printable := len(b) > 2
	for _, ch := range b {
		if ch < 0x20 || ch > 0x7E {
			printable = false
		}
	}
	if printable {
		return string(b)
	}
	return hex.EncodeToString(b)
}

func (c *session) handleCR(t TPDU) error {
	ev := protocols.Event{Op: "cotp_connect", Code: TPDUConnRequest, Detail: map[string]string{}}
	if c.connected {
		// A second CR on an established connection is a protocol error.
		ev.Exception = ReasonProtocolError
		ev.Detail["error"] = "already connected"
		c.emit(ev)
		_ = c.write(AppendTPKT(nil, AppendDisconnectRequest(nil, c.peerRef, c.localRef, ReasonProtocolError)))
		return errClose
	}
	cr, err := ParseConnRequest(t.Header)
	if err != nil || len(t.Data) > 0 {
		// Parameter encoding errors are answered with an ER TPDU that quotes the header;
		// class 0 CRs carry no user data.
		if err == nil {
			err = ErrBadTPDU
		}
		ev.Exception = RejectInvalidParamVal
		ev.Detail["error"] = err.Error()
		c.emit(ev)
		return c.write(AppendTPKT(nil, AppendErrorTPDU(nil, cr.SrcRef, RejectInvalidParamVal, t.Header)))
	}
	ev.Detail["tsap_src"] = tsapString(cr.CallingTSAP)
	ev.Detail["tsap_dst"] = tsapString(cr.CalledTSAP)
	ev.Detail["src_ref"] = strconv.Itoa(int(cr.SrcRef))
	if ok, why := c.acceptTSAP(cr.CalledTSAP); !ok {
		ev.Exception = ReasonNormal
		ev.Detail["error"] = why
		c.emit(ev)
		_ = c.write(AppendTPKT(nil, AppendDisconnectRequest(nil, cr.SrcRef, c.h.dev.allocRef(), ReasonNormal)))
		return errClose
	}
	maxCode := byte(7)
	for 1<<(maxCode+1) <= c.h.cfg.MaxTPDUSize {
		maxCode++
	}
	code := cr.TPDUSizeCode
	if code > maxCode {
		code = maxCode
	}
	c.tpduSize = 128 // ISO 8073 default when the CR has no TPDU size
	if code != 0 {
		c.tpduSize = TPDUSizeFromCode(code)
	}
	c.localRef = c.h.dev.allocRef()
	c.peerRef = cr.SrcRef
	c.connected = true
	ev.Quantity = c.tpduSize
	ev.Detail["tpdu_size"] = strconv.Itoa(c.tpduSize)
	c.emit(ev)
	return c.write(AppendTPKT(nil, AppendConnConfirm(nil, cr.SrcRef, c.localRef, code, cr.CallingTSAP, cr.CalledTSAP)))
}

// acceptTSAP checks a called TSAP against the configured rack and slots. Two-byte
// TSAPs are connection type + rack<<5|slot; longer ones (TIA's string TSAPs) name a
// service rather than a position and are accepted.
func (c *session) acceptTSAP(called []byte) (bool, string) {
	if !c.h.cfg.CheckTSAP {
		return true, ""
	}
	if called == nil {
		return false, "no called TSAP"
	}
	if len(called) != 2 {
		return true, ""
	}
	rack, slot := int(called[1]>>5), int(called[1]&0x1F)
	if rack != c.h.cfg.Rack || !slices.Contains(c.h.cfg.Slots, slot) {
		return false, fmt.Sprintf("no module at rack %d slot %d", rack, slot)
	}
	return true, ""
}

func (c *session) handleDT(t TPDU) error {
	eot, data, err := ParseDataTPDU(t)
	if err != nil {
		return c.rejectDT(t)
	}
	if len(c.assembly)+len(data) > maxPDUBytes || c.fragments >= maxFragments {
		c.emitMalformed("cotp_reassembly", ErrBadLength, nil)
		return errClose
	}
	c.assembly = append(c.assembly, data...)
	c.fragments++
	if !eot {
		return nil
	}
	pdu := c.assembly
	c.assembly = c.assembly[:0]
	c.fragments = 0
	if len(pdu) == 0 {
		return nil // an empty DT acknowledges nothing in class 0
	}
	c.requests++
	if c.h.cfg.MaxRequests > 0 && c.requests > c.h.cfg.MaxRequests {
		return c.requestLimit()
	}
	resp, err := c.handlePDU(pdu)
	if err != nil || len(resp) == 0 {
		return err
	}
	return c.write(resp)
}

// rejectDT answers a DT TPDU with a bad parameter with an ER TPDU.
func (c *session) rejectDT(t TPDU) error {
	c.emit(protocols.Event{Op: "cotp_invalid_tpdu", Code: TPDUData, Exception: RejectInvalidParamVal})
	return c.write(AppendTPKT(nil, AppendErrorTPDU(nil, c.peerRef, RejectInvalidParamVal, t.Header)))
}

// requestLimit ends a session at its request limit.
func (c *session) requestLimit() error {
	c.emit(protocols.Event{Op: "session_limit", Detail: map[string]string{"max_requests": strconv.Itoa(c.h.cfg.MaxRequests)}})
	return errClose
}

// sendPDU frames an S7 PDU into DT TPDUs of the negotiated size.
func (c *session) frame(pdu []byte) []byte {
	return AppendDataPackets(nil, pdu, c.tpduSize)
}

// ack answers a job with a bare Ack carrying an error class/code, the way S7 CPUs
// reject frames they cannot process (oversized or inconsistent PDUs, unknown
// functions): ROSCTR 2, no parameter, no data.
func (c *session) ack(ref uint16, class, code byte) []byte {
	return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRAck, PDURef: ref, ErrClass: class, ErrCode: code}, nil, nil))
}

func (c *session) handlePDU(pdu []byte) ([]byte, error) {
	h, params, data, err := ParseHeader(pdu)
	switch {
	case errors.Is(err, ErrBadProtocolID), errors.Is(err, ErrShortFrame):
		// Not S7comm (S7comm-plus, garbage): the CPU drops the connection.
		c.emitMalformed("s7", err, pdu)
		return nil, errClose
	case err != nil:
		c.emitMalformed("s7", err, pdu)
		return c.ack(h.PDURef, 0x81, 0x04), nil
	}
	if c.pduSize != 0 && len(pdu) > c.pduSize {
		// Longer than the negotiated PDU: S7-1200 CPUs answer Ack 0x8104.
		c.emitMalformed("s7_pdu_too_long", ErrBadLength, pdu[:10])
		return c.ack(h.PDURef, 0x81, 0x04), nil
	}
	switch h.ROSCTR {
	case ROSCTRJob:
		return c.handleJob(h, params, data), nil
	case ROSCTRUserdata:
		if c.pduSize == 0 {
			return c.unsupported(h, ROSCTRUserdata, "no setup communication"), nil
		}
		return c.handleUserdata(h, params, data), nil
	default:
		// Acks and unknown PDU types sent to a server are ignored.
		c.unexpected(h)
		return nil, nil
	}
}

func (c *session) unexpected(h Header) {
	c.emit(protocols.Event{Op: "unexpected_pdu", Code: int(h.ROSCTR)})
}

func (c *session) handleJob(h Header, params, data []byte) []byte {
	if len(params) == 0 {
		return c.unsupported(h, -1, "empty parameter")
	}
	fn := params[0]
	if fn == FuncSetupComm {
		return c.setupComm(h, params)
	}
	if c.pduSize == 0 {
		return c.unsupported(h, int(fn), "no setup communication")
	}
	switch fn {
	case FuncReadVar:
		return c.readVar(h, params, data)
	case FuncWriteVar:
		return c.writeVar(h, params, data)
	case FuncPLCStop:
		return c.plcStop(h, params)
	case FuncPIService:
		return c.piService(h, params)
	}
	return c.unsupportedJob(h, fn)
}

// unsupportedJob refuses a job function the emulator does not serve (Ack 0x8104); the
// download functions count as writes.
func (c *session) unsupportedJob(h Header, fn byte) []byte {
	c.emit(protocols.Event{Op: "unsupported_function", Code: int(fn), Exception: 0x8104, Write: fn >= FuncReqDownload && fn <= FuncDownloadEnd})
	return c.ack(h.PDURef, 0x81, 0x04)
}

func (c *session) setupComm(h Header, params []byte) []byte {
	s, err := ParseSetup(params)
	if err != nil {
		return c.badSetup(h, err)
	}
	req := s
	pdu := min(int(s.PDUSize), c.h.cfg.MaxPDUSize)
	if pdu < 240 {
		pdu = min(240, c.h.cfg.MaxPDUSize) // S7 CPUs do not go below 240
	}
	s.PDUSize = uint16(pdu)
	amq := uint16(c.h.cfg.MaxAmQ)
	s.AmQCalling = max(1, min(s.AmQCalling, amq))
	s.AmQCalled = max(1, min(s.AmQCalled, amq))
	c.pduSize = pdu
	c.emit(protocols.Event{Op: "setup_communication", Code: FuncSetupComm, Quantity: pdu, Detail: map[string]string{
		"pdu_requested":       strconv.Itoa(int(req.PDUSize)),
		"amq_calling":         strconv.Itoa(int(req.AmQCalling)),
		"amq_called":          strconv.Itoa(int(req.AmQCalled)),
		"pdu_size_negotiated": strconv.Itoa(pdu),
	}})
	return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: h.PDURef}, AppendSetup(nil, s), nil))
}

func (c *session) badSetup(h Header, err error) []byte {
	c.emit(protocols.Event{Op: "setup_communication", Code: FuncSetupComm, Exception: 0x8104, Detail: map[string]string{"error": err.Error()}})
	return c.ack(h.PDURef, 0x81, 0x04)
}

// areaName names an area in events: "DB1", "M", "I", "Q"...
func areaName(it Item) string {
	switch it.Area {
	case AreaInputs:
		return "I"
	case AreaOutputs:
		return "Q"
	case AreaMerkers:
		return "M"
	case AreaDB:
		return "DB" + strconv.Itoa(int(it.DB))
	case AreaDI:
		return "DI" + strconv.Itoa(int(it.DB))
	case AreaPeripheral:
		return "P"
	case AreaLocal:
		return "L"
	case AreaCounter:
		return "C"
	case AreaTimer:
		return "T"
	}
	return fmt.Sprintf("area_0x%02x", it.Area)
}

// locate checks an S7ANY item against the device memory and returns the byte range it
// addresses, or an item return code. The caller holds dev.mu.
func (c *session) locate(it Item) (mem []byte, start, size int, ret byte) {
	if it.Syntax != syntaxS7ANY {
		return nil, 0, 0, RetInvalidDataType
	}
	es := ElementSize(it.TransportSize)
	if es == 0 || it.TransportSize == TSCounter || it.TransportSize == TSTimer {
		return nil, 0, 0, RetInvalidDataType
	}
	mem, ok := c.h.dev.area(it.Area, it.DB)
	if !ok {
		return nil, 0, 0, RetObjectNotExist
	}
	size = es * int(it.Count)
	if it.TransportSize == TSBit {
		if it.Count != 1 {
			return nil, 0, 0, RetAddressOutOfRange
		}
	} else if it.Bit() != 0 {
		return nil, 0, 0, RetAddressOutOfRange
	}
	start = it.ByteAddress()
	if size == 0 || start+size > len(mem) {
		return nil, 0, 0, RetAddressOutOfRange
	}
	return mem, start, size, RetSuccess
}

func itemEvent(op string, fn byte, i int, it Item) protocols.Event {
	e := protocols.Event{Op: op, Code: int(fn), Area: areaName(it), Detail: map[string]string{
		"item":           strconv.Itoa(i),
		"transport_size": fmt.Sprintf("0x%02x", it.TransportSize),
	}}
	if it.Syntax != syntaxS7ANY {
		e.Area = ""
		e.Detail["syntax_id"] = fmt.Sprintf("0x%02x", it.Syntax)
		return e
	}
	e.Address = it.ByteAddress()
	e.Quantity = int(it.Count)
	if it.TransportSize == TSBit {
		e.Detail["bit"] = strconv.Itoa(it.Bit())
	}
	return e
}

func (c *session) readVar(h Header, params, data []byte) []byte {
	items, err := ParseVarItems(params, c.h.cfg.MaxItems)
	if err != nil || len(data) != 0 {
		if err == nil {
			err = ErrBadItem
		}
		c.emit(protocols.Event{Op: "read_var", Code: FuncReadVar, Exception: 0x8104, Detail: map[string]string{"error": err.Error()}})
		return c.ack(h.PDURef, 0x81, 0x04)
	}
	out := make([]DataItem, len(items))
	events := make([]protocols.Event, len(items))
	c.h.dev.mu.Lock()
	for i, it := range items {
		events[i] = itemEvent("read_var", FuncReadVar, i, it)
		mem, start, size, ret := c.locate(it)
		if ret != RetSuccess {
			out[i] = DataItem{ReturnCode: ret, TransportSize: DTSNull}
			events[i].Exception = int(ret)
			continue
		}
		var v []byte
		if it.TransportSize == TSBit {
			v = []byte{(mem[start] >> it.Bit()) & 1}
		} else {
			v = slices.Clone(mem[start : start+size])
		}
		out[i] = DataItem{ReturnCode: RetSuccess, TransportSize: ResponseTransportSize(it.TransportSize), Data: v}
	}
	c.h.dev.mu.Unlock()
	if 12+2+DataItemsLen(out) > c.pduSize {
		// The answer would not fit the negotiated PDU: the CPU refuses the whole job
		// with error class 0x85 (error on supplies).
		for _, e := range events {
			e.Exception = 0x8500
			c.emit(e)
		}
		return c.ack(h.PDURef, 0x85, 0x00)
	}
	for _, e := range events {
		c.emit(e)
	}
	resp := AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: h.PDURef},
		[]byte{FuncReadVar, byte(len(items))}, AppendDataItems(nil, out))
	return c.frame(resp)
}

// writeSize converts the length of a write data item to bytes and checks it against
// the item.
func writeMatches(it Item, d DataItem, size int) bool {
	switch d.TransportSize {
	case DTSBit:
		return it.TransportSize == TSBit && len(d.Data) == 1
	case DTSByte, DTSInt, DTSReal, DTSOctetStr:
		return it.TransportSize != TSBit && len(d.Data) == size
	}
	return false
}

func (c *session) writeVar(h Header, params, data []byte) []byte {
	items, err := ParseVarItems(params, c.h.cfg.MaxItems)
	var values []DataItem
	if err == nil {
		values, err = ParseDataItems(data, len(items))
	}
	if err != nil {
		c.emit(protocols.Event{Op: "write_var", Code: FuncWriteVar, Exception: 0x8104, Write: true, Detail: map[string]string{"error": err.Error()}})
		return c.ack(h.PDURef, 0x81, 0x04)
	}
	codes := make([]byte, len(items))
	c.h.dev.mu.Lock()
	for i, it := range items {
		e := itemEvent("write_var", FuncWriteVar, i, it)
		e.Write = true
		e.Data = slices.Clone(values[i].Data)
		mem, start, size, ret := c.locate(it)
		if ret == RetSuccess && !writeMatches(it, values[i], size) {
			ret = RetDataTypeMismatch
		}
		if ret == RetSuccess {
			if it.TransportSize == TSBit {
				mask := byte(1) << it.Bit()
				if values[i].Data[0]&1 != 0 {
					mem[start] |= mask
				} else {
					mem[start] &^= mask
				}
			} else {
				copy(mem[start:start+size], values[i].Data)
			}
		} else {
			e.Exception = int(ret)
		}
		codes[i] = ret
		c.emit(e)
	}
	c.h.dev.mu.Unlock()
	return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: h.PDURef},
		[]byte{FuncWriteVar, byte(len(items))}, codes))
}

var pProgram = []byte("P_PROGRAM")

func (c *session) plcStop(h Header, params []byte) []byte {
	pi, err := ParsePLCStop(params)
	if err != nil || string(pi.Name) != string(pProgram) {
		e := protocols.Event{Op: "plc_stop", Code: FuncPLCStop, Exception: 0x8104, Write: true, Detail: map[string]string{}}
		if err != nil {
			e.Detail["error"] = err.Error()
		} else {
			e.Detail["service"] = string(pi.Name)
		}
		c.emit(e)
		return c.ack(h.PDURef, 0x81, 0x04)
	}
	e := protocols.Event{Op: "plc_stop", Code: FuncPLCStop, Write: true, Detail: map[string]string{"service": string(pi.Name)}}
	if !c.h.dev.setRunning(false, c.h.now()) {
		// Already in STOP: error 0x8404 with parameter 29 07, as S7-300 CPUs answer.
		e.Exception = 0x8404
		c.emit(e)
		return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: h.PDURef, ErrClass: 0x84, ErrCode: 0x04},
			[]byte{FuncPLCStop, 0x07}, nil))
	}
	c.emit(e)
	return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: h.PDURef}, []byte{FuncPLCStop}, nil))
}

func (c *session) piService(h Header, params []byte) []byte {
	pi, err := ParsePIService(params)
	if err != nil {
		c.emit(protocols.Event{Op: "pi_service", Code: FuncPIService, Exception: 0x8104, Write: true, Detail: map[string]string{"error": err.Error()}})
		return c.ack(h.PDURef, 0x81, 0x04)
	}
	name := string(pi.Name)
	detail := map[string]string{"service": name}
	if len(pi.Param) > 0 {
		detail["argument"] = string(pi.Param)
	}
	switch name {
	case string(pProgram):
		mode := "warm"
		if strings.HasPrefix(string(pi.Param), "C") {
			mode = "cold"
		}
		detail["start"] = mode
		e := protocols.Event{Op: "plc_start", Code: FuncPIService, Write: true, Detail: detail}
		if !c.h.dev.setRunning(true, c.h.now()) {
			e.Exception = 0x8404
			c.emit(e)
			return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: h.PDURef, ErrClass: 0x84, ErrCode: 0x04},
				[]byte{FuncPIService, 0x03}, nil))
		}
		c.emit(e)
		return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: h.PDURef}, []byte{FuncPIService}, nil))
	case "_MODU", "_GARB":
		// Copy RAM to ROM and compress memory succeed on any CPU.
		c.emit(protocols.Event{Op: "pi_service", Code: FuncPIService, Write: true, Detail: detail})
		return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: h.PDURef}, []byte{FuncPIService}, nil))
	}
	// Block insert/delete and the rest: the function cannot be performed.
	c.emit(protocols.Event{Op: "pi_service", Code: FuncPIService, Write: true, Exception: 0x8404, Detail: detail})
	return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: h.PDURef, ErrClass: 0x84, ErrCode: 0x04},
		[]byte{FuncPIService, 0x02}, nil))
}

// userdataResponse builds a userdata answer with the long parameter form.
func (c *session) userdataResponse(h Header, req UserdataParam, seq, durn, lastDU byte, errCode uint16, data []byte) []byte {
	p := AppendUserdataParam(nil, UserdataParam{
		Method: UDMethodResponse, Type: UDTypeResponse, Group: req.Group, SubFunc: req.SubFunc,
		Seq: seq, DURN: durn, LastDU: lastDU, ErrorCode: errCode, Long: true,
	})
	return c.frame(AppendPDU(nil, Header{ROSCTR: ROSCTRUserdata, PDURef: h.PDURef}, p, data))
}

var errData = []byte{RetObjectNotExist, DTSNull, 0, 0}

func (c *session) handleUserdata(h Header, params, data []byte) []byte {
	u, err := ParseUserdataParam(params)
	if err != nil || u.Type != UDTypeRequest {
		if err == nil {
			err = ErrBadUserdata
		}
		c.emitMalformed("s7_userdata", err, params)
		return c.ack(h.PDURef, 0x81, 0x04)
	}
	switch {
	case u.Group == GroupCPU && u.SubFunc == SubReadSZL:
		return c.readSZL(h, u, data)
	case u.Group == GroupTime && u.SubFunc == SubReadClock:
		c.emit(protocols.Event{Op: "read_clock", Code: int(u.Group)<<8 | int(u.SubFunc)})
		now := c.h.now()
		clock := []byte{0x00, byte((now.Year()/1000)<<4 | (now.Year()/100)%10)}
		clock = AppendBCD(clock, now)
		return c.userdataResponse(h, u, c.h.dev.allocSeq(), 0, 0, UDErrNone, AppendUserdataData(nil, RetSuccess, clock))
	}
	c.emit(protocols.Event{Op: "unsupported_function", Code: int(u.Group)<<8 | int(u.SubFunc), Exception: UDErrNotImplemented, Detail: map[string]string{
		"function_group": strconv.Itoa(int(u.Group)),
		"subfunction":    strconv.Itoa(int(u.SubFunc)),
	}})
	return c.userdataResponse(h, u, u.Seq, 0, 0, UDErrNotImplemented, errData)
}

func (c *session) readSZL(h Header, u UserdataParam, data []byte) []byte {
	code := int(u.Group)<<8 | int(u.SubFunc)
	if u.Method == UDMethodResponse && u.Long {
		// Follow-up request for the next fragment of an earlier answer.
		p := &c.pending
		if p.data == nil || u.Seq != p.seq {
			c.emit(protocols.Event{Op: "read_szl", Code: code, Exception: UDErrSZLUnavailable, Detail: map[string]string{"error": "no pending fragment"}})
			return c.userdataResponse(h, u, u.Seq, 0, 0, UDErrSZLUnavailable, errData)
		}
		chunk, last := c.szlChunk(p.data)
		p.data = p.data[len(chunk):]
		lastDU, durn := byte(0x01), p.durn
		if last {
			lastDU, p.data = 0x00, nil
		}
		c.emit(protocols.Event{Op: "read_szl", Code: code, Area: "SZL", Address: int(p.id), Quantity: int(p.index), Detail: map[string]string{
			"szl_id": fmt.Sprintf("0x%04x", p.id), "szl_index": fmt.Sprintf("0x%04x", p.index), "fragment": "continuation",
		}})
		return c.userdataResponse(h, u, p.seq, durn, lastDU, UDErrNone, AppendUserdataData(nil, RetSuccess, chunk))
	}
	req, err := ParseSZLRequest(data)
	if err != nil {
		c.emit(protocols.Event{Op: "read_szl", Code: code, Exception: UDErrSZLUnavailable, Detail: map[string]string{"error": err.Error()}})
		return c.userdataResponse(h, u, u.Seq, 0, 0, UDErrSZLUnavailable, errData)
	}
	ev := protocols.Event{Op: "read_szl", Code: code, Area: "SZL", Address: int(req.ID), Quantity: int(req.Index), Detail: map[string]string{
		"szl_id": fmt.Sprintf("0x%04x", req.ID), "szl_index": fmt.Sprintf("0x%04x", req.Index),
	}}
	list, ok := c.h.szl(req.ID, req.Index, c.pduSize)
	if !ok {
		ev.Exception = UDErrSZLUnavailable
		c.emit(ev)
		return c.userdataResponse(h, u, u.Seq, 0, 0, UDErrSZLUnavailable, errData)
	}
	c.emit(ev)
	seq := c.h.dev.allocSeq()
	chunk, last := c.szlChunk(list)
	if last {
		c.pending.data = nil
		return c.userdataResponse(h, u, seq, 0, 0, UDErrNone, AppendUserdataData(nil, RetSuccess, chunk))
	}
	// More data follows: keep the rest for the follow-up requests.
	durn := c.h.dev.allocDURN()
	c.pending.seq, c.pending.durn, c.pending.id, c.pending.index = seq, durn, req.ID, req.Index
	c.pending.data = list[len(chunk):]
	return c.userdataResponse(h, u, seq, durn, 0x01, UDErrNone, AppendUserdataData(nil, RetSuccess, chunk))
}

// szlChunk returns the part of an SZL answer that fits one userdata PDU: header 10,
// parameter 12, data header 4.
func (c *session) szlChunk(b []byte) ([]byte, bool) {
	n := c.pduSize - 26
	if len(b) <= n {
		return b, true
	}
	return b[:n], false
}

// ---------------------------------------------------------------------------
// System status lists (SZL) answered from the persona.

// szlIDs are the partial lists this CPU answers, in the order a CPU lists them (by
// the low byte of the ID, then the extract type).
var szlIDs = []uint16{0x0000, 0x0F00, 0x0011, 0x0111, 0x0F11, 0x001C, 0x011C, 0x0F1C, 0x0424, 0x0131, 0x0132, 0x0232}

// versionParts parses "V4.5.2", "4.5", "E-Stand 3"... into up to three numbers.
func versionParts(s string) [3]int {
	var v [3]int
	i := 0
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		if i == len(v) {
			break
		}
		n, err := strconv.Atoi(f)
		if err != nil || n > 255 {
			n = 255
		}
		v[i] = n
		i++
	}
	return v
}

// identRecords returns the module identification records (SZL 0x0011): 1 module,
// 6 basic hardware, 7 basic firmware.
func (h *Handler) identRecords() map[uint16][]byte {
	hw := versionParts(h.id.Hardware)
	fw := versionParts(h.id.Firmware)
	typ := uint16(h.cfg.ModuleTypeID)
	mlfb := h.id.OrderNumber
	hwAusbg, hwAusbe := uint16(hw[0]), uint16(hw[1])
	return map[uint16][]byte{
		0x0001: AppendIdentRecord(nil, 0x0001, mlfb, typ, hwAusbg, hwAusbe),
		0x0006: AppendIdentRecord(nil, 0x0006, mlfb, typ, hwAusbg, hwAusbe),
		0x0007: AppendIdentRecord(nil, 0x0007, "", typ, uint16('V')<<8|uint16(fw[0]), uint16(fw[1])<<8|uint16(fw[2])),
	}
}

var identIndexes = []uint16{0x0001, 0x0006, 0x0007}

// componentRecord builds one SZL 0x001C record (index + 32 bytes).
func (h *Handler) componentRecord(index uint16) ([]byte, bool) {
	r := AppendU16(make([]byte, 0, compRecordLen), index)
	text := func(s string, n int) []byte {
		r = AppendPadded(r, s, n, 0)
		return AppendPadded(r, "", compRecordLen-len(r), 0)
	}
	switch index {
	case 0x0001: // name of the automation system
		name := h.id.ModuleName
		if name == "" {
			name = h.id.Hostname
		}
		return text(name, 24), true
	case 0x0002: // name of the module
		return text(h.id.Model, 24), true
	case 0x0003: // plant designation
		return text(h.id.PlantID, 32), true
	case 0x0004: // copyright
		return text(h.id.Copyright, 26), true
	case 0x0005: // serial number of the module
		return text(h.id.Serial, 24), true
	case 0x0007: // module type name
		typ := h.id.Model
		if typ == "" {
			typ = h.id.Product
		}
		return text(typ, 32), true
	case 0x0008: // serial number of the memory card
		return text(h.cfg.MemoryCardSerial, 32), true
	case 0x0009: // manufacturer (Siemens, PROFIBUS/PROFINET id 0x002A) and profile
		r = AppendU16(r, 0x002A)
		r = AppendU16(r, 0xF600)
		r = AppendU16(r, 0x0001)
		return text("", 0), true
	case 0x000A: // OEM copyright, OEM id, OEM additional id: none
		return text("", 0), true
	case 0x000B: // location designation
		return text(h.id.Location, 32), true
	}
	return nil, false
}

var componentIndexes = []uint16{0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0007, 0x0008, 0x0009, 0x000A, 0x000B}

// Communication capability and status records are 40 bytes with the index.
const commRecordLen = 40

func (h *Handler) commCapRecord(index uint16, pdu int) ([]byte, bool) {
	r := AppendU16(make([]byte, 0, commRecordLen), index)
	switch index {
	case 0x0001: // general communication data
		r = AppendU16(r, uint16(h.cfg.MaxPDUSize))
		r = AppendU16(r, uint16(h.cfg.MaxConnections))
		r = AppendU32(r, 12_000_000)  // max. rate of the MPI/DP interface, bit/s
		r = AppendU32(r, 187_500)     // max. rate of the communication bus, bit/s
		r = AppendU32(r, 100_000_000) // PROFINET interface, bit/s
	case 0x0002: // test and commissioning functions
		r = append(r, 0xBE, 0xFD, 0x4F, 0x00, 0x00, 0x00, 0x00, 0x00) // functions supported
		r = AppendU16(r, 0x0800)                                      // trigger events
		r = AppendU16(r, 0)
		r = AppendU16(r, 60) // max. blocks for "block status"
		r = AppendU16(r, 0x0108)
	case 0x0003: // operator interface functions
		r = AppendU32(r, 0x7FFC8301)           // functions supported
		r = AppendU16(r, uint16(pdu))          // max. consistently readable data
		r = AppendU16(r, 16)                   // max. variables for cyclic reading
		r = AppendU16(r, 1)                    // min. cycle (x 100 ms)
		r = AppendU16(r, uint16(h.cfg.MaxAmQ)) // parallel jobs
	default:
		return nil, false
	}
	return AppendPadded(r, "", commRecordLen-len(r), 0), true
}

// protectionRecord is SZL 0x0232/0x0132 index 4: protection levels and mode selector.
func (h *Handler) protectionRecord(running bool) []byte {
	r := AppendU16(make([]byte, 0, commRecordLen), 0x0004)
	param := 0
	if h.cfg.ProtectionLevel > 1 {
		param = h.cfg.ProtectionLevel
	}
	mode := uint16(1) // RUN
	if !running {
		mode = 3 // STOP
	}
	r = AppendU16(r, 1)                             // protection level of the mode selector
	r = AppendU16(r, uint16(param))                 // assigned protection level (0: no password)
	r = AppendU16(r, uint16(h.cfg.ProtectionLevel)) // valid protection level
	r = AppendU16(r, mode)                          // mode selector setting
	r = AppendU16(r, 2)                             // startup switch: warm restart
	return AppendPadded(r, "", commRecordLen-len(r), 0)
}

// modeRecord is SZL 0x0424: the current mode transition. bzu-id 0x08 is RUN, 0x04
// STOP (what status clients compare against).
func (h *Handler) modeRecord(running bool, changed time.Time) []byte {
	r := make([]byte, 0, 20)
	if running {
		r = append(r, 0x43, 0x02, 0xFF, 0x08) // event: STARTUP -> RUN
	} else {
		r = append(r, 0x43, 0x04, 0xFF, 0x04) // event: STOP by programming device
	}
	r = append(r, 0, 0, 0, 0, 0, 0, 0, 0)
	return AppendBCD(r, changed)
}

// szl returns the partial list for an SZL-ID and index (SZL header + records), false
// when the CPU does not know it.
func (h *Handler) szl(id, index uint16, pdu int) ([]byte, bool) {
	list := func(recLen int, recs ...[]byte) []byte {
		b := AppendSZLHeader(nil, id, index, recLen, len(recs))
		for _, r := range recs {
			b = append(b, r...)
		}
		return b
	}
	switch id {
	case 0x0000:
		recs := make([][]byte, len(szlIDs))
		for i, v := range szlIDs {
			recs[i] = AppendU16(nil, v)
		}
		return list(2, recs...), true
	case 0x0F00:
		return AppendSZLHeader(nil, id, index, 2, len(szlIDs)), true
	case 0x0011:
		recs := h.identRecords()
		return list(idRecordLen, recs[0x0001], recs[0x0006], recs[0x0007]), true
	case 0x0111:
		r, ok := h.identRecords()[index]
		if !ok {
			return nil, false
		}
		return list(idRecordLen, r), true
	case 0x0F11:
		return AppendSZLHeader(nil, id, 0, idRecordLen, len(identIndexes)), true
	case 0x001C:
		recs := make([][]byte, 0, len(componentIndexes))
		for _, i := range componentIndexes {
			r, _ := h.componentRecord(i)
			recs = append(recs, r)
		}
		return list(compRecordLen, recs...), true
	case 0x011C:
		r, ok := h.componentRecord(index)
		if !ok {
			return nil, false
		}
		return list(compRecordLen, r), true
	case 0x0F1C:
		return AppendSZLHeader(nil, id, 0, compRecordLen, len(componentIndexes)), true
	case 0x0131:
		r, ok := h.commCapRecord(index, pdu)
		if !ok {
			return nil, false
		}
		return list(commRecordLen, r), true
	case 0x0132, 0x0232:
		if index != 0x0004 {
			return nil, false
		}
		running, _ := h.dev.state()
		return list(commRecordLen, h.protectionRecord(running)), true
	case 0x0424:
		running, changed := h.dev.state()
		return list(20, h.modeRecord(running, changed)), true
	}
	return nil, false
}
