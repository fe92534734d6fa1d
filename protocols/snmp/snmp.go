// Package snmp emulates the SNMP agent of an industrial controller: SNMPv1 and SNMPv2c
// (RFC 1157, RFC 1901, RFC 3416) over UDP, answering from MIB-II, IF-MIB, IP/TCP/UDP
// scalars, the snmp group, ENTITY-MIB and LLDP-MIB (both optional), all filled from the sensor's
// device identity. See README.md for exactly what it answers.
package snmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/pcapot/pcapot/protocols"
)

// Spec returns the registry entry of the SNMP agent.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      "snmp",
		Transport: protocols.UDP,
		Port:      161,
		Service:   "snmp",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc("snmp", New),
	}
}

// Config is the persona's SNMP section.
type Config struct {
	// Community is the read-only community.
	Community string `yaml:"community"`
	// WriteCommunity is the read-write community; empty disables SET (every SET is
	// then refused as a real agent refuses a read-only community). With it, SETs of
	// sysContact, sysName and sysLocation are kept and visible to later requests.
	WriteCommunity string `yaml:"write_community"`
	// MaxMessageSize bounds requests accepted and responses sent, in octets (the
	// agent's local constraint of RFC 3416 §4.2; 1472 fits one Ethernet frame).
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxVarbinds is the most variable bindings a request may carry; larger requests
	// are answered tooBig. At most 255.
	MaxVarbinds int `yaml:"max_varbinds"`
	// MaxRepetitions caps a GetBulkRequest's max-repetitions.
	MaxRepetitions int `yaml:"max_repetitions"`
	// RateLimit is the sustained requests per second answered per source address
	// (0: unlimited); RateBurst the burst above it. Requests beyond are dropped, which
	// bounds how much the agent can be used to reflect traffic to a spoofed source.
	RateLimit float64 `yaml:"rate_limit"`
	RateBurst int     `yaml:"rate_burst"`
	// SysServices is sysServices: the sum of 2^(layer-1) of the layers served.
	SysServices int `yaml:"sys_services"`
	// Interfaces are the device's Ethernet ports, ifIndex 1, 2, ... A list in the
	// persona replaces the default list; every entry must be complete.
	Interfaces []Interface `yaml:"interfaces"`
	// NetMask is ipAdEntNetMask of the device's address.
	NetMask string `yaml:"netmask"`
	// DefaultTTL is ipDefaultTTL.
	DefaultTTL int `yaml:"default_ttl"`
	// TCPMaxConn is tcpMaxConn; TCPEstablished is tcpCurrEstab.
	TCPMaxConn     int `yaml:"tcp_max_conn"`
	TCPEstablished int `yaml:"tcp_established"`
	// LLDPMIB serves the LLDP-MIB local system data (lldpConfiguration,
	// lldpLocalSystemData, lldpLocPortTable); EntityMIB serves the ENTITY-MIB
	// chassis entry. False leaves the subtree out entirely (noSuchObject, walks skip
	// it), as on a device whose agent has no such MIB. Without LLDP the ports send no
	// LLDP frames, which shows in ifOutNUcastPkts.
	LLDPMIB   bool `yaml:"lldp_mib"`
	EntityMIB bool `yaml:"entity_mib"`
	// SNMPv3 answers SNMPv3 engine discovery (RFC 3414 §4) as an agent with v3
	// enabled does: a Report with its engine ID, boots and time. The agent has no USM
	// users, so every other v3 request gets an unknown-user-name Report. False: v3
	// messages are dropped, as by a v1/v2c-only device.
	SNMPv3 bool `yaml:"snmpv3"`
	// EngineID is snmpEngineID in hex. Empty: RFC 3411 format 3 (MAC address) under
	// the enterprise number of the identity's sysObjectID.
	EngineID string `yaml:"engine_id"`
	// EngineBoots is snmpEngineBoots. 0: derived from the identity's serial number
	// and MAC address (2 to 41), so that it differs between installs.
	EngineBoots int `yaml:"engine_boots"`
}

