// Package dnp3 emulates a DNP3 (IEEE 1815) outstation over TCP: the data link layer
// with CRC-checked frames and link services, transport reassembly and segmentation,
// and an application layer serving static and event reads, device attributes,
// controls (CROB and analog outputs with select/operate), time, restarts and
// unsolicited-reporting control, with internal indications as a real outstation sets
// them.
package dnp3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

const protoName = "dnp3"

// Spec returns the registry entry of the DNP3 emulator.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      protoName,
		Transport: protocols.TCP,
		Port:      20000,
		Service:   "dnp",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc(protoName, New),
	}
}

// Config is the persona's DNP3 section.
type Config struct {
	// Address is the outstation's link address (0..65519).
	Address uint16 `yaml:"address"`
	// MasterAddress, when not 0, is the only master the outstation answers.
	MasterAddress uint16 `yaml:"master_address"`
	// KeepAlive is the link-status keep-alive: after this long without a frame the
	// outstation sends REQUEST_LINK_STATUS, and closes after twice as long.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// SelectTimeout is how long a SELECT stays valid for its OPERATE.
	SelectTimeout time.Duration `yaml:"select_timeout"`
	// ConfirmTimeout is how long an unsolicited response waits for its confirmation.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	// ScanInterval is how often point changes are turned into events.
	ScanInterval time.Duration `yaml:"scan_interval"`
	// MaxFragment is the largest application fragment received and sent (249..2048+).
	MaxFragment int `yaml:"max_fragment"`
	// EventBuffer is the number of buffered events per master connection.
	EventBuffer int `yaml:"event_buffer"`
	// NeedTime sets IIN1.4 after start-up until the master writes the time.
	NeedTime bool `yaml:"need_time"`
	// ColdRestartDelay and WarmRestartDelay are reported in g52v2 (at most 65.535 s).
	ColdRestartDelay time.Duration `yaml:"cold_restart_delay"`
	WarmRestartDelay time.Duration `yaml:"warm_restart_delay"`
	// StaticVariations are the variations of class 0 and variation-0 reads.
	StaticVariations StaticVariations `yaml:"static_variations"`

	BinaryInputs  []BinaryInput  `yaml:"binary_inputs"`
	BinaryOutputs []BinaryOutput `yaml:"binary_outputs"`
	Counters      []Counter      `yaml:"counters"`
	AnalogInputs  []AnalogInput  `yaml:"analog_inputs"`
	AnalogOutputs []AnalogOutput `yaml:"analog_outputs"`
}

// StaticVariations selects the default static variation per point type.
type StaticVariations struct {
	BinaryInput  byte `yaml:"binary_input"`  // g1: 1 packed, 2 with flags
	BinaryOutput byte `yaml:"binary_output"` // g10: 1 packed, 2 with flags
	Counter      byte `yaml:"counter"`       // g20: 1, 2, 5, 6
	AnalogInput  byte `yaml:"analog_input"`  // g30: 1..6
	AnalogOutput byte `yaml:"analog_output"` // g40: 1..4
}

// BinaryInput is a g1 point; Class 1..3 makes changes events (g2), 0 none.
type BinaryInput struct {
	Name  string `yaml:"name"`
	Value bool   `yaml:"value"`
	Class int    `yaml:"class"`
}

// BinaryOutput is a g10 point controlled by g12v1; its changes are g11 events.
type BinaryOutput struct {
	Name  string `yaml:"name"`
	Value bool   `yaml:"value"`
	Class int    `yaml:"class"`
	// FeedbackInput is the index of a binary input that follows the output.
	FeedbackInput *int `yaml:"feedback_input"`
}

// Counter is a g20 point growing by Rate per hour since boot.
type Counter struct {
	Name  string  `yaml:"name"`
	Value float64 `yaml:"value"`
	Rate  float64 `yaml:"rate"`
}

