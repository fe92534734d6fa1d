// Package guardian emulates the serial-over-TCP interface (port 10001) of a
// Veeder-Root TLS-350 automatic tank gauge, the console Conpot calls "Guardian AST":
// SOH-framed inquiry and set commands, display-format reports ending with ETX,
// computer-format reports with their checksum, and tank levels that follow a
// consistent sales-and-delivery cycle over time. See README.md.
package guardian

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // station time zones work on hosts without a zoneinfo database

	"github.com/pcapot/pcapot/protocols"
)

// Spec returns the registry entry of the tank gauge emulator. IANA has no entry for
// the Veeder-Root protocol; "scp-config" is the service name IANA registers for TCP
// port 10001, which is what other tools label this traffic with.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      "guardian_ast",
		Transport: protocols.TCP,
		Port:      10001,
		Service:   "scp-config",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc("guardian_ast", New),
	}
}

// Tank is one tank of the station.
type Tank struct {
	// Product is the product label (function 602), at most 20 characters.
	Product string `yaml:"product"`
	// ProductCode is the one-character product code of computer-format reports;
	// empty means "1" for the first tank, "2" for the second...
	ProductCode string `yaml:"product_code"`
	// Capacity is the tank's full volume in gallons, Diameter its inside diameter in
	// inches (the tank is a horizontal cylinder).
	Capacity float64 `yaml:"capacity"`
	Diameter float64 `yaml:"diameter"`
	// Fill is the fraction of the capacity a delivery fills the tank to, Reorder the
	// fraction at which the delivery comes.
	Fill    float64 `yaml:"fill"`
	Reorder float64 `yaml:"reorder"`
	// Level is the fraction filled at boot; 0 picks one per install.
	Level float64 `yaml:"level"`
	// Usage is the average sales rate in gallons per hour.
	Usage float64 `yaml:"usage"`
	// Temperature is the product temperature in °F, Water the water level in inches.
	Temperature float64 `yaml:"temperature"`
	Water       float64 `yaml:"water"`
	// Alarms are standing alarms shown in the status report (see README.md for the
	// names).
	Alarms []string `yaml:"alarms"`
}

// Config is the persona's `guardian_ast:` section. NewConfig fills in the defaults.
type Config struct {
	// StationHeader holds the up to four station header lines printed at the top of
	// every display report. Empty: the identity's module name and location.
	StationHeader []string `yaml:"station_header"`
	// TimeZone is the console clock's IANA zone name.
	TimeZone string `yaml:"time_zone"`
	// SecurityCode is the optional six-character RS-232 security code; when set,
	// commands without it are not answered.
	SecurityCode string `yaml:"security_code"`
	// Shifts are the shift start times, "HH:MM" in the console's zone.
	Shifts []string `yaml:"shifts"`
	// DeliveryNeeded is the fraction of capacity below which a tank shows the
	// DELIVERY NEEDED warning; 0 turns the warning off.
	DeliveryNeeded float64 `yaml:"delivery_needed"`
	Tanks          []Tank  `yaml:"tanks"`

	// IdleTimeout closes a connection that sends nothing for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// CommandTimeout is the pause after which a command without a terminator is
	// taken as complete.
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// MaxCommands and MaxBytes bound one connection.
	MaxCommands int `yaml:"max_commands"`
	MaxBytes    int `yaml:"max_bytes"`
}

// NewConfig returns the default configuration: a four-tank station.
func NewConfig() *Config {
	return &Config{
		TimeZone:       "America/Chicago",
		Shifts:         []string{"06:00", "14:00", "22:00"},
		DeliveryNeeded: 0.3,
		Tanks: []Tank{
			{Product: "REGULAR UNLEADED", Capacity: 12000, Diameter: 96, Fill: 0.88, Reorder: 0.24, Usage: 94, Temperature: 58.2},
			{Product: "PLUS UNLEADED", Capacity: 8000, Diameter: 92, Fill: 0.86, Reorder: 0.27, Usage: 27, Temperature: 58.9},
			{Product: "PREMIUM UNLEADED", Capacity: 10000, Diameter: 96, Fill: 0.87, Reorder: 0.25, Usage: 31, Temperature: 59.4, Water: 0.42},
			{Product: "DIESEL", Capacity: 12000, Diameter: 96, Fill: 0.9, Reorder: 0.22, Usage: 46, Temperature: 57.1},
		},
		IdleTimeout:    5 * time.Minute,
		CommandTimeout: time.Second,
		MaxCommands:    2000,
		MaxBytes:       256 << 10,
	}
}