// Interface is one Ethernet port.
type Interface struct {
	// Descr is ifDescr and lldpLocPortDesc; empty: "<sysDescr>, Ethernet Port, X1 P<n>".
	Descr string `yaml:"descr"`
	// Speed is ifSpeed in bits per second.
	Speed uint32 `yaml:"speed"`
	// MTU is ifMtu.
	MTU int `yaml:"mtu"`
	// Connected is whether the port has a link (ifOperStatus up, counters grow).
	Connected bool `yaml:"connected"`
	// InOctetsPerSec and OutOctetsPerSec are the mean traffic of a connected port.
	InOctetsPerSec  float64 `yaml:"in_octets_per_sec"`
	OutOctetsPerSec float64 `yaml:"out_octets_per_sec"`
	// LLDPPortID is lldpLocPortId; empty: "port-00<n>" as PROFINET devices name ports.
	// Only with lldp_mib.
	LLDPPortID string `yaml:"lldp_port_id"`
}

// NewConfig returns the defaults: read-only community "public" and no read-write
// community, two 100 Mbit/s ports of which the first has a link.
func NewConfig() *Config {
	return &Config{
		Community:      "public",
		MaxMessageSize: 1472,
		MaxVarbinds:    64,
		MaxRepetitions: 100,
		RateLimit:      100,
		RateBurst:      200,
		SysServices:    78, // datalink, network, transport, application
		Interfaces: []Interface{
			{Speed: 100_000_000, MTU: 1500, Connected: true, InOctetsPerSec: 1850, OutOctetsPerSec: 1320},
			{Speed: 100_000_000, MTU: 1500},
		},
		NetMask:        "255.255.255.0",
		DefaultTTL:     64,
		TCPMaxConn:     32,
		TCPEstablished: 2,
		LLDPMIB:        true,
		EntityMIB:      true,
		SNMPv3:         true,
	}
}

// Limits of the configuration.
const (
	maxCommunity   = 127 // gosnmp encodes the community length in one octet
	minMessageSize = 484 // RFC 3417 §3.2: every agent accepts 484 octets
	maxMessageSize = 65507
	maxInterfaces  = 64
)

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Community == "" || len(c.Community) > maxCommunity {
		bad("community must be 1 to %d octets", maxCommunity)
	}
	if len(c.WriteCommunity) > maxCommunity {
		bad("write_community must be at most %d octets", maxCommunity)
	}
	if c.WriteCommunity != "" && c.WriteCommunity == c.Community {
		bad("write_community must differ from community")
	}
	if c.MaxMessageSize < minMessageSize || c.MaxMessageSize > maxMessageSize {
		bad("max_message_size %d not in [%d, %d]", c.MaxMessageSize, minMessageSize, maxMessageSize)
	}
	if c.MaxVarbinds < 1 || c.MaxVarbinds > math.MaxUint8 {
		bad("max_varbinds %d not in [1, 255]", c.MaxVarbinds)
	}
	if c.MaxRepetitions < 1 || c.MaxRepetitions > 10000 {
		bad("max_repetitions %d not in [1, 10000]", c.MaxRepetitions)
	}
	if c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		bad("rate_limit %v must be a number >= 0", c.RateLimit)
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		bad("rate_burst %d must be >= 1 with a rate_limit", c.RateBurst)
	}
	if c.SysServices < 0 || c.SysServices > 127 {
		bad("sys_services %d not in [0, 127]", c.SysServices)
	}
	if len(c.Interfaces) == 0 || len(c.Interfaces) > maxInterfaces {
		bad("interfaces: %d, want 1 to %d", len(c.Interfaces), maxInterfaces)
	}
	for i, ifc := range c.Interfaces {
		if ifc.MTU < 68 || ifc.MTU > 65535 {
			bad("interfaces[%d].mtu %d not in [68, 65535]", i, ifc.MTU)
		}
		if ifc.InOctetsPerSec < 0 || ifc.OutOctetsPerSec < 0 ||
			ifc.InOctetsPerSec > float64(ifc.Speed)/8 || ifc.OutOctetsPerSec > float64(ifc.Speed)/8 {
			bad("interfaces[%d]: octets per second must be in [0, speed/8]", i)
		}
		if len(ifc.Descr) > maxDisplayString || len(ifc.LLDPPortID) > maxDisplayString {
			bad("interfaces[%d]: descr and lldp_port_id are at most %d octets", i, maxDisplayString)
		}
		if ifc.LLDPPortID != "" && !c.LLDPMIB {
			bad("interfaces[%d].lldp_port_id: the device has no LLDP-MIB (lldp_mib: false)", i)
		}
	}
	if m, err := netip.ParseAddr(c.NetMask); err != nil || !m.Is4() || !isMask(m.As4()) {
		bad("netmask %q is not an IPv4 netmask", c.NetMask)
	}
	if c.DefaultTTL < 1 || c.DefaultTTL > 255 {
		bad("default_ttl %d not in [1, 255]", c.DefaultTTL)
	}
	if c.TCPMaxConn < -1 || c.TCPMaxConn == 0 {
		bad("tcp_max_conn %d must be -1 (dynamic) or > 0", c.TCPMaxConn)
	}
	if c.TCPEstablished < 0 || (c.TCPMaxConn > 0 && c.TCPEstablished > c.TCPMaxConn) {
		bad("tcp_established %d not in [0, tcp_max_conn]", c.TCPEstablished)
	}
	if c.EngineID != "" {
		if id, err := hex.DecodeString(c.EngineID); err != nil || len(id) < 5 || len(id) > maxEngineID {
			bad("engine_id %q is not 5 to 32 octets in hex", c.EngineID)
		}
	}
	if c.EngineBoots < 0 || c.EngineBoots > math.MaxInt32 {
		bad("engine_boots %d not in [0, 2147483647]", c.EngineBoots)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: snmp: %w", protocols.ErrConfig, err)
	}
	return nil
}

