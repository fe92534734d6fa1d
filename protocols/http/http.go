// Package http emulates the embedded web server of the device persona: HTTP/1.0 and
// HTTP/1.1 with keep-alive and pipelining on one TCP connection that the sensor accepted,
// pages rendered from the shared protocols.Identity, a login form whose attempts become
// events, and the status codes, headers and error pages of an embedded server.
//
// The handler serves the connection itself rather than through net/http.Server: the
// sensor owns the listener and the session, and the emulator must control every byte it
// answers (status line, header order, error pages) and every limit it enforces.
package http

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	ttemplate "text/template"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Spec returns the registry entry of the HTTP emulator.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      "http",
		Transport: protocols.TCP,
		Port:      80,
		Service:   "http",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc("http", New),
	}
}

// Config is the persona's web server. NewConfig fills it with the defaults of a Siemens
// SIMATIC S7-1200 class web server; the persona's "http" section is decoded over it.
type Config struct {
	// Server is the Server header value. Empty omits the header, as the S7-1200 does.
	Server string `yaml:"server"`
	// Date sends a Date header with the current time on every response.
	Date bool `yaml:"date"`
	// DateFormat is the layout of the Date value, in UTC: "imf-fixdate" (the default,
	// RFC 9110 "Sun, 06 Nov 1994 08:49:37 GMT"), "rfc850", "asctime", or a Go time
	// layout of the reference time ("Mon Jan 02 15:04:05 2006").
	DateFormat string `yaml:"date_format"`
	// DateUpper upper-cases the formatted date, as Schneider-WEB writes
	// "THU JAN 01 00:00:00 1970".
	DateUpper bool `yaml:"date_upper"`
	// Version is the protocol version of the status line: "1.0", "1.1", or empty for
	// the request's own (the S7-1200 answers HTTP/1.0 to HTTP/1.0). A response sent
	// as HTTP/1.0 to an HTTP/1.1 request closes the connection unless the request
	// asked for keep-alive.
	Version string `yaml:"version"`
	// ConnectionHeader is when "Connection: close" is written on a response after
	// which the server closes: "always" (the default, as the S7-1200 does),
	// "when_needed", only when the client would otherwise expect the connection to
	// stay open (an HTTP/1.1 response to an HTTP/1.1 request), as Jetty does, or
	// "never", as GoAhead, which just closes. "Connection: keep-alive" answers an
	// HTTP/1.0 keep-alive request in every mode.
	ConnectionHeader string `yaml:"connection_header"`
	// HeaderOrder is the order of the response's header fields by name
	// (case-insensitive): listed fields come first in this order, the others after
	// them in the default order. The spelling listed is used for the fields the
	// server writes (Content-Length, Content-Type from content_type, Connection,
	// Allow, Location, Date, Server), e.g. "Content-length" as GoAhead writes it.
	HeaderOrder []string `yaml:"header_order"`
	// Options is how OPTIONS on a known path is answered: "allow" (200 with Allow) or
	// "not_allowed" (405 with Allow, as Siemens S7 web servers do).
	Options string `yaml:"options"`
	// ServerMethods are the methods the server implements (default: those of RFC
	// 9110 and RFC 5789); a request with any other method gets UnknownMethodStatus
	// before its path is looked at. GoAhead-based servers know GET, HEAD and POST
	// and answer everything else 400.
	ServerMethods       []string `yaml:"server_methods"`
	UnknownMethodStatus int      `yaml:"unknown_method_status"`
	// Headers are extra header lines sent on every response, e.g.
	// "X-Frame-Options: SAMEORIGIN". The name and spacing are sent verbatim; the
	// value is a text/template executed with a Head.
	Headers []string `yaml:"headers"`

	// IdleTimeout bounds the wait for the first byte of a request.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// HeaderTimeout bounds the whole request head, from its first byte (slowloris).
	HeaderTimeout time.Duration `yaml:"header_timeout"`
	// BodyTimeout bounds the whole request body, from the end of the head.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// WriteTimeout bounds writing one response.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxHeaderBytes bounds the request head (431 beyond it).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxURIBytes bounds the request-target (414 beyond it).
	MaxURIBytes int `yaml:"max_uri_bytes"`
	// MaxHeaders bounds the number of header fields (431 beyond it).
	MaxHeaders int `yaml:"max_headers"`
	// MaxBodyBytes bounds a request body (413 beyond it).
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// MaxRequests is the number of requests served on one connection before it is closed.
	MaxRequests int `yaml:"max_requests"`
	// EventDataBytes bounds the request body copied into an event; the pcap has all of it.
	EventDataBytes int `yaml:"event_data_bytes"`

	// Pages is the web site. It replaces the default site as a whole.
	Pages []Page `yaml:"pages"`
	// ErrorPages are the pages of error statuses (404, 405, 400...), merged over the
	// defaults; ErrorPage answers the statuses that have none.
	ErrorPages map[int]Content `yaml:"error_pages"`
	ErrorPage  Content         `yaml:"error_page"`
}

// Content is one response: status line, content type, extra headers and a body that is an
// html/template executed with a View (or a text/template executed with a Head).
type Content struct {
	// Status is the status code; 0 means 200 for pages and the error's own code for
	// error pages.
	Status int `yaml:"status"`
	// Reason is the reason phrase; empty means the RFC 9110 phrase.
	Reason string `yaml:"reason"`
	// ContentType is the Content-Type value; empty omits the header unless Headers
	// has a Content-Type line.
	ContentType string `yaml:"content_type"`
	// Headers are extra header lines sent in order after Content-Type,
	// Content-Length, Connection, Allow and Location, e.g. "Location: /Default.mwsl".
	// Names and spacing are sent verbatim, values are text/templates executed with a
	// Head. A Content-Type line here is sent in ContentType's place (for a device
	// that writes "Content-Type:text/html").
	Headers []string `yaml:"headers"`
	// Location is the Location header value, a text/template executed with a Head,
	// e.g. "http://{{.Host}}/index.htm" for the absolute redirect most embedded
	// servers send. The body sees the result as .Location.
	Location string `yaml:"location"`
	// Version overrides Config.Version for this response ("1.0" or "1.1").
	Version string `yaml:"version"`
	// HeaderOrder overrides Config.HeaderOrder for this response.
	HeaderOrder []string `yaml:"header_order"`
	// Close ends the connection after this response, as GoAhead does after every
	// redirect and error.
	Close bool `yaml:"close"`
	// ContentLengthAdjust is added to the body's length in Content-Length (-64 to
	// 64; the result is at least 0): Schneider-WEB counts its generated messages
	// without the CRLF it appends to them (-2). The whole body is sent.
	ContentLengthAdjust int `yaml:"content_length_adjust"`
	// Body is the body template: an html/template executed with a View, or with
	// BodyTemplate "text" a text/template executed with a Head, which carries no
	// request text but the validated host (for bytes html/template would escape).
	Body         string `yaml:"body"`
	BodyTemplate string `yaml:"body_template"`
}