// maxTanks is the number of tank probes the console supports.
const maxTanks = 16

// alarmCodes maps the alarm names of Tank.Alarms to the tank alarm type codes of
// the computer-format status report (function 205).
var alarmCodes = map[string]int{
	"SETUP DATA WARNING":   1,
	"LEAK ALARM":           2,
	"HIGH WATER ALARM":     3,
	"OVERFILL ALARM":       4,
	"LOW PRODUCT ALARM":    5,
	"SUDDEN LOSS ALARM":    6,
	"HIGH PRODUCT ALARM":   7,
	"INVALID FUEL LEVEL":   8,
	"PROBE OUT":            9,
	"HIGH WATER WARNING":   10,
	"DELIVERY NEEDED":      11,
	"MAX PRODUCT ALARM":    12,
	"PERIODIC TEST NEEDED": 16,
}

// Validate checks c; New calls it.
func (c *Config) Validate() error {
	if len(c.StationHeader) > 4 {
		return fmt.Errorf("station_header: %d lines, at most 4", len(c.StationHeader))
	}
	for i, l := range c.StationHeader {
		if len(l) > 40 || !printable(l) {
			return fmt.Errorf("station_header[%d]: want at most 40 printable ASCII characters", i)
		}
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil {
		return fmt.Errorf("time_zone %q: %w", c.TimeZone, err)
	}
	if c.SecurityCode != "" && (len(c.SecurityCode) != 6 || !printable(c.SecurityCode)) {
		return fmt.Errorf("security_code: want six printable ASCII characters or none")
	}
	if len(c.Shifts) < 1 || len(c.Shifts) > 4 {
		return fmt.Errorf("shifts: %d, want 1 to 4 start times", len(c.Shifts))
	}
	for _, s := range c.Shifts {
		if _, err := parseClock(s); err != nil {
			return fmt.Errorf("shifts: %w", err)
		}
	}
	if c.DeliveryNeeded < 0 || c.DeliveryNeeded >= 1 {
		return fmt.Errorf("delivery_needed %v: want a fraction in [0, 1)", c.DeliveryNeeded)
	}
	if len(c.Tanks) < 1 || len(c.Tanks) > maxTanks {
		return fmt.Errorf("tanks: %d, want 1 to %d", len(c.Tanks), maxTanks)
	}
	for i, t := range c.Tanks {
		if err := t.validate(); err != nil {
			return fmt.Errorf("tanks[%d]: %w", i, err)
		}
	}
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("idle_timeout %v: want a positive duration", c.IdleTimeout)
	}
	if c.CommandTimeout <= 0 || c.CommandTimeout > c.IdleTimeout {
		return fmt.Errorf("command_timeout %v: want a positive duration up to idle_timeout", c.CommandTimeout)
	}
	if c.MaxCommands < 1 {
		return fmt.Errorf("max_commands %d: want at least 1", c.MaxCommands)
	}
	if c.MaxBytes < MaxCommandLen {
		return fmt.Errorf("max_bytes %d: want at least %d", c.MaxBytes, MaxCommandLen)
	}
	return nil
}

