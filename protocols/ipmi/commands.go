package ipmi

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/pcapot/pcapot/protocols"
)

// IPMI commands served (IPMI v2.0 §20-§28): netfn, command, the event op, the
// privilege needed, whether it is answered outside a session, and the function.
type commandDef struct {
	op          string
	priv        byte
	sessionless bool
	fn          func(h *Handler, c *call) (cc byte, data []byte)
}

// call is one command being served; h.mu is held.
type call struct {
	sess *session // nil outside a session
	s    protocols.Session
	m    Message
	ev   *protocols.Event
}

var commands = map[[2]byte]commandDef{
	{NetFnApp, 0x01}:     {"get_device_id", PrivUser, false, (*Handler).getDeviceID},
	{NetFnApp, 0x37}:     {"get_system_guid", PrivUser, false, (*Handler).getSystemGUID},
	{NetFnApp, 0x38}:     {"get_channel_auth_capabilities", PrivCallback, true, (*Handler).getChannelAuthCaps},
	{NetFnApp, 0x3B}:     {"set_session_privilege_level", PrivUser, false, (*Handler).setSessionPrivilege},
	{NetFnApp, 0x3C}:     {"close_session", PrivCallback, false, (*Handler).closeSession},
	{NetFnApp, 0x3D}:     {"get_session_info", PrivUser, false, (*Handler).getSessionInfo},
	{NetFnApp, 0x54}:     {"get_channel_cipher_suites", PrivCallback, true, (*Handler).getChannelCipherSuites},
	{NetFnChassis, 0x01}: {"get_chassis_status", PrivUser, false, (*Handler).getChassisStatus},
	{NetFnChassis, 0x02}: {"chassis_control", PrivOperator, false, (*Handler).chassisControl},
}

// command runs request m of session sess (nil outside a session) and returns the
// completion code and response data. h.mu is held.
func (h *Handler) command(sess *session, s protocols.Session, m Message, ev *protocols.Event) (byte, []byte) {
	ev.Code = int(m.NetFn)<<8 | int(m.Cmd)
	ev.Detail["netfn"] = fmt.Sprintf("0x%02x", m.NetFn)
	ev.Detail["command"] = fmt.Sprintf("0x%02x", m.Cmd)
	if len(m.Data) > 0 {
		ev.Data = m.Data[:min(len(m.Data), 256)]
	}
	if sess != nil {
		ev.Detail["username"] = sess.user
		ev.Detail["privilege"] = privName(sess.priv)
	}
	def, ok := commands[[2]byte{m.NetFn, m.Cmd}]
	cc, data := byte(CCInvalidCommand), []byte(nil)
	switch {
	case !ok:
		ev.Op = "unsupported_command"
	case sess == nil && !def.sessionless:
		ev.Op = def.op
		cc = CCInsufficientPriv
		ev.Detail["reason"] = "no session"
	case sess != nil && sess.priv < def.priv:
		ev.Op = def.op
		cc = CCInsufficientPriv
	default:
		ev.Op = def.op
		cc, data = def.fn(h, &call{sess: sess, s: s, m: m, ev: ev})
	}
	ev.Exception = int(cc)
	return cc, data
}

// currentChannel reports whether a request's channel field names the channel the
// request came in on: 0Eh (this channel) or the LAN channel's number.
func (h *Handler) currentChannel(b byte) bool {
	ch := b & 0x0F
	return ch == 0x0E || ch == h.cfg.Channel
}

// getChannelAuthCaps: Get Channel Authentication Capabilities (§22.13). This BMC
// supports IPMI v2.0 sessions only, with non-null user names.
func (h *Handler) getChannelAuthCaps(c *call) (byte, []byte) {
	d := c.m.Data
	if len(d) != 2 {
		return CCDataLength, nil
	}
	p := d[1] & 0x0F
	c.ev.Detail["requested_privilege"] = privName(p)
	if !h.currentChannel(d[0]) || d[0]&0x70 != 0 || p < PrivCallback || p > PrivOEM {
		return CCInvalidField, nil
	}
	return CCOK, []byte{
		h.cfg.Channel,
		0x80,       // IPMI v2.0 extended capabilities; no IPMI v1.5 authentication types
		0x04,       // non-null user names; per-message and user-level authentication on; KG default
		0x02,       // IPMI v2.0 connections only
		0, 0, 0, 0, // OEM ID and auxiliary data
	}
}

