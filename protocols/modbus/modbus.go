// Package modbus emulates a Modbus TCP server (port 502) behind the sensor's device
// persona: the Modbus Application Protocol v1.1b3 function codes 1–6, 8, 15–17, 22,
// 23 and 43/14, a register map whose values move plausibly over time, and device
// identification taken from protocols.Identity. See README.md.
package modbus

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Spec returns the registry entry of the Modbus TCP emulator.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      "modbus",
		Transport: protocols.TCP,
		Port:      502,
		Service:   "mbap",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc("modbus", New),
	}
}

// UnknownUnits says what a request to a unit identifier that is not served gets.
type UnknownUnits string

// Policies for unit identifiers outside UnitIDs.
const (
	// ServeAll answers every unit identifier from the one register map, as a Modbus
	// TCP device that is not a gateway does (the unit identifier is not significant).
	ServeAll UnknownUnits = "serve"
	// GatewayNoResponse answers exception 0x0B (gateway target device failed to
	// respond), as a TCP-to-serial gateway with nothing at that address does.
	GatewayNoResponse UnknownUnits = "gateway_target_failed"
	// GatewayNoPath answers exception 0x0A (gateway path unavailable).
	GatewayNoPath UnknownUnits = "gateway_path_unavailable"
	// Ignore drops the request without an answer.
	Ignore UnknownUnits = "ignore"
)

// ExtendedObject is a device identification object of the extended range
// (0x80–0xFF).
type ExtendedObject struct {
	ID    uint8  `yaml:"id"`
	Value string `yaml:"value"`
}

// Config is the persona's `modbus:` section. NewConfig fills in the defaults.
type Config struct {
	// UnitIDs are the unit identifiers this device answers as itself.
	UnitIDs []uint8 `yaml:"unit_ids"`
	// UnknownUnits is what other unit identifiers get: serve, gateway_target_failed,
	// gateway_path_unavailable or ignore.
	UnknownUnits UnknownUnits `yaml:"unknown_units"`
	// AcceptUnit0 and AcceptUnit255 serve unit identifiers 0 and 255 (the values a
	// client uses for "the device at this IP address") even when UnknownUnits is a
	// gateway policy.
	AcceptUnit0   bool `yaml:"accept_unit_0"`
	AcceptUnit255 bool `yaml:"accept_unit_255"`

	// IdleTimeout closes a connection that sends nothing for this long; a request
	// must also be complete within it from its first byte.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxRequests and MaxBytes bound one connection (requests answered or not, bytes
	// received).
	MaxRequests int `yaml:"max_requests"`
	MaxBytes    int `yaml:"max_bytes"`

	// ServerID is the server identifier of Report Server ID (FC 17); when unset the
	// unit identifier of the request is reported.
	ServerID *uint8 `yaml:"server_id"`
	// ServerIDData is the device-specific data of Report Server ID; when empty it is
	// built from the identity: product, model and firmware.
	ServerIDData string `yaml:"server_id_data"`
	// ExtendedObjects are the device identification objects 0x80–0xFF.
	ExtendedObjects []ExtendedObject `yaml:"extended_objects"`

	// FunctionCodes are the function codes the device implements (43 stands for
	// 43 / 14, Read Device Identification). A request with any other code answers
	// exception 01 exactly as a code the emulator does not know, so a device
	// without device identification (FC 43), Report Server ID (FC 17) or
	// diagnostics (FC 8) does not have them. Default: every code the emulator
	// supports (Supported).
	FunctionCodes []uint8 `yaml:"function_codes"`
	// DiagnosticSubFunctions are the FC 8 sub-functions the device implements; the
	// others answer exception 01 like the sub-functions the emulator does not know.
	// Default: every one the emulator supports (SupportedDiagnostics).
	DiagnosticSubFunctions []uint16 `yaml:"diagnostic_sub_functions"`

	// PollRate is the rate (requests per second) of the plant's own SCADA master,
	// which the diagnostic bus and server message counters (FC 8) include besides
	// the requests really received. 0 counts only the real ones.
	PollRate float64 `yaml:"poll_rate"`

	// The register map. Addresses not in a block answer exception 02.
	Coils            []Block `yaml:"coils"`
	DiscreteInputs   []Block `yaml:"discrete_inputs"`
	InputRegisters   []Block `yaml:"input_registers"`
	HoldingRegisters []Block `yaml:"holding_registers"`
}

