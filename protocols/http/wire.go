package http

// Pure HTTP/1.x wire code: request heads and chunked bodies are parsed from byte slices,
// responses are appended to byte slices. Nothing here does I/O, so every limit and every
// malformed input can be tested and fuzzed without a connection.
//
// A hand-written parser instead of net/http.ReadRequest, because the emulator must answer
// each kind of bad input with its own status (414 for a long request-target, 431 for too
// many or too large header fields, 505 for an unknown major version, 501 for an unknown
// transfer coding, 400 for the rest) as an embedded web server does, must reject an
// oversized head before it is complete (ReadRequest only reports a generic error once a
// size-limited reader runs dry), must keep header fields in their order and spelling for
// the events, and must never merge or canonicalise what the attacker sent.

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors of request parsing. Each one maps to the status code the server answers with.
var (
	// ErrIncomplete means the bytes end before the head (or chunked body) does; the
	// caller reads more.
	ErrIncomplete = errors.New("http: incomplete message")
	// ErrBadRequest is a malformed request (400).
	ErrBadRequest = errors.New("http: malformed request")
	// ErrURITooLong is a request-target longer than the limit (414).
	ErrURITooLong = errors.New("http: request-target too long")
	// ErrHeaderTooLarge is a head over the byte limit or with too many fields (431).
	ErrHeaderTooLarge = errors.New("http: request header fields too large")
	// ErrBodyTooLarge is a body over the limit (413).
	ErrBodyTooLarge = errors.New("http: request body too large")
	// ErrVersion is an HTTP major version other than 1 (505).
	ErrVersion = errors.New("http: HTTP version not supported")
	// ErrNotImplemented is a transfer coding the server does not decode (501).
	ErrNotImplemented = errors.New("http: transfer coding not implemented")
)

// StatusOf returns the status code that answers a parse error, 0 for ErrIncomplete and
// other errors.
func StatusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return 400
	case errors.Is(err, ErrURITooLong):
		return 414
	case errors.Is(err, ErrHeaderTooLarge):
		return 431
	case errors.Is(err, ErrBodyTooLarge):
		return 413
	case errors.Is(err, ErrVersion):
		return 505
	case errors.Is(err, ErrNotImplemented):
		return 501
	}
	return 0
}

// Limits bounds a request head.
type Limits struct {
	// MaxHeaderBytes bounds the head: leading empty lines, request line, fields and the
	// final empty line.
	MaxHeaderBytes int
	// MaxURIBytes bounds the request-target.
	MaxURIBytes int
	// MaxHeaders bounds the number of header fields.
	MaxHeaders int
}

// maxMethodBytes bounds the method token; no registered method is longer than 17 bytes.
const maxMethodBytes = 24

// Field is one header field as sent (name spelling kept, value trimmed of OWS).
type Field struct {
	Name, Value string
}

// Target forms of RFC 9112 §3.2.
const (
	OriginForm    = "origin"
	AbsoluteForm  = "absolute"
	AuthorityForm = "authority"
	AsteriskForm  = "asterisk"
)

// Request is a parsed request head.
type Request struct {
	Method string
	// Target is the request-target as sent.
	Target string
	// Form is one of OriginForm, AbsoluteForm, AuthorityForm, AsteriskForm.
	Form string
	// Path is the raw (still percent-encoded) path of an origin- or absolute-form
	// target, "" for the other forms. Query is the raw query without '?'.
	Path, Query string
	// Major and Minor are the protocol version; Minor is 0 or 1 (higher minors are
	// answered as 1.1, RFC 9110 §6.2).
	Major, Minor int
	// Fields are the header fields in order.
	Fields []Field
	// Host is the authority of an absolute-form target, else the Host field.
	Host string
	// ContentLength is the body length, -1 when the request has no Content-Length.
	ContentLength int64
	// Chunked is true when the body has the chunked transfer coding.
	Chunked bool
	// KeepAlive is true when the connection may stay open after the response;
	// AskedKeepAlive is true when the request said "Connection: keep-alive", what an
	// HTTP/1.0 response needs to stay open.
	KeepAlive, AskedKeepAlive bool
	// Continue is true when the client waits for "100 Continue" before the body.
	Continue bool
	// BadExpect is true for an Expect value other than 100-continue (417).
	BadExpect bool
}

