package dnp3

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// ---------------------------------------------------------------------------------
// Device model, shared by every connection and guarded by mu.

type device struct {
	env protocols.Env
	cfg *Config

	mu        sync.Mutex
	bi, bo    []bool
	biChanged []time.Time
	boChanged []time.Time
	ai        []float64 // centre (wave) or value (static)
	aiStatic  []bool    // set by an analog output: no longer moves
	ao        []float64
	phase     []float64
	clock     time.Duration // station clock offset from Env.Now
	restart   bool          // IIN1.7
	needTime  bool          // IIN1.4
}

func newDevice(c *Config, env protocols.Env) *device {
	d := &device{env: env, cfg: c}
	d.phase = make([]float64, len(c.AnalogInputs))
	for i := range c.AnalogInputs {
		h := fnv.New32a()
		h.Write([]byte("ai" + strconv.Itoa(i)))
		d.phase[i] = float64(h.Sum32()%6283) / 1000
	}
	d.resetLocked()
	return d
}

// resetLocked returns the device to its configured start-up state (cold restart).
func (d *device) resetLocked() {
	c := d.cfg
	d.bi, d.biChanged = make([]bool, len(c.BinaryInputs)), make([]time.Time, len(c.BinaryInputs))
	for i, p := range c.BinaryInputs {
		d.bi[i], d.biChanged[i] = p.Value, d.env.Boot
	}
	d.bo, d.boChanged = make([]bool, len(c.BinaryOutputs)), make([]time.Time, len(c.BinaryOutputs))
	for i, p := range c.BinaryOutputs {
		d.bo[i], d.boChanged[i] = p.Value, d.env.Boot
	}
	d.ai, d.aiStatic = make([]float64, len(c.AnalogInputs)), make([]bool, len(c.AnalogInputs))
	for i, p := range c.AnalogInputs {
		d.ai[i] = p.Value
	}
	d.ao = make([]float64, len(c.AnalogOutputs))
	for i, p := range c.AnalogOutputs {
		d.ao[i] = p.Value
	}
	d.clock = 0
	d.restart = true
	d.needTime = c.NeedTime
}

// nowLocked is the station clock.
func (d *device) nowLocked() time.Time { return d.env.Now().Add(d.clock) }

func (d *device) aiLocked(i int, t time.Time) float64 {
	p := d.cfg.AnalogInputs[i]
	if p.Behaviour != "wave" || d.aiStatic[i] {
		return d.ai[i]
	}
	s := t.Sub(d.env.Boot).Seconds()
	per := p.Period.Seconds()
	w := 0.7*math.Sin(2*math.Pi*s/per+d.phase[i]) + 0.3*math.Sin(2*math.Pi*s/(per*0.29)+2*d.phase[i])
	return d.ai[i] + p.Amplitude*w
}

func (d *device) counterLocked(i int, t time.Time) float64 {
	p := d.cfg.Counters[i]
	return math.Floor(p.Value + p.Rate*t.Sub(d.env.Boot).Hours())
}

// class0Size is the size of the objects of a class 0 response.
func (d *device) class0Size() int {
	var ab appendBuf
	ab.max = math.MaxInt
	d.mu.Lock()
	defer d.mu.Unlock()
	d.appendStaticLocked(&ab, 0, 0, allPoints, allPoints, d.env.Now())
	return len(ab.b)
}

// ---------------------------------------------------------------------------------
// Static data encoding.

// appendBuf is a response under construction bounded by max octets.
type appendBuf struct {
	b    []byte
	max  int
	full bool
}

// fits reports whether n more octets fit, and marks the buffer full otherwise.
func (a *appendBuf) fits(n int) bool {
	if len(a.b)+n > a.max {
		a.full = true
		return false
	}
	return true
}

const allPoints = -1

// staticSize is the octets of one point of group g variation v (0 for packed/unknown).
func staticSize(g, v byte) int {
	switch g {
	case 1, 10:
		if v == 2 {
			return 1
		}
	case 20:
		switch v {
		case 1:
			return 5
		case 2:
			return 3
		case 5:
			return 4
		case 6:
			return 2
		}
	case 30:
		return [...]int{0, 5, 3, 4, 2, 5, 9}[min(int(v), 6)]
	case 40:
		return [...]int{0, 5, 3, 5, 9}[min(int(v), 4)]
	}
	return 0
}

func validStatic(g, v byte) bool {
	switch g {
	case 1, 10:
		return v <= 2
	case 20:
		return v == 0 || v == 1 || v == 2 || v == 5 || v == 6
	case 30:
		return v <= 6
	case 40:
		return v <= 4
	}
	return false
}

func (d *device) pointCount(g byte) int {
	switch g {
	case 1:
		return len(d.bi)
	case 10:
		return len(d.bo)
	case 20:
		return len(d.cfg.Counters)
	case 30:
		return len(d.ai)
	case 40:
		return len(d.ao)
	}
	return 0
}