// AnalogInput is a g30 point. Behaviour "wave" moves it by ±Amplitude with Period;
// a change of Deadband makes a g32 event of Class.
type AnalogInput struct {
	Name      string        `yaml:"name"`
	Value     float64       `yaml:"value"`
	Behaviour string        `yaml:"behaviour"`
	Amplitude float64       `yaml:"amplitude"`
	Period    time.Duration `yaml:"period"`
	Deadband  float64       `yaml:"deadband"`
	Class     int           `yaml:"class"`
}

// AnalogOutput is a g40 point set by g41; Min < Max bounds accepted values.
type AnalogOutput struct {
	Name  string  `yaml:"name"`
	Value float64 `yaml:"value"`
	Min   float64 `yaml:"min"`
	Max   float64 `yaml:"max"`
	// FeedbackInput is the index of an analog input that takes the set value.
	FeedbackInput *int `yaml:"feedback_input"`
}

func intp(i int) *int { return &i }

// NewConfig returns the defaults: a pole-top recloser controller / feeder RTU.
func NewConfig() *Config {
	return &Config{
		Address:          10,
		KeepAlive:        60 * time.Second,
		SelectTimeout:    10 * time.Second,
		ConfirmTimeout:   5 * time.Second,
		ScanInterval:     time.Second,
		MaxFragment:      2048,
		EventBuffer:      100,
		NeedTime:         true,
		ColdRestartDelay: 5 * time.Second,
		WarmRestartDelay: 2 * time.Second,
		StaticVariations: StaticVariations{BinaryInput: 2, BinaryOutput: 2, Counter: 1, AnalogInput: 1, AnalogOutput: 1},
		BinaryInputs: []BinaryInput{
			{Name: "Breaker closed (52a)", Value: true, Class: 1},
			{Name: "Closing spring charged", Value: true, Class: 1},
			{Name: "Reclose enabled", Value: true, Class: 1},
			{Name: "Protection trip", Class: 1},
			{Name: "Ground fault detected", Class: 1},
			{Name: "Local control selected", Class: 1},
			{Name: "Cabinet door open", Class: 2},
			{Name: "Battery low", Class: 2},
		},
		BinaryOutputs: []BinaryOutput{
			{Name: "Breaker trip/close", Value: true, Class: 1, FeedbackInput: intp(0)},
			{Name: "Reclose enable", Value: true, Class: 1, FeedbackInput: intp(2)},
			{Name: "Ground trip block", Class: 1},
			{Name: "Hot line tag", Class: 1},
		},
		Counters: []Counter{
			{Name: "Breaker operations", Value: 412},
			{Name: "Fault trips", Value: 17},
			{Name: "Energy delivered kWh", Value: 5834112, Rate: 2100},
		},
		AnalogInputs: []AnalogInput{
			{Name: "Phase A current A", Value: 212, Behaviour: "wave", Amplitude: 28, Period: 11 * time.Minute, Deadband: 10, Class: 2},
			{Name: "Phase B current A", Value: 205, Behaviour: "wave", Amplitude: 26, Period: 13 * time.Minute, Deadband: 10, Class: 2},
			{Name: "Phase C current A", Value: 219, Behaviour: "wave", Amplitude: 30, Period: 12 * time.Minute, Deadband: 10, Class: 2},
			{Name: "Neutral current A", Value: 7, Behaviour: "wave", Amplitude: 3, Period: 5 * time.Minute, Deadband: 5, Class: 2},
			{Name: "Voltage AB V", Value: 12470, Behaviour: "wave", Amplitude: 60, Period: 17 * time.Minute, Deadband: 100, Class: 2},
			{Name: "Active power kW", Value: 4300, Behaviour: "wave", Amplitude: 550, Period: 13 * time.Minute, Deadband: 200, Class: 2},
			{Name: "Frequency 0.01 Hz", Value: 6000, Behaviour: "wave", Amplitude: 3, Period: 3 * time.Minute},
			{Name: "Battery voltage 0.1 V", Value: 268, Behaviour: "wave", Amplitude: 2, Period: 2 * time.Hour},
			{Name: "Cabinet temperature degC", Value: 31, Behaviour: "wave", Amplitude: 4, Period: 6 * time.Hour, Deadband: 5, Class: 3},
			{Name: "Minimum trip current set point A", Value: 400},
		},
		AnalogOutputs: []AnalogOutput{
			{Name: "Minimum trip current A", Value: 400, Min: 50, Max: 1200, FeedbackInput: intp(9)},
			{Name: "Reclose interval s", Value: 5, Min: 1, Max: 180},
		},
	}
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: dnp3: %s", protocols.ErrConfig, fmt.Sprintf(format, args...))
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Address > 0xFFEF {
		return configError("address %d: must be 0..65519", c.Address)
	}
	if c.MasterAddress > 0xFFEF {
		return configError("master_address %d: must be 0..65519", c.MasterAddress)
	}
	if c.KeepAlive <= 0 || c.SelectTimeout <= 0 || c.ConfirmTimeout <= 0 || c.ScanInterval <= 0 {
		return configError("keep_alive, select_timeout, confirm_timeout and scan_interval must be positive")
	}
	if c.MaxFragment < MaxSegment || c.MaxFragment > 65536 {
		return configError("max_fragment %d: must be %d..65536", c.MaxFragment, MaxSegment)
	}
	if c.EventBuffer < 1 || c.EventBuffer > 10000 {
		return configError("event_buffer %d: must be 1..10000", c.EventBuffer)
	}
	for _, d := range []time.Duration{c.ColdRestartDelay, c.WarmRestartDelay} {
		if d < 0 || d > 65535*time.Millisecond {
			return configError("restart delays must be 0..65.535s")
		}
	}
	v := c.StaticVariations
	if v.BinaryInput < 1 || v.BinaryInput > 2 || v.BinaryOutput < 1 || v.BinaryOutput > 2 ||
		(v.Counter != 1 && v.Counter != 2 && v.Counter != 5 && v.Counter != 6) ||
		v.AnalogInput < 1 || v.AnalogInput > 6 || v.AnalogOutput < 1 || v.AnalogOutput > 4 {
		return configError("static_variations %+v: unsupported variation", v)
	}
	const maxPoints = 1024
	if len(c.BinaryInputs) > maxPoints || len(c.BinaryOutputs) > maxPoints || len(c.Counters) > maxPoints ||
		len(c.AnalogInputs) > maxPoints || len(c.AnalogOutputs) > maxPoints {
		return configError("at most %d points per type", maxPoints)
	}
	class := func(kind string, i, cl int) error {
		if cl < 0 || cl > 3 {
			return configError("%s[%d]: class %d: must be 0..3", kind, i, cl)
		}
		return nil
	}
	for i, p := range c.BinaryInputs {
		if err := class("binary_inputs", i, p.Class); err != nil {
			return err
		}
	}
	for i, p := range c.BinaryOutputs {
		if err := class("binary_outputs", i, p.Class); err != nil {
			return err
		}
		if p.FeedbackInput != nil && (*p.FeedbackInput < 0 || *p.FeedbackInput >= len(c.BinaryInputs)) {
			return configError("binary_outputs[%d]: feedback_input %d is not a binary input", i, *p.FeedbackInput)
		}
	}
	for i, p := range c.AnalogInputs {
		if err := class("analog_inputs", i, p.Class); err != nil {
			return err
		}
		switch p.Behaviour {
		case "", "static":
		case "wave":
			if p.Period <= 0 {
				return configError("analog_inputs[%d]: behaviour wave needs a positive period", i)
			}
		default:
			return configError("analog_inputs[%d]: unknown behaviour %q", i, p.Behaviour)
		}
		if p.Deadband < 0 {
			return configError("analog_inputs[%d]: negative deadband", i)
		}
	}
	for i, p := range c.AnalogOutputs {
		if p.FeedbackInput != nil && (*p.FeedbackInput < 0 || *p.FeedbackInput >= len(c.AnalogInputs)) {
			return configError("analog_outputs[%d]: feedback_input %d is not an analog input", i, *p.FeedbackInput)
		}
	}
	return nil
}

