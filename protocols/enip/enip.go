// Package enip emulates an EtherNet/IP device (TCP and UDP 44818) with a CIP message
// router behind the sensor's device persona: the encapsulation commands (ListIdentity,
// ListServices, ListInterfaces, RegisterSession, UnRegisterSession, SendRRData, NOP),
// the Identity, Message Router, Connection Manager, TCP/IP Interface and Ethernet Link
// objects, and Logix tag services on configured tags. See README.md.
package enip

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Specs returns the registry entries of the emulator: "enip" on TCP and "enip-udp"
// on UDP. Both decode into one Config (NewConfig of either returns the same one) and
// serve one device: New of either returns the same Handler.
func Specs() []protocols.Spec {
	sh := &sharedDevice{}
	return []protocols.Spec{
		{Name: "enip", Transport: protocols.TCP, Port: 44818, Service: "EtherNet-IP-2", NewConfig: sh.config, New: protocols.NewFunc("enip", sh.handler)},
		{Name: "enip-udp", Transport: protocols.UDP, Port: 44818, Service: "EtherNet-IP-2", NewConfig: sh.config, New: protocols.NewFunc("enip", sh.handler)},
	}
}

// sharedDevice is the one device behind the TCP and UDP specs of one Specs call.
type sharedDevice struct {
	mu  sync.Mutex
	cfg *Config
	h   *Handler
}

func (s *sharedDevice) config() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil {
		s.cfg = NewConfig()
	}
	return s.cfg
}

func (s *sharedDevice) handler(env protocols.Env, c *Config) (*Handler, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		if c != s.cfg {
			return nil, fmt.Errorf("enip: the TCP and UDP specs share one device and must get the config NewConfig returned: %w", protocols.ErrConfig)
		}
		return s.h, nil
	}
	h, err := New(env, c)
	if err != nil {
		return nil, err
	}
	s.cfg, s.h = c, h
	return h, nil
}

// Config is the persona's `enip:` section. NewConfig fills in the defaults, which
// describe a ControlLogix-class controller (vendor 1, programmable logic controller).
type Config struct {
	// VendorID, DeviceType and ProductCode are the CIP identity numbers of the
	// persona's product (ODVA vendor list, CIP device profiles).
	VendorID    uint16 `yaml:"vendor_id"`
	DeviceType  uint16 `yaml:"device_type"`
	ProductCode uint16 `yaml:"product_code"`
	// Revision is the CIP major.minor revision; empty takes it from the identity's
	// firmware ("V20.19", "20.019", "3.10.08" give 20.19, 20.19, 3.10).
	Revision string `yaml:"revision"`
	// Status is the Identity status word; State the ListIdentity state (3 operational).
	Status uint16 `yaml:"status"`
	State  uint8  `yaml:"state"`
	// SerialNumber overrides the serial number; unset, the identity's serial is read
	// as hexadecimal (as CIP tools print it) or, when it is not hex, hashed.
	SerialNumber *uint32 `yaml:"serial_number"`
	// ServiceFlags are the capability flags of ListServices "Communications"
	// (0x0020 CIP over TCP, 0x0100 class 0/1 I/O over UDP).
	ServiceFlags uint16 `yaml:"service_flags"`
	// Slot is the backplane slot of the controller: Unconnected_Send routed to
	// port 1, this link address, is served; other routes fail.
	Slot uint8 `yaml:"slot"`
	// Netmask and Gateway are reported by the TCP/IP Interface object; empty derives
	// a /24 and its .1 from the sensor address of the session.
	Netmask string `yaml:"netmask"`
	Gateway string `yaml:"gateway"`
	// IdleTimeout closes a TCP connection that sends nothing for this long; a message
	// must also be complete within it from its first byte.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxDataLength is the largest encapsulation data length accepted; a longer
	// message gets status 0x0065 (invalid length) and the connection is closed.
	MaxDataLength int `yaml:"max_data_length"`
	// MaxRequests and MaxBytes bound one TCP connection.
	MaxRequests int `yaml:"max_requests"`
	MaxBytes    int `yaml:"max_bytes"`
	// Tags are the controller-scope tags of the Logix tag services.
	Tags []TagConfig `yaml:"tags"`
}

// NewConfig returns the default configuration.
func NewConfig() *Config {
	return &Config{
		VendorID:      1,
		DeviceType:    14,
		ProductCode:   57,
		Status:        0x0060,
		State:         3,
		ServiceFlags:  0x0120,
		IdleTimeout:   60 * time.Second,
		MaxDataLength: 4096,
		MaxRequests:   20000,
		MaxBytes:      1 << 20,
		Tags: []TagConfig{
			{Name: "Line1_Speed", Type: "REAL", Values: []float64{42.5}, Variation: 0.6, Period: 9 * time.Minute},
			{Name: "Line1_Run", Type: "BOOL", Values: []float64{1}},
			{Name: "Tank_Level", Type: "INT", Values: []float64{6120}, Variation: 380, Period: 47 * time.Minute},
			{Name: "Batch_Count", Type: "DINT", Values: []float64{184220}, Rate: 0.05},
			{Name: "Recipe_Setpoints", Type: "REAL", Elements: 8, Values: []float64{72.5, 68, 3.2, 120, 15, 0.85, 45, 9.5}},
			{Name: "Alarm_Word", Type: "DINT", Values: []float64{0}},
			{Name: "Valve_Cmd", Type: "SINT", Elements: 4, Values: []float64{1, 0, 0, 1}},
		},
	}
}

