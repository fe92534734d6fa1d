package snmp

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/gosnmp/gosnmp"
)

// Wire format: SNMPv1 (RFC 1157) and SNMPv2c (RFC 1901) messages carrying RFC 3416
// PDUs, BER-encoded (X.690) with the restrictions of RFC 3417 §8: definite lengths only.
//
//	Message ::= SEQUENCE { version INTEGER, community OCTET STRING, data PDU }
//	PDU     ::= [tag] IMPLICIT SEQUENCE { request-id INTEGER, error-status INTEGER,
//	            error-index INTEGER, variable-bindings SEQUENCE OF VarBind }
//	            (GetBulkRequest: non-repeaters and max-repetitions instead of the errors)
//	VarBind ::= SEQUENCE { name OBJECT IDENTIFIER, value ObjectSyntax | NULL | exception }
//
// Decoding and encoding go through gosnmp's packet codec (GoSNMP.SnmpDecodePacket,
// SnmpPacket.MarshalMsg). gosnmp is written for managers and loses a few things an
// agent must keep, so a small bounds-checked TLV scanner (scanMessage) walks the same
// bytes first and supplies them:
//   - request-id is an Integer32 and may be negative; gosnmp stores it as uint32 and
//     re-encodes it as a positive 5-octet INTEGER, so the response would not match.
//     patchRequestID re-encodes the request-id of such responses with rewrite, which
//     with the SNMPv3 msgID (marshalReport) is the only BER this package writes
//     itself: one INTEGER and the lengths that enclose it.
//   - non-repeaters is truncated to uint8 by gosnmp and max-repetitions loses its sign;
//     RFC 3416 §4.2.3 needs the signed values (negative means zero).
//   - SetRequest values are reported raw (Event.Data), and values gosnmp would decode
//     lossily (out-of-range INTEGERs, IpAddress that is not 4 octets, unknown tags) are
//     rejected as ASN.1 parse errors, which is what a real agent does.

// Errors returned by parseMessage.
var (
	// ErrMalformed is wrapped by every decoding failure of a v1/v2c message.
	ErrMalformed = errors.New("snmp: malformed message")
	// ErrVersion is wrapped when the message version is neither v1 nor v2c.
	ErrVersion = errors.New("snmp: unsupported version")
)

// X.690 universal tags of the SNMP message structure.
const (
	tagInteger  = 0x02
	tagOctetStr = 0x04
	tagOID      = 0x06
	tagSequence = 0x30
)

// maxOIDArcs is the SMI limit on sub-identifiers (RFC 2578 §3.5).
const maxOIDArcs = 128

// SNMP message versions on the wire.
const (
	wireV1  = 0
	wireV2c = 1
	wireV3  = 3
)

// tlv is one BER element: its tag, its contents and the whole encoding.
type tlv struct {
	tag      byte
	contents []byte
	raw      []byte
}

// readTLV reads one BER element from the front of b and returns it and the rest of b.
// Only the forms SNMP uses are accepted: low tag numbers and definite lengths of at
// most four length octets.
func readTLV(b []byte) (tlv, []byte, error) {
	if len(b) < 2 {
		return tlv{}, nil, errors.New("truncated element")
	}
	tag := b[0]
	if tag&0x1f == 0x1f {
		return tlv{}, nil, fmt.Errorf("high tag number form (tag %#02x)", tag)
	}
	n, hdr := int(b[1]), 2
	if n&0x80 != 0 {
		k := n & 0x7f
		switch {
		case k == 0:
			return tlv{}, nil, errors.New("indefinite length")
		case k > 4:
			return tlv{}, nil, fmt.Errorf("%d length octets", k)
		case len(b) < 2+k:
			return tlv{}, nil, errors.New("truncated length")
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		hdr += k
	}
	if n > len(b)-hdr {
		return tlv{}, nil, fmt.Errorf("length %d exceeds the %d octets left", n, len(b)-hdr)
	}
	return tlv{tag: tag, contents: b[hdr : hdr+n], raw: b[:hdr+n]}, b[hdr+n:], nil
}

// readTyped reads one element and checks its tag.
func readTyped(b []byte, tag byte, what string) (tlv, []byte, error) {
	t, rest, err := readTLV(b)
	if err != nil {
		return tlv{}, nil, fmt.Errorf("%s: %w", what, err)
	}
	if t.tag != tag {
		return tlv{}, nil, fmt.Errorf("%s: tag %#02x, want %#02x", what, t.tag, tag)
	}
	return t, rest, nil
}

// parseInteger decodes the contents of a BER INTEGER of at most 8 octets.
func parseInteger(c []byte) (int64, error) {
	if len(c) == 0 || len(c) > 8 {
		return 0, fmt.Errorf("INTEGER of %d octets", len(c))
	}
	v := int64(int8(c[0]))
	for _, b := range c[1:] {
		v = v<<8 | int64(b)
	}
	return v, nil
}

// readInteger reads an INTEGER element.
func readInteger(b []byte, what string) (int64, []byte, error) {
	t, rest, err := readTyped(b, tagInteger, what)
	if err != nil {
		return 0, nil, err
	}
	v, err := parseInteger(t.contents)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", what, err)
	}
	return v, rest, nil
}