// Handler serves DNP3 connections; the device state is shared by all of them.
type Handler struct {
	env protocols.Env
	cfg Config
	dev *device
}

var _ protocols.StreamHandler = (*Handler)(nil)

// New validates cfg and builds the handler.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if env.Logger == nil {
		return nil, fmt.Errorf("%w: dnp3: env has no logger", protocols.ErrConfig)
	}
	env = env.WithDefaults()
	if env.Identity == nil {
		env.Identity = &protocols.Identity{}
	}
	c := *cfg
	h := &Handler{env: env, cfg: c, dev: newDevice(&c, env)}
	if n := h.dev.class0Size(); n+4 > c.MaxFragment {
		return nil, configError("class 0 response of %d octets exceeds max_fragment %d", n+4, c.MaxFragment)
	}
	return h, nil
}

// ---------------------------------------------------------------------------------
// Per-connection link and transport layers.

const (
	// maxLinkFrame is the longest link frame on the wire (10 + 250 + 16 CRCs).
	maxLinkFrame = 292
	// maxBadFrameEvents bounds the bad_frame events of one session.
	maxBadFrameEvents = 16
)

var errClose = errors.New("dnp3: connection closed by outstation")

type session struct {
	h    *Handler
	s    protocols.Session
	nc   net.Conn
	cfg  *Config
	rnow func() time.Time

	master    uint16 // address of the last master served
	hasMaster bool
	lastRecv  time.Time
	keepSent  time.Time // REQUEST_LINK_STATUS outstanding since
	nextScan  time.Time
	badFrames int

	// link layer secondary state
	linkReset   bool
	expectedFCB bool

	// transport reassembly
	rx       []byte
	rxActive bool
	rxSeq    byte
	txSeq    byte

	app appState
	out []byte
}

