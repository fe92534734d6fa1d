package dnp3

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Wire errors. Parse functions return exactly one of them (possibly wrapped).
var (
	// ErrShortFrame: more octets are needed.
	ErrShortFrame = errors.New("dnp3: short frame")
	// ErrBadStart: the frame does not begin with 0x05 0x64.
	ErrBadStart = errors.New("dnp3: bad start octets")
	// ErrBadLength: the link length octet is below 5.
	ErrBadLength = errors.New("dnp3: bad link length")
	// ErrHeaderCRC and ErrDataCRC: a CRC does not match.
	ErrHeaderCRC = errors.New("dnp3: bad header CRC")
	ErrDataCRC   = errors.New("dnp3: bad data block CRC")
	// ErrBadObject: an application object header or its data is malformed.
	ErrBadObject = errors.New("dnp3: malformed object")
)

// crcTable is the table of CRC-16/DNP (polynomial 0x3D65, reflected as 0xA6BC,
// initial value 0, final complement). It is computed once and never written.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA6BC
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC returns the CRC-16/DNP of b (check value of "123456789": 0xEA82). On the wire
// it is sent low octet first.
func CRC(b []byte) uint16 {
	var c uint16
	for _, x := range b {
		c = c>>8 ^ crcTable[byte(c)^x]
	}
	return ^c
}

// Link layer (IEEE 1815-2012 §9).
const (
	linkHeaderLen = 10
	blockLen      = 16
	// MaxLinkData is the largest user data a link frame carries.
	MaxLinkData = 250

	ctrlDIR = 0x80
	ctrlPRM = 0x40
	ctrlFCB = 0x20
	ctrlFCV = 0x10 // DFC in secondary frames

	// Primary-to-secondary functions.
	LinkResetLinkStates   = 0
	LinkTestLinkStates    = 2
	LinkConfirmedData     = 3
	LinkUnconfirmedData   = 4
	LinkRequestLinkStatus = 9
	// Secondary-to-primary functions.
	LinkAck          = 0
	LinkNack         = 1
	LinkStatus       = 11
	LinkNotSupported = 15
)

// LinkFrame is a parsed data link frame.
type LinkFrame struct {
	Control byte
	Dest    uint16
	Src     uint16
	// Data is the user data with the block CRCs removed (a new slice).
	Data []byte
}

// Func returns the link function code; Primary the PRM bit; Dir the DIR bit.
func (f LinkFrame) Func() byte    { return f.Control & 0x0F }
func (f LinkFrame) Primary() bool { return f.Control&ctrlPRM != 0 }
func (f LinkFrame) Dir() bool     { return f.Control&ctrlDIR != 0 }

// linkFrameLen is the octet count on the wire of a frame with length octet l.
func linkFrameLen(l int) int {
	n := l - 5
	return linkHeaderLen + n + 2*((n+blockLen-1)/blockLen)
}

// ParseLinkFrame parses one link frame from the front of b and returns it with the
// number of octets it occupies. On ErrHeaderCRC or ErrBadStart the caller should
// discard one octet and resynchronise; on ErrDataCRC it may discard n octets.
func ParseLinkFrame(b []byte) (LinkFrame, int, error) {
	if len(b) >= 1 && b[0] != 0x05 || len(b) >= 2 && b[1] != 0x64 {
		return LinkFrame{}, 0, ErrBadStart
	}
	if len(b) < linkHeaderLen {
		return LinkFrame{}, 0, ErrShortFrame
	}
	if got, want := binary.LittleEndian.Uint16(b[8:10]), CRC(b[:8]); got != want {
		return LinkFrame{}, 0, fmt.Errorf("%w: 0x%04x, want 0x%04x", ErrHeaderCRC, got, want)
	}
	l := int(b[2])
	if l < 5 {
		return LinkFrame{}, 0, fmt.Errorf("%w: %d", ErrBadLength, l)
	}
	n := linkFrameLen(l)
	if len(b) < n {
		return LinkFrame{}, 0, ErrShortFrame
	}
	f := LinkFrame{
		Control: b[3],
		Dest:    binary.LittleEndian.Uint16(b[4:6]),
		Src:     binary.LittleEndian.Uint16(b[6:8]),
		Data:    make([]byte, 0, l-5),
	}
	rest := b[linkHeaderLen:n]
	for len(rest) > 0 {
		k := min(blockLen, len(rest)-2)
		blk := rest[:k]
		if got, want := binary.LittleEndian.Uint16(rest[k:k+2]), CRC(blk); got != want {
			return LinkFrame{}, n, fmt.Errorf("%w: 0x%04x, want 0x%04x", ErrDataCRC, got, want)
		}
		f.Data = append(f.Data, blk...)
		rest = rest[k+2:]
	}
	return f, n, nil
}