// engine returns the SNMPv3 engine ID and boots of the device.
func engine(c *Config, id *protocols.Identity) ([]byte, uint32, error) {
	boots := uint32(c.EngineBoots)
	if boots == 0 {
		f := fnv.New32a()
		f.Write([]byte(id.Serial))
		f.Write(id.MAC)
		boots = 2 + f.Sum32()%40
	}
	if c.EngineID != "" {
		b, err := hex.DecodeString(c.EngineID)
		return b, boots, err
	}
	// RFC 3411 §5 SnmpEngineID: enterprise number with the first bit set, format 3
	// (MAC address), the MAC.
	o, _ := parseOID(id.SysObjectID)
	if len(o) < 7 || !slices.Equal(o[:6], oid{1, 3, 6, 1, 4, 1}) || o[6] >= 1<<31 {
		return nil, 0, fmt.Errorf("%w: snmp: sys_object_id %s is not under enterprises: set engine_id for SNMPv3",
			protocols.ErrConfig, id.SysObjectID)
	}
	e := binary.BigEndian.AppendUint32(nil, o[6]|1<<31)
	return append(append(e, 3), id.MAC...), boots, nil
}

func isMask(a [4]byte) bool {
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	return v&(^v>>1) == 0 && v != 0 // ones then zeros
}

func validateIdentity(id *protocols.Identity) error {
	if id == nil {
		return fmt.Errorf("%w: snmp: no device identity", protocols.ErrConfig)
	}
	o, err := parseOID(id.SysObjectID)
	if err != nil || len(o) < 2 || o[0] > 2 || (o[0] < 2 && o[1] >= 40) {
		return fmt.Errorf("%w: snmp: identity sys_object_id %q is not an OBJECT IDENTIFIER", protocols.ErrConfig, id.SysObjectID)
	}
	if len(id.MAC) != 6 {
		return fmt.Errorf("%w: snmp: identity MAC %q is not an Ethernet address", protocols.ErrConfig, id.MAC)
	}
	return nil
}

// Handler is the SNMP agent. One Handler serves every flow of the sensor and keeps
// the device state they share (SET values, counters).
type Handler struct {
	cfg    Config
	now    func() time.Time
	dev    *device
	mib    *mib
	limits *limiter // nil when unlimited
	// engineID and engineBoots are the SNMPv3 engine's, when SNMPv3 is on.
	engineID    []byte
	engineBoots uint32
}

var _ protocols.DatagramHandler = (*Handler)(nil)