// Page is one resource of the web site.
type Page struct {
	// Path is the percent-decoded path the page answers, e.g. "/Portal/Portal.mwsl".
	Path string `yaml:"path"`
	// Query, when set, is one "key=value" parameter that selects this page among the
	// pages of the same path (e.g. "PriNav=Ident"). A request whose query matches no
	// page of the path gets the first page listed for it.
	Query string `yaml:"query"`
	// Methods are the methods the page answers; default GET. GET implies HEAD.
	Methods []string `yaml:"methods"`
	// Content is what the page answers.
	Content `yaml:",inline"`
	// Login makes POST a login attempt: the username becomes an event field and the
	// answer is the login's (failure) content.
	Login *Login `yaml:"login"`
}

// Login describes a login form target.
type Login struct {
	// UsernameField and PasswordField are the form field names.
	UsernameField string `yaml:"username_field"`
	PasswordField string `yaml:"password_field"`
	// Content answers every attempt: no credentials are valid. The View has Username
	// and LoginFailed set.
	Content `yaml:",inline"`
}

// Head is the data that header values, locations and text bodies are executed with:
// the identity, the clock, the response status and where the request was sent. It
// holds no attacker text except a Host that is a valid host[:port].
type Head struct {
	Identity protocols.Identity
	// Now is the current time, Boot the device's boot time, Uptime the difference.
	Now, Boot time.Time
	Uptime    time.Duration
	// Status and Reason of the response (for error pages).
	Status int
	Reason string
	// Host is the authority the request was sent to (its Host field or absolute-form
	// target) when that is a valid host[:port] (letters, digits, '.', '-', '_', '~',
	// a bracketed IPv6 address, a port); otherwise the sensor's local address, with
	// ":port" unless the port is 80, ready for "http://{{.Host}}/...".
	Host string
	// HostMissing is true when the request named no host at all (HTTP/1.0 without
	// Host, or a request that could not be parsed).
	HostMissing bool
	// LocalAddr and LocalPort are the sensor's address of the connection.
	LocalAddr string
	LocalPort int
	// Location is the response's rendered location ("" without one): for bodies.
	Location string
}

// View is the data that page templates are executed with. Method, Path, Query and
// Username are attacker text; html/template escapes them for their context.
type View struct {
	Head
	// Method, Path (as sent, percent-encoded) and Query (without '?') of the request.
	Method, Path, Query string
	// Username is the submitted user name and LoginFailed is true in a login answer.
	Username    string
	LoginFailed bool
}

// Options modes.
const (
	OptionsAllow      = "allow"
	OptionsNotAllowed = "not_allowed"
)

// Connection header modes.
const (
	ConnectionAlways     = "always"
	ConnectionWhenNeeded = "when_needed"
	ConnectionNever      = "never"
)

// Date formats by name; any other DateFormat is a Go time layout.
var dateFormats = map[string]string{
	"":            "Mon, 02 Jan 2006 15:04:05 GMT",
	"imf-fixdate": "Mon, 02 Jan 2006 15:04:05 GMT",
	"rfc850":      "Monday, 02-Jan-06 15:04:05 GMT",
	"asctime":     "Mon Jan _2 15:04:05 2006",
}

// standardMethods are the methods of RFC 9110 and RFC 5789, the default
// server_methods; any other method token gets unknown_method_status (501).
var standardMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// NewConfig returns the defaults: a SIMATIC S7-1200 class web server. "/" redirects to
// /Default.mwsl (the redirect nmap's service fingerprints know for the S7-1200), the
// portal start page carries the login form posted to /FormLogin with the fields Login
// and Password, the identification page lists the persona, and error pages follow the
// Siemens embedded server's "<path> / <code> : <REASON>" layout.
func NewConfig() *Config {
	return &Config{
		Date:             true,
		DateFormat:       "imf-fixdate",
		ConnectionHeader: ConnectionAlways,
		Options:          OptionsNotAllowed,
		ServerMethods:    slices.Clone(standardMethods),
		// RFC 9110 §15.6.2: a method the server does not recognise.
		UnknownMethodStatus: 501,
		IdleTimeout:         30 * time.Second,
		HeaderTimeout:       10 * time.Second,
		BodyTimeout:         30 * time.Second,
		WriteTimeout:        10 * time.Second,
		MaxHeaderBytes:      8192,
		MaxURIBytes:         2048,
		MaxHeaders:          64,
		MaxBodyBytes:        64 << 10,
		MaxRequests:         100,
		EventDataBytes:      4096,
		Pages: []Page{
			{Path: "/", Content: Content{Status: 302, Reason: "Object Moved",
				Headers: []string{"Content-Type:text/html", "Location: /Default.mwsl"}}},
			{Path: "/Default.mwsl", Content: Content{ContentType: htmlType, Body: introPage}},
			{Path: "/Portal/Portal.mwsl", Content: Content{ContentType: htmlType, Body: startPage}},
			{Path: "/Portal/Portal.mwsl", Query: "PriNav=Ident", Content: Content{ContentType: htmlType, Body: identPage}},
			{Path: "/FormLogin", Methods: []string{"POST"}, Login: &Login{
				UsernameField: "Login", PasswordField: "Password",
				Content: Content{ContentType: htmlType, Body: startPage},
			}},
		},
		// Siemens S7 web servers answer 405 with an empty body and the Allow list.
		ErrorPages: map[int]Content{405: {ContentType: "text/html"}},
		ErrorPage:  Content{ContentType: "text/html", Body: errorPage},
	}
}

// Handler serves the web site on one connection per ServeStream call; it is safe for
// concurrent use.
type Handler struct {
	cfg     Config
	lim     Limits
	id      protocols.Identity
	boot    time.Time
	now     func() time.Time
	paths   map[string][]*page
	errs    map[int]*content
	errAny  *content
	allowed string // every method of the site, for OPTIONS * and CONNECT
	extra   []headerLine
	date    string // Date layout
	order   *headerOrder
	// bufs lends read buffers to connections that have bytes to work on: an idle
	// keep-alive connection holds none.
	bufs *protocols.BufferPool
}

var _ protocols.StreamHandler = (*Handler)(nil)

type content struct {
	status   int
	reason   string
	ctype    *headerLine  // the Content-Type line, nil for none
	lines    []headerLine // the other header lines
	location *ttemplate.Template
	version  string       // status line version, "": the server's
	order    *headerOrder // nil: the server's
	adjust   int          // added to the body length in Content-Length
	close    bool         // the connection ends after it
	body     *template.Template
	text     *ttemplate.Template // body_template text
}

