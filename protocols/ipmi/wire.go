package ipmi

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// RMCP (ASF 2.0 §3.2.2), IPMI v1.5 and v2.0 RMCP+ session formats (IPMI v2.0 §13).

// RMCP header values.
const (
	RMCPVersion   = 0x06
	RMCPNoAck     = 0xFF // sequence number of messages that want no RMCP ACK
	ClassASF      = 0x06
	ClassIPMI     = 0x07
	classAckFlag  = 0x80
	rmcpHeaderLen = 4
)

// ASF presence ping and pong.
const (
	ASFIANA         = 4542 // 0x000011BE
	ASFPresencePing = 0x80
	ASFPresencePong = 0x40
	// ASF supported entities of the pong: IPMI supported, ASF version 1.0.
	asfEntitiesIPMI = 0x81
)

// Session authentication types.
const (
	AuthNone     = 0x00
	AuthMD2      = 0x01
	AuthMD5      = 0x02
	AuthPassword = 0x04
	AuthOEM      = 0x05
	AuthRMCPPlus = 0x06
)

// RMCP+ payload types.
const (
	PayloadIPMI        = 0x00
	PayloadSOL         = 0x01
	PayloadOEM         = 0x02
	PayloadOpenRequest = 0x10
	PayloadOpenReply   = 0x11
	PayloadRAKP1       = 0x12
	PayloadRAKP2       = 0x13
	PayloadRAKP3       = 0x14
	PayloadRAKP4       = 0x15

	payloadEncrypted     = 0x80
	payloadAuthenticated = 0x40
	payloadTypeMask      = 0x3F
)

// Authentication, integrity and confidentiality algorithms (IPMI v2.0 §13.28).
const (
	AuthRAKPNone       = 0x00
	AuthRAKPHMACSHA1   = 0x01
	AuthRAKPHMACMD5    = 0x02
	AuthRAKPHMACSHA256 = 0x03

	IntegrityNone          = 0x00
	IntegrityHMACSHA1_96   = 0x01
	IntegrityHMACMD5_128   = 0x02
	IntegrityMD5_128       = 0x03
	IntegrityHMACSHA256128 = 0x04

	ConfNone      = 0x00
	ConfAESCBC128 = 0x01
)

// RMCP+ and RAKP status codes (IPMI v2.0 table 13-15).
const (
	StatusOK                  = 0x00
	StatusNoResources         = 0x01
	StatusInvalidSessionID    = 0x02
	StatusInvalidPayloadType  = 0x03
	StatusInvalidAuthAlg      = 0x04
	StatusInvalidIntegrityAlg = 0x05
	StatusInactiveSessionID   = 0x08
	StatusInvalidRole         = 0x09
	StatusUnauthorizedRole    = 0x0A
	StatusInvalidNameLength   = 0x0C
	StatusUnauthorizedName    = 0x0D
	StatusInvalidIntegrity    = 0x0F
	StatusInvalidConfAlg      = 0x10
	StatusNoCipherSuiteMatch  = 0x11
	StatusIllegalParameter    = 0x12
)

// Privilege levels.
const (
	PrivCallback = 1
	PrivUser     = 2
	PrivOperator = 3
	PrivAdmin    = 4
	PrivOEM      = 5
)

// Addresses of LAN messages: the BMC and the remote console software ID.
const (
	BMCAddr     = 0x20
	ConsoleAddr = 0x81
)

// Completion codes (IPMI v2.0 §5.2).
const (
	CCOK                = 0x00
	CCInvalidCommand    = 0xC1
	CCDataLength        = 0xC7
	CCNotPresent        = 0xCB
	CCInvalidField      = 0xCC
	CCInsufficientPriv  = 0xD4
	CCNotInPresentState = 0xD5
	CCInvalidSessionID  = 0x87
	CCInvalidHandle     = 0x88
	CCPrivNotAvailable  = 0x80
	CCPrivExceedsLimit  = 0x81
)

// Network functions (requests; responses add one).
const (
	NetFnChassis = 0x00
	NetFnApp     = 0x06
)