func (d *device) defaultVariation(g byte) byte {
	v := d.cfg.StaticVariations
	switch g {
	case 1:
		return v.BinaryInput
	case 10:
		return v.BinaryOutput
	case 20:
		return v.Counter
	case 30:
		return v.AnalogInput
	case 40:
		return v.AnalogOutput
	}
	return 0
}

// appendStaticLocked appends one header with points start..stop (inclusive) of
// group g in variation v (0: default); g 0 means every static group (class 0).
func (d *device) appendStaticLocked(ab *appendBuf, g, v byte, start, stop int, t time.Time) {
	if g == 0 {
		for _, gg := range []byte{1, 10, 20, 30, 40} {
			d.appendStaticLocked(ab, gg, 0, allPoints, allPoints, t)
		}
		return
	}
	n := d.pointCount(g)
	if n == 0 {
		return
	}
	if start == allPoints {
		start, stop = 0, n-1
	}
	if v == 0 {
		v = d.defaultVariation(g)
	}
	size := staticSize(g, v)
	count := stop - start + 1
	data := count * size
	if size == 0 { // packed binary
		data = (count + 7) / 8
	}
	hdr := 5
	if stop > 0xFF {
		hdr = 7
	}
	if !ab.fits(hdr + data) {
		return
	}
	ab.b = AppendRangeHeader(ab.b, g, v, uint16(start), uint16(stop))
	if size == 0 {
		bits := make([]byte, (count+7)/8)
		for i := range count {
			var on bool
			if g == 1 {
				on = d.bi[start+i]
			} else {
				on = d.bo[start+i]
			}
			if on {
				bits[i/8] |= 1 << (i % 8)
			}
		}
		ab.b = append(ab.b, bits...)
		return
	}
	for i := start; i <= stop; i++ {
		switch g {
		case 1:
			ab.b = append(ab.b, binFlags(d.bi[i]))
		case 10:
			ab.b = append(ab.b, binFlags(d.bo[i]))
		case 20:
			c := uint64(d.counterLocked(i, t))
			switch v {
			case 1:
				ab.b = binary.LittleEndian.AppendUint32(append(ab.b, flagOnline), uint32(c))
			case 2:
				ab.b = binary.LittleEndian.AppendUint16(append(ab.b, flagOnline), uint16(c))
			case 5:
				ab.b = binary.LittleEndian.AppendUint32(ab.b, uint32(c))
			case 6:
				ab.b = binary.LittleEndian.AppendUint16(ab.b, uint16(c))
			}
		case 30:
			ab.b = appendAnalog(ab.b, v, d.aiLocked(i, t))
		case 40:
			// g40 v1 int32, v2 int16, v3 float32, v4 float64 map onto g30 v1, v2, v5, v6.
			ab.b = appendAnalog(ab.b, [...]byte{0, 1, 2, 5, 6}[v], d.ao[i])
		}
	}
}

func binFlags(on bool) byte {
	if on {
		return flagOnline | flagState
	}
	return flagOnline
}

// appendAnalog encodes value as g30 variation v (1 int32+flag, 2 int16+flag, 3 int32,
// 4 int16, 5 float32+flag, 6 float64+flag). Integers saturate with OVER_RANGE.
func appendAnalog(dst []byte, v byte, value float64) []byte {
	flag := byte(flagOnline)
	r := math.Round(value)
	switch v {
	case 1, 3:
		if r > math.MaxInt32 || r < math.MinInt32 {
			flag |= flagOverRange
			r = math.Max(math.MinInt32, math.Min(math.MaxInt32, r))
		}
		if v == 1 {
			dst = append(dst, flag)
		}
		return binary.LittleEndian.AppendUint32(dst, uint32(int32(r)))
	case 2, 4:
		if r > math.MaxInt16 || r < math.MinInt16 {
			flag |= flagOverRange
			r = math.Max(math.MinInt16, math.Min(math.MaxInt16, r))
		}
		if v == 2 {
			dst = append(dst, flag)
		}
		return binary.LittleEndian.AppendUint16(dst, uint16(int16(r)))
	case 5:
		return binary.LittleEndian.AppendUint32(append(dst, flag), math.Float32bits(float32(value)))
	case 6:
		return binary.LittleEndian.AppendUint64(append(dst, flag), math.Float64bits(value))
	}
	return dst
}

// ---------------------------------------------------------------------------------
// Events (per connection).

type event struct {
	group    byte // 2 binary input, 11 binary output, 32 analog input
	index    uint16
	class    int
	flags    byte
	value    float64
	at       time.Time
	inflight byte // 0 buffered, 1 in a solicited response, 2 in an unsolicited one
}

const (
	inflightSolicited   = 1
	inflightUnsolicited = 2
	maxUnsolRetries     = 3
)

// eventVariations lists the supported event variations (0 = default).
func eventVariation(g, v byte) (byte, bool) {
	switch g {
	case 2, 11:
		if v == 0 {
			return 2, true
		}
		return v, v == 1 || v == 2
	case 32:
		if v == 0 {
			return 3, true
		}
		return v, v == 1 || v == 3 || v == 5 || v == 7
	}
	return 0, false
}