// appendLength appends a BER definite length.
func appendLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xff:
		return append(dst, 0x81, byte(n))
	case n <= 0xffff:
		return append(dst, 0x82, byte(n>>8), byte(n))
	default:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// appendTLV appends one BER element.
func appendTLV(dst []byte, tag byte, contents []byte) []byte {
	dst = append(dst, tag)
	dst = appendLength(dst, len(contents))
	return append(dst, contents...)
}

// appendInteger appends a minimal two's-complement BER INTEGER.
func appendInteger(dst []byte, v int64) []byte {
	n := 1
	for n < 8 && (v>>(8*n-1) != 0 && v>>(8*n-1) != -1) {
		n++
	}
	dst = append(dst, tagInteger, byte(n))
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// checkOID checks the contents of an OBJECT IDENTIFIER: sub-identifiers in the
// fewest octets (X.690 §8.19.2: no leading 0x80 octet), the last one complete, at
// most maxOIDArcs of them.
func checkOID(c []byte) error {
	if len(c) == 0 {
		return errors.New("empty OBJECT IDENTIFIER")
	}
	if c[len(c)-1]&0x80 != 0 {
		return errors.New("truncated sub-identifier")
	}
	arcs := 1 // the first octet group holds two arcs
	for i, b := range c {
		if b == 0x80 && (i == 0 || c[i-1]&0x80 == 0) {
			return errors.New("sub-identifier with a leading 0x80 octet")
		}
		if b&0x80 == 0 {
			arcs++
		}
	}
	if arcs > maxOIDArcs {
		return fmt.Errorf("OBJECT IDENTIFIER of %d sub-identifiers", arcs)
	}
	return nil
}

// rawVarbind is a variable binding as the scanner saw it.
type rawVarbind struct {
	name  []byte // OBJECT IDENTIFIER contents
	value tlv
}

// scannedPDU is what the scanner reads from a PDU.
type scannedPDU struct {
	pdu       byte
	requestID int64
	// f2 and f3 are error-status and error-index, or non-repeaters and
	// max-repetitions for GetBulkRequest.
	f2, f3   int64
	varbinds []rawVarbind
}

// scanned is what the scanner reads from a v1/v2c message.
type scanned struct {
	version   int64
	community []byte
	scannedPDU
}

// scanVersion reads the message envelope far enough to know its version.
func scanVersion(b []byte) (version int64, body []byte, err error) {
	msg, rest, err := readTyped(b, tagSequence, "message")
	if err != nil {
		return 0, nil, err
	}
	if len(rest) != 0 {
		return 0, nil, fmt.Errorf("%d octets after the message", len(rest))
	}
	version, body, err = readInteger(msg.contents, "version")
	if err != nil {
		return 0, nil, err
	}
	return version, body, nil
}

// versionError is the version of a message that is neither v1 nor v2c.
type versionError int64

func (e versionError) Error() string { return fmt.Sprintf("%v %d", ErrVersion, int64(e)) }
func (e versionError) Unwrap() error { return ErrVersion }

// scanMessage walks a v1/v2c message with bounds checks on every element. The work
// is linear in len(b).
func scanMessage(b []byte) (*scanned, error) {
	version, body, err := scanVersion(b)
	if err != nil {
		return nil, err
	}
	s := &scanned{version: version}
	if version != wireV1 && version != wireV2c {
		return nil, versionError(version)
	}
	comm, body, err := readTyped(body, tagOctetStr, "community")
	if err != nil {
		return nil, err
	}
	s.community = comm.contents
	if s.scannedPDU, err = scanPDU(body); err != nil {
		return nil, err
	}
	return s, nil
}

// scanPDU walks a PDU that fills b.
func scanPDU(b []byte) (scannedPDU, error) {
	var s scannedPDU
	pdu, rest, err := readTLV(b)
	if err != nil {
		return s, fmt.Errorf("pdu: %w", err)
	}
	if len(rest) != 0 {
		return s, fmt.Errorf("%d octets after the pdu", len(rest))
	}
	if pdu.tag < byte(gosnmp.GetRequest) || pdu.tag > byte(gosnmp.Report) {
		return s, fmt.Errorf("pdu tag %#02x", pdu.tag)
	}
	s.pdu = pdu.tag
	p := pdu.contents
	if s.requestID, p, err = readInteger(p, "request-id"); err != nil {
		return s, err
	}
	if s.requestID < math.MinInt32 || s.requestID > math.MaxInt32 {
		return s, fmt.Errorf("request-id %d out of Integer32 range", s.requestID)
	}
	if s.f2, p, err = readInteger(p, "error-status"); err != nil {
		return s, err
	}
	if s.f3, p, err = readInteger(p, "error-index"); err != nil {
		return s, err
	}
	vbl, rest, err := readTyped(p, tagSequence, "variable-bindings")
	if err != nil {
		return s, err
	}
	if len(rest) != 0 {
		return s, fmt.Errorf("%d octets after the variable-bindings", len(rest))
	}
	for p = vbl.contents; len(p) > 0; {
		var vb tlv
		if vb, p, err = readTyped(p, tagSequence, "varbind"); err != nil {
			return s, err
		}
		name, q, err := readTyped(vb.contents, tagOID, "varbind name")
		if err != nil {
			return s, err
		}
		if err := checkOID(name.contents); err != nil {
			return s, fmt.Errorf("varbind name: %w", err)
		}
		value, q, err := readTLV(q)
		if err != nil {
			return s, fmt.Errorf("varbind value: %w", err)
		}
		if len(q) != 0 {
			return s, fmt.Errorf("%d octets after a varbind value", len(q))
		}
		s.varbinds = append(s.varbinds, rawVarbind{name: name.contents, value: value})
	}
	return s, nil
}

// varbind is one decoded variable binding of a request.
type varbind struct {
	oid   oid
	typ   gosnmp.Asn1BER
	value any
	raw   []byte // the value element as received
}

// pdu returns the binding as gosnmp encodes it, for echoing it in a response.
func (v varbind) pdu() gosnmp.SnmpPDU {
	return gosnmp.SnmpPDU{Name: v.oid.String(), Type: v.typ, Value: v.value}
}

// message is a decoded v1/v2c request.
type message struct {
	version   gosnmp.SnmpVersion
	community string
	pdu       gosnmp.PDUType
	requestID int32
	// nonRepeaters and maxRepetitions are the GetBulkRequest fields as received.
	nonRepeaters, maxRepetitions int64
	vars                         []varbind
}

// parseMessage decodes a v1/v2c message. Errors wrap ErrVersion (as a versionError)
// or ErrMalformed.
func parseMessage(b []byte) (*message, error) {
	s, err := scanMessage(b)
	if errors.Is(err, ErrVersion) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	m := &message{
		version:   gosnmp.SnmpVersion(s.version),
		community: string(s.community),
		pdu:       gosnmp.PDUType(s.pdu),
		requestID: int32(s.requestID),
	}
	if m.pdu == gosnmp.GetBulkRequest {
		m.nonRepeaters, m.maxRepetitions = s.f2, s.f3
	}
	p, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(p.Variables) != len(s.varbinds) || p.Community != m.community || byte(p.PDUType) != s.pdu {
		return nil, fmt.Errorf("%w: decoders disagree", ErrMalformed)
	}
	m.vars = make([]varbind, len(s.varbinds))
	for i, raw := range s.varbinds {
		d := p.Variables[i]
		o, err := parseOID(d.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: varbind %d name: %w", ErrMalformed, i+1, err)
		}
		value, err := checkValue(raw.value, d)
		if err != nil {
			return nil, fmt.Errorf("%w: varbind %d value: %w", ErrMalformed, i+1, err)
		}
		m.vars[i] = varbind{oid: o, typ: d.Type, value: value, raw: raw.value.raw}
	}
	return m, nil
}

// decode runs gosnmp's decoder. It is fed only messages the scanner accepted, but
// it is third-party code parsing hostile input: a panic is turned into an error.
func decode(b []byte) (p *gosnmp.SnmpPacket, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("gosnmp decoder panic: %v", r)
		}
	}()
	dec := gosnmp.GoSNMP{Transport: "udp", MaxOids: gosnmp.MaxOids}
	return dec.SnmpDecodePacket(b)
}

