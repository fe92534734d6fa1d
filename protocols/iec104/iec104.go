// Package iec104 emulates the controlled station (outstation) of an IEC 60870-5-104
// substation RTU: APCI framing with k/w flow control and t1/t2/t3 timers, station and
// group interrogation, counter interrogation, read, clock synchronisation, test and
// reset-process commands, and select/execute single, double and set-point commands
// whose effect is visible in later interrogations and as spontaneous transmissions.
package iec104

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

const protoName = "iec104"

// Spec returns the registry entry of the IEC 60870-5-104 emulator.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      protoName,
		Transport: protocols.TCP,
		Port:      2404,
		Service:   "iec-104",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc(protoName, New),
	}
}

// Config is the persona's IEC 104 section.
type Config struct {
	// CommonAddress is the station's common address of ASDU (1..65534).
	CommonAddress uint16 `yaml:"common_address"`
	// K is the maximum number of unacknowledged I-frames the station sends; W the
	// number of received I-frames after which it acknowledges at the latest.
	K int `yaml:"k"`
	W int `yaml:"w"`
	// T0 is the connection establishment time-out. A controlled station only listens,
	// so it is kept for the persona's parameter set and checked against t1.
	T0 time.Duration `yaml:"t0"`
	// T1 is the time-out of sent I-frames and TESTFR act, T2 the acknowledgement
	// delay, T3 the idle time after which the station sends TESTFR act.
	T1 time.Duration `yaml:"t1"`
	T2 time.Duration `yaml:"t2"`
	T3 time.Duration `yaml:"t3"`
	// SelectTimeout is how long a select stays valid for its execute.
	SelectTimeout time.Duration `yaml:"select_timeout"`
	// ScanInterval is how often changed points are transmitted spontaneously.
	ScanInterval time.Duration `yaml:"scan_interval"`
	// Points are the monitored information objects; Commands the control objects.
	Points   []Point   `yaml:"points"`
	Commands []Command `yaml:"commands"`
}

// Point is one monitored information object.
type Point struct {
	IOA uint32 `yaml:"ioa"`
	// Type is the mnemonic: M_SP_NA_1, M_DP_NA_1, M_ME_NA_1, M_ME_NB_1, M_ME_NC_1,
	// M_IT_NA_1, or a time-tagged form (M_SP_TB_1, M_DP_TB_1, M_ME_TD_1, M_ME_TE_1,
	// M_ME_TF_1, M_IT_TB_1) used for spontaneous and read transmissions; interrogation
	// replies always use the form without time tag.
	Type string `yaml:"type"`
	Name string `yaml:"name"`
	// Group is the interrogation group (1..16; 1..4 for counters), 0 for none.
	Group int `yaml:"group"`
	// Value is the initial value: 0/1 single point, 1 off / 2 on double point, the
	// fraction for normalized, the engineering value otherwise.
	Value float64 `yaml:"value"`
	// Behaviour is "static" (default), "wave" (Value ± Amplitude with Period) or, for
	// counters, "counter" (Rate increments per hour since boot).
	Behaviour string        `yaml:"behaviour"`
	Amplitude float64       `yaml:"amplitude"`
	Period    time.Duration `yaml:"period"`
	Rate      float64       `yaml:"rate"`
	// Deadband is the change that triggers a spontaneous transmission of a
	// measurement; 0 disables it. Binary points are always sent on change.
	Deadband float64 `yaml:"deadband"`
}

// Command is one control object.
type Command struct {
	IOA uint32 `yaml:"ioa"`
	// Type is C_SC_NA_1, C_DC_NA_1, C_SE_NA_1, C_SE_NB_1 or C_SE_NC_1.
	Type string `yaml:"type"`
	Name string `yaml:"name"`
	// Feedback is the IOA of the point the command changes (0: none).
	Feedback uint32 `yaml:"feedback_ioa"`
	// SelectBeforeOperate refuses an execute that was not selected first.
	SelectBeforeOperate bool `yaml:"select_before_operate"`
	// Min and Max bound set-point values when Min < Max.
	Min float64 `yaml:"min"`
	Max float64 `yaml:"max"`
}

