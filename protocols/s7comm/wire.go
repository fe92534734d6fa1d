package s7comm

// Pure parse/append functions for the three layers of S7 over TCP: TPKT (RFC 1006),
// COTP class 0 (ISO 8073) and S7comm. No I/O here; every read is bounds-checked and
// the Append* functions add to dst and return the extended slice.

import (
	"encoding/binary"
	"errors"
	"time"
)

// Sentinel errors of the wire layer.
var (
	ErrShortFrame      = errors.New("s7comm: short frame")
	ErrBadVersion      = errors.New("s7comm: TPKT version is not 3")
	ErrBadLength       = errors.New("s7comm: length field out of range")
	ErrBadTPDU         = errors.New("s7comm: malformed COTP TPDU")
	ErrBadParameter    = errors.New("s7comm: malformed COTP parameter")
	ErrBadProtocolID   = errors.New("s7comm: S7 protocol id is not 0x32")
	ErrBadHeader       = errors.New("s7comm: S7 header lengths do not match the PDU")
	ErrBadItem         = errors.New("s7comm: malformed S7 variable item")
	ErrBadUserdata     = errors.New("s7comm: malformed S7 userdata parameter")
	ErrBadSetup        = errors.New("s7comm: malformed setup communication parameter")
	ErrBadPIService    = errors.New("s7comm: malformed PI service parameter")
	ErrBadWriteData    = errors.New("s7comm: malformed write data item")
	ErrTooManyItems    = errors.New("s7comm: too many variable items")
	ErrUnknownTPDUType = errors.New("s7comm: unknown COTP TPDU type")
)

// ---------------------------------------------------------------------------
// TPKT (RFC 1006)

// TPKTHeaderLen is the size of the TPKT header.
const TPKTHeaderLen = 4

const tpktVersion = 3