// Limits of the wire.
const (
	// MaxUserNameLen is the longest user name (RAKP message 1).
	MaxUserNameLen = 16
	// MaxPasswordLen is the longest IPMI v2.0 password (the HMAC key Kuid).
	MaxPasswordLen = 20
	// session header lengths
	session15HeaderLen = 10 // auth type, sequence, session ID, length (no auth code)
	session20HeaderLen = 12 // auth type, payload type, session ID, sequence, length
	aesBlock           = aes.BlockSize
)

// Wire errors.
var (
	ErrShort      = errors.New("ipmi: short packet")
	ErrRMCP       = errors.New("ipmi: not an RMCP message")
	ErrLength     = errors.New("ipmi: length field does not match the packet")
	ErrChecksum   = errors.New("ipmi: message checksum mismatch")
	ErrTrailer    = errors.New("ipmi: malformed session trailer")
	ErrAuthCode   = errors.New("ipmi: integrity check failed")
	ErrPadding    = errors.New("ipmi: malformed confidentiality padding")
	ErrPayload    = errors.New("ipmi: malformed payload")
	ErrNotSupport = errors.New("ipmi: unsupported message format")
)

// RMCPHeader is the RMCP header.
type RMCPHeader struct {
	Version, Sequence, Class byte
}

// ParseRMCP parses the RMCP header and returns the message after it.
func ParseRMCP(b []byte) (RMCPHeader, []byte, error) {
	if len(b) < rmcpHeaderLen {
		return RMCPHeader{}, nil, ErrShort
	}
	h := RMCPHeader{Version: b[0], Sequence: b[2], Class: b[3]}
	if h.Version != RMCPVersion {
		return h, nil, ErrRMCP
	}
	return h, b[rmcpHeaderLen:], nil
}

// AppendRMCP appends an RMCP header for a message of class class.
func AppendRMCP(dst []byte, class byte) []byte {
	return append(dst, RMCPVersion, 0, RMCPNoAck, class)
}

// ASFMessage is an ASF message (the payload of an RMCP class 6 message).
type ASFMessage struct {
	IANA uint32
	Type byte
	Tag  byte
	Data []byte
}

// ParseASF parses an ASF message.
func ParseASF(b []byte) (ASFMessage, error) {
	if len(b) < 8 {
		return ASFMessage{}, ErrShort
	}
	m := ASFMessage{IANA: binary.BigEndian.Uint32(b), Type: b[4], Tag: b[5]}
	n := int(b[7])
	if len(b) < 8+n {
		return m, ErrLength
	}
	m.Data = b[8 : 8+n]
	return m, nil
}

// AppendPresencePing appends an RMCP ASF presence ping.
func AppendPresencePing(dst []byte, tag byte) []byte {
	dst = AppendRMCP(dst, ClassASF)
	dst = binary.BigEndian.AppendUint32(dst, ASFIANA)
	return append(dst, ASFPresencePing, tag, 0, 0)
}

// AppendPresencePong appends the RMCP ASF presence pong of a BMC that supports IPMI
// and no ASF interactions.
func AppendPresencePong(dst []byte, tag byte) []byte {
	dst = AppendRMCP(dst, ClassASF)
	dst = binary.BigEndian.AppendUint32(dst, ASFIANA)
	dst = append(dst, ASFPresencePong, tag, 0, 16)
	dst = binary.BigEndian.AppendUint32(dst, ASFIANA) // no OEM: the ASF IANA
	dst = append(dst, 0, 0, 0, 0)                     // OEM defined
	dst = append(dst, asfEntitiesIPMI, 0)             // entities, interactions
	return append(dst, 0, 0, 0, 0, 0, 0)              // reserved
}

// Session15 is an IPMI v1.5 session header.
type Session15 struct {
	AuthType byte
	Sequence uint32
	ID       uint32
	AuthCode []byte // 16 bytes when AuthType is not none
}

// ParseSession15 parses an IPMI v1.5 session header (after RMCP) and returns the
// IPMI message it carries.
func ParseSession15(b []byte) (Session15, []byte, error) {
	if len(b) < session15HeaderLen {
		return Session15{}, nil, ErrShort
	}
	s := Session15{AuthType: b[0], Sequence: binary.LittleEndian.Uint32(b[1:]), ID: binary.LittleEndian.Uint32(b[5:])}
	rest := b[9:]
	if s.AuthType != AuthNone {
		if len(rest) < 17 {
			return s, nil, ErrShort
		}
		s.AuthCode, rest = rest[:16], rest[16:]
	}
	n := int(rest[0])
	if len(rest) < 1+n {
		return s, nil, ErrLength
	}
	return s, rest[1 : 1+n], nil
}

