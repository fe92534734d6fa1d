package bacnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the BACnet/IP codec: pure functions over []byte, no I/O. Every read is
// bounds-checked; a malformed message returns one of the sentinel errors below (wrapped
// with the detail), never panics.

// Sentinel errors of the codec. Errors of service-request parsers map to BACnet Reject
// reasons through rejectReason.
var (
	ErrShort        = errors.New("bacnet: message too short")
	ErrBVLCType     = errors.New("bacnet: BVLC type is not BACnet/IP (0x81)")
	ErrBVLCLength   = errors.New("bacnet: BVLC length does not match the datagram")
	ErrNPDUVersion  = errors.New("bacnet: NPDU protocol version is not 1")
	ErrNPDUAddress  = errors.New("bacnet: invalid NPDU network address")
	ErrTag          = errors.New("bacnet: invalid tag")
	ErrMissing      = errors.New("bacnet: missing required parameter")
	ErrTrailing     = errors.New("bacnet: unexpected data after the service request")
	ErrDataType     = errors.New("bacnet: invalid parameter data type")
	ErrRange        = errors.New("bacnet: parameter out of range")
	ErrCharacterSet = errors.New("bacnet: character set not supported")
)

// BVLC function codes (ASHRAE 135 Annex J.2).
const (
	BVLCResult                        byte = 0x00
	BVLCWriteBDT                      byte = 0x01
	BVLCReadBDT                       byte = 0x02
	BVLCReadBDTAck                    byte = 0x03
	BVLCForwardedNPDU                 byte = 0x04
	BVLCRegisterForeignDevice         byte = 0x05
	BVLCReadFDT                       byte = 0x06
	BVLCReadFDTAck                    byte = 0x07
	BVLCDeleteFDTEntry                byte = 0x08
	BVLCDistributeBroadcastToNet      byte = 0x09
	BVLCOriginalUnicastNPDU           byte = 0x0a
	BVLCOriginalBroadcastNPDU         byte = 0x0b
	BVLCSecureBVLL                    byte = 0x0c
	bvlcType                          byte = 0x81
	bvlcHeaderLen                          = 4
	bvlcMaxLen                             = 1497 + 4 + 6 // largest NPDU, header, forwarded origin
	resultWriteBDTNAK                      = 0x0010
	resultReadBDTNAK                       = 0x0020
	resultRegisterForeignDeviceNAK         = 0x0030
	resultReadFDTNAK                       = 0x0040
	resultDeleteFDTEntryNAK                = 0x0050
	resultDistributeBroadcastToNetNAK      = 0x0060
)

// BVLC is one BACnet Virtual Link Control message.
type BVLC struct {
	Function byte
	// Origin is the B/IP address (IPv4 address and UDP port) of the originating device
	// of a Forwarded-NPDU.
	Origin [6]byte
	// Payload is what follows the header (and the origin of a Forwarded-NPDU).
	Payload []byte
}