func eventSize(g, v byte) int {
	switch g {
	case 2, 11:
		if v == 1 {
			return 1
		}
		return 7
	case 32:
		return [...]int{0, 5, 0, 11, 0, 5, 0, 11}[v]
	}
	return 0
}

func appendEvent(dst []byte, e event, v byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, e.index)
	switch e.group {
	case 2, 11:
		dst = append(dst, e.flags)
		if v == 2 {
			dst = AppendTime(dst, e.at)
		}
	case 32:
		switch v {
		case 1, 3:
			dst = appendAnalog(dst, 1, e.value)
		case 5, 7:
			dst = appendAnalog(dst, 5, e.value)
		}
		if v == 3 || v == 7 {
			dst = AppendTime(dst, e.at)
		}
	}
	return dst
}

// selection is a SELECT waiting for its OPERATE.
type selection struct {
	seq  byte
	objs []byte
	at   time.Time
}

// appState is the application layer of one connection (one master association).
type appState struct {
	h      *Handler
	lastBI []bool
	lastBO []bool
	lastAI []float64

	events   []event
	overflow bool

	solPending bool
	solSeq     byte

	unsolEnabled [4]bool
	unsolPending bool
	unsolSeq     byte
	unsolSentAt  time.Time
	unsolRetries int
	unsolFrag    []byte

	sel         *selection
	lastReq     []byte
	lastResp    []byte
	allStations bool
	recorded    time.Time // station time of RECORD_CURRENT_TIME
	recordedAt  time.Time // Env.Now of it
}

func (a *appState) init(h *Handler) {
	a.h = h
	d := h.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	a.lastBI = append([]bool(nil), d.bi...)
	a.lastBO = append([]bool(nil), d.bo...)
	now := d.env.Now()
	a.lastAI = make([]float64, len(d.ai))
	for i := range d.ai {
		a.lastAI[i] = d.aiLocked(i, now)
	}
}

func (a *appState) addEvent(e event) {
	if len(a.events) >= a.h.cfg.EventBuffer {
		a.overflow = true
		return
	}
	a.events = append(a.events, e)
}

// scan turns changes of the shared device state into this connection's events and
// sends them unsolicited when the master enabled that.
func (a *appState) scan(ss *session) {
	d := a.h.dev
	c := a.h.cfg
	d.mu.Lock()
	now := d.env.Now()
	for i, v := range d.bi {
		if v != a.lastBI[i] {
			a.lastBI[i] = v
			if cl := c.BinaryInputs[i].Class; cl > 0 {
				a.addEvent(event{group: 2, index: uint16(i), class: cl, flags: binFlags(v), at: d.biChanged[i].Add(d.clock)})
			}
		}
	}
	for i, v := range d.bo {
		if v != a.lastBO[i] {
			a.lastBO[i] = v
			if cl := c.BinaryOutputs[i].Class; cl > 0 {
				a.addEvent(event{group: 11, index: uint16(i), class: cl, flags: binFlags(v), at: d.boChanged[i].Add(d.clock)})
			}
		}
	}
	for i := range d.ai {
		p := c.AnalogInputs[i]
		v := d.aiLocked(i, now)
		if p.Class > 0 && p.Deadband > 0 && math.Abs(v-a.lastAI[i]) >= p.Deadband {
			a.lastAI[i] = v
			a.addEvent(event{group: 32, index: uint16(i), class: p.Class, flags: flagOnline, value: v, at: now.Add(d.clock)})
		}
	}
	d.mu.Unlock()
	if ss != nil {
		a.unsolicited(ss)
	}
}

// iin returns the internal indications for the next response (with IIN2 bits of
// the request).
func (a *appState) iin(req uint16) uint16 {
	iin := req
	d := a.h.dev
	d.mu.Lock()
	if d.restart {
		iin |= IIN1Restart
	}
	if d.needTime {
		iin |= IIN1NeedTime
	}
	d.mu.Unlock()
	for _, e := range a.events {
		iin |= uint16(1) << e.class // IIN1.1..1.3
	}
	if a.overflow {
		iin |= IIN2EventOverflw
	}
	if a.allStations {
		iin |= IIN1AllStations
		a.allStations = false
	}
	return iin
}