// ServeStream runs one DNP3 TCP connection.
func (h *Handler) ServeStream(ctx context.Context, s protocols.Session, nc net.Conn) error {
	ss := &session{h: h, s: s, nc: nc, cfg: &h.cfg, rnow: time.Now}
	ss.lastRecv = ss.rnow()
	ss.nextScan = ss.lastRecv.Add(h.cfg.ScanInterval)
	ss.app.init(h)
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Now()) })
	defer stop()

	buf := make([]byte, 0, 2*maxLinkFrame)
	rd := make([]byte, 2*maxLinkFrame)
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := nc.SetReadDeadline(ss.deadline()); err != nil {
			return fmt.Errorf("dnp3: set deadline: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		n, rerr := nc.Read(rd[:cap(buf)-len(buf)])
		if n > 0 {
			buf = append(buf, rd[:n]...)
			var err error
			if buf, err = ss.frames(buf); err != nil {
				ss.flush() // the answer that preceded the close (cold restart)
				return peerGone(err)
			}
		}
		if err := ss.timers(); err != nil {
			return peerGone(err)
		}
		if err := ss.flush(); err != nil {
			return peerGone(err)
		}
		if rerr != nil {
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() {
				continue
			}
			if err := peerGone(rerr); err != nil {
				return fmt.Errorf("dnp3: read: %w", err)
			}
			return nil
		}
	}
}

// peerGone maps a normal end of the TCP session (protocols.PeerGone, or the
// outstation's own close) to nil.
func peerGone(err error) error {
	if errors.Is(err, errClose) || protocols.PeerGone(err) {
		return nil
	}
	return err
}

func (ss *session) emit(e protocols.Event) {
	e.Time = ss.h.env.Now()
	e.Protocol = protoName
	ss.s.Emit(e)
}

