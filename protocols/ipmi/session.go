package ipmi

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// RMCP+ session establishment (IPMI v2.0 §13.17-13.24): Open Session, RAKP 1/2
// (the BMC proves it knows the user's password), RAKP 3/4 (the console proves it),
// then messages authenticated with K1 and encrypted with K2.

type sessionState int

const (
	stateOpened sessionState = iota // Open Session answered
	stateRAKP2                      // RAKP 2 sent
	stateActive                     // RAKP 4 sent: the session carries messages
)

// session is one RMCP+ session of the BMC; h.mu guards it.
type session struct {
	bmcID, consoleID uint32
	suite            suite
	state            sessionState
	created, last    time.Time
	remote           netip.AddrPort

	reqPriv byte // maximum privilege of the Open Session request
	role    byte // RAKP 1 requested role, lookup bit included
	user    string
	entry   userEntry
	keys    rakpKeys
	k1, k2  []byte

	flow  protocols.Session // the flow that sent RAKP 1
	timer *time.Timer       // ends a session left after RAKP 2

	priv    byte // operating privilege
	handle  byte
	inSeq   uint32 // highest inbound sequence number accepted
	outSeq  uint32
	closing bool // Close Session of this session: forget it after the answer
}

// maxRole is the highest privilege the session may take: the RAKP 1 request, the
// user's limit.
func (s *session) maxRole() byte { return min(s.role&0x0F, s.entry.priv) }

var privNames = map[byte]string{
	0: "none", PrivCallback: "callback", PrivUser: "user", PrivOperator: "operator", PrivAdmin: "administrator", PrivOEM: "oem",
}

func privName(p byte) string {
	if n, ok := privNames[p]; ok {
		return n
	}
	return "0x" + strconv.FormatUint(uint64(p), 16)
}

var statusNames = map[byte]string{
	StatusOK: "ok", StatusNoResources: "insufficient_resources", StatusInvalidSessionID: "invalid_session_id",
	StatusInvalidPayloadType: "invalid_payload_type", StatusInvalidAuthAlg: "invalid_authentication_algorithm",
	StatusInvalidIntegrityAlg: "invalid_integrity_algorithm", StatusInactiveSessionID: "inactive_session_id",
	StatusInvalidRole: "invalid_role", StatusUnauthorizedRole: "unauthorized_role",
	StatusInvalidNameLength: "invalid_name_length", StatusUnauthorizedName: "unauthorized_name",
	StatusInvalidIntegrity: "invalid_integrity_check_value", StatusInvalidConfAlg: "invalid_confidentiality_algorithm",
	StatusNoCipherSuiteMatch: "no_cipher_suite_match", StatusIllegalParameter: "illegal_parameter",
}

// setStatus records an RMCP+ status in ev.
func setStatus(ev *protocols.Event, status byte) {
	if status == StatusOK {
		return
	}
	ev.Exception = int(status)
	if n, ok := statusNames[status]; ok {
		ev.Detail["status"] = n
	} else {
		ev.Detail["status"] = fmt.Sprintf("0x%02x", status)
	}
}

var algNames = map[[2]byte]string{
	{0, AuthRAKPNone}: "none", {0, AuthRAKPHMACSHA1}: "rakp_hmac_sha1", {0, AuthRAKPHMACMD5}: "rakp_hmac_md5",
	{0, AuthRAKPHMACSHA256}: "rakp_hmac_sha256",
	{1, IntegrityNone}:      "none", {1, IntegrityHMACSHA1_96}: "hmac_sha1_96", {1, IntegrityHMACMD5_128}: "hmac_md5_128",
	{1, IntegrityMD5_128}: "md5_128", {1, IntegrityHMACSHA256128}: "hmac_sha256_128",
	{2, ConfNone}: "none", {2, ConfAESCBC128}: "aes_cbc_128", {2, 2}: "xrc4_128", {2, 3}: "xrc4_40",
}

func algName(kind, alg byte) string {
	if n, ok := algNames[[2]byte{kind, alg}]; ok {
		return n
	}
	return fmt.Sprintf("0x%02x", alg)
}

// expire forgets sessions that stayed silent too long. h.mu is held.
func (h *Handler) expire(now time.Time) {
	for _, s := range h.sessions {
		if (s.state != stateActive && now.Sub(s.created) > h.cfg.SetupTimeout) ||
			(s.state == stateActive && now.Sub(s.last) > h.cfg.SessionTimeout) {
			h.forget(s)
		}
	}
}

// forget deletes a session. A session left after RAKP 2 is reported: its console
// got the user's password HMAC and did not prove it knows the password, as a client
// given a wrong password does, and as hash-collecting scanners do. h.mu is held.
func (h *Handler) forget(s *session) {
	if h.sessions[s.bmcID] != s {
		return
	}
	delete(h.sessions, s.bmcID)
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.state != stateRAKP2 {
		return
	}
	s.flow.Emit(protocols.Event{
		Time: h.env.Now(), Protocol: "ipmi", Op: "rakp_abandoned", Code: PayloadRAKP3, Unit: -1,
		Detail: map[string]string{
			"username":   s.user,
			"session_id": fmt.Sprintf("%08x", s.bmcID),
			"result":     "no_rakp_3",
		},
	})
}

// reply20 wraps a session set-up payload in an unauthenticated RMCP+ packet.
func reply20(payloadType byte, payload []byte) []byte {
	return AppendSession20(nil, payloadType, false, 0, 0, payload, IntegrityNone, nil)
}

// openSession serves an Open Session Request.
func (h *Handler) openSession(s protocols.Session, payload []byte, now time.Time, ev *protocols.Event) []byte {
	ev.Op = "open_session"
	ev.Code = PayloadOpenRequest
	r, err := ParseOpenSession(payload)
	if err != nil {
		if len(payload) < 8 {
			ev.Data = payload
			ev.Detail["reason"] = "length"
			return nil
		}
		// Answer with what the console can match: its tag and session ID.
		r = OpenSessionRequest{Tag: payload[0], ConsoleID: uint32(payload[4]) | uint32(payload[5])<<8 | uint32(payload[6])<<16 | uint32(payload[7])<<24}
		setStatus(ev, StatusIllegalParameter)
		return reply20(PayloadOpenReply, AppendOpenSessionResponse(nil, OpenSessionResponse{Tag: r.Tag, Status: StatusIllegalParameter, ConsoleID: r.ConsoleID}))
	}
	priv := r.MaxPriv & 0x0F
	ev.Detail["authentication_algorithm"] = algName(0, r.Auth)
	ev.Detail["integrity_algorithm"] = algName(1, r.Integrity)
	ev.Detail["confidentiality_algorithm"] = algName(2, r.Conf)
	ev.Detail["requested_privilege"] = privName(priv)
	var chosen *suite
	for i := range suites {
		if suites[i].auth == r.Auth && suites[i].integrity == r.Integrity && suites[i].conf == r.Conf {
			chosen = &suites[i]
		}
	}
	status := byte(StatusOK)
	switch {
	case !r.wellFormed() || r.ConsoleID == 0:
		status = StatusIllegalParameter
	case priv > PrivOEM:
		status = StatusInvalidRole
	case r.Auth != AuthRAKPHMACSHA1 && r.Auth != AuthRAKPHMACSHA256:
		status = StatusInvalidAuthAlg
	case r.Integrity != IntegrityHMACSHA1_96 && r.Integrity != IntegrityHMACSHA256128:
		status = StatusInvalidIntegrityAlg
	case r.Conf != ConfAESCBC128:
		status = StatusInvalidConfAlg
	case chosen == nil:
		status = StatusNoCipherSuiteMatch
	case len(h.sessions) >= h.cfg.MaxSessions:
		status = StatusNoResources
	}
	if status != StatusOK {
		setStatus(ev, status)
		return reply20(PayloadOpenReply, AppendOpenSessionResponse(nil, OpenSessionResponse{Tag: r.Tag, Status: status, MaxPriv: priv, ConsoleID: r.ConsoleID}))
	}
	if priv == 0 {
		priv = PrivAdmin // the highest level the algorithms allow
	}
	sess := &session{consoleID: r.ConsoleID, suite: *chosen, created: now, last: now, remote: s.Remote(), reqPriv: priv}
	sess.bmcID = h.newSessionID()
	h.sessions[sess.bmcID] = sess
	ev.Detail["cipher_suite"] = strconv.Itoa(int(chosen.id))
	ev.Detail["session_id"] = fmt.Sprintf("%08x", sess.bmcID)
	return reply20(PayloadOpenReply, AppendOpenSessionResponse(nil, OpenSessionResponse{
		Tag: r.Tag, Status: StatusOK, MaxPriv: priv, ConsoleID: r.ConsoleID, BMCID: sess.bmcID,
		Auth: chosen.auth, Integrity: chosen.integrity, Conf: chosen.conf,
	}))
}

