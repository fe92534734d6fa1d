// Package ipmi emulates the IPMI LAN interface of a baseboard management
// controller (UDP port 623): RMCP presence ping, the session-less Get Channel
// Authentication Capabilities and Get Channel Cipher Suites, RMCP+ session
// establishment (Open Session, RAKP 1-4 with cipher suites 3 and 17) with the
// persona's users, and, inside an authenticated and encrypted session, Get Device ID,
// chassis status and control, and session management. See README.md.
package ipmi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Spec returns the registry entry of the IPMI emulator.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      "ipmi",
		Transport: protocols.UDP,
		Port:      623,
		Service:   "asf-rmcp",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc("ipmi", New),
	}
}

// User is a BMC user.
type User struct {
	// Name is at most 16 bytes, Password at most 20 (IPMI v2.0 passwords).
	Name     string `yaml:"name"`
	Password string `yaml:"password"`
	// Privilege is the user's channel privilege limit: callback, user, operator,
	// administrator or oem.
	Privilege string `yaml:"privilege"`
}

// Config is the persona's `ipmi:` section. NewConfig fills in the defaults.
type Config struct {
	Users []User `yaml:"users"`
	// Channel is the LAN channel number the BMC reports.
	Channel uint8 `yaml:"channel"`
	// ManufacturerID is the IANA enterprise number of Get Device ID; 0 takes it from
	// the identity's SNMP sysObjectID (1.3.6.1.4.1.<enterprise>...).
	ManufacturerID uint32 `yaml:"manufacturer_id"`
	// ProductID is the product ID of Get Device ID; 0 derives one from the model.
	ProductID uint16 `yaml:"product_id"`
	// DeviceID and DeviceRevision are the device ID and revision of Get Device ID.
	DeviceID       uint8 `yaml:"device_id"`
	DeviceRevision uint8 `yaml:"device_revision"`
	// GUID is the system GUID ("xxxxxxxx-xxxx-..."); empty derives one from the
	// identity (serial, MAC).
	GUID string `yaml:"guid"`
	// PowerOn is the chassis power state at start; PowerRestorePolicy is
	// always-off, previous or always-on.
	PowerOn            bool   `yaml:"power_on"`
	PowerRestorePolicy string `yaml:"power_restore_policy"`
	// MaxSessions bounds the sessions open at once (being set up or active).
	MaxSessions int `yaml:"max_sessions"`
	// SessionTimeout closes an active session that is silent this long;
	// SetupTimeout one that does not complete RAKP in this long.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	SetupTimeout   time.Duration `yaml:"setup_timeout"`
}

// NewConfig returns the default configuration: one administrator account.
func NewConfig() *Config {
	return &Config{
		Users:              []User{{Name: "ADMIN", Password: "ADMIN", Privilege: "administrator"}},
		Channel:            1,
		DeviceID:           0x20,
		DeviceRevision:     1,
		PowerOn:            true,
		PowerRestorePolicy: "previous",
		MaxSessions:        16,
		SessionTimeout:     60 * time.Second,
		SetupTimeout:       10 * time.Second,
	}
}

var privileges = map[string]byte{
	"callback": PrivCallback, "user": PrivUser, "operator": PrivOperator, "administrator": PrivAdmin, "oem": PrivOEM,
}

var restorePolicies = map[string]byte{"always-off": 0, "previous": 1, "always-on": 2}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Validate checks c; New calls it.
func (c *Config) Validate() error {
	if len(c.Users) == 0 || len(c.Users) > 14 {
		return fmt.Errorf("users: %d, want 1 to 14", len(c.Users))
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		switch {
		case u.Name == "" || len(u.Name) > MaxUserNameLen:
			return fmt.Errorf("users[%d]: name: want 1 to %d bytes", i, MaxUserNameLen)
		case seen[u.Name]:
			return fmt.Errorf("users[%d]: name %q twice", i, u.Name)
		case u.Password == "" || len(u.Password) > MaxPasswordLen:
			return fmt.Errorf("users[%d]: password: want 1 to %d bytes", i, MaxPasswordLen)
		}
		if _, ok := privileges[u.Privilege]; !ok {
			return fmt.Errorf("users[%d]: privilege %q: want callback, user, operator, administrator or oem", i, u.Privilege)
		}
		seen[u.Name] = true
	}
	if c.Channel < 1 || c.Channel > 0x0B {
		return fmt.Errorf("channel %d: want 1 to 11", c.Channel)
	}
	if c.ManufacturerID > 0xFFFFF {
		return fmt.Errorf("manufacturer_id %d: want a 20-bit IANA enterprise number", c.ManufacturerID)
	}
	if c.DeviceRevision > 15 {
		return fmt.Errorf("device_revision %d: want 0 to 15", c.DeviceRevision)
	}
	if c.GUID != "" && !guidRE.MatchString(c.GUID) {
		return fmt.Errorf("guid %q: want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", c.GUID)
	}
	if _, ok := restorePolicies[c.PowerRestorePolicy]; !ok {
		return fmt.Errorf("power_restore_policy %q: want always-off, previous or always-on", c.PowerRestorePolicy)
	}
	if c.MaxSessions < 1 || c.MaxSessions > 63 {
		return fmt.Errorf("max_sessions %d: want 1 to 63", c.MaxSessions)
	}
	if c.SessionTimeout <= 0 || c.SetupTimeout <= 0 {
		return errors.New("session_timeout and setup_timeout: want positive durations")
	}
	return nil
}