// ParseBVLC parses a BACnet/IP datagram. The BVLC length must equal the datagram length.
func ParseBVLC(b []byte) (BVLC, error) {
	if len(b) < bvlcHeaderLen {
		return BVLC{}, fmt.Errorf("%w: %d bytes of BVLC header", ErrShort, len(b))
	}
	if len(b) > bvlcMaxLen {
		return BVLC{}, fmt.Errorf("%w: %d bytes, more than BACnet/IP carries", ErrBVLCLength, len(b))
	}
	if b[0] != bvlcType {
		return BVLC{}, fmt.Errorf("%w: type 0x%02x", ErrBVLCType, b[0])
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n != len(b) || n < bvlcHeaderLen {
		return BVLC{}, fmt.Errorf("%w: length field %d, datagram %d", ErrBVLCLength, n, len(b))
	}
	v := BVLC{Function: b[1], Payload: b[bvlcHeaderLen:]}
	if v.Function == BVLCForwardedNPDU {
		if len(v.Payload) < 6 {
			return BVLC{}, fmt.Errorf("%w: forwarded-NPDU without origin address", ErrShort)
		}
		copy(v.Origin[:], v.Payload[:6])
		v.Payload = v.Payload[6:]
	}
	return v, nil
}

// AppendBVLC appends a BVLC message with function fn around payload.
func AppendBVLC(dst []byte, fn byte, payload []byte) []byte {
	dst = append(dst, bvlcType, fn)
	dst = binary.BigEndian.AppendUint16(dst, uint16(bvlcHeaderLen+len(payload)))
	return append(dst, payload...)
}

// AppendBVLCResult appends a BVLC-Result message with the given result code.
func AppendBVLCResult(dst []byte, code uint16) []byte {
	return AppendBVLC(dst, BVLCResult, binary.BigEndian.AppendUint16(nil, code))
}

// NPDU control bits (ASHRAE 135 clause 6.2.2).
const (
	npduNetworkMessage = 0x80
	npduDestination    = 0x20
	npduSource         = 0x08
	npduExpectReply    = 0x04
	npduPriorityMask   = 0x03
	npduReservedMask   = 0x50
	// GlobalBroadcastNetwork is the DNET of a global broadcast.
	GlobalBroadcastNetwork = 0xffff
)

// Network-layer message types (ASHRAE 135 clause 6.2.4) that are named in events.
var networkMessageNames = map[byte]string{
	0x00: "who_is_router_to_network",
	0x01: "i_am_router_to_network",
	0x02: "i_could_be_router_to_network",
	0x03: "reject_message_to_network",
	0x04: "router_busy_to_network",
	0x05: "router_available_to_network",
	0x06: "initialize_routing_table",
	0x07: "initialize_routing_table_ack",
	0x08: "establish_connection_to_network",
	0x09: "disconnect_connection_to_network",
	0x0a: "challenge_request",
	0x0b: "security_payload",
	0x0c: "security_response",
	0x0d: "request_key_update",
	0x0e: "update_key_set",
	0x0f: "update_distribution_key",
	0x10: "request_master_key",
	0x11: "set_master_key",
	0x12: "what_is_network_number",
	0x13: "network_number_is",
}

// NPDU is the network-layer header of a BACnet message.
type NPDU struct {
	// Priority is the network priority (0 normal .. 3 life safety).
	Priority      byte
	ExpectReply   bool
	HasDest       bool
	DNET          uint16
	DADR          []byte // empty: broadcast on DNET
	HopCount      byte
	HasSource     bool
	SNET          uint16
	SADR          []byte
	NetworkLayer  bool
	MessageType   byte
	VendorID      uint16 // for proprietary network messages (type >= 0x80)
	NetworkDetail []byte // the network message's content
}

// ParseNPDU parses an NPDU and returns it with the APDU that follows (empty for a
// network-layer message, whose content is in NetworkDetail).
func ParseNPDU(b []byte) (NPDU, []byte, error) {
	var n NPDU
	if len(b) < 2 {
		return n, nil, fmt.Errorf("%w: %d bytes of NPDU", ErrShort, len(b))
	}
	if b[0] != 0x01 {
		return n, nil, fmt.Errorf("%w: version %d", ErrNPDUVersion, b[0])
	}
	ctl := b[1]
	n.Priority = ctl & npduPriorityMask
	n.ExpectReply = ctl&npduExpectReply != 0
	n.NetworkLayer = ctl&npduNetworkMessage != 0
	off := 2
	if ctl&npduDestination != 0 {
		if len(b) < off+3 {
			return n, nil, fmt.Errorf("%w: NPDU destination", ErrShort)
		}
		n.HasDest = true
		n.DNET = binary.BigEndian.Uint16(b[off:])
		dlen := int(b[off+2])
		off += 3
		if len(b) < off+dlen {
			return n, nil, fmt.Errorf("%w: NPDU DADR", ErrShort)
		}
		if n.DNET == 0 {
			return n, nil, fmt.Errorf("%w: DNET 0", ErrNPDUAddress)
		}
		n.DADR = b[off : off+dlen]
		off += dlen
	}
	if ctl&npduSource != 0 {
		if len(b) < off+3 {
			return n, nil, fmt.Errorf("%w: NPDU source", ErrShort)
		}
		n.HasSource = true
		n.SNET = binary.BigEndian.Uint16(b[off:])
		slen := int(b[off+2])
		off += 3
		// SNET may not be a broadcast network and SADR may not be empty (6.2.2).
		if n.SNET == 0 || n.SNET == GlobalBroadcastNetwork || slen == 0 {
			return n, nil, fmt.Errorf("%w: SNET %d SLEN %d", ErrNPDUAddress, n.SNET, slen)
		}
		if len(b) < off+slen {
			return n, nil, fmt.Errorf("%w: NPDU SADR", ErrShort)
		}
		n.SADR = b[off : off+slen]
		off += slen
	}
	if n.HasDest {
		if len(b) < off+1 {
			return n, nil, fmt.Errorf("%w: NPDU hop count", ErrShort)
		}
		n.HopCount = b[off]
		off++
	}
	if n.NetworkLayer {
		if len(b) < off+1 {
			return n, nil, fmt.Errorf("%w: network message type", ErrShort)
		}
		n.MessageType = b[off]
		off++
		if n.MessageType >= 0x80 {
			if len(b) < off+2 {
				return n, nil, fmt.Errorf("%w: network message vendor id", ErrShort)
			}
			n.VendorID = binary.BigEndian.Uint16(b[off:])
			off += 2
		}
		n.NetworkDetail = b[off:]
		return n, nil, nil
	}
	return n, b[off:], nil
}

// AppendNPDU appends the NPDU header n (an application-layer NPDU unless
// n.NetworkLayer is set).
func AppendNPDU(dst []byte, n NPDU) []byte {
	ctl := n.Priority & npduPriorityMask
	if n.ExpectReply {
		ctl |= npduExpectReply
	}
	if n.HasDest {
		ctl |= npduDestination
	}
	if n.HasSource {
		ctl |= npduSource
	}
	if n.NetworkLayer {
		ctl |= npduNetworkMessage
	}
	dst = append(dst, 0x01, ctl)
	if n.HasDest {
		dst = binary.BigEndian.AppendUint16(dst, n.DNET)
		dst = append(dst, byte(len(n.DADR)))
		dst = append(dst, n.DADR...)
	}
	if n.HasSource {
		dst = binary.BigEndian.AppendUint16(dst, n.SNET)
		dst = append(dst, byte(len(n.SADR)))
		dst = append(dst, n.SADR...)
	}
	if n.HasDest {
		dst = append(dst, n.HopCount)
	}
	if n.NetworkLayer {
		dst = append(dst, n.MessageType)
		if n.MessageType >= 0x80 {
			dst = binary.BigEndian.AppendUint16(dst, n.VendorID)
		}
	}
	return dst
}

// APDU types (high nibble of the first APDU octet).
const (
	PDUConfirmedRequest   byte = 0
	PDUUnconfirmedRequest byte = 1
	PDUSimpleACK          byte = 2
	PDUComplexACK         byte = 3
	PDUSegmentACK         byte = 4
	PDUError              byte = 5
	PDUReject             byte = 6
	PDUAbort              byte = 7
)

// Confirmed and unconfirmed service choices used by the emulator.
const (
	ServiceReadProperty               byte = 12
	ServiceReadPropertyMultiple       byte = 14
	ServiceWriteProperty              byte = 15
	ServiceDeviceCommunicationControl byte = 17
	ServiceReinitializeDevice         byte = 20

	ServiceIAm                      byte = 0
	ServiceIHave                    byte = 1
	ServiceTimeSynchronization      byte = 6
	ServiceWhoHas                   byte = 7
	ServiceWhoIs                    byte = 8
	ServiceUTCTimeSynchronization   byte = 9
	maxAPDUHeaderConfirmed               = 4
	maxAPDUHeaderConfirmedSegmented      = 6
	apduTypeShift                        = 4
	apduSegmented                   byte = 0x08
	apduMoreFollows                 byte = 0x04
	apduSegmentedResponseAccepted   byte = 0x02
	apduServer                      byte = 0x01
)

// maxAPDUSizes maps the 4-bit max-APDU-length-accepted code to octets.
var maxAPDUSizes = [16]int{50, 128, 206, 480, 1024, 1476}

// APDU is the application-layer header of a request.
type APDU struct {
	Type byte
	// Flags is the low nibble of the first octet (SEG, MOR, SA / SRV, NAK).
	Flags byte
	// MaxSegments and MaxAPDU are the raw codes of a confirmed request's second octet;
	// MaxResponse is MaxAPDU in octets (0 for a reserved code).
	MaxSegments byte
	MaxAPDU     byte
	MaxResponse int
	InvokeID    byte
	Sequence    byte
	Window      byte
	Service     byte
	// Body is the service request after the service choice.
	Body []byte
}

// Segmented reports whether a confirmed request is a segment of a segmented request.
func (a APDU) Segmented() bool { return a.Flags&apduSegmented != 0 }

// ParseAPDU parses the header of an APDU. For PDU types the emulator does not serve
// (ACKs, errors, aborts sent to it) only Type, Flags and Body are set.
func ParseAPDU(b []byte) (APDU, error) {
	if len(b) < 1 {
		return APDU{}, fmt.Errorf("%w: empty APDU", ErrShort)
	}
	a := APDU{Type: b[0] >> apduTypeShift, Flags: b[0] & 0x0f}
	switch a.Type {
	case PDUConfirmedRequest:
		hdr := maxAPDUHeaderConfirmed
		if a.Segmented() {
			hdr = maxAPDUHeaderConfirmedSegmented
		}
		if len(b) < hdr {
			return a, fmt.Errorf("%w: %d bytes of confirmed request header", ErrShort, len(b))
		}
		a.MaxSegments = (b[1] >> 4) & 0x07
		a.MaxAPDU = b[1] & 0x0f
		a.MaxResponse = maxAPDUSizes[a.MaxAPDU]
		a.InvokeID = b[2]
		if a.Segmented() {
			a.Sequence, a.Window = b[3], b[4]
		}
		a.Service = b[hdr-1]
		a.Body = b[hdr:]
	case PDUUnconfirmedRequest:
		if len(b) < 2 {
			return a, fmt.Errorf("%w: unconfirmed request without service choice", ErrShort)
		}
		a.Service = b[1]
		a.Body = b[2:]
	default:
		a.Body = b[1:]
	}
	return a, nil
}

// AppendSimpleACK appends a BACnet-SimpleACK-PDU.
func AppendSimpleACK(dst []byte, invokeID, service byte) []byte {
	return append(dst, PDUSimpleACK<<apduTypeShift, invokeID, service)
}

// AppendComplexACKHeader appends the header of an unsegmented BACnet-ComplexACK-PDU;
// the service ACK follows.
func AppendComplexACKHeader(dst []byte, invokeID, service byte) []byte {
	return append(dst, PDUComplexACK<<apduTypeShift, invokeID, service)
}

// AppendErrorPDU appends a BACnet-Error-PDU with an Error (class, code).
func AppendErrorPDU(dst []byte, invokeID, service byte, class, code uint32) []byte {
	dst = append(dst, PDUError<<apduTypeShift, invokeID, service)
	dst = AppendEnumerated(dst, class)
	return AppendEnumerated(dst, code)
}

// AppendRejectPDU appends a BACnet-Reject-PDU.
func AppendRejectPDU(dst []byte, invokeID, reason byte) []byte {
	return append(dst, PDUReject<<apduTypeShift, invokeID, reason)
}

// AppendAbortPDU appends a BACnet-Abort-PDU sent by the server.
func AppendAbortPDU(dst []byte, invokeID, reason byte) []byte {
	return append(dst, PDUAbort<<apduTypeShift|apduServer, invokeID, reason)
}

// Application tag numbers (ASHRAE 135 clause 20.2.1.4).
const (
	TagNull            uint8 = 0
	TagBoolean         uint8 = 1
	TagUnsigned        uint8 = 2
	TagSigned          uint8 = 3
	TagReal            uint8 = 4
	TagDouble          uint8 = 5
	TagOctetString     uint8 = 6
	TagCharacterString uint8 = 7
	TagBitString       uint8 = 8
	TagEnumerated      uint8 = 9
	TagDate            uint8 = 10
	TagTime            uint8 = 11
	TagObjectID        uint8 = 12
)

// Tag is one decoded tag header.
type Tag struct {
	Number  uint8
	Context bool
	Opening bool
	Closing bool
	// Length is the length of the content that follows the header. For an application
	// Boolean it is 0 and Value holds the boolean.
	Length int
	Value  byte
	// Header is the size of the tag header in octets.
	Header int
}

// ParseTag decodes the tag at the start of b and checks that its content fits in b.
func ParseTag(b []byte) (Tag, error) {
	if len(b) < 1 {
		return Tag{}, fmt.Errorf("%w: no tag", ErrMissing)
	}
	t := Tag{Number: b[0] >> 4, Context: b[0]&0x08 != 0, Header: 1}
	lvt := b[0] & 0x07
	if t.Number == 0x0f {
		if len(b) < 2 {
			return Tag{}, fmt.Errorf("%w: extended tag number", ErrTag)
		}
		if b[1] == 0xff {
			return Tag{}, fmt.Errorf("%w: reserved tag number 255", ErrTag)
		}
		t.Number = b[1]
		t.Header = 2
	}
	switch {
	case t.Context && lvt == 6:
		t.Opening = true
		return t, nil
	case t.Context && lvt == 7:
		t.Closing = true
		return t, nil
	case !t.Context && t.Number == TagBoolean:
		if lvt > 1 {
			return Tag{}, fmt.Errorf("%w: boolean value %d", ErrTag, lvt)
		}
		t.Value = lvt
		return t, nil
	case !t.Context && (lvt == 6 || lvt == 7):
		return Tag{}, fmt.Errorf("%w: application tag %d with opening/closing LVT", ErrTag, t.Number)
	case lvt < 5:
		t.Length = int(lvt)
	default: // extended length
		if len(b) < t.Header+1 {
			return Tag{}, fmt.Errorf("%w: extended length", ErrTag)
		}
		l := int(b[t.Header])
		t.Header++
		switch l {
		case 254:
			if len(b) < t.Header+2 {
				return Tag{}, fmt.Errorf("%w: 16-bit length", ErrTag)
			}
			l = int(binary.BigEndian.Uint16(b[t.Header:]))
			t.Header += 2
		case 255:
			if len(b) < t.Header+4 {
				return Tag{}, fmt.Errorf("%w: 32-bit length", ErrTag)
			}
			l32 := binary.BigEndian.Uint32(b[t.Header:])
			if l32 > math.MaxInt32 {
				return Tag{}, fmt.Errorf("%w: length %d", ErrTag, l32)
			}
			l = int(l32)
			t.Header += 4
		}
		t.Length = l
	}
	if len(b)-t.Header < t.Length {
		return Tag{}, fmt.Errorf("%w: content of %d bytes, %d left", ErrTag, t.Length, len(b)-t.Header)
	}
	return t, nil
}

// decoder walks the tagged encoding of a service request.
type decoder struct {
	b   []byte
	off int
}

func (d *decoder) rest() []byte { return d.b[d.off:] }
func (d *decoder) empty() bool  { return d.off >= len(d.b) }

// peek decodes the next tag without consuming it.
func (d *decoder) peek() (Tag, error) { return ParseTag(d.rest()) }

// isContext reports whether the next tag is context tag n of the given kind.
func (d *decoder) isContext(n uint8, opening, closing bool) bool {
	t, err := d.peek()
	return err == nil && t.Context && t.Number == n && t.Opening == opening && t.Closing == closing
}

// context consumes primitive context tag n and returns its content. ok is false, and
// nothing is consumed, when the next tag is something else.
func (d *decoder) context(n uint8) (content []byte, ok bool, err error) {
	if d.empty() {
		return nil, false, nil
	}
	t, err := d.peek()
	if err != nil {
		return nil, false, err
	}
	if !t.Context || t.Number != n || t.Opening || t.Closing {
		return nil, false, nil
	}
	start := d.off + t.Header
	d.off = start + t.Length
	return d.b[start:d.off], true, nil
}

// require consumes primitive context tag n, which must be next.
func (d *decoder) require(n uint8) ([]byte, error) {
	c, ok, err := d.context(n)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: context tag %d", ErrMissing, n)
	}
	return c, nil
}