// NewConfig returns the default configuration: one PLC on unit 1 that answers every
// unit identifier, with the register map of a small pumping station.
func NewConfig() *Config {
	return &Config{
		UnitIDs:       []uint8{1},
		UnknownUnits:  ServeAll,
		AcceptUnit0:   true,
		AcceptUnit255: true,
		IdleTimeout:   60 * time.Second,
		MaxRequests:   20000,
		MaxBytes:      1 << 20,
		PollRate:      2,
		// Every code and sub-function the emulator answers.
		FunctionCodes:          Supported(),
		DiagnosticSubFunctions: SupportedDiagnostics(),
		Coils: []Block{
			{Name: "pump_1_run", Address: 0, Count: 1, Behavior: &Behavior{Kind: Square, Period: 40 * time.Minute, Duty: 0.65}},
			{Name: "pump_2_run", Address: 1, Count: 1, Behavior: &Behavior{Kind: Square, Period: 55 * time.Minute, Duty: 0.3}},
			{Name: "outputs", Address: 2, Count: 62, Values: []float64{1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1}},
		},
		DiscreteInputs: []Block{
			{Name: "level_switches", Address: 0, Count: 4, Values: []float64{1, 1, 0, 0}},
			{Name: "inputs", Address: 4, Count: 60, Values: []float64{1, 1, 0, 1, 0, 0, 0, 0, 1}},
		},
		InputRegisters: []Block{
			{Name: "tank_level", Address: 0, Count: 1, Values: []float64{612}, Behavior: &Behavior{Kind: Sine, Period: 97 * time.Minute, Amplitude: 164}},
			{Name: "flow_rate", Address: 1, Count: 1, Values: []float64{1243}, Behavior: &Behavior{Kind: Noise, Period: 17 * time.Second, Amplitude: 36}},
			{Name: "discharge_pressure", Address: 2, Count: 2, Values: []float64{418, 405}, Behavior: &Behavior{Kind: Noise, Period: 11 * time.Second, Amplitude: 9}},
			{Name: "water_temperature", Address: 4, Count: 1, Type: Int16, Values: []float64{118}, Behavior: &Behavior{Kind: Sine, Period: 24 * time.Hour, Amplitude: 14}},
			{Name: "analog_inputs", Address: 5, Count: 5, Values: []float64{0, 4012, 3996, 0, 27}},
			{Name: "line_voltage", Address: 10, Count: 3, Type: Float32, Values: []float64{231.2, 230.4, 229.8}, Behavior: &Behavior{Kind: Noise, Period: 7 * time.Second, Amplitude: 1.6}},
			{Name: "energy_kwh", Address: 16, Count: 1, Type: Uint32, Values: []float64{1184420}, Behavior: &Behavior{Kind: Counter, Rate: 0.0125}},
			{Name: "spare", Address: 18, Count: 14},
		},
		HoldingRegisters: []Block{
			{Name: "setpoints", Address: 0, Count: 6, Values: []float64{650, 1250, 450, 300, 900, 120}},
			{Name: "pid_gains", Address: 6, Count: 3, Values: []float64{120, 35, 5}},
			{Name: "heartbeat", Address: 9, Count: 1, Behavior: &Behavior{Kind: Counter, Rate: 1}},
			{Name: "config", Address: 10, Count: 90, Values: []float64{1, 0, 3, 0, 60, 10, 0, 0, 1, 1}},
		},
	}
}

// Validate checks c; New calls it.
func (c *Config) Validate() error {
	switch c.UnknownUnits {
	case ServeAll, GatewayNoResponse, GatewayNoPath, Ignore:
	default:
		return fmt.Errorf("unknown_units %q: want serve, gateway_target_failed, gateway_path_unavailable or ignore", c.UnknownUnits)
	}
	if c.UnknownUnits != ServeAll && len(c.UnitIDs) == 0 && !c.AcceptUnit0 && !c.AcceptUnit255 {
		return errors.New("unit_ids: no unit is served")
	}
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("idle_timeout %v: want a positive duration", c.IdleTimeout)
	}
	if c.MaxRequests < 1 {
		return fmt.Errorf("max_requests %d: want at least 1", c.MaxRequests)
	}
	if c.MaxBytes < MaxADULen {
		return fmt.Errorf("max_bytes %d: want at least %d", c.MaxBytes, MaxADULen)
	}
	if math.IsNaN(c.PollRate) || math.IsInf(c.PollRate, 0) || c.PollRate < 0 {
		return fmt.Errorf("poll_rate %v: want a rate >= 0", c.PollRate)
	}
	if err := c.validateFunctions(); err != nil {
		return err
	}
	if len(c.ServerIDData) > maxServerIDData {
		return fmt.Errorf("server_id_data: %d bytes, at most %d fit", len(c.ServerIDData), maxServerIDData)
	}
	seen := map[uint8]bool{}
	for _, o := range c.ExtendedObjects {
		if o.ID < 0x80 {
			return fmt.Errorf("extended_objects: id 0x%02x: want 0x80-0xFF", o.ID)
		}
		if seen[o.ID] {
			return fmt.Errorf("extended_objects: id 0x%02x twice", o.ID)
		}
		seen[o.ID] = true
		if len(o.Value) > maxObjectLen {
			return fmt.Errorf("extended_objects: id 0x%02x: %d bytes, at most %d fit", o.ID, len(o.Value), maxObjectLen)
		}
	}
	return nil
}

// Supported returns the function codes the emulator answers, in ascending order
// (43 stands for 43 / 14): the default of Config.FunctionCodes.
func Supported() []uint8 {
	return []uint8{
		FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters,
		FuncWriteSingleCoil, FuncWriteSingleRegister, FuncDiagnostics, FuncWriteMultipleCoils,
		FuncWriteMultipleRegisters, FuncReportServerID, FuncMaskWriteRegister,
		FuncReadWriteMultipleRegisters, FuncEncapsulatedInterface,
	}
}

// SupportedDiagnostics returns the FC 8 sub-functions the emulator answers, in
// ascending order: the default of Config.DiagnosticSubFunctions.
func SupportedDiagnostics() []uint16 {
	return []uint16{
		diagReturnQueryData, diagRestartCommunications, diagReturnDiagnosticReg, diagClearCounters,
		diagBusMessageCount, diagBusCommErrorCount, diagBusExceptionErrorCount, diagServerMessageCount,
		diagServerNoResponseCount, diagServerNAKCount, diagServerBusyCount, diagBusCharacterOverrunCount,
	}
}