// NewConfig returns the defaults: a 20 kV feeder substation RTU with two bays.
func NewConfig() *Config {
	return &Config{
		CommonAddress: 1,
		K:             12,
		W:             8,
		T0:            30 * time.Second,
		T1:            15 * time.Second,
		T2:            10 * time.Second,
		T3:            20 * time.Second,
		SelectTimeout: 10 * time.Second,
		ScanInterval:  time.Second,
		Points: []Point{
			{IOA: 1001, Type: "M_SP_TB_1", Name: "Bay 1 protection trip", Group: 1},
			{IOA: 1002, Type: "M_SP_TB_1", Name: "Bay 1 protection pickup", Group: 1},
			{IOA: 1003, Type: "M_SP_TB_1", Name: "Bay 2 protection trip", Group: 1},
			{IOA: 1004, Type: "M_SP_TB_1", Name: "Transformer Buchholz alarm", Group: 1},
			{IOA: 1005, Type: "M_SP_TB_1", Name: "Battery charger fault", Group: 1},
			{IOA: 1006, Type: "M_SP_TB_1", Name: "Local/remote switch in remote", Group: 1, Value: 1},
			{IOA: 1007, Type: "M_SP_TB_1", Name: "Autoreclose in service", Group: 1, Value: 1},
			{IOA: 2001, Type: "M_DP_TB_1", Name: "Bay 1 circuit breaker Q0", Group: 2, Value: 2},
			{IOA: 2002, Type: "M_DP_TB_1", Name: "Bay 1 busbar disconnector Q1", Group: 2, Value: 2},
			{IOA: 2003, Type: "M_DP_TB_1", Name: "Bay 1 earthing switch Q8", Group: 2, Value: 1},
			{IOA: 2004, Type: "M_DP_TB_1", Name: "Bay 2 circuit breaker Q0", Group: 2, Value: 2},
			{IOA: 2005, Type: "M_DP_TB_1", Name: "Bay 2 busbar disconnector Q1", Group: 2, Value: 2},
			{IOA: 4001, Type: "M_ME_NC_1", Name: "Bay 1 voltage L1-L2 kV", Group: 3, Value: 20.4, Behaviour: "wave", Amplitude: 0.15, Period: 7 * time.Minute, Deadband: 0.1},
			{IOA: 4002, Type: "M_ME_NC_1", Name: "Bay 1 current L1 A", Group: 3, Value: 182, Behaviour: "wave", Amplitude: 24, Period: 13 * time.Minute, Deadband: 5},
			{IOA: 4003, Type: "M_ME_NC_1", Name: "Bay 1 active power MW", Group: 3, Value: 6.3, Behaviour: "wave", Amplitude: 0.8, Period: 13 * time.Minute, Deadband: 0.2},
			{IOA: 4004, Type: "M_ME_NC_1", Name: "Bay 1 reactive power Mvar", Group: 3, Value: 1.9, Behaviour: "wave", Amplitude: 0.3, Period: 17 * time.Minute, Deadband: 0.1},
			{IOA: 4005, Type: "M_ME_NC_1", Name: "Bay 2 current L1 A", Group: 3, Value: 141, Behaviour: "wave", Amplitude: 18, Period: 11 * time.Minute, Deadband: 5},
			{IOA: 4006, Type: "M_ME_NC_1", Name: "Busbar frequency Hz", Group: 3, Value: 50, Behaviour: "wave", Amplitude: 0.03, Period: 3 * time.Minute, Deadband: 0.02},
			{IOA: 4010, Type: "M_ME_NB_1", Name: "Transformer oil temperature degC", Group: 3, Value: 47, Behaviour: "wave", Amplitude: 3, Period: 3 * time.Hour, Deadband: 1},
			{IOA: 4012, Type: "M_ME_NB_1", Name: "AVR voltage set point 10 V", Group: 3, Value: 2040},
			{IOA: 4013, Type: "M_ME_NC_1", Name: "Bay 2 active power limit MW", Group: 3, Value: 8},
			{IOA: 5001, Type: "M_IT_NA_1", Name: "Bay 1 active energy import kWh", Group: 1, Value: 18734211, Behaviour: "counter", Rate: 6300},
			{IOA: 5002, Type: "M_IT_NA_1", Name: "Bay 2 active energy import kWh", Group: 1, Value: 9921460, Behaviour: "counter", Rate: 4100},
		},
		Commands: []Command{
			{IOA: 6001, Type: "C_DC_NA_1", Name: "Bay 1 circuit breaker Q0 control", Feedback: 2001, SelectBeforeOperate: true},
			{IOA: 6002, Type: "C_DC_NA_1", Name: "Bay 1 disconnector Q1 control", Feedback: 2002, SelectBeforeOperate: true},
			{IOA: 6004, Type: "C_DC_NA_1", Name: "Bay 2 circuit breaker Q0 control", Feedback: 2004, SelectBeforeOperate: true},
			{IOA: 6007, Type: "C_SC_NA_1", Name: "Autoreclose on/off", Feedback: 1007},
			{IOA: 6012, Type: "C_SE_NB_1", Name: "AVR voltage set point", Feedback: 4012, Min: 1900, Max: 2200},
			{IOA: 6013, Type: "C_SE_NC_1", Name: "Bay 2 active power limit", Feedback: 4013, Min: 0, Max: 12},
		},
	}
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: iec104: %s", protocols.ErrConfig, fmt.Sprintf(format, args...))
}

// baseType maps a monitored type to the form without time tag.
func baseType(t uint8) uint8 {
	switch t {
	case MSpTb1:
		return MSpNa1
	case MDpTb1:
		return MDpNa1
	case MMeTd1:
		return MMeNa1
	case MMeTe1:
		return MMeNb1
	case MMeTf1:
		return MMeNc1
	case MItTb1:
		return MItNa1
	}
	return t
}