// appendEvents appends buffered events of the classes in mask (bit n = class n) and
// of group g (0: any) in variation v (0: default), at most limit (-1: all); it marks
// them inflight and returns how many it added.
func (a *appState) appendEvents(ab *appendBuf, mask int, g, v byte, limit int, mark byte) int {
	added := 0
	for i := 0; i < len(a.events) && (limit < 0 || added < limit); {
		e := a.events[i]
		if e.inflight != 0 || mask&(1<<e.class) == 0 || (g != 0 && e.group != g) {
			i++
			continue
		}
		ev, _ := eventVariation(e.group, v)
		if g == 0 {
			ev, _ = eventVariation(e.group, 0)
		}
		// a run of consecutive events of the same group forms one header
		j := i
		var run []int
		for ; j < len(a.events) && (limit < 0 || added+len(run) < limit); j++ {
			x := a.events[j]
			if x.inflight != 0 || mask&(1<<x.class) == 0 || x.group != e.group {
				break
			}
			run = append(run, j)
		}
		size := eventSize(e.group, ev)
		n := len(run)
		if room := (ab.max - len(ab.b) - 5) / (2 + size); room < n {
			n = max(room, 0)
			ab.full = true
		}
		if n == 0 {
			return added
		}
		ab.b = AppendCountHeader(ab.b, e.group, ev, uint16(n))
		for _, k := range run[:n] {
			ab.b = appendEvent(ab.b, a.events[k], ev)
			a.events[k].inflight = mark
		}
		added += n
		if n < len(run) {
			return added
		}
		i = j
	}
	return added
}

func (a *appState) dropInflight(mark byte) {
	kept := a.events[:0]
	for _, e := range a.events {
		if e.inflight != mark {
			kept = append(kept, e)
		}
	}
	a.events = kept
	if len(a.events) < a.h.cfg.EventBuffer {
		a.overflow = false
	}
}

func (a *appState) releaseInflight(mark byte) {
	for i := range a.events {
		if a.events[i].inflight == mark {
			a.events[i].inflight = 0
		}
	}
}

// unsolicited sends the enabled classes' events as an unsolicited response.
func (a *appState) unsolicited(ss *session) {
	if a.unsolPending || !ss.hasMaster {
		return
	}
	mask := 0
	for cl := 1; cl <= 3; cl++ {
		if a.unsolEnabled[cl] {
			mask |= 1 << cl
		}
	}
	if mask == 0 {
		return
	}
	ab := appendBuf{b: make([]byte, 4, 256), max: a.h.cfg.MaxFragment}
	if a.appendEvents(&ab, mask, 0, 0, -1, inflightUnsolicited) == 0 {
		return
	}
	a.unsolFrag = a.buildUnsol(ab)
	a.unsolPending, a.unsolSentAt, a.unsolRetries = true, ss.rnow(), 0
	ss.send(a.unsolFrag)
}

// buildUnsol assembles the unsolicited fragment from a buffer whose first four
// octets are reserved for the header.
func (a *appState) buildUnsol(ab appendBuf) []byte {
	frag := AppendResponseHeader(make([]byte, 0, len(ab.b)), acFIR|acFIN|acCON|acUNS|a.unsolSeq, FuncUnsolicited, a.iin(0))
	return append(frag, ab.b[4:]...)
}

func (a *appState) confirmDeadline() (time.Time, bool) {
	if !a.unsolPending {
		return time.Time{}, false
	}
	return a.unsolSentAt.Add(a.h.cfg.ConfirmTimeout), true
}

// confirmTimers retries or abandons an unconfirmed unsolicited response.
func (a *appState) confirmTimers(ss *session, now time.Time) {
	if !a.unsolPending || now.Before(a.unsolSentAt.Add(a.h.cfg.ConfirmTimeout)) {
		return
	}
	if a.unsolRetries < maxUnsolRetries {
		a.unsolRetries++
		a.unsolSentAt = now
		ss.send(a.unsolFrag)
		return
	}
	a.unsolPending = false
	a.releaseInflight(inflightUnsolicited)
	a.unsolSeq = (a.unsolSeq + 1) & 0x0F
}

// ---------------------------------------------------------------------------------
// Requests.

var funcNames = map[byte]string{
	FuncConfirm: "confirm", FuncRead: "read", FuncWrite: "write", FuncSelect: "select",
	FuncOperate: "operate", FuncDirectOperate: "direct_operate", FuncDirectOperateNR: "direct_operate_nr",
	FuncImmedFreeze: "immediate_freeze", FuncImmedFreezeNR: "immediate_freeze_nr",
	FuncFreezeClear: "freeze_clear", FuncFreezeClearNR: "freeze_clear_nr",
	FuncColdRestart: "cold_restart", FuncWarmRestart: "warm_restart",
	FuncEnableUnsolicited: "enable_unsolicited", FuncDisableUnsolicit: "disable_unsolicited",
	FuncDelayMeasure: "delay_measure", FuncRecordCurrentTime: "record_current_time",
}

func funcName(fc byte) string {
	if n, ok := funcNames[fc]; ok {
		return n
	}
	return "unsupported_function"
}

// reqCtx collects what one request did, for the response and the event.
type reqCtx struct {
	ev      *protocols.Event
	iin     uint16 // IIN2 bits
	ab      appendBuf
	con     bool
	objects []string
	noReply bool
	close   bool
}

func (r *reqCtx) object(h ObjectHeader) {
	if len(r.objects) < 16 {
		r.objects = append(r.objects, fmt.Sprintf("g%dv%d", h.Group, h.Var))
	}
}