// newSessionID returns an unused non-zero random session ID. h.mu is held.
func (h *Handler) newSessionID() uint32 {
	var b [4]byte
	for {
		randomBytes(b[:])
		id := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		if _, used := h.sessions[id]; id != 0 && !used {
			return id
		}
	}
}

// rakp1 serves RAKP message 1: it looks the user up and answers RAKP message 2 with
// the HMAC of the exchange keyed with the user's password.
func (h *Handler) rakp1(s protocols.Session, payload []byte, now time.Time, ev *protocols.Event) []byte {
	ev.Op = "rakp_1"
	ev.Code = PayloadRAKP1
	r, err := ParseRAKP1(payload)
	if errors.Is(err, ErrShort) {
		ev.Data = payload
		ev.Detail["reason"] = "length"
		return nil
	}
	role := r.Role & 0x0F
	ev.Detail["username"] = string(r.User)
	ev.Detail["requested_privilege"] = privName(role)
	ev.Detail["lookup"] = "name_only"
	if r.Role&0x10 == 0 {
		ev.Detail["lookup"] = "name_privilege"
	}
	ev.Detail["session_id"] = fmt.Sprintf("%08x", r.BMCID)
	sess := h.sessions[r.BMCID]
	var consoleID uint32
	if sess != nil {
		consoleID = sess.consoleID
	}
	entry, known := h.users[string(r.User)]
	status := byte(StatusOK)
	switch {
	case sess == nil || sess.state != stateOpened:
		status = StatusInvalidSessionID
	case err != nil:
		status = StatusInvalidNameLength
	case role > PrivOEM:
		status = StatusInvalidRole
	case role <= PrivCallback:
		status = StatusUnauthorizedRole
	case len(r.User) == 0 || !known:
		status = StatusUnauthorizedName // no null user, no such user
	case r.Role&0x10 == 0 && role != entry.priv:
		status = StatusUnauthorizedName // name and privilege lookup: no such pair
	}
	if status != StatusOK {
		setStatus(ev, status)
		if sess != nil && status != StatusInvalidSessionID {
			h.forget(sess)
		}
		return reply20(PayloadRAKP2, AppendRAKP2(nil, RAKP2{Tag: r.Tag, Status: status, ConsoleID: consoleID}))
	}
	sess.user, sess.entry, sess.role = string(r.User), entry, r.Role
	sess.keys = rakpKeys{auth: sess.suite.auth, consoleID: sess.consoleID, bmcID: sess.bmcID, consoleRn: r.ConsoleRn,
		guid: h.guid, role: r.Role, user: append([]byte(nil), r.User...)}
	randomBytes(sess.keys.bmcRn[:])
	sess.state = stateRAKP2
	sess.last = now
	sess.flow = s
	sess.timer = time.AfterFunc(h.cfg.SetupTimeout, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if sess.state == stateRAKP2 {
			h.forget(sess)
		}
	})
	return reply20(PayloadRAKP2, AppendRAKP2(nil, RAKP2{
		Tag: r.Tag, ConsoleID: sess.consoleID, BMCRn: sess.keys.bmcRn, GUID: h.guid,
		AuthCode: sess.keys.rakp2Code(entry.password),
	}))
}