// device is what Get Device ID reports.
type device struct {
	id, revision   byte
	fwMajor        byte // binary, 7 bits
	fwMinor        byte // BCD
	aux            []byte
	manufacturer   uint32
	product        uint16
	additionalSupp byte
}

// Handler serves RMCP/IPMI flows. Sessions and the chassis state are device state,
// shared by all flows; Handler is safe for concurrent use.
type Handler struct {
	cfg   Config
	env   protocols.Env
	dev   device
	guid  [16]byte
	users map[string]userEntry

	mu         sync.Mutex
	sessions   map[uint32]*session // by BMC session ID
	nextHandle byte
	powerOn    bool
	lastEvent  byte // last power event bits of Get Chassis Status
}

type userEntry struct {
	id       byte // user ID: the null user is 1, configured users 2...
	password []byte
	priv     byte
}

var _ protocols.DatagramHandler = (*Handler)(nil)

// New builds a handler for the persona env.Identity.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if env.Identity == nil {
		return nil, fmt.Errorf("ipmi: no device identity: %w", protocols.ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ipmi: %w: %w", protocols.ErrConfig, err)
	}
	env = env.WithDefaults()
	id := env.Identity
	h := &Handler{cfg: *cfg, env: env, users: map[string]userEntry{}, sessions: map[uint32]*session{}, powerOn: cfg.PowerOn}
	for i, u := range cfg.Users {
		h.users[u.Name] = userEntry{id: byte(i + 2), password: []byte(u.Password), priv: privileges[u.Privilege]}
	}
	h.dev = device{id: cfg.DeviceID, revision: cfg.DeviceRevision, manufacturer: cfg.ManufacturerID, product: cfg.ProductID, additionalSupp: 0x80}
	h.dev.fwMajor, h.dev.fwMinor, h.dev.aux = firmwareRevision(id.Firmware)
	if h.dev.manufacturer == 0 {
		h.dev.manufacturer = enterpriseOf(id.SysObjectID)
	}
	if h.dev.product == 0 {
		sum := sha256.Sum256([]byte(id.Vendor + "\x00" + id.Model))
		h.dev.product = binary.BigEndian.Uint16(sum[:]) | 1
	}
	if cfg.GUID != "" {
		h.guid = parseGUID(cfg.GUID)
	} else {
		// A version 4 style UUID derived from the install, stable across restarts.
		sum := sha256.Sum256([]byte("ipmi-guid\x00" + id.Vendor + "\x00" + id.Serial + "\x00" + id.MAC.String()))
		copy(h.guid[:], sum[:16])
		h.guid[6] = h.guid[6]&0x0F | 0x40
		h.guid[8] = h.guid[8]&0x3F | 0x80
	}
	return h, nil
}

// firmwareRevision maps a firmware version such as "V4.5.2" or "v3.40" to the major
// revision (binary), the minor revision (BCD) and the auxiliary revision bytes.
func firmwareRevision(fw string) (major, minor byte, aux []byte) {
	fw = strings.TrimLeftFunc(fw, func(r rune) bool { return r < '0' || r > '9' })
	var parts []string
	for _, p := range strings.FieldsFunc(fw, func(r rune) bool { return r == '.' || r == '-' || r == '_' || r == ' ' }) {
		if p[0] >= '0' && p[0] <= '9' {
			parts = append(parts, p)
		}
	}
	num := func(i int) int {
		if i >= len(parts) {
			return 0
		}
		digits := strings.TrimRightFunc(parts[i], func(r rune) bool { return r < '0' || r > '9' })
		n, _ := strconv.Atoi(digits)
		return n
	}
	major = byte(min(num(0), 127))
	m := min(num(1), 99)
	minor = byte(m/10<<4 | m%10)
	for i := 2; i < len(parts) && len(aux) < 4; i++ {
		aux = append(aux, byte(min(num(i), 255)))
	}
	if len(aux) > 0 {
		for len(aux) < 4 {
			aux = append(aux, 0)
		}
	}
	return major, minor, aux
}

// enterpriseOf returns the IANA enterprise number of an SNMP sysObjectID under
// 1.3.6.1.4.1, or 0.
func enterpriseOf(oid string) uint32 {
	rest, ok := strings.CutPrefix(strings.TrimPrefix(oid, "."), "1.3.6.1.4.1.")
	if !ok {
		return 0
	}
	first, _, _ := strings.Cut(rest, ".")
	n, err := strconv.ParseUint(first, 10, 32)
	if err != nil || n > 0xFFFFF {
		return 0
	}
	return uint32(n)
}