// validateFunctions checks function_codes and diagnostic_sub_functions, and that
// the settings of a function the device does not have are not set.
func (c *Config) validateFunctions() error {
	if len(c.FunctionCodes) == 0 {
		return errors.New("function_codes: the device implements no function code")
	}
	if err := checkSubset("function_codes", c.FunctionCodes, Supported()); err != nil {
		return err
	}
	if err := checkSubset("diagnostic_sub_functions", c.DiagnosticSubFunctions, SupportedDiagnostics()); err != nil {
		return err
	}
	has := func(fc byte) bool { return slices.Contains(c.FunctionCodes, fc) }
	switch {
	case !has(FuncReportServerID) && (c.ServerID != nil || c.ServerIDData != ""):
		return errors.New("server_id, server_id_data: function code 17 is not in function_codes")
	case !has(FuncEncapsulatedInterface) && len(c.ExtendedObjects) > 0:
		return errors.New("extended_objects: function code 43 is not in function_codes")
	}
	return nil
}

// checkSubset reports a value of list that supported lacks or that list has twice.
func checkSubset[T uint8 | uint16](name string, list, supported []T) error {
	for i, v := range list {
		if !slices.Contains(supported, v) {
			return fmt.Errorf("%s: %d is not emulated (supported: %v)", name, v, supported)
		}
		if slices.Contains(list[:i], v) {
			return fmt.Errorf("%s: %d twice", name, v)
		}
	}
	return nil
}

// Limits of FC 17 and FC 43 payloads in one PDU.
const (
	maxServerIDData = MaxPDULen - 4                     // fc, byte count, server id, run indicator
	maxObjectLen    = MaxPDULen - deviceIDHeaderLen - 2 // one object alone in a response
)

// ErrSessionLimit is returned (wrapped) when a connection reaches MaxRequests or
// MaxBytes; the handler has closed the session.
var ErrSessionLimit = errors.New("modbus: session limit reached")

// Handler serves Modbus TCP connections. The device state (register values written
// by clients, diagnostic counters) lives in the Handler and is shared by all its
// sessions; it is safe for concurrent use.
type Handler struct {
	cfg      Config
	env      protocols.Env
	units    [256]bool
	objects  []DeviceObject // sorted by id
	conform  byte
	serverID []byte          // FC 17 data after the server id
	fcs      [256]bool       // function codes implemented
	subs     map[uint16]bool // FC 8 sub-functions implemented
	// bufs lends the read and response buffers of sessions that have bytes to work
	// on: an idle session holds none.
	bufs *protocols.BufferPool

	mu   sync.Mutex
	regs *registerMap
	diag counters
}

var _ protocols.StreamHandler = (*Handler)(nil)

// New builds a handler for the persona env.Identity.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if env.Identity == nil {
		return nil, fmt.Errorf("modbus: no device identity: %w", protocols.ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("modbus: %w: %w", protocols.ErrConfig, err)
	}
	env = env.WithDefaults()
	h := &Handler{cfg: *cfg, env: env, bufs: protocols.NewBufferPool(bufferLen)}
	for _, u := range cfg.UnitIDs {
		h.units[u] = true
	}
	h.units[0] = h.units[0] || cfg.AcceptUnit0
	h.units[255] = h.units[255] || cfg.AcceptUnit255
	for _, fc := range cfg.FunctionCodes {
		h.fcs[fc] = true
	}
	h.subs = make(map[uint16]bool, len(cfg.DiagnosticSubFunctions))
	for _, sub := range cfg.DiagnosticSubFunctions {
		h.subs[sub] = true
	}

	id := env.Identity
	seed := fnv.New64a()
	fmt.Fprintf(seed, "%s\x00%s\x00%s", id.Vendor, id.Serial, id.MAC)
	regs, err := newRegisterMap(cfg, seed.Sum64())
	if err != nil {
		return nil, fmt.Errorf("modbus: %w: %w", protocols.ErrConfig, err)
	}
	h.regs = regs
	h.objects, h.conform = deviceObjects(id, cfg.ExtendedObjects)
	h.serverID = []byte(cfg.ServerIDData)
	if len(h.serverID) == 0 {
		h.serverID = []byte(joinNonEmpty(maxServerIDData, id.Product, id.Model, id.Firmware))
	}
	h.diag.since = env.Boot
	return h, nil
}

// deviceObjects builds the identification objects of FC 43/14 and the conformity
// level: the basic objects always (they are mandatory), the regular ones the
// identity has, the extended ones configured. Individual access is supported, so the
// level has bit 0x80 set.
func deviceObjects(id *protocols.Identity, ext []ExtendedObject) ([]DeviceObject, byte) {
	productCode := id.ProductCode
	if productCode == "" {
		productCode = id.OrderNumber
	}
	objs := []DeviceObject{
		{0x00, clip(id.Vendor)},
		{0x01, clip(productCode)},
		{0x02, clip(id.Firmware)},
	}
	level := byte(0x81)
	for i, v := range []string{id.VendorURL, id.Product, id.Model, id.ModuleName} {
		if v != "" {
			objs = append(objs, DeviceObject{byte(0x03 + i), clip(v)})
			level = 0x82
		}
	}
	ext = slices.SortedFunc(slices.Values(ext), func(a, b ExtendedObject) int { return cmp.Compare(a.ID, b.ID) })
	for _, o := range ext {
		objs = append(objs, DeviceObject{o.ID, []byte(o.Value)})
		level = 0x83
	}
	return objs, level
}

func clip(s string) []byte {
	if len(s) > maxObjectLen {
		s = s[:maxObjectLen]
	}
	return []byte(s)
}

