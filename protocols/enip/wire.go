package enip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// This file holds the EtherNet/IP encapsulation and CIP codec: pure functions over
// []byte, no I/O, every read bounds-checked. All multi-byte CIP and encapsulation
// fields are little-endian; the socket address of ListIdentity is big-endian.

// Sentinel errors of the codec.
var (
	ErrShort   = errors.New("enip: message too short")
	ErrCPF     = errors.New("enip: malformed common packet format")
	ErrPath    = errors.New("enip: malformed CIP path")
	ErrRequest = errors.New("enip: malformed CIP request")
)

// HeaderLen is the size of the encapsulation header.
const HeaderLen = 24

// Encapsulation commands (CIP Vol. 2, 2-3.2).
const (
	CmdNOP               uint16 = 0x0000
	CmdListServices      uint16 = 0x0004
	CmdListIdentity      uint16 = 0x0063
	CmdListInterfaces    uint16 = 0x0064
	CmdRegisterSession   uint16 = 0x0065
	CmdUnRegisterSession uint16 = 0x0066
	CmdSendRRData        uint16 = 0x006f
	CmdSendUnitData      uint16 = 0x0070
	CmdIndicateStatus    uint16 = 0x0072
	CmdCancel            uint16 = 0x0073
)

// Encapsulation status codes (CIP Vol. 2, 2-3.3).
const (
	StatusSuccess             uint32 = 0x0000
	StatusInvalidCommand      uint32 = 0x0001
	StatusInsufficientMemory  uint32 = 0x0002
	StatusIncorrectData       uint32 = 0x0003
	StatusInvalidSession      uint32 = 0x0064
	StatusInvalidLength       uint32 = 0x0065
	StatusUnsupportedProtocol uint32 = 0x0069
)

// Header is the encapsulation header.
type Header struct {
	Command uint16
	Length  uint16
	Session uint32
	Status  uint32
	Context [8]byte
	Options uint32
}

// ParseHeader decodes the encapsulation header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: %d bytes of encapsulation header", ErrShort, len(b))
	}
	h := Header{
		Command: binary.LittleEndian.Uint16(b[0:]),
		Length:  binary.LittleEndian.Uint16(b[2:]),
		Session: binary.LittleEndian.Uint32(b[4:]),
		Status:  binary.LittleEndian.Uint32(b[8:]),
		Options: binary.LittleEndian.Uint32(b[20:]),
	}
	copy(h.Context[:], b[12:20])
	return h, nil
}

// AppendEncap appends an encapsulation message: h with its Length set to len(data),
// then data.
func AppendEncap(dst []byte, h Header, data []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, h.Command)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(data)))
	dst = binary.LittleEndian.AppendUint32(dst, h.Session)
	dst = binary.LittleEndian.AppendUint32(dst, h.Status)
	dst = append(dst, h.Context[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, h.Options)
	return append(dst, data...)
}

// Common packet format item types (CIP Vol. 2, 2-6).
const (
	ItemNullAddress      uint16 = 0x0000
	ItemListIdentity     uint16 = 0x000c
	ItemConnectedAddress uint16 = 0x00a1
	ItemConnectedData    uint16 = 0x00b1
	ItemUnconnectedData  uint16 = 0x00b2
	ItemListServices     uint16 = 0x0100
	ItemSockaddrOT       uint16 = 0x8000
	ItemSockaddrTO       uint16 = 0x8001
	ItemSequencedAddress uint16 = 0x8002
	maxItems                    = 16
)

// Item is one common packet format item.
type Item struct {
	Type uint16
	Data []byte
}

// ParseCPF decodes a common packet format (item count, then items) that must fill b.
func ParseCPF(b []byte) ([]Item, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: no item count", ErrCPF)
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n > maxItems {
		return nil, fmt.Errorf("%w: %d items", ErrCPF, n)
	}
	off := 2
	items := make([]Item, 0, n)
	for i := range n {
		if len(b) < off+4 {
			return nil, fmt.Errorf("%w: item %d header", ErrCPF, i)
		}
		t := binary.LittleEndian.Uint16(b[off:])
		l := int(binary.LittleEndian.Uint16(b[off+2:]))
		off += 4
		if len(b) < off+l {
			return nil, fmt.Errorf("%w: item %d of %d bytes, %d left", ErrCPF, i, l, len(b)-off)
		}
		items = append(items, Item{Type: t, Data: b[off : off+l]})
		off += l
	}
	if off != len(b) {
		return nil, fmt.Errorf("%w: %d bytes after the items", ErrCPF, len(b)-off)
	}
	return items, nil
}

// AppendCPF appends a common packet format with the given items.
func AppendCPF(dst []byte, items ...Item) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(items)))
	for _, it := range items {
		dst = binary.LittleEndian.AppendUint16(dst, it.Type)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(it.Data)))
		dst = append(dst, it.Data...)
	}
	return dst
}

// IdentityInfo is the content of a ListIdentity item (CIP Vol. 2, 2-4.2.3).
type IdentityInfo struct {
	ProtocolVersion uint16
	Addr            netip.AddrPort // IPv4 address and port of the device
	Vendor          uint16
	DeviceType      uint16
	ProductCode     uint16
	Major, Minor    uint8
	Status          uint16
	Serial          uint32
	ProductName     string
	State           uint8
}

// AppendAttributes appends the CIP Identity attributes 1-7 (vendor id through product
// name), the layout of Get_Attribute_All and of the ListIdentity item.
func (id IdentityInfo) AppendAttributes(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, id.Vendor)
	dst = binary.LittleEndian.AppendUint16(dst, id.DeviceType)
	dst = binary.LittleEndian.AppendUint16(dst, id.ProductCode)
	dst = append(dst, id.Major, id.Minor)
	dst = binary.LittleEndian.AppendUint16(dst, id.Status)
	dst = binary.LittleEndian.AppendUint32(dst, id.Serial)
	return AppendShortString(dst, id.ProductName)
}

// AppendListIdentityItem appends the ListIdentity CPF item body.
func (id IdentityInfo) AppendListIdentityItem(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, id.ProtocolVersion)
	a := id.Addr.Addr().Unmap()
	var ip [4]byte
	if a.Is4() {
		ip = a.As4()
	}
	dst = append(dst, 0x00, 0x02) // sin_family AF_INET, big-endian
	dst = binary.BigEndian.AppendUint16(dst, id.Addr.Port())
	dst = append(dst, ip[:]...)
	dst = append(dst, make([]byte, 8)...) // sin_zero
	dst = id.AppendAttributes(dst)
	return append(dst, id.State)
}

// ParseListIdentityItem decodes a ListIdentity item body.
func ParseListIdentityItem(b []byte) (IdentityInfo, error) {
	const fixed = 2 + 16 + 14 + 1
	if len(b) < fixed {
		return IdentityInfo{}, fmt.Errorf("%w: identity item of %d bytes", ErrShort, len(b))
	}
	var id IdentityInfo
	id.ProtocolVersion = binary.LittleEndian.Uint16(b)
	id.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[6:10])), binary.BigEndian.Uint16(b[4:]))
	a := b[18:]
	id.Vendor = binary.LittleEndian.Uint16(a[0:])
	id.DeviceType = binary.LittleEndian.Uint16(a[2:])
	id.ProductCode = binary.LittleEndian.Uint16(a[4:])
	id.Major, id.Minor = a[6], a[7]
	id.Status = binary.LittleEndian.Uint16(a[8:])
	id.Serial = binary.LittleEndian.Uint32(a[10:])
	n := int(a[14])
	if len(a) != 15+n+1 {
		return IdentityInfo{}, fmt.Errorf("%w: product name of %d bytes in %d", ErrShort, n, len(a)-15)
	}
	id.ProductName = string(a[15 : 15+n])
	id.State = a[15+n]
	return id, nil
}