// Get returns the value of the first field named name (case-insensitive).
func (r *Request) Get(name string) string {
	for _, f := range r.Fields {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// HasBody reports whether a body follows the head.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// Version returns "HTTP/1.0" or "HTTP/1.1".
func (r *Request) Version() string {
	return "HTTP/1." + strconv.Itoa(r.Minor)
}

// ParseHead parses the request head at the start of b. It returns the request and the
// number of bytes the head takes (leading empty lines included). Only the first
// lim.MaxHeaderBytes bytes are looked at: when they hold no complete head the error is
// ErrHeaderTooLarge or ErrURITooLong; when b is shorter and ends inside the head it is
// ErrIncomplete. Garbage that can never become a request line (a TLS ClientHello, a
// binary protocol) is rejected with ErrBadRequest as soon as it is seen.
func ParseHead(b []byte, lim Limits) (*Request, int, error) {
	full := len(b) >= lim.MaxHeaderBytes
	if full {
		b = b[:lim.MaxHeaderBytes]
	}
	// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request
	// line; all of them count against the byte limit.
	pos := 0
	for pos < len(b) {
		if b[pos] == '\n' {
			pos++
		} else if b[pos] == '\r' && pos+1 < len(b) && b[pos+1] == '\n' {
			pos += 2
		} else {
			break
		}
	}
	line, next, ok := nextLine(b, pos)
	if !ok {
		if err := checkPartialRequestLine(b[pos:], lim); err != nil {
			return nil, 0, err
		}
		if full {
			return nil, 0, fmt.Errorf("%w: no end of request line in %d bytes", ErrURITooLong, lim.MaxHeaderBytes)
		}
		return nil, 0, ErrIncomplete
	}
	r := &Request{ContentLength: -1}
	if err := r.parseRequestLine(line, lim); err != nil {
		return nil, 0, err
	}
	pos = next
	var hosts, lengths int
	for {
		line, next, ok := nextLine(b, pos)
		if !ok {
			if full {
				return nil, 0, fmt.Errorf("%w: head longer than %d bytes", ErrHeaderTooLarge, lim.MaxHeaderBytes)
			}
			return nil, 0, ErrIncomplete
		}
		pos = next
		if len(line) == 0 {
			break
		}
		if len(r.Fields) == lim.MaxHeaders {
			return nil, 0, fmt.Errorf("%w: more than %d fields", ErrHeaderTooLarge, lim.MaxHeaders)
		}
		f, err := parseField(line)
		if err != nil {
			return nil, 0, err
		}
		r.Fields = append(r.Fields, f)
		switch {
		case strings.EqualFold(f.Name, "Host"):
			hosts++
		case strings.EqualFold(f.Name, "Content-Length"):
			lengths++
		}
	}
	if err := r.frame(hosts, lengths); err != nil {
		return nil, 0, err
	}
	return r, pos, nil
}

// nextLine returns the line starting at pos without its LF or CRLF, and the position
// after it. A bare LF ends a line too (RFC 9112 §2.2 allows recipients to accept it).
func nextLine(b []byte, pos int) (line []byte, next int, ok bool) {
	i := bytes.IndexByte(b[pos:], '\n')
	if i < 0 {
		return nil, 0, false
	}
	line = b[pos : pos+i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, pos + i + 1, true
}

// checkPartialRequestLine rejects an unterminated request line early when what has
// arrived already cannot start a valid one, or already holds an oversized target.
func checkPartialRequestLine(p []byte, lim Limits) error {
	sp := bytes.IndexByte(p, ' ')
	method := p
	if sp >= 0 {
		method = p[:sp]
	}
	if len(method) > maxMethodBytes {
		return fmt.Errorf("%w: method longer than %d bytes", ErrBadRequest, maxMethodBytes)
	}
	for i, c := range method {
		// A CR may be the first half of the line end that has not arrived yet.
		if !isTchar(c) && !(c == '\r' && sp < 0 && i == len(p)-1) {
			return fmt.Errorf("%w: invalid byte 0x%02x in method", ErrBadRequest, c)
		}
	}
	if sp < 0 {
		if len(method) == 0 && len(p) > 0 {
			return fmt.Errorf("%w: request line starts with a space", ErrBadRequest)
		}
		return nil
	}
	if sp == 0 {
		return fmt.Errorf("%w: request line starts with a space", ErrBadRequest)
	}
	target := p[sp+1:]
	if i := bytes.IndexByte(target, ' '); i >= 0 {
		target = target[:i]
	}
	if len(target) > lim.MaxURIBytes {
		return fmt.Errorf("%w: request-target longer than %d bytes", ErrURITooLong, lim.MaxURIBytes)
	}
	return nil
}

func (r *Request) parseRequestLine(line []byte, lim Limits) error {
	// method SP request-target SP HTTP-version, exactly one space each (RFC 9112 §3).
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return fmt.Errorf("%w: request line without method", ErrBadRequest)
	}
	method := line[:sp1]
	if len(method) > maxMethodBytes {
		return fmt.Errorf("%w: method longer than %d bytes", ErrBadRequest, maxMethodBytes)
	}
	for _, c := range method {
		if !isTchar(c) {
			return fmt.Errorf("%w: invalid byte 0x%02x in method", ErrBadRequest, c)
		}
	}
	rest := line[sp1+1:]
	sp2 := bytes.LastIndexByte(rest, ' ')
	if sp2 < 0 {
		if len(rest) > lim.MaxURIBytes {
			return fmt.Errorf("%w: request-target longer than %d bytes", ErrURITooLong, lim.MaxURIBytes)
		}
		return fmt.Errorf("%w: request line without version", ErrBadRequest)
	}
	target, version := rest[:sp2], rest[sp2+1:]
	if len(target) > lim.MaxURIBytes {
		return fmt.Errorf("%w: request-target longer than %d bytes", ErrURITooLong, lim.MaxURIBytes)
	}
	if len(target) == 0 {
		return fmt.Errorf("%w: empty request-target", ErrBadRequest)
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: invalid byte 0x%02x in request-target", ErrBadRequest, c)
		}
	}
	major, minor, err := parseVersion(version)
	if err != nil {
		return err
	}
	r.Method, r.Target, r.Major, r.Minor = string(method), string(target), major, minor
	return r.parseTarget()
}

// parseVersion parses "HTTP/" DIGIT "." DIGIT (case-sensitive, RFC 9112 §2.3).
func parseVersion(v []byte) (major, minor int, err error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return 0, 0, fmt.Errorf("%w: invalid HTTP-version", ErrBadRequest)
	}
	major, minor = int(v[5]-'0'), int(v[7]-'0')
	if major != 1 {
		return 0, 0, fmt.Errorf("%w: HTTP/%d.%d", ErrVersion, major, minor)
	}
	if minor > 1 {
		minor = 1
	}
	return major, minor, nil
}

func (r *Request) parseTarget() error {
	t := r.Target
	switch {
	case t[0] == '/':
		r.Form = OriginForm
		r.Path, r.Query = splitQuery(t)
	case t == "*":
		if r.Method != "OPTIONS" {
			return fmt.Errorf("%w: asterisk-form target with a method other than OPTIONS", ErrBadRequest)
		}
		r.Form = AsteriskForm
	case r.Method == "CONNECT":
		r.Form = AuthorityForm
		r.Host = t
	default:
		i := strings.Index(t, "://")
		if i <= 0 || !(strings.EqualFold(t[:i], "http") || strings.EqualFold(t[:i], "https")) {
			return fmt.Errorf("%w: request-target is not origin-form or an http URI", ErrBadRequest)
		}
		r.Form = AbsoluteForm
		rest := t[i+3:]
		j := strings.IndexAny(rest, "/?")
		if j < 0 {
			r.Host, r.Path = rest, "/"
			break
		}
		r.Host = rest[:j]
		r.Path, r.Query = splitQuery(rest[j:])
		if r.Path == "" {
			r.Path = "/"
		}
	}
	return nil
}

func splitQuery(t string) (path, query string) {
	if i := strings.IndexByte(t, '#'); i >= 0 {
		t = t[:i]
	}
	path, query, _ = strings.Cut(t, "?")
	return path, query
}

// parseField parses one field line: field-name ":" OWS field-value OWS (RFC 9112 §5).
func parseField(line []byte) (Field, error) {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		if line[0] == ' ' || line[0] == '\t' {
			return Field{}, fmt.Errorf("%w: obsolete line folding", ErrBadRequest)
		}
		return Field{}, fmt.Errorf("%w: header line without colon", ErrBadRequest)
	}
	if colon == 0 {
		return Field{}, fmt.Errorf("%w: empty field name", ErrBadRequest)
	}
	name := line[:colon]
	for _, c := range name {
		if !isTchar(c) {
			// Covers whitespace before the colon, which RFC 9112 §5.1 says MUST be
			// rejected, and folded continuation lines that contain a colon.
			return Field{}, fmt.Errorf("%w: invalid byte 0x%02x in field name", ErrBadRequest, c)
		}
	}
	value := bytes.Trim(line[colon+1:], " \t")
	for _, c := range value {
		if c != '\t' && (c < ' ' || c == 0x7f) {
			return Field{}, fmt.Errorf("%w: invalid byte 0x%02x in field value", ErrBadRequest, c)
		}
	}
	return Field{Name: string(name), Value: string(value)}, nil
}