// headerLine is a header line: its lower-case name (for ordering), what is sent
// before the value ("Name:" and the spacing as configured; empty: the name as the
// header order spells it, else canonical, and ": ") and the value: a template, or
// static when that is nil.
type headerLine struct {
	name   string
	prefix string
	value  *ttemplate.Template
	static string
}

// headerOrder is a configured header order: position and spelling by lower-case name.
type headerOrder struct {
	pos   map[string]int
	spell map[string]string
}

type page struct {
	query      url.Values
	methods    []string
	allow      string
	content    *content
	login      *content
	user, pass string
}

const htmlType = "text/html; charset=utf-8"

// New checks cfg and compiles the site's templates.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if env.Identity == nil {
		return nil, fmt.Errorf("http: %w: no device identity", protocols.ErrConfig)
	}
	env = env.WithDefaults()
	h := &Handler{
		bufs:  protocols.NewBufferPool(readChunk),
		cfg:   *cfg,
		lim:   Limits{MaxHeaderBytes: cfg.MaxHeaderBytes, MaxURIBytes: cfg.MaxURIBytes, MaxHeaders: cfg.MaxHeaders},
		id:    *env.Identity,
		boot:  env.Boot,
		now:   env.Now,
		paths: map[string][]*page{},
		errs:  map[int]*content{},
	}
	if err := h.compile(); err != nil {
		return nil, fmt.Errorf("http: %w: %w", protocols.ErrConfig, err)
	}
	return h, nil
}

func (h *Handler) compile() error {
	c := &h.cfg
	switch {
	case c.Options != OptionsAllow && c.Options != OptionsNotAllowed:
		return fmt.Errorf("options %q: want %q or %q", c.Options, OptionsAllow, OptionsNotAllowed)
	case c.IdleTimeout <= 0 || c.HeaderTimeout <= 0 || c.BodyTimeout <= 0 || c.WriteTimeout <= 0:
		return errors.New("idle_timeout, header_timeout, body_timeout and write_timeout must be positive")
	case c.MaxHeaderBytes < 256 || c.MaxHeaderBytes > 1<<20:
		return fmt.Errorf("max_header_bytes %d: want 256 to 1048576", c.MaxHeaderBytes)
	case c.MaxURIBytes < 16 || c.MaxURIBytes > c.MaxHeaderBytes:
		return fmt.Errorf("max_uri_bytes %d: want 16 to max_header_bytes", c.MaxURIBytes)
	case c.MaxHeaders < 1 || c.MaxHeaders > 1000:
		return fmt.Errorf("max_headers %d: want 1 to 1000", c.MaxHeaders)
	case c.MaxBodyBytes < 0 || c.MaxBodyBytes > 64<<20:
		return fmt.Errorf("max_body_bytes %d: want 0 to 67108864", c.MaxBodyBytes)
	case c.MaxRequests < 1:
		return fmt.Errorf("max_requests %d: want at least 1", c.MaxRequests)
	case c.EventDataBytes < 0:
		return fmt.Errorf("event_data_bytes %d: want 0 or more", c.EventDataBytes)
	case c.UnknownMethodStatus < 400 || c.UnknownMethodStatus > 599:
		return fmt.Errorf("unknown_method_status %d: want 400 to 599", c.UnknownMethodStatus)
	case !slices.Contains(c.ServerMethods, "GET"):
		return errors.New("server_methods: GET is missing")
	case c.Options == OptionsAllow && !slices.Contains(c.ServerMethods, "OPTIONS"):
		return errors.New("options allow: OPTIONS is not in server_methods")
	case c.ConnectionHeader != ConnectionAlways && c.ConnectionHeader != ConnectionWhenNeeded && c.ConnectionHeader != ConnectionNever:
		return fmt.Errorf("connection_header %q: want %s, %s or %s", c.ConnectionHeader, ConnectionAlways, ConnectionWhenNeeded, ConnectionNever)
	case len(c.Pages) == 0:
		return errors.New("pages: the site has no pages")
	}
	if err := checkValue("server", c.Server); err != nil {
		return err
	}
	if err := checkVersion("version", c.Version); err != nil {
		return err
	}
	for _, m := range c.ServerMethods {
		if !slices.Contains(standardMethods, m) {
			return fmt.Errorf("server_methods: %q: want some of %s", m, strings.Join(standardMethods, ", "))
		}
	}
	var err error
	if h.date, err = dateLayout(c.DateFormat); err != nil {
		return err
	}
	if h.order, err = compileOrder("header_order", c.HeaderOrder); err != nil {
		return err
	}
	var ctype *headerLine
	if ctype, h.extra, err = h.parseHeaders("headers", c.Headers); err != nil {
		return err
	}
	if ctype != nil {
		return errors.New("headers: Content-Type is set per page")
	}
	every := map[string]bool{}
	for i, p := range c.Pages {
		pg, err := h.compilePage(p)
		if err != nil {
			return fmt.Errorf("pages[%d] (%s): %w", i, p.Path, err)
		}
		for _, q := range h.paths[p.Path] {
			if urlValuesEqual(q.query, pg.query) {
				return fmt.Errorf("pages[%d]: duplicate path %q with query %q", i, p.Path, p.Query)
			}
		}
		if c.Options == OptionsAllow {
			pg.allow += ", OPTIONS"
		}
		h.paths[p.Path] = append(h.paths[p.Path], pg)
		for _, m := range pg.methods {
			every[m] = true
		}
	}
	if c.Options == OptionsAllow {
		every["OPTIONS"] = true
	}
	var all []string
	for _, m := range standardMethods {
		if every[m] {
			all = append(all, m)
		}
	}
	h.allowed = strings.Join(all, ", ")
	for code, ct := range c.ErrorPages {
		if code < 400 || code > 599 {
			return fmt.Errorf("error_pages: status %d is not an error", code)
		}
		if ct.Status == 0 {
			ct.Status = code
		}
		if h.errs[code], err = h.compileContent(fmt.Sprintf("error_pages[%d]", code), ct); err != nil {
			return err
		}
	}
	if h.errAny, err = h.compileContent("error_page", c.ErrorPage); err != nil {
		return err
	}
	return nil
}