func joinNonEmpty(max int, parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p)
	}
	s := b.String()
	if len(s) > max {
		s = s[:max]
	}
	return s
}

// ServeStream serves one connection: it reads MBAP frames (several per segment or one
// split over many), answers each in order, and returns nil when the peer closes, the
// idle timeout passes or ctx is cancelled.
func (h *Handler) ServeStream(ctx context.Context, s protocols.Session, conn net.Conn) error {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	rd := protocols.NewPooledStreamReader(h.bufs, h.cfg.MaxBytes, h.cfg.IdleTimeout)
	defer rd.Release()
	var (
		outp     *[]byte // the pool's buffer behind out, while held
		out      []byte
		requests int
	)
	defer func() {
		if outp != nil {
			h.bufs.Put(outp)
		}
	}()
	for {
		if outp == nil && len(rd.Buf) > 0 {
			outp = h.bufs.Get()
			out = (*outp)[:0]
		}
		// Answer every complete frame in the buffer.
		for {
			hdr, pdu, n, err := ParseFrame(rd.Buf)
			if errors.Is(err, ErrShortFrame) {
				break
			}
			if requests >= h.cfg.MaxRequests {
				return h.overLimit(conn, out, requests)
			}
			requests++
			if errors.Is(err, ErrFrameLength) {
				h.badLength(s, conn, hdr, out)
				return nil // a real device drops the connection: framing is lost
			}
			out = h.serveFrame(s, hdr, pdu, err, out)
			rd.Consume(n)
			if len(out) >= flushLen {
				if err := h.flush(conn, out); err != nil {
					return quiet(err)
				}
				out = out[:0]
			}
		}
		if err := h.flush(conn, out); err != nil {
			return quiet(err)
		}
		if outp != nil { // out (and what it grew into) is not used while waiting
			h.bufs.Put(outp)
			outp, out = nil, nil
		}

		// What is left is one incomplete frame (shorter than MaxADULen): Read moves it
		// to the front of the buffer, so that there is always room for the rest of it.
		more, err := rd.Read(ctx, conn)
		if err != nil {
			return readError(err, rd)
		}
		if !more {
			return nil
		}
	}
}

// The rare ends of ServeStream are functions of their own, so that its frame, which
// every idle session's goroutine keeps, stays small.

// overLimit ends a session at its request limit, answering what is answered.
func (h *Handler) overLimit(conn net.Conn, out []byte, requests int) error {
	_ = h.flush(conn, out) // the limit is what ends the session
	return fmt.Errorf("%w: %d requests", ErrSessionLimit, requests)
}

// badLength records a frame whose MBAP length is out of range, after answering the
// frames before it; the session then ends.
func (h *Handler) badLength(s protocols.Session, conn net.Conn, hdr Header, out []byte) {
	s.Logger().Debug("modbus: closing connection: MBAP length out of range", "length", hdr.Length)
	h.malformed(s, hdr, "length", int(hdr.Length))
	_ = h.flush(conn, out)
}

func readError(err error, rd *protocols.StreamReader) error {
	if errors.Is(err, protocols.ErrByteLimit) {
		return fmt.Errorf("%w: %d bytes", ErrSessionLimit, rd.Received())
	}
	return fmt.Errorf("modbus: %w", err)
}

// Buffer sizes of a session: what one read may fill (a few maximal ADUs of 260
// bytes; the response buffer's first size too), and how many response bytes are
// collected before they are written. Both buffers are borrowed from the handler's
// pool only while a session has requests to answer (see docs/BENCHMARKS.md, memory
// per idle session).
const (
	bufferLen = 1024
	flushLen  = 4096
)

// quiet maps a write error that only means the peer is gone to nil.
func quiet(err error) error {
	if protocols.PeerGone(err) {
		return nil
	}
	return err
}

// flush writes out with a write deadline, so a peer that stops reading cannot hold
// the session.
func (h *Handler) flush(conn net.Conn, out []byte) error {
	if len(out) == 0 {
		return nil
	}
	if err := conn.SetWriteDeadline(time.Now().Add(h.cfg.IdleTimeout)); err != nil {
		return fmt.Errorf("modbus: set write deadline: %w", err)
	}
	if _, err := conn.Write(out); err != nil {
		return fmt.Errorf("modbus: write: %w", err)
	}
	return nil
}

// malformed records a frame that is not a request; field is the offending header
// field or "pdu", value its value.
func (h *Handler) malformed(s protocols.Session, hdr Header, field string, value int) {
	h.mu.Lock()
	h.diag.bus++
	h.diag.commErrors++
	h.mu.Unlock()
	s.Emit(protocols.Event{
		Time:     h.env.Now(),
		Protocol: "modbus",
		Op:       "malformed_frame",
		Unit:     int(hdr.Unit),
		Detail: map[string]string{
			"reason":         field,
			field:            strconv.Itoa(value),
			"transaction_id": strconv.Itoa(int(hdr.Transaction)),
		},
	})
}