// open consumes opening tag n if it is next.
func (d *decoder) open(n uint8) bool {
	if !d.isContext(n, true, false) {
		return false
	}
	t, _ := d.peek()
	d.off += t.Header
	return true
}

// constructed consumes opening tag n, the encoded data up to the matching closing tag
// n, and the closing tag; it returns the enclosed data.
func (d *decoder) constructed(n uint8) ([]byte, error) {
	if !d.open(n) {
		return nil, fmt.Errorf("%w: opening tag %d", ErrMissing, n)
	}
	start := d.off
	depth := 0
	for {
		t, err := d.peek()
		if err != nil {
			return nil, fmt.Errorf("%w: unterminated constructed value %d", ErrMissing, n)
		}
		switch {
		case t.Opening:
			depth++
		case t.Closing && depth == 0:
			if t.Number != n {
				return nil, fmt.Errorf("%w: closing tag %d for opening %d", ErrTag, t.Number, n)
			}
			data := d.b[start:d.off]
			d.off += t.Header
			return data, nil
		case t.Closing:
			depth--
		}
		d.off += t.Header + t.Length
	}
}

// Value is one application-tagged primitive value.
type Value struct {
	Tag  uint8
	Data []byte // content; for a Boolean one octet 0 or 1
}

// ParseValue decodes one application-tagged primitive value at the start of b and
// returns it with the number of bytes it took.
func ParseValue(b []byte) (Value, int, error) {
	t, err := ParseTag(b)
	if err != nil {
		return Value{}, 0, err
	}
	if t.Context || t.Opening || t.Closing {
		return Value{}, 0, fmt.Errorf("%w: expected an application tag", ErrDataType)
	}
	if t.Number == TagBoolean {
		return Value{Tag: TagBoolean, Data: []byte{t.Value}}, t.Header, nil
	}
	return Value{Tag: t.Number, Data: b[t.Header : t.Header+t.Length]}, t.Header + t.Length, nil
}

