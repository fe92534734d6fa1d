package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire-level sizes of Modbus TCP (Modbus Messaging on TCP/IP Implementation Guide
// v1.0b; Modbus Application Protocol Specification v1.1b3 §4.1).
const (
	// HeaderLen is the length of the MBAP header, unit identifier included.
	HeaderLen = 7
	// MaxPDULen is the largest PDU (function code + data).
	MaxPDULen = 253
	// MaxADULen is the largest Modbus TCP ADU: MBAP header + PDU.
	MaxADULen = HeaderLen + MaxPDULen
	// maxLengthField is the largest MBAP length field: unit identifier + PDU.
	maxLengthField = 1 + MaxPDULen
)

// Function codes (public function codes of the specification, §5.1).
const (
	FuncReadCoils                  byte = 0x01
	FuncReadDiscreteInputs         byte = 0x02
	FuncReadHoldingRegisters       byte = 0x03
	FuncReadInputRegisters         byte = 0x04
	FuncWriteSingleCoil            byte = 0x05
	FuncWriteSingleRegister        byte = 0x06
	FuncDiagnostics                byte = 0x08
	FuncWriteMultipleCoils         byte = 0x0F
	FuncWriteMultipleRegisters     byte = 0x10
	FuncReportServerID             byte = 0x11
	FuncMaskWriteRegister          byte = 0x16
	FuncReadWriteMultipleRegisters byte = 0x17
	FuncEncapsulatedInterface      byte = 0x2B

	// MEIReadDeviceID is the MEI type of Read Device Identification (FC 43 / 14).
	MEIReadDeviceID byte = 0x0E

	// exceptionFlag is set in the function code of an exception response.
	exceptionFlag byte = 0x80
)

// Quantity limits of the specification (§6.1–§6.17).
const (
	MaxReadBits        = 2000 // FC 1, 2: 0x07D0
	MaxReadRegisters   = 125  // FC 3, 4, 23 (read part): 0x7D
	MaxWriteBits       = 1968 // FC 15: 0x07B0
	MaxWriteRegisters  = 123  // FC 16: 0x7B
	MaxRWWriteRegister = 121  // FC 23 (write part): 0x79
)

// Coil values of Write Single Coil (FC 5).
const (
	CoilOn  uint16 = 0xFF00
	CoilOff uint16 = 0x0000
)

// Exception is a Modbus exception code (§7).
type Exception byte

// Exception codes.
const (
	IllegalFunction                    Exception = 0x01
	IllegalDataAddress                 Exception = 0x02
	IllegalDataValue                   Exception = 0x03
	ServerDeviceFailure                Exception = 0x04
	Acknowledge                        Exception = 0x05
	ServerDeviceBusy                   Exception = 0x06
	MemoryParityError                  Exception = 0x08
	GatewayPathUnavailable             Exception = 0x0A
	GatewayTargetDeviceFailedToRespond Exception = 0x0B
)

func (e Exception) String() string {
	switch e {
	case IllegalFunction:
		return "illegal function"
	case IllegalDataAddress:
		return "illegal data address"
	case IllegalDataValue:
		return "illegal data value"
	case ServerDeviceFailure:
		return "server device failure"
	case Acknowledge:
		return "acknowledge"
	case ServerDeviceBusy:
		return "server device busy"
	case MemoryParityError:
		return "memory parity error"
	case GatewayPathUnavailable:
		return "gateway path unavailable"
	case GatewayTargetDeviceFailedToRespond:
		return "gateway target device failed to respond"
	}
	return fmt.Sprintf("exception 0x%02x", byte(e))
}

// Wire errors.
var (
	// ErrShortFrame means the buffer does not hold a complete frame yet.
	ErrShortFrame = errors.New("modbus: short frame")
	// ErrFrameLength means the MBAP length field is outside 1..254: the stream cannot
	// be resynchronised.
	ErrFrameLength = errors.New("modbus: MBAP length out of range")
	// ErrProtocolID means a complete frame carries a protocol identifier other than 0.
	ErrProtocolID = errors.New("modbus: protocol identifier is not 0")
	// ErrEmptyPDU means a complete frame carries no function code.
	ErrEmptyPDU = errors.New("modbus: empty PDU")
	// ErrPDULength means the PDU is shorter or longer than its function requires.
	ErrPDULength = errors.New("modbus: PDU length does not match the function")
	// ErrByteCount means a byte count field disagrees with the bytes that follow it.
	ErrByteCount = errors.New("modbus: byte count does not match the data")
)

// Header is the MBAP header of a Modbus TCP frame.
type Header struct {
	Transaction uint16
	Protocol    uint16
	// Length counts the bytes after the length field: unit identifier and PDU.
	Length uint16
	Unit   byte
}

// ParseHeader decodes the MBAP header at the start of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShortFrame
	}
	return Header{
		Transaction: binary.BigEndian.Uint16(b[0:2]),
		Protocol:    binary.BigEndian.Uint16(b[2:4]),
		Length:      binary.BigEndian.Uint16(b[4:6]),
		Unit:        b[6],
	}, nil
}

// ParseFrame returns the first complete frame of b: its header, its PDU (a sub-slice
// of b) and the number of bytes it takes.
//
// With ErrShortFrame, b holds no complete frame yet and n is 0. With ErrFrameLength
// the header is invalid and n is 0. With ErrProtocolID or ErrEmptyPDU the frame is
// complete and n covers it, so the caller can skip it.
func ParseFrame(b []byte) (h Header, pdu []byte, n int, err error) {
	h, err = ParseHeader(b)
	if err != nil {
		return h, nil, 0, err
	}
	if h.Length < 1 || h.Length > maxLengthField {
		return h, nil, 0, ErrFrameLength
	}
	n = HeaderLen - 1 + int(h.Length)
	if len(b) < n {
		return h, nil, 0, ErrShortFrame
	}
	pdu = b[HeaderLen:n:n]
	switch {
	case h.Protocol != 0:
		return h, pdu, n, ErrProtocolID
	case len(pdu) == 0:
		return h, pdu, n, ErrEmptyPDU
	}
	return h, pdu, n, nil
}

// AppendHeader appends h to dst as it stands, length field included.
func AppendHeader(dst []byte, h Header) []byte {
	dst = binary.BigEndian.AppendUint16(dst, h.Transaction)
	dst = binary.BigEndian.AppendUint16(dst, h.Protocol)
	dst = binary.BigEndian.AppendUint16(dst, h.Length)
	return append(dst, h.Unit)
}

// AppendFrame appends a frame carrying pdu, with h's transaction, protocol and unit
// identifiers and the length field computed from pdu.
func AppendFrame(dst []byte, h Header, pdu []byte) []byte {
	h.Length = uint16(1 + len(pdu))
	return append(AppendHeader(dst, h), pdu...)
}

// AppendException appends the exception response PDU for function code fc.
func AppendException(dst []byte, fc byte, e Exception) []byte {
	return append(dst, fc|exceptionFlag, byte(e))
}

// ParseException decodes an exception response PDU.
func ParseException(pdu []byte) (fc byte, e Exception, ok bool) {
	if len(pdu) != 2 || pdu[0]&exceptionFlag == 0 {
		return 0, 0, false
	}
	return pdu[0] &^ exceptionFlag, Exception(pdu[1]), true
}

// Range is a starting address and a quantity: the request of FC 1–4 and the response
// of FC 15 and 16.
type Range struct {
	Address, Quantity uint16
}

// ParseRange decodes the request PDU of FC 1, 2, 3 or 4.
func ParseRange(pdu []byte) (Range, error) {
	if len(pdu) != 5 {
		return Range{}, ErrPDULength
	}
	return Range{Address: be16(pdu[1:]), Quantity: be16(pdu[3:])}, nil
}

// AppendRange appends a PDU made of fc, an address and a quantity.
func AppendRange(dst []byte, fc byte, r Range) []byte {
	dst = append(dst, fc)
	dst = binary.BigEndian.AppendUint16(dst, r.Address)
	return binary.BigEndian.AppendUint16(dst, r.Quantity)
}