// getChannelCipherSuites: Get Channel Cipher Suites (§22.15), 16 bytes of the
// record list per list index.
func (h *Handler) getChannelCipherSuites(c *call) (byte, []byte) {
	d := c.m.Data
	if len(d) != 3 {
		return CCDataLength, nil
	}
	if !h.currentChannel(d[0]) || d[1] > 1 {
		return CCInvalidField, nil
	}
	records := cipherSuiteRecords()
	if d[2]&0x80 == 0 {
		// The supported algorithms, each tagged by its kind.
		records = []byte{AuthRAKPHMACSHA1, AuthRAKPHMACSHA256, 0x40 | IntegrityHMACSHA1_96, 0x40 | IntegrityHMACSHA256128, 0x80 | ConfAESCBC128}
	}
	start := int(d[2]&0x3F) * 16
	out := []byte{h.cfg.Channel}
	if start < len(records) {
		out = append(out, records[start:min(len(records), start+16)]...)
	}
	return CCOK, out
}

// getDeviceID: Get Device ID (§20.1).
func (h *Handler) getDeviceID(c *call) (byte, []byte) {
	if len(c.m.Data) != 0 {
		return CCDataLength, nil
	}
	d := h.dev
	out := []byte{d.id, d.revision & 0x0F, d.fwMajor & 0x7F, d.fwMinor, 0x02, d.additionalSupp}
	out = append(out, byte(d.manufacturer), byte(d.manufacturer>>8), byte(d.manufacturer>>16)&0x0F)
	out = binary.LittleEndian.AppendUint16(out, d.product)
	return CCOK, append(out, d.aux...)
}

// getSystemGUID: Get System GUID (§22.14).
func (h *Handler) getSystemGUID(c *call) (byte, []byte) {
	if len(c.m.Data) != 0 {
		return CCDataLength, nil
	}
	return CCOK, h.guid[:]
}