// DecodeUnsigned decodes the content of an Unsigned or Enumerated (1 to 4 octets).
func DecodeUnsigned(c []byte) (uint32, error) {
	if len(c) < 1 || len(c) > 4 {
		return 0, fmt.Errorf("%w: unsigned of %d octets", ErrRange, len(c))
	}
	var v uint32
	for _, x := range c {
		v = v<<8 | uint32(x)
	}
	return v, nil
}

// DecodeSigned decodes the content of a Signed (1 to 4 octets, two's complement).
func DecodeSigned(c []byte) (int32, error) {
	if len(c) < 1 || len(c) > 4 {
		return 0, fmt.Errorf("%w: signed of %d octets", ErrRange, len(c))
	}
	v := int32(int8(c[0]))
	for _, x := range c[1:] {
		v = v<<8 | int32(x)
	}
	return v, nil
}

// DecodeObjectID decodes a BACnetObjectIdentifier into object type and instance.
func DecodeObjectID(c []byte) (typ uint16, instance uint32, err error) {
	if len(c) != 4 {
		return 0, 0, fmt.Errorf("%w: object identifier of %d octets", ErrDataType, len(c))
	}
	v := binary.BigEndian.Uint32(c)
	return uint16(v >> 22), v & MaxInstance, nil
}

