package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Opcodes (RFC 1350 §5, RFC 2347).
const (
	OpRRQ   uint16 = 1
	OpWRQ   uint16 = 2
	OpDATA  uint16 = 3
	OpACK   uint16 = 4
	OpERROR uint16 = 5
	OpOACK  uint16 = 6
)

// Error codes (RFC 1350 appendix, RFC 2347).
const (
	ErrUndefined     uint16 = 0
	ErrNotFound      uint16 = 1
	ErrAccess        uint16 = 2
	ErrDiskFull      uint16 = 3
	ErrIllegalOp     uint16 = 4
	ErrUnknownTID    uint16 = 5
	ErrFileExists    uint16 = 6
	ErrNoSuchUser    uint16 = 7
	ErrOptionRefused uint16 = 8
)

// errorText is the message the server sends with each error code.
var errorText = map[uint16]string{
	ErrUndefined:     "Undefined error code",
	ErrNotFound:      "File not found",
	ErrAccess:        "Access violation",
	ErrDiskFull:      "Disk full or allocation exceeded",
	ErrIllegalOp:     "Illegal TFTP operation",
	ErrUnknownTID:    "Unknown transfer ID",
	ErrFileExists:    "File already exists",
	ErrNoSuchUser:    "No such user",
	ErrOptionRefused: "Failure to negotiate RFC2347 options",
}

// Block sizes (RFC 1350, RFC 2348).
const (
	DefaultBlockSize = 512
	MinBlockSize     = 8
	MaxBlockSize     = 65464
)

// Wire errors.
var (
	// ErrShort means a packet is shorter than its opcode requires.
	ErrShort = errors.New("tftp: short packet")
	// ErrOpcode means an opcode outside 1-6.
	ErrOpcode = errors.New("tftp: unknown opcode")
	// ErrString means a request field is not NUL-terminated.
	ErrString = errors.New("tftp: unterminated string")
	// ErrEmptyName means a request without a file name.
	ErrEmptyName = errors.New("tftp: empty file name")
)

// Opcode returns the opcode of a packet.
func Opcode(p []byte) (uint16, error) {
	if len(p) < 2 {
		return 0, ErrShort
	}
	op := binary.BigEndian.Uint16(p)
	if op < OpRRQ || op > OpOACK {
		return op, ErrOpcode
	}
	return op, nil
}

// Option is one RFC 2347 option of a request or an OACK, in the order sent.
type Option struct {
	Name, Value string
}

// Request is a read or write request.
type Request struct {
	Op       uint16
	Filename string
	Mode     string // as sent
	Options  []Option
}

// Option returns the value of the first option named name (case-insensitive).
func (r Request) Option(name string) (string, bool) {
	for _, o := range r.Options {
		if strings.EqualFold(o.Name, name) {
			return o.Value, true
		}
	}
	return "", false
}

// ParseRequest parses an RRQ or WRQ: opcode, filename NUL, mode NUL, then option
// name NUL value NUL pairs. Bytes after the last complete pair are ignored, as
// servers do with the padding some clients add.
func ParseRequest(p []byte) (Request, error) {
	op, err := Opcode(p)
	if err != nil {
		return Request{}, err
	}
	if op != OpRRQ && op != OpWRQ {
		return Request{}, fmt.Errorf("tftp: opcode %d is not a request: %w", op, ErrOpcode)
	}
	r := Request{Op: op}
	rest := p[2:]
	fields := make([]string, 0, 8)
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			if len(fields) < 2 {
				return Request{}, ErrString
			}
			break
		}
		fields = append(fields, string(rest[:i]))
		rest = rest[i+1:]
	}
	if len(fields) < 2 {
		return Request{}, ErrString
	}
	r.Filename, r.Mode = fields[0], fields[1]
	if r.Filename == "" {
		return r, ErrEmptyName
	}
	for i := 2; i+1 < len(fields); i += 2 {
		r.Options = append(r.Options, Option{Name: fields[i], Value: fields[i+1]})
	}
	return r, nil
}