// rakp3 serves RAKP message 3: it checks the console's HMAC, derives the session
// keys and answers RAKP message 4.
func (h *Handler) rakp3(s protocols.Session, payload []byte, now time.Time, ev *protocols.Event) []byte {
	ev.Op = "rakp_3"
	ev.Code = PayloadRAKP3
	r, err := ParseRAKP3(payload)
	if err != nil {
		ev.Data = payload
		ev.Detail["reason"] = "length"
		return nil
	}
	ev.Detail["session_id"] = fmt.Sprintf("%08x", r.BMCID)
	sess := h.sessions[r.BMCID]
	if sess == nil || sess.state != stateRAKP2 {
		setStatus(ev, StatusInvalidSessionID)
		return reply20(PayloadRAKP4, AppendRAKP4(nil, RAKP4{Tag: r.Tag, Status: StatusInvalidSessionID}))
	}
	ev.Detail["username"] = sess.user
	fail := func(result string) []byte {
		ev.Detail["result"] = result
		setStatus(ev, StatusInvalidIntegrity)
		sess.state = stateOpened // reported here, not as abandoned
		h.forget(sess)
		return reply20(PayloadRAKP4, AppendRAKP4(nil, RAKP4{Tag: r.Tag, Status: StatusInvalidIntegrity, ConsoleID: sess.consoleID}))
	}
	if r.Status != StatusOK {
		// The console found RAKP 2's HMAC wrong: it does not know the user's
		// password (ipmitool does this when given a wrong password).
		ev.Detail["console_status"] = fmt.Sprintf("0x%02x", r.Status)
		return fail("client_rejected")
	}
	if !hmac.Equal(r.AuthCode, sess.keys.rakp3Code(sess.entry.password)) {
		return fail("wrong_password")
	}
	sik := sess.keys.sik(sess.entry.password)
	sess.k1 = sess.keys.derive(sik, 0x01)
	sess.k2 = sess.keys.derive(sik, 0x02)
	sess.state = stateActive
	sess.timer.Stop()
	sess.last = now
	sess.priv = min(PrivUser, sess.entry.priv)
	h.nextHandle++
	if h.nextHandle == 0 {
		h.nextHandle = 1
	}
	sess.handle = h.nextHandle
	ev.Detail["result"] = "success"
	ev.Detail["privilege"] = privName(sess.priv)
	return reply20(PayloadRAKP4, AppendRAKP4(nil, RAKP4{Tag: r.Tag, ConsoleID: sess.consoleID, ICV: sess.keys.icv(sik)}))
}

// seqWindow is how far behind the highest sequence number a message may be.
const seqWindow = 32

// inSession serves a message of an active session: it checks its integrity and
// sequence number, decrypts it, runs the command and answers encrypted.
func (h *Handler) inSession(s protocols.Session, body []byte, sh Session20, now time.Time, ev *protocols.Event) []byte {
	sess := h.sessions[sh.ID]
	ev.Detail["session_id"] = fmt.Sprintf("%08x", sh.ID)
	drop := func(op, reason string) []byte {
		ev.Op = op
		ev.Detail["reason"] = reason
		return nil
	}
	switch {
	case sess == nil || sess.state != stateActive:
		return drop("unknown_session", "no active session")
	case sh.PayloadType != PayloadIPMI:
		ev.Code = int(sh.PayloadType)
		return drop("unsupported_payload", "payload type")
	case !sh.Authenticated:
		return drop("integrity_failure", "unauthenticated")
	}
	if err := VerifyTrailer(body, sh, sess.suite.integrity, sess.k1); err != nil {
		return drop("integrity_failure", err.Error())
	}
	if sh.Sequence == 0 || (sess.inSeq > seqWindow && sh.Sequence < sess.inSeq-seqWindow) {
		return drop("replay", "sequence number "+strconv.FormatUint(uint64(sh.Sequence), 10))
	}
	sess.inSeq = max(sess.inSeq, sh.Sequence)
	payload := sh.Payload
	if !sh.Encrypted {
		return drop("integrity_failure", "unencrypted")
	}
	payload, err := Decrypt(sess.k2, payload)
	if err != nil {
		return drop("integrity_failure", err.Error())
	}
	m, err := ParseRequest(payload)
	if err != nil {
		ev.Data = payload[:min(len(payload), 256)]
		return drop("malformed", "message")
	}
	sess.last = now
	cc, data := h.command(sess, s, m, ev)
	var iv [16]byte
	randomBytes(iv[:])
	enc, err := Encrypt(sess.k2, iv[:], AppendResponse(nil, m, cc, data))
	if err != nil {
		return drop("internal_error", err.Error())
	}
	sess.outSeq++
	out := AppendSession20(nil, PayloadIPMI, true, sess.consoleID, sess.outSeq, enc, sess.suite.integrity, sess.k1)
	if sess.closing {
		h.forget(sess)
	}
	return out
}