// ParseTPKTHeader checks a 4-byte TPKT header and returns the total packet length
// (header included). The smallest valid packet carries a 3-byte TPDU (RFC 1006 §6).
func ParseTPKTHeader(b []byte) (int, error) {
	if len(b) < TPKTHeaderLen {
		return 0, ErrShortFrame
	}
	if b[0] != tpktVersion {
		return 0, ErrBadVersion
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < TPKTHeaderLen+3 {
		return 0, ErrBadLength
	}
	return n, nil
}

// AppendTPKT appends a TPKT packet carrying tpdu. len(tpdu) must be at most 65531.
func AppendTPKT(dst, tpdu []byte) []byte {
	n := TPKTHeaderLen + len(tpdu)
	dst = append(dst, tpktVersion, 0, byte(n>>8), byte(n))
	return append(dst, tpdu...)
}

// ---------------------------------------------------------------------------
// COTP (ISO 8073 class 0)

// COTP TPDU codes (upper nibble for CR/CC, which carry a credit in the lower one).
const (
	TPDUConnRequest    = 0xE0
	TPDUConnConfirm    = 0xD0
	TPDUDisconnRequest = 0x80
	TPDUDisconnConfirm = 0xC0
	TPDUData           = 0xF0
	TPDUError          = 0x70
)

// COTP parameter codes.
const (
	paramTPDUSize     = 0xC0
	paramCallingTSAP  = 0xC1
	paramCalledTSAP   = 0xC2
	paramInvalidTPDU  = 0xC1 // in ER TPDUs
	maxCOTPParamValue = 32   // longest TSAP accepted (TIA uses 16-byte strings)
)

// DR reasons (ISO 8073 §13.5.3) and ER reject causes (§13.12.3).
const (
	ReasonNotSpecified    = 0x00
	ReasonAddressUnknown  = 0x03
	ReasonNormal          = 0x80
	ReasonProtocolError   = 0x85
	ReasonHeaderInvalid   = 0x8A
	RejectNotSpecified    = 0x00
	RejectInvalidParamCod = 0x01
	RejectInvalidTPDUType = 0x02
	RejectInvalidParamVal = 0x03
)

// TPDU is one COTP TPDU split into its parts.
type TPDU struct {
	// Code is the TPDU code with the credit nibble cleared for CR/CC.
	Code byte
	// Header is the whole header, length indicator included.
	Header []byte
	// Data is the user data following the header.
	Data []byte
}

// ParseTPDU splits a TPDU (the payload of a TPKT) into header and user data.
func ParseTPDU(b []byte) (TPDU, error) {
	if len(b) < 2 {
		return TPDU{}, ErrShortFrame
	}
	li := int(b[0])
	if li < 1 || li == 255 || li+1 > len(b) {
		return TPDU{}, ErrBadTPDU
	}
	code := b[1]
	switch code & 0xF0 {
	case TPDUConnRequest, TPDUConnConfirm:
		code &= 0xF0
	}
	return TPDU{Code: code, Header: b[:li+1], Data: b[li+1:]}, nil
}

// ConnRequest is a parsed COTP Connection Request.
type ConnRequest struct {
	DstRef, SrcRef uint16
	// Class is the preferred protocol class (upper nibble of the class/option octet).
	Class byte
	// TPDUSizeCode is the offered TPDU size as a power of two (7..13), 0 when absent.
	TPDUSizeCode byte
	// CallingTSAP and CalledTSAP are nil when the parameter is absent.
	CallingTSAP, CalledTSAP []byte
}

// ParseConnRequest parses the header of a CR TPDU. The TSAP slices alias h.
func ParseConnRequest(h []byte) (ConnRequest, error) {
	var cr ConnRequest
	if len(h) < 7 || h[1]&0xF0 != TPDUConnRequest || int(h[0])+1 != len(h) {
		return cr, ErrBadTPDU
	}
	cr.DstRef = binary.BigEndian.Uint16(h[2:4])
	cr.SrcRef = binary.BigEndian.Uint16(h[4:6])
	cr.Class = h[6] >> 4
	p := h[7:]
	for len(p) > 0 {
		if len(p) < 2 {
			return cr, ErrBadParameter
		}
		code, n := p[0], int(p[1])
		if 2+n > len(p) {
			return cr, ErrBadParameter
		}
		v := p[2 : 2+n]
		switch code {
		case paramTPDUSize:
			if n != 1 || v[0] < 7 || v[0] > 13 {
				return cr, ErrBadParameter
			}
			cr.TPDUSizeCode = v[0]
		case paramCallingTSAP:
			if n == 0 || n > maxCOTPParamValue {
				return cr, ErrBadParameter
			}
			cr.CallingTSAP = v
		case paramCalledTSAP:
			if n == 0 || n > maxCOTPParamValue {
				return cr, ErrBadParameter
			}
			cr.CalledTSAP = v
		}
		p = p[2+n:]
	}
	return cr, nil
}

// AppendConnConfirm appends a CC TPDU (class 0). A tpduSizeCode of 0 omits the
// TPDU size parameter; nil TSAPs are omitted.
func AppendConnConfirm(dst []byte, dstRef, srcRef uint16, tpduSizeCode byte, calling, called []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, TPDUConnConfirm, byte(dstRef>>8), byte(dstRef), byte(srcRef>>8), byte(srcRef), 0x00)
	if tpduSizeCode != 0 {
		dst = append(dst, paramTPDUSize, 1, tpduSizeCode)
	}
	if calling != nil {
		dst = append(dst, paramCallingTSAP, byte(len(calling)))
		dst = append(dst, calling...)
	}
	if called != nil {
		dst = append(dst, paramCalledTSAP, byte(len(called)))
		dst = append(dst, called...)
	}
	dst[start] = byte(len(dst) - start - 1)
	return dst
}

// AppendDisconnectRequest appends a DR TPDU.
func AppendDisconnectRequest(dst []byte, dstRef, srcRef uint16, reason byte) []byte {
	return append(dst, 6, TPDUDisconnRequest, byte(dstRef>>8), byte(dstRef), byte(srcRef>>8), byte(srcRef), reason)
}

// AppendDisconnectConfirm appends a DC TPDU.
func AppendDisconnectConfirm(dst []byte, dstRef, srcRef uint16) []byte {
	return append(dst, 5, TPDUDisconnConfirm, byte(dstRef>>8), byte(dstRef), byte(srcRef>>8), byte(srcRef))
}

// AppendErrorTPDU appends an ER TPDU with the rejected header (truncated so that the
// TPDU stays within 128 octets) as the "invalid TPDU" parameter.
func AppendErrorTPDU(dst []byte, dstRef uint16, cause byte, rejected []byte) []byte {
	if len(rejected) > 120 {
		rejected = rejected[:120]
	}
	start := len(dst)
	dst = append(dst, 0, TPDUError, byte(dstRef>>8), byte(dstRef), cause)
	if len(rejected) > 0 {
		dst = append(dst, paramInvalidTPDU, byte(len(rejected)))
		dst = append(dst, rejected...)
	}
	dst[start] = byte(len(dst) - start - 1)
	return dst
}