// AppendSession15 appends an unauthenticated IPMI v1.5 session-less message.
func AppendSession15(dst []byte, msg []byte) []byte {
	dst = AppendRMCP(dst, ClassIPMI)
	dst = append(dst, AuthNone, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(msg)))
	return append(dst, msg...)
}

// Session20 is an RMCP+ session header and the payload it carries.
type Session20 struct {
	PayloadType   byte // without the encrypted and authenticated flags
	Encrypted     bool
	Authenticated bool
	ID            uint32
	Sequence      uint32
	Payload       []byte
	// Trailer is what follows the payload: integrity pad, pad length, next header
	// and the auth code, present when Authenticated.
	Trailer []byte
}

// ParseSession20 parses an RMCP+ session header (after RMCP). The trailer is
// split off but not checked: that needs the session's integrity key (VerifyTrailer).
func ParseSession20(b []byte) (Session20, error) {
	if len(b) < session20HeaderLen {
		return Session20{}, ErrShort
	}
	if b[0] != AuthRMCPPlus {
		return Session20{}, ErrNotSupport
	}
	s := Session20{
		PayloadType:   b[1] & payloadTypeMask,
		Encrypted:     b[1]&payloadEncrypted != 0,
		Authenticated: b[1]&payloadAuthenticated != 0,
	}
	off := 2
	if s.PayloadType == PayloadOEM {
		return s, ErrNotSupport // OEM explicit payloads carry an IANA and an ID
	}
	s.ID = binary.LittleEndian.Uint32(b[off:])
	s.Sequence = binary.LittleEndian.Uint32(b[off+4:])
	n := int(binary.LittleEndian.Uint16(b[off+8:]))
	off += 10
	if len(b) < off+n {
		return s, ErrLength
	}
	s.Payload = b[off : off+n]
	s.Trailer = b[off+n:]
	return s, nil
}

// authCodeLen is the length of the auth code of an integrity algorithm.
func authCodeLen(integrity byte) int {
	switch integrity {
	case IntegrityHMACSHA1_96:
		return 12
	case IntegrityHMACSHA256128:
		return 16
	}
	return 0
}

// integrityMAC returns the HMAC of an integrity algorithm keyed with k1.
func integrityMAC(integrity byte, k1 []byte) hash.Hash {
	if integrity == IntegrityHMACSHA256128 {
		return hmac.New(sha256.New, k1)
	}
	return hmac.New(sha1.New, k1)
}

// VerifyTrailer checks the session trailer of an authenticated RMCP+ packet: pkt is
// the packet from the authentication type byte on (after RMCP). It returns nil when
// the pad, the next header and the auth code are right.
func VerifyTrailer(pkt []byte, s Session20, integrity byte, k1 []byte) error {
	n := authCodeLen(integrity)
	t := s.Trailer
	if n == 0 || len(t) < n+2 || len(pkt) < n {
		return ErrTrailer
	}
	pad := int(t[len(t)-n-2])
	if t[len(t)-n-1] != 0x07 || pad != len(t)-n-2 || pad > 3 {
		return ErrTrailer
	}
	for _, c := range t[:pad] {
		if c != 0xFF {
			return ErrTrailer
		}
	}
	if (len(pkt)-n)%4 != 0 {
		return ErrTrailer
	}
	mac := integrityMAC(integrity, k1)
	mac.Write(pkt[:len(pkt)-n])
	if !hmac.Equal(mac.Sum(nil)[:n], pkt[len(pkt)-n:]) {
		return ErrAuthCode
	}
	return nil
}