func (t Tank) validate() error {
	switch {
	case len(t.Product) > MaxLabelLen || !printable(t.Product):
		return fmt.Errorf("product: want at most %d printable ASCII characters", MaxLabelLen)
	case len(t.ProductCode) > 1 || !printable(t.ProductCode):
		return fmt.Errorf("product_code %q: want one printable ASCII character", t.ProductCode)
	case t.Capacity < 100 || t.Capacity > 60000:
		return fmt.Errorf("capacity %v: want 100 to 60000 gallons", t.Capacity)
	case t.Diameter < 24 || t.Diameter > 200:
		return fmt.Errorf("diameter %v: want 24 to 200 inches", t.Diameter)
	case !(t.Reorder > 0 && t.Reorder < t.Fill && t.Fill <= 0.95):
		return fmt.Errorf("reorder %v, fill %v: want 0 < reorder < fill <= 0.95", t.Reorder, t.Fill)
	case t.Level != 0 && (t.Level < t.Reorder || t.Level > t.Fill):
		return fmt.Errorf("level %v: want 0 (per install) or between reorder and fill", t.Level)
	case !(t.Usage > 0) || (t.Fill-t.Reorder)*t.Capacity/t.Usage < 1:
		return fmt.Errorf("usage %v: want a positive rate that takes at least an hour from fill to reorder", t.Usage)
	case t.Temperature < -40 || t.Temperature > 140:
		return fmt.Errorf("temperature %v: want -40 to 140 °F", t.Temperature)
	case t.Water < 0 || t.Water > t.Diameter/4:
		return fmt.Errorf("water %v: want 0 to a quarter of the diameter", t.Water)
	}
	for _, a := range t.Alarms {
		if _, ok := alarmCodes[a]; !ok {
			return fmt.Errorf("alarms: unknown alarm %q", a)
		}
	}
	return nil
}

func printable(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// parseClock parses "HH:MM" into minutes after midnight.
func parseClock(s string) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || len(hh) != 2 || len(mm) != 2 || h > 23 || m > 59 || h < 0 || m < 0 {
		return 0, fmt.Errorf("%q: want HH:MM", s)
	}
	return h*60 + m, nil
}

// ErrSessionLimit is returned (wrapped) when a connection reaches MaxCommands or
// MaxBytes.
var ErrSessionLimit = errors.New("guardian: session limit reached")

// Handler serves tank gauge connections. The product labels set by clients are
// device state, shared by all sessions; Handler is safe for concurrent use.
type Handler struct {
	cfg    Config
	env    protocols.Env
	loc    *time.Location
	header []string
	shifts []int // minutes after midnight, ascending
	tanks  []model
	codes  []byte // product code per tank

	mu     sync.Mutex
	labels []string
}

var _ protocols.StreamHandler = (*Handler)(nil)

// New builds a handler for the persona env.Identity.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if env.Identity == nil {
		return nil, fmt.Errorf("guardian: no device identity: %w", protocols.ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("guardian: %w: %w", protocols.ErrConfig, err)
	}
	env = env.WithDefaults()
	h := &Handler{cfg: *cfg, env: env}
	h.loc, _ = time.LoadLocation(cfg.TimeZone) // checked by Validate
	h.header = cfg.StationHeader
	if len(h.header) == 0 {
		for _, l := range []string{env.Identity.ModuleName, env.Identity.Location} {
			if l = strings.ToUpper(strings.TrimSpace(l)); l != "" && printable(l) {
				h.header = append(h.header, clipString(l, 40))
			}
		}
	}
	for _, s := range cfg.Shifts {
		m, _ := parseClock(s)
		h.shifts = append(h.shifts, m)
	}
	slices.Sort(h.shifts)
	id := env.Identity
	for i, t := range cfg.Tanks {
		seed := fnv.New64a()
		fmt.Fprintf(seed, "%s\x00%s\x00%s\x00%d", id.Vendor, id.Serial, id.MAC, i)
		h.tanks = append(h.tanks, newModel(t, env.Boot, float64(seed.Sum64()%10007)/10007))
		code := byte('1' + i%9)
		if t.ProductCode != "" {
			code = t.ProductCode[0]
		}
		h.codes = append(h.codes, code)
		h.labels = append(h.labels, t.Product)
	}
	return h, nil
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Sizes of a session's buffers.
const (
	readBufferLen = 4096
	maxNoiseData  = 256 // bytes of ignored input kept for the event
)

// conversation is the state of one connection.
type conversation struct {
	h        *Handler
	s        protocols.Session
	commands int
	noise    []byte // ignored input not yet reported
	noiseLen int
}