// AppendLinkFrame appends a link frame carrying data (at most MaxLinkData octets).
func AppendLinkFrame(dst []byte, control byte, dest, src uint16, data []byte) []byte {
	start := len(dst)
	dst = append(dst, 0x05, 0x64, byte(5+len(data)), control)
	dst = binary.LittleEndian.AppendUint16(dst, dest)
	dst = binary.LittleEndian.AppendUint16(dst, src)
	dst = binary.LittleEndian.AppendUint16(dst, CRC(dst[start:]))
	for len(data) > 0 {
		k := min(blockLen, len(data))
		dst = append(dst, data[:k]...)
		dst = binary.LittleEndian.AppendUint16(dst, CRC(data[:k]))
		data = data[k:]
	}
	return dst
}

// Transport layer (IEEE 1815-2012 §8): one header octet per segment.
const (
	tpFIN = 0x80
	tpFIR = 0x40
	// MaxSegment is the application data one segment carries.
	MaxSegment = MaxLinkData - 1
)

// AppendSegments appends the application fragment frag split into transport segments,
// each in a link frame with control, dest and src: FIR on the first, FIN on the last,
// 6-bit sequence numbers from seq. It returns the frames and the sequence number of
// the next segment.
func AppendSegments(dst []byte, control byte, dest, src uint16, seq byte, frag []byte) ([]byte, byte) {
	for first := true; first || len(frag) > 0; first = false {
		k := min(MaxSegment, len(frag))
		hdr := seq & 0x3F
		if first {
			hdr |= tpFIR
		}
		if k == len(frag) {
			hdr |= tpFIN
		}
		seg := make([]byte, 0, 1+k)
		seg = append(append(seg, hdr), frag[:k]...)
		dst = AppendLinkFrame(dst, control, dest, src, seg)
		seq = (seq + 1) & 0x3F
		frag = frag[k:]
	}
	return dst, seq
}

// Application layer (IEEE 1815-2012 §4.2).
const (
	acFIR = 0x80
	acFIN = 0x40
	acCON = 0x20
	acUNS = 0x10
)

// Function codes.
const (
	FuncConfirm           = 0
	FuncRead              = 1
	FuncWrite             = 2
	FuncSelect            = 3
	FuncOperate           = 4
	FuncDirectOperate     = 5
	FuncDirectOperateNR   = 6
	FuncImmedFreeze       = 7
	FuncImmedFreezeNR     = 8
	FuncFreezeClear       = 9
	FuncFreezeClearNR     = 10
	FuncColdRestart       = 13
	FuncWarmRestart       = 14
	FuncEnableUnsolicited = 20
	FuncDisableUnsolicit  = 21
	FuncDelayMeasure      = 23
	FuncRecordCurrentTime = 24
	FuncResponse          = 0x81
	FuncUnsolicited       = 0x82
)

// Internal indications.
const (
	IIN1AllStations  = 0x0001
	IIN1Class1       = 0x0002
	IIN1Class2       = 0x0004
	IIN1Class3       = 0x0008
	IIN1NeedTime     = 0x0010
	IIN1LocalControl = 0x0020
	IIN1DeviceTroubl = 0x0040
	IIN1Restart      = 0x0080
	IIN2NoFuncCode   = 0x0100
	IIN2ObjUnknown   = 0x0200
	IIN2ParamError   = 0x0400
	IIN2EventOverflw = 0x0800
	IIN2AlreadyExec  = 0x1000
	IIN2ConfigCorrup = 0x2000
)

// AppHeader is a parsed application request header.
type AppHeader struct {
	Control byte
	Func    byte
}