// getChassisStatus: Get Chassis Status (§28.2).
func (h *Handler) getChassisStatus(c *call) (byte, []byte) {
	if len(c.m.Data) != 0 {
		return CCDataLength, nil
	}
	power := restorePolicies[h.cfg.PowerRestorePolicy] << 5
	if h.powerOn {
		power |= 0x01
	}
	c.ev.Detail["power"] = onOff(h.powerOn)
	return CCOK, []byte{power, h.lastEvent, 0x00, 0x00}
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

var chassisActions = []string{"power_down", "power_up", "power_cycle", "hard_reset", "pulse_diagnostic_interrupt", "soft_shutdown"}

// chassisControl: Chassis Control (§28.3). The power state is device state, seen
// by every later session.
func (h *Handler) chassisControl(c *call) (byte, []byte) {
	d := c.m.Data
	if len(d) != 1 {
		return CCDataLength, nil
	}
	a := int(d[0] & 0x0F)
	if d[0]&0xF0 != 0 || a >= len(chassisActions) {
		return CCInvalidField, nil
	}
	c.ev.Write = true
	c.ev.Detail["action"] = chassisActions[a]
	c.ev.Detail["power_before"] = onOff(h.powerOn)
	switch a {
	case 0, 5: // power down, soft shutdown
		h.setPower(false)
	case 1:
		if !h.powerOn {
			h.setPower(true)
			h.lastEvent = 0x10 // power on by an IPMI command
		}
	case 2, 3: // power cycle, hard reset: nothing to do while off
		if !h.powerOn {
			return CCNotInPresentState, nil
		}
		h.lastEvent = 0x10
	}
	c.ev.Detail["power_after"] = onOff(h.powerOn)
	return CCOK, nil
}

func (h *Handler) setPower(on bool) { h.powerOn = on }

// setSessionPrivilege: Set Session Privilege Level (§22.18).
func (h *Handler) setSessionPrivilege(c *call) (byte, []byte) {
	d := c.m.Data
	if len(d) != 1 {
		return CCDataLength, nil
	}
	p := d[0] & 0x0F
	c.ev.Detail["requested_privilege"] = privName(p)
	switch {
	case d[0]&0xF0 != 0 || p == PrivCallback || p > PrivOEM:
		return CCInvalidField, nil
	case p == 0:
		return CCOK, []byte{c.sess.priv}
	case p > c.sess.maxRole():
		return CCPrivExceedsLimit, nil
	}
	c.sess.priv = p
	c.ev.Detail["privilege"] = privName(p)
	return CCOK, []byte{p}
}

// closeSession: Close Session (§22.19), by session ID or, with ID 0, by handle.
func (h *Handler) closeSession(c *call) (byte, []byte) {
	d := c.m.Data
	if len(d) != 4 && len(d) != 5 {
		return CCDataLength, nil
	}
	id := binary.LittleEndian.Uint32(d)
	var target *session
	if id == 0 {
		if len(d) != 5 {
			return CCInvalidField, nil
		}
		for _, s := range h.sessions {
			if s.state == stateActive && s.handle == d[4] {
				target = s
			}
		}
		if target == nil {
			return CCInvalidHandle, nil
		}
	} else if target = h.sessions[id]; target == nil || target.state != stateActive {
		return CCInvalidSessionID, nil
	}
	c.ev.Detail["target_session"] = fmt.Sprintf("%08x", target.bmcID)
	if target == c.sess {
		c.sess.closing = true
		return CCOK, nil
	}
	if c.sess.priv < target.priv {
		return CCInsufficientPriv, nil
	}
	h.forget(target)
	return CCOK, nil
}

// activeSessions returns the active sessions by handle.
func (h *Handler) activeSessions() []*session {
	var out []*session
	for _, s := range h.sessions {
		if s.state == stateActive {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *session) int { return int(a.handle) - int(b.handle) })
	return out
}

// getSessionInfo: Get Session Info (§22.20) for the current session, the n-th active
// one, one by handle or one by ID.
func (h *Handler) getSessionInfo(c *call) (byte, []byte) {
	d := c.m.Data
	if len(d) < 1 {
		return CCDataLength, nil
	}
	active := h.activeSessions()
	head := []byte{0, byte(h.cfg.MaxSessions) & 0x3F, byte(len(active)) & 0x3F}
	var target *session
	switch idx := d[0]; {
	case idx == 0:
		if len(d) != 1 {
			return CCDataLength, nil
		}
		target = c.sess
	case idx == 0xFE:
		if len(d) != 2 {
			return CCDataLength, nil
		}
		for _, s := range active {
			if s.handle == d[1] {
				target = s
			}
		}
		if target == nil {
			return CCNotPresent, nil
		}
	case idx == 0xFF:
		if len(d) != 5 {
			return CCDataLength, nil
		}
		if s := h.sessions[binary.LittleEndian.Uint32(d[1:])]; s != nil && s.state == stateActive {
			target = s
		} else {
			return CCNotPresent, nil
		}
	case int(idx) > h.cfg.MaxSessions:
		return CCInvalidField, nil
	default:
		if len(d) != 1 {
			return CCDataLength, nil
		}
		if int(idx) > len(active) {
			return CCOK, head // no active session at that index
		}
		target = active[idx-1]
	}
	head[0] = target.handle
	out := append(head, target.entry.id&0x3F, target.priv&0x0F, 0x10|h.cfg.Channel&0x0F)
	var ip [4]byte
	if a := target.remote.Addr().Unmap(); a.Is4() {
		ip = a.As4()
	}
	out = append(out, ip[:]...)
	out = append(out, 0, 0, 0, 0, 0, 0) // console MAC: not known across routers
	return CCOK, binary.LittleEndian.AppendUint16(out, target.remote.Port())
}