// Validate checks c; New calls it.
func (c *Config) Validate() error {
	if c.Revision != "" {
		if _, _, ok := parseRevision(c.Revision); !ok {
			return fmt.Errorf("revision %q: want major.minor (0-255 each)", c.Revision)
		}
	}
	if c.MaxDataLength < 512 || c.MaxDataLength > 65511 {
		return fmt.Errorf("max_data_length %d: want 512 to 65511", c.MaxDataLength)
	}
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("idle_timeout %v: want a positive duration", c.IdleTimeout)
	}
	if c.MaxRequests < 1 {
		return fmt.Errorf("max_requests %d: want at least 1", c.MaxRequests)
	}
	if c.MaxBytes < HeaderLen+c.MaxDataLength {
		return fmt.Errorf("max_bytes %d: want at least %d", c.MaxBytes, HeaderLen+c.MaxDataLength)
	}
	for _, s := range []struct{ key, v string }{{"netmask", c.Netmask}, {"gateway", c.Gateway}} {
		if s.v == "" {
			continue
		}
		if a, err := netip.ParseAddr(s.v); err != nil || !a.Is4() {
			return fmt.Errorf("%s %q: want an IPv4 address", s.key, s.v)
		}
	}
	seen := map[string]bool{}
	for _, tc := range c.Tags {
		t, err := newTag(tc)
		if err != nil {
			return fmt.Errorf("tags: %w", err)
		}
		k := strings.ToLower(t.name)
		if seen[k] {
			return fmt.Errorf("tags: %s twice", t.name)
		}
		seen[k] = true
	}
	return nil
}

// parseRevision reads "major.minor" from a version string such as "V20.19",
// "20.019" or "03.10.08(22)".
func parseRevision(s string) (uint8, uint8, bool) {
	s = strings.TrimLeft(strings.TrimSpace(s), "vV")
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	ma, err1 := strconv.ParseUint(parts[0], 10, 8)
	mi, err2 := strconv.ParseUint(minor, 10, 8)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint8(ma), uint8(mi), true
}

// serialFrom reads a persona serial number as CIP tools print it (hexadecimal);
// anything else is hashed to a stable 32-bit number.
func serialFrom(s string) uint32 {
	h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if v, err := strconv.ParseUint(h, 16, 32); err == nil && h != "" {
		return uint32(v)
	}
	f := fnv.New32a()
	f.Write([]byte(s))
	return f.Sum32()
}

// ErrSessionLimit is returned (wrapped) when a connection reaches MaxRequests or
// MaxBytes.
var ErrSessionLimit = errors.New("enip: session limit reached")

// Handler serves EtherNet/IP on TCP (ServeStream) and UDP (ServeDatagram). The device
// state (tag values, session handles) lives in the Handler and is shared by all
// sessions of both transports; it is safe for concurrent use.
type Handler struct {
	cfg      Config
	env      protocols.Env
	log      *slog.Logger
	ident    IdentityInfo
	mac      [6]byte
	hostname string
	netmask  netip.Addr
	gateway  netip.Addr
	// bufs lends read buffers to sessions that have bytes to work on: an idle
	// session holds none.
	bufs *protocols.BufferPool

	mu          sync.Mutex
	tags        map[string]*tag // by lower-case name
	tagList     []*tag          // in symbol instance order
	nextSession uint32
	nextConnID  uint32
	openConns   int
}

var (
	_ protocols.StreamHandler   = (*Handler)(nil)
	_ protocols.DatagramHandler = (*Handler)(nil)
)

// New builds a handler for the persona env.Identity.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if env.Identity == nil {
		return nil, fmt.Errorf("enip: no device identity: %w", protocols.ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("enip: %w: %w", protocols.ErrConfig, err)
	}
	env = env.WithDefaults()
	id := env.Identity
	h := &Handler{cfg: *cfg, env: env, log: env.Logger, hostname: id.Hostname, tags: map[string]*tag{},
		bufs: protocols.NewBufferPool(HeaderLen + cfg.MaxDataLength)}
	rev := cfg.Revision
	if rev == "" {
		rev = id.Firmware
	}
	major, minor, ok := parseRevision(rev)
	if !ok {
		return nil, fmt.Errorf("enip: revision unset and firmware %q has no major.minor: %w", id.Firmware, protocols.ErrConfig)
	}
	name := id.Model
	if name == "" {
		name = id.Product
	}
	serial := serialFrom(id.Serial)
	if cfg.SerialNumber != nil {
		serial = *cfg.SerialNumber
	} else if id.Serial == "" {
		return nil, fmt.Errorf("enip: serial_number unset and the identity has no serial: %w", protocols.ErrConfig)
	}
	h.ident = IdentityInfo{
		ProtocolVersion: 1, Vendor: cfg.VendorID, DeviceType: cfg.DeviceType, ProductCode: cfg.ProductCode,
		Major: major, Minor: minor, Status: cfg.Status, Serial: serial, ProductName: name, State: cfg.State,
	}
	copy(h.mac[:], id.MAC)
	if cfg.Netmask != "" {
		h.netmask = netip.MustParseAddr(cfg.Netmask)
	}
	if cfg.Gateway != "" {
		h.gateway = netip.MustParseAddr(cfg.Gateway)
	}
	for _, tc := range cfg.Tags {
		t, err := newTag(tc)
		if err != nil { // Validate has accepted it
			return nil, fmt.Errorf("enip: %w: %w", protocols.ErrConfig, err)
		}
		t.id = uint32(0x1a + 0x13*len(h.tagList))
		h.tags[strings.ToLower(t.name)] = t
		h.tagList = append(h.tagList, t)
	}
	f := fnv.New32a()
	fmt.Fprintf(f, "enip-session\x00%s\x00%s", id.Serial, id.MAC)
	h.nextSession = f.Sum32()&0x7fffff00 | 0x01
	h.nextConnID = f.Sum32()<<8 | 0x17
	if msg := vendorMismatch(id.Vendor, cfg.VendorID); msg != "" {
		h.log.Warn("enip: vendor_id does not match the identity's vendor; scanners show both", "vendor", id.Vendor, "vendor_id", cfg.VendorID, "expected", msg)
	}
	return h, nil
}