// Seq returns the application sequence number.
func (h AppHeader) Seq() byte { return h.Control & 0x0F }

// ParseRequest splits an application request fragment into header and objects.
func ParseRequest(b []byte) (AppHeader, []byte, error) {
	if len(b) < 2 {
		return AppHeader{}, nil, fmt.Errorf("%w: request of %d octets", ErrShortFrame, len(b))
	}
	return AppHeader{Control: b[0], Func: b[1]}, b[2:], nil
}

// AppendResponseHeader appends a response header with IIN (IIN1 in the low octet).
func AppendResponseHeader(dst []byte, control, fn byte, iin uint16) []byte {
	return append(dst, control, fn, byte(iin), byte(iin>>8))
}

// Qualifier range specifier codes.
const (
	rangeStartStop8  = 0x0
	rangeStartStop16 = 0x1
	rangeStartStop32 = 0x2
	rangeAll         = 0x6
	rangeCount8      = 0x7
	rangeCount16     = 0x8
	rangeCount32     = 0x9
	rangeFreeFormat  = 0xB
)

// Qualifiers used in responses.
const (
	QualStartStop8   = 0x00
	QualStartStop16  = 0x01
	QualAll          = 0x06
	QualCount8       = 0x07
	QualCount16      = 0x08
	QualIndex8Count8 = 0x17
	QualIndex16Cnt16 = 0x28
)

// ObjectHeader is a parsed object header.
type ObjectHeader struct {
	Group, Var, Qual byte
	// Start and Stop are set for start-stop ranges; Count for counts and ranges
	// (Stop-Start+1); All for qualifier 0x06.
	Start, Stop uint32
	Count       int
	All         bool
}

// PrefixSize is the size of each object's index (or size) prefix.
func (h ObjectHeader) PrefixSize() int {
	switch h.Qual >> 4 & 0x07 {
	case 1, 4:
		return 1
	case 2, 5:
		return 2
	case 3, 6:
		return 4
	}
	return 0
}

// maxObjects bounds the count of one header (no request can carry more).
const maxObjects = 1 << 16

// ParseObjectHeader parses an object header and its range field from the front of b.
func ParseObjectHeader(b []byte) (ObjectHeader, int, error) {
	if len(b) < 3 {
		return ObjectHeader{}, 0, fmt.Errorf("%w: object header of %d octets", ErrBadObject, len(b))
	}
	h := ObjectHeader{Group: b[0], Var: b[1], Qual: b[2]}
	if h.Qual&0x80 != 0 || h.Qual>>4&0x07 == 7 {
		return h, 0, fmt.Errorf("%w: qualifier 0x%02x", ErrBadObject, h.Qual)
	}
	r := b[3:]
	need := func(n int) error {
		if len(r) < n {
			return fmt.Errorf("%w: range of qualifier 0x%02x truncated", ErrBadObject, h.Qual)
		}
		return nil
	}
	n := 3
	switch h.Qual & 0x0F {
	case rangeStartStop8, rangeStartStop16, rangeStartStop32:
		w := 1 << (h.Qual & 0x0F)
		if err := need(2 * w); err != nil {
			return h, 0, err
		}
		h.Start, h.Stop = uintN(r[:w]), uintN(r[w:2*w])
		if h.Stop < h.Start || h.Stop-h.Start >= maxObjects {
			return h, 0, fmt.Errorf("%w: range %d..%d", ErrBadObject, h.Start, h.Stop)
		}
		h.Count = int(h.Stop-h.Start) + 1
		n += 2 * w
	case rangeAll:
		h.All = true
	case rangeCount8, rangeCount16, rangeCount32:
		w := 1 << (h.Qual&0x0F - rangeCount8)
		if err := need(w); err != nil {
			return h, 0, err
		}
		c := uintN(r[:w])
		if c >= maxObjects {
			return h, 0, fmt.Errorf("%w: count %d", ErrBadObject, c)
		}
		h.Count = int(c)
		if h.Count > 0 {
			h.Stop = uint32(h.Count - 1)
		}
		n += w
	case rangeFreeFormat:
		if err := need(1); err != nil {
			return h, 0, err
		}
		h.Count = int(r[0])
		n++
	default:
		return h, 0, fmt.Errorf("%w: range specifier in qualifier 0x%02x", ErrBadObject, h.Qual)
	}
	return h, n, nil
}