// AppendShortString appends a CIP SHORT_STRING (length octet, then at most 255 bytes).
func AppendShortString(dst []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

// AppendListServicesItem appends the ListServices item of the "Communications"
// service: protocol version 1, capability flags, the 16-byte name.
func AppendListServicesItem(dst []byte, flags uint16) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, 1)
	dst = binary.LittleEndian.AppendUint16(dst, flags)
	var name [16]byte
	copy(name[:], "Communications")
	return append(dst, name[:]...)
}

// RRData is the body of SendRRData / SendUnitData.
type RRData struct {
	Interface uint32
	Timeout   uint16
	Items     []Item
}

// ParseRRData decodes the body of SendRRData or SendUnitData.
func ParseRRData(b []byte) (RRData, error) {
	if len(b) < 6 {
		return RRData{}, fmt.Errorf("%w: %d bytes of SendRRData", ErrShort, len(b))
	}
	items, err := ParseCPF(b[6:])
	if err != nil {
		return RRData{}, err
	}
	return RRData{Interface: binary.LittleEndian.Uint32(b), Timeout: binary.LittleEndian.Uint16(b[4:]), Items: items}, nil
}

// AppendRRData appends a SendRRData body (interface handle 0, timeout 0).
func AppendRRData(dst []byte, items ...Item) []byte {
	dst = append(dst, 0, 0, 0, 0, 0, 0)
	return AppendCPF(dst, items...)
}

// CIP general status codes (CIP Vol. 1, Appendix B).
const (
	CIPSuccess               byte = 0x00
	CIPConnectionFailure     byte = 0x01
	CIPPathSegmentError      byte = 0x04
	CIPPathDestUnknown       byte = 0x05
	CIPPartialTransfer       byte = 0x06
	CIPServiceNotSupported   byte = 0x08
	CIPInvalidAttribute      byte = 0x09
	CIPAttributeNotSettable  byte = 0x0e
	CIPNotEnoughData         byte = 0x13
	CIPAttributeNotSupported byte = 0x14
	CIPTooMuchData           byte = 0x15
	CIPEmbeddedServiceError  byte = 0x1e
	CIPInvalidParameter      byte = 0x20
	CIPPathSizeInvalid       byte = 0x26
	CIPGeneralError          byte = 0xff
)

// Request is a CIP message router request.
type Request struct {
	Service byte
	Path    []byte
	Data    []byte
}

// ParseRequest decodes a CIP request: service, path size in words, path, data.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < 2 {
		r := Request{}
		if len(b) == 1 {
			r.Service = b[0]
		}
		return r, fmt.Errorf("%w: %d bytes", ErrRequest, len(b))
	}
	n := int(b[1]) * 2
	if len(b) < 2+n {
		return Request{Service: b[0]}, fmt.Errorf("%w: path of %d words, %d bytes left", ErrPath, b[1], len(b)-2)
	}
	return Request{Service: b[0], Path: b[2 : 2+n], Data: b[2+n:]}, nil
}

// AppendRequest appends a CIP request.
func AppendRequest(dst []byte, service byte, path, data []byte) []byte {
	dst = append(dst, service, byte(len(path)/2))
	dst = append(dst, path...)
	return append(dst, data...)
}

// AppendResponse appends a CIP message router response: reply service, reserved,
// general status, additional status words, data.
func AppendResponse(dst []byte, service, status byte, ext []uint16, data []byte) []byte {
	dst = append(dst, service|0x80, 0, status, byte(len(ext)))
	for _, e := range ext {
		dst = binary.LittleEndian.AppendUint16(dst, e)
	}
	return append(dst, data...)
}

// Response is a decoded CIP response.
type Response struct {
	Service byte // with the reply bit
	Status  byte
	Ext     []uint16
	Data    []byte
}