// knownVendorIDs are ODVA vendor identifiers of vendors a persona is likely to name,
// used only to warn about a persona whose vendor_id tells another story.
var knownVendorIDs = []struct {
	name string
	id   uint16
}{
	{"rockwell", 1}, {"allen-bradley", 1}, {"wago", 40}, {"omron", 47}, {"beckhoff", 108},
	{"schneider", 243}, {"phoenix contact", 562}, {"siemens", 1251},
}

func vendorMismatch(vendor string, id uint16) string {
	v := strings.ToLower(vendor)
	for _, k := range knownVendorIDs {
		if strings.Contains(v, k.name) && k.id != id {
			return strconv.Itoa(int(k.id))
		}
	}
	return ""
}

// identity returns the ListIdentity content with the sensor address of session s.
func (h *Handler) identity(local netip.AddrPort) IdentityInfo {
	id := h.ident
	id.Addr = netip.AddrPortFrom(local.Addr().Unmap(), 44818)
	return id
}

// newSession allocates a session handle.
func (h *Handler) newSession() uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextSession += 0x0100
	if h.nextSession == 0 {
		h.nextSession = 0x0101
	}
	return h.nextSession
}

// conn is the state of one TCP connection.
type conn struct {
	s       protocols.Session
	session uint32 // registered session handle, 0 for none
	// cip are the class 3 connections opened by Forward_Open on this TCP
	// connection, by O->T connection id; they end with it.
	cip map[uint32]*cipConn
}

// cipConn is one connected explicit messaging connection.
type cipConn struct {
	triad [8]byte
	toID  uint32
}

// maxConnections bounds the CIP connections of the device (all TCP connections).
const maxConnections = 32

// release closes the CIP connections of c.
func (h *Handler) release(c *conn) {
	if len(c.cip) == 0 {
		return
	}
	h.mu.Lock()
	h.openConns -= len(c.cip)
	h.mu.Unlock()
	clear(c.cip)
}

// ServeStream serves one TCP connection: it reads encapsulation messages (several per
// segment or one split over many), answers each in order, and returns nil when the
// peer closes, unregisters, the idle timeout passes or ctx is cancelled.
func (h *Handler) ServeStream(ctx context.Context, s protocols.Session, nc net.Conn) error {
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	c := &conn{s: s, cip: map[uint32]*cipConn{}}
	defer h.release(c)
	rd := protocols.NewPooledStreamReader(h.bufs, h.cfg.MaxBytes, h.cfg.IdleTimeout)
	defer rd.Release()
	var requests int
	for {
		for len(rd.Buf) >= HeaderLen {
			hdr, _ := ParseHeader(rd.Buf)
			if int(hdr.Length) > h.cfg.MaxDataLength {
				ev := h.event(hdr.Command, "invalid_length")
				ev.Exception = int(StatusInvalidLength)
				ev.Detail["length"] = strconv.Itoa(int(hdr.Length))
				ev.Detail["result"] = "closed"
				s.Emit(ev)
				reply := Header{Command: hdr.Command, Session: hdr.Session, Status: StatusInvalidLength, Context: hdr.Context}
				return quiet(h.write(nc, AppendEncap(nil, reply, nil)))
			}
			n := HeaderLen + int(hdr.Length)
			if len(rd.Buf) < n {
				break
			}
			if requests >= h.cfg.MaxRequests {
				return fmt.Errorf("%w: %d requests", ErrSessionLimit, requests)
			}
			requests++
			out, closeAfter := h.serveEncap(c, hdr, rd.Buf[HeaderLen:n])
			rd.Consume(n)
			if out != nil {
				if err := h.write(nc, out); err != nil {
					return quiet(err)
				}
			}
			if closeAfter {
				return nil
			}
		}
		more, err := rd.Read(ctx, nc)
		if errors.Is(err, protocols.ErrByteLimit) {
			return fmt.Errorf("%w: %d bytes", ErrSessionLimit, rd.Received())
		}
		if err != nil {
			return fmt.Errorf("enip: %w", err)
		}
		if !more {
			return nil
		}
	}
}

func (h *Handler) write(nc net.Conn, b []byte) error {
	if err := nc.SetWriteDeadline(time.Now().Add(h.cfg.IdleTimeout)); err != nil {
		return fmt.Errorf("enip: set write deadline: %w", err)
	}
	if _, err := nc.Write(b); err != nil {
		return fmt.Errorf("enip: write: %w", err)
	}
	return nil
}

// quiet maps errors that only mean the peer is gone to nil.
func quiet(err error) error {
	if protocols.PeerGone(err) {
		return nil
	}
	return err
}

var commandOps = map[uint16]string{
	CmdNOP: "nop", CmdListServices: "list_services", CmdListIdentity: "list_identity",
	CmdListInterfaces: "list_interfaces", CmdRegisterSession: "register_session",
	CmdUnRegisterSession: "unregister_session", CmdSendRRData: "send_rr_data",
	CmdSendUnitData: "send_unit_data", CmdIndicateStatus: "indicate_status", CmdCancel: "cancel",
}

func (h *Handler) event(cmd uint16, op string) protocols.Event {
	if op == "" {
		op = commandOps[cmd]
		if op == "" {
			op = "unknown_command"
		}
	}
	return protocols.Event{Time: h.env.Now(), Protocol: "enip", Op: op, Code: int(cmd), Unit: -1, Detail: map[string]string{}}
}