// serveFrame answers one complete frame (perr is ParseFrame's error) and appends the
// response frame, if any, to out.
func (h *Handler) serveFrame(s protocols.Session, hdr Header, pdu []byte, perr error, out []byte) []byte {
	switch {
	case errors.Is(perr, ErrProtocolID):
		// Not a Modbus frame: discarded without an answer (Implementation Guide,
		// MBAP header checking); the connection stays up.
		h.malformed(s, hdr, "protocol_id", int(hdr.Protocol))
		return out
	case errors.Is(perr, ErrEmptyPDU):
		h.malformed(s, hdr, "pdu_length", 0)
		return out
	}
	start := len(out)
	out = AppendHeader(out, Header{Transaction: hdr.Transaction, Protocol: hdr.Protocol, Unit: hdr.Unit})
	var ev protocols.Event
	out, reply := h.process(hdr.Unit, pdu, out, &ev)
	ev.Detail = withDetail(ev.Detail, "transaction_id", strconv.Itoa(int(hdr.Transaction)))
	s.Emit(ev)
	if !reply {
		return out[:start]
	}
	binary.BigEndian.PutUint16(out[start+4:], uint16(len(out)-start-6))
	return out
}

func withDetail(d map[string]string, k, v string) map[string]string {
	if d == nil {
		d = make(map[string]string, 1)
	}
	d[k] = v
	return d
}

// counters are the diagnostic counters of FC 8 (§6.8), kept since boot or the last
// Clear Counters / Restart Communications.
type counters struct {
	since      time.Time
	bus        uint64 // frames seen
	commErrors uint64 // malformed frames
	exceptions uint64 // exception responses sent
	server     uint64 // requests addressed to this device
}

func (c *counters) clear(now time.Time) {
	*c = counters{since: now}
}

// background is the number of requests the plant's own master sent since the
// counters were last cleared.
func (h *Handler) background(now time.Time) uint64 {
	d := now.Sub(h.diag.since).Seconds()
	if d <= 0 || h.cfg.PollRate == 0 {
		return 0
	}
	return uint64(d * h.cfg.PollRate)
}

// Process answers the request PDU req sent to unit and appends the response PDU to
// dst. It returns the event describing the request and whether a response is sent
// at all. It is the whole request handling minus the MBAP framing.
func (h *Handler) Process(unit byte, req []byte, dst []byte) (resp []byte, ev protocols.Event, reply bool) {
	resp, reply = h.process(unit, req, dst, &ev)
	return resp, ev, reply
}

// process is Process filling *ev, which must be zero: the event is the largest value
// on the request path, and the path's depth is the stack every idle session's
// goroutine keeps.
func (h *Handler) process(unit byte, req []byte, dst []byte, ev *protocols.Event) (resp []byte, reply bool) {
	if len(req) == 0 {
		return dst, false
	}
	now := h.env.Now()
	fc := req[0]
	ev.Time, ev.Protocol, ev.Op, ev.Code, ev.Unit = now, "modbus", opName(req), int(fc), int(unit)

	h.mu.Lock()
	defer h.mu.Unlock()
	h.diag.bus++
	if !h.units[unit] {
		switch h.cfg.UnknownUnits {
		case GatewayNoResponse, GatewayNoPath:
			e := GatewayTargetDeviceFailedToRespond
			if h.cfg.UnknownUnits == GatewayNoPath {
				e = GatewayPathUnavailable
			}
			ev.Detail = map[string]string{"unit_status": "not_served"}
			return h.exception(dst, ev, fc, e), true
		case Ignore:
			ev.Detail = map[string]string{"unit_status": "not_served", "response": "none"}
			return dst, false
		}
	}
	h.diag.server++
	t := now.Sub(h.env.Boot).Seconds()
	if t < 0 {
		t = 0
	}
	r := request{h: h, ev: ev, fc: fc, pdu: req, t: t, now: now, unit: unit}
	return r.serve(dst), true
}

func (h *Handler) exception(dst []byte, ev *protocols.Event, fc byte, e Exception) []byte {
	h.diag.exceptions++
	ev.Exception = int(e)
	return AppendException(dst, fc, e)
}

// opName is the event Op of a request PDU.
func opName(pdu []byte) string {
	switch pdu[0] {
	case FuncReadCoils:
		return "read_coils"
	case FuncReadDiscreteInputs:
		return "read_discrete_inputs"
	case FuncReadHoldingRegisters:
		return "read_holding_registers"
	case FuncReadInputRegisters:
		return "read_input_registers"
	case FuncWriteSingleCoil:
		return "write_single_coil"
	case FuncWriteSingleRegister:
		return "write_single_register"
	case FuncDiagnostics:
		return "diagnostics"
	case FuncWriteMultipleCoils:
		return "write_multiple_coils"
	case FuncWriteMultipleRegisters:
		return "write_multiple_registers"
	case FuncReportServerID:
		return "report_server_id"
	case FuncMaskWriteRegister:
		return "mask_write_register"
	case FuncReadWriteMultipleRegisters:
		return "read_write_multiple_registers"
	case FuncEncapsulatedInterface:
		if len(pdu) > 1 && pdu[1] == MEIReadDeviceID {
			return "read_device_identification"
		}
	}
	return "illegal_function"
}

// request is one request being answered; the Handler's mutex is held.
type request struct {
	h    *Handler
	ev   *protocols.Event
	fc   byte
	pdu  []byte
	t    float64 // seconds since boot
	now  time.Time
	unit byte
}

func (r *request) fail(dst []byte, e Exception) []byte {
	return r.h.exception(dst, r.ev, r.fc, e)
}