// commandFeedback lists which point base types a command type may drive.
func commandFeedback(cmd, point uint8) bool {
	switch cmd {
	case CScNa1:
		return point == MSpNa1
	case CDcNa1:
		return point == MDpNa1
	case CSeNa1, CSeNb1, CSeNc1:
		return point == MMeNa1 || point == MMeNb1 || point == MMeNc1
	}
	return false
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.CommonAddress == 0 || c.CommonAddress == GlobalCA {
		return configError("common_address %d: must be 1..65534", c.CommonAddress)
	}
	if c.K < 1 || c.K > 32767 {
		return configError("k %d: must be 1..32767", c.K)
	}
	if c.W < 1 || c.W > c.K {
		return configError("w %d: must be 1..k", c.W)
	}
	if c.T1 <= 0 || c.T2 <= 0 || c.T3 <= 0 || c.T0 <= 0 {
		return configError("t0..t3 must be positive")
	}
	if c.T2 >= c.T1 {
		return configError("t2 %s must be less than t1 %s", c.T2, c.T1)
	}
	if c.SelectTimeout <= 0 || c.ScanInterval <= 0 {
		return configError("select_timeout and scan_interval must be positive")
	}
	seen := map[uint32]bool{}
	kinds := map[uint32]uint8{}
	for i, p := range c.Points {
		t, ok := TypeByName(p.Type)
		if !ok {
			return configError("points[%d]: unknown type %q", i, p.Type)
		}
		switch baseType(t) {
		case MSpNa1, MDpNa1, MMeNa1, MMeNb1, MMeNc1, MItNa1:
		default:
			return configError("points[%d]: type %s is not a monitored point type", i, p.Type)
		}
		if p.IOA == 0 || p.IOA > 0xFFFFFF {
			return configError("points[%d]: ioa %d: must be 1..16777215", i, p.IOA)
		}
		if seen[p.IOA] {
			return configError("points[%d]: duplicate ioa %d", i, p.IOA)
		}
		seen[p.IOA] = true
		kinds[p.IOA] = baseType(t)
		maxGroup := 16
		if baseType(t) == MItNa1 {
			maxGroup = 4
		}
		if p.Group < 0 || p.Group > maxGroup {
			return configError("points[%d]: group %d: must be 0..%d", i, p.Group, maxGroup)
		}
		switch p.Behaviour {
		case "", "static":
		case "wave":
			if p.Period <= 0 {
				return configError("points[%d]: behaviour wave needs a positive period", i)
			}
			if baseType(t) == MSpNa1 || baseType(t) == MDpNa1 || baseType(t) == MItNa1 {
				return configError("points[%d]: behaviour wave is for measurements", i)
			}
		case "counter":
			if baseType(t) != MItNa1 {
				return configError("points[%d]: behaviour counter is for integrated totals", i)
			}
		default:
			return configError("points[%d]: unknown behaviour %q", i, p.Behaviour)
		}
		if p.Deadband < 0 {
			return configError("points[%d]: negative deadband", i)
		}
	}
	for i, cm := range c.Commands {
		t, ok := TypeByName(cm.Type)
		if !ok {
			return configError("commands[%d]: unknown type %q", i, cm.Type)
		}
		switch t {
		case CScNa1, CDcNa1, CSeNa1, CSeNb1, CSeNc1:
		default:
			return configError("commands[%d]: type %s is not a supported command type", i, cm.Type)
		}
		if cm.IOA == 0 || cm.IOA > 0xFFFFFF {
			return configError("commands[%d]: ioa %d: must be 1..16777215", i, cm.IOA)
		}
		if seen[cm.IOA] {
			return configError("commands[%d]: duplicate ioa %d", i, cm.IOA)
		}
		seen[cm.IOA] = true
		if cm.Feedback != 0 {
			k, ok := kinds[cm.Feedback]
			if !ok {
				return configError("commands[%d]: feedback_ioa %d is not a point", i, cm.Feedback)
			}
			if !commandFeedback(t, k) {
				return configError("commands[%d]: %s cannot drive a %s point", i, cm.Type, TypeName(k))
			}
		}
	}
	return nil
}

// Handler serves IEC 104 connections; device state is shared by all of them.
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
		return nil, fmt.Errorf("%w: iec104: env has no logger", protocols.ErrConfig)
	}
	env = env.WithDefaults()
	c := *cfg
	return &Handler{env: env, cfg: c, dev: newDevice(&c, env)}, nil
}

// ---------------------------------------------------------------------------------
// Device model: points, commands, clock. Shared across sessions, guarded by mu.

type point struct {
	cfg  Point
	typ  uint8 // configured type
	base uint8 // type without time tag
	// value is the static or commanded value; for waves the centre.
	value   float64
	changed time.Time
	// counters: frozen value, freeze sequence number, reset offset
	frozen    float64
	hasFrozen bool
	seq       uint8
	offset    float64
	phase     float64
}

type command struct {
	cfg Command
	typ uint8
}

type device struct {
	env protocols.Env

	mu       sync.Mutex
	points   map[uint32]*point
	order    []*point // by IOA
	commands map[uint32]*command
	// clock is the offset of the station clock from Env.Now, set by C_CS_NA_1.
	clock time.Duration
}

func newDevice(c *Config, env protocols.Env) *device {
	d := &device{env: env, points: map[uint32]*point{}, commands: map[uint32]*command{}}
	for _, pc := range c.Points {
		t, _ := TypeByName(pc.Type)
		h := fnv.New32a()
		h.Write([]byte(strconv.FormatUint(uint64(pc.IOA), 10)))
		p := &point{cfg: pc, typ: t, base: baseType(t), value: pc.Value, changed: env.Boot,
			phase: float64(h.Sum32()%6283) / 1000}
		d.points[pc.IOA] = p
		d.order = append(d.order, p)
	}
	slices.SortFunc(d.order, func(a, b *point) int { return cmp.Compare(a.cfg.IOA, b.cfg.IOA) })
	for _, cc := range c.Commands {
		t, _ := TypeByName(cc.Type)
		d.commands[cc.IOA] = &command{cfg: cc, typ: t}
	}
	return d
}

// now is the station clock.
// valueLocked is the point's current value at the real time t.
func (d *device) valueLocked(p *point, t time.Time) float64 {
	switch p.cfg.Behaviour {
	case "wave":
		s := t.Sub(d.env.Boot).Seconds()
		per := p.cfg.Period.Seconds()
		w := 0.7*math.Sin(2*math.Pi*s/per+p.phase) + 0.3*math.Sin(2*math.Pi*s/(per*0.29)+2*p.phase)
		return p.value + p.cfg.Amplitude*w
	case "counter":
		h := t.Sub(d.env.Boot).Hours()
		return math.Floor(p.value + p.cfg.Rate*h - p.offset)
	}
	return p.value
}

// sample is one point's reportable state.
type sample struct {
	ioa   uint32
	typ   uint8
	value float64
	qual  uint8
	at    time.Time
	seq   uint8 // counters
}