func (a *appState) request(ss *session, src, dest uint16, bcast bool, frag []byte) error {
	start := ss.rnow()
	hdr, objs, err := ParseRequest(frag)
	if err != nil {
		ss.badFrame("application", err)
		return nil
	}
	ev := protocols.Event{Op: funcName(hdr.Func), Code: int(hdr.Func), Unit: int(dest),
		Detail: map[string]string{"src": strconv.Itoa(int(src)), "seq": strconv.Itoa(int(hdr.Seq()))}}
	if bcast {
		ev.Detail["broadcast"] = "1"
	}
	if hdr.Control&(acFIR|acFIN) != acFIR|acFIN {
		// Requests are single fragments; anything else is discarded.
		ev.Detail["reason"] = "multi_fragment_request"
		ss.emit(ev)
		return nil
	}
	if hdr.Func == FuncConfirm {
		a.confirm(hdr)
		ss.emit(ev)
		return nil
	}
	if a.solPending {
		a.solPending = false
		a.releaseInflight(inflightSolicited)
	}
	if !bcast && a.lastResp != nil && bytes.Equal(frag, a.lastReq) {
		// A repeated request (same sequence, same octets): answer it again without
		// executing it twice.
		ev.Detail["repeat"] = "1"
		ss.emit(ev)
		ss.send(a.lastResp)
		return nil
	}
	a.scan(nil)
	r := &reqCtx{ev: &ev, ab: appendBuf{b: make([]byte, 4, 256), max: a.h.cfg.MaxFragment}}
	switch hdr.Func {
	case FuncRead:
		a.read(r, objs)
	case FuncWrite:
		a.write(r, objs)
	case FuncSelect, FuncOperate, FuncDirectOperate, FuncDirectOperateNR:
		a.control(ss, r, hdr, objs)
		r.noReply = hdr.Func == FuncDirectOperateNR
	case FuncColdRestart, FuncWarmRestart:
		a.restart(r, hdr.Func == FuncColdRestart)
	case FuncEnableUnsolicited, FuncDisableUnsolicit:
		a.unsolControl(r, objs, hdr.Func == FuncEnableUnsolicited)
	case FuncDelayMeasure:
		ms := uint16(min(ss.rnow().Sub(start).Milliseconds(), 65535))
		r.ab.b = append(r.ab.b, 52, 2, QualCount8, 1)
		r.ab.b = binary.LittleEndian.AppendUint16(r.ab.b, ms)
	case FuncRecordCurrentTime:
		d := a.h.dev
		d.mu.Lock()
		a.recorded, a.recordedAt = d.nowLocked(), d.env.Now()
		d.mu.Unlock()
	default:
		r.iin |= IIN2NoFuncCode
		r.noReply = hdr.Func == FuncImmedFreezeNR || hdr.Func == FuncFreezeClearNR
	}
	if len(r.objects) > 0 {
		ev.Area = strings.Join(r.objects, ",")
	}
	iin := a.iin(r.iin)
	ev.Exception = int(iin >> 8 & 0x3F)
	ev.Detail["iin"] = fmt.Sprintf("%04x", iin>>8|iin<<8) // IIN1 IIN2 as on the wire
	ss.emit(ev)
	if bcast {
		a.allStations = true
		return nil
	}
	if r.noReply {
		return nil
	}
	ctrl := acFIR | acFIN | hdr.Seq()
	if r.con {
		ctrl |= acCON
		a.solPending, a.solSeq = true, hdr.Seq()
	}
	resp := AppendResponseHeader(r.ab.b[:0:0], ctrl, FuncResponse, iin)
	resp = append(resp, r.ab.b[4:]...)
	a.lastReq, a.lastResp = frag, resp
	ss.send(resp)
	if r.close {
		return errClose
	}
	return nil
}

func (a *appState) confirm(h AppHeader) {
	if h.Control&acUNS != 0 {
		if a.unsolPending && h.Seq() == a.unsolSeq {
			a.unsolPending = false
			a.dropInflight(inflightUnsolicited)
			a.unsolSeq = (a.unsolSeq + 1) & 0x0F
		}
		return
	}
	if a.solPending && h.Seq() == a.solSeq {
		a.solPending = false
		a.dropInflight(inflightSolicited)
	}
}

// read serves READ object headers.
func (a *appState) read(r *reqCtx, objs []byte) {
	d := a.h.dev
	for len(objs) > 0 {
		h, n, err := ParseObjectHeader(objs)
		if err != nil {
			r.iin |= IIN2ParamError
			return
		}
		objs = objs[n:]
		r.object(h)
		if r.ev.Quantity == 0 {
			r.ev.Address = int(h.Start)
		}
		r.ev.Quantity += max(h.Count, 1)
		limit := -1
		if h.Qual&0x0F == rangeCount8 || h.Qual&0x0F == rangeCount16 || h.Qual&0x0F == rangeCount32 {
			limit = h.Count
		}
		switch {
		case h.Group == 60 && h.Var == 1 && h.All:
			d.mu.Lock()
			d.appendStaticLocked(&r.ab, 0, 0, allPoints, allPoints, d.env.Now())
			d.mu.Unlock()
		case h.Group == 60 && h.Var >= 2 && h.Var <= 4 && (h.All || limit >= 0):
			if a.appendEvents(&r.ab, 1<<(h.Var-1), 0, 0, limit, inflightSolicited) > 0 {
				r.con = true
			}
		case validStatic(h.Group, h.Var):
			if !a.readStatic(r, h) {
				return
			}
		case h.Group == 2 || h.Group == 11 || h.Group == 32:
			if _, ok := eventVariation(h.Group, h.Var); !ok || !(h.All || limit >= 0) {
				r.iin |= IIN2ObjUnknown
				return
			}
			if a.appendEvents(&r.ab, 0b1110, h.Group, h.Var, limit, inflightSolicited) > 0 {
				r.con = true
			}
		case h.Group == 0:
			if !a.attributes(r, h) {
				return
			}
		case h.Group == 50 && h.Var == 1:
			d.mu.Lock()
			now := d.nowLocked()
			d.mu.Unlock()
			if r.ab.fits(10) {
				r.ab.b = AppendTime(append(r.ab.b, 50, 1, QualCount8, 1), now)
			}
		default:
			r.iin |= IIN2ObjUnknown
			return
		}
	}
}

// readStatic serves one static header; false stops the request.
func (a *appState) readStatic(r *reqCtx, h ObjectHeader) bool {
	d := a.h.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.pointCount(h.Group)
	start, stop := allPoints, allPoints
	switch h.Qual & 0x0F {
	case rangeAll:
	case rangeStartStop8, rangeStartStop16, rangeStartStop32:
		if h.Qual&0x70 != 0 {
			r.iin |= IIN2ParamError
			return false
		}
		if int(h.Start) >= n {
			r.iin |= IIN2ParamError
			return true
		}
		start, stop = int(h.Start), min(int(h.Stop), n-1)
		if int(h.Stop) >= n {
			r.iin |= IIN2ParamError
		}
	case rangeCount8, rangeCount16:
		if h.Count == 0 || n == 0 {
			return true
		}
		start, stop = 0, min(h.Count, n)-1
	default:
		r.iin |= IIN2ParamError
		return false
	}
	d.appendStaticLocked(&r.ab, h.Group, h.Var, start, stop, d.env.Now())
	return true
}

// attribute is one device attribute (g0).
type attribute struct {
	variation byte
	uint      bool
	value     string
	n         uint32
}

func (a *appState) attributeList() []attribute {
	id := a.h.env.Identity
	product := strings.TrimSpace(id.Product + " " + id.Model)
	switch {
	case strings.Contains(id.Model, id.Product):
		product = id.Model
	case strings.Contains(id.Product, id.Model):
		product = id.Product
	}
	devName := id.ModuleName
	if devName == "" {
		devName = id.Hostname
	}
	return []attribute{
		{variation: 252, value: id.Vendor},
		{variation: 250, value: product},
		{variation: 248, value: id.Serial},
		{variation: 247, value: devName},
		{variation: 246, value: id.Hostname},
		{variation: 245, value: id.Location},
		{variation: 243, value: id.Hardware},
		{variation: 242, value: id.Firmware},
		{variation: 241, uint: true, n: uint32(a.h.cfg.MaxFragment)},
		{variation: 240, uint: true, n: uint32(a.h.cfg.MaxFragment)},
	}
}

func appendAttribute(ab *appendBuf, at attribute) {
	var data []byte
	if at.uint {
		data = []byte{2, 2, byte(at.n), byte(at.n >> 8)} // UINT, 2 octets
		if at.n > 0xFFFF {
			data = []byte{2, 4, byte(at.n), byte(at.n >> 8), byte(at.n >> 16), byte(at.n >> 24)}
		}
	} else {
		v := at.value
		if len(v) > 255 {
			v = v[:255]
		}
		data = append([]byte{1, byte(len(v))}, v...) // VSTR
	}
	if ab.fits(5 + len(data)) {
		ab.b = append(ab.b, 0, at.variation, QualStartStop8, 0, 0)
		ab.b = append(ab.b, data...)
	}
}

// attributes serves g0 reads of attribute set 0.
func (a *appState) attributes(r *reqCtx, h ObjectHeader) bool {
	if !(h.All || (h.Qual&0x70 == 0 && h.Qual&0x0F <= rangeStartStop16 && h.Start == 0 && h.Stop == 0)) {
		r.iin |= IIN2ParamError
		return false
	}
	list := a.attributeList()
	if h.Var == 254 {
		for _, at := range list {
			if at.uint || at.value != "" {
				appendAttribute(&r.ab, at)
			}
		}
		return true
	}
	for _, at := range list {
		if at.variation == h.Var {
			appendAttribute(&r.ab, at)
			return true
		}
	}
	r.iin |= IIN2ObjUnknown
	return false
}