// ParseDataTPDU parses a class 0 DT TPDU and reports whether its EOT flag is set.
func ParseDataTPDU(t TPDU) (eot bool, data []byte, err error) {
	if t.Code != TPDUData || len(t.Header) != 3 {
		return false, nil, ErrBadTPDU
	}
	return t.Header[2]&0x80 != 0, t.Data, nil
}

// AppendDataTPDU appends a class 0 DT TPDU.
func AppendDataTPDU(dst []byte, eot bool, data []byte) []byte {
	nr := byte(0)
	if eot {
		nr = 0x80
	}
	dst = append(dst, 2, TPDUData, nr)
	return append(dst, data...)
}

// AppendDataPackets appends the TPKT packets that carry one S7 PDU in DT TPDUs of at
// most tpduSize octets each (ISO 8073 segmentation; EOT only on the last one).
func AppendDataPackets(dst, pdu []byte, tpduSize int) []byte {
	chunk := tpduSize - 3
	if chunk < 1 {
		chunk = 1
	}
	for {
		n := min(chunk, len(pdu))
		last := n == len(pdu)
		total := TPKTHeaderLen + 3 + n
		dst = append(dst, tpktVersion, 0, byte(total>>8), byte(total), 2, TPDUData, 0)
		if last {
			dst[len(dst)-1] = 0x80
		}
		dst = append(dst, pdu[:n]...)
		pdu = pdu[n:]
		if last {
			return dst
		}
	}
}

// TPDUSizeFromCode converts a TPDU size parameter value to octets.
func TPDUSizeFromCode(code byte) int { return 1 << code }

// ---------------------------------------------------------------------------
// S7comm header

// S7 PDU types (ROSCTR).
const (
	ROSCTRJob      = 0x01
	ROSCTRAck      = 0x02
	ROSCTRAckData  = 0x03
	ROSCTRUserdata = 0x07
	s7ProtocolID   = 0x32
)

// S7 job functions.
const (
	FuncCPUServices = 0x00
	FuncReadVar     = 0x04
	FuncWriteVar    = 0x05
	FuncReqDownload = 0x1A
	FuncDownload    = 0x1B
	FuncDownloadEnd = 0x1C
	FuncStartUpload = 0x1D
	FuncUpload      = 0x1E
	FuncEndUpload   = 0x1F
	FuncPIService   = 0x28
	FuncPLCStop     = 0x29
	FuncSetupComm   = 0xF0
)

// Header is an S7 PDU header. ErrClass/ErrCode exist only in Ack and Ack-Data.
type Header struct {
	ROSCTR            byte
	Redundancy        uint16
	PDURef            uint16
	ParamLen, DataLen uint16
	ErrClass, ErrCode byte
}

// HeaderLen is the header length of a PDU type.
func HeaderLen(rosctr byte) int {
	if rosctr == ROSCTRAck || rosctr == ROSCTRAckData {
		return 12
	}
	return 10
}

// ParseHeader parses an S7 PDU and returns its header, parameter and data parts. It
// returns the header together with ErrBadHeader when the lengths do not add up, so
// that the caller can still answer with the PDU reference.
func ParseHeader(b []byte) (Header, []byte, []byte, error) {
	var h Header
	if len(b) < 10 {
		return h, nil, nil, ErrShortFrame
	}
	if b[0] != s7ProtocolID {
		return h, nil, nil, ErrBadProtocolID
	}
	h.ROSCTR = b[1]
	h.Redundancy = binary.BigEndian.Uint16(b[2:4])
	h.PDURef = binary.BigEndian.Uint16(b[4:6])
	h.ParamLen = binary.BigEndian.Uint16(b[6:8])
	h.DataLen = binary.BigEndian.Uint16(b[8:10])
	hl := HeaderLen(h.ROSCTR)
	if len(b) < hl {
		return h, nil, nil, ErrShortFrame
	}
	if hl == 12 {
		h.ErrClass, h.ErrCode = b[10], b[11]
	}
	if hl+int(h.ParamLen)+int(h.DataLen) != len(b) {
		return h, nil, nil, ErrBadHeader
	}
	p := b[hl : hl+int(h.ParamLen)]
	return h, p, b[hl+int(h.ParamLen):], nil
}