func (h *Handler) compilePage(p Page) (*page, error) {
	if !strings.HasPrefix(p.Path, "/") {
		return nil, errors.New("path must start with /")
	}
	pg := &page{}
	if p.Query != "" {
		q, err := url.ParseQuery(p.Query)
		if err != nil || len(q) != 1 {
			return nil, fmt.Errorf("query %q: want one key=value", p.Query)
		}
		pg.query = q
	}
	methods := p.Methods
	if len(methods) == 0 {
		methods = []string{"GET"}
	}
	for _, m := range methods {
		switch {
		case !slices.Contains(standardMethods, m):
			return nil, fmt.Errorf("method %q: want one of %s", m, strings.Join(standardMethods, ", "))
		case !slices.Contains(h.cfg.ServerMethods, m):
			return nil, fmt.Errorf("method %s is not in server_methods", m)
		case m == "OPTIONS" || m == "CONNECT" || m == "TRACE":
			return nil, fmt.Errorf("method %s is answered by the server, not by pages", m)
		}
		if !slices.Contains(pg.methods, m) {
			pg.methods = append(pg.methods, m)
		}
		if m == "GET" && !slices.Contains(pg.methods, "HEAD") {
			pg.methods = append(pg.methods, "HEAD")
		}
	}
	pg.allow = strings.Join(pg.methods, ", ")
	ct := p.Content
	if ct.Status == 0 {
		ct.Status = 200
	}
	var err error
	if pg.content, err = h.compileContent("page", ct); err != nil {
		return nil, err
	}
	if p.Login != nil {
		if !slices.Contains(pg.methods, "POST") {
			return nil, errors.New("login needs method POST")
		}
		if p.Login.UsernameField == "" || p.Login.PasswordField == "" {
			return nil, errors.New("login needs username_field and password_field")
		}
		pg.user, pg.pass = p.Login.UsernameField, p.Login.PasswordField
		lc := p.Login.Content
		if lc.Status == 0 {
			lc.Status = 200
		}
		if pg.login, err = h.compileContent("login", lc); err != nil {
			return nil, err
		}
	}
	return pg, nil
}

// reservedHeaders are written by the server itself.
var reservedHeaders = []string{"content-length", "transfer-encoding", "connection", "date", "server", "content-type", "allow"}

func (h *Handler) compileContent(name string, c Content) (*content, error) {
	if c.Status != 0 && (c.Status < 200 || c.Status > 599) {
		return nil, fmt.Errorf("%s: status %d: want 200 to 599", name, c.Status)
	}
	if (c.Status == 204 || c.Status == 304) && c.Body != "" {
		return nil, fmt.Errorf("%s: status %d cannot have a body", name, c.Status)
	}
	if err := checkValue(name+" reason", c.Reason); err != nil {
		return nil, err
	}
	if err := checkValue(name+" content_type", c.ContentType); err != nil {
		return nil, err
	}
	if err := checkVersion(name+" version", c.Version); err != nil {
		return nil, err
	}
	if c.ContentLengthAdjust < -64 || c.ContentLengthAdjust > 64 {
		return nil, fmt.Errorf("%s: content_length_adjust %d: want -64 to 64", name, c.ContentLengthAdjust)
	}
	ctype, lines, err := h.parseHeaders(name+" headers", c.Headers)
	if err != nil {
		return nil, err
	}
	ct := &content{status: c.Status, reason: c.Reason, ctype: ctype, lines: lines, version: c.Version,
		adjust: c.ContentLengthAdjust, close: c.Close}
	switch {
	case ctype != nil && c.ContentType != "":
		return nil, fmt.Errorf("%s: both content_type and a Content-Type header line", name)
	case c.ContentType != "":
		ct.ctype = &headerLine{name: "content-type", static: c.ContentType}
	}
	if c.HeaderOrder != nil {
		if ct.order, err = compileOrder(name+" header_order", c.HeaderOrder); err != nil {
			return nil, err
		}
	}
	if c.Location != "" {
		if slices.ContainsFunc(lines, func(l headerLine) bool { return l.name == "location" }) {
			return nil, fmt.Errorf("%s: both location and a Location header line", name)
		}
		if ct.location, err = h.headerTemplate(name+" location", c.Location); err != nil {
			return nil, err
		}
	}
	if c.Body == "" {
		return ct, nil
	}
	switch c.BodyTemplate {
	case "", "html":
		ct.body, err = template.New(name).Funcs(template.FuncMap(funcs)).Parse(c.Body)
		if err != nil {
			return nil, fmt.Errorf("%s body: %w", name, err)
		}
	case "text":
		ct.text, err = ttemplate.New(name).Funcs(funcs).Option("missingkey=error").Parse(c.Body)
		if err == nil {
			err = ct.text.Execute(io.Discard, h.sampleHead())
		}
		if err != nil {
			return nil, fmt.Errorf("%s body: %w", name, err)
		}
	default:
		return nil, fmt.Errorf("%s: body_template %q: want html or text", name, c.BodyTemplate)
	}
	return ct, nil
}

// headerTemplate compiles a header value template and executes it once with the
// identity, so that a misspelt field is a configuration error and not a failing page.
func (h *Handler) headerTemplate(name, v string) (*ttemplate.Template, error) {
	t, err := ttemplate.New(name).Funcs(funcs).Option("missingkey=error").Parse(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, h.sampleHead()); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := checkValue(name, b.String()); err != nil {
		return nil, err
	}
	return t, nil
}

// sampleHead is a Head for checking templates when the site is compiled.
func (h *Handler) sampleHead() Head {
	now := h.now()
	return Head{Identity: h.id, Now: now, Boot: h.boot, Uptime: now.Sub(h.boot), Status: 200, Reason: "OK",
		Host: "192.0.2.1", LocalAddr: "192.0.2.1", LocalPort: 80, Location: "http://192.0.2.1/"}
}

// checkVersion checks a configured protocol version.
func checkVersion(name, v string) error {
	if v != "" && v != "1.0" && v != "1.1" {
		return fmt.Errorf("%s %q: want 1.0 or 1.1", name, v)
	}
	return nil
}

// dateLayout returns the Go layout of a date_format.
func dateLayout(f string) (string, error) {
	if l, ok := dateFormats[f]; ok {
		return l, nil
	}
	// A layout without an element of the reference time formats every time alike.
	other := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := checkValue("date_format", f); err != nil || other.Format(f) == f || len(f) > 64 {
		return "", fmt.Errorf("date_format %q: want imf-fixdate, rfc850, asctime or a Go time layout", f)
	}
	return f, nil
}

// compileOrder checks a header_order list.
func compileOrder(name string, names []string) (*headerOrder, error) {
	o := &headerOrder{pos: map[string]int{}, spell: map[string]string{}}
	for i, n := range names {
		if !isToken(n) {
			return nil, fmt.Errorf("%s: %q is not a header name", name, n)
		}
		l := strings.ToLower(n)
		if _, dup := o.pos[l]; dup {
			return nil, fmt.Errorf("%s: %s twice", name, n)
		}
		o.pos[l], o.spell[l] = i, n
	}
	return o, nil
}