// New builds the agent from the environment's identity and cfg.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := validateIdentity(env.Identity); err != nil {
		return nil, err
	}
	env = env.WithDefaults()
	c := *cfg
	c.Interfaces = append([]Interface(nil), cfg.Interfaces...)
	id := *env.Identity
	id.MAC = append([]byte(nil), env.Identity.MAC...)
	dev := newDevice(c, id, env.Boot)
	m, err := newMIB(dev)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: c, now: env.Now, dev: dev, mib: m}
	if c.SNMPv3 {
		if h.engineID, h.engineBoots, err = engine(&c, &id); err != nil {
			return nil, err
		}
	}
	if c.RateLimit > 0 {
		h.limits = newLimiter(c.RateLimit, c.RateBurst)
	}
	env.Logger.Debug("snmp agent ready", "objects", len(m.objects), "interfaces", len(c.Interfaces),
		"write_community", c.WriteCommunity != "")
	return h, nil
}

// Event operation names.
const (
	opGet          = "get_request"
	opGetNext      = "get_next_request"
	opGetBulk      = "get_bulk_request"
	opSet          = "set_request"
	opBadCommunity = "bad_community"
	opMalformed    = "malformed"
	opBadVersion   = "unsupported_version"
	opBadPDU       = "unsupported_pdu"
	opRateLimited  = "rate_limited"
	opEncrypted    = "encrypted_request"
	opBadSecurity  = "unsupported_security_model"
)

// Bounds of attacker text copied into events.
const (
	maxDetailText = 256
	maxDetailOIDs = 1024
)

// ServeDatagram answers one SNMP message. Messages a real agent would drop (wrong
// community, garbage, versions or PDUs it does not serve) are dropped and reported
// as events; they are not errors.
func (h *Handler) ServeDatagram(ctx context.Context, s protocols.Session, req []byte, reply func([]byte) error) error {
	now := h.now()
	st := &h.dev.stats
	st.inPkts.Add(1)
	st.inOctets.Add(uint64(len(req) + frameOverhead))
	if h.limits != nil {
		if ok, first := h.limits.allow(s.Remote().Addr(), now); !ok {
			if first {
				s.Emit(h.event(now, opRateLimited, nil))
			}
			return nil
		}
	}
	if len(req) > h.cfg.MaxMessageSize {
		st.inASNParseErrs.Add(1)
		ev := h.event(now, opMalformed, nil)
		ev.Detail["error"] = fmt.Sprintf("message of %d octets exceeds %d", len(req), h.cfg.MaxMessageSize)
		s.Emit(ev)
		return nil
	}
	m, err := parseMessage(req)
	if v, ok := versionOf(err); ok && v == wireV3 && h.cfg.SNMPv3 {
		return h.serveV3(now, s, req, reply)
	}
	if err != nil {
		ev := h.event(now, opMalformed, nil)
		if v, ok := versionOf(err); ok {
			st.inBadVersions.Add(1)
			ev.Op = opBadVersion
			ev.Detail["version"] = formatVersion(v)
		} else {
			st.inASNParseErrs.Add(1)
			ev.Detail["error"] = bounded(err.Error(), maxDetailText)
		}
		s.Emit(ev)
		return nil
	}
	rw := h.cfg.WriteCommunity != "" && m.community == h.cfg.WriteCommunity
	if !rw && m.community != h.cfg.Community {
		st.inBadCommunityNames.Add(1)
		s.Emit(h.event(now, opBadCommunity, m))
		return nil
	}
	r := &request{up: now.Sub(h.dev.boot), local: s.Local().Addr()}
	var res result
	var op string
	switch {
	case m.pdu == gosnmp.GetRequest:
		op, res = opGet, h.get(r, m, false)
		st.inGetRequests.Add(1)
	case m.pdu == gosnmp.GetNextRequest:
		op, res = opGetNext, h.get(r, m, true)
		st.inGetNexts.Add(1)
	case m.pdu == gosnmp.GetBulkRequest && m.version == gosnmp.Version2c:
		op, res = opGetBulk, h.getBulk(r, m)
	case m.pdu == gosnmp.SetRequest:
		op, res = opSet, h.set(r, m, rw)
		st.inSetRequests.Add(1)
	default:
		// Responses, traps, informs and reports are not for a command responder; v1
		// has no GetBulkRequest.
		s.Emit(h.event(now, opBadPDU, m))
		return nil
	}
	out, res, err := h.encode(m, res)
	ev := h.event(now, op, m)
	ev.Exception = int(res.status)
	if op == opSet {
		ev.Write = true
		for _, v := range m.vars {
			ev.Data = append(ev.Data, v.raw...) // a copy: req is only valid during the call
		}
	}
	if op == opGetBulk {
		ev.Detail["non_repeaters"] = fmt.Sprint(m.nonRepeaters)
		ev.Detail["max_repetitions"] = fmt.Sprint(m.maxRepetitions)
	}
	if err != nil || out == nil {
		if err == nil { // even tooBig does not fit (RFC 3418 snmpSilentDrops)
			st.silentDrops.Add(1)
		}
		s.Emit(ev)
		return err
	}
	h.count(res)
	s.Emit(ev)
	if err := h.send(reply, out); err != nil {
		return err
	}
	st.outGetResponses.Add(1)
	return nil
}