func (d *device) sampleLocked(p *point, t time.Time, typ uint8) sample {
	s := sample{ioa: p.cfg.IOA, typ: typ, value: d.valueLocked(p, t), at: t.Add(d.clock)}
	if p.base == MSpNa1 || p.base == MDpNa1 {
		s.at = p.changed.Add(d.clock)
	}
	if p.base == MItNa1 {
		s.seq = p.seq
		if p.hasFrozen {
			s.value = p.frozen
		}
	}
	return s
}

// appendElement appends the information element of s (without IOA).
func appendElement(dst []byte, s sample) []byte {
	switch baseType(s.typ) {
	case MSpNa1:
		v := byte(0)
		if s.value != 0 {
			v = 1
		}
		dst = append(dst, v|s.qual)
	case MDpNa1:
		dst = append(dst, byte(int(s.value)&0x03)|s.qual)
	case MMeNa1:
		dst = appendInt16(dst, clampInt16(math.Round(s.value*32768)))
		dst = append(dst, s.qual)
	case MMeNb1:
		dst = appendInt16(dst, clampInt16(math.Round(s.value)))
		dst = append(dst, s.qual)
	case MMeNc1:
		dst = AppendFloat(dst, float32(s.value))
		dst = append(dst, s.qual)
	case MItNa1:
		v := int64(s.value)
		dst = append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
		dst = append(dst, s.seq&0x1F|s.qual&QualInvalid)
	}
	switch s.typ {
	case MSpTb1, MDpTb1, MMeTd1, MMeTe1, MMeTf1, MItTb1:
		dst = AppendCP56Time2a(dst, CP56Time2a{Time: s.at})
	}
	return dst
}

func clampInt16(f float64) int16 {
	return int16(max(math.MinInt16, min(math.MaxInt16, f)))
}

func appendInt16(dst []byte, v int16) []byte { return append(dst, byte(v), byte(uint16(v)>>8)) }

func int16At(b []byte) int16 { return int16(uint16(b[0]) | uint16(b[1])<<8) }

// ---------------------------------------------------------------------------------
// Connection state machine.

// limits per session
const (
	maxQueue    = 256 // queued outgoing ASDUs
	readBufSize = 2 * (2 + MaxAPDULen)
)

var errClose = errors.New("iec104: connection closed by station")

type sentFrame struct {
	seq uint16
	at  time.Time
}

type selection struct {
	element []byte
	at      time.Time
}

type conn struct {
	h    *Handler
	s    protocols.Session
	nc   net.Conn
	cfg  *Config
	rnow func() time.Time // wall clock for timers

	started     bool
	stopPending bool
	vs, vr, va  uint16
	unacked     []sentFrame
	recvUnacked int
	recvSince   time.Time
	lastRecv    time.Time
	testfrSent  time.Time // zero when no TESTFR act is outstanding
	partSince   time.Time // zero when no partial frame is buffered
	nextScan    time.Time
	queue       [][]byte
	dropped     int
	selections  map[uint32]selection
	lastSent    map[uint32]float64
	out         []byte
}

// ServeStream runs one IEC 104 connection.
func (h *Handler) ServeStream(ctx context.Context, s protocols.Session, nc net.Conn) error {
	c := &conn{h: h, s: s, nc: nc, cfg: &h.cfg, rnow: time.Now,
		selections: map[uint32]selection{}, lastSent: map[uint32]float64{}}
	c.lastRecv = c.rnow()
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Now()) })
	defer stop()

	buf := make([]byte, 0, readBufSize)
	rd := make([]byte, readBufSize)
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := nc.SetReadDeadline(c.deadline()); err != nil {
			return fmt.Errorf("iec104: set deadline: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		// Never read more than one frame's worth beyond what is buffered.
		n, rerr := nc.Read(rd[:readBufSize-len(buf)])
		if n > 0 {
			buf = append(buf, rd[:n]...)
			var err error
			buf, err = c.frames(buf)
			if err != nil {
				return c.end(err)
			}
		}
		if err := c.timers(); err != nil {
			return c.end(err)
		}
		if err := c.flushOut(); err != nil {
			return c.end(err)
		}
		if rerr != nil {
			var ne net.Error
			switch {
			case errors.Is(rerr, io.EOF):
				return nil
			case errors.As(rerr, &ne) && ne.Timeout(), errors.Is(rerr, os.ErrDeadlineExceeded):
				continue
			default:
				return c.end(fmt.Errorf("iec104: read: %w", rerr))
			}
		}
	}
}

// end maps a normal session end (protocols.PeerGone, or the station's own close) to
// nil and returns other errors unchanged.
func (c *conn) end(err error) error {
	if errors.Is(err, errClose) || protocols.PeerGone(err) {
		return nil
	}
	return err
}

// violation records why the station closes the connection and returns errClose.
func (c *conn) violation(reason string, code int, detail map[string]string) error {
	d := map[string]string{"reason": reason}
	for k, v := range detail {
		d[k] = v
	}
	c.emit(protocols.Event{Op: "protocol_violation", Code: code, Unit: -1, Detail: d})
	_ = c.flushOut()
	return errClose
}

func (c *conn) emit(e protocols.Event) {
	e.Time = c.h.env.Now()
	e.Protocol = protoName
	c.s.Emit(e)
}