// parseHeaders checks header lines and compiles their values; a Content-Type line is
// returned apart.
func (h *Handler) parseHeaders(name string, lines []string) (ctype *headerLine, out []headerLine, err error) {
	for _, l := range lines {
		l = strings.Trim(l, " \t")
		n, v, ok := strings.Cut(l, ":")
		if !ok || !isToken(n) {
			return nil, nil, fmt.Errorf("%s: %q is not a \"Name: value\" line", name, l)
		}
		if err := checkValue(name, v); err != nil {
			return nil, nil, err
		}
		value := strings.TrimLeft(v, " \t")
		hl := headerLine{name: strings.ToLower(n), prefix: l[:len(l)-len(value)]}
		if hl.value, err = h.headerTemplate(name+" "+n, value); err != nil {
			return nil, nil, err
		}
		switch {
		case hl.name == "content-type" && ctype == nil:
			ctype = &hl
		case slices.Contains(reservedHeaders, hl.name):
			return nil, nil, fmt.Errorf("%s: %s is set by the server", name, n)
		default:
			out = append(out, hl)
		}
	}
	return ctype, out, nil
}

func checkValue(name, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c != '\t' && (c < ' ' || c == 0x7f) {
			return fmt.Errorf("%s: control byte 0x%02x in %q", name, c, v)
		}
	}
	return nil
}

func urlValuesEqual(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// funcs are the functions of every template: pages, header values and text bodies.
var funcs = ttemplate.FuncMap{
	// dhms formats a duration as "3d 04:05:06".
	"dhms": func(d time.Duration) string {
		if d < 0 {
			d = 0
		}
		s := int64(d / time.Second)
		return fmt.Sprintf("%dd %02d:%02d:%02d", s/86400, s/3600%24, s/60%60, s%60)
	},
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	// repeat repeats s n times (at most 1024 bytes).
	"repeat": func(s string, n int) (string, error) {
		if n < 0 || len(s)*n > 1024 {
			return "", fmt.Errorf("repeat: %d times %d bytes", n, len(s))
		}
		return strings.Repeat(s, n), nil
	},
}

// ServeStream serves requests on conn until the peer closes it, a limit or timeout ends
// it, or ctx is cancelled. io.EOF, timeouts and resets are a normal end (nil).
func (h *Handler) ServeStream(ctx context.Context, s protocols.Session, nc net.Conn) error {
	c := &conn{h: h, s: s, nc: nc, ctx: ctx}
	defer c.release()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	defer stop()
	for n := 1; ; n++ {
		keep, err := c.serveOne(n >= h.cfg.MaxRequests)
		if err != nil {
			if protocols.PeerGone(err) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("http: %w", err)
		}
		if !keep {
			c.lingerClose()
			return nil
		}
	}
}

// Lingering close: after the last response, the peer may still be sending (a refused
// body, pipelined requests). Closing with unread bytes makes the kernel send a reset
// that can destroy the response before the client reads it, so the write side is shut
// first and what still arrives is read and dropped for a short, bounded while.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

func (c *conn) lingerClose() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if c.nc.SetReadDeadline(time.Now().Add(lingerTime)) != nil || c.ctx.Err() != nil {
		return
	}
	buf := make([]byte, 4096)
	for n := 0; n < lingerBytes; {
		m, err := c.nc.Read(buf)
		n += m
		if err != nil {
			return
		}
	}
}

// conn is the state of one connection.
type conn struct {
	h    *Handler
	s    protocols.Session
	nc   net.Conn
	ctx  context.Context
	buf  []byte  // received, not yet consumed bytes
	bufp *[]byte // the pool's buffer behind buf, while held
	out  []byte
	peek [64]byte // what an idle connection waits with
}

// reply is the answer to one request.
type reply struct {
	content *content
	status  int
	allow   string
	view    View
	close   bool
}

// exchange is what one request produced, for its event.
type exchange struct {
	req      *Request
	raw      []byte // head bytes, for requests that could not be parsed
	body     []byte
	username string
	login    bool
	errText  string
}

// serveOne reads and answers one request; keep is false when the connection must close.
func (c *conn) serveOne(last bool) (keep bool, err error) {
	req, headLen, err := c.readHead()
	if err != nil {
		return false, c.failHead(err)
	}
	x := exchange{req: req}
	if req.BadExpect {
		c.consume(headLen)
		return false, c.finish(&x, c.errorReply(req, 417, true))
	}
	body, total, err := c.readBody(req, headLen)
	if err != nil {
		// Record the part of the body that arrived.
		x.body = c.buf[headLen:min(len(c.buf), headLen+c.h.cfg.EventDataBytes)]
		return false, c.failBody(&x, err)
	}
	x.body = bytes.Clone(body)
	c.consume(total)
	r := c.route(&x)
	// An HTTP/1.0 answer ends the connection for the client unless it asked for
	// keep-alive (and the answer says Connection: keep-alive).
	r.close = r.close || r.content.close || !req.KeepAlive || last ||
		(req.Minor == 1 && c.minor(req, r.content) == 0 && !req.AskedKeepAlive)
	return !r.close, c.finish(&x, r)
}

// failHead answers a head that could not be read or parsed.
func (c *conn) failHead(err error) error {
	if len(c.buf) == 0 {
		// Idle timeout, EOF or cancellation between requests: nothing to answer.
		return err
	}
	x := exchange{raw: c.buf[:min(len(c.buf), c.h.cfg.MaxHeaderBytes)], errText: errorText(err)}
	switch code := StatusOf(err); {
	case code != 0:
		return c.finish(&x, c.errorReply(nil, code, true))
	case isTimeout(err) && c.ctx.Err() == nil:
		return c.finish(&x, c.errorReply(nil, 408, true))
	default:
		// The peer closed (or the sensor stopped) inside a head: record what came.
		c.emit(&x, 0)
		return err
	}
}

// failBody answers a body that could not be read or decoded.
func (c *conn) failBody(x *exchange, err error) error {
	x.errText = errorText(err)
	switch code := StatusOf(err); {
	case code != 0:
		return c.finish(x, c.errorReply(x.req, code, true))
	case isTimeout(err) && c.ctx.Err() == nil:
		return c.finish(x, c.errorReply(x.req, 408, true))
	default:
		c.emit(x, 0)
		return err
	}
}

func errorText(err error) string {
	switch {
	case StatusOf(err) != 0:
		return err.Error()
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, io.EOF):
		return "connection closed inside request"
	}
	return "read failed"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// readHead reads until c.buf starts with a complete head, within the idle timeout for
// the first byte and the header timeout for the whole head.
func (c *conn) readHead() (*Request, int, error) {
	var start time.Time
	for {
		if len(c.buf) > 0 {
			req, n, err := ParseHead(c.buf, c.h.lim)
			if !errors.Is(err, ErrIncomplete) {
				return req, n, err
			}
			if start.IsZero() {
				start = time.Now()
			}
		}
		deadline := time.Now().Add(c.h.cfg.IdleTimeout)
		if !start.IsZero() {
			deadline = start.Add(c.h.cfg.HeaderTimeout)
		}
		if err := c.fill(deadline, c.h.cfg.MaxHeaderBytes); err != nil {
			return nil, 0, err
		}
	}
}