// ServeDatagram answers one UDP datagram: ListIdentity, ListServices and
// ListInterfaces; other commands get status 0x0001 (they need a TCP session).
func (h *Handler) ServeDatagram(ctx context.Context, s protocols.Session, req []byte, reply func([]byte) error) error {
	hdr, err := ParseHeader(req)
	if err != nil {
		ev := h.event(0, "malformed")
		ev.Detail["error"] = err.Error()
		ev.Data = append([]byte(nil), req...)
		s.Emit(ev)
		return nil
	}
	ev := h.event(hdr.Command, "")
	ev.Detail["transport"] = "udp"
	var out []byte
	switch {
	case int(hdr.Length) != len(req)-HeaderLen:
		// A datagram carries exactly one message; a length that disagrees is dropped.
		ev.Detail["result"] = "ignored"
		ev.Detail["error"] = fmt.Sprintf("length field %d, %d bytes of data", hdr.Length, len(req)-HeaderLen)
	case hdr.Options != 0:
		ev.Detail["result"] = "ignored"
	case hdr.Command == CmdListIdentity, hdr.Command == CmdListServices, hdr.Command == CmdListInterfaces:
		out = h.listReply(hdr, s.Local(), &ev)
	case hdr.Command == CmdNOP:
		ev.Detail["result"] = "ignored"
	default:
		ev.Exception = int(StatusInvalidCommand)
		ev.Detail["result"] = "error"
		out = AppendEncap(nil, Header{Command: hdr.Command, Session: hdr.Session, Status: StatusInvalidCommand, Context: hdr.Context}, nil)
	}
	s.Emit(ev)
	if out == nil {
		return nil
	}
	if err := reply(out); err != nil {
		return fmt.Errorf("enip: send reply: %w", err)
	}
	return nil
}

// listReply answers ListIdentity, ListServices and ListInterfaces.
func (h *Handler) listReply(hdr Header, local netip.AddrPort, ev *protocols.Event) []byte {
	rh := Header{Command: hdr.Command, Session: hdr.Session, Context: hdr.Context}
	var data []byte
	switch hdr.Command {
	case CmdListIdentity:
		data = AppendCPF(nil, Item{Type: ItemListIdentity, Data: h.identity(local).AppendListIdentityItem(nil)})
	case CmdListServices:
		data = AppendCPF(nil, Item{Type: ItemListServices, Data: AppendListServicesItem(nil, h.cfg.ServiceFlags)})
	case CmdListInterfaces:
		data = AppendCPF(nil)
	}
	ev.Detail["result"] = "ok"
	return AppendEncap(nil, rh, data)
}

// serveEncap answers one encapsulation message on a TCP connection. It returns the
// reply (nil for none) and whether the connection ends after it.
func (h *Handler) serveEncap(c *conn, hdr Header, data []byte) ([]byte, bool) {
	ev := h.event(hdr.Command, "")
	rh := Header{Command: hdr.Command, Session: hdr.Session, Context: hdr.Context}
	status := func(st uint32, result string) []byte {
		ev.Exception = int(st)
		ev.Detail["result"] = result
		rh.Status = st
		return AppendEncap(nil, rh, nil)
	}
	if hdr.Options != 0 {
		// The receiver discards a message with options set (CIP Vol. 2, 2-3.6).
		ev.Detail["result"] = "ignored"
		ev.Detail["options"] = fmt.Sprintf("0x%08x", hdr.Options)
		c.s.Emit(ev)
		return nil, false
	}
	var out []byte
	end := false
	switch hdr.Command {
	case CmdNOP:
		ev.Detail["result"] = "ignored"
	case CmdListIdentity, CmdListServices, CmdListInterfaces:
		out = h.listReply(hdr, c.s.Local(), &ev)
	case CmdRegisterSession:
		if len(data) != 4 {
			out = status(StatusInvalidLength, "error")
			break
		}
		version, options := binary.LittleEndian.Uint16(data), binary.LittleEndian.Uint16(data[2:])
		ev.Detail["protocol_version"] = strconv.Itoa(int(version))
		switch {
		case c.session != 0:
			// One session per TCP connection: the registered handle is returned with
			// "invalid command".
			rh.Session = c.session
			rh.Status = StatusInvalidCommand
			ev.Exception = int(StatusInvalidCommand)
			ev.Detail["result"] = "already_registered"
		case version != 1 || options != 0:
			rh.Status = StatusUnsupportedProtocol
			ev.Exception = int(StatusUnsupportedProtocol)
			ev.Detail["result"] = "error"
		default:
			c.session = h.newSession()
			rh.Session = c.session
			ev.Detail["result"] = "ok"
		}
		ev.Detail["session"] = fmt.Sprintf("0x%08x", rh.Session)
		out = AppendEncap(nil, rh, binary.LittleEndian.AppendUint16([]byte{1, 0}, 0))
	case CmdUnRegisterSession:
		if c.session == 0 || hdr.Session != c.session {
			out = status(StatusInvalidSession, "error")
			break
		}
		ev.Detail["result"] = "closed"
		end = true
	case CmdSendRRData:
		if c.session == 0 || hdr.Session != c.session {
			out = status(StatusInvalidSession, "error")
			break
		}
		rr, err := ParseRRData(data)
		if err != nil || len(rr.Items) != 2 || rr.Items[0].Type != ItemNullAddress || len(rr.Items[0].Data) != 0 || rr.Items[1].Type != ItemUnconnectedData {
			if err != nil {
				ev.Detail["error"] = err.Error()
			}
			ev.Data = append([]byte(nil), data...)
			out = status(StatusIncorrectData, "error")
			break
		}
		cipOut, reset := h.cip(c, rr.Items[1].Data, "send_rr_data", "", 0)
		return AppendEncap(nil, rh, AppendRRData(nil, Item{Type: ItemNullAddress}, Item{Type: ItemUnconnectedData, Data: cipOut})), reset
	case CmdSendUnitData:
		if c.session == 0 || hdr.Session != c.session {
			out = status(StatusInvalidSession, "error")
			break
		}
		rr, err := ParseRRData(data)
		var cc *cipConn
		if err == nil && len(rr.Items) == 2 && rr.Items[0].Type == ItemConnectedAddress && len(rr.Items[0].Data) == 4 &&
			rr.Items[1].Type == ItemConnectedData && len(rr.Items[1].Data) >= 2 {
			cc = c.cip[binary.LittleEndian.Uint32(rr.Items[0].Data)]
		}
		if cc == nil {
			// Not for a connection of this session: a target drops it.
			ev.Data = append([]byte(nil), data...)
			ev.Detail["result"] = "no_connection"
			break
		}
		seq := rr.Items[1].Data[:2]
		cipOut, reset := h.cip(c, rr.Items[1].Data[2:], "send_unit_data", "", 0)
		addr := binary.LittleEndian.AppendUint32(nil, cc.toID)
		body := append(append([]byte(nil), seq...), cipOut...)
		rh.Command = CmdSendUnitData
		return AppendEncap(nil, rh, AppendRRData(nil, Item{Type: ItemConnectedAddress, Data: addr}, Item{Type: ItemConnectedData, Data: body})), reset
	default:
		ev.Data = append([]byte(nil), data...)
		out = status(StatusInvalidCommand, "error")
	}
	c.s.Emit(ev)
	return out, end
}