// DecodeCharacterString decodes a CharacterString (UTF-8, UCS-2 or ISO 8859-1).
func DecodeCharacterString(c []byte) (string, error) {
	if len(c) < 1 {
		return "", fmt.Errorf("%w: character string without character set", ErrDataType)
	}
	s := c[1:]
	switch c[0] {
	case 0: // ISO 10646 UTF-8
		if !utf8.Valid(s) {
			return "", fmt.Errorf("%w: invalid UTF-8", ErrDataType)
		}
		return string(s), nil
	case 4: // ISO 10646 UCS-2
		if len(s)%2 != 0 {
			return "", fmt.Errorf("%w: odd UCS-2 length", ErrDataType)
		}
		u := make([]uint16, len(s)/2)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(s[2*i:])
		}
		return string(utf16.Decode(u)), nil
	case 5: // ISO 8859-1
		r := make([]rune, len(s))
		for i, x := range s {
			r[i] = rune(x)
		}
		return string(r), nil
	}
	return "", fmt.Errorf("%w: character set %d", ErrCharacterSet, c[0])
}

// Real returns the value of a Real.
func (v Value) Real() (float32, error) {
	if v.Tag != TagReal || len(v.Data) != 4 {
		return 0, fmt.Errorf("%w: want Real, have tag %d", ErrDataType, v.Tag)
	}
	return math.Float32frombits(binary.BigEndian.Uint32(v.Data)), nil
}

// Enumerated returns the value of an Enumerated.
func (v Value) Enumerated() (uint32, error) {
	if v.Tag != TagEnumerated {
		return 0, fmt.Errorf("%w: want Enumerated, have tag %d", ErrDataType, v.Tag)
	}
	return DecodeUnsigned(v.Data)
}

// Boolean returns the value of a Boolean.
func (v Value) Boolean() (bool, error) {
	if v.Tag != TagBoolean || len(v.Data) != 1 {
		return false, fmt.Errorf("%w: want Boolean, have tag %d", ErrDataType, v.Tag)
	}
	return v.Data[0] != 0, nil
}

// Object identifiers.
const (
	// MaxInstance is the largest instance number; as a device instance it is the
	// wildcard meaning "the device that receives the request".
	MaxInstance uint32 = 0x3fffff
)

// ObjectID packs an object type and instance into a BACnetObjectIdentifier.
func ObjectID(typ uint16, instance uint32) uint32 {
	return uint32(typ)<<22 | instance&MaxInstance
}

// appendTag appends a tag header for content of length n.
func appendTag(dst []byte, number uint8, context bool, n int) []byte {
	first := byte(0)
	if context {
		first = 0x08
	}
	if number < 15 {
		first |= number << 4
	} else {
		first |= 0xf0
	}
	ext := number >= 15
	switch {
	case n < 5:
		dst = append(dst, first|byte(n))
		if ext {
			dst = append(dst, number)
		}
	default:
		dst = append(dst, first|5)
		if ext {
			dst = append(dst, number)
		}
		switch {
		case n < 254:
			dst = append(dst, byte(n))
		case n <= math.MaxUint16:
			dst = append(dst, 254)
			dst = binary.BigEndian.AppendUint16(dst, uint16(n))
		default:
			dst = append(dst, 255)
			dst = binary.BigEndian.AppendUint32(dst, uint32(n))
		}
	}
	return dst
}

func unsignedContent(v uint32) []byte {
	switch {
	case v < 1<<8:
		return []byte{byte(v)}
	case v < 1<<16:
		return binary.BigEndian.AppendUint16(nil, uint16(v))
	case v < 1<<24:
		return []byte{byte(v >> 16), byte(v >> 8), byte(v)}
	}
	return binary.BigEndian.AppendUint32(nil, v)
}