// readBody reads the body that follows a head of headLen bytes within the body
// timeout. It returns the (decoded) body and the length of the whole request.
func (c *conn) readBody(req *Request, headLen int) ([]byte, int, error) {
	deadline := time.Now().Add(c.h.cfg.BodyTimeout)
	maxBody := c.h.cfg.MaxBodyBytes
	if req.Chunked {
		d := ChunkedBody{Max: maxBody}
		// The encoded body may carry framing overhead on top of the data.
		limit := headLen + 2*maxBody + maxChunkLine + maxTrailerBytes
		for asked := false; ; {
			n, err := d.Decode(c.buf[headLen:])
			if err == nil {
				return d.Body, headLen + n, nil
			}
			if !errors.Is(err, ErrIncomplete) {
				return nil, 0, err
			}
			if len(c.buf) >= limit {
				return nil, 0, fmt.Errorf("%w: chunked encoding over %d bytes", ErrBodyTooLarge, limit-headLen)
			}
			if req.Continue && !asked {
				asked = true
				if err := c.writeContinue(); err != nil {
					return nil, 0, err
				}
			}
			if err := c.fill(deadline, limit); err != nil {
				return nil, 0, err
			}
		}
	}
	if req.ContentLength <= 0 {
		return nil, headLen, nil
	}
	if req.ContentLength > int64(maxBody) {
		return nil, 0, fmt.Errorf("%w: Content-Length %d over %d", ErrBodyTooLarge, req.ContentLength, maxBody)
	}
	need := headLen + int(req.ContentLength)
	if len(c.buf) < need && req.Continue {
		if err := c.writeContinue(); err != nil {
			return nil, 0, err
		}
	}
	for len(c.buf) < need {
		if err := c.fill(deadline, need); err != nil {
			return nil, 0, err
		}
	}
	return c.buf[headLen:need], need, nil
}

// fill reads once into c.buf, at most up to limit bytes buffered.
func (c *conn) fill(deadline time.Time, limit int) error {
	if err := c.nc.SetReadDeadline(deadline); err != nil {
		return err
	}
	// Checked after setting the deadline: a cancellation that comes later resets it.
	if err := c.ctx.Err(); err != nil {
		return err
	}
	n := min(limit-len(c.buf), readChunk)
	if n <= 0 {
		return fmt.Errorf("%w: buffer full", ErrHeaderTooLarge)
	}
	var m int
	var err error
	if len(c.buf) == 0 {
		// Nothing unconsumed: the buffer goes back to the pool while the connection
		// waits (idle keep-alive connections are common), with a small one of its own.
		c.release()
		m, err = c.nc.Read(c.peek[:min(n, len(c.peek))])
		if m > 0 {
			c.bufp = c.h.bufs.Get()
			c.buf = append((*c.bufp)[:0], c.peek[:m]...)
		}
	} else {
		c.buf = slices.Grow(c.buf, n)
		m, err = c.nc.Read(c.buf[len(c.buf) : len(c.buf)+n])
		c.buf = c.buf[:len(c.buf)+m]
	}
	if m > 0 {
		return nil // a pending error comes back on the next read
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// readChunk is what one read may add to a connection's buffer, and the size of the
// pool's buffers.
const readChunk = 4096

// release hands the read buffer back to the pool (buf grown past it is dropped).
func (c *conn) release() {
	if c.bufp != nil {
		c.h.bufs.Put(c.bufp)
		c.bufp = nil
	}
	c.buf = nil
}

// consume drops the first n buffered bytes; pipelined bytes after them stay.
func (c *conn) consume(n int) {
	c.buf = c.buf[:copy(c.buf, c.buf[n:])]
}

func (c *conn) writeContinue() error {
	if err := c.writeDeadline(); err != nil {
		return err
	}
	_, err := c.nc.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n"))
	return err
}

// writeDeadline sets the write deadline, then checks ctx: a cancellation that comes
// later resets the deadline to now.
func (c *conn) writeDeadline() error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout)); err != nil {
		return err
	}
	return c.ctx.Err()
}

// route picks the answer to a complete request.
func (c *conn) route(x *exchange) reply {
	req, h := x.req, c.h
	if !slices.Contains(h.cfg.ServerMethods, req.Method) {
		return c.errorReply(req, h.cfg.UnknownMethodStatus, false)
	}
	switch req.Form {
	case AsteriskForm:
		return c.optionsReply(req, h.allowed)
	case AuthorityForm:
		r := c.errorReply(req, 405, false)
		r.allow = h.allowed
		return r
	}
	path, err := url.PathUnescape(req.Path)
	if err != nil {
		x.errText = "invalid percent-encoding in path"
		return c.errorReply(req, 400, false)
	}
	pages := h.paths[path]
	if len(pages) == 0 {
		return c.errorReply(req, 404, false)
	}
	pg := selectPage(pages, req.Query)
	switch {
	case req.Method == "OPTIONS":
		return c.optionsReply(req, pg.allow)
	case !slices.Contains(pg.methods, req.Method):
		r := c.errorReply(req, 405, false)
		r.allow = pg.allow
		return r
	case req.Method == "POST" && pg.login != nil:
		x.login = true
		form, _ := url.ParseQuery(string(x.body)) // a malformed form still yields its good pairs
		x.username = truncate(form.Get(pg.user), 256)
		v := c.view(req, pg.login.status)
		v.Username, v.LoginFailed = x.username, true
		return reply{content: pg.login, status: pg.login.status, view: v}
	}
	return reply{content: pg.content, status: pg.content.status, view: c.view(req, pg.content.status)}
}

// selectPage returns the page whose query parameter the request carries, else the first.
func selectPage(pages []*page, rawQuery string) *page {
	if len(pages) > 1 && rawQuery != "" {
		q, _ := url.ParseQuery(rawQuery)
		for _, p := range pages {
			for k, v := range p.query {
				if slices.Contains(q[k], v[0]) {
					return p
				}
			}
		}
	}
	return pages[0]
}

func (c *conn) optionsReply(req *Request, allow string) reply {
	if c.h.cfg.Options == OptionsAllow {
		return reply{content: &content{status: 200}, status: 200, allow: allow, view: c.view(req, 200)}
	}
	r := c.errorReply(req, 405, false)
	r.allow = allow
	return r
}

// errorReply answers status with the device's error page, whose own status wins when
// it has one (a device that answers missing pages with 200).
func (c *conn) errorReply(req *Request, status int, closeConn bool) reply {
	ct := c.h.errs[status]
	if ct == nil {
		ct = c.h.errAny
	}
	if ct.status != 0 {
		status = ct.status
	}
	return reply{content: ct, status: status, view: c.view(req, status), close: closeConn}
}