// CIP service codes.
const (
	svcGetAttributeAll    byte = 0x01
	svcReset              byte = 0x05
	svcMultipleService    byte = 0x0a
	svcGetAttributeSingle byte = 0x0e
	svcSetAttributeSingle byte = 0x10
	svcForwardClose       byte = 0x4e
	svcReadTag            byte = 0x4c
	svcWriteTag           byte = 0x4d
	svcReadTagFragmented  byte = 0x52
	svcWriteTagFragmented byte = 0x53
	svcUnconnectedSend    byte = 0x52
	svcForwardOpen        byte = 0x54
	svcLargeForwardOpen   byte = 0x5b
)

// CIP classes the device has.
const (
	classIdentity      = 0x01
	classMessageRouter = 0x02
	classConnMgr       = 0x06
	classSymbol        = 0x6b
	classTCPIP         = 0xf5
	classEthernetLink  = 0xf6
)

var serviceOps = map[byte]string{
	0x01: "get_attribute_all", 0x02: "set_attribute_all", 0x03: "get_attribute_list",
	0x04: "set_attribute_list", 0x05: "reset", 0x06: "start", 0x07: "stop", 0x08: "create",
	0x09: "delete", 0x0a: "multiple_service_packet", 0x0d: "apply_attributes",
	0x0e: "get_attribute_single", 0x10: "set_attribute_single", 0x11: "find_next_object_instance",
	0x15: "restore", 0x16: "save", 0x18: "get_member", 0x19: "set_member", 0x4b: "execute_pccc",
	0x4c: "read_tag", 0x4d: "write_tag", 0x4e: "forward_close", 0x4f: "read_modify_write_tag",
	0x54: "forward_open", 0x55: "get_instance_attribute_list", 0x5b: "large_forward_open",
}

func serviceOp(svc byte, p Path) string {
	switch {
	case svc == 0x52 && p.Symbol != "":
		return "read_tag_fragmented"
	case svc == 0x53 && p.Symbol != "":
		return "write_tag_fragmented"
	case svc == 0x52:
		return "unconnected_send"
	}
	if op, ok := serviceOps[svc]; ok {
		return op
	}
	return "cip_service"
}

func pathArea(p Path) string {
	if p.Symbol != "" {
		s := p.Symbol
		for _, m := range p.Members {
			s += "[" + strconv.FormatUint(uint64(m), 10) + "]"
		}
		return s
	}
	s := strconv.FormatUint(uint64(p.Class), 10)
	if p.HasInstance {
		s += "/" + strconv.FormatUint(uint64(p.Instance), 10)
	}
	if p.HasAttribute {
		s += "/" + strconv.FormatUint(uint64(p.Attribute), 10)
	}
	return s
}

// maxDepth bounds nested Unconnected_Send and Multiple_Service_Packet requests.
const maxDepth = 3

// cip answers one CIP request and reports it (and what it embeds) as events. via
// names the service that carried it ("" for SendRRData). reset reports that the
// device was reset and the connection must end.
func (h *Handler) cip(c *conn, req []byte, encap, via string, depth int) (out []byte, reset bool) {
	s := c.s
	ev := h.event(0, "")
	ev.Detail["encapsulation"] = encap
	if via != "" {
		ev.Detail["via"] = via
	}
	r, err := ParseRequest(req)
	if err != nil && len(req) < 1 {
		ev.Op = "malformed"
		ev.Detail["error"] = err.Error()
		ev.Exception = int(CIPNotEnoughData)
		s.Emit(ev)
		// Not even a service code: answer as the message router does, for service 0.
		return AppendResponse(nil, 0, CIPNotEnoughData, nil, nil), false
	}
	ev.Code = int(r.Service)
	respond := func(status byte, ext []uint16, data []byte) []byte {
		ev.Exception = int(status)
		if len(ext) > 0 {
			ev.Detail["ext_status"] = fmt.Sprintf("0x%04x", ext[0])
		}
		if status == CIPSuccess || status == CIPPartialTransfer {
			ev.Detail["result"] = "ok"
		} else {
			ev.Detail["result"] = "error"
		}
		s.Emit(ev)
		return AppendResponse(nil, r.Service, status, ext, data)
	}
	if err != nil {
		ev.Op = serviceOp(r.Service, Path{})
		ev.Detail["error"] = err.Error()
		return respond(CIPPathSizeInvalid, nil, nil), false
	}
	p, err := ParsePath(r.Path)
	ev.Op = serviceOp(r.Service, p)
	if err != nil {
		ev.Detail["error"] = err.Error()
		ev.Data = append([]byte(nil), r.Path...)
		return respond(CIPPathSegmentError, nil, nil), false
	}
	ev.Area = pathArea(p)
	if r.Service&0x80 != 0 {
		return respond(CIPServiceNotSupported, nil, nil), false
	}
	if p.Symbol != "" {
		res := h.tagService(r, p, &ev)
		return respond(res.status, res.ext, res.data), false
	}
	ev.Address = int(p.Instance)
	switch p.Class {
	case classIdentity:
		st, ext, data, rst := h.identityService(r, p, &ev)
		return respond(st, ext, data), rst
	case classMessageRouter:
		if r.Service != svcMultipleService {
			return respond(CIPServiceNotSupported, nil, nil), false
		}
		if !p.HasInstance || p.Instance != 1 {
			return respond(CIPPathDestUnknown, nil, nil), false
		}
		if depth >= maxDepth {
			return respond(CIPInvalidParameter, nil, nil), false
		}
		reqs, err := MultipleService(r.Data)
		if err != nil {
			ev.Detail["error"] = err.Error()
			return respond(CIPNotEnoughData, nil, nil), false
		}
		ev.Quantity = len(reqs)
		replies := make([][]byte, len(reqs))
		status := CIPSuccess
		for i, sub := range reqs {
			var rst bool
			replies[i], rst = h.cip(c, sub, encap, "multiple_service_packet", depth+1)
			reset = reset || rst
			if resp, err := ParseResponse(replies[i]); err == nil && resp.Status != CIPSuccess {
				status = CIPEmbeddedServiceError
			}
		}
		return respond(status, nil, AppendMultipleServiceReply(nil, replies)), reset
	case classConnMgr:
		return h.connectionManager(c, r, p, &ev, encap, depth, respond)
	case classSymbol:
		st, data := h.symbolService(r, p)
		return respond(st, nil, data), false
	case classTCPIP, classEthernetLink:
		st, data := h.networkService(s, r, p)
		return respond(st, nil, data), false
	}
	return respond(CIPPathDestUnknown, nil, nil), false
}