// AppendRequest appends an RRQ or WRQ.
func AppendRequest(dst []byte, r Request) []byte {
	dst = binary.BigEndian.AppendUint16(dst, r.Op)
	dst = append(append(dst, r.Filename...), 0)
	dst = append(append(dst, r.Mode...), 0)
	for _, o := range r.Options {
		dst = append(append(dst, o.Name...), 0)
		dst = append(append(dst, o.Value...), 0)
	}
	return dst
}

// ParseBlock parses a DATA or ACK packet: the block number and, for DATA, the data.
func ParseBlock(p []byte) (op, block uint16, data []byte, err error) {
	if op, err = Opcode(p); err != nil {
		return op, 0, nil, err
	}
	if op != OpDATA && op != OpACK {
		return op, 0, nil, fmt.Errorf("tftp: opcode %d is not DATA or ACK: %w", op, ErrOpcode)
	}
	if len(p) < 4 {
		return op, 0, nil, ErrShort
	}
	return op, binary.BigEndian.Uint16(p[2:]), p[4:], nil
}

// AppendData appends a DATA packet.
func AppendData(dst []byte, block uint16, data []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, OpDATA)
	dst = binary.BigEndian.AppendUint16(dst, block)
	return append(dst, data...)
}

// AppendACK appends an ACK packet.
func AppendACK(dst []byte, block uint16) []byte {
	dst = binary.BigEndian.AppendUint16(dst, OpACK)
	return binary.BigEndian.AppendUint16(dst, block)
}

// ParseError parses an ERROR packet: the code and the message (up to its NUL).
func ParseError(p []byte) (code uint16, msg string, err error) {
	op, err := Opcode(p)
	if err != nil {
		return 0, "", err
	}
	if op != OpERROR {
		return 0, "", fmt.Errorf("tftp: opcode %d is not ERROR: %w", op, ErrOpcode)
	}
	if len(p) < 4 {
		return 0, "", ErrShort
	}
	m := p[4:]
	if i := bytes.IndexByte(m, 0); i >= 0 {
		m = m[:i]
	}
	return binary.BigEndian.Uint16(p[2:]), string(m), nil
}

// AppendError appends an ERROR packet with the standard message of code.
func AppendError(dst []byte, code uint16) []byte {
	dst = binary.BigEndian.AppendUint16(dst, OpERROR)
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(append(dst, errorText[code]...), 0)
}

// AppendOACK appends an option acknowledgement.
func AppendOACK(dst []byte, opts []Option) []byte {
	dst = binary.BigEndian.AppendUint16(dst, OpOACK)
	for _, o := range opts {
		dst = append(append(dst, o.Name...), 0)
		dst = append(append(dst, o.Value...), 0)
	}
	return dst
}

// ParseOACK parses an option acknowledgement.
func ParseOACK(p []byte) ([]Option, error) {
	op, err := Opcode(p)
	if err != nil {
		return nil, err
	}
	if op != OpOACK {
		return nil, fmt.Errorf("tftp: opcode %d is not OACK: %w", op, ErrOpcode)
	}
	var opts []Option
	rest := p[2:]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return nil, ErrString
		}
		j := bytes.IndexByte(rest[i+1:], 0)
		if j < 0 {
			return nil, ErrString
		}
		opts = append(opts, Option{Name: string(rest[:i]), Value: string(rest[i+1 : i+1+j])})
		rest = rest[i+2+j:]
	}
	return opts, nil
}

// parseUint parses a decimal option value in [lo, hi].
func parseUint(v string, lo, hi int64) (int64, bool) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi || strings.TrimSpace(v) != v || strings.HasPrefix(v, "+") {
		return 0, false
	}
	return n, true
}

// netASCII converts file bytes to the netascii of the wire (RFC 764): LF becomes
// CR LF and CR becomes CR NUL.
func netASCII(dst, src []byte) []byte {
	for _, c := range src {
		switch c {
		case '\n':
			dst = append(dst, '\r', '\n')
		case '\r':
			dst = append(dst, '\r', 0)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