// AppendPDU appends an S7 PDU with header h (its lengths are computed from params
// and data).
func AppendPDU(dst []byte, h Header, params, data []byte) []byte {
	dst = append(dst, s7ProtocolID, h.ROSCTR,
		byte(h.Redundancy>>8), byte(h.Redundancy),
		byte(h.PDURef>>8), byte(h.PDURef),
		byte(len(params)>>8), byte(len(params)),
		byte(len(data)>>8), byte(len(data)))
	if HeaderLen(h.ROSCTR) == 12 {
		dst = append(dst, h.ErrClass, h.ErrCode)
	}
	dst = append(dst, params...)
	return append(dst, data...)
}

// ---------------------------------------------------------------------------
// Setup communication

// Setup is the parameter of a Setup Communication job and its Ack-Data.
type Setup struct {
	AmQCalling, AmQCalled uint16
	PDUSize               uint16
}

// ParseSetup parses the 8-byte Setup Communication parameter.
func ParseSetup(p []byte) (Setup, error) {
	if len(p) != 8 || p[0] != FuncSetupComm {
		return Setup{}, ErrBadSetup
	}
	return Setup{
		AmQCalling: binary.BigEndian.Uint16(p[2:4]),
		AmQCalled:  binary.BigEndian.Uint16(p[4:6]),
		PDUSize:    binary.BigEndian.Uint16(p[6:8]),
	}, nil
}

// AppendSetup appends a Setup Communication parameter.
func AppendSetup(dst []byte, s Setup) []byte {
	return append(dst, FuncSetupComm, 0,
		byte(s.AmQCalling>>8), byte(s.AmQCalling),
		byte(s.AmQCalled>>8), byte(s.AmQCalled),
		byte(s.PDUSize>>8), byte(s.PDUSize))
}

// ---------------------------------------------------------------------------
// Read Var / Write Var

// Memory areas of S7ANY addresses.
const (
	AreaPeripheral = 0x80
	AreaInputs     = 0x81
	AreaOutputs    = 0x82
	AreaMerkers    = 0x83
	AreaDB         = 0x84
	AreaDI         = 0x85
	AreaLocal      = 0x86
	AreaCounter    = 0x1C
	AreaTimer      = 0x1D
)

// Item transport sizes (request side).
const (
	TSBit     = 0x01
	TSByte    = 0x02
	TSChar    = 0x03
	TSWord    = 0x04
	TSInt     = 0x05
	TSDWord   = 0x06
	TSDInt    = 0x07
	TSReal    = 0x08
	TSDate    = 0x09
	TSTOD     = 0x0A
	TSTime    = 0x0B
	TSS5Time  = 0x0C
	TSDT      = 0x0F
	TSCounter = 0x1C
	TSTimer   = 0x1D
)

// Data transport sizes (data part of responses and write requests).
const (
	DTSNull      = 0x00
	DTSBit       = 0x03
	DTSByte      = 0x04
	DTSInt       = 0x05
	DTSReal      = 0x07
	DTSOctetStr  = 0x09
	syntaxS7ANY  = 0x10
	varSpecType  = 0x12
	s7anySpecLen = 0x0A
)

// Item return codes.
const (
	RetSuccess           = 0xFF
	RetHardwareFault     = 0x01
	RetAccessDenied      = 0x03
	RetAddressOutOfRange = 0x05
	RetInvalidDataType   = 0x06
	RetDataTypeMismatch  = 0x07
	RetObjectNotExist    = 0x0A
)

// ElementSize returns the byte size of one element of a request transport size, 0 for
// unknown sizes. BIT is 1 because one bit travels in one byte.
func ElementSize(ts byte) int {
	switch ts {
	case TSBit, TSByte, TSChar:
		return 1
	case TSWord, TSInt, TSDate, TSS5Time, TSCounter, TSTimer:
		return 2
	case TSDWord, TSDInt, TSReal, TSTOD, TSTime:
		return 4
	case TSDT:
		return 8
	}
	return 0
}

// Item is one variable specification of a Read Var / Write Var job.
type Item struct {
	// Syntax is the syntax id (0x10 = S7ANY); the other fields are valid only for S7ANY.
	Syntax        byte
	TransportSize byte
	Count         uint16
	DB            uint16
	Area          byte
	// BitAddress is byte address * 8 + bit number.
	BitAddress uint32
}