// send sends one message and counts it.
func (h *Handler) send(reply func([]byte) error, out []byte) error {
	if err := reply(out); err != nil {
		return fmt.Errorf("snmp: send response: %w", err)
	}
	h.dev.stats.outPkts.Add(1)
	h.dev.stats.outOctets.Add(uint64(len(out) + frameOverhead))
	return nil
}

// usmStats counters (RFC 3414 §5) named in Reports.
const (
	usmStatsUnknownUserNames = "1.3.6.1.6.3.15.1.1.3.0"
	usmStatsUnknownEngineIDs = "1.3.6.1.6.3.15.1.1.4.0"
)

// serveV3 answers an SNMPv3 message as an agent without USM users (RFC 3412 §7.2,
// RFC 3414 §3.2): a message for another engine ID (discovery) gets the
// usmStatsUnknownEngineIDs Report, which tells the engine ID, boots and time; one for
// this engine gets usmStatsUnknownUserNames. Reports go only to messages that ask for
// them (reportableFlag) and carry a confirmed-class PDU.
func (h *Handler) serveV3(now time.Time, s protocols.Session, req []byte, reply func([]byte) error) error {
	st := &h.dev.stats
	ev := h.event(now, opMalformed, nil)
	ev.Detail["version"] = "3"
	m, err := scanV3(req)
	if err != nil {
		st.inASNParseErrs.Add(1)
		ev.Detail["error"] = bounded(err.Error(), maxDetailText)
		s.Emit(ev)
		return nil
	}
	switch {
	case m.model != securityUSM:
		st.unknownSecurityModels.Add(1)
		ev.Op = opBadSecurity
		ev.Detail["security_model"] = fmt.Sprint(m.model)
		s.Emit(ev)
		return nil
	case m.flags&(flagAuth|flagPriv) == flagPriv: // privacy without authentication
		st.invalidMsgs.Add(1)
		ev.Detail["error"] = fmt.Sprintf("msgFlags %#02x", m.flags)
		s.Emit(ev)
		return nil
	}
	ev.Op = opEncrypted
	if !m.encrypted {
		ev.Op = pduOp(gosnmp.PDUType(m.pdu.pdu))
		ev.Code = int(m.pdu.pdu)
		ev.Quantity = len(m.pdu.varbinds)
		ev.Write = ev.Op == opSet
	}
	ev.Detail["user"] = bounded(string(m.user), maxDetailText)
	ev.Detail["security_level"] = [4]string{"noAuthNoPriv", "authNoPriv", "", "authPriv"}[m.flags&(flagAuth|flagPriv)]
	r := v3Report{
		msgID:       m.msgID,
		maxSize:     min(h.cfg.MaxMessageSize, int(m.maxSize)),
		engineID:    h.engineID,
		boots:       h.engineBoots,
		time:        uint32(min(max(now.Sub(h.dev.boot), 0).Seconds(), math.MaxInt32)),
		user:        m.user,
		contextName: m.contextName,
	}
	if !m.encrypted {
		r.requestID = m.pdu.requestID
	}
	if bytes.Equal(m.engineID, h.engineID) {
		r.counter, r.count = usmStatsUnknownUserNames, st.unknownUserNames.Add(1)
		ev.Detail["report"] = "unknown_user_name"
	} else {
		r.counter, r.count = usmStatsUnknownEngineIDs, st.unknownEngineIDs.Add(1)
		ev.Detail["report"] = "unknown_engine_id"
	}
	s.Emit(ev)
	confirmed := m.encrypted || slices.Contains([]byte{byte(gosnmp.GetRequest), byte(gosnmp.GetNextRequest),
		byte(gosnmp.GetBulkRequest), byte(gosnmp.SetRequest), byte(gosnmp.InformRequest)}, m.pdu.pdu)
	if m.flags&flagReportable == 0 || !confirmed {
		return nil
	}
	out, err := marshalReport(r)
	if err != nil {
		return err
	}
	if len(out) > r.maxSize {
		st.silentDrops.Add(1)
		return nil
	}
	return h.send(reply, out)
}