// checkValue accepts the value syntaxes an agent parses (RFC 3416 ObjectSyntax, NULL
// and the three exceptions) when gosnmp decoded them without loss, so that they can
// be echoed in a response exactly. It returns the value to echo.
func checkValue(raw tlv, d gosnmp.SnmpPDU) (any, error) {
	want := gosnmp.Asn1BER(raw.tag)
	switch want {
	case gosnmp.Null, gosnmp.NoSuchObject, gosnmp.NoSuchInstance, gosnmp.EndOfMibView:
		if len(raw.contents) != 0 {
			return nil, fmt.Errorf("%v with %d content octets", want, len(raw.contents))
		}
	case gosnmp.Integer:
		v, ok := d.Value.(int)
		if !ok || v < math.MinInt32 || v > math.MaxInt32 {
			return nil, errors.New("INTEGER out of Integer32 range")
		}
	case gosnmp.Counter32, gosnmp.Gauge32, gosnmp.TimeTicks, gosnmp.Uinteger32:
		var v uint64
		switch x := d.Value.(type) {
		case uint:
			v = uint64(x)
		case uint32:
			v = uint64(x)
		default:
			return nil, fmt.Errorf("undecodable %v", want)
		}
		if v > math.MaxUint32 || len(raw.contents) == 0 {
			return nil, fmt.Errorf("%v out of range", want)
		}
	case gosnmp.IPAddress:
		if len(raw.contents) != 4 {
			return nil, fmt.Errorf("IpAddress of %d octets", len(raw.contents))
		}
		// gosnmp decodes it to a dotted string; echo the octets.
		d.Value = raw.contents
	case gosnmp.Counter64:
		if _, ok := d.Value.(uint64); !ok || len(raw.contents) == 0 {
			return nil, errors.New("undecodable Counter64")
		}
	case gosnmp.ObjectIdentifier:
		if err := checkOID(raw.contents); err != nil {
			return nil, err
		}
	case gosnmp.OctetString, gosnmp.Opaque:
	default:
		return nil, fmt.Errorf("value tag %#02x", raw.tag)
	}
	if d.Type != want && !(want == gosnmp.Opaque && (d.Type == gosnmp.OpaqueFloat || d.Type == gosnmp.OpaqueDouble)) {
		return nil, fmt.Errorf("decoded as %v, sent as %v", d.Type, want)
	}
	return d.Value, nil
}