// ServeStream serves one connection until the peer closes it, it stays idle for
// IdleTimeout, a limit is reached or ctx is cancelled.
func (h *Handler) ServeStream(ctx context.Context, s protocols.Session, conn net.Conn) error {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	c := &conversation{h: h, s: s}
	defer c.flushNoise()

	var (
		backing  = make([]byte, readBufferLen)
		buf      = backing[:0]
		out      []byte
		received int
		first    time.Time // first byte of the pending command
		last     time.Time // last byte received
	)
	for {
		var err error
		out, buf, err = c.drain(out[:0], buf, false)
		if werr := h.write(conn, out); werr != nil {
			return quiet(werr)
		}
		if err != nil {
			return err
		}
		buf = backing[:copy(backing, buf)]
		if len(buf) == 0 {
			first = time.Time{}
		}
		if received >= h.cfg.MaxBytes {
			return fmt.Errorf("%w: %d bytes", ErrSessionLimit, received)
		}
		deadline := time.Now().Add(h.cfg.IdleTimeout)
		if len(buf) > 0 {
			deadline = last.Add(h.cfg.CommandTimeout)
			if end := first.Add(h.cfg.IdleTimeout); end.Before(deadline) {
				deadline = end
			}
		}
		if err := conn.SetReadDeadline(deadline); err != nil {
			if protocols.PeerGone(err) {
				return nil
			}
			return fmt.Errorf("guardian: set read deadline: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		room := min(cap(buf)-len(buf), h.cfg.MaxBytes-received)
		n, err := conn.Read(buf[len(buf) : len(buf)+room])
		if n > 0 {
			last = time.Now()
			if len(buf) == 0 {
				first = last
			}
			buf = buf[:len(buf)+n]
			received += n
			continue
		}
		if isTimeout(err) && len(buf) > 0 && ctx.Err() == nil {
			// The sender paused: what it sent so far is the whole command.
			out, buf, err = c.drain(out[:0], buf, true)
			if werr := h.write(conn, out); werr != nil {
				return quiet(werr)
			}
			if err != nil {
				return err
			}
			buf = backing[:copy(backing, buf)]
			continue
		}
		if err == nil || protocols.PeerGone(err) {
			// A command the peer sent just before closing is still answered, as a
			// console that has read it does; the write fails quietly if it is gone.
			out, _, _ = c.drain(out[:0], buf, true)
			_ = h.write(conn, out)
			return nil
		}
		return fmt.Errorf("guardian: read: %w", err)
	}
}

// drain answers every complete command in buf and discards the input between
// commands; it returns the responses appended to out and what is left of buf (an
// incomplete command). final takes an incomplete command as complete.
func (c *conversation) drain(out, buf []byte, final bool) ([]byte, []byte, error) {
	secLen := len(c.h.cfg.SecurityCode)
	for len(buf) > 0 {
		if buf[0] != SOH {
			n := SkipNoise(buf)
			c.addNoise(buf[:n])
			buf = buf[n:]
			continue
		}
		cmd, n, ok := SplitCommand(buf, secLen, final)
		if !ok {
			break
		}
		if c.commands >= c.h.cfg.MaxCommands {
			return out, buf, fmt.Errorf("%w: %d commands", ErrSessionLimit, c.commands)
		}
		c.commands++
		c.flushNoise()
		out = c.h.answer(c.s, cmd, out)
		buf = buf[n:]
	}
	return out, buf, nil
}

// addNoise collects input sent outside a command. Line ends and NULs between
// commands are normal and not reported.
func (c *conversation) addNoise(b []byte) {
	if b = bytes.Trim(b, "\r\n\x00\t "); len(b) == 0 {
		return
	}
	c.noiseLen += len(b)
	if room := maxNoiseData - len(c.noise); room > 0 {
		c.noise = append(c.noise, b[:min(room, len(b))]...)
	}
}

// flushNoise reports the input ignored since the last command.
func (c *conversation) flushNoise() {
	if c.noiseLen == 0 {
		return
	}
	c.s.Emit(protocols.Event{
		Time:     c.h.env.Now().UTC(),
		Protocol: "guardian_ast",
		Op:       "ignored_input",
		Unit:     -1,
		Data:     c.noise,
		Detail:   map[string]string{"reason": "no_soh", "size": strconv.Itoa(c.noiseLen)},
	})
	c.noise, c.noiseLen = nil, 0
}

// write sends out with a write deadline.
func (h *Handler) write(conn net.Conn, out []byte) error {
	if len(out) == 0 {
		return nil
	}
	if err := conn.SetWriteDeadline(time.Now().Add(h.cfg.IdleTimeout)); err != nil {
		return fmt.Errorf("guardian: set write deadline: %w", err)
	}
	if _, err := conn.Write(out); err != nil {
		return fmt.Errorf("guardian: write: %w", err)
	}
	return nil
}

// quiet maps the errors of a peer that went away to nil.
func quiet(err error) error {
	if protocols.PeerGone(err) {
		return nil
	}
	return err
}

// isTimeout reports whether a read ended at its deadline (the sender paused).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// Event operation names by function number.
var functionOps = map[string]string{
	"201": "inventory_report",
	"202": "delivery_report",
	"203": "leak_report",
	"204": "shift_report",
	"205": "status_report",
	"602": "product_label_report",
}

// answer answers one command (SOH included) and appends the response to out.
func (h *Handler) answer(s protocols.Session, raw []byte, out []byte) []byte {
	now := h.env.Now().In(h.loc) // the console clock; reports print it in the station's zone
	ev := protocols.Event{Time: now.UTC(), Protocol: "guardian_ast", Unit: -1, Detail: map[string]string{}}
	defer func() { s.Emit(ev) }()

	sec := h.cfg.SecurityCode
	if sec != "" && !bytes.HasPrefix(raw[1:], []byte(sec)) {
		// The console does not respond to a command without its security code.
		ev.Op = "security_code_mismatch"
		ev.Data = raw[1:]
		ev.Detail["response"] = "none"
		return out
	}
	cmd, err := ParseCommand(raw, len(sec))
	if err != nil {
		ev.Op = "malformed_command"
		ev.Data = raw[1:]
		ev.Detail["reason"] = err.Error()
		ev.Exception = 9999
		return append(out, NotUnderstood...)
	}
	code := cmd.Code()
	ev.Detail["function_code"] = code
	ev.Detail["format"] = cmd.Format().String()
	if n, err := strconv.Atoi(cmd.Function); err == nil {
		ev.Code = n
	}
	ev.Area = "tanks"
	ev.Address = cmd.Device
	if len(cmd.Data) > 0 {
		ev.Data = cmd.Data
	}

	tanks := h.selectTanks(cmd.Device)
	ev.Quantity = len(tanks)
	op := functionOps[cmd.Function]
	switch {
	case cmd.Type == 'S' && cmd.Function == "602":
		return h.setLabel(&ev, cmd, tanks, now, out)
	case op == "" || !cmd.Inquiry():
		ev.Op = "unknown_command"
		ev.Exception = 9999
		return append(out, NotUnderstood...)
	}
	ev.Op = op
	if cmd.Format() == Computer {
		body := h.computerReport(cmd, code, tanks, now)
		if body == nil {
			ev.Exception = 9999
			ev.Detail["reason"] = "no computer format"
			return append(out, NotUnderstood...)
		}
		return AppendComputer(out, body)
	}
	return AppendDisplay(out, h.displayReport(cmd, code, tanks, now))
}

// selectTanks returns the indexes of the tanks device addresses: all for 0, one
// for a configured tank, none for a device number without a tank.
func (h *Handler) selectTanks(device int) []int {
	if device == 0 {
		all := make([]int, len(h.tanks))
		for i := range all {
			all[i] = i
		}
		return all
	}
	if device <= len(h.tanks) {
		return []int{device - 1}
	}
	return nil
}

// setLabel serves S602TT: set the product label of one tank or all, answered with
// the product label report.
func (h *Handler) setLabel(ev *protocols.Event, cmd Command, tanks []int, now time.Time, out []byte) []byte {
	ev.Op = "set_product_label"
	ev.Write = true
	if len(tanks) == 0 {
		ev.Exception = 9999
		ev.Detail["reason"] = "no such tank"
		return append(out, NotUnderstood...)
	}
	label := cleanLabel(cmd.Data)
	ev.Detail["label"] = label
	h.mu.Lock()
	for _, t := range tanks {
		h.labels[t] = label
	}
	h.mu.Unlock()
	code := fmt.Sprintf("I602%02d", cmd.Device)
	return AppendDisplay(out, h.displayReport(Command{Type: 'I', Function: "602", Device: cmd.Device}, code, tanks, now))
}

// cleanLabel makes a product label of a set command's data field: at most 20
// characters, control and non-ASCII bytes replaced by spaces, trailing spaces cut.
func cleanLabel(b []byte) string {
	b = b[:min(len(b), MaxLabelLen)]
	l := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7E {
			c = ' '
		}
		l[i] = c
	}
	return strings.TrimRight(string(l), " ")
}

// label returns the current product label of tank i.
func (h *Handler) label(i int) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.labels[i]
}