func (r *request) serve(dst []byte) []byte {
	if !r.h.fcs[r.fc] {
		return r.notImplemented(dst)
	}
	switch r.fc {
	case FuncReadCoils:
		return r.read(dst, Coils)
	case FuncReadDiscreteInputs:
		return r.read(dst, DiscreteInputs)
	case FuncReadHoldingRegisters:
		return r.read(dst, HoldingRegisters)
	case FuncReadInputRegisters:
		return r.read(dst, InputRegisters)
	case FuncWriteSingleCoil:
		return r.writeSingleCoil(dst)
	case FuncWriteSingleRegister:
		return r.writeSingleRegister(dst)
	case FuncDiagnostics:
		return r.diagnostics(dst)
	case FuncWriteMultipleCoils:
		return r.writeMultipleCoils(dst)
	case FuncWriteMultipleRegisters:
		return r.writeMultipleRegisters(dst)
	case FuncReportServerID:
		return r.reportServerID(dst)
	case FuncMaskWriteRegister:
		return r.maskWrite(dst)
	case FuncReadWriteMultipleRegisters:
		return r.readWrite(dst)
	case FuncEncapsulatedInterface:
		if len(r.pdu) > 1 && r.pdu[1] == MEIReadDeviceID {
			return r.readDeviceID(dst)
		}
		if len(r.pdu) > 1 {
			r.ev.Detail = map[string]string{"mei_type": strconv.Itoa(int(r.pdu[1]))}
		}
	}
	return r.fail(dst, IllegalFunction)
}

// notImplemented answers a function code that the emulator knows but the device
// does not implement (Config.FunctionCodes): exception 01, as for a code nobody
// knows. The event keeps the operation's name, so the attempt reads as what it was.
func (r *request) notImplemented(dst []byte) []byte {
	r.ev.Detail = map[string]string{"function": "not_implemented"}
	switch r.fc {
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncWriteMultipleCoils, FuncWriteMultipleRegisters,
		FuncMaskWriteRegister, FuncReadWriteMultipleRegisters:
		r.ev.Write = true
	case FuncEncapsulatedInterface:
		if len(r.pdu) > 1 {
			r.ev.Detail["mei_type"] = strconv.Itoa(int(r.pdu[1]))
		}
	}
	return r.fail(dst, IllegalFunction)
}

// target fills the event's area, range and point names.
func (r *request) target(area Area, addr, qty int) {
	r.ev.Area = string(area)
	r.ev.Address = addr
	r.ev.Quantity = qty
	if names := r.h.regs.names(area, addr, qty); names != "" && r.h.regs.covered(area, addr, qty) {
		r.ev.Detail = withDetail(r.ev.Detail, "points", names)
	}
}

// read serves FC 1–4.
func (r *request) read(dst []byte, area Area) []byte {
	r.ev.Area = string(area)
	rq, err := ParseRange(r.pdu)
	if err != nil {
		return r.fail(dst, IllegalDataValue)
	}
	addr, qty := int(rq.Address), int(rq.Quantity)
	r.target(area, addr, qty)
	max := MaxReadRegisters
	if area.bits() {
		max = MaxReadBits
	}
	if qty < 1 || qty > max {
		return r.fail(dst, IllegalDataValue)
	}
	if !r.h.regs.covered(area, addr, qty) {
		return r.fail(dst, IllegalDataAddress)
	}
	words := r.h.regs.read(nil, area, addr, qty, r.t)
	if !area.bits() {
		dst = append(dst, r.fc, byte(2*qty))
		return AppendRegisters(dst, words)
	}
	bits := make([]bool, len(words))
	for i, w := range words {
		bits[i] = w != 0
	}
	dst = append(dst, r.fc, byte((qty+7)/8))
	return PackBits(dst, bits)
}

func (r *request) writeSingleCoil(dst []byte) []byte {
	r.ev.Write = true
	w, err := ParseSingleWrite(r.pdu)
	if err != nil {
		r.ev.Area = string(Coils)
		return r.fail(dst, IllegalDataValue)
	}
	r.target(Coils, int(w.Address), 1)
	r.ev.Data = binary.BigEndian.AppendUint16(nil, w.Value)
	if w.Value != CoilOn && w.Value != CoilOff {
		return r.fail(dst, IllegalDataValue)
	}
	if !r.h.regs.covered(Coils, int(w.Address), 1) {
		return r.fail(dst, IllegalDataAddress)
	}
	v := uint16(0)
	if w.Value == CoilOn {
		v = 1
	}
	r.h.regs.write(Coils, int(w.Address), []uint16{v})
	return append(dst, r.pdu...)
}

func (r *request) writeSingleRegister(dst []byte) []byte {
	r.ev.Write = true
	w, err := ParseSingleWrite(r.pdu)
	if err != nil {
		r.ev.Area = string(HoldingRegisters)
		return r.fail(dst, IllegalDataValue)
	}
	r.target(HoldingRegisters, int(w.Address), 1)
	r.ev.Data = binary.BigEndian.AppendUint16(nil, w.Value)
	if !r.h.regs.covered(HoldingRegisters, int(w.Address), 1) {
		return r.fail(dst, IllegalDataAddress)
	}
	r.h.regs.write(HoldingRegisters, int(w.Address), []uint16{w.Value})
	return append(dst, r.pdu...)
}

func (r *request) writeMultipleCoils(dst []byte) []byte {
	return r.writeMultiple(dst, Coils, MaxWriteBits, func(q int) int { return (q + 7) / 8 }, func(b []byte, q int) []uint16 {
		bits, _ := UnpackBits(b, q) // length checked by writeMultiple
		vals := make([]uint16, q)
		for i, on := range bits {
			if on {
				vals[i] = 1
			}
		}
		return vals
	})
}