// AppendSession20 appends an RMCP+ message: the RMCP header, the session header, the
// payload and, with an integrity algorithm, the session trailer authenticated with
// k1. flags are the encrypted/authenticated bits of the payload type.
func AppendSession20(dst []byte, payloadType byte, encrypted bool, id, seq uint32, payload []byte, integrity byte, k1 []byte) []byte {
	dst = AppendRMCP(dst, ClassIPMI)
	start := len(dst)
	pt := payloadType
	if encrypted {
		pt |= payloadEncrypted
	}
	n := authCodeLen(integrity)
	if n > 0 {
		pt |= payloadAuthenticated
	}
	dst = append(dst, AuthRMCPPlus, pt)
	dst = binary.LittleEndian.AppendUint32(dst, id)
	dst = binary.LittleEndian.AppendUint32(dst, seq)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(payload)))
	dst = append(dst, payload...)
	if n == 0 {
		return dst
	}
	// The integrity pad makes the authenticated range (auth type to next header) a
	// multiple of four bytes.
	pad := (4 - (len(dst)-start+2)%4) % 4
	for range pad {
		dst = append(dst, 0xFF)
	}
	dst = append(dst, byte(pad), 0x07)
	mac := integrityMAC(integrity, k1)
	mac.Write(dst[start:])
	return append(dst, mac.Sum(nil)[:n]...)
}

// Encrypt encrypts an RMCP+ payload with AES-CBC-128 (IPMI v2.0 §13.29): the IV,
// then the payload with its confidentiality pad (1, 2, 3...) and pad length, a
// multiple of 16 bytes. key is the first 16 bytes of K2.
func Encrypt(key, iv, payload []byte) ([]byte, error) {
	block, err := aes.NewCipher(key[:16])
	if err != nil {
		return nil, fmt.Errorf("ipmi: aes: %w", err)
	}
	pad := (aesBlock - (len(payload)+1)%aesBlock) % aesBlock
	plain := make([]byte, 0, len(payload)+pad+1)
	plain = append(plain, payload...)
	for i := range pad {
		plain = append(plain, byte(i+1))
	}
	plain = append(plain, byte(pad))
	out := make([]byte, aesBlock+len(plain))
	copy(out, iv[:aesBlock])
	cipher.NewCBCEncrypter(block, iv[:aesBlock]).CryptBlocks(out[aesBlock:], plain)
	return out, nil
}

// Decrypt decrypts an AES-CBC-128 RMCP+ payload and removes its confidentiality
// pad.
func Decrypt(key, data []byte) ([]byte, error) {
	if len(data) < 2*aesBlock || len(data)%aesBlock != 0 {
		return nil, ErrPadding
	}
	block, err := aes.NewCipher(key[:16])
	if err != nil {
		return nil, fmt.Errorf("ipmi: aes: %w", err)
	}
	plain := make([]byte, len(data)-aesBlock)
	cipher.NewCBCDecrypter(block, data[:aesBlock]).CryptBlocks(plain, data[aesBlock:])
	pad := int(plain[len(plain)-1])
	if pad >= aesBlock || pad+1 > len(plain) {
		return nil, ErrPadding
	}
	for i := range pad {
		if plain[len(plain)-1-pad+i] != byte(i+1) {
			return nil, ErrPadding
		}
	}
	return plain[:len(plain)-1-pad], nil
}

// Message is an IPMI LAN message (IPMI v2.0 §13.8): a request or a response.
type Message struct {
	RsAddr, NetFn, RsLUN byte
	RqAddr, RqSeq, RqLUN byte
	Cmd                  byte
	Data                 []byte // for a response, the completion code first
}

// Checksum is the two's complement checksum of IPMI messages: the bytes and the
// checksum sum to zero.
func Checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// ParseRequest parses an IPMI LAN request message and checks both checksums.
func ParseRequest(b []byte) (Message, error) {
	if len(b) < 7 {
		return Message{}, ErrShort
	}
	if Checksum(b[:2]) != b[2] || Checksum(b[3:len(b)-1]) != b[len(b)-1] {
		return Message{}, ErrChecksum
	}
	return Message{
		RsAddr: b[0], NetFn: b[1] >> 2, RsLUN: b[1] & 3,
		RqAddr: b[3], RqSeq: b[4] >> 2, RqLUN: b[4] & 3,
		Cmd: b[5], Data: b[6 : len(b)-1],
	}, nil
}

// AppendRequest appends an IPMI LAN request message.
func AppendRequest(dst []byte, m Message) []byte {
	start := len(dst)
	dst = append(dst, m.RsAddr, m.NetFn<<2|m.RsLUN&3)
	dst = append(dst, Checksum(dst[start:]))
	mid := len(dst)
	dst = append(dst, m.RqAddr, m.RqSeq<<2|m.RqLUN&3, m.Cmd)
	dst = append(dst, m.Data...)
	return append(dst, Checksum(dst[mid:]))
}