func uintN(b []byte) uint32 {
	var v uint32
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint32(b[i])
	}
	return v
}

// AppendRangeHeader appends a start-stop object header (8- or 16-bit as needed).
func AppendRangeHeader(dst []byte, group, variation byte, start, stop uint16) []byte {
	if stop <= 0xFF {
		return append(dst, group, variation, QualStartStop8, byte(start), byte(stop))
	}
	dst = append(dst, group, variation, QualStartStop16)
	dst = binary.LittleEndian.AppendUint16(dst, start)
	return binary.LittleEndian.AppendUint16(dst, stop)
}

// AppendCountHeader appends an object header with a 16-bit count and 16-bit index
// prefixes (qualifier 0x28), as used for events.
func AppendCountHeader(dst []byte, group, variation byte, count uint16) []byte {
	dst = append(dst, group, variation, QualIndex16Cnt16)
	return binary.LittleEndian.AppendUint16(dst, count)
}

// AppendTime appends a DNP3 time: 48-bit milliseconds since 1970-01-01 UTC.
func AppendTime(dst []byte, t time.Time) []byte {
	ms := uint64(t.UnixMilli())
	return append(dst, byte(ms), byte(ms>>8), byte(ms>>16), byte(ms>>24), byte(ms>>32), byte(ms>>40))
}

// ParseTime decodes a 6-octet DNP3 time.
func ParseTime(b []byte) (time.Time, error) {
	if len(b) < 6 {
		return time.Time{}, fmt.Errorf("%w: time of %d octets", ErrBadObject, len(b))
	}
	var ms uint64
	for i := 5; i >= 0; i-- {
		ms = ms<<8 | uint64(b[i])
	}
	return time.UnixMilli(int64(ms)).UTC(), nil
}

// CROB is a control relay output block (g12v1).
type CROB struct {
	Code   byte
	Count  byte
	OnMs   uint32
	OffMs  uint32
	Status byte
}

const crobLen = 11

// ParseCROB decodes 11 octets.
func ParseCROB(b []byte) (CROB, error) {
	if len(b) < crobLen {
		return CROB{}, fmt.Errorf("%w: CROB of %d octets", ErrBadObject, len(b))
	}
	return CROB{Code: b[0], Count: b[1], OnMs: binary.LittleEndian.Uint32(b[2:6]),
		OffMs: binary.LittleEndian.Uint32(b[6:10]), Status: b[10]}, nil
}

// Append appends the 11-octet encoding.
func (c CROB) Append(dst []byte) []byte {
	dst = append(dst, c.Code, c.Count)
	dst = binary.LittleEndian.AppendUint32(dst, c.OnMs)
	dst = binary.LittleEndian.AppendUint32(dst, c.OffMs)
	return append(dst, c.Status)
}

// Command status codes (IEEE 1815-2012 Table 11-?; g12 and g41 status octet).
const (
	StatusSuccess      = 0
	StatusTimeout      = 1
	StatusNoSelect     = 2
	StatusFormatError  = 3
	StatusNotSupported = 4
	StatusAlreadyActiv = 5
	StatusHardwareErr  = 6
	StatusLocal        = 7
)

// Point flags.
const (
	flagOnline    = 0x01
	flagOverRange = 0x20
	flagState     = 0x80
)

// analogOutputSize returns the size of a g41 variation without status, or 0.
func analogOutputSize(v byte) int {
	switch v {
	case 1:
		return 4
	case 2:
		return 2
	case 3:
		return 4
	case 4:
		return 8
	}
	return 0
}

// decodeAnalogOutput decodes the value of a g41 object.
func decodeAnalogOutput(v byte, b []byte) float64 {
	switch v {
	case 1:
		return float64(int32(binary.LittleEndian.Uint32(b)))
	case 2:
		return float64(int16(binary.LittleEndian.Uint16(b)))
	case 3:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
	case 4:
		return math.Float64frombits(binary.LittleEndian.Uint64(b))
	}
	return 0
}