// ByteAddress and Bit split BitAddress.
func (it Item) ByteAddress() int { return int(it.BitAddress >> 3) }
func (it Item) Bit() int         { return int(it.BitAddress & 7) }

// ParseVarItems parses the parameter of a Read Var / Write Var job (function code,
// item count, items). max bounds the item count.
func ParseVarItems(p []byte, max int) ([]Item, error) {
	if len(p) < 2 {
		return nil, ErrShortFrame
	}
	n := int(p[1])
	if n == 0 || n > max {
		return nil, ErrTooManyItems
	}
	items := make([]Item, 0, n)
	p = p[2:]
	for range n {
		if len(p) < 2 || p[0] != varSpecType {
			return nil, ErrBadItem
		}
		l := int(p[1])
		if l < 1 || 2+l > len(p) {
			return nil, ErrBadItem
		}
		spec := p[2 : 2+l]
		it := Item{Syntax: spec[0]}
		if it.Syntax == syntaxS7ANY {
			if l != s7anySpecLen {
				return nil, ErrBadItem
			}
			it.TransportSize = spec[1]
			it.Count = binary.BigEndian.Uint16(spec[2:4])
			it.DB = binary.BigEndian.Uint16(spec[4:6])
			it.Area = spec[6]
			it.BitAddress = uint32(spec[7])<<16 | uint32(spec[8])<<8 | uint32(spec[9])
		}
		items = append(items, it)
		p = p[2+l:]
	}
	if len(p) != 0 {
		return nil, ErrBadItem
	}
	return items, nil
}

// AppendVarItems appends a Read Var / Write Var parameter for S7ANY items.
func AppendVarItems(dst []byte, fn byte, items []Item) []byte {
	dst = append(dst, fn, byte(len(items)))
	for _, it := range items {
		dst = append(dst, varSpecType, s7anySpecLen, syntaxS7ANY, it.TransportSize,
			byte(it.Count>>8), byte(it.Count), byte(it.DB>>8), byte(it.DB), it.Area,
			byte(it.BitAddress>>16), byte(it.BitAddress>>8), byte(it.BitAddress))
	}
	return dst
}

// DataItem is one item of the data part of a Read Var response or Write Var job.
type DataItem struct {
	ReturnCode    byte
	TransportSize byte
	Data          []byte
}

// dataLenIsBits reports whether the length field of a data item counts bits.
func dataLenIsBits(dts byte) bool { return dts == DTSByte || dts == DTSInt }

// ParseDataItems parses n data items (write job data or read response data). Items
// except the last are padded to an even length. Data aliases b.
func ParseDataItems(b []byte, n int) ([]DataItem, error) {
	items := make([]DataItem, 0, min(n, len(b)/4+1))
	for i := range n {
		if len(b) < 4 {
			return nil, ErrBadWriteData
		}
		it := DataItem{ReturnCode: b[0], TransportSize: b[1]}
		l := int(binary.BigEndian.Uint16(b[2:4]))
		if dataLenIsBits(it.TransportSize) {
			l = (l + 7) / 8
		}
		if 4+l > len(b) {
			return nil, ErrBadWriteData
		}
		it.Data = b[4 : 4+l]
		b = b[4+l:]
		if l%2 == 1 && i < n-1 {
			if len(b) < 1 {
				return nil, ErrBadWriteData
			}
			b = b[1:]
		}
		items = append(items, it)
	}
	if len(b) != 0 {
		return nil, ErrBadWriteData
	}
	return items, nil
}

// AppendDataItems appends data items (read response data or write job data).
func AppendDataItems(dst []byte, items []DataItem) []byte {
	for i, it := range items {
		l := len(it.Data)
		if dataLenIsBits(it.TransportSize) {
			l *= 8
		}
		dst = append(dst, it.ReturnCode, it.TransportSize, byte(l>>8), byte(l))
		dst = append(dst, it.Data...)
		if len(it.Data)%2 == 1 && i < len(items)-1 {
			dst = append(dst, 0)
		}
	}
	return dst
}

// DataItemsLen is the encoded length of items.
func DataItemsLen(items []DataItem) int {
	n := 0
	for i, it := range items {
		n += 4 + len(it.Data)
		if len(it.Data)%2 == 1 && i < len(items)-1 {
			n++
		}
	}
	return n
}