func appendPrimitive(dst []byte, number uint8, context bool, content []byte) []byte {
	return append(appendTag(dst, number, context, len(content)), content...)
}

// AppendNull appends an application-tagged Null.
func AppendNull(dst []byte) []byte { return append(dst, 0x00) }

// AppendBoolean appends an application-tagged Boolean.
func AppendBoolean(dst []byte, v bool) []byte {
	if v {
		return append(dst, 0x11)
	}
	return append(dst, 0x10)
}

// AppendUnsigned appends an application-tagged Unsigned.
func AppendUnsigned(dst []byte, v uint32) []byte {
	return appendPrimitive(dst, TagUnsigned, false, unsignedContent(v))
}

// AppendSigned appends an application-tagged Signed.
func AppendSigned(dst []byte, v int32) []byte {
	var c []byte
	switch {
	case v >= math.MinInt8 && v <= math.MaxInt8:
		c = []byte{byte(v)}
	case v >= math.MinInt16 && v <= math.MaxInt16:
		c = binary.BigEndian.AppendUint16(nil, uint16(v))
	case v >= -(1<<23) && v < 1<<23:
		c = []byte{byte(v >> 16), byte(v >> 8), byte(v)}
	default:
		c = binary.BigEndian.AppendUint32(nil, uint32(v))
	}
	return appendPrimitive(dst, TagSigned, false, c)
}

// AppendReal appends an application-tagged Real.
func AppendReal(dst []byte, v float32) []byte {
	return appendPrimitive(dst, TagReal, false, binary.BigEndian.AppendUint32(nil, math.Float32bits(v)))
}

// AppendEnumerated appends an application-tagged Enumerated.
func AppendEnumerated(dst []byte, v uint32) []byte {
	return appendPrimitive(dst, TagEnumerated, false, unsignedContent(v))
}

// AppendCharacterString appends an application-tagged CharacterString in UTF-8.
func AppendCharacterString(dst []byte, s string) []byte {
	dst = appendTag(dst, TagCharacterString, false, 1+len(s))
	dst = append(dst, 0x00)
	return append(dst, s...)
}

// AppendObjectID appends an application-tagged BACnetObjectIdentifier.
func AppendObjectID(dst []byte, typ uint16, instance uint32) []byte {
	return appendPrimitive(dst, TagObjectID, false, binary.BigEndian.AppendUint32(nil, ObjectID(typ, instance)))
}

// AppendBitString appends an application-tagged BitString of n bits; bit i is set when
// set(i) is true (bit 0 is the most significant bit of the first octet).
func AppendBitString(dst []byte, n int, set func(int) bool) []byte {
	nbytes := (n + 7) / 8
	dst = appendTag(dst, TagBitString, false, 1+nbytes)
	dst = append(dst, byte(nbytes*8-n))
	start := len(dst)
	dst = append(dst, make([]byte, nbytes)...)
	for i := range n {
		if set(i) {
			dst[start+i/8] |= 0x80 >> (i % 8)
		}
	}
	return dst
}

// AppendDate appends an application-tagged Date.
func AppendDate(dst []byte, t time.Time) []byte {
	wd := byte(t.Weekday())
	if wd == 0 {
		wd = 7 // BACnet: Monday 1 .. Sunday 7
	}
	return appendPrimitive(dst, TagDate, false, []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), wd})
}

// AppendTime appends an application-tagged Time.
func AppendTime(dst []byte, t time.Time) []byte {
	return appendPrimitive(dst, TagTime, false, []byte{byte(t.Hour()), byte(t.Minute()), byte(t.Second()), byte(t.Nanosecond() / 1e7)})
}

// AppendContextUnsigned appends a context-tagged Unsigned (also used for Enumerated).
func AppendContextUnsigned(dst []byte, number uint8, v uint32) []byte {
	return appendPrimitive(dst, number, true, unsignedContent(v))
}

// AppendContextObjectID appends a context-tagged BACnetObjectIdentifier.
func AppendContextObjectID(dst []byte, number uint8, typ uint16, instance uint32) []byte {
	return appendPrimitive(dst, number, true, binary.BigEndian.AppendUint32(nil, ObjectID(typ, instance)))
}

// AppendOpening and AppendClosing append the opening and closing tags of a constructed
// context-tagged value.
func AppendOpening(dst []byte, number uint8) []byte { return appendConstructed(dst, number, 6) }
func AppendClosing(dst []byte, number uint8) []byte { return appendConstructed(dst, number, 7) }

func appendConstructed(dst []byte, number uint8, lvt byte) []byte {
	if number < 15 {
		return append(dst, number<<4|0x08|lvt)
	}
	return append(dst, 0xf8|lvt, number)
}

// AppendIAm appends an unconfirmed I-Am request APDU.
func AppendIAm(dst []byte, instance uint32, maxAPDU uint32, segmentation uint32, vendorID uint16) []byte {
	dst = append(dst, PDUUnconfirmedRequest<<apduTypeShift, ServiceIAm)
	dst = AppendObjectID(dst, ObjectDevice, instance)
	dst = AppendUnsigned(dst, maxAPDU)
	dst = AppendEnumerated(dst, segmentation)
	return AppendUnsigned(dst, uint32(vendorID))
}