// SingleWrite is the request (and echoed response) of FC 5 and 6.
type SingleWrite struct {
	Address, Value uint16
}

// ParseSingleWrite decodes the request PDU of FC 5 or 6.
func ParseSingleWrite(pdu []byte) (SingleWrite, error) {
	if len(pdu) != 5 {
		return SingleWrite{}, ErrPDULength
	}
	return SingleWrite{Address: be16(pdu[1:]), Value: be16(pdu[3:])}, nil
}

// MultipleWrite is the request of FC 15 and 16. Values aliases the PDU.
type MultipleWrite struct {
	Address, Quantity uint16
	Values            []byte
}

// ParseMultipleWrite decodes the request PDU of FC 15 or 16. It checks that the byte
// count matches the bytes that follow; whether it matches the quantity is the
// caller's check (exception 03 either way).
func ParseMultipleWrite(pdu []byte) (MultipleWrite, error) {
	if len(pdu) < 6 {
		return MultipleWrite{}, ErrPDULength
	}
	w := MultipleWrite{Address: be16(pdu[1:]), Quantity: be16(pdu[3:])}
	if int(pdu[5]) != len(pdu)-6 {
		return w, ErrByteCount
	}
	w.Values = pdu[6:]
	return w, nil
}

// MaskWrite is the request (and echoed response) of FC 22.
type MaskWrite struct {
	Address, AndMask, OrMask uint16
}

// ParseMaskWrite decodes the request PDU of FC 22.
func ParseMaskWrite(pdu []byte) (MaskWrite, error) {
	if len(pdu) != 7 {
		return MaskWrite{}, ErrPDULength
	}
	return MaskWrite{Address: be16(pdu[1:]), AndMask: be16(pdu[3:]), OrMask: be16(pdu[5:])}, nil
}

// Apply returns the register value after the mask write (§6.16):
// (current AND and_mask) OR (or_mask AND (NOT and_mask)).
func (m MaskWrite) Apply(current uint16) uint16 {
	return current&m.AndMask | m.OrMask&^m.AndMask
}

// ReadWrite is the request of FC 23. Values aliases the PDU.
type ReadWrite struct {
	Read, Write Range
	Values      []byte
}

// ParseReadWrite decodes the request PDU of FC 23.
func ParseReadWrite(pdu []byte) (ReadWrite, error) {
	if len(pdu) < 10 {
		return ReadWrite{}, ErrPDULength
	}
	rw := ReadWrite{
		Read:  Range{Address: be16(pdu[1:]), Quantity: be16(pdu[3:])},
		Write: Range{Address: be16(pdu[5:]), Quantity: be16(pdu[7:])},
	}
	if int(pdu[9]) != len(pdu)-10 {
		return rw, ErrByteCount
	}
	rw.Values = pdu[10:]
	return rw, nil
}

// Diagnostic is the request of FC 8. Data aliases the PDU.
type Diagnostic struct {
	SubFunction uint16
	Data        []byte
}

// ParseDiagnostic decodes the request PDU of FC 8. Every sub-function carries at
// least one 16-bit data word.
func ParseDiagnostic(pdu []byte) (Diagnostic, error) {
	if len(pdu) < 5 {
		return Diagnostic{}, ErrPDULength
	}
	return Diagnostic{SubFunction: be16(pdu[1:]), Data: pdu[3:]}, nil
}

// DeviceIDRequest is the request of FC 43 / MEI 14.
type DeviceIDRequest struct {
	// Code is the Read Device ID code: 1 basic, 2 regular, 3 extended (stream
	// access), 4 one specific object (individual access).
	Code     byte
	ObjectID byte
}

// ParseDeviceIDRequest decodes the request PDU of FC 43 / MEI 14.
func ParseDeviceIDRequest(pdu []byte) (DeviceIDRequest, error) {
	if len(pdu) != 4 || pdu[1] != MEIReadDeviceID {
		return DeviceIDRequest{}, ErrPDULength
	}
	return DeviceIDRequest{Code: pdu[2], ObjectID: pdu[3]}, nil
}

// DeviceObject is one device identification object.
type DeviceObject struct {
	ID    byte
	Value []byte
}