func (h *Handler) connectionManager(c *conn, r Request, p Path, ev *protocols.Event, encap string, depth int, respond func(byte, []uint16, []byte) []byte) ([]byte, bool) {
	if !p.HasInstance || p.Instance != 1 {
		return respond(CIPPathDestUnknown, nil, nil), false
	}
	switch r.Service {
	case svcUnconnectedSend:
		u, err := ParseUnconnectedSend(r.Data)
		if err != nil {
			ev.Detail["error"] = err.Error()
			return respond(CIPNotEnoughData, nil, nil), false
		}
		port, link, _, err := ParsePortSegment(u.Route)
		if err != nil {
			ev.Detail["error"] = err.Error()
			return respond(CIPConnectionFailure, []uint16{0x0315}, nil), false // invalid segment in path
		}
		ev.Detail["route"] = fmt.Sprintf("%d/%x", port, link)
		if port != 1 {
			return respond(CIPConnectionFailure, []uint16{0x0311}, nil), false // invalid port
		}
		if len(link) != 1 || link[0] != h.cfg.Slot {
			return respond(CIPConnectionFailure, []uint16{0x0312}, nil), false // invalid link address
		}
		if depth >= maxDepth {
			return respond(CIPInvalidParameter, nil, nil), false
		}
		// The target's reply travels back as the reply of Unconnected_Send.
		return h.cip(c, u.Message, encap, "unconnected_send", depth+1)
	case svcForwardOpen, svcLargeForwardOpen:
		ev.Write = true
		f, err := ParseForwardOpen(r.Data, r.Service == svcLargeForwardOpen)
		if err != nil {
			ev.Detail["error"] = err.Error()
			return respond(CIPNotEnoughData, nil, nil), false
		}
		ev.Detail["connection_serial"] = fmt.Sprintf("0x%04x", binary.LittleEndian.Uint16(f.Triad[:]))
		ev.Detail["transport"] = fmt.Sprintf("0x%02x", f.Transport)
		fail := func(ext uint16) []byte {
			return respond(CIPConnectionFailure, []uint16{ext}, append(f.Triad[:], 0, 0)) // remaining path size, reserved
		}
		if ext := h.connectionPath(f.Path, ev); ext != 0 {
			return fail(ext), false
		}
		if f.Transport&0x0f != 3 {
			// Only explicit messaging (class 3) to the message router.
			return fail(0x0116), false // invalid consuming/producing application path
		}
		maxSize := 504
		if r.Service == svcLargeForwardOpen {
			maxSize = 4002
		}
		if f.OTSize > maxSize || f.TOSize > maxSize {
			return respond(CIPConnectionFailure, []uint16{0x0109, uint16(maxSize)}, append(f.Triad[:], 0, 0)), false // invalid connection size
		}
		for _, cc := range c.cip {
			if cc.triad == f.Triad {
				return fail(0x0100), false // connection in use or duplicate Forward_Open
			}
		}
		h.mu.Lock()
		if h.openConns >= maxConnections {
			h.mu.Unlock()
			return fail(0x0113), false // out of connections
		}
		h.openConns++
		h.nextConnID += 0x0301
		f.OTConnID = h.nextConnID
		h.mu.Unlock()
		c.cip[f.OTConnID] = &cipConn{triad: f.Triad, toID: f.TOConnID}
		ev.Detail["connection_id"] = fmt.Sprintf("0x%08x", f.OTConnID)
		return respond(CIPSuccess, nil, AppendForwardOpenReply(nil, f)), false
	case svcForwardClose:
		ev.Write = true
		if len(r.Data) < 12 {
			return respond(CIPNotEnoughData, nil, nil), false
		}
		var triad [8]byte
		copy(triad[:], r.Data[2:10])
		ev.Detail["connection_serial"] = fmt.Sprintf("0x%04x", binary.LittleEndian.Uint16(triad[:]))
		for id, cc := range c.cip {
			if cc.triad == triad {
				delete(c.cip, id)
				h.mu.Lock()
				h.openConns--
				h.mu.Unlock()
				return respond(CIPSuccess, nil, append(triad[:], 0, 0)), false // application reply size, reserved
			}
		}
		return respond(CIPConnectionFailure, []uint16{0x0107}, append(triad[:], 0, 0)), false // connection not found
	}
	return respond(CIPServiceNotSupported, nil, nil), false
}