func (r *request) writeMultipleRegisters(dst []byte) []byte {
	return r.writeMultiple(dst, HoldingRegisters, MaxWriteRegisters, func(q int) int { return 2 * q }, func(b []byte, _ int) []uint16 {
		vals, _ := ParseRegisters(b) // even length checked by writeMultiple
		return vals
	})
}

// writeMultiple serves FC 15 and 16: max is the quantity limit, byteLen the byte count
// a quantity needs, decode turns the data into point values.
func (r *request) writeMultiple(dst []byte, area Area, max int, byteLen func(q int) int, decode func(b []byte, q int) []uint16) []byte {
	r.ev.Write = true
	r.ev.Area = string(area)
	w, err := ParseMultipleWrite(r.pdu)
	if errors.Is(err, ErrPDULength) {
		return r.fail(dst, IllegalDataValue)
	}
	addr, qty := int(w.Address), int(w.Quantity)
	r.target(area, addr, qty)
	r.ev.Data = append([]byte(nil), w.Values...)
	if err != nil || qty < 1 || qty > max || len(w.Values) != byteLen(qty) {
		return r.fail(dst, IllegalDataValue)
	}
	if !r.h.regs.covered(area, addr, qty) {
		return r.fail(dst, IllegalDataAddress)
	}
	r.h.regs.write(area, addr, decode(w.Values, qty))
	return AppendRange(dst, r.fc, Range{w.Address, w.Quantity})
}

func (r *request) maskWrite(dst []byte) []byte {
	r.ev.Write = true
	m, err := ParseMaskWrite(r.pdu)
	if err != nil {
		r.ev.Area = string(HoldingRegisters)
		return r.fail(dst, IllegalDataValue)
	}
	r.target(HoldingRegisters, int(m.Address), 1)
	r.ev.Data = append([]byte(nil), r.pdu[3:7]...)
	if !r.h.regs.covered(HoldingRegisters, int(m.Address), 1) {
		return r.fail(dst, IllegalDataAddress)
	}
	cur := r.h.regs.read(nil, HoldingRegisters, int(m.Address), 1, r.t)[0]
	r.h.regs.write(HoldingRegisters, int(m.Address), []uint16{m.Apply(cur)})
	return append(dst, r.pdu...)
}

func (r *request) readWrite(dst []byte) []byte {
	r.ev.Write = true
	rw, err := ParseReadWrite(r.pdu)
	r.ev.Area = string(HoldingRegisters)
	if errors.Is(err, ErrPDULength) {
		return r.fail(dst, IllegalDataValue)
	}
	r.target(HoldingRegisters, int(rw.Read.Address), int(rw.Read.Quantity))
	r.ev.Detail = withDetail(r.ev.Detail, "write_address", strconv.Itoa(int(rw.Write.Address)))
	r.ev.Detail["write_quantity"] = strconv.Itoa(int(rw.Write.Quantity))
	r.ev.Data = append([]byte(nil), rw.Values...)
	if err != nil ||
		rw.Read.Quantity < 1 || rw.Read.Quantity > MaxReadRegisters ||
		rw.Write.Quantity < 1 || rw.Write.Quantity > MaxRWWriteRegister ||
		len(rw.Values) != 2*int(rw.Write.Quantity) {
		return r.fail(dst, IllegalDataValue)
	}
	if !r.h.regs.covered(HoldingRegisters, int(rw.Read.Address), int(rw.Read.Quantity)) ||
		!r.h.regs.covered(HoldingRegisters, int(rw.Write.Address), int(rw.Write.Quantity)) {
		return r.fail(dst, IllegalDataAddress)
	}
	vals, _ := ParseRegisters(rw.Values)                          // even length checked above
	r.h.regs.write(HoldingRegisters, int(rw.Write.Address), vals) // the write comes first (§6.17)
	dst = append(dst, r.fc, byte(2*rw.Read.Quantity))
	return AppendRegisters(dst, r.h.regs.read(nil, HoldingRegisters, int(rw.Read.Address), int(rw.Read.Quantity), r.t))
}

// Diagnostics sub-functions (§6.8.1).
const (
	diagReturnQueryData          uint16 = 0x00
	diagRestartCommunications    uint16 = 0x01
	diagReturnDiagnosticReg      uint16 = 0x02
	diagClearCounters            uint16 = 0x0A
	diagBusMessageCount          uint16 = 0x0B
	diagBusCommErrorCount        uint16 = 0x0C
	diagBusExceptionErrorCount   uint16 = 0x0D
	diagServerMessageCount       uint16 = 0x0E
	diagServerNoResponseCount    uint16 = 0x0F
	diagServerNAKCount           uint16 = 0x10
	diagServerBusyCount          uint16 = 0x11
	diagBusCharacterOverrunCount uint16 = 0x12
)

func diagName(sub uint16) string {
	switch sub {
	case diagReturnQueryData:
		return "return_query_data"
	case diagRestartCommunications:
		return "restart_communications_option"
	case diagReturnDiagnosticReg:
		return "return_diagnostic_register"
	case 0x03:
		return "change_ascii_input_delimiter"
	case 0x04:
		return "force_listen_only_mode"
	case diagClearCounters:
		return "clear_counters_and_diagnostic_register"
	case diagBusMessageCount:
		return "return_bus_message_count"
	case diagBusCommErrorCount:
		return "return_bus_communication_error_count"
	case diagBusExceptionErrorCount:
		return "return_bus_exception_error_count"
	case diagServerMessageCount:
		return "return_server_message_count"
	case diagServerNoResponseCount:
		return "return_server_no_response_count"
	case diagServerNAKCount:
		return "return_server_nak_count"
	case diagServerBusyCount:
		return "return_server_busy_count"
	case diagBusCharacterOverrunCount:
		return "return_bus_character_overrun_count"
	case 0x14:
		return "clear_overrun_counter_and_flag"
	}
	return "reserved"
}