// ResponseTransportSize maps a request transport size to the data transport size of
// its response.
func ResponseTransportSize(ts byte) byte {
	switch ts {
	case TSBit:
		return DTSBit
	case TSInt, TSDInt:
		return DTSInt
	case TSReal:
		return DTSReal
	case TSChar, TSCounter, TSTimer:
		return DTSOctetStr
	}
	return DTSByte
}

// ---------------------------------------------------------------------------
// PI service (0x28) and PLC Stop (0x29)

// PIService is a parsed PI service or PLC Stop parameter.
type PIService struct {
	// Param is the parameter block (e.g. "C " for a cold start).
	Param []byte
	// Name is the PI service name ("P_PROGRAM", "_INSE", ...).
	Name []byte
}

// ParsePIService parses the parameter of a PI service job (function 0x28): function,
// 7 unknown bytes, parameter block length (2), parameter block, name length, name.
func ParsePIService(p []byte) (PIService, error) {
	if len(p) < 11 || p[0] != FuncPIService {
		return PIService{}, ErrBadPIService
	}
	n := int(binary.BigEndian.Uint16(p[8:10]))
	if 10+n+1 > len(p) {
		return PIService{}, ErrBadPIService
	}
	param := p[10 : 10+n]
	rest := p[10+n:]
	nl := int(rest[0])
	if nl == 0 || 1+nl != len(rest) {
		return PIService{}, ErrBadPIService
	}
	return PIService{Param: param, Name: rest[1:]}, nil
}

// AppendPIService appends a PI service (0x28) parameter.
func AppendPIService(dst []byte, param, name []byte) []byte {
	dst = append(dst, FuncPIService, 0, 0, 0, 0, 0, 0, 0xFD, byte(len(param)>>8), byte(len(param)))
	dst = append(dst, param...)
	dst = append(dst, byte(len(name)))
	return append(dst, name...)
}

// ParsePLCStop parses the parameter of a PLC Stop job (function 0x29): function, 5
// unknown bytes, name length, name.
func ParsePLCStop(p []byte) (PIService, error) {
	if len(p) < 8 || p[0] != FuncPLCStop {
		return PIService{}, ErrBadPIService
	}
	nl := int(p[6])
	if nl == 0 || 7+nl != len(p) {
		return PIService{}, ErrBadPIService
	}
	return PIService{Name: p[7:]}, nil
}

// AppendPLCStop appends a PLC Stop (0x29) parameter.
func AppendPLCStop(dst []byte, name []byte) []byte {
	dst = append(dst, FuncPLCStop, 0, 0, 0, 0, 0, byte(len(name)))
	return append(dst, name...)
}

// ---------------------------------------------------------------------------
// Userdata

// Userdata methods, types and function groups.
const (
	UDMethodRequest  = 0x11
	UDMethodResponse = 0x12
	UDTypeRequest    = 0x4
	UDTypeResponse   = 0x8
	GroupModeTrans   = 0x0
	GroupProgrammer  = 0x1
	GroupCyclic      = 0x2
	GroupBlock       = 0x3
	GroupCPU         = 0x4
	GroupSecurity    = 0x5
	GroupTime        = 0x7
	SubReadSZL       = 0x01
	SubReadClock     = 0x01
)

// Userdata parameter error codes.
const (
	UDErrNone           = 0x0000
	UDErrSZLUnavailable = 0xD401
	UDErrNotImplemented = 0x8104
)

// UserdataParam is the parameter of a userdata PDU.
type UserdataParam struct {
	Method    byte
	Type      byte // upper nibble of the type/group octet
	Group     byte // lower nibble
	SubFunc   byte
	Seq       byte
	DURN      byte   // data unit reference number (long form only)
	LastDU    byte   // 0x00 = last data unit (long form only)
	ErrorCode uint16 // long form only
	Long      bool   // 8-byte form (follow-up requests and responses)
}