// AppendResponse appends the response to request req: completion code cc and data.
func AppendResponse(dst []byte, req Message, cc byte, data []byte) []byte {
	start := len(dst)
	dst = append(dst, req.RqAddr, (req.NetFn|1)<<2|req.RqLUN&3)
	dst = append(dst, Checksum(dst[start:]))
	mid := len(dst)
	dst = append(dst, req.RsAddr, req.RqSeq<<2|req.RsLUN&3, req.Cmd, cc)
	dst = append(dst, data...)
	return append(dst, Checksum(dst[mid:]))
}

// ParseResponse parses an IPMI LAN response message: Data holds the completion code
// and the response data.
func ParseResponse(b []byte) (Message, error) {
	m, err := ParseRequest(b)
	if err != nil {
		return m, err
	}
	if len(m.Data) < 1 {
		return m, ErrShort
	}
	// In a response the first address is the requester's and the second the
	// responder's; keep the field names of the request.
	m.RqAddr, m.RsAddr = m.RsAddr, m.RqAddr
	m.RqLUN, m.RsLUN = m.RsLUN, m.RqLUN
	return m, nil
}

// OpenSessionRequest is an RMCP+ Open Session Request (IPMI v2.0 §13.17).
type OpenSessionRequest struct {
	Tag          byte
	MaxPriv      byte
	ConsoleID    uint32
	Auth         byte
	Integrity    byte
	Conf         byte
	payloadTypes [3]byte
	payloadLens  [3]byte
}

// openSessionLen is the length of an Open Session Request.
const openSessionLen = 32

// ParseOpenSession parses an Open Session Request.
func ParseOpenSession(b []byte) (OpenSessionRequest, error) {
	if len(b) != openSessionLen {
		return OpenSessionRequest{}, ErrPayload
	}
	r := OpenSessionRequest{Tag: b[0], MaxPriv: b[1], ConsoleID: binary.LittleEndian.Uint32(b[4:])}
	for i := range 3 {
		p := b[8+8*i:]
		r.payloadTypes[i] = p[0]
		r.payloadLens[i] = p[3]
	}
	r.Auth, r.Integrity, r.Conf = b[12]&0x3F, b[20]&0x3F, b[28]&0x3F
	return r, nil
}

// wellFormed reports whether the three algorithm payloads are the authentication,
// integrity and confidentiality payloads, each 8 bytes long.
func (r OpenSessionRequest) wellFormed() bool {
	return r.payloadTypes == [3]byte{0, 1, 2} && r.payloadLens == [3]byte{8, 8, 8}
}

// AppendOpenSessionRequest appends an Open Session Request payload.
func AppendOpenSessionRequest(dst []byte, r OpenSessionRequest) []byte {
	dst = append(dst, r.Tag, r.MaxPriv, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, r.ConsoleID)
	for i, alg := range []byte{r.Auth, r.Integrity, r.Conf} {
		dst = append(dst, byte(i), 0, 0, 8, alg, 0, 0, 0)
	}
	return dst
}

// OpenSessionResponse is an RMCP+ Open Session Response.
type OpenSessionResponse struct {
	Tag, Status, MaxPriv byte
	ConsoleID, BMCID     uint32
	Auth, Integrity      byte
	Conf                 byte
}

// AppendOpenSessionResponse appends an Open Session Response payload; one with an
// error status has the full length, zero after the console session ID, as BMCs
// send it (and scanners such as nmap's ipmi-cipher-zero read it).
func AppendOpenSessionResponse(dst []byte, r OpenSessionResponse) []byte {
	dst = append(dst, r.Tag, r.Status, r.MaxPriv, 0)
	dst = binary.LittleEndian.AppendUint32(dst, r.ConsoleID)
	if r.Status != StatusOK {
		return append(dst, make([]byte, 28)...)
	}
	dst = binary.LittleEndian.AppendUint32(dst, r.BMCID)
	for i, alg := range []byte{r.Auth, r.Integrity, r.Conf} {
		dst = append(dst, byte(i), 0, 0, 8, alg, 0, 0, 0)
	}
	return dst
}