// frame derives message framing and connection handling from the fields (RFC 9112 §6,
// §9.3) and rejects the ambiguous combinations that request smuggling relies on.
func (r *Request) frame(hosts, lengths int) error {
	if r.Minor == 1 && hosts == 0 {
		return fmt.Errorf("%w: HTTP/1.1 request without Host", ErrBadRequest)
	}
	if hosts > 1 {
		return fmt.Errorf("%w: %d Host fields", ErrBadRequest, hosts)
	}
	if r.Form != AbsoluteForm && r.Form != AuthorityForm {
		r.Host = r.Get("Host")
	}
	var te []string
	var keepAlive, closeConn bool
	for _, f := range r.Fields {
		switch {
		case strings.EqualFold(f.Name, "Content-Length"):
			if err := r.addContentLength(f.Value); err != nil {
				return err
			}
		case strings.EqualFold(f.Name, "Transfer-Encoding"):
			for _, c := range strings.Split(f.Value, ",") {
				if c = strings.Trim(c, " \t"); c != "" {
					te = append(te, strings.ToLower(c))
				}
			}
			if len(te) == 0 {
				return fmt.Errorf("%w: empty Transfer-Encoding", ErrBadRequest)
			}
		case strings.EqualFold(f.Name, "Connection"):
			for _, c := range strings.Split(f.Value, ",") {
				switch strings.ToLower(strings.Trim(c, " \t")) {
				case "close":
					closeConn = true
				case "keep-alive":
					keepAlive = true
				}
			}
		case strings.EqualFold(f.Name, "Expect"):
			if strings.EqualFold(f.Value, "100-continue") {
				r.Continue = r.Minor == 1
			} else {
				r.BadExpect = true
			}
		}
	}
	if len(te) > 0 {
		switch {
		case r.Minor == 0:
			return fmt.Errorf("%w: Transfer-Encoding in an HTTP/1.0 request", ErrBadRequest)
		case lengths > 0:
			return fmt.Errorf("%w: both Transfer-Encoding and Content-Length", ErrBadRequest)
		case te[len(te)-1] != "chunked":
			return fmt.Errorf("%w: chunked is not the final transfer coding", ErrBadRequest)
		case len(te) > 1:
			return fmt.Errorf("%w: transfer codings before chunked", ErrNotImplemented)
		}
		r.Chunked = true
	}
	r.AskedKeepAlive = keepAlive && !closeConn
	if r.Minor == 1 {
		r.KeepAlive = !closeConn
	} else {
		r.KeepAlive = keepAlive && !closeConn
	}
	return nil
}

// addContentLength accepts one Content-Length field value: 1*DIGIT, or a list of equal
// values (RFC 9110 §8.6); every field of the request must agree.
func (r *Request) addContentLength(v string) error {
	for _, p := range strings.Split(v, ",") {
		p = strings.Trim(p, " \t")
		if p == "" || len(p) > 18 {
			return fmt.Errorf("%w: invalid Content-Length", ErrBadRequest)
		}
		var n int64
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return fmt.Errorf("%w: invalid Content-Length", ErrBadRequest)
			}
			n = n*10 + int64(p[i]-'0')
		}
		if r.ContentLength >= 0 && r.ContentLength != n {
			return fmt.Errorf("%w: conflicting Content-Length values", ErrBadRequest)
		}
		r.ContentLength = n
	}
	return nil
}

// Chunked-body limits besides the body cap.
const (
	maxChunkLine    = 1024 // chunk-size line with extensions
	maxTrailerBytes = 4096 // trailer section
)

// ChunkedBody decodes a chunked body (RFC 9112 §7.1) incrementally. Feed it the bytes
// that follow the head; it keeps the decoded data and where the next chunk starts, so
// a body that trickles in is never re-parsed from the beginning.
type ChunkedBody struct {
	// Max bounds the decoded body.
	Max int
	// Body is the data decoded so far.
	Body []byte
	pos  int
}