// ParseUserdataParam parses a userdata parameter: head 00 01 12, length (4 or 8),
// method, type/group, subfunction, sequence number [, DURN, last unit, error code].
func ParseUserdataParam(p []byte) (UserdataParam, error) {
	var u UserdataParam
	if len(p) < 8 || p[0] != 0x00 || p[1] != 0x01 || p[2] != 0x12 {
		return u, ErrBadUserdata
	}
	l := int(p[3])
	if (l != 4 && l != 8) || 4+l != len(p) {
		return u, ErrBadUserdata
	}
	u.Method = p[4]
	u.Type, u.Group = p[5]>>4, p[5]&0x0F
	u.SubFunc = p[6]
	u.Seq = p[7]
	if l == 8 {
		u.Long = true
		u.DURN, u.LastDU = p[8], p[9]
		u.ErrorCode = binary.BigEndian.Uint16(p[10:12])
	}
	return u, nil
}

// AppendUserdataParam appends u; the long form is used when u.Long is set.
func AppendUserdataParam(dst []byte, u UserdataParam) []byte {
	l := byte(4)
	if u.Long {
		l = 8
	}
	dst = append(dst, 0x00, 0x01, 0x12, l, u.Method, u.Type<<4|u.Group&0x0F, u.SubFunc, u.Seq)
	if u.Long {
		dst = append(dst, u.DURN, u.LastDU, byte(u.ErrorCode>>8), byte(u.ErrorCode))
	}
	return dst
}

// SZLRequest is the data of a first Read SZL request.
type SZLRequest struct {
	ID, Index uint16
}

// ParseSZLRequest parses the data of a Read SZL request: return code, transport size
// 0x09, length 4, SZL-ID, index.
func ParseSZLRequest(d []byte) (SZLRequest, error) {
	if len(d) != 8 || d[1] != DTSOctetStr || binary.BigEndian.Uint16(d[2:4]) != 4 {
		return SZLRequest{}, ErrBadUserdata
	}
	return SZLRequest{ID: binary.BigEndian.Uint16(d[4:6]), Index: binary.BigEndian.Uint16(d[6:8])}, nil
}

// AppendUserdataData appends the data part of a userdata response: return code,
// transport size octet string, length, payload.
func AppendUserdataData(dst []byte, ret byte, payload []byte) []byte {
	ts := byte(DTSOctetStr)
	if ret != RetSuccess {
		ts = DTSNull
	}
	dst = append(dst, ret, ts, byte(len(payload)>>8), byte(len(payload)))
	return append(dst, payload...)
}

// ---------------------------------------------------------------------------
// SZL records

// AppendSZLHeader appends the SZL partial list header: SZL-ID, index, record length,
// record count.
func AppendSZLHeader(dst []byte, id, index uint16, recLen, count int) []byte {
	return append(dst, byte(id>>8), byte(id), byte(index>>8), byte(index),
		byte(recLen>>8), byte(recLen), byte(count>>8), byte(count))
}

// AppendPadded appends s cut or padded with pad to n bytes.
func AppendPadded(dst []byte, s string, n int, pad byte) []byte {
	if len(s) > n {
		s = s[:n]
	}
	dst = append(dst, s...)
	for range n - len(s) {
		dst = append(dst, pad)
	}
	return dst
}

// AppendU16 appends v big-endian.
func AppendU16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

// AppendU32 appends v big-endian.
func AppendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Identification record (SZL 0x0011 / 0x0111) length.
const idRecordLen = 28

// AppendIdentRecord appends one module identification record: index, MlfB (20 chars,
// space padded), module type (BGTyp), Ausbg, Ausbe.
func AppendIdentRecord(dst []byte, index uint16, mlfb string, bgTyp, ausbg, ausbe uint16) []byte {
	dst = AppendU16(dst, index)
	dst = AppendPadded(dst, mlfb, 20, ' ')
	dst = AppendU16(dst, bgTyp)
	dst = AppendU16(dst, ausbg)
	return AppendU16(dst, ausbe)
}

// Component record (SZL 0x001C / 0x011C) length.
const compRecordLen = 34

// AppendBCD appends a date and time in the S7 DATE_AND_TIME (BCD) encoding.
func AppendBCD(dst []byte, t time.Time) []byte {
	bcd := func(v int) byte { return byte((v/10)<<4 | v%10) }
	y := t.Year() % 100
	ms := t.Nanosecond() / int(time.Millisecond)
	dow := int(t.Weekday()) + 1 // 1 = Sunday
	return append(dst, bcd(y), bcd(int(t.Month())), bcd(t.Day()), bcd(t.Hour()),
		bcd(t.Minute()), bcd(t.Second()), bcd(ms/10), byte((ms%10)<<4|dow))
}