func (c *conn) view(req *Request, status int) View {
	now := c.h.now()
	v := View{Head: Head{Identity: c.h.id, Now: now, Boot: c.h.boot, Uptime: now.Sub(c.h.boot), Status: status, Reason: StatusText(status)}}
	local := c.s.Local()
	v.LocalAddr, v.LocalPort = local.Addr().Unmap().String(), int(local.Port())
	v.Host, v.HostMissing = localAuthority(local), true
	if req != nil {
		v.Method, v.Path, v.Query = req.Method, req.Path, req.Query
		v.HostMissing = req.Form != AbsoluteForm && !slices.ContainsFunc(req.Fields, func(f Field) bool { return strings.EqualFold(f.Name, "Host") })
		if validHost(req.Host) {
			v.Host = req.Host
		}
	}
	return v
}

// localAuthority is the host[:port] of a local address, for URLs.
func localAuthority(a netip.AddrPort) string {
	host := a.Addr().Unmap().WithZone("").String()
	if a.Addr().Unmap().Is6() {
		host = "[" + host + "]"
	}
	if a.Port() != 80 {
		host += ":" + strconv.Itoa(int(a.Port()))
	}
	return host
}

// validHost reports whether s is host[:port] with a host of letters, digits and
// "-._~" (a name or an IPv4 address) or a bracketed IPv6 address: what may be copied
// into a header or a URL as it is.
func validHost(s string) bool {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		host, port = "", s[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
		port = strings.TrimPrefix(port, ":")
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
	}
	if len(s) > 255 || (host == "" && !strings.HasPrefix(s, "[")) {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	if strings.Contains(s, ":") && !strings.HasSuffix(s, "]") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 || len(port) > 5 || strings.ContainsAny(port, "+-") {
			return false
		}
	}
	return true
}

// finish renders and writes r, then records the event.
func (c *conn) finish(x *exchange, r reply) error {
	err := c.write(x.req, r)
	c.emit(x, r.status)
	return err
}

// minor is the minor version of the status line of content answering req.
func (c *conn) minor(req *Request, ct *content) int {
	switch cmp.Or(ct.version, c.h.cfg.Version) {
	case "1.0":
		return 0
	case "1.1":
		return 1
	}
	if req != nil {
		return req.Minor
	}
	return 1
}

func (c *conn) write(req *Request, r reply) error {
	reason := r.content.reason
	if reason == "" || r.status != r.content.status {
		reason = StatusText(r.status)
	}
	r.view.Reason = reason
	body, lines, err := c.render(req, r)
	if err != nil {
		// The persona's template is broken: say so in the log (the error names the
		// template, not the request) and answer like a failing embedded server.
		c.s.Logger().Warn("http: page template failed", "status", r.status, "err", err)
		r = reply{content: &content{}, status: 500, close: true, view: r.view}
		reason = StatusText(500)
		body, lines, _ = c.render(req, r)
	}
	if req != nil && req.Method == "HEAD" {
		body = nil
	}
	c.out = AppendResponse(c.out[:0], &Response{Minor: c.minor(req, r.content), Status: r.status, Reason: reason, Header: lines, Body: body})
	if err := c.writeDeadline(); err != nil {
		return err
	}
	_, err = c.nc.Write(c.out)
	if cap(c.out) > readChunk {
		c.out = nil // a large page is not kept for the connection's whole life
	}
	return err
}

// render executes r's templates and returns the body and the header lines in order.
func (c *conn) render(req *Request, r reply) ([]byte, []string, error) {
	h, ct := c.h, r.content
	head := &r.view.Head
	if ct.location != nil {
		var b strings.Builder
		if err := ct.location.Execute(&b, head); err != nil {
			return nil, nil, err
		}
		head.Location = b.String()
	}
	var body []byte
	if ct.body != nil || ct.text != nil {
		var b bytes.Buffer
		var err error
		if ct.text != nil {
			err = ct.text.Execute(&b, *head)
		} else {
			err = ct.body.Execute(&b, r.view)
		}
		if err != nil {
			return nil, nil, err
		}
		body = b.Bytes()
	}
	// Default order, the S7-1200's: Content-Type, Content-Length, Connection, Allow,
	// Location, the page's own lines, the global lines, Date, Server.
	all := make([]headerLine, 0, 8+len(ct.lines)+len(h.extra))
	add := func(name, value string) { all = append(all, headerLine{name: name, static: value}) }
	if ct.ctype != nil {
		all = append(all, *ct.ctype)
	}
	if r.status != 204 && r.status != 304 {
		add("content-length", strconv.Itoa(max(0, len(body)+ct.adjust)))
	}
	reqMinor := 1
	if req != nil {
		reqMinor = req.Minor
	}
	switch minor := c.minor(req, ct); {
	case r.close && (h.cfg.ConnectionHeader == ConnectionAlways ||
		h.cfg.ConnectionHeader == ConnectionWhenNeeded && minor == 1 && reqMinor == 1):
		add("connection", "close")
	case !r.close && (reqMinor == 0 || minor == 0):
		add("connection", "keep-alive")
	}
	if r.allow != "" {
		add("allow", r.allow)
	}
	if head.Location != "" {
		add("location", head.Location)
	}
	all = append(all, ct.lines...)
	all = append(all, h.extra...)
	if h.cfg.Date {
		d := h.now().UTC().Format(h.date)
		if h.cfg.DateUpper {
			d = strings.ToUpper(d)
		}
		add("date", d)
	}
	if h.cfg.Server != "" {
		add("server", h.cfg.Server)
	}
	order := cmp.Or(ct.order, h.order)
	if order != nil {
		slices.SortStableFunc(all, func(a, b headerLine) int { return cmp.Compare(order.rank(a.name), order.rank(b.name)) })
	}
	lines := make([]string, len(all))
	for i, l := range all {
		v := l.static
		if l.value != nil {
			var b strings.Builder
			if err := l.value.Execute(&b, head); err != nil {
				return nil, nil, err
			}
			v = b.String()
		}
		// Persona strings reach header values through templates: never a line break.
		if err := checkValue(l.name, v); err != nil {
			return nil, nil, err
		}
		prefix := l.prefix
		if prefix == "" {
			prefix = order.spelling(l.name) + ": "
		}
		lines[i] = prefix + v
	}
	return body, lines, nil
}

// rank is the position of a header name in the order; unlisted names come after.
func (o *headerOrder) rank(name string) int {
	if p, ok := o.pos[name]; ok {
		return p
	}
	return math.MaxInt
}

// spelling is how a header the server writes is spelt: as the order lists it, else
// canonically ("Content-Length").
func (o *headerOrder) spelling(name string) string {
	if o != nil {
		if s, ok := o.spell[name]; ok {
			return s
		}
	}
	return canonicalHeader[name]
}