// marshalResponse encodes a Response-PDU to m.
func marshalResponse(m *message, status gosnmp.SNMPError, index int, vars []gosnmp.SnmpPDU) ([]byte, error) {
	if index < 0 || index > math.MaxUint8 {
		return nil, fmt.Errorf("snmp: error-index %d", index)
	}
	p := &gosnmp.SnmpPacket{
		Version:    m.version,
		Community:  m.community,
		PDUType:    gosnmp.GetResponse,
		RequestID:  uint32(m.requestID),
		Error:      status,
		ErrorIndex: uint8(index),
		Variables:  vars,
	}
	b, err := p.MarshalMsg()
	if err != nil {
		return nil, fmt.Errorf("snmp: encode response: %w", err)
	}
	if m.requestID < 0 {
		if b, err = patchRequestID(b, m.requestID); err != nil {
			return nil, fmt.Errorf("snmp: encode response: %w", err)
		}
	}
	return b, nil
}

// patchRequestID replaces the request-id of an encoded v1/v2c message by id, encoded
// as the signed Integer32 it is.
func patchRequestID(b []byte, id int32) ([]byte, error) {
	return rewrite(b, []int{2, 0}, appendInteger(nil, int64(id))) // message.data.request-id
}

// rewrite replaces the element at path in the BER encoding b (child indexes from the
// outermost element down) by repl, and re-encodes the lengths that enclose it.
func rewrite(b []byte, path []int, repl []byte) ([]byte, error) {
	t, rest, err := readTLV(b)
	if err != nil {
		return nil, err
	}
	if len(path) == 0 {
		return append(slices.Clip(repl), rest...), nil
	}
	c := t.contents
	for i := 0; len(c) > 0; i++ {
		child, after, err := readTLV(c)
		if err != nil {
			return nil, err
		}
		if i < path[0] {
			c = after
			continue
		}
		nc, err := rewrite(child.raw, path[1:], repl)
		if err != nil {
			return nil, err
		}
		contents := slices.Concat(t.contents[:len(t.contents)-len(c)], nc, after)
		return append(appendTLV(make([]byte, 0, len(b)), t.tag, contents), rest...), nil
	}
	return nil, fmt.Errorf("no element %d in %#02x", path[0], t.tag)
}

