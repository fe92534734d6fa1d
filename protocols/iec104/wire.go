package iec104

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// APCI constants (IEC 60870-5-104 §5).
const (
	startByte = 0x68
	// MinAPDULen and MaxAPDULen bound the length octet: the four control octets plus
	// an ASDU of at most 249 octets.
	MinAPDULen = 4
	MaxAPDULen = 253
	// MaxASDULen is the largest ASDU an I-frame carries.
	MaxASDULen = MaxAPDULen - 4
	// seqMod is the modulus of the send and receive sequence numbers.
	seqMod = 32768
)

// U-frame functions: the first control octet of a U-format APDU.
const (
	UStartDTAct = 0x07
	UStartDTCon = 0x0B
	UStopDTAct  = 0x13
	UStopDTCon  = 0x23
	UTestFRAct  = 0x43
	UTestFRCon  = 0x83
)

// Wire errors. A Parse function returns exactly one of them (possibly wrapped).
var (
	// ErrShortFrame: fewer octets than the frame needs; more may arrive.
	ErrShortFrame = errors.New("iec104: short frame")
	// ErrBadStart: the first octet is not 0x68.
	ErrBadStart = errors.New("iec104: bad start octet")
	// ErrBadLength: the APDU length octet is outside 4..253 or does not fit the format.
	ErrBadLength = errors.New("iec104: bad APDU length")
	// ErrBadControl: the control field is none of the I, S, U formats.
	ErrBadControl = errors.New("iec104: bad control field")
	// ErrBadASDU: the ASDU is shorter than its header or its objects say.
	ErrBadASDU = errors.New("iec104: malformed ASDU")
)

// Format is the APCI frame format.
type Format uint8

const (
	FormatI Format = iota + 1
	FormatS
	FormatU
)