// write serves WRITE: g80v1 index 7 (clear restart), g50v1 (time), g50v3 (time at
// the last RECORD_CURRENT_TIME).
func (a *appState) write(r *reqCtx, objs []byte) {
	d := a.h.dev
	for len(objs) > 0 {
		h, n, err := ParseObjectHeader(objs)
		if err != nil {
			r.iin |= IIN2ParamError
			return
		}
		objs = objs[n:]
		r.object(h)
		r.ev.Write = true
		switch {
		case h.Group == 80 && h.Var == 1:
			if h.Qual != QualStartStop8 && h.Qual != QualStartStop16 {
				r.iin |= IIN2ParamError
				return
			}
			nb := (h.Count + 7) / 8
			if len(objs) < nb {
				r.iin |= IIN2ParamError
				return
			}
			bits := objs[:nb]
			objs = objs[nb:]
			r.ev.Address, r.ev.Quantity, r.ev.Data = int(h.Start), h.Count, append([]byte(nil), bits...)
			if h.Start != 7 || h.Stop != 7 || bits[0]&1 != 0 {
				r.iin |= IIN2ParamError // only IIN1.7 may be written, and only cleared
				return
			}
			d.mu.Lock()
			d.restart = false
			d.mu.Unlock()
		case h.Group == 50 && (h.Var == 1 || h.Var == 3):
			if h.Qual != QualCount8 || h.Count != 1 || len(objs) < 6 {
				r.iin |= IIN2ParamError
				return
			}
			t, _ := ParseTime(objs[:6])
			r.ev.Data = append([]byte(nil), objs[:6]...)
			r.ev.Detail["time"] = t.Format(time.RFC3339Nano)
			objs = objs[6:]
			d.mu.Lock()
			if h.Var == 1 {
				d.clock = t.Sub(d.env.Now())
			} else {
				if a.recordedAt.IsZero() {
					d.mu.Unlock()
					r.iin |= IIN2ParamError
					return
				}
				// t is the master's time at the recorded instant.
				d.clock = t.Add(d.env.Now().Sub(a.recordedAt)).Sub(d.env.Now())
			}
			d.needTime = false
			d.mu.Unlock()
		default:
			r.iin |= IIN2ObjUnknown
			return
		}
	}
}

// restart answers COLD/WARM_RESTART with the time to wait (g52v2) and restarts.
func (a *appState) restart(r *reqCtx, cold bool) {
	r.ev.Write = true
	delay := a.h.cfg.WarmRestartDelay
	if cold {
		delay = a.h.cfg.ColdRestartDelay
	}
	r.ab.b = append(r.ab.b, 52, 2, QualCount8, 1)
	r.ab.b = binary.LittleEndian.AppendUint16(r.ab.b, uint16(delay.Milliseconds()))
	d := a.h.dev
	d.mu.Lock()
	if cold {
		d.resetLocked()
	} else {
		d.restart = true
	}
	d.mu.Unlock()
	a.events, a.overflow = a.events[:0], false
	a.unsolEnabled = [4]bool{}
	a.unsolPending = false
	a.sel = nil
	a.init(a.h)
	// A cold restart reboots the device: it drops the connection after answering.
	r.close = cold
}

func (a *appState) unsolControl(r *reqCtx, objs []byte, enable bool) {
	for len(objs) > 0 {
		h, n, err := ParseObjectHeader(objs)
		if err != nil {
			r.iin |= IIN2ParamError
			return
		}
		objs = objs[n:]
		r.object(h)
		if h.Group != 60 || h.Var < 2 || h.Var > 4 {
			r.iin |= IIN2ObjUnknown
			return
		}
		if !h.All {
			r.iin |= IIN2ParamError
			return
		}
		a.unsolEnabled[h.Var-1] = enable
	}
}

// ---------------------------------------------------------------------------------
// Controls: g12v1 (CROB) and g41v1..4 (analog output blocks).

type ctrlObject struct {
	group, variation byte
	index            uint32
	data             []byte // the object after its prefix, including the status octet
	statusAt         int    // offset of the status octet in the request objects
}

// parseControls splits command headers into objects; qualifiers 0x17 and 0x28.
func parseControls(objs []byte) ([]ctrlObject, uint16) {
	var out []ctrlObject
	off := 0
	for off < len(objs) {
		h, n, err := ParseObjectHeader(objs[off:])
		if err != nil {
			return out, IIN2ParamError
		}
		var size int
		switch {
		case h.Group == 12 && h.Var == 1:
			size = crobLen
		case h.Group == 41 && analogOutputSize(h.Var) > 0:
			size = analogOutputSize(h.Var) + 1
		default:
			return out, IIN2ObjUnknown
		}
		if h.Qual != QualIndex8Count8 && h.Qual != QualIndex16Cnt16 {
			return out, IIN2ParamError
		}
		off += n
		p := h.PrefixSize()
		for range h.Count {
			if off+p+size > len(objs) {
				return out, IIN2ParamError
			}
			o := ctrlObject{group: h.Group, variation: h.Var, index: uintN(objs[off : off+p]),
				data: objs[off+p : off+p+size], statusAt: off + p + size - 1}
			out = append(out, o)
			off += p + size
		}
	}
	return out, 0
}