// ParseResponse decodes a CIP message router response.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 4 {
		return Response{}, fmt.Errorf("%w: response of %d bytes", ErrShort, len(b))
	}
	r := Response{Service: b[0], Status: b[2]}
	n := int(b[3])
	if len(b) < 4+2*n {
		return Response{}, fmt.Errorf("%w: %d additional status words", ErrShort, n)
	}
	for i := range n {
		r.Ext = append(r.Ext, binary.LittleEndian.Uint16(b[4+2*i:]))
	}
	r.Data = b[4+2*n:]
	return r, nil
}

// Path is a decoded application path: logical class/instance/attribute/member
// segments, or a symbolic tag name with optional element indexes.
type Path struct {
	HasClass, HasInstance, HasAttribute bool
	Class, Instance, Attribute          uint32
	// Symbol is the ANSI extended symbolic segment (a tag name), Members the
	// member/element indexes after it.
	Symbol  string
	Members []uint32
}

// ParsePath decodes an EPATH of logical and ANSI extended symbolic segments.
func ParsePath(b []byte) (Path, error) {
	var p Path
	for off := 0; off < len(b); {
		seg := b[off]
		switch {
		case seg == 0x91: // ANSI extended symbol
			if len(b) < off+2 {
				return Path{}, fmt.Errorf("%w: symbolic segment without length", ErrPath)
			}
			n := int(b[off+1])
			if n == 0 || len(b) < off+2+n {
				return Path{}, fmt.Errorf("%w: symbol of %d bytes", ErrPath, n)
			}
			if p.Symbol != "" || p.HasClass {
				return Path{}, fmt.Errorf("%w: member of a structure (%q)", ErrPath, p.Symbol)
			}
			p.Symbol = string(b[off+2 : off+2+n])
			off += 2 + n + n%2
			if off > len(b) {
				return Path{}, fmt.Errorf("%w: symbol pad byte missing", ErrPath)
			}
		case seg&0xe0 == 0x20: // logical segment
			typ := (seg >> 2) & 0x07
			v, n, err := logicalValue(b[off:], seg&0x03)
			if err != nil {
				return Path{}, err
			}
			off += n
			switch typ {
			case 0: // class
				p.HasClass, p.Class = true, v
			case 1: // instance
				p.HasInstance, p.Instance = true, v
			case 2: // member (element of an array tag)
				if p.Symbol == "" && !p.HasClass {
					return Path{}, fmt.Errorf("%w: member segment first", ErrPath)
				}
				if len(p.Members) >= 3 {
					return Path{}, fmt.Errorf("%w: more than 3 dimensions", ErrPath)
				}
				p.Members = append(p.Members, v)
			case 4: // attribute
				p.HasAttribute, p.Attribute = true, v
			default: // connection point, special, service ID, extended logical
				return Path{}, fmt.Errorf("%w: logical segment type %d", ErrPath, typ)
			}
		default:
			return Path{}, fmt.Errorf("%w: segment 0x%02x", ErrPath, seg)
		}
	}
	if p.Symbol == "" && !p.HasClass {
		return Path{}, fmt.Errorf("%w: no class or symbol", ErrPath)
	}
	return p, nil
}

// logicalValue decodes the value of a logical segment of format f (0: 8-bit,
// 1: 16-bit with a pad byte, 2: 32-bit with a pad byte).
func logicalValue(b []byte, f byte) (uint32, int, error) {
	switch f {
	case 0:
		if len(b) < 2 {
			return 0, 0, fmt.Errorf("%w: 8-bit logical segment", ErrPath)
		}
		return uint32(b[1]), 2, nil
	case 1:
		if len(b) < 4 {
			return 0, 0, fmt.Errorf("%w: 16-bit logical segment", ErrPath)
		}
		return uint32(binary.LittleEndian.Uint16(b[2:])), 4, nil
	case 2:
		if len(b) < 6 {
			return 0, 0, fmt.Errorf("%w: 32-bit logical segment", ErrPath)
		}
		return binary.LittleEndian.Uint32(b[2:]), 6, nil
	}
	return 0, 0, fmt.Errorf("%w: reserved logical format", ErrPath)
}