// pduOp is the event operation of a request PDU.
func pduOp(p gosnmp.PDUType) string {
	switch p {
	case gosnmp.GetRequest:
		return opGet
	case gosnmp.GetNextRequest:
		return opGetNext
	case gosnmp.GetBulkRequest:
		return opGetBulk
	case gosnmp.SetRequest:
		return opSet
	}
	return opBadPDU
}

// versionOf returns the version of a message refused for its version.
func versionOf(err error) (int64, bool) {
	var v versionError
	if errors.As(err, &v) {
		return int64(v), true
	}
	return 0, false
}

// result is a response before encoding.
type result struct {
	status gosnmp.SNMPError
	index  int
	vars   []gosnmp.SnmpPDU
	// retrieved counts the instances read (snmpInTotalReqVars); set counts those
	// written (snmpInTotalSetVars).
	retrieved, set int
}

func (h *Handler) count(res result) {
	st := &h.dev.stats
	st.inTotalReqVars.Add(uint32(res.retrieved))
	st.inTotalSetVars.Add(uint32(res.set))
	switch res.status {
	case gosnmp.TooBig:
		st.outTooBigs.Add(1)
	case gosnmp.NoSuchName:
		st.outNoSuchNames.Add(1)
	case gosnmp.BadValue:
		st.outBadValues.Add(1)
	case gosnmp.GenErr:
		st.outGenErrs.Add(1)
	}
}

// echo returns the request's bindings as they were sent, for error responses
// (RFC 1157 §4.1.2, RFC 3416 §4.2: "identical ... except").
func echo(m *message) []gosnmp.SnmpPDU {
	out := make([]gosnmp.SnmpPDU, len(m.vars))
	for i, v := range m.vars {
		out[i] = v.pdu()
	}
	return out
}

// failure is an error response to m at varbind i (0-based). v2 is the SNMPv2 error;
// SNMPv1 gets its RFC 3584 §4.4 mapping.
func failure(m *message, v2 gosnmp.SNMPError, i int) result {
	status := v2
	if m.version == gosnmp.Version1 {
		status = v1Error(v2)
	}
	return result{status: status, index: i + 1, vars: echo(m)}
}

// v1Error maps an SNMPv2 error-status to SNMPv1 (RFC 3584 §4.4).
func v1Error(e gosnmp.SNMPError) gosnmp.SNMPError {
	switch e {
	case gosnmp.NoAccess, gosnmp.NoCreation, gosnmp.NotWritable, gosnmp.InconsistentName, gosnmp.AuthorizationError:
		return gosnmp.NoSuchName
	case gosnmp.WrongType, gosnmp.WrongLength, gosnmp.WrongEncoding, gosnmp.WrongValue, gosnmp.InconsistentValue:
		return gosnmp.BadValue
	case gosnmp.ResourceUnavailable, gosnmp.CommitFailed, gosnmp.UndoFailed:
		return gosnmp.GenErr
	}
	return e
}

// tooMany is the answer to a request with more bindings than the agent handles:
// tooBig, which is what a response to it would be.
func (h *Handler) tooMany(m *message) (result, bool) {
	if len(m.vars) <= h.cfg.MaxVarbinds {
		return result{}, false
	}
	return tooBig(m), true
}

// tooBig is the tooBig response to m: without bindings in v2c (RFC 3416 §4.2.1),
// with the request's in v1 (RFC 1157 §4.1.2).
func tooBig(m *message) result {
	res := result{status: gosnmp.TooBig}
	if m.version == gosnmp.Version1 {
		res.vars = echo(m)
	}
	return res
}