func (r *request) diagnostics(dst []byte) []byte {
	d, err := ParseDiagnostic(r.pdu)
	if err != nil {
		return r.fail(dst, IllegalDataValue)
	}
	r.ev.Detail = map[string]string{
		"sub_function":      diagName(d.SubFunction),
		"sub_function_code": strconv.Itoa(int(d.SubFunction)),
	}
	r.ev.Data = append([]byte(nil), d.Data...)
	if !r.h.subs[d.SubFunction] {
		// Not implemented by the device: as a sub-function the emulator does not know.
		return r.fail(dst, IllegalFunction)
	}
	c := &r.h.diag
	var value uint16
	switch d.SubFunction {
	case diagReturnQueryData:
		return append(dst, r.pdu...)
	case diagRestartCommunications:
		if len(d.Data) != 2 || (be16(d.Data) != 0x0000 && be16(d.Data) != 0xFF00) {
			return r.fail(dst, IllegalDataValue)
		}
		c.clear(r.now)
		return append(dst, r.pdu...)
	case diagClearCounters:
		if len(d.Data) != 2 || be16(d.Data) != 0 {
			return r.fail(dst, IllegalDataValue)
		}
		c.clear(r.now)
		return append(dst, r.pdu...)
	case diagReturnDiagnosticReg:
		// No diagnostic condition is ever flagged.
		value = 0
	case diagBusMessageCount:
		value = uint16(c.bus + r.h.background(r.now))
	case diagBusCommErrorCount:
		value = uint16(c.commErrors)
	case diagBusExceptionErrorCount:
		value = uint16(c.exceptions)
	case diagServerMessageCount:
		value = uint16(c.server + r.h.background(r.now))
	case diagServerNoResponseCount, diagServerNAKCount, diagServerBusyCount, diagBusCharacterOverrunCount:
		// Every request addressed to this device is answered, never with NAK or
		// busy, and there is no serial line to overrun.
		value = 0
	default:
		return r.fail(dst, IllegalFunction)
	}
	if len(d.Data) != 2 || be16(d.Data) != 0 {
		return r.fail(dst, IllegalDataValue)
	}
	dst = append(dst, r.fc)
	dst = binary.BigEndian.AppendUint16(dst, d.SubFunction)
	return binary.BigEndian.AppendUint16(dst, value)
}

// runIndicatorOn is the Run Indicator Status of FC 17 for a device in run.
const runIndicatorOn = 0xFF

func (r *request) reportServerID(dst []byte) []byte {
	if len(r.pdu) != 1 {
		return r.fail(dst, IllegalDataValue)
	}
	id := r.unit
	if r.h.cfg.ServerID != nil {
		id = *r.h.cfg.ServerID
	}
	r.ev.Detail = map[string]string{"server_id": strconv.Itoa(int(id))}
	dst = append(dst, r.fc, byte(2+len(r.h.serverID)), id, runIndicatorOn)
	return append(dst, r.h.serverID...)
}

// Read Device ID codes (§6.21).
const (
	readDevIDBasic      = 0x01
	readDevIDRegular    = 0x02
	readDevIDExtended   = 0x03
	readDevIDIndividual = 0x04
)

func (r *request) readDeviceID(dst []byte) []byte {
	r.ev.Area = "device_identification"
	q, err := ParseDeviceIDRequest(r.pdu)
	if err != nil {
		return r.fail(dst, IllegalDataValue)
	}
	r.ev.Address = int(q.ObjectID)
	r.ev.Detail = map[string]string{"read_device_id_code": strconv.Itoa(int(q.Code)), "mei_type": strconv.Itoa(int(MEIReadDeviceID))}
	objs := r.h.objects
	if q.Code < readDevIDBasic || q.Code > readDevIDIndividual {
		return r.fail(dst, IllegalDataValue)
	}
	resp := DeviceIDResponse{Code: q.Code, Conformity: r.h.conform}
	if q.Code == readDevIDIndividual {
		for _, o := range objs {
			if o.ID == q.ObjectID {
				r.ev.Quantity = 1
				resp.Objects = []DeviceObject{o}
				return AppendDeviceIDResponse(dst, resp)
			}
		}
		return r.fail(dst, IllegalDataAddress)
	}
	// Stream access: the objects of the requested category, from ObjectID on; an
	// object id that is not one of them restarts at object 0.
	last := byte(0x02)
	switch q.Code {
	case readDevIDRegular:
		last = 0x7F
	case readDevIDExtended:
		last = 0xFF
	}
	first := -1
	for i, o := range objs {
		if o.ID == q.ObjectID && o.ID <= last {
			first = i
			break
		}
	}
	if first < 0 {
		first = 0
	}
	size := deviceIDHeaderLen
	for _, o := range objs[first:] {
		if o.ID > last {
			break
		}
		if size+2+len(o.Value) > MaxPDULen {
			resp.MoreFollows = true
			resp.NextObject = o.ID
			break
		}
		size += 2 + len(o.Value)
		resp.Objects = append(resp.Objects, o)
	}
	r.ev.Quantity = len(resp.Objects)
	return AppendDeviceIDResponse(dst, resp)
}