// displayTime formats the console clock as display reports print it: "JAN 25, 2015
// 3:03 PM" with the hour right-aligned.
func displayTime(t time.Time) string {
	return fmt.Sprintf("%s %d, %d %8s", strings.ToUpper(t.Format("Jan")), t.Day(), t.Year(), clock12(t))
}

// clock12 formats a time of day as "2:00 PM".
func clock12(t time.Time) string {
	hour := t.Hour() % 12
	if hour == 0 {
		hour = 12
	}
	ampm := "AM"
	if t.Hour() >= 12 {
		ampm = "PM"
	}
	return fmt.Sprintf("%d:%02d %s", hour, t.Minute(), ampm)
}

// computerTime formats the console clock as computer reports carry it: YYMMDDHHmm.
func computerTime(t time.Time) string { return t.Format("0601021504") }

// displayReport returns the lines of a display-format report.
func (h *Handler) displayReport(cmd Command, code string, tanks []int, now time.Time) []string {
	lines := []string{code, displayTime(now), ""}
	lines = append(lines, h.header...)
	lines = append(lines, "", "")
	switch cmd.Function {
	case "201":
		lines = append(lines, "IN-TANK INVENTORY", "",
			"TANK PRODUCT             VOLUME TC VOLUME   ULLAGE   HEIGHT    WATER     TEMP")
		for _, t := range tanks {
			st := h.tanks[t].at(now)
			lines = append(lines, fmt.Sprintf("%3d  %-20s%6.0f%10.0f%9.0f%9.2f%9.2f%9.2f",
				t+1, h.label(t), st.Volume, st.TCVolume, st.Ullage, st.Height, st.Water, st.Temp))
		}
	case "202":
		lines = append(lines, "DELIVERY REPORT")
		for _, t := range tanks {
			lines = append(lines, "", fmt.Sprintf("T %d:%s", t+1, h.label(t)),
				fmt.Sprintf("%-32s%9s%11s%7s%11s%9s", "INCREASE   DATE / TIME", "GALLONS", "TC GALLONS", "WATER", "TEMP DEG F", "HEIGHT"))
			for _, d := range h.tanks[t].deliveries(now, 2) {
				row := func(name string, when time.Time, st tankState) string {
					return fmt.Sprintf("%9s: %-21s%9.0f%11.0f%7.2f%11.2f%9.2f", name, displayTime(when.In(h.loc)), st.Volume, st.TCVolume, st.Water, st.Temp, st.Height)
				}
				lines = append(lines, "", row("END", d.End, d.After), row("START", d.Start, d.Before),
					fmt.Sprintf("%-32s%9.0f%11.0f", "   AMOUNT:", d.After.Volume-d.Before.Volume, d.After.TCVolume-d.Before.TCVolume))
			}
		}
	case "203":
		for _, t := range tanks {
			lines = append(lines, fmt.Sprintf("TANK %-4d %s", t+1, h.label(t)), "    TEST STATUS: OFF",
				"LEAK DATA NOT AVAILABLE ON THIS TANK", "")
		}
	case "204":
		start, end, n := h.lastShift(now)
		lines = append(lines, "SHIFT REPORT", "", fmt.Sprintf("SHIFT %d TIME: %s", n, clock12(start)), "", "TANK PRODUCT", "")
		for _, t := range tanks {
			m := h.tanks[t]
			a, b := m.at(start), m.at(end)
			sales, delivered := m.flows(start, end)
			lines = append(lines,
				fmt.Sprintf("%3d  %-24s%6s%10s%8s%8s%7s%7s", t+1, h.label(t), "VOLUME", "TC VOLUME", "ULLAGE", "HEIGHT", "WATER", "TEMP"),
				shiftRow(fmt.Sprintf("SHIFT %2d STARTING VALUES", n), a),
				shiftRow("         ENDING VALUES", b),
				fmt.Sprintf("%-29s%6.0f", "         DELIVERY VALUE", delivered),
				fmt.Sprintf("%-29s%6.0f", "         TOTALS", sales), "")
		}
	case "205":
		lines = append(lines, fmt.Sprintf("%-7s%-24s%s", "TANK", "PRODUCT", "STATUS"), "")
		for _, t := range tanks {
			alarms := h.alarms(t, now)
			status := "NORMAL"
			if len(alarms) > 0 {
				status = alarms[0]
			}
			lines = append(lines, fmt.Sprintf("%3d    %-24s%s", t+1, h.label(t), status))
			for _, a := range alarms[min(1, len(alarms)):] {
				lines = append(lines, strings.Repeat(" ", 31)+a)
			}
			lines = append(lines, "")
		}
	case "602":
		lines = append(lines, "PRODUCT LABEL", "", "TANK PRODUCT LABEL")
		for _, t := range tanks {
			lines = append(lines, fmt.Sprintf("%3d  %s", t+1, h.label(t)))
		}
	}
	return lines
}