// DeviceIDResponse is the response of FC 43 / MEI 14.
type DeviceIDResponse struct {
	Code        byte
	Conformity  byte
	MoreFollows bool
	NextObject  byte
	Objects     []DeviceObject
}

// deviceIDHeaderLen is the fixed part of a Read Device ID response PDU.
const deviceIDHeaderLen = 7

// AppendDeviceIDResponse appends the response PDU r.
func AppendDeviceIDResponse(dst []byte, r DeviceIDResponse) []byte {
	more := byte(0x00)
	if r.MoreFollows {
		more = 0xFF
	}
	dst = append(dst, FuncEncapsulatedInterface, MEIReadDeviceID, r.Code, r.Conformity, more, r.NextObject, byte(len(r.Objects)))
	for _, o := range r.Objects {
		dst = append(dst, o.ID, byte(len(o.Value)))
		dst = append(dst, o.Value...)
	}
	return dst
}

// ParseDeviceIDResponse decodes a Read Device ID response PDU. Object values alias
// pdu.
func ParseDeviceIDResponse(pdu []byte) (DeviceIDResponse, error) {
	if len(pdu) < deviceIDHeaderLen || pdu[0] != FuncEncapsulatedInterface || pdu[1] != MEIReadDeviceID {
		return DeviceIDResponse{}, ErrPDULength
	}
	r := DeviceIDResponse{Code: pdu[2], Conformity: pdu[3], NextObject: pdu[5]}
	switch pdu[4] {
	case 0x00:
	case 0xFF:
		r.MoreFollows = true
	default:
		return r, fmt.Errorf("modbus: more follows 0x%02x: %w", pdu[4], ErrByteCount)
	}
	n := int(pdu[6])
	rest := pdu[deviceIDHeaderLen:]
	for range n {
		if len(rest) < 2 || len(rest) < 2+int(rest[1]) {
			return r, ErrByteCount
		}
		l := int(rest[1])
		r.Objects = append(r.Objects, DeviceObject{ID: rest[0], Value: rest[2 : 2+l : 2+l]})
		rest = rest[2+l:]
	}
	if len(rest) != 0 {
		return r, ErrByteCount
	}
	return r, nil
}

// PackBits appends bits packed eight to a byte, the first bit in the least
// significant position, the last byte padded with zeros (§6.1).
func PackBits(dst []byte, bits []bool) []byte {
	for i := 0; i < len(bits); i += 8 {
		var b byte
		for j := 0; j < 8 && i+j < len(bits); j++ {
			if bits[i+j] {
				b |= 1 << j
			}
		}
		dst = append(dst, b)
	}
	return dst
}

// UnpackBits returns the first n bits packed in b, or ErrByteCount when b holds
// fewer than n bits.
func UnpackBits(b []byte, n int) ([]bool, error) {
	if n < 0 || len(b)*8 < n {
		return nil, ErrByteCount
	}
	bits := make([]bool, n)
	for i := range bits {
		bits[i] = b[i/8]&(1<<(i%8)) != 0
	}
	return bits, nil
}

// AppendRegisters appends regs big-endian.
func AppendRegisters(dst []byte, regs []uint16) []byte {
	for _, r := range regs {
		dst = binary.BigEndian.AppendUint16(dst, r)
	}
	return dst
}

// ParseRegisters decodes big-endian registers; b must have an even length.
func ParseRegisters(b []byte) ([]uint16, error) {
	if len(b)%2 != 0 {
		return nil, ErrByteCount
	}
	regs := make([]uint16, len(b)/2)
	for i := range regs {
		regs[i] = be16(b[2*i:])
	}
	return regs, nil
}

// ParseReadResponse decodes the response PDU of FC 1–4 and 23: function code, byte
// count and data. Data aliases pdu.
func ParseReadResponse(pdu []byte) (fc byte, data []byte, err error) {
	if len(pdu) < 2 {
		return 0, nil, ErrPDULength
	}
	if int(pdu[1]) != len(pdu)-2 {
		return pdu[0], nil, ErrByteCount
	}
	return pdu[0], pdu[2:], nil
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