// get answers a GetRequest (RFC 3416 §4.2.1, RFC 1157 §4.1.2) and, with next, a
// GetNextRequest (RFC 3416 §4.2.2): a missing instance is an exception in v2c
// (noSuchObject, noSuchInstance, endOfMibView) and fails the whole request with
// noSuchName in v1.
func (h *Handler) get(r *request, m *message, next bool) result {
	if res, ok := h.tooMany(m); ok {
		return res
	}
	v := h.mib.view(r)
	res := result{vars: make([]gosnmp.SnmpPDU, 0, len(m.vars))}
	for i, vb := range m.vars {
		var o *object
		if next {
			o = v.next(vb.oid)
		} else {
			o = v.get(vb.oid)
		}
		if o != nil {
			res.vars = append(res.vars, o.pdu(r))
			res.retrieved++
			continue
		}
		if m.version == gosnmp.Version1 {
			return failure(m, gosnmp.NoSuchName, i)
		}
		exc := gosnmp.EndOfMibView
		if !next {
			exc = gosnmp.NoSuchObject
			if h.mib.hasType(vb.oid) {
				exc = gosnmp.NoSuchInstance
			}
		}
		res.vars = append(res.vars, gosnmp.SnmpPDU{Name: vb.oid.String(), Type: exc})
	}
	return res
}

// minVarbindSize is the smallest encoded binding the MIB can produce (SEQUENCE,
// OID of 1 octet, 2-octet value); it bounds how many bindings can fit a response.
const minVarbindSize = 2 + 3 + 2

// getBulk answers a GetBulkRequest (RFC 3416 §4.2.3). The repetitions are capped by
// MaxRepetitions and by what fits MaxMessageSize; encode then drops bindings from the
// end until the response fits.
func (h *Handler) getBulk(r *request, m *message) result {
	if res, ok := h.tooMany(m); ok {
		return res
	}
	v := h.mib.view(r)
	l := int64(len(m.vars))
	n := min(max(m.nonRepeaters, 0), l)
	reps := min(max(m.maxRepetitions, 0), int64(h.cfg.MaxRepetitions))
	budget := h.cfg.MaxMessageSize / minVarbindSize
	res := result{vars: make([]gosnmp.SnmpPDU, 0, min(int64(budget), n+reps*(l-n)))}
	add := func(cur oid) (oid, bool) {
		if o := v.next(cur); o != nil {
			res.vars = append(res.vars, o.pdu(r))
			res.retrieved++
			return o.oid, true
		}
		res.vars = append(res.vars, gosnmp.SnmpPDU{Name: cur.String(), Type: gosnmp.EndOfMibView})
		return cur, false
	}
	for _, vb := range m.vars[:n] {
		add(vb.oid)
	}
	cur := make([]oid, 0, l-n)
	for _, vb := range m.vars[n:] {
		cur = append(cur, vb.oid)
	}
	for rep := int64(0); rep < reps && len(cur) > 0 && len(res.vars) < budget; rep++ {
		more := false
		for j := range cur {
			var ok bool
			cur[j], ok = add(cur[j])
			more = more || ok
		}
		if !more { // every repeater is at the end of the MIB view
			break
		}
	}
	if len(res.vars) > budget {
		res.vars = res.vars[:budget]
	}
	return res
}

// set answers a SetRequest (RFC 3416 §4.2.5). Only sysContact, sysName and
// sysLocation are writable, as DisplayStrings, and only with the read-write
// community; the request is validated as a whole before anything is written.
func (h *Handler) set(r *request, m *message, rw bool) result {
	if res, ok := h.tooMany(m); ok {
		return res
	}
	if len(m.vars) == 0 {
		return result{}
	}
	if !rw {
		// The read-only community has no write view: noAccess (v2c) and noSuchName
		// (v1), as net-snmp answers a SET with its rocommunity.
		h.dev.stats.inBadCommunityUses.Add(1)
		return failure(m, gosnmp.NoAccess, 0)
	}
	v := h.mib.view(r)
	targets := make([]writable, len(m.vars))
	for i, vb := range m.vars {
		o := v.get(vb.oid)
		if o == nil || o.write == readOnly {
			return failure(m, gosnmp.NotWritable, i)
		}
		if vb.typ != gosnmp.OctetString {
			return failure(m, gosnmp.WrongType, i)
		}
		if b, _ := vb.value.([]byte); len(b) > maxDisplayString {
			return failure(m, gosnmp.WrongLength, i)
		}
		targets[i] = o.write
	}
	for i, vb := range m.vars {
		b, _ := vb.value.([]byte)
		h.dev.write(targets[i], string(b))
	}
	return result{vars: echo(m), set: len(m.vars)}
}