// connectionPath checks the connection path of a Forward_Open: an optional route
// to the controller's slot, an optional electronic key, then the message router. It
// returns 0 or the extended status of the failure.
func (h *Handler) connectionPath(b []byte, ev *protocols.Event) uint16 {
	for len(b) > 0 && b[0]&0xe0 == 0 {
		port, link, n, err := ParsePortSegment(b)
		if err != nil {
			return 0x0315 // invalid segment in connection path
		}
		ev.Detail["route"] = fmt.Sprintf("%d/%x", port, link)
		if port != 1 {
			return 0x0311
		}
		if len(link) != 1 || link[0] != h.cfg.Slot {
			return 0x0312
		}
		b = b[n:]
	}
	if len(b) >= 10 && b[0] == 0x34 && b[1] == 0x04 { // electronic key
		b = b[10:]
	}
	p, err := ParsePath(b)
	if err != nil || p.Symbol != "" || p.Class != classMessageRouter || p.Instance != 1 || p.HasAttribute {
		return 0x0315
	}
	return 0
}

// identityService serves the Identity object (class 1).
func (h *Handler) identityService(r Request, p Path, ev *protocols.Event) (byte, []uint16, []byte, bool) {
	if !p.HasInstance || p.Instance > 1 {
		return CIPPathDestUnknown, nil, nil, false
	}
	if p.Instance == 0 { // class attributes
		u16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
		class := map[uint32][]byte{1: u16(1), 2: u16(1), 3: u16(1), 6: u16(7), 7: u16(8)}
		switch r.Service {
		case svcGetAttributeAll:
			var b []byte
			for _, a := range []uint32{1, 2, 3} {
				b = append(b, class[a]...)
			}
			b = append(b, 0, 0, 0, 0) // optional attribute and service lists: empty
			return CIPSuccess, nil, append(append(b, class[6]...), class[7]...), false
		case svcGetAttributeSingle:
			if v, ok := class[p.Attribute]; ok && p.HasAttribute {
				return CIPSuccess, nil, v, false
			}
			return CIPAttributeNotSupported, nil, nil, false
		}
		return CIPServiceNotSupported, nil, nil, false
	}
	id := h.ident
	attr := func(a uint32) []byte {
		var b []byte
		switch a {
		case 1:
			b = binary.LittleEndian.AppendUint16(b, id.Vendor)
		case 2:
			b = binary.LittleEndian.AppendUint16(b, id.DeviceType)
		case 3:
			b = binary.LittleEndian.AppendUint16(b, id.ProductCode)
		case 4:
			b = append(b, id.Major, id.Minor)
		case 5:
			b = binary.LittleEndian.AppendUint16(b, id.Status)
		case 6:
			b = binary.LittleEndian.AppendUint32(b, id.Serial)
		case 7:
			b = AppendShortString(b, id.ProductName)
		case 8:
			b = append(b, id.State)
		}
		return b
	}
	switch r.Service {
	case svcGetAttributeAll:
		return CIPSuccess, nil, id.AppendAttributes(nil), false
	case svcGetAttributeSingle:
		if !p.HasAttribute || p.Attribute < 1 || p.Attribute > 8 {
			return CIPAttributeNotSupported, nil, nil, false
		}
		return CIPSuccess, nil, attr(p.Attribute), false
	case svcSetAttributeSingle:
		ev.Write = true
		ev.Data = append([]byte(nil), r.Data...)
		if !p.HasAttribute || p.Attribute < 1 || p.Attribute > 8 {
			return CIPAttributeNotSupported, nil, nil, false
		}
		return CIPAttributeNotSettable, nil, nil, false
	case svcReset:
		ev.Write = true
		typ := byte(0)
		if len(r.Data) > 0 {
			typ = r.Data[0]
		}
		ev.Detail["reset_type"] = strconv.Itoa(int(typ))
		if len(r.Data) > 1 {
			return CIPTooMuchData, nil, nil, false
		}
		if typ > 1 {
			return CIPInvalidParameter, nil, nil, false
		}
		// The device restarts: the reply goes out, then the connection drops.
		return CIPSuccess, nil, nil, true
	}
	return CIPServiceNotSupported, nil, nil, false
}

// networkService serves Get_Attribute_Single/All of the TCP/IP Interface (0xF5) and
// Ethernet Link (0xF6) objects, instance 1.
func (h *Handler) networkService(s protocols.Session, r Request, p Path) (byte, []byte) {
	if !p.HasInstance || p.Instance != 1 {
		return CIPPathDestUnknown, nil
	}
	var attrs map[uint32][]byte
	var order []uint32
	if p.Class == classEthernetLink {
		attrs = map[uint32][]byte{
			1: binary.LittleEndian.AppendUint32(nil, 100),  // interface speed, Mbit/s
			2: binary.LittleEndian.AppendUint32(nil, 0x0f), // link up, full duplex, auto-negotiated
			3: h.mac[:],
		}
		order = []uint32{1, 2, 3}
	} else {
		ip := s.Local().Addr().Unmap()
		var ip4 [4]byte
		if ip.Is4() {
			ip4 = ip.As4()
		}
		mask, gw := h.netmask, h.gateway
		if !mask.IsValid() {
			mask = netip.AddrFrom4([4]byte{255, 255, 255, 0})
		}
		if !gw.IsValid() {
			g := ip4
			g[3] = 1
			if ip4[3] == 1 {
				g[3] = 254
			}
			gw = netip.AddrFrom4(g)
		}
		u32 := func(a [4]byte) []byte { return binary.LittleEndian.AppendUint32(nil, binary.BigEndian.Uint32(a[:])) }
		cfg := append(append(u32(ip4), u32(mask.As4())...), u32(gw.As4())...)
		cfg = append(cfg, make([]byte, 8)...) // name servers
		cfg = appendCIPString(cfg, "")        // domain name
		attrs = map[uint32][]byte{
			1: binary.LittleEndian.AppendUint32(nil, 1),    // a valid configuration
			2: binary.LittleEndian.AppendUint32(nil, 0x15), // BOOTP, DHCP, settable
			3: binary.LittleEndian.AppendUint32(nil, 0),    // static configuration
			4: {0x02, 0x00, 0x20, 0xf6, 0x24, 0x01},        // Ethernet Link instance 1
			5: cfg,
			6: appendCIPString(nil, h.hostname),
		}
		order = []uint32{1, 2, 3, 4, 5, 6}
	}
	switch r.Service {
	case svcGetAttributeSingle:
		if v, ok := attrs[p.Attribute]; ok && p.HasAttribute {
			return CIPSuccess, v
		}
		return CIPAttributeNotSupported, nil
	case svcGetAttributeAll:
		var b []byte
		for _, a := range order {
			b = append(b, attrs[a]...)
		}
		return CIPSuccess, b
	case svcSetAttributeSingle:
		if _, ok := attrs[p.Attribute]; ok && p.HasAttribute {
			return CIPAttributeNotSettable, nil
		}
		return CIPAttributeNotSupported, nil
	}
	return CIPServiceNotSupported, nil
}