// SNMPv3 (RFC 3412 §6, RFC 3414 §2.4):
//
//	SNMPv3Message ::= SEQUENCE { msgVersion INTEGER, msgGlobalData HeaderData,
//	                  msgSecurityParameters OCTET STRING, msgData ScopedPduData }
//	HeaderData    ::= SEQUENCE { msgID INTEGER, msgMaxSize INTEGER,
//	                  msgFlags OCTET STRING (SIZE(1)), msgSecurityModel INTEGER }
//	UsmSecurityParameters ::= SEQUENCE { msgAuthoritativeEngineID OCTET STRING,
//	                  msgAuthoritativeEngineBoots INTEGER, msgAuthoritativeEngineTime INTEGER,
//	                  msgUserName OCTET STRING (SIZE(0..32)),
//	                  msgAuthenticationParameters OCTET STRING, msgPrivacyParameters OCTET STRING }
//	ScopedPduData ::= CHOICE { plaintext ScopedPDU, encryptedPDU OCTET STRING }
//	ScopedPDU     ::= SEQUENCE { contextEngineID OCTET STRING, contextName OCTET STRING, data PDU }
//
// The agent has no USM users, so it never needs the keys: it reads the header and
// the USM parameters (and the scoped PDU when it is not encrypted) and answers with
// a Report. gosnmp's v3 decoder needs a configured user, so the scanner reads v3
// messages alone; the Report is encoded by gosnmp.

// msgFlags bits and the User-based Security Model's number.
const (
	flagAuth       = 0x01
	flagPriv       = 0x02
	flagReportable = 0x04
	securityUSM    = 3
	// maxEngineID and maxUserName are the sizes of SnmpEngineID and msgUserName.
	maxEngineID = 32
	maxUserName = 32
)

// v3Message is what the scanner reads from an SNMPv3 message.
type v3Message struct {
	msgID, maxSize int64
	flags          byte
	model          int64
	// USM parameters, read when model is securityUSM.
	engineID, user []byte
	boots, time    int64
	// The scoped PDU, unless it is encrypted.
	encrypted   bool
	contextName []byte
	pdu         scannedPDU
}

// scanV3 walks an SNMPv3 message. A security model other than USM is returned
// without its security parameters and data read.
func scanV3(b []byte) (*v3Message, error) {
	version, body, err := scanVersion(b)
	if err != nil {
		return nil, err
	}
	if version != wireV3 {
		return nil, versionError(version)
	}
	m := &v3Message{}
	hdr, body, err := readTyped(body, tagSequence, "msgGlobalData")
	if err != nil {
		return nil, err
	}
	h := hdr.contents
	ints := []struct {
		v        *int64
		what     string
		min, max int64
	}{{&m.msgID, "msgID", 0, math.MaxInt32}, {&m.maxSize, "msgMaxSize", minMessageSize, math.MaxInt32}}
	for _, f := range ints {
		if *f.v, h, err = readInteger(h, f.what); err != nil {
			return nil, err
		}
		if *f.v < f.min || *f.v > f.max {
			return nil, fmt.Errorf("%s %d out of range", f.what, *f.v)
		}
	}
	flags, h, err := readTyped(h, tagOctetStr, "msgFlags")
	if err != nil {
		return nil, err
	}
	if len(flags.contents) != 1 {
		return nil, fmt.Errorf("msgFlags of %d octets", len(flags.contents))
	}
	m.flags = flags.contents[0]
	if m.model, h, err = readInteger(h, "msgSecurityModel"); err != nil {
		return nil, err
	}
	if m.model < 1 || m.model > math.MaxInt32 || len(h) != 0 {
		return nil, fmt.Errorf("msgSecurityModel %d", m.model)
	}
	sp, body, err := readTyped(body, tagOctetStr, "msgSecurityParameters")
	if err != nil {
		return nil, err
	}
	data, rest, err := readTLV(body)
	if err != nil {
		return nil, fmt.Errorf("msgData: %w", err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d octets after msgData", len(rest))
	}
	if m.model != securityUSM {
		return m, nil
	}
	if err := m.scanUSM(sp.contents); err != nil {
		return nil, err
	}
	if m.flags&flagPriv != 0 {
		if data.tag != tagOctetStr {
			return nil, fmt.Errorf("encryptedPDU tag %#02x", data.tag)
		}
		m.encrypted = true
		return m, nil
	}
	if data.tag != tagSequence {
		return nil, fmt.Errorf("ScopedPDU tag %#02x", data.tag)
	}
	ctxEngine, p, err := readTyped(data.contents, tagOctetStr, "contextEngineID")
	if err != nil {
		return nil, err
	}
	ctxName, p, err := readTyped(p, tagOctetStr, "contextName")
	if err != nil {
		return nil, err
	}
	if len(ctxEngine.contents) > maxEngineID || len(ctxName.contents) > maxUserName {
		return nil, errors.New("contextEngineID or contextName too long")
	}
	m.contextName = ctxName.contents
	if m.pdu, err = scanPDU(p); err != nil {
		return nil, err
	}
	return m, nil
}

// scanUSM reads UsmSecurityParameters.
func (m *v3Message) scanUSM(b []byte) error {
	seq, rest, err := readTyped(b, tagSequence, "UsmSecurityParameters")
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d octets after UsmSecurityParameters", len(rest))
	}
	p := seq.contents
	engine, p, err := readTyped(p, tagOctetStr, "msgAuthoritativeEngineID")
	if err != nil {
		return err
	}
	for _, v := range []*int64{&m.boots, &m.time} {
		if *v, p, err = readInteger(p, "msgAuthoritativeEngineBoots/Time"); err != nil {
			return err
		}
		if *v < 0 || *v > math.MaxInt32 {
			return fmt.Errorf("engine boots/time %d out of range", *v)
		}
	}
	user, p, err := readTyped(p, tagOctetStr, "msgUserName")
	if err != nil {
		return err
	}
	for _, what := range []string{"msgAuthenticationParameters", "msgPrivacyParameters"} {
		if _, p, err = readTyped(p, tagOctetStr, what); err != nil {
			return err
		}
	}
	if len(p) != 0 {
		return fmt.Errorf("%d octets after msgPrivacyParameters", len(p))
	}
	if len(engine.contents) > maxEngineID || len(user.contents) > maxUserName {
		return errors.New("engine ID or user name too long")
	}
	m.engineID, m.user = engine.contents, user.contents
	return nil
}

