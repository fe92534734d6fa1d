package guardian

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Control characters of the Veeder-Root serial interface (Serial Interface Manual for
// TLS-300/350, §5 and §6).
const (
	SOH = 0x01 // start of a command and of every response
	ETX = 0x03 // end of every response
	ESC = 0x1B // aborts a response in progress
)

// Wire limits.
const (
	// FunctionLen is the length of a function code: the type letter (I, i, S, s), the
	// three-character function number and the two-digit device (tank) number.
	FunctionLen = 6
	// MaxCommandLen bounds a command from SOH to its end. The longest command this
	// console accepts (S602 with a 20-character label and a security code) is far
	// shorter; a longer one is answered as not understood.
	MaxCommandLen = 128
	// MaxLabelLen is the length of a product label (function 602).
	MaxLabelLen = 20
)

// Wire errors.
var (
	// ErrShortCommand means a command ended before its function code was complete.
	ErrShortCommand = errors.New("guardian: command shorter than a function code")
	// ErrBadFunction means the function code is not a type letter, three function
	// characters and a two-digit device number.
	ErrBadFunction = errors.New("guardian: malformed function code")
	// ErrCommandLength means a command is longer than MaxCommandLen.
	ErrCommandLength = errors.New("guardian: command too long")
)

// Format is the response format a command asks for.
type Format byte

// Response formats (§6): display for a terminal or printer, computer for a host.
const (
	Display  Format = 'D'
	Computer Format = 'C'
)

func (f Format) String() string {
	if f == Computer {
		return "computer"
	}
	return "display"
}

// Command is one command message: SOH, an optional security code, a function code
// and an optional data field.
type Command struct {
	// Security is the security code the command carried (empty when the console has
	// none configured).
	Security string
	// Type is the type letter as sent: I (inquiry, display), i (inquiry, computer),
	// S (set, display), s (set, computer).
	Type byte
	// Function is the three-character function number ("201", "602").
	Function string
	// Device is the device (tank) number: 0 for all.
	Device int
	// Data is the data field after the function code, terminator excluded.
	Data []byte
}

// Code returns the function code as sent, e.g. "I20100".
func (c Command) Code() string {
	return fmt.Sprintf("%c%s%02d", c.Type, c.Function, c.Device)
}

// Format returns the response format the command's type letter selects.
func (c Command) Format() Format {
	if c.Type == 'i' || c.Type == 's' {
		return Computer
	}
	return Display
}

// Inquiry reports whether the command is an inquiry (I or i) rather than a set command.
func (c Command) Inquiry() bool { return c.Type == 'I' || c.Type == 'i' }

// isTerminator reports whether b ends a command's data field.
func isTerminator(b byte) bool {
	return b == '\r' || b == '\n' || b == ETX || b == SOH
}

// SkipNoise returns how many bytes at the start of b precede the next SOH: bytes the
// console ignores (line ends between commands, or anything sent without SOH).
func SkipNoise(b []byte) int {
	if i := bytes.IndexByte(b, SOH); i >= 0 {
		return i
	}
	return len(b)
}

// SplitCommand finds the end of the command that starts with SOH at b[0]. It returns
// the command bytes (SOH included, terminator excluded) and the number of bytes
// consumed (the terminator included). complete is false when more bytes may still
// belong to the command; final forces a decision (no more bytes will come soon).
// secLen is the length of the security code the console expects.
//
// A command ends at CR, LF, ETX or the next SOH; an inquiry without a data field also
// ends as soon as its function code is complete, so that a client that sends
// "<SOH>I20100" and waits is answered.
func SplitCommand(b []byte, secLen int, final bool) (cmd []byte, consumed int, complete bool) {
	if len(b) == 0 || b[0] != SOH {
		return nil, 0, false
	}
	for i := 1; i < len(b); i++ {
		if isTerminator(b[i]) {
			n := i
			if b[i] != SOH {
				n++ // the terminator is part of this command; a SOH starts the next
			}
			return b[:i], n, true
		}
		if i+1 > MaxCommandLen {
			return b[:i], i, true
		}
		if i == secLen+FunctionLen && inquiryWithoutData(b[1+secLen:i+1]) {
			return b[:i+1], i + 1, true
		}
	}
	if final || len(b) >= MaxCommandLen {
		n := min(len(b), MaxCommandLen)
		return b[:n], n, true
	}
	return nil, 0, false
}

// inquiryWithoutData reports whether fc is the function code of an inquiry that
// takes no data field (every inquiry this console answers).
func inquiryWithoutData(fc []byte) bool {
	if len(fc) != FunctionLen || (fc[0] != 'I' && fc[0] != 'i') {
		return false
	}
	switch string(fc[1:4]) {
	case "201", "202", "203", "204", "205", "602":
		return isDigit(fc[4]) && isDigit(fc[5])
	}
	return false
}

// ParseCommand parses a command as SplitCommand returned it.
func ParseCommand(b []byte, secLen int) (Command, error) {
	if len(b) > MaxCommandLen {
		return Command{}, ErrCommandLength
	}
	if len(b) == 0 || b[0] != SOH {
		return Command{}, ErrShortCommand
	}
	b = b[1:]
	if len(b) < secLen+FunctionLen {
		return Command{}, ErrShortCommand
	}
	c := Command{Security: string(b[:secLen])}
	fc := b[secLen : secLen+FunctionLen]
	switch fc[0] {
	case 'I', 'i', 'S', 's':
	default:
		return c, ErrBadFunction
	}
	for _, ch := range fc[1:4] {
		if !isAlnum(ch) {
			return c, ErrBadFunction
		}
	}
	if !isDigit(fc[4]) || !isDigit(fc[5]) {
		return c, ErrBadFunction
	}
	c.Type = fc[0]
	c.Function = string(fc[1:4])
	c.Device = int(fc[4]-'0')*10 + int(fc[5]-'0')
	c.Data = b[secLen+FunctionLen:]
	return c, nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func isAlnum(b byte) bool {
	return isDigit(b) || (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z')
}

// Checksum is the computer-format checksum (§6.1): the 16-bit two's complement of the
// sum of the message bytes, so that the sum of the bytes and the checksum is zero.
func Checksum(b []byte) uint16 {
	var sum uint16
	for _, c := range b {
		sum += uint16(c)
	}
	return -sum
}

// VerifyChecksum checks a complete computer-format response, SOH ... && CCCC ETX: the
// sum of the bytes before the checksum and the checksum is zero.
func VerifyChecksum(msg []byte) bool {
	if len(msg) < 8 || msg[0] != SOH || msg[len(msg)-1] != ETX || string(msg[len(msg)-7:len(msg)-5]) != "&&" {
		return false
	}
	v, err := strconv.ParseUint(string(msg[len(msg)-5:len(msg)-1]), 16, 16)
	if err != nil {
		return false
	}
	return Checksum(msg[:len(msg)-5]) == uint16(v)
}

// NotUnderstood is the answer to a command the console does not recognise: the
// "9999" reply, its checksum and the framing.
var NotUnderstood = []byte("\x019999FF1B\x03")

// AppendDisplay appends a display-format response: SOH, the lines each ended with CR
// LF, a blank line before and after, and ETX.
func AppendDisplay(dst []byte, lines []string) []byte {
	dst = append(dst, SOH, '\r', '\n')
	for _, l := range lines {
		dst = append(dst, l...)
		dst = append(dst, '\r', '\n')
	}
	dst = append(dst, '\r', '\n')
	return append(dst, ETX)
}

// AppendComputer appends a computer-format response: SOH, the body (function code
// and data field), "&&", the checksum in four upper-case hex digits and ETX.
func AppendComputer(dst []byte, body []byte) []byte {
	start := len(dst)
	dst = append(dst, SOH)
	dst = append(dst, body...)
	dst = append(dst, '&', '&')
	dst = fmt.Appendf(dst, "%04X", Checksum(dst[start:]))
	return append(dst, ETX)
}

// AppendFloat appends an ASCII-hex IEEE single-precision float (§6.3): eight
// upper-case hex digits of the big-endian bit pattern.
func AppendFloat(dst []byte, v float64) []byte {
	return fmt.Appendf(dst, "%08X", math.Float32bits(float32(v)))
}

// ParseFloat decodes an ASCII-hex IEEE float.
func ParseFloat(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("guardian: float field %q: want 8 hex digits", b)
	}
	v, err := strconv.ParseUint(string(b), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("guardian: float field %q: %w", b, err)
	}
	return float64(math.Float32frombits(uint32(v))), nil
}