// AppendLogicalPath appends a path class/instance[/attribute] with 8- or 16-bit
// segments as needed.
func AppendLogicalPath(dst []byte, class, instance uint32, attribute ...uint32) []byte {
	seg := func(dst []byte, typ byte, v uint32) []byte {
		if v < 0x100 {
			return append(dst, 0x20|typ<<2, byte(v))
		}
		return binary.LittleEndian.AppendUint16(append(dst, 0x21|typ<<2, 0), uint16(v))
	}
	dst = seg(dst, 0, class)
	dst = seg(dst, 1, instance)
	for _, a := range attribute {
		dst = seg(dst, 4, a)
	}
	return dst
}

// AppendSymbolicPath appends an ANSI extended symbolic segment (padded) and element
// indexes.
func AppendSymbolicPath(dst []byte, name string, elements ...uint32) []byte {
	dst = append(dst, 0x91, byte(len(name)))
	dst = append(dst, name...)
	if len(name)%2 == 1 {
		dst = append(dst, 0)
	}
	for _, e := range elements {
		switch {
		case e < 0x100:
			dst = append(dst, 0x28, byte(e))
		case e < 0x10000:
			dst = binary.LittleEndian.AppendUint16(append(dst, 0x29, 0), uint16(e))
		default:
			dst = binary.LittleEndian.AppendUint32(append(dst, 0x2a, 0), e)
		}
	}
	return dst
}

// UnconnectedSend is a Connection Manager Unconnected_Send request.
type UnconnectedSend struct {
	TimeTick, Timeout byte
	Message           []byte
	Route             []byte
}

// ParseUnconnectedSend decodes the data of an Unconnected_Send request.
func ParseUnconnectedSend(b []byte) (UnconnectedSend, error) {
	if len(b) < 4 {
		return UnconnectedSend{}, fmt.Errorf("%w: unconnected send of %d bytes", ErrRequest, len(b))
	}
	u := UnconnectedSend{TimeTick: b[0], Timeout: b[1]}
	n := int(binary.LittleEndian.Uint16(b[2:]))
	off := 4
	if len(b) < off+n {
		return UnconnectedSend{}, fmt.Errorf("%w: embedded message of %d bytes, %d left", ErrRequest, n, len(b)-off)
	}
	u.Message = b[off : off+n]
	off += n + n%2
	if len(b) < off+2 {
		return UnconnectedSend{}, fmt.Errorf("%w: no route path", ErrRequest)
	}
	words := int(b[off])
	off += 2 // route path size and reserved octet
	if len(b) != off+2*words {
		return UnconnectedSend{}, fmt.Errorf("%w: route path of %d words, %d bytes left", ErrRequest, words, len(b)-off)
	}
	u.Route = b[off:]
	return u, nil
}

// ParsePortSegment decodes the port segment at the start of a route path and returns
// the number of bytes it takes (with its pad byte).
func ParsePortSegment(b []byte) (port uint16, link []byte, n int, err error) {
	if len(b) < 2 || b[0]&0xe0 != 0 {
		return 0, nil, 0, fmt.Errorf("%w: route path does not start with a port segment", ErrPath)
	}
	port = uint16(b[0] & 0x0f)
	off := 1
	extended := b[0]&0x10 != 0
	size := 1
	if extended {
		size = int(b[off])
		off++
	}
	if port == 0x0f {
		if len(b) < off+2 {
			return 0, nil, 0, fmt.Errorf("%w: 16-bit port", ErrPath)
		}
		port = binary.LittleEndian.Uint16(b[off:])
		off += 2
	}
	if size == 0 || len(b) < off+size {
		return 0, nil, 0, fmt.Errorf("%w: link address", ErrPath)
	}
	link = b[off : off+size]
	off += size
	if off%2 == 1 && len(b) > off { // pad to an even length
		off++
	}
	return port, link, off, nil
}