// v3Report is a USM Report (RFC 3414 §3.2): the counter that refused a message.
type v3Report struct {
	msgID, requestID int64
	maxSize          int
	engineID         []byte
	boots, time      uint32
	user             []byte
	contextName      []byte
	counter          string // OID of the usmStats counter
	count            uint32
}

// marshalReport encodes a Report at noAuthNoPriv with gosnmp. gosnmp encodes msgID
// in four octets where agents use the fewest (and nmap's service fingerprints expect
// them), and request-id as unsigned: both are re-encoded.
func marshalReport(r v3Report) ([]byte, error) {
	p := &gosnmp.SnmpPacket{
		Version:       gosnmp.Version3,
		MsgFlags:      gosnmp.NoAuthNoPriv,
		SecurityModel: gosnmp.UserSecurityModel,
		SecurityParameters: &gosnmp.UsmSecurityParameters{
			AuthoritativeEngineID:    string(r.engineID),
			AuthoritativeEngineBoots: r.boots,
			AuthoritativeEngineTime:  r.time,
			UserName:                 string(r.user),
		},
		ContextEngineID: string(r.engineID),
		ContextName:     string(r.contextName),
		PDUType:         gosnmp.Report,
		MsgID:           uint32(r.msgID),
		MsgMaxSize:      uint32(r.maxSize),
		RequestID:       uint32(r.requestID),
		Variables:       []gosnmp.SnmpPDU{{Name: r.counter, Type: gosnmp.Counter32, Value: r.count}},
	}
	b, err := p.MarshalMsg()
	if err != nil {
		return nil, fmt.Errorf("snmp: encode report: %w", err)
	}
	if b, err = rewrite(b, []int{1, 0}, appendInteger(nil, r.msgID)); err != nil { // msgGlobalData.msgID
		return nil, fmt.Errorf("snmp: encode report: %w", err)
	}
	if r.requestID < 0 {
		if b, err = rewrite(b, []int{3, 2, 0}, appendInteger(nil, r.requestID)); err != nil { // msgData.data.request-id
			return nil, fmt.Errorf("snmp: encode report: %w", err)
		}
	}
	return b, nil
}

// formatVersion is the version as users write it.
func formatVersion(v int64) string {
	switch v {
	case wireV1:
		return "1"
	case wireV2c:
		return "2c"
	case wireV3:
		return "3"
	}
	return strconv.FormatInt(v, 10)
}