func parseGUID(s string) [16]byte {
	var g [16]byte
	hexs := strings.ReplaceAll(s, "-", "")
	for i := range g {
		v, _ := strconv.ParseUint(hexs[2*i:2*i+2], 16, 8)
		g[i] = byte(v)
	}
	return g
}

// randomBytes fills b from the system's random source (crypto/rand.Read does not
// return errors since Go 1.24).
func randomBytes(b []byte) { _, _ = rand.Read(b) }

// ServeDatagram answers one datagram of a flow.
func (h *Handler) ServeDatagram(ctx context.Context, s protocols.Session, req []byte, reply func([]byte) error) error {
	now := h.env.Now()
	ev := protocols.Event{Time: now, Protocol: "ipmi", Unit: -1, Detail: map[string]string{}}
	out := h.handle(s, req, now, &ev)
	if ev.Op != "" {
		s.Emit(ev)
	}
	if out == nil {
		return nil
	}
	if err := reply(out); err != nil {
		return fmt.Errorf("ipmi: send reply: %w", err)
	}
	return nil
}

// malformed records a datagram that is dropped.
func malformed(ev *protocols.Event, req []byte, reason string) {
	ev.Op = "malformed"
	ev.Data = req[:min(len(req), 256)]
	ev.Detail["reason"] = reason
}

// handle returns the reply to req, nil for none, and fills ev. IPMI messages are
// served with h.mu held.
func (h *Handler) handle(s protocols.Session, req []byte, now time.Time, ev *protocols.Event) []byte {
	rh, body, err := ParseRMCP(req)
	switch {
	case err != nil:
		malformed(ev, req, "rmcp")
		return nil
	case rh.Class&classAckFlag != 0:
		return nil // an RMCP ACK: nothing to answer
	}
	switch rh.Class {
	case ClassASF:
		m, err := ParseASF(body)
		if err != nil || m.IANA != ASFIANA {
			malformed(ev, req, "asf")
			return nil
		}
		ev.Code = int(m.Type)
		if m.Type != ASFPresencePing {
			ev.Op = "asf_message"
			return nil
		}
		ev.Op = "presence_ping"
		return AppendPresencePong(nil, m.Tag)
	case ClassIPMI:
		h.mu.Lock()
		defer h.mu.Unlock()
		h.expire(now)
		if len(body) > 0 && body[0] == AuthRMCPPlus {
			return h.handle20(s, req, body, now, ev)
		}
		return h.handle15(s, req, body, ev)
	}
	malformed(ev, req, "rmcp class")
	return nil
}

// handle15 serves an IPMI v1.5 message. This BMC has no IPMI v1.5 sessions: only the
// session-less commands are answered.
func (h *Handler) handle15(s protocols.Session, req, body []byte, ev *protocols.Event) []byte {
	sh, msg, err := ParseSession15(body)
	if err != nil {
		malformed(ev, req, "session header")
		return nil
	}
	if sh.ID != 0 {
		ev.Op = "unknown_session"
		ev.Detail["session_id"] = fmt.Sprintf("%08x", sh.ID)
		ev.Detail["format"] = "ipmi15"
		return nil
	}
	m, err := ParseRequest(msg)
	if err != nil {
		malformed(ev, req, "message")
		return nil
	}
	ev.Detail["format"] = "ipmi15"
	resp := h.sessionless(s, m, ev)
	return AppendSession15(nil, resp)
}

// sessionless answers an IPMI request outside a session: Get Channel Authentication
// Capabilities and Get Channel Cipher Suites; anything else needs a session.
func (h *Handler) sessionless(s protocols.Session, m Message, ev *protocols.Event) []byte {
	cc, data := h.command(nil, s, m, ev)
	return AppendResponse(nil, m, cc, data)
}

// handle20 serves an RMCP+ message.
func (h *Handler) handle20(s protocols.Session, req, body []byte, now time.Time, ev *protocols.Event) []byte {
	sh, err := ParseSession20(body)
	if errors.Is(err, ErrNotSupport) {
		ev.Op = "unsupported_payload"
		ev.Code = int(sh.PayloadType)
		return nil
	}
	if err != nil {
		malformed(ev, req, "session header")
		return nil
	}
	if sh.ID != 0 {
		return h.inSession(s, body, sh, now, ev)
	}
	switch sh.PayloadType {
	case PayloadIPMI:
		m, err := ParseRequest(sh.Payload)
		if err != nil {
			malformed(ev, req, "message")
			return nil
		}
		ev.Detail["format"] = "rmcpplus"
		resp := h.sessionless(s, m, ev)
		return AppendSession20(nil, PayloadIPMI, false, 0, 0, resp, IntegrityNone, nil)
	case PayloadOpenRequest:
		return h.openSession(s, sh.Payload, now, ev)
	case PayloadRAKP1:
		return h.rakp1(s, sh.Payload, now, ev)
	case PayloadRAKP3:
		return h.rakp3(s, sh.Payload, now, ev)
	}
	ev.Op = "unsupported_payload"
	ev.Code = int(sh.PayloadType)
	return nil
}