// Decode continues decoding b, which must start with the bytes given to earlier calls.
// It returns the length of the whole chunked message once it is complete, ErrIncomplete
// when b ends inside it, ErrBodyTooLarge beyond Max, and ErrBadRequest when malformed.
func (d *ChunkedBody) Decode(b []byte) (int, error) {
	for {
		line, next, ok := nextLine(b, d.pos)
		if !ok {
			if len(b)-d.pos > maxChunkLine {
				return 0, fmt.Errorf("%w: chunk-size line longer than %d bytes", ErrBadRequest, maxChunkLine)
			}
			return 0, ErrIncomplete
		}
		if len(line) > maxChunkLine {
			return 0, fmt.Errorf("%w: chunk-size line longer than %d bytes", ErrBadRequest, maxChunkLine)
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			return d.trailers(b, next)
		}
		if size > int64(d.Max-len(d.Body)) {
			return 0, fmt.Errorf("%w: chunked body over %d bytes", ErrBodyTooLarge, d.Max)
		}
		end := next + int(size)
		if len(b) < end+1 {
			return 0, ErrIncomplete
		}
		switch {
		case b[end] == '\n':
			d.pos = end + 1
		case b[end] == '\r' && len(b) < end+2:
			return 0, ErrIncomplete
		case b[end] == '\r' && b[end+1] == '\n':
			d.pos = end + 2
		default:
			return 0, fmt.Errorf("%w: chunk data not followed by CRLF", ErrBadRequest)
		}
		d.Body = append(d.Body, b[next:end]...)
	}
}

func (d *ChunkedBody) trailers(b []byte, pos int) (int, error) {
	start := pos
	for {
		line, next, ok := nextLine(b, pos)
		if !ok {
			if len(b)-start > maxTrailerBytes {
				return 0, fmt.Errorf("%w: trailer section over %d bytes", ErrHeaderTooLarge, maxTrailerBytes)
			}
			return 0, ErrIncomplete
		}
		if next-start > maxTrailerBytes {
			return 0, fmt.Errorf("%w: trailer section over %d bytes", ErrHeaderTooLarge, maxTrailerBytes)
		}
		if len(line) == 0 {
			return next, nil
		}
		if _, err := parseField(line); err != nil {
			return 0, err
		}
		pos = next
	}
}

// parseChunkSize parses chunk-size [ BWS ";" chunk-ext ].
func parseChunkSize(line []byte) (int64, error) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		v, ok := hexValue(line[i])
		if !ok {
			break
		}
		if i == 15 {
			return 0, fmt.Errorf("%w: chunk size too large", ErrBodyTooLarge)
		}
		n = n<<4 | int64(v)
	}
	if i == 0 {
		return 0, fmt.Errorf("%w: missing chunk size", ErrBadRequest)
	}
	rest := bytes.TrimLeft(line[i:], " \t")
	if len(rest) > 0 && rest[0] != ';' {
		return 0, fmt.Errorf("%w: invalid chunk size", ErrBadRequest)
	}
	for _, c := range rest {
		if c != '\t' && (c < ' ' || c == 0x7f) {
			return 0, fmt.Errorf("%w: invalid byte 0x%02x in chunk extension", ErrBadRequest, c)
		}
	}
	return n, nil
}

// Response is a response to append to the wire.
type Response struct {
	// Minor is the minor version of the status line (HTTP/1.Minor).
	Minor int
	// Status and Reason form the status line.
	Status int
	Reason string
	// Header holds complete field lines ("Name: value") without line ends, written in
	// order and verbatim, so that a device's own spelling can be reproduced.
	Header []string
	// Body follows the head.
	Body []byte
}

// AppendResponse appends the status line, the field lines, the empty line and the body.
// The caller supplies every field, Content-Length included.
func AppendResponse(dst []byte, r *Response) []byte {
	dst = append(dst, "HTTP/1."...)
	dst = strconv.AppendInt(dst, int64(r.Minor), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, r.Reason...)
	dst = append(dst, "\r\n"...)
	for _, l := range r.Header {
		dst = append(dst, l...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return append(dst, r.Body...)
}

// StatusText returns the reason phrase of RFC 9110 for the codes this server sends.
func StatusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 204:
		return "No Content"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 411:
		return "Length Required"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 417:
		return "Expectation Failed"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 503:
		return "Service Unavailable"
	case 505:
		return "HTTP Version Not Supported"
	}
	return ""
}

// isTchar reports whether c may appear in a token (RFC 9110 §5.6.2).
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', isDigit(c):
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func hexValue(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isToken reports whether s is a non-empty token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}