// ForwardOpen is a Forward_Open or Large_Forward_Open request.
type ForwardOpen struct {
	OTConnID, TOConnID uint32
	// Triad identifies the connection: serial (2), originator vendor (2), originator
	// serial (4), as on the wire.
	Triad             [8]byte
	OTRPI, TORPI      uint32
	OTSize, TOSize    int
	Transport         byte
	Path              []byte
	TimeoutMultiplier byte
}

// ParseForwardOpen decodes the data of a Forward_Open (large false) or
// Large_Forward_Open request.
func ParseForwardOpen(b []byte, large bool) (ForwardOpen, error) {
	fixed := 36
	if large {
		fixed = 40
	}
	if len(b) < fixed {
		return ForwardOpen{}, fmt.Errorf("%w: forward open of %d bytes", ErrRequest, len(b))
	}
	var f ForwardOpen
	f.OTConnID = binary.LittleEndian.Uint32(b[2:])
	f.TOConnID = binary.LittleEndian.Uint32(b[6:])
	copy(f.Triad[:], b[10:18])
	f.TimeoutMultiplier = b[18]
	f.OTRPI = binary.LittleEndian.Uint32(b[22:])
	off := 26
	param := func() int {
		if large {
			v := binary.LittleEndian.Uint32(b[off:])
			off += 4
			return int(v & 0xffff)
		}
		v := binary.LittleEndian.Uint16(b[off:])
		off += 2
		return int(v & 0x01ff)
	}
	f.OTSize = param()
	f.TORPI = binary.LittleEndian.Uint32(b[off:])
	off += 4
	f.TOSize = param()
	f.Transport = b[off]
	words := int(b[off+1])
	off += 2
	if len(b) != off+2*words {
		return ForwardOpen{}, fmt.Errorf("%w: connection path of %d words, %d bytes left", ErrRequest, words, len(b)-off)
	}
	f.Path = b[off:]
	return f, nil
}

// AppendForwardOpenReply appends the data of a successful Forward_Open response.
func AppendForwardOpenReply(dst []byte, f ForwardOpen) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, f.OTConnID)
	dst = binary.LittleEndian.AppendUint32(dst, f.TOConnID)
	dst = append(dst, f.Triad[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, f.OTRPI)
	dst = binary.LittleEndian.AppendUint32(dst, f.TORPI)
	return append(dst, 0, 0) // application reply size, reserved
}

// MultipleService splits the data of a Multiple_Service_Packet request into its
// embedded requests.
func MultipleService(b []byte) ([][]byte, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: no service count", ErrRequest)
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n == 0 || len(b) < 2+2*n {
		return nil, fmt.Errorf("%w: %d services in %d bytes", ErrRequest, n, len(b))
	}
	out := make([][]byte, n)
	for i := range n {
		start := int(binary.LittleEndian.Uint16(b[2+2*i:]))
		end := len(b)
		if i+1 < n {
			end = int(binary.LittleEndian.Uint16(b[2+2*(i+1):]))
		}
		if start < 2+2*n || end > len(b) || start > end {
			return nil, fmt.Errorf("%w: service %d at %d..%d", ErrRequest, i, start, end)
		}
		out[i] = b[start:end]
	}
	return out, nil
}

// AppendMultipleServiceReply appends the data of a Multiple_Service_Packet response.
func AppendMultipleServiceReply(dst []byte, replies [][]byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(replies)))
	off := 2 + 2*len(replies)
	for _, r := range replies {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(off))
		off += len(r)
	}
	for _, r := range replies {
		dst = append(dst, r...)
	}
	return dst
}