func (ss *session) deadline() time.Time {
	d := ss.lastRecv.Add(ss.cfg.KeepAlive)
	if !ss.keepSent.IsZero() {
		d = ss.keepSent.Add(ss.cfg.KeepAlive)
	}
	if ss.nextScan.Before(d) {
		d = ss.nextScan
	}
	if t, ok := ss.app.confirmDeadline(); ok && t.Before(d) {
		d = t
	}
	return d
}

func (ss *session) timers() error {
	now := ss.rnow()
	switch {
	case !ss.keepSent.IsZero() && !now.Before(ss.keepSent.Add(ss.cfg.KeepAlive)):
		ss.emit(protocols.Event{Op: "keep_alive_timeout", Unit: int(ss.cfg.Address)})
		return errClose
	case ss.keepSent.IsZero() && !now.Before(ss.lastRecv.Add(ss.cfg.KeepAlive)):
		if !ss.hasMaster {
			// Nobody ever spoke DNP3 on this connection: nothing to keep alive.
			ss.emit(protocols.Event{Op: "keep_alive_timeout", Unit: int(ss.cfg.Address)})
			return errClose
		}
		ss.out = AppendLinkFrame(ss.out, ctrlPRM|LinkRequestLinkStatus, ss.master, ss.cfg.Address, nil)
		ss.keepSent = now
	}
	if !now.Before(ss.nextScan) {
		ss.nextScan = now.Add(ss.cfg.ScanInterval)
		ss.app.scan(ss)
	}
	ss.app.confirmTimers(ss, now)
	return nil
}

func (ss *session) flush() error {
	if len(ss.out) == 0 {
		return nil
	}
	if err := ss.nc.SetWriteDeadline(ss.rnow().Add(ss.cfg.KeepAlive)); err != nil {
		return fmt.Errorf("dnp3: set write deadline: %w", err)
	}
	_, err := ss.nc.Write(ss.out)
	ss.out = ss.out[:0]
	if err != nil {
		return fmt.Errorf("dnp3: write: %w", err)
	}
	return nil
}

func (ss *session) badFrame(reason string, err error) {
	if ss.badFrames >= maxBadFrameEvents {
		return
	}
	ss.badFrames++
	ss.emit(protocols.Event{Op: "bad_frame", Unit: -1, Detail: map[string]string{"reason": reason, "error": err.Error()}})
}