func (c *conn) deadline() time.Time {
	d := c.lastRecv.Add(c.cfg.T3)
	if !c.testfrSent.IsZero() {
		d = c.testfrSent.Add(c.cfg.T1)
	}
	if len(c.unacked) > 0 {
		d = minTime(d, c.unacked[0].at.Add(c.cfg.T1))
	}
	if c.recvUnacked > 0 {
		d = minTime(d, c.recvSince.Add(c.cfg.T2))
	}
	if !c.partSince.IsZero() {
		d = minTime(d, c.partSince.Add(c.cfg.T1))
	}
	if c.started && !c.nextScan.IsZero() {
		d = minTime(d, c.nextScan)
	}
	return d
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// timers runs t1, t2, t3 and the spontaneous scan.
func (c *conn) timers() error {
	now := c.rnow()
	if !c.testfrSent.IsZero() && !now.Before(c.testfrSent.Add(c.cfg.T1)) {
		return c.violation("t1_expired_testfr", 0, nil)
	}
	if len(c.unacked) > 0 && !now.Before(c.unacked[0].at.Add(c.cfg.T1)) {
		return c.violation("t1_expired_ack", 0, map[string]string{"unacked": strconv.Itoa(len(c.unacked))})
	}
	if !c.partSince.IsZero() && !now.Before(c.partSince.Add(c.cfg.T1)) {
		return c.violation("t1_expired_partial_frame", 0, nil)
	}
	if c.recvUnacked > 0 && !now.Before(c.recvSince.Add(c.cfg.T2)) {
		c.sendS()
	}
	if c.testfrSent.IsZero() && !now.Before(c.lastRecv.Add(c.cfg.T3)) {
		c.out = AppendUFrame(c.out, UTestFRAct)
		c.testfrSent = now
	}
	if c.started && !c.nextScan.IsZero() && !now.Before(c.nextScan) {
		c.scan()
		c.nextScan = now.Add(c.cfg.ScanInterval)
	}
	return nil
}

// frames handles every complete frame in buf and returns the remainder.
func (c *conn) frames(buf []byte) ([]byte, error) {
	for len(buf) > 0 {
		apci, asdu, n, err := ParseAPDU(buf)
		if errors.Is(err, ErrShortFrame) {
			if c.partSince.IsZero() {
				c.partSince = c.rnow()
			}
			return buf, nil
		}
		if err != nil {
			return nil, c.violation("apci", 0, map[string]string{"error": err.Error()})
		}
		c.partSince = time.Time{}
		c.lastRecv = c.rnow()
		if err := c.frame(apci, asdu); err != nil {
			return nil, err
		}
		buf = buf[:copy(buf, buf[n:])]
		if err := c.flushOut(); err != nil {
			return nil, err
		}
	}
	c.partSince = time.Time{}
	return buf, nil
}

func (c *conn) frame(a APCI, asdu []byte) error {
	switch a.Format {
	case FormatU:
		return c.uframe(a.U)
	case FormatS:
		return c.ack(a.RecvSeq)
	}
	if !c.started || c.stopPending {
		return c.violation("i_frame_while_stopped", 0, nil)
	}
	if a.SendSeq != c.vr {
		return c.violation("send_sequence", 0, map[string]string{
			"received": strconv.Itoa(int(a.SendSeq)), "expected": strconv.Itoa(int(c.vr))})
	}
	c.vr = (c.vr + 1) % seqMod
	if c.recvUnacked == 0 {
		c.recvSince = c.rnow()
	}
	c.recvUnacked++
	if err := c.ack(a.RecvSeq); err != nil {
		return err
	}
	if err := c.asdu(asdu); err != nil {
		return err
	}
	c.flushQueue()
	if c.recvUnacked >= c.cfg.W {
		c.sendS()
	}
	return nil
}

// ack applies a received N(R).
func (c *conn) ack(nr uint16) error {
	outstanding := (c.vs - c.va + seqMod) % seqMod
	acked := (nr - c.va + seqMod) % seqMod
	if acked > outstanding {
		return c.violation("receive_sequence", 0, map[string]string{
			"received": strconv.Itoa(int(nr)), "sent": strconv.Itoa(int(c.vs))})
	}
	c.unacked = c.unacked[acked:]
	c.va = nr
	if c.stopPending && len(c.unacked) == 0 {
		c.finishStop()
	}
	c.flushQueue()
	return nil
}

func (c *conn) uframe(fn uint8) error {
	switch fn {
	case UStartDTAct:
		c.emit(protocols.Event{Op: "startdt", Code: int(fn), Unit: -1})
		c.out = AppendUFrame(c.out, UStartDTCon)
		if !c.started {
			c.started = true
			c.stopPending = false
			c.h.dev.mu.Lock()
			now := c.h.env.Now()
			for _, p := range c.h.dev.order {
				c.lastSent[p.cfg.IOA] = c.h.dev.valueLocked(p, now)
			}
			c.h.dev.mu.Unlock()
			c.nextScan = c.rnow().Add(c.cfg.ScanInterval)
		}
		c.flushQueue()
	case UStopDTAct:
		c.emit(protocols.Event{Op: "stopdt", Code: int(fn), Unit: -1})
		if !c.started {
			c.out = AppendUFrame(c.out, UStopDTCon)
			return nil
		}
		c.stopPending = true
		if c.recvUnacked > 0 {
			c.sendS()
		}
		if len(c.unacked) == 0 {
			c.finishStop()
		}
	case UTestFRAct:
		c.emit(protocols.Event{Op: "testfr", Code: int(fn), Unit: -1})
		c.out = AppendUFrame(c.out, UTestFRCon)
	case UTestFRCon:
		c.testfrSent = time.Time{}
	default:
		// STARTDT con / STOPDT con: a controlled station never sends the act.
		return c.violation("unexpected_u_frame", int(fn), nil)
	}
	return nil
}

func (c *conn) finishStop() {
	c.stopPending = false
	c.started = false
	c.out = AppendUFrame(c.out, UStopDTCon)
}

func (c *conn) sendS() {
	c.out = AppendSFrame(c.out, c.vr)
	c.recvUnacked = 0
}

// enqueue queues an ASDU for transmission as an I-frame.
func (c *conn) enqueue(asdu []byte) {
	if len(c.queue) >= maxQueue {
		c.dropped++
		return
	}
	c.queue = append(c.queue, asdu)
}

// flushQueue moves queued ASDUs into I-frames while the k window allows.
func (c *conn) flushQueue() {
	for c.started && !c.stopPending && len(c.queue) > 0 && len(c.unacked) < c.cfg.K {
		c.out = AppendIFrame(c.out, c.vs, c.vr, c.queue[0])
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.unacked = append(c.unacked, sentFrame{seq: c.vs, at: c.rnow()})
		c.vs = (c.vs + 1) % seqMod
		c.recvUnacked = 0
	}
}

func (c *conn) flushOut() error {
	if len(c.out) == 0 {
		return nil
	}
	if err := c.nc.SetWriteDeadline(c.rnow().Add(c.cfg.T1)); err != nil {
		return fmt.Errorf("iec104: set write deadline: %w", err)
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	if err != nil {
		return fmt.Errorf("iec104: write: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------------
// Application layer.

// reply builds a response ASDU mirroring req with another cause (and P/N).
func (c *conn) mirror(req ASDU, cot uint8, negative bool) []byte {
	h := req
	h.COT, h.Negative = cot, negative
	if req.CommonAddr == GlobalCA && cot != CotUnknownCA {
		h.CommonAddr = c.cfg.CommonAddress
	}
	out := h.AppendHeader(make([]byte, 0, asduHeaderLen+len(req.Body)))
	return append(out, req.Body...)
}

// broadcastable lists the types that may use the global common address.
func broadcastable(t uint8) bool {
	return t == CIcNa1 || t == CCiNa1 || t == CCsNa1 || t == CRpNa1
}

func (c *conn) asdu(raw []byte) error {
	req, err := ParseASDU(raw)
	if err != nil {
		return c.violation("asdu", 0, map[string]string{"error": err.Error()})
	}
	ev := protocols.Event{Op: opName(req.Type), Code: int(req.Type), Unit: int(req.CommonAddr), Area: TypeName(req.Type),
		Detail: map[string]string{"cot": strconv.Itoa(int(req.COT)), "originator": strconv.Itoa(int(req.Originator))}}
	if req.Test {
		ev.Detail["test"] = "1"
	}
	if req.CommonAddr != c.cfg.CommonAddress && !(req.CommonAddr == GlobalCA && broadcastable(req.Type)) {
		ev.Exception = CotUnknownCA
		c.emit(ev)
		c.enqueue(c.mirror(req, CotUnknownCA, true))
		return nil
	}
	if !c.supported(req.Type) {
		ev.Exception = CotUnknownType
		ev.Data = clip(req.Body)
		c.emit(ev)
		c.enqueue(c.mirror(req, CotUnknownType, true))
		return nil
	}
	objs, err := req.Objects()
	if err != nil || len(objs) != 1 {
		if err == nil {
			err = fmt.Errorf("%w: %d objects in a single-object type", ErrBadASDU, len(objs))
		}
		return c.violation("asdu", int(req.Type), map[string]string{"error": err.Error()})
	}
	obj := objs[0]
	ev.Address = int(obj.IOA)
	ev.Quantity = 1
	if !validCOT(req.Type, req.COT) {
		ev.Exception = CotUnknownCOT
		ev.Data = clip(obj.Element)
		c.emit(ev)
		c.enqueue(c.mirror(req, CotUnknownCOT, true))
		return nil
	}
	switch req.Type {
	case CIcNa1:
		c.interrogation(req, obj, &ev)
	case CCiNa1:
		c.counterInterrogation(req, obj, &ev)
	case CRdNa1:
		c.read(req, obj, &ev)
	case CCsNa1:
		c.clockSync(req, obj, &ev)
	case CTsNa1:
		ev.Data = clip(obj.Element)
		neg := obj.IOA != 0 || obj.Element[0] != 0xAA || obj.Element[1] != 0x55
		if obj.IOA != 0 {
			ev.Exception = CotUnknownIOA
			c.enqueue(c.mirror(req, CotUnknownIOA, true))
		} else {
			if neg {
				ev.Exception = CotActCon
			}
			c.enqueue(c.mirror(req, CotActCon, neg))
		}
	case CRpNa1:
		ev.Data = clip(obj.Element)
		ev.Write = true
		ev.Detail["qrp"] = strconv.Itoa(int(obj.Element[0]))
		switch {
		case obj.IOA != 0:
			ev.Exception = CotUnknownIOA
			c.enqueue(c.mirror(req, CotUnknownIOA, true))
		case obj.Element[0] != 1 && obj.Element[0] != 2:
			ev.Exception = CotActCon
			c.enqueue(c.mirror(req, CotActCon, true))
		default:
			c.enqueue(c.mirror(req, CotActCon, false))
		}
	default:
		c.command(req, obj, &ev)
	}
	c.emit(ev)
	return nil
}

func clip(b []byte) []byte { return append([]byte(nil), b...) }

func (c *conn) supported(t uint8) bool {
	switch t {
	case CIcNa1, CRdNa1, CCsNa1, CTsNa1, CRpNa1:
		return true
	case CCiNa1:
		for _, p := range c.h.dev.order {
			if p.base == MItNa1 {
				return true
			}
		}
		return false
	case CScNa1, CDcNa1, CSeNa1, CSeNb1, CSeNc1:
		for _, cm := range c.h.dev.commands {
			if cm.typ == t {
				return true
			}
		}
	}
	return false
}

func validCOT(t uint8, cot uint8) bool {
	switch t {
	case CRdNa1:
		return cot == CotRequest
	case CCsNa1, CTsNa1, CRpNa1:
		return cot == CotActivation
	}
	return cot == CotActivation || cot == CotDeactivation
}

func opName(t uint8) string {
	switch t {
	case CIcNa1:
		return "interrogation"
	case CCiNa1:
		return "counter_interrogation"
	case CRdNa1:
		return "read"
	case CCsNa1:
		return "clock_sync"
	case CTsNa1:
		return "test_command"
	case CRpNa1:
		return "reset_process"
	case CScNa1:
		return "single_command"
	case CDcNa1:
		return "double_command"
	case CSeNa1:
		return "setpoint_normalized"
	case CSeNb1:
		return "setpoint_scaled"
	case CSeNc1:
		return "setpoint_float"
	}
	return "unsupported_asdu"
}

// responseASDUs packs samples (all of the same type) into ASDUs with cause cot.
func (c *conn) responseASDUs(typ uint8, cot uint8, ss []sample) [][]byte {
	size, _ := ElementSize(typ)
	per := min(127, (MaxASDULen-asduHeaderLen)/(ioaLen+size))
	var out [][]byte
	for len(ss) > 0 {
		n := min(per, len(ss))
		h := ASDU{Type: typ, Num: n, COT: cot, CommonAddr: c.cfg.CommonAddress}
		b := h.AppendHeader(make([]byte, 0, asduHeaderLen+n*(ioaLen+size)))
		for _, s := range ss[:n] {
			b = AppendIOA(b, s.ioa)
			s.typ = typ
			b = appendElement(b, s)
		}
		out = append(out, b)
		ss = ss[n:]
	}
	return out
}

// sendSamples groups samples by type (keeping IOA order within a type) and queues them.
func (c *conn) sendSamples(ss []sample, cot uint8) {
	var types []uint8
	by := map[uint8][]sample{}
	for _, s := range ss {
		if _, ok := by[s.typ]; !ok {
			types = append(types, s.typ)
		}
		by[s.typ] = append(by[s.typ], s)
	}
	for _, t := range types {
		for _, a := range c.responseASDUs(t, cot, by[t]) {
			c.enqueue(a)
		}
	}
}

func (c *conn) interrogation(req ASDU, obj Object, ev *protocols.Event) {
	qoi := obj.Element[0]
	ev.Detail["qoi"] = strconv.Itoa(int(qoi))
	if obj.IOA != 0 {
		ev.Exception = CotUnknownIOA
		c.enqueue(c.mirror(req, CotUnknownIOA, true))
		return
	}
	if qoi < QOIStation || qoi > QOIStation+16 {
		ev.Exception = CotActCon
		c.enqueue(c.mirror(req, CotActCon, true))
		return
	}
	if req.COT == CotDeactivation {
		c.enqueue(c.mirror(req, CotDeactCon, false))
		return
	}
	group := int(qoi - QOIStation)
	c.enqueue(c.mirror(req, CotActCon, false))
	d := c.h.dev
	d.mu.Lock()
	now := d.env.Now()
	var ss []sample
	for _, p := range d.order {
		if p.base == MItNa1 || (group != 0 && p.cfg.Group != group) {
			continue
		}
		s := d.sampleLocked(p, now, p.base)
		ss = append(ss, s)
		c.lastSent[p.cfg.IOA] = s.value
	}
	d.mu.Unlock()
	c.sendSamples(ss, CotInrogen+uint8(group))
	ev.Quantity = len(ss)
	c.enqueue(c.mirror(req, CotActTerm, false))
}

func (c *conn) counterInterrogation(req ASDU, obj Object, ev *protocols.Event) {
	qcc := obj.Element[0]
	rqt, frz := int(qcc&0x3F), int(qcc>>6)
	ev.Detail["rqt"] = strconv.Itoa(rqt)
	ev.Detail["frz"] = strconv.Itoa(frz)
	if obj.IOA != 0 {
		ev.Exception = CotUnknownIOA
		c.enqueue(c.mirror(req, CotUnknownIOA, true))
		return
	}
	if rqt < 1 || rqt > 5 {
		ev.Exception = CotActCon
		c.enqueue(c.mirror(req, CotActCon, true))
		return
	}
	if req.COT == CotDeactivation {
		c.enqueue(c.mirror(req, CotDeactCon, false))
		return
	}
	ev.Write = frz != 0
	group := rqt % 5 // 5 is the general request
	c.enqueue(c.mirror(req, CotActCon, false))
	d := c.h.dev
	d.mu.Lock()
	now := d.env.Now()
	var ss []sample
	for _, p := range d.order {
		if p.base != MItNa1 || (group != 0 && p.cfg.Group != group) {
			continue
		}
		switch frz {
		case 0:
			ss = append(ss, d.sampleLocked(p, now, p.base))
		case 1, 2:
			p.frozen = d.valueLocked(p, now)
			p.hasFrozen = true
			p.seq = (p.seq + 1) & 0x1F
			if frz == 2 {
				p.offset += p.frozen
			}
		case 3:
			p.offset += d.valueLocked(p, now)
			p.hasFrozen = false
		}
	}
	d.mu.Unlock()
	c.sendSamples(ss, CotReqcogen+uint8(group))
	ev.Quantity = len(ss)
	c.enqueue(c.mirror(req, CotActTerm, false))
}

func (c *conn) read(req ASDU, obj Object, ev *protocols.Event) {
	d := c.h.dev
	d.mu.Lock()
	p, ok := d.points[obj.IOA]
	var s sample
	if ok {
		ev.Area = TypeName(p.typ)
		ev.Detail["name"] = p.cfg.Name
		s = d.sampleLocked(p, d.env.Now(), p.typ)
	}
	d.mu.Unlock()
	if !ok {
		ev.Exception = CotUnknownIOA
		c.enqueue(c.mirror(req, CotUnknownIOA, true))
		return
	}
	c.sendSamples([]sample{s}, CotRequest)
}

func (c *conn) clockSync(req ASDU, obj Object, ev *protocols.Event) {
	ev.Data = clip(obj.Element)
	ev.Write = true
	if obj.IOA != 0 {
		ev.Exception = CotUnknownIOA
		c.enqueue(c.mirror(req, CotUnknownIOA, true))
		return
	}
	t, err := ParseCP56Time2a(obj.Element)
	if err != nil {
		ev.Exception = CotActCon
		c.enqueue(c.mirror(req, CotActCon, true))
		return
	}
	ev.Detail["time"] = t.Time.Format(time.RFC3339Nano)
	d := c.h.dev
	d.mu.Lock()
	d.clock = t.Time.Sub(d.env.Now())
	d.mu.Unlock()
	c.enqueue(c.mirror(req, CotActCon, false))
}

// command runs single, double and set-point commands (select/execute, deactivate).
func (c *conn) command(req ASDU, obj Object, ev *protocols.Event) {
	ev.Write = true
	ev.Data = clip(obj.Element)
	el := obj.Element
	sel := el[len(el)-1]&selectBit != 0
	if sel {
		ev.Detail["se"] = "select"
	} else {
		ev.Detail["se"] = "execute"
	}
	d := c.h.dev
	d.mu.Lock()
	cm, ok := d.commands[obj.IOA]
	d.mu.Unlock()
	if !ok || cm.typ != req.Type {
		ev.Exception = CotUnknownIOA
		c.enqueue(c.mirror(req, CotUnknownIOA, true))
		return
	}
	ev.Detail["name"] = cm.cfg.Name
	negative := func() {
		ev.Exception = CotActCon
		c.enqueue(c.mirror(req, CotActCon, true))
	}
	if req.COT == CotDeactivation {
		_, had := c.selections[obj.IOA]
		delete(c.selections, obj.IOA)
		if !had {
			ev.Exception = CotDeactCon
		}
		c.enqueue(c.mirror(req, CotDeactCon, !had))
		return
	}
	value, valid := commandValue(cm, el)
	ev.Detail["value"] = strconv.FormatFloat(value, 'g', -1, 64)
	if !valid {
		negative()
		return
	}
	key := clip(el)
	key[len(key)-1] &^= selectBit
	now := c.rnow()
	if sel {
		c.selections[obj.IOA] = selection{element: key, at: now}
		c.enqueue(c.mirror(req, CotActCon, false))
		return
	}
	s, had := c.selections[obj.IOA]
	delete(c.selections, obj.IOA)
	if cm.cfg.SelectBeforeOperate && (!had || now.Sub(s.at) > c.cfg.SelectTimeout || string(s.element) != string(key)) {
		ev.Detail["reason"] = "not_selected"
		negative()
		return
	}
	c.enqueue(c.mirror(req, CotActCon, false))
	if cm.cfg.Feedback != 0 {
		d.mu.Lock()
		p := d.points[cm.cfg.Feedback]
		t := d.env.Now()
		if d.valueLocked(p, t) != value || p.cfg.Behaviour == "wave" {
			if p.cfg.Behaviour == "wave" {
				p.cfg.Behaviour = "static"
			}
			p.value = value
			p.changed = t
		}
		smp := d.sampleLocked(p, t, p.typ)
		d.mu.Unlock()
		c.lastSent[p.cfg.IOA] = smp.value
		c.sendSamples([]sample{smp}, CotSpontaneous)
	}
	c.enqueue(c.mirror(req, CotActTerm, false))
}

// commandValue decodes the commanded value and checks that it is permitted.
func commandValue(cm *command, el []byte) (float64, bool) {
	switch cm.typ {
	case CScNa1:
		return float64(el[0] & 0x01), true
	case CDcNa1:
		dcs := el[0] & 0x03
		return float64(dcs), dcs == 1 || dcs == 2
	}
	var v float64
	switch cm.typ {
	case CSeNa1:
		v = float64(int16At(el)) / 32768
	case CSeNb1:
		v = float64(int16At(el))
	case CSeNc1:
		f := Float(el)
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return 0, false
		}
		v = float64(f)
	}
	if cm.cfg.Min < cm.cfg.Max && (v < cm.cfg.Min || v > cm.cfg.Max) {
		return v, false
	}
	return v, true
}

// scan queues spontaneous transmissions of points that changed since last reported.
func (c *conn) scan() {
	d := c.h.dev
	d.mu.Lock()
	now := d.env.Now()
	var ss []sample
	for _, p := range d.order {
		if p.base == MItNa1 {
			continue
		}
		v := d.valueLocked(p, now)
		last, ok := c.lastSent[p.cfg.IOA]
		changed := !ok || v != last
		if p.base != MSpNa1 && p.base != MDpNa1 {
			changed = p.cfg.Deadband > 0 && (!ok || math.Abs(v-last) >= p.cfg.Deadband)
		}
		if changed {
			s := d.sampleLocked(p, now, p.typ)
			ss = append(ss, s)
			c.lastSent[p.cfg.IOA] = s.value
		}
	}
	d.mu.Unlock()
	if len(ss) > 0 {
		c.sendSamples(ss, CotSpontaneous)
		c.flushQueue()
	}
}