// ParseOpenSessionResponse parses an Open Session Response.
func ParseOpenSessionResponse(b []byte) (OpenSessionResponse, error) {
	if len(b) < 8 {
		return OpenSessionResponse{}, ErrShort
	}
	r := OpenSessionResponse{Tag: b[0], Status: b[1], MaxPriv: b[2], ConsoleID: binary.LittleEndian.Uint32(b[4:])}
	if r.Status != StatusOK {
		return r, nil
	}
	if len(b) != 36 {
		return r, ErrPayload
	}
	r.BMCID = binary.LittleEndian.Uint32(b[8:])
	r.Auth, r.Integrity, r.Conf = b[16], b[24], b[32]
	return r, nil
}

// RAKP1 is RAKP message 1.
type RAKP1 struct {
	Tag       byte
	BMCID     uint32
	ConsoleRn [16]byte
	Role      byte // requested maximum privilege, with the name-only lookup bit
	User      []byte
}

// rakp1Len is the length of RAKP message 1 without the user name.
const rakp1Len = 28

// ParseRAKP1 parses RAKP message 1. A user name length over 16 or one that does
// not match the payload is reported as ErrPayload with what could be read.
func ParseRAKP1(b []byte) (RAKP1, error) {
	if len(b) < rakp1Len {
		return RAKP1{}, ErrShort
	}
	r := RAKP1{Tag: b[0], BMCID: binary.LittleEndian.Uint32(b[4:]), Role: b[24]}
	copy(r.ConsoleRn[:], b[8:24])
	n := int(b[27])
	if n > MaxUserNameLen || len(b) != rakp1Len+n {
		r.User = b[rakp1Len:min(len(b), rakp1Len+MaxUserNameLen)]
		return r, ErrPayload
	}
	r.User = b[rakp1Len:]
	return r, nil
}

// AppendRAKP1 appends RAKP message 1.
func AppendRAKP1(dst []byte, r RAKP1) []byte {
	dst = append(dst, r.Tag, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, r.BMCID)
	dst = append(dst, r.ConsoleRn[:]...)
	dst = append(dst, r.Role, 0, 0, byte(len(r.User)))
	return append(dst, r.User...)
}

// RAKP2 is RAKP message 2.
type RAKP2 struct {
	Tag, Status byte
	ConsoleID   uint32
	BMCRn       [16]byte
	GUID        [16]byte
	AuthCode    []byte
}

// AppendRAKP2 appends RAKP message 2; one with an error status carries zero random
// number and GUID and no auth code.
func AppendRAKP2(dst []byte, r RAKP2) []byte {
	dst = append(dst, r.Tag, r.Status, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, r.ConsoleID)
	dst = append(dst, r.BMCRn[:]...)
	dst = append(dst, r.GUID[:]...)
	return append(dst, r.AuthCode...)
}

// ParseRAKP2 parses RAKP message 2.
func ParseRAKP2(b []byte) (RAKP2, error) {
	if len(b) < 8 {
		return RAKP2{}, ErrShort
	}
	r := RAKP2{Tag: b[0], Status: b[1], ConsoleID: binary.LittleEndian.Uint32(b[4:])}
	if len(b) < 40 {
		if r.Status == StatusOK {
			return r, ErrShort
		}
		return r, nil
	}
	copy(r.BMCRn[:], b[8:24])
	copy(r.GUID[:], b[24:40])
	r.AuthCode = b[40:]
	return r, nil
}

// RAKP3 is RAKP message 3.
type RAKP3 struct {
	Tag, Status byte
	BMCID       uint32
	AuthCode    []byte
}

// ParseRAKP3 parses RAKP message 3.
func ParseRAKP3(b []byte) (RAKP3, error) {
	if len(b) < 8 {
		return RAKP3{}, ErrShort
	}
	return RAKP3{Tag: b[0], Status: b[1], BMCID: binary.LittleEndian.Uint32(b[4:]), AuthCode: b[8:]}, nil
}

// AppendRAKP3 appends RAKP message 3.
func AppendRAKP3(dst []byte, r RAKP3) []byte {
	dst = append(dst, r.Tag, r.Status, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, r.BMCID)
	return append(dst, r.AuthCode...)
}