// canonicalHeader spells the headers the server writes.
var canonicalHeader = map[string]string{
	"content-type": "Content-Type", "content-length": "Content-Length", "connection": "Connection",
	"allow": "Allow", "location": "Location", "date": "Date", "server": "Server",
}

// emit records one request as an event.
func (c *conn) emit(x *exchange, status int) {
	ev := protocols.Event{
		Time:     c.h.now(),
		Protocol: "http",
		Op:       "http_request",
		Code:     status,
		Unit:     -1,
		Detail:   map[string]string{},
	}
	set := func(k, v string) {
		if v != "" {
			ev.Detail[k] = v
		}
	}
	data := x.body
	if r := x.req; r != nil {
		ev.Area = r.Path
		set("method", r.Method)
		set("version", r.Version())
		set("query", r.Query)
		set("host", r.Host)
		set("user_agent", r.Get("User-Agent"))
		set("content_type", r.Get("Content-Type"))
		if r.Form != OriginForm {
			set("target", r.Target)
		}
	} else {
		data = x.raw
	}
	if x.login {
		ev.Detail["username"] = x.username
	}
	set("error", x.errText)
	if len(data) > c.h.cfg.EventDataBytes {
		data = data[:c.h.cfg.EventDataBytes]
	}
	if len(data) > 0 {
		ev.Data = bytes.Clone(data)
	}
	c.s.Emit(ev)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// The default site. The markup is this package's own; paths, form field names and the
// error page layout are those of the device class.
const (
	pageHead = `<!DOCTYPE html>
<html lang="en">
<head>
<meta http-equiv="content-type" content="text/html; charset=UTF-8">
<meta http-equiv="Cache-Control" content="no-cache">
<meta http-equiv="Pragma" content="no-cache">
<meta http-equiv="Expires" content="-1">
<title>{{.Identity.Product}} - {{.Identity.ModuleName}}</title>
<style>
body{margin:0;font-family:Arial,Helvetica,sans-serif;font-size:12px;color:#000;background:#fff}
#top{height:46px;background:#fff;border-bottom:1px solid #a0a0a0;padding:0 16px}
#top .brand{float:left;font-size:22px;font-weight:bold;color:#009999;line-height:46px;letter-spacing:2px}
#top .product{float:right;line-height:46px;color:#4c4c4c}
#bar{background:#d7dfe8;padding:4px 16px;color:#1e1e1e}
#nav{float:left;width:190px;padding:12px 8px}
#nav a{display:block;padding:3px 6px;color:#1e1e1e;text-decoration:none}
#nav a.on{font-weight:bold;background:#e6ebf0}
#login{border:1px solid #a0a0a0;padding:6px;margin-bottom:12px}
#login input[type=text],#login input[type=password]{width:160px}
#main{margin-left:214px;padding:12px 16px}
table.t{border-collapse:collapse}
table.t td{padding:3px 12px 3px 0;vertical-align:top}
.err{color:#c00000;margin:4px 0}
#intro{width:520px;margin:60px auto;border:1px solid #a0a0a0;padding:24px}
</style>
</head>
`
	portalTop = `<body>
<div id="top"><span class="brand">{{upper .Identity.Vendor}}</span><span class="product">{{.Identity.Product}} {{.Identity.Model}}</span></div>
<div id="bar">{{.Identity.Hostname}} / {{.Identity.ModuleName}}<span style="float:right">{{.Now.Format "02.01.2006 15:04:05"}}</span></div>
<div id="nav">
<form id="login" action="/FormLogin" method="post">
{{if .LoginFailed}}<div class="err">Login failed.</div>{{end}}
<div>Name</div><input type="text" name="Login" value="{{.Username}}" autocomplete="off">
<div>Password</div><input type="password" name="Password" value="" autocomplete="off">
<input type="hidden" name="Redirection" value="/Portal/Portal.mwsl?PriNav=Start">
<div><input type="submit" value="Log in"></div>
</form>
`
	portalBottom = `</div>
</body>
</html>
`
	introPage = pageHead + `<body>
<div id="top"><span class="brand">{{upper .Identity.Vendor}}</span><span class="product">{{.Identity.Product}}</span></div>
<div id="intro">
<h2>{{.Identity.ModuleName}}</h2>
<p>{{.Identity.Model}}</p>
<form action="/Portal/Portal.mwsl" method="get">
<input type="hidden" name="PriNav" value="Start">
<input type="submit" value="ENTER">
</form>
</div>
</body>
</html>
`
	startPage = pageHead + portalTop + `<a class="on" href="/Portal/Portal.mwsl?PriNav=Start">Start page</a>
<a href="/Portal/Portal.mwsl?PriNav=Ident">Identification</a>
</div>
<div id="main">
<h3>Start page</h3>
<table class="t">
<tr><td>Station name:</td><td>{{.Identity.Hostname}}</td></tr>
<tr><td>Module name:</td><td>{{.Identity.ModuleName}}</td></tr>
<tr><td>Module type:</td><td>{{.Identity.Model}}</td></tr>
<tr><td>Article number:</td><td>{{.Identity.OrderNumber}}</td></tr>
<tr><td>Firmware:</td><td>{{.Identity.Firmware}}</td></tr>
<tr><td>Operating mode:</td><td>RUN</td></tr>
<tr><td>Status:</td><td>OK</td></tr>
<tr><td>Operating time:</td><td>{{dhms .Uptime}}</td></tr>
</table>
` + portalBottom
	identPage = pageHead + portalTop + `<a href="/Portal/Portal.mwsl?PriNav=Start">Start page</a>
<a class="on" href="/Portal/Portal.mwsl?PriNav=Ident">Identification</a>
</div>
<div id="main">
<h3>Identification</h3>
<table class="t">
<tr><td>Plant designation:</td><td>{{.Identity.PlantID}}</td></tr>
<tr><td>Location designation:</td><td>{{.Identity.Location}}</td></tr>
<tr><td>Manufacturer:</td><td>{{.Identity.Vendor}}</td></tr>
<tr><td>Module type:</td><td>{{.Identity.Model}}</td></tr>
<tr><td>Article number:</td><td>{{.Identity.OrderNumber}}</td></tr>
<tr><td>Serial number:</td><td>{{.Identity.Serial}}</td></tr>
<tr><td>Hardware:</td><td>{{.Identity.Hardware}}</td></tr>
<tr><td>Firmware:</td><td>{{.Identity.Firmware}}</td></tr>
</table>
` + portalBottom
	errorPage = "<HTML><HEAD><TITLE>Error</TITLE></HEAD>\r\n<BODY><CENTER><H2>{{.Path}}<BR><BR>{{.Status}} : {{upper .Reason}}</H2></CENTER></BODY></HTML>"
)