// encode encodes res and applies MaxMessageSize: a GetBulk response loses bindings
// from its end; any other response that does not fit becomes tooBig (v2c with no
// bindings, RFC 3416 §4.2.1; v1 with the request's, RFC 1157 §4.1.2), dropped if
// even that does not fit. It returns nil bytes for a drop.
func (h *Handler) encode(m *message, res result) ([]byte, result, error) {
	limit := h.cfg.MaxMessageSize
	b, err := marshalResponse(m, res.status, res.index, res.vars)
	if err != nil {
		return nil, res, err
	}
	if len(b) <= limit {
		return b, res, nil
	}
	if m.pdu == gosnmp.GetBulkRequest && res.status == gosnmp.NoError {
		// The largest prefix of the bindings that fits.
		lo, hi := 0, len(res.vars)-1 // lo fits (if any does), hi+1 does not
		var best []byte
		for lo <= hi {
			mid := (lo + hi) / 2
			bb, err := marshalResponse(m, gosnmp.NoError, 0, res.vars[:mid])
			if err != nil {
				return nil, res, err
			}
			if len(bb) <= limit {
				best, lo = bb, mid+1
			} else {
				hi = mid - 1
			}
		}
		if hi > 0 && best != nil {
			res.retrieved = min(res.retrieved, hi)
			res.vars = res.vars[:hi]
			return best, res, nil
		}
	}
	res = tooBig(m)
	if b, err = marshalResponse(m, gosnmp.TooBig, 0, res.vars); err != nil {
		return nil, res, err
	}
	if len(b) > limit {
		return nil, res, nil
	}
	return b, res, nil
}

// event builds the event of a message (nil when it could not be decoded).
func (h *Handler) event(now time.Time, op string, m *message) protocols.Event {
	ev := protocols.Event{Time: now, Protocol: "snmp", Op: op, Unit: -1, Detail: map[string]string{}}
	if m == nil {
		return ev
	}
	ev.Code = int(m.pdu)
	ev.Quantity = len(m.vars)
	ev.Detail["version"] = formatVersion(int64(m.version))
	ev.Detail["community"] = bounded(m.community, maxDetailText)
	if len(m.vars) > 0 {
		ev.Area = m.vars[0].oid.String()
		var sb strings.Builder
		for i, v := range m.vars {
			s := v.oid.String()
			if sb.Len()+len(s)+1 > maxDetailOIDs {
				fmt.Fprintf(&sb, ",...(%d more)", len(m.vars)-i)
				break
			}
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(s)
		}
		ev.Detail["oids"] = sb.String()
	}
	return ev
}

// bounded cuts attacker text to n octets.
func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// limiter is a token bucket per source address, for at most maxSources sources.
type limiter struct {
	rate, burst float64

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens   float64
	last     time.Time
	dropping bool
}

// maxSources bounds the limiter's memory; sources idle long enough to have a full
// bucket are forgotten when it is reached.
const maxSources = 8192

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: make(map[netip.Addr]*bucket)}
}

// allow takes a token for a request from a. first is true for the first request
// refused after one allowed.
func (l *limiter) allow(a netip.Addr, now time.Time) (ok, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[a]
	if b == nil {
		if len(l.buckets) >= maxSources {
			l.sweep(now)
			if len(l.buckets) >= maxSources {
				return false, false
			}
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[a] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		first = !b.dropping
		b.dropping = true
		return false, first
	}
	b.tokens--
	b.dropping = false
	return true, false
}

// sweep forgets the sources whose bucket has refilled, at most once a second.
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for a, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, a)
		}
	}
}