// RAKP4 is RAKP message 4.
type RAKP4 struct {
	Tag, Status byte
	ConsoleID   uint32
	ICV         []byte
}

// AppendRAKP4 appends RAKP message 4.
func AppendRAKP4(dst []byte, r RAKP4) []byte {
	dst = append(dst, r.Tag, r.Status, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, r.ConsoleID)
	return append(dst, r.ICV...)
}

// ParseRAKP4 parses RAKP message 4.
func ParseRAKP4(b []byte) (RAKP4, error) {
	if len(b) < 8 {
		return RAKP4{}, ErrShort
	}
	return RAKP4{Tag: b[0], Status: b[1], ConsoleID: binary.LittleEndian.Uint32(b[4:]), ICV: b[8:]}, nil
}

// Cipher suites offered: the two the IPMI v2.0 specification and its errata make
// the common ground of current BMCs.
type suite struct {
	id                    byte
	auth, integrity, conf byte
}

var suites = []suite{
	{3, AuthRAKPHMACSHA1, IntegrityHMACSHA1_96, ConfAESCBC128},
	{17, AuthRAKPHMACSHA256, IntegrityHMACSHA256128, ConfAESCBC128},
}

// cipherSuiteRecords are the records of Get Channel Cipher Suites (IPMI v2.0
// §22.15): start of a standard record, suite ID, and the algorithms tagged by kind.
func cipherSuiteRecords() []byte {
	var out []byte
	for _, s := range suites {
		out = append(out, 0xC0, s.id, s.auth, 0x40|s.integrity, 0x80|s.conf)
	}
	return out
}

// authHMAC returns the HMAC of an authentication algorithm keyed with key.
func authHMAC(auth byte, key []byte) hash.Hash {
	if auth == AuthRAKPHMACSHA256 {
		return hmac.New(sha256.New, key)
	}
	return hmac.New(sha1.New, key)
}

// icvLen is the length of the RAKP 4 integrity check value of an authentication
// algorithm.
func icvLen(auth byte) int {
	if auth == AuthRAKPHMACSHA256 {
		return 16
	}
	return 12
}

// rakpKeys holds the values both sides combine in the RAKP exchange.
type rakpKeys struct {
	auth             byte
	consoleID, bmcID uint32
	consoleRn, bmcRn [16]byte
	guid             [16]byte
	role             byte
	user             []byte
}

func (k rakpKeys) mac(key []byte, parts ...[]byte) []byte {
	m := authHMAC(k.auth, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// rakp2Code is the key exchange auth code of RAKP message 2:
// HMAC_Kuid(SIDm, SIDc, Rm, Rc, GUIDc, ROLEm, ULENGTHm, UNAMEm).
func (k rakpKeys) rakp2Code(password []byte) []byte {
	return k.mac(password, le32(k.consoleID), le32(k.bmcID), k.consoleRn[:], k.bmcRn[:], k.guid[:],
		[]byte{k.role, byte(len(k.user))}, k.user)
}

// rakp3Code is the key exchange auth code of RAKP message 3:
// HMAC_Kuid(Rc, SIDm, ROLEm, ULENGTHm, UNAMEm).
func (k rakpKeys) rakp3Code(password []byte) []byte {
	return k.mac(password, k.bmcRn[:], le32(k.consoleID), []byte{k.role, byte(len(k.user))}, k.user)
}

// sik is the session integrity key: HMAC_KG(Rm, Rc, ROLEm, ULENGTHm, UNAMEm), with
// the user's password as KG when the BMC key is not set.
func (k rakpKeys) sik(kg []byte) []byte {
	return k.mac(kg, k.consoleRn[:], k.bmcRn[:], []byte{k.role, byte(len(k.user))}, k.user)
}

// icv is the integrity check value of RAKP message 4: HMAC_SIK(Rm, SIDc, GUIDc),
// truncated.
func (k rakpKeys) icv(sik []byte) []byte {
	return k.mac(sik, k.consoleRn[:], le32(k.bmcID), k.guid[:])[:icvLen(k.auth)]
}

// derive returns K1 or K2: HMAC_SIK of twenty bytes of c.
func (k rakpKeys) derive(sik []byte, c byte) []byte {
	var constant [20]byte
	for i := range constant {
		constant[i] = c
	}
	return k.mac(sik, constant[:])
}