func (f Format) String() string {
	switch f {
	case FormatI:
		return "I"
	case FormatS:
		return "S"
	case FormatU:
		return "U"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// APCI is a parsed application protocol control information.
type APCI struct {
	Format Format
	// SendSeq is N(S) of an I-frame; RecvSeq is N(R) of an I- or S-frame.
	SendSeq, RecvSeq uint16
	// U is the U-frame function octet (UStartDTAct...).
	U uint8
}

// ParseAPDU parses one APDU from the front of b. It returns the APCI, the ASDU octets
// (a sub-slice of b, empty for S and U frames) and the number of octets consumed.
// ErrShortFrame means that b holds the start of a valid frame and more octets are needed.
func ParseAPDU(b []byte) (APCI, []byte, int, error) {
	if len(b) < 1 {
		return APCI{}, nil, 0, ErrShortFrame
	}
	if b[0] != startByte {
		return APCI{}, nil, 0, fmt.Errorf("%w: 0x%02x", ErrBadStart, b[0])
	}
	if len(b) < 2 {
		return APCI{}, nil, 0, ErrShortFrame
	}
	n := int(b[1])
	if n < MinAPDULen || n > MaxAPDULen {
		return APCI{}, nil, 0, fmt.Errorf("%w: %d", ErrBadLength, n)
	}
	if len(b) < 2+n {
		return APCI{}, nil, 0, ErrShortFrame
	}
	c := b[2:6]
	switch {
	case c[0]&0x01 == 0:
		if c[2]&0x01 != 0 {
			return APCI{}, nil, 0, fmt.Errorf("%w: I-frame receive octet 0x%02x", ErrBadControl, c[2])
		}
		if n == MinAPDULen {
			return APCI{}, nil, 0, fmt.Errorf("%w: I-frame without ASDU", ErrBadLength)
		}
		a := APCI{
			Format:  FormatI,
			SendSeq: binary.LittleEndian.Uint16(c[0:2]) >> 1,
			RecvSeq: binary.LittleEndian.Uint16(c[2:4]) >> 1,
		}
		return a, b[6 : 2+n], 2 + n, nil
	case c[0]&0x03 == 0x01:
		if c[0] != 0x01 || c[1] != 0 || c[2]&0x01 != 0 {
			return APCI{}, nil, 0, fmt.Errorf("%w: S-frame % x", ErrBadControl, c)
		}
		if n != MinAPDULen {
			return APCI{}, nil, 0, fmt.Errorf("%w: S-frame length %d", ErrBadLength, n)
		}
		return APCI{Format: FormatS, RecvSeq: binary.LittleEndian.Uint16(c[2:4]) >> 1}, nil, 2 + n, nil
	default:
		switch c[0] {
		case UStartDTAct, UStartDTCon, UStopDTAct, UStopDTCon, UTestFRAct, UTestFRCon:
		default:
			return APCI{}, nil, 0, fmt.Errorf("%w: U-frame 0x%02x", ErrBadControl, c[0])
		}
		if c[1] != 0 || c[2] != 0 || c[3] != 0 {
			return APCI{}, nil, 0, fmt.Errorf("%w: U-frame % x", ErrBadControl, c)
		}
		if n != MinAPDULen {
			return APCI{}, nil, 0, fmt.Errorf("%w: U-frame length %d", ErrBadLength, n)
		}
		return APCI{Format: FormatU, U: c[0]}, nil, 2 + n, nil
	}
}

// AppendIFrame appends an I-format APDU carrying asdu (at most MaxASDULen octets).
func AppendIFrame(dst []byte, sendSeq, recvSeq uint16, asdu []byte) []byte {
	dst = append(dst, startByte, byte(4+len(asdu)))
	dst = binary.LittleEndian.AppendUint16(dst, (sendSeq%seqMod)<<1)
	dst = binary.LittleEndian.AppendUint16(dst, (recvSeq%seqMod)<<1)
	return append(dst, asdu...)
}

// AppendSFrame appends an S-format APDU acknowledging up to recvSeq.
func AppendSFrame(dst []byte, recvSeq uint16) []byte {
	dst = append(dst, startByte, 4, 0x01, 0x00)
	return binary.LittleEndian.AppendUint16(dst, (recvSeq%seqMod)<<1)
}

// AppendUFrame appends a U-format APDU with function fn (UStartDTCon...).
func AppendUFrame(dst []byte, fn uint8) []byte {
	return append(dst, startByte, 4, fn, 0, 0, 0)
}

// Type identifications (IEC 60870-5-101 §7.2.1.1) that pcapot knows.
const (
	MSpNa1 = 1   // single-point information
	MDpNa1 = 3   // double-point information
	MStNa1 = 5   // step position information
	MMeNa1 = 9   // measured value, normalized
	MMeNb1 = 11  // measured value, scaled
	MMeNc1 = 13  // measured value, short floating point
	MItNa1 = 15  // integrated totals
	MSpTb1 = 30  // single-point with CP56Time2a
	MDpTb1 = 31  // double-point with CP56Time2a
	MMeTd1 = 34  // normalized with CP56Time2a
	MMeTe1 = 35  // scaled with CP56Time2a
	MMeTf1 = 36  // short float with CP56Time2a
	MItTb1 = 37  // integrated totals with CP56Time2a
	CScNa1 = 45  // single command
	CDcNa1 = 46  // double command
	CRcNa1 = 47  // regulating step command
	CSeNa1 = 48  // set point, normalized
	CSeNb1 = 49  // set point, scaled
	CSeNc1 = 50  // set point, short floating point
	CBoNa1 = 51  // bitstring of 32 bit command
	CScTa1 = 58  // single command with CP56Time2a
	CDcTa1 = 59  // double command with CP56Time2a
	CSeTa1 = 61  // set point normalized with CP56Time2a
	CSeTb1 = 62  // set point scaled with CP56Time2a
	CSeTc1 = 63  // set point float with CP56Time2a
	MEiNa1 = 70  // end of initialization
	CIcNa1 = 100 // interrogation command
	CCiNa1 = 101 // counter interrogation command
	CRdNa1 = 102 // read command
	CCsNa1 = 103 // clock synchronization command
	CTsNa1 = 104 // test command
	CRpNa1 = 105 // reset process command
	CTsTa1 = 107 // test command with CP56Time2a
)

// Causes of transmission (IEC 60870-5-101 §7.2.3).
const (
	CotPeriodic     = 1
	CotBackground   = 2
	CotSpontaneous  = 3
	CotInitialized  = 4
	CotRequest      = 5
	CotActivation   = 6
	CotActCon       = 7
	CotDeactivation = 8
	CotDeactCon     = 9
	CotActTerm      = 10
	CotRetRem       = 11
	CotRetLoc       = 12
	CotInrogen      = 20 // interrogated by station interrogation; 21..36 groups 1..16
	CotReqcogen     = 37 // requested by general counter request; 38..41 groups 1..4
	CotUnknownType  = 44
	CotUnknownCOT   = 45
	CotUnknownCA    = 46
	CotUnknownIOA   = 47
)

// Qualifier-of-interrogation values.
const (
	QOIStation = 20
)

// GlobalCA is the broadcast common address.
const GlobalCA = 0xFFFF

var typeNames = map[uint8]string{
	MSpNa1: "M_SP_NA_1", MDpNa1: "M_DP_NA_1", MStNa1: "M_ST_NA_1", MMeNa1: "M_ME_NA_1",
	MMeNb1: "M_ME_NB_1", MMeNc1: "M_ME_NC_1", MItNa1: "M_IT_NA_1", MSpTb1: "M_SP_TB_1",
	MDpTb1: "M_DP_TB_1", MMeTd1: "M_ME_TD_1", MMeTe1: "M_ME_TE_1", MMeTf1: "M_ME_TF_1",
	MItTb1: "M_IT_TB_1", CScNa1: "C_SC_NA_1", CDcNa1: "C_DC_NA_1", CRcNa1: "C_RC_NA_1",
	CSeNa1: "C_SE_NA_1", CSeNb1: "C_SE_NB_1", CSeNc1: "C_SE_NC_1", CBoNa1: "C_BO_NA_1",
	CScTa1: "C_SC_TA_1", CDcTa1: "C_DC_TA_1", CSeTa1: "C_SE_TA_1", CSeTb1: "C_SE_TB_1",
	CSeTc1: "C_SE_TC_1", MEiNa1: "M_EI_NA_1", CIcNa1: "C_IC_NA_1", CCiNa1: "C_CI_NA_1",
	CRdNa1: "C_RD_NA_1", CCsNa1: "C_CS_NA_1", CTsNa1: "C_TS_NA_1", CRpNa1: "C_RP_NA_1",
	CTsTa1: "C_TS_TA_1",
}

// TypeName returns the IEC mnemonic of a type identification ("M_SP_NA_1"), or
// "type_<n>" for types pcapot does not know.
func TypeName(t uint8) string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type_%d", t)
}

// TypeByName is the inverse of TypeName for known types.
func TypeByName(s string) (uint8, bool) {
	for t, n := range typeNames {
		if n == s {
			return t, true
		}
	}
	return 0, false
}

// ElementSize returns the length of the information element set (without the 3-octet
// IOA) of one information object of type t, or false for unknown types.
func ElementSize(t uint8) (int, bool) {
	switch t {
	case MSpNa1, MDpNa1:
		return 1, true
	case MStNa1:
		return 2, true
	case MMeNa1, MMeNb1:
		return 3, true
	case MMeNc1, MItNa1:
		return 5, true
	case MSpTb1, MDpTb1:
		return 1 + 7, true
	case MMeTd1, MMeTe1:
		return 3 + 7, true
	case MMeTf1, MItTb1:
		return 5 + 7, true
	case CScNa1, CDcNa1, CRcNa1:
		return 1, true
	case CSeNa1, CSeNb1:
		return 3, true
	case CSeNc1:
		return 5, true
	case CBoNa1:
		return 4, true
	case CScTa1, CDcTa1:
		return 1 + 7, true
	case CSeTa1, CSeTb1:
		return 3 + 7, true
	case CSeTc1:
		return 5 + 7, true
	case MEiNa1:
		return 1, true
	case CIcNa1, CCiNa1, CRpNa1:
		return 1, true
	case CRdNa1:
		return 0, true
	case CCsNa1:
		return 7, true
	case CTsNa1:
		return 2, true
	case CTsTa1:
		return 2 + 7, true
	}
	return 0, false
}

// ASDU header sizes for the 104 profile: 2-octet COT, 2-octet common address,
// 3-octet information object address.
const (
	asduHeaderLen = 6
	ioaLen        = 3
)

// ASDU is a parsed application service data unit (104 profile).
type ASDU struct {
	Type uint8
	// SQ is the sequence bit of the variable structure qualifier; Num the number of
	// information objects (or elements when SQ is set).
	SQ  bool
	Num int
	// COT is the cause of transmission (6 bits); Negative the P/N bit; Test the T bit.
	COT        uint8
	Negative   bool
	Test       bool
	Originator uint8
	CommonAddr uint16
	// Body is everything after the data unit identifier: the information objects.
	Body []byte
}

// ParseASDU parses the data unit identifier of an ASDU. Body is a sub-slice of b.
func ParseASDU(b []byte) (ASDU, error) {
	if len(b) < asduHeaderLen {
		return ASDU{}, fmt.Errorf("%w: %d octets", ErrBadASDU, len(b))
	}
	return ASDU{
		Type:       b[0],
		SQ:         b[1]&0x80 != 0,
		Num:        int(b[1] & 0x7F),
		COT:        b[2] & 0x3F,
		Negative:   b[2]&0x40 != 0,
		Test:       b[2]&0x80 != 0,
		Originator: b[3],
		CommonAddr: binary.LittleEndian.Uint16(b[4:6]),
		Body:       b[6:],
	}, nil
}

// AppendHeader appends the data unit identifier of a.
func (a ASDU) AppendHeader(dst []byte) []byte {
	vsq := byte(a.Num & 0x7F)
	if a.SQ {
		vsq |= 0x80
	}
	cot := a.COT & 0x3F
	if a.Negative {
		cot |= 0x40
	}
	if a.Test {
		cot |= 0x80
	}
	dst = append(dst, a.Type, vsq, cot, a.Originator)
	return binary.LittleEndian.AppendUint16(dst, a.CommonAddr)
}

// Object is one information object of an ASDU with SQ=0: its address and element octets.
type Object struct {
	IOA     uint32
	Element []byte
}

// Objects splits the body of a (known type, SQ=0 or SQ=1) into information objects.
// The body length must match Num exactly.
func (a ASDU) Objects() ([]Object, error) {
	size, ok := ElementSize(a.Type)
	if !ok {
		return nil, fmt.Errorf("%w: unknown type %d", ErrBadASDU, a.Type)
	}
	if a.Num == 0 {
		return nil, fmt.Errorf("%w: no information objects", ErrBadASDU)
	}
	want := a.Num * (ioaLen + size)
	if a.SQ {
		want = ioaLen + a.Num*size
	}
	if len(a.Body) != want {
		return nil, fmt.Errorf("%w: body %d octets, want %d", ErrBadASDU, len(a.Body), want)
	}
	objs := make([]Object, 0, a.Num)
	b := a.Body
	if a.SQ {
		base := ioa(b)
		for i := range a.Num {
			off := ioaLen + i*size
			objs = append(objs, Object{IOA: (base + uint32(i)) & 0xFFFFFF, Element: b[off : off+size]})
		}
		return objs, nil
	}
	for len(b) > 0 {
		objs = append(objs, Object{IOA: ioa(b), Element: b[ioaLen : ioaLen+size]})
		b = b[ioaLen+size:]
	}
	return objs, nil
}

func ioa(b []byte) uint32 { return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 }

// AppendIOA appends a 3-octet information object address.
func AppendIOA(dst []byte, a uint32) []byte {
	return append(dst, byte(a), byte(a>>8), byte(a>>16))
}

// CP56Time2a is the 7-octet binary time of IEC 60870-5-4 §6.8.
type CP56Time2a struct {
	Time time.Time
	// Invalid is the IV bit, Summer the SU bit.
	Invalid, Summer bool
}

// ParseCP56Time2a decodes 7 octets. The year is 2000+YY. Fields out of range
// (minute 60, month 13...) are an error.
func ParseCP56Time2a(b []byte) (CP56Time2a, error) {
	if len(b) < 7 {
		return CP56Time2a{}, fmt.Errorf("%w: CP56Time2a needs 7 octets", ErrShortFrame)
	}
	ms := int(binary.LittleEndian.Uint16(b[0:2]))
	minute := int(b[2] & 0x3F)
	hour := int(b[3] & 0x1F)
	day := int(b[4] & 0x1F)
	month := int(b[5] & 0x0F)
	year := 2000 + int(b[6]&0x7F)
	if ms > 59999 || minute > 59 || hour > 23 || day < 1 || month < 1 || month > 12 {
		return CP56Time2a{}, fmt.Errorf("%w: CP56Time2a out of range % x", ErrBadASDU, b[:7])
	}
	t := time.Date(year, time.Month(month), day, hour, minute, ms/1000, (ms%1000)*int(time.Millisecond), time.UTC)
	return CP56Time2a{Time: t, Invalid: b[2]&0x80 != 0, Summer: b[3]&0x80 != 0}, nil
}

// AppendCP56Time2a appends t (in UTC) as CP56Time2a, with day of week.
func AppendCP56Time2a(dst []byte, c CP56Time2a) []byte {
	t := c.Time.UTC()
	ms := uint16(t.Second()*1000 + t.Nanosecond()/int(time.Millisecond))
	dst = binary.LittleEndian.AppendUint16(dst, ms)
	minute := byte(t.Minute())
	if c.Invalid {
		minute |= 0x80
	}
	hour := byte(t.Hour())
	if c.Summer {
		hour |= 0x80
	}
	dow := int(t.Weekday())
	if dow == 0 {
		dow = 7
	}
	day := byte(t.Day()) | byte(dow)<<5
	return append(dst, minute, hour, day, byte(t.Month()), byte(t.Year()%100))
}

// Quality descriptor bits (QDS, SIQ, DIQ upper bits).
const (
	QualOverflow    = 0x01
	QualBlocked     = 0x10
	QualSubstituted = 0x20
	QualNotTopical  = 0x40
	QualInvalid     = 0x80
)

// Command qualifier bits.
const (
	selectBit = 0x80 // S/E in SCO, DCO, QOS
)

// AppendFloat appends an IEEE 754 short floating point value.
func AppendFloat(dst []byte, f float32) []byte {
	return binary.LittleEndian.AppendUint32(dst, math.Float32bits(f))
}

// Float decodes an IEEE 754 short floating point value from 4 octets.
func Float(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }
