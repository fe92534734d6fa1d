package ftp

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Wire limits.
const (
	// MaxLineLen bounds a command line, CR LF included. RFC 959 sets no limit;
	// embedded servers read into fixed buffers of a few hundred bytes.
	MaxLineLen = 1024
	// maxVerbLen is the longest command verb (RFC 959 verbs have 3 or 4 letters;
	// extensions such as "XPWD" too).
	maxVerbLen = 4
)

// Wire errors.
var (
	// ErrEmptyLine means a command line holds no verb.
	ErrEmptyLine = errors.New("ftp: empty command line")
	// ErrVerb means the verb is not 3 or 4 ASCII letters.
	ErrVerb = errors.New("ftp: malformed command verb")
	// ErrHostPort means a PORT, PASV, EPRT or EPSV address is malformed.
	ErrHostPort = errors.New("ftp: malformed host-port")
	// ErrNetProto means an EPRT network protocol other than 1 (IPv4) or 2 (IPv6).
	ErrNetProto = errors.New("ftp: unsupported network protocol")
)

// Telnet command bytes the control connection may carry (RFC 854): clients send
// "IAC IP IAC DM" before ABOR.
const (
	iac  = 0xFF
	will = 0xFB
	dont = 0xFE
)

// StripTelnet removes Telnet commands from a control line: IAC and the byte after
// it (and the option byte of WILL, WONT, DO, DONT); IAC IAC stands for a 0xFF byte.
func StripTelnet(b []byte) []byte {
	if bytes.IndexByte(b, iac) < 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != iac {
			out = append(out, b[i])
			continue
		}
		if i+1 >= len(b) {
			break
		}
		i++
		switch {
		case b[i] == iac:
			out = append(out, iac)
		case b[i] >= will && b[i] <= dont:
			i++ // the option byte
		}
	}
	return out
}

// ParseCommand splits a command line (line end excluded) into its verb, upper-cased,
// and its argument: everything after the first space. Telnet commands are removed.
func ParseCommand(line []byte) (verb, arg string, err error) {
	line = bytes.TrimRight(StripTelnet(line), "\r\n")
	line = bytes.TrimLeft(line, " ")
	if len(line) == 0 {
		return "", "", ErrEmptyLine
	}
	v, a, _ := bytes.Cut(line, []byte(" "))
	if len(v) < 3 || len(v) > maxVerbLen {
		return string(v), string(a), ErrVerb
	}
	for _, c := range v {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return string(v), string(a), ErrVerb
		}
	}
	return strings.ToUpper(string(v)), string(a), nil
}

// AppendReply appends a reply: "code text" and CR LF; a text of several lines becomes
// a multi-line reply ("code-first", the middle lines, "code last").
func AppendReply(dst []byte, code int, text string) []byte {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		l = strings.TrimRight(l, "\r")
		switch {
		case i == len(lines)-1:
			dst = fmt.Appendf(dst, "%03d %s\r\n", code, l)
		case i == 0:
			dst = fmt.Appendf(dst, "%03d-%s\r\n", code, l)
		default:
			dst = fmt.Appendf(dst, "%s\r\n", l)
		}
	}
	return dst
}

// ParseReply parses one complete reply (single or multi-line) at the start of b and
// returns its code, its text lines and the bytes it took; n is 0 when b does not hold
// a complete reply yet.
func ParseReply(b []byte) (code int, lines []string, n int, err error) {
	first, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok {
		return 0, nil, 0, nil
	}
	if len(first) < 4 || (first[3] != ' ' && first[3] != '-') {
		return 0, nil, 0, fmt.Errorf("ftp: malformed reply line %q", first)
	}
	code, err = strconv.Atoi(string(first[:3]))
	if err != nil || code < 100 || code > 599 {
		return 0, nil, 0, fmt.Errorf("ftp: malformed reply code %q", first[:3])
	}
	n = len(first) + 2
	lines = append(lines, string(first[4:]))
	if first[3] == ' ' {
		return code, lines, n, nil
	}
	end := fmt.Sprintf("%03d ", code)
	for {
		l, r, ok := bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			return 0, nil, 0, nil
		}
		n += len(l) + 2
		rest = r
		if strings.HasPrefix(string(l), end) {
			return code, append(lines, string(l[4:])), n, nil
		}
		lines = append(lines, string(l))
	}
}