// AppendIHave appends an unconfirmed I-Have request APDU.
func AppendIHave(dst []byte, device uint32, typ uint16, instance uint32, name string) []byte {
	dst = append(dst, PDUUnconfirmedRequest<<apduTypeShift, ServiceIHave)
	dst = AppendObjectID(dst, ObjectDevice, device)
	dst = AppendObjectID(dst, typ, instance)
	return AppendCharacterString(dst, name)
}

// Limits is the optional device-instance range of Who-Is and Who-Has.
type Limits struct {
	Set       bool
	Low, High uint32
}

// Contains reports whether instance is inside the limits (always, when none are set).
func (l Limits) Contains(instance uint32) bool {
	return !l.Set || (instance >= l.Low && instance <= l.High)
}

func parseLimits(d *decoder) (Limits, error) {
	lo, okLo, err := d.context(0)
	if err != nil {
		return Limits{}, err
	}
	hi, okHi, err := d.context(1)
	if err != nil {
		return Limits{}, err
	}
	if okLo != okHi {
		return Limits{}, fmt.Errorf("%w: only one device instance range limit", ErrMissing)
	}
	if !okLo {
		return Limits{}, nil
	}
	l := Limits{Set: true}
	if l.Low, err = DecodeUnsigned(lo); err != nil {
		return Limits{}, err
	}
	if l.High, err = DecodeUnsigned(hi); err != nil {
		return Limits{}, err
	}
	if l.Low > MaxInstance || l.High > MaxInstance {
		return Limits{}, fmt.Errorf("%w: range limit above %d", ErrRange, MaxInstance)
	}
	return l, nil
}

func finish(d *decoder) error {
	if !d.empty() {
		return fmt.Errorf("%w: %d bytes", ErrTrailing, len(d.rest()))
	}
	return nil
}

// ParseWhoIs parses a Who-Is service request.
func ParseWhoIs(body []byte) (Limits, error) {
	d := decoder{b: body}
	l, err := parseLimits(&d)
	if err != nil {
		return Limits{}, err
	}
	return l, finish(&d)
}

// WhoHas is a Who-Has service request: an object identifier or an object name.
type WhoHas struct {
	Limits   Limits
	ByName   bool
	Name     string
	Type     uint16
	Instance uint32
}

// ParseWhoHas parses a Who-Has service request.
func ParseWhoHas(body []byte) (WhoHas, error) {
	d := decoder{b: body}
	var w WhoHas
	var err error
	if w.Limits, err = parseLimits(&d); err != nil {
		return WhoHas{}, err
	}
	if c, ok, err := d.context(2); err != nil {
		return WhoHas{}, err
	} else if ok {
		if w.Type, w.Instance, err = DecodeObjectID(c); err != nil {
			return WhoHas{}, err
		}
	} else {
		c, err := d.require(3)
		if err != nil {
			return WhoHas{}, err
		}
		w.ByName = true
		if w.Name, err = DecodeCharacterString(c); err != nil {
			return WhoHas{}, err
		}
	}
	return w, finish(&d)
}

// PropertyRef addresses one property of one object, optionally one array element.
type PropertyRef struct {
	Type     uint16
	Instance uint32
	Property uint32
	HasIndex bool
	Index    uint32
}

func parseObject(d *decoder, n uint8) (uint16, uint32, error) {
	c, err := d.require(n)
	if err != nil {
		return 0, 0, err
	}
	return DecodeObjectID(c)
}

func parseUnsigned(d *decoder, n uint8) (uint32, bool, error) {
	c, ok, err := d.context(n)
	if err != nil || !ok {
		return 0, ok, err
	}
	v, err := DecodeUnsigned(c)
	return v, true, err
}

func parsePropertyAndIndex(d *decoder, propTag uint8, ref *PropertyRef) error {
	c, err := d.require(propTag)
	if err != nil {
		return err
	}
	if ref.Property, err = DecodeUnsigned(c); err != nil {
		return err
	}
	ref.Index, ref.HasIndex, err = parseUnsigned(d, propTag+1)
	return err
}

// ParseReadProperty parses a ReadProperty service request.
func ParseReadProperty(body []byte) (PropertyRef, error) {
	d := decoder{b: body}
	var r PropertyRef
	var err error
	if r.Type, r.Instance, err = parseObject(&d, 0); err != nil {
		return PropertyRef{}, err
	}
	if err := parsePropertyAndIndex(&d, 1, &r); err != nil {
		return PropertyRef{}, err
	}
	return r, finish(&d)
}

// ReadAccessSpec is one object of a ReadPropertyMultiple request with its properties
// (Type and Instance of each PropertyRef repeat the object's).
type ReadAccessSpec struct {
	Type       uint16
	Instance   uint32
	Properties []PropertyRef
}

// ParseReadPropertyMultiple parses a ReadPropertyMultiple service request.
func ParseReadPropertyMultiple(body []byte) ([]ReadAccessSpec, error) {
	d := decoder{b: body}
	var specs []ReadAccessSpec
	for !d.empty() {
		var s ReadAccessSpec
		var err error
		if s.Type, s.Instance, err = parseObject(&d, 0); err != nil {
			return nil, err
		}
		list, err := d.constructed(1)
		if err != nil {
			return nil, err
		}
		ld := decoder{b: list}
		for !ld.empty() {
			r := PropertyRef{Type: s.Type, Instance: s.Instance}
			if err := parsePropertyAndIndex(&ld, 0, &r); err != nil {
				return nil, err
			}
			s.Properties = append(s.Properties, r)
		}
		if len(s.Properties) == 0 {
			return nil, fmt.Errorf("%w: empty list of property references", ErrMissing)
		}
		specs = append(specs, s)
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("%w: no read access specification", ErrMissing)
	}
	return specs, nil
}