// frames handles every complete link frame in buf and returns the remainder.
func (ss *session) frames(buf []byte) ([]byte, error) {
	for len(buf) > 0 {
		f, n, err := ParseLinkFrame(buf)
		switch {
		case errors.Is(err, ErrShortFrame):
			return buf, nil
		case errors.Is(err, ErrBadStart):
			// Resynchronise on the next 0x05 0x64 (a trailing 0x05 may start one).
			i := 1
			for i < len(buf) && !(buf[i] == 0x05 && (i+1 == len(buf) || buf[i+1] == 0x64)) {
				i++
			}
			ss.badFrame("sync", fmt.Errorf("%w: %d octets skipped", err, i))
			buf = buf[:copy(buf, buf[i:])]
			continue
		case errors.Is(err, ErrHeaderCRC), errors.Is(err, ErrBadLength):
			ss.badFrame("header", err)
			buf = buf[:copy(buf, buf[2:])]
			continue
		case errors.Is(err, ErrDataCRC):
			ss.badFrame("data_crc", err)
			buf = buf[:copy(buf, buf[n:])]
			continue
		case err != nil:
			return nil, err
		}
		buf = buf[:copy(buf, buf[n:])]
		if err := ss.link(f); err != nil {
			return nil, err
		}
		if err := ss.flush(); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// broadcast reports whether dest is one of the broadcast addresses.
func broadcast(dest uint16) bool { return dest >= 0xFFFD }

// link runs the secondary station of the data link layer for one frame.
func (ss *session) link(f LinkFrame) error {
	bcast := broadcast(f.Dest)
	if f.Dest != ss.cfg.Address && !bcast {
		return nil // another outstation's frame: silently ignored
	}
	if ss.cfg.MasterAddress != 0 && f.Src != ss.cfg.MasterAddress {
		return nil
	}
	if f.Src > 0xFFEF {
		return nil // a reserved or broadcast source address is invalid
	}
	ss.lastRecv = ss.rnow()
	ss.keepSent = time.Time{}
	if !f.Primary() {
		return nil // LINK_STATUS/ACK answering our keep-alive
	}
	ss.master, ss.hasMaster = f.Src, true
	reply := func(fn byte) {
		if !bcast {
			ss.out = AppendLinkFrame(ss.out, fn, f.Src, ss.cfg.Address, nil)
		}
	}
	fcb := f.Control&ctrlFCB != 0
	fcv := f.Control&ctrlFCV != 0
	ev := protocols.Event{Unit: int(f.Dest), Code: int(f.Func()),
		Detail: map[string]string{"src": strconv.Itoa(int(f.Src))}}
	switch f.Func() {
	case LinkResetLinkStates:
		ss.linkReset, ss.expectedFCB = true, true
		ev.Op = "reset_link_states"
		ss.emit(ev)
		reply(LinkAck)
	case LinkTestLinkStates:
		ev.Op = "test_link_states"
		ss.emit(ev)
		if ss.linkReset && fcv && fcb == ss.expectedFCB {
			ss.expectedFCB = !ss.expectedFCB
		}
		reply(LinkAck)
	case LinkRequestLinkStatus:
		ev.Op = "request_link_status"
		ss.emit(ev)
		reply(LinkStatus)
	case LinkConfirmedData:
		if !ss.linkReset {
			ev.Op = "confirmed_user_data"
			ev.Detail["reason"] = "link_not_reset"
			ss.emit(ev)
			reply(LinkNack)
			return nil
		}
		reply(LinkAck)
		if fcv && fcb != ss.expectedFCB {
			return nil // a repetition: acknowledged again, not passed up
		}
		ss.expectedFCB = !ss.expectedFCB
		return ss.transport(f, bcast)
	case LinkUnconfirmedData:
		return ss.transport(f, bcast)
	default:
		ev.Op = "unsupported_link_function"
		ss.emit(ev)
		reply(LinkNotSupported)
	}
	return nil
}

// transport reassembles application fragments from segments.
func (ss *session) transport(f LinkFrame, bcast bool) error {
	if len(f.Data) < 1 {
		return nil
	}
	hdr, seg := f.Data[0], f.Data[1:]
	seq := hdr & 0x3F
	switch {
	case hdr&tpFIR != 0:
		ss.rx = ss.rx[:0]
		ss.rxActive = true
	case !ss.rxActive || seq != ss.rxSeq:
		// Out of sequence or no fragment under way: the segment and any partial
		// fragment are discarded.
		ss.rxActive = false
		ss.rx = ss.rx[:0]
		return nil
	}
	if len(ss.rx)+len(seg) > ss.cfg.MaxFragment {
		ss.rxActive = false
		ss.rx = ss.rx[:0]
		ss.badFrame("fragment_too_long", fmt.Errorf("dnp3: fragment over %d octets", ss.cfg.MaxFragment))
		return nil
	}
	ss.rx = append(ss.rx, seg...)
	ss.rxSeq = (seq + 1) & 0x3F
	if hdr&tpFIN == 0 {
		return nil
	}
	ss.rxActive = false
	frag := append([]byte(nil), ss.rx...)
	ss.rx = ss.rx[:0]
	return ss.app.request(ss, f.Src, f.Dest, bcast, frag)
}

// send segments an application fragment into link frames to the master.
func (ss *session) send(frag []byte) {
	ss.out, ss.txSeq = AppendSegments(ss.out, ctrlPRM|LinkUnconfirmedData, ss.master, ss.cfg.Address, ss.txSeq, frag)
}