// ParseHostPort parses the h1,h2,h3,h4,p1,p2 form of PORT and of the PASV reply.
func ParseHostPort(s string) (netip.AddrPort, error) {
	parts := strings.Split(strings.TrimSpace(s), ",")
	if len(parts) != 6 {
		return netip.AddrPort{}, ErrHostPort
	}
	var v [6]byte
	for i, p := range parts {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 8)
		if err != nil {
			return netip.AddrPort{}, ErrHostPort
		}
		v[i] = byte(n)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(v[:4])), uint16(v[4])<<8|uint16(v[5])), nil
}

// FormatHostPort formats an IPv4 address and port as h1,h2,h3,h4,p1,p2.
func FormatHostPort(ap netip.AddrPort) string {
	a := ap.Addr().Unmap().As4()
	return fmt.Sprintf("%d,%d,%d,%d,%d,%d", a[0], a[1], a[2], a[3], ap.Port()>>8, ap.Port()&0xFF)
}

// ParseEPRT parses the argument of EPRT (RFC 2428): <d>proto<d>address<d>port<d>,
// with any printable delimiter d.
func ParseEPRT(s string) (netip.AddrPort, error) {
	if len(s) < 2 || s[0] < 33 || s[0] > 126 {
		return netip.AddrPort{}, ErrHostPort
	}
	parts := strings.Split(s, string(s[0]))
	if len(parts) != 5 || parts[0] != "" || parts[4] != "" {
		return netip.AddrPort{}, ErrHostPort
	}
	if parts[1] != "1" && parts[1] != "2" {
		return netip.AddrPort{}, ErrNetProto
	}
	addr, err := netip.ParseAddr(parts[2])
	if err != nil || addr.Zone() != "" || (parts[1] == "1") != addr.Is4() {
		return netip.AddrPort{}, ErrHostPort
	}
	port, err := strconv.ParseUint(parts[3], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, ErrHostPort
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// ParseEPSVReply returns the port of a 229 reply text "... (|||port|)".
func ParseEPSVReply(text string) (uint16, error) {
	i, j := strings.IndexByte(text, '('), strings.LastIndexByte(text, ')')
	if i < 0 || j < i+5 {
		return 0, ErrHostPort
	}
	inner := text[i+1 : j]
	d := string(inner[0])
	parts := strings.Split(inner, d)
	if len(parts) != 5 || parts[1] != "" || parts[2] != "" {
		return 0, ErrHostPort
	}
	port, err := strconv.ParseUint(parts[3], 10, 16)
	if err != nil || port == 0 {
		return 0, ErrHostPort
	}
	return uint16(port), nil
}

// ParsePASVReply returns the address of a 227 reply text "... (h1,h2,h3,h4,p1,p2)".
func ParsePASVReply(text string) (netip.AddrPort, error) {
	i, j := strings.IndexByte(text, '('), strings.LastIndexByte(text, ')')
	if i < 0 || j < i {
		return netip.AddrPort{}, ErrHostPort
	}
	return ParseHostPort(text[i+1 : j])
}

// ToNetASCII converts a chunk of a file to the ASCII representation of the wire:
// every LF not preceded by CR becomes CR LF. prevCR says whether the byte before the
// chunk was CR; it returns the converted chunk appended to dst and the new prevCR.
func ToNetASCII(dst, chunk []byte, prevCR bool) ([]byte, bool) {
	for _, c := range chunk {
		if c == '\n' && !prevCR {
			dst = append(dst, '\r')
		}
		dst = append(dst, c)
		prevCR = c == '\r'
	}
	return dst, prevCR
}