// WriteRequest is a WriteProperty service request.
type WriteRequest struct {
	PropertyRef
	// Value is the encoded property value (the data inside context tag 3).
	Value       []byte
	HasPriority bool
	Priority    uint32
}

// ParseWriteProperty parses a WriteProperty service request.
func ParseWriteProperty(body []byte) (WriteRequest, error) {
	d := decoder{b: body}
	var w WriteRequest
	var err error
	if w.Type, w.Instance, err = parseObject(&d, 0); err != nil {
		return WriteRequest{}, err
	}
	if err := parsePropertyAndIndex(&d, 1, &w.PropertyRef); err != nil {
		return WriteRequest{}, err
	}
	if w.Value, err = d.constructed(3); err != nil {
		return WriteRequest{}, err
	}
	if w.Priority, w.HasPriority, err = parseUnsigned(&d, 4); err != nil {
		return WriteRequest{}, err
	}
	if w.HasPriority && (w.Priority < 1 || w.Priority > 16) {
		return WriteRequest{}, fmt.Errorf("%w: priority %d", ErrRange, w.Priority)
	}
	return w, finish(&d)
}

// DeviceCommunicationControl is a DeviceCommunicationControl service request.
type DeviceCommunicationControl struct {
	HasDuration bool
	Minutes     uint32
	// State is 0 enable, 1 disable, 2 disable-initiation.
	State       uint32
	HasPassword bool
	Password    string
}

// ParseDeviceCommunicationControl parses a DeviceCommunicationControl service request.
func ParseDeviceCommunicationControl(body []byte) (DeviceCommunicationControl, error) {
	d := decoder{b: body}
	var r DeviceCommunicationControl
	var err error
	if r.Minutes, r.HasDuration, err = parseUnsigned(&d, 0); err != nil {
		return r, err
	}
	c, err := d.require(1)
	if err != nil {
		return r, err
	}
	if r.State, err = DecodeUnsigned(c); err != nil {
		return r, err
	}
	if r.State > 2 {
		return r, fmt.Errorf("%w: enable-disable %d", ErrRange, r.State)
	}
	if r.Password, r.HasPassword, err = parsePassword(&d, 2); err != nil {
		return r, err
	}
	return r, finish(&d)
}

func parsePassword(d *decoder, n uint8) (string, bool, error) {
	c, ok, err := d.context(n)
	if err != nil || !ok {
		return "", false, err
	}
	s, err := DecodeCharacterString(c)
	if err != nil {
		return "", false, err
	}
	if utf8.RuneCountInString(s) > 20 {
		return "", false, fmt.Errorf("%w: password longer than 20 characters", ErrRange)
	}
	return s, true, nil
}

// ReinitializeDevice is a ReinitializeDevice service request.
type ReinitializeDevice struct {
	// State is 0 coldstart, 1 warmstart, 2..6 backup/restore, 7 activate-changes.
	State       uint32
	HasPassword bool
	Password    string
}

// ParseReinitializeDevice parses a ReinitializeDevice service request.
func ParseReinitializeDevice(body []byte) (ReinitializeDevice, error) {
	d := decoder{b: body}
	var r ReinitializeDevice
	c, err := d.require(0)
	if err != nil {
		return r, err
	}
	if r.State, err = DecodeUnsigned(c); err != nil {
		return r, err
	}
	if r.State > 7 {
		return r, fmt.Errorf("%w: reinitialized state %d", ErrRange, r.State)
	}
	if r.Password, r.HasPassword, err = parsePassword(&d, 1); err != nil {
		return r, err
	}
	return r, finish(&d)
}

// ParseTimeSynchronization parses a (UTC)TimeSynchronization request: a Date and a Time.
func ParseTimeSynchronization(body []byte) (date, tod []byte, err error) {
	dv, n, err := ParseValue(body)
	if err != nil {
		return nil, nil, err
	}
	tv, m, err := ParseValue(body[n:])
	if err != nil {
		return nil, nil, err
	}
	if dv.Tag != TagDate || len(dv.Data) != 4 || tv.Tag != TagTime || len(tv.Data) != 4 {
		return nil, nil, fmt.Errorf("%w: want Date and Time", ErrDataType)
	}
	if n+m != len(body) {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrTrailing, len(body)-n-m)
	}
	return dv.Data, tv.Data, nil
}

// Reject reasons (ASHRAE 135 clause 18.9).
const (
	RejectOther                  byte = 0
	RejectInvalidParameterType   byte = 3
	RejectInvalidTag             byte = 4
	RejectMissingRequired        byte = 5
	RejectParameterOutOfRange    byte = 6
	RejectTooManyArguments       byte = 7
	RejectUndefinedEnumeration   byte = 8
	RejectUnrecognizedService    byte = 9
	AbortOther                   byte = 0
	AbortSegmentationUnsupported byte = 4
)

// rejectReason maps a request-parsing error to the Reject reason a device sends.
func rejectReason(err error) byte {
	switch {
	case errors.Is(err, ErrMissing):
		return RejectMissingRequired
	case errors.Is(err, ErrTrailing):
		return RejectTooManyArguments
	case errors.Is(err, ErrRange):
		return RejectParameterOutOfRange
	case errors.Is(err, ErrDataType), errors.Is(err, ErrCharacterSet):
		return RejectInvalidParameterType
	case errors.Is(err, ErrTag):
		return RejectInvalidTag
	}
	return RejectOther
}