// svcGetInstanceAttributeList is the Logix service that lists symbol instances.
const svcGetInstanceAttributeList byte = 0x55

// symbolService serves Get_Instance_Attribute_List on the Symbol object (0x6B): the
// tag browse of Logix clients. It lists the tags from instance p.Instance on, with the
// requested attributes, in replies of at most maxTagReply bytes (0x06 when more follow).
func (h *Handler) symbolService(r Request, p Path) (byte, []byte) {
	if r.Service != svcGetInstanceAttributeList {
		return CIPServiceNotSupported, nil
	}
	if len(r.Data) < 2 {
		return CIPNotEnoughData, nil
	}
	n := int(binary.LittleEndian.Uint16(r.Data))
	if n == 0 || len(r.Data) < 2+2*n {
		return CIPNotEnoughData, nil
	}
	if len(r.Data) > 2+2*n {
		return CIPTooMuchData, nil
	}
	attrs := make([]uint16, n)
	for i := range attrs {
		attrs[i] = binary.LittleEndian.Uint16(r.Data[2+2*i:])
		switch attrs[i] {
		case 1, 2, 3, 5, 6, 7, 8:
		default:
			return CIPAttributeNotSupported, nil
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []byte
	for _, t := range h.tagList {
		if t.id < p.Instance {
			continue
		}
		e := binary.LittleEndian.AppendUint32(nil, t.id)
		for _, a := range attrs {
			switch a {
			case 1: // symbol name
				e = binary.LittleEndian.AppendUint16(e, uint16(len(t.name)))
				e = append(e, t.name...)
			case 2: // symbol type: atomic code, one array dimension when an array
				typ := t.typ.code
				if t.n > 1 {
					typ |= 1 << 13
				}
				e = binary.LittleEndian.AppendUint16(e, typ)
			case 3: // symbol address
				e = binary.LittleEndian.AppendUint32(e, 0x2000+t.id*0x40)
			case 5: // symbol object address
				e = binary.LittleEndian.AppendUint32(e, 0x8000+t.id*0x10)
			case 6: // software control
				e = binary.LittleEndian.AppendUint32(e, 0)
			case 7: // element size
				e = binary.LittleEndian.AppendUint16(e, uint16(t.typ.size))
			case 8: // array dimensions
				d := uint32(0)
				if t.n > 1 {
					d = uint32(t.n)
				}
				e = binary.LittleEndian.AppendUint32(e, d)
				e = append(e, 0, 0, 0, 0, 0, 0, 0, 0)
			}
		}
		if len(out)+len(e) > maxTagReply {
			return CIPPartialTransfer, out
		}
		out = append(out, e...)
	}
	return CIPSuccess, out
}

// appendCIPString appends a CIP STRING (UINT length, characters, pad to even).
func appendCIPString(dst []byte, s string) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
	dst = append(dst, s...)
	if len(s)%2 == 1 {
		dst = append(dst, 0)
	}
	return dst
}

// tagService serves the Logix tag services on a symbolic path.
func (h *Handler) tagService(r Request, p Path, ev *protocols.Event) tagResult {
	ev.Detail["tag"] = p.Symbol
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.tags[strings.ToLower(p.Symbol)]
	write := r.Service == svcWriteTag || r.Service == svcWriteTagFragmented
	if write {
		ev.Write = true
		ev.Data = append([]byte(nil), r.Data...)
	}
	if r.Service != svcReadTag && r.Service != svcReadTagFragmented && !write {
		return fail(CIPServiceNotSupported)
	}
	if t == nil {
		// A Logix controller answers a tag it does not have with "path segment error".
		return fail(CIPPathSegmentError)
	}
	if len(p.Members) > 1 {
		return fail(CIPPathSegmentError)
	}
	t.refresh(h.env.Now(), h.env.Boot)
	var start uint32
	if len(p.Members) == 1 {
		start = p.Members[0]
		if start >= uint32(t.n) {
			return fail(CIPGeneralError, extBeyondEnd)
		}
	}
	ev.Address = int(start)
	if len(r.Data) >= 4 && write {
		ev.Quantity = int(binary.LittleEndian.Uint16(r.Data[2:]))
	} else if len(r.Data) >= 2 {
		ev.Quantity = int(binary.LittleEndian.Uint16(r.Data))
	}
	ev.Detail["type"] = t.typ.name
	fragmented := r.Service == svcReadTagFragmented || r.Service == svcWriteTagFragmented
	if write {
		res := t.write(start, r.Data, fragmented)
		switch {
		case res.status != CIPSuccess:
		case len(res.written)%t.typ.size == 0:
			ev.Detail["value"] = formatValues(t.typ, res.written)
		default: // a fragment that is not whole elements
			ev.Detail["value"] = hex.EncodeToString(res.written)
		}
		return res
	}
	return t.read(start, r.Data, fragmented)
}