func shiftRow(label string, st tankState) string {
	return fmt.Sprintf("%-29s%6.0f%10.0f%8.0f%8.2f%7.2f%7.2f", label, st.Volume, st.TCVolume, st.Ullage, st.Height, st.Water, st.Temp)
}

// lastShift returns the start, end and number (1-based) of the last completed shift.
func (h *Handler) lastShift(now time.Time) (start, end time.Time, n int) {
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, h.loc)
	// Shift boundaries of yesterday, today and tomorrow in order; the last one not
	// after now closes the last completed shift.
	var bounds []time.Time
	var nums []int
	for d := -1; d <= 0; d++ {
		for i, m := range h.shifts {
			bounds = append(bounds, day.AddDate(0, 0, d).Add(time.Duration(m)*time.Minute))
			nums = append(nums, i+1)
		}
	}
	k := 0
	for i, b := range bounds {
		if !b.After(now) {
			k = i
		}
	}
	if k == 0 {
		k = 1 // cannot happen: the shifts of yesterday are all before now
	}
	return bounds[k-1], bounds[k], nums[k-1]
}

// alarms returns the active alarms of tank t: the configured standing alarms and
// DELIVERY NEEDED when the product is low.
func (h *Handler) alarms(t int, now time.Time) []string {
	alarms := append([]string(nil), h.cfg.Tanks[t].Alarms...)
	if h.cfg.DeliveryNeeded > 0 && h.tanks[t].at(now).Volume < h.cfg.DeliveryNeeded*h.cfg.Tanks[t].Capacity && !contains(alarms, "DELIVERY NEEDED") {
		alarms = append(alarms, "DELIVERY NEEDED")
	}
	return alarms
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// computerReport returns the body of a computer-format report (function code and
// data field), nil for a function without one.
func (h *Handler) computerReport(cmd Command, code string, tanks []int, now time.Time) []byte {
	body := append([]byte(code), computerTime(now)...)
	switch cmd.Function {
	case "201":
		for _, t := range tanks {
			st := h.tanks[t].at(now)
			status := 0 // bit 0: delivery in progress
			if h.tanks[t].delivering(now) {
				status |= 1
			}
			body = fmt.Appendf(body, "%02d%c%04X%02X", t+1, h.codes[t], status, 7)
			for _, v := range []float64{st.Volume, st.TCVolume, st.Ullage, st.Height, st.Water, st.Temp, st.WaterVol} {
				body = AppendFloat(body, v)
			}
		}
	case "204":
		start, end, n := h.lastShift(now)
		for _, t := range tanks {
			a, b := h.tanks[t].at(start), h.tanks[t].at(end)
			sales, _ := h.tanks[t].flows(start, end)
			body = fmt.Appendf(body, "%02d%c%02d%02X", t+1, h.codes[t], n, 13)
			for _, v := range []float64{a.Volume, a.Ullage, a.TCVolume, a.Height, a.Water, a.Temp, b.Volume, b.Ullage, b.TCVolume, b.Height, b.Water, b.Temp, sales} {
				body = AppendFloat(body, v)
			}
		}
	case "205":
		for _, t := range tanks {
			alarms := h.alarms(t, now)
			body = fmt.Appendf(body, "%02d%02X", t+1, len(alarms))
			for _, a := range alarms {
				body = fmt.Appendf(body, "%02d", alarmCodes[a])
			}
		}
	default:
		return nil
	}
	return body
}