func (a *appState) control(ss *session, r *reqCtx, hdr AppHeader, objs []byte) {
	r.ev.Write = true
	list, bad := parseControls(objs)
	r.iin |= bad
	for i, o := range list {
		if i < 16 {
			r.objects = append(r.objects, fmt.Sprintf("g%dv%d", o.group, o.variation))
		}
		if i == 0 {
			r.ev.Address = int(o.index)
		}
	}
	r.ev.Quantity = len(list)
	r.ev.Data = append([]byte(nil), objs...)
	if bad != 0 && len(list) == 0 {
		return
	}
	resp := append([]byte(nil), objs...)
	for _, o := range list {
		resp[o.statusAt] = 0
	}
	key := append([]byte(nil), resp...)
	now := ss.rnow()
	statuses := make([]byte, len(list))
	switch hdr.Func {
	case FuncSelect:
		ok := true
		for i, o := range list {
			statuses[i] = a.check(o)
			ok = ok && statuses[i] == StatusSuccess
		}
		if ok && bad == 0 {
			a.sel = &selection{seq: hdr.Seq(), objs: key, at: now}
		}
	case FuncOperate:
		s := a.sel
		a.sel = nil
		valid := s != nil && bad == 0 && hdr.Seq() == (s.seq+1)&0x0F && bytes.Equal(s.objs, key) &&
			now.Sub(s.at) <= a.h.cfg.SelectTimeout
		for i, o := range list {
			if !valid {
				statuses[i] = StatusNoSelect
				continue
			}
			statuses[i] = a.execute(o)
		}
	default:
		for i, o := range list {
			statuses[i] = a.execute(o)
		}
	}
	var st []string
	for i, o := range list {
		resp[o.statusAt] = statuses[i]
		if i < 16 {
			st = append(st, strconv.Itoa(int(statuses[i])))
		}
	}
	r.ev.Detail["status"] = strings.Join(st, ",")
	if r.ab.fits(len(resp)) {
		r.ab.b = append(r.ab.b, resp...)
	}
}

// crobState decodes the state a CROB drives its output to; ok is false for codes
// the outstation does not support.
func crobState(c CROB) (on, ok bool) {
	if c.Code&0x30 != 0 { // queue / clear
		return false, false
	}
	op, tcc := c.Code&0x0F, c.Code>>6
	switch {
	case tcc == 1 && (op == 1 || op == 0):
		return true, true
	case tcc == 2 && (op == 1 || op == 0):
		return false, true
	case tcc == 0 && (op == 1 || op == 3):
		return true, true
	case tcc == 0 && (op == 2 || op == 4):
		return false, true
	}
	return false, false
}

// check validates one control object without executing it.
func (a *appState) check(o ctrlObject) byte {
	d := a.h.dev
	switch o.group {
	case 12:
		if o.index >= uint32(len(d.cfg.BinaryOutputs)) {
			return StatusNotSupported
		}
		c, _ := ParseCROB(o.data)
		if _, ok := crobState(c); !ok {
			return StatusNotSupported
		}
	case 41:
		if o.index >= uint32(len(d.cfg.AnalogOutputs)) {
			return StatusNotSupported
		}
		v := decodeAnalogOutput(o.variation, o.data)
		p := d.cfg.AnalogOutputs[o.index]
		if math.IsNaN(v) || math.IsInf(v, 0) || (p.Min < p.Max && (v < p.Min || v > p.Max)) {
			return StatusNotSupported
		}
	}
	return StatusSuccess
}

// execute validates and applies one control object.
func (a *appState) execute(o ctrlObject) byte {
	if st := a.check(o); st != StatusSuccess {
		return st
	}
	d := a.h.dev
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.env.Now()
	switch o.group {
	case 12:
		c, _ := ParseCROB(o.data)
		if c.Count == 0 {
			return StatusSuccess // a count of 0 executes nothing
		}
		on, _ := crobState(c)
		if d.bo[o.index] != on {
			d.bo[o.index], d.boChanged[o.index] = on, now
		}
		if fb := d.cfg.BinaryOutputs[o.index].FeedbackInput; fb != nil && d.bi[*fb] != on {
			d.bi[*fb], d.biChanged[*fb] = on, now
		}
	case 41:
		v := decodeAnalogOutput(o.variation, o.data)
		d.ao[o.index] = v
		if fb := d.cfg.AnalogOutputs[o.index].FeedbackInput; fb != nil {
			d.ai[*fb], d.aiStatic[*fb] = v, true
		}
	}
	return StatusSuccess
}
