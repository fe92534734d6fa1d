// Package ftp emulates the FTP service of a PLC or its Ethernet module (port 21):
// RFC 959 with the RFC 2428 and RFC 3659 extensions clients use, configured accounts,
// a virtual read-only file tree built from the persona, passive and active data
// connections restricted to the client's own address, and uploads kept in memory as
// evidence and reported through events, never written to disk. See README.md.
package ftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Spec returns the registry entry of the FTP server.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      "ftp",
		Transport: protocols.TCP,
		Port:      21,
		Service:   "ftp",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc("ftp", New),
		// The data connections use the passive port range (also as the source port
		// of active ones), so the capture sees them.
		CapturePorts: func(cfg any) []uint16 {
			c, ok := cfg.(*Config)
			if !ok || c.PassivePortMin == 0 {
				return nil
			}
			ports := make([]uint16, 0, int(c.PassivePortMax)-int(c.PassivePortMin)+1)
			for p := int(c.PassivePortMin); p <= int(c.PassivePortMax); p++ {
				ports = append(ports, uint16(p))
			}
			return ports
		},
	}
}

// Account is a login of the FTP server.
type Account struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// Home is the working directory after login.
	Home string `yaml:"home"`
	// Write lets the account upload (STOR, APPE, STOU). Uploads never change the
	// tree other sessions see; DELE, MKD, RMD and renames are always refused.
	Write bool `yaml:"write"`
}

// File is a file of the virtual tree.
type File struct {
	// Path is the absolute path; identity placeholders such as {firmware} are
	// replaced.
	Path string `yaml:"path"`
	// Content is the start of the file (placeholders replaced); the file is Size
	// bytes long, the rest deterministic filler (firmware images and the like).
	Content string `yaml:"content"`
	Size    int64  `yaml:"size"`
	// Modified is the modification time; zero picks one before boot.
	Modified time.Time `yaml:"modified"`
}

// Config is the persona's `ftp:` section. NewConfig fills in the defaults.
type Config struct {
	// Banner is the text of the 220 greeting (placeholders replaced; several lines
	// make a multi-line greeting).
	Banner string `yaml:"banner"`
	// System is the text of the 215 reply to SYST.
	System string `yaml:"system"`
	// Features are the lines of the FEAT reply; empty answers FEAT with 502.
	Features []string  `yaml:"features"`
	Accounts []Account `yaml:"accounts"`
	// Anonymous allows read-only logins as "anonymous" or "ftp" with any password.
	Anonymous bool `yaml:"anonymous"`
	// Files and Dirs make the virtual tree; the parents of every file exist.
	Files []File   `yaml:"files"`
	Dirs  []string `yaml:"dirs"`
	// Owner and Group are shown in LIST lines.
	Owner string `yaml:"owner"`
	Group string `yaml:"group"`

	// PassiveAddress is the IPv4 address announced in PASV replies, for a sensor
	// behind NAT; empty announces the address the client connected to.
	PassiveAddress string `yaml:"passive_address"`
	// PassivePortMin and PassivePortMax restrict passive listeners to a port range;
	// 0 and 0 use ephemeral ports.
	PassivePortMin uint16 `yaml:"passive_port_min"`
	PassivePortMax uint16 `yaml:"passive_port_max"`

	// IdleTimeout ends a control connection that sends nothing for this long (with
	// a 421 reply); a command line must also be complete within it.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// DataTimeout bounds waiting for a data connection and each read or write on it.
	DataTimeout time.Duration `yaml:"data_timeout"`
	// TransferTimeout bounds one whole transfer.
	TransferTimeout time.Duration `yaml:"transfer_timeout"`
	// LoginDelay is waited before answering a failed login; after
	// MaxLoginFailures failures the connection is closed.
	LoginDelay       time.Duration `yaml:"login_delay"`
	MaxLoginFailures int           `yaml:"max_login_failures"`
	// MaxCommands bounds the commands of one connection.
	MaxCommands int `yaml:"max_commands"`
	// MaxUploadSize bounds one uploaded file, MaxSessionUpload the uploads of one
	// connection, MaxUploadMemory the uploads held by all connections together.
	MaxUploadSize    int64 `yaml:"max_upload_size"`
	MaxSessionUpload int64 `yaml:"max_session_upload"`
	MaxUploadMemory  int64 `yaml:"max_upload_memory"`
}

// NewConfig returns the default configuration: the FTP server of a VxWorks-based
// PLC with its factory account, system files, web pages and firmware image.
func NewConfig() *Config {
	return &Config{
		Banner:   "VxWorks (5.5.1) FTP server ready",
		System:   "UNIX Type: L8 Version: VxWorks",
		Features: []string{"EPRT", "EPSV", "MDTM", "REST STREAM", "SIZE"},
		Accounts: []Account{{User: "USER", Password: "USER", Home: "/", Write: true}},
		Files: []File{
			{Path: "/sys/version.txt", Content: "{vendor} {product}\r\nModel      : {model}\r\nOrder no.  : {order_number}\r\n" +
				"Firmware   : {firmware}\r\nHardware   : {hardware}\r\nSerial no. : {serial}\r\nMAC address: {mac}\r\n"},
			{Path: "/sys/net.cfg", Content: "[NETWORK]\r\nHOSTNAME={hostname}\r\nMAC={mac}\r\nDHCP=0\r\n\r\n[SERVICES]\r\nFTP=1\r\nHTTP=1\r\nSNMP=1\r\n"},
			{Path: "/web/index.htm", Content: "<html>\r\n<head><title>{product} {model}</title>\r\n" +
				"<meta http-equiv=\"refresh\" content=\"0; url=/html/english/home/index.htm\"></head>\r\n<body></body>\r\n</html>\r\n"},
			{Path: "/web/images/logo.gif", Content: "GIF89a\x96\x00\x28\x00\xf7\x00\x00", Size: 3421},
			{Path: "/fw/{firmware}.ldx", Content: "LDX\x01", Size: 1867776},
		},
		Dirs:  []string{"/data"},
		Owner: "0",
		Group: "0",
		// A small fixed range, so that data connections are captured (the sensor
		// adds CapturePorts to its capture filter).
		PassivePortMin:   49152,
		PassivePortMax:   49183,
		IdleTimeout:      5 * time.Minute,
		DataTimeout:      30 * time.Second,
		TransferTimeout:  10 * time.Minute,
		LoginDelay:       time.Second,
		MaxLoginFailures: 3,
		MaxCommands:      2000,
		MaxUploadSize:    8 << 20,
		MaxSessionUpload: 32 << 20,
		MaxUploadMemory:  128 << 20,
	}
}

// Validate checks c; New calls it (and builds the tree, which is checked too).
func (c *Config) Validate() error {
	if c.Banner == "" || strings.ContainsAny(c.Banner, "\r\x00") {
		return errors.New("banner: want a non-empty text without CR or NUL")
	}
	if c.System == "" || strings.ContainsAny(c.System, "\r\n\x00") {
		return errors.New("system: want one line of text")
	}
	for _, f := range c.Features {
		if f == "" || strings.ContainsAny(f, "\r\n\x00") {
			return fmt.Errorf("features: %q: want one line of text", f)
		}
	}
	seen := map[string]bool{}
	for i, a := range c.Accounts {
		switch {
		case a.User == "" || len(a.User) > 64 || strings.ContainsAny(a.User, " \r\n\x00"):
			return fmt.Errorf("accounts[%d]: user: want 1 to 64 characters without spaces or line ends", i)
		case seen[a.User]:
			return fmt.Errorf("accounts[%d]: user %q twice", i, a.User)
		case strings.ContainsAny(a.Password, "\r\n\x00") || len(a.Password) > 128:
			return fmt.Errorf("accounts[%d]: password: want at most 128 characters without line ends", i)
		case a.Home != "" && !strings.HasPrefix(a.Home, "/"):
			return fmt.Errorf("accounts[%d]: home %q: want an absolute path", i, a.Home)
		}
		if c.Anonymous && isAnonymous(a.User) {
			return fmt.Errorf("accounts[%d]: user %q is the anonymous login", i, a.User)
		}
		seen[a.User] = true
	}
	if len(c.Accounts) == 0 && !c.Anonymous {
		return errors.New("accounts: no account and no anonymous login: nobody can log in")
	}
	for _, s := range []string{c.Owner, c.Group} {
		if s == "" || len(s) > 8 || strings.ContainsAny(s, " \r\n\x00") {
			return fmt.Errorf("owner/group %q: want 1 to 8 characters without spaces", s)
		}
	}
	if c.PassiveAddress != "" {
		if a, err := netip.ParseAddr(c.PassiveAddress); err != nil || !a.Is4() {
			return fmt.Errorf("passive_address %q: want an IPv4 address", c.PassiveAddress)
		}
	}
	if (c.PassivePortMin == 0) != (c.PassivePortMax == 0) || c.PassivePortMin > c.PassivePortMax || (c.PassivePortMin != 0 && c.PassivePortMin < 1024) {
		return fmt.Errorf("passive ports %d-%d: want both 0, or 1024 <= min <= max", c.PassivePortMin, c.PassivePortMax)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"idle_timeout", c.IdleTimeout}, {"data_timeout", c.DataTimeout}, {"transfer_timeout", c.TransferTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s %v: want a positive duration", d.name, d.v)
		}
	}
	if c.LoginDelay < 0 || c.LoginDelay > time.Minute {
		return fmt.Errorf("login_delay %v: want 0 to 1m", c.LoginDelay)
	}
	if c.MaxLoginFailures < 1 {
		return fmt.Errorf("max_login_failures %d: want at least 1", c.MaxLoginFailures)
	}
	if c.MaxCommands < 1 {
		return fmt.Errorf("max_commands %d: want at least 1", c.MaxCommands)
	}
	if c.MaxUploadSize < 0 || c.MaxSessionUpload < c.MaxUploadSize || c.MaxUploadMemory < c.MaxSessionUpload {
		return errors.New("upload limits: want 0 <= max_upload_size <= max_session_upload <= max_upload_memory")
	}
	return nil
}

// isAnonymous reports whether user is the anonymous login name.
func isAnonymous(user string) bool {
	return strings.EqualFold(user, "anonymous") || strings.EqualFold(user, "ftp")
}

// ErrSessionLimit is returned (wrapped) when a connection reaches MaxCommands.
var ErrSessionLimit = errors.New("ftp: session limit reached")

// Handler serves FTP control connections. The tree is read-only and shared; each
// connection's uploads are its own. Handler is safe for concurrent use.
type Handler struct {
	cfg     Config
	env     protocols.Env
	tree    *tree
	banner  string
	passive netip.Addr // announced in PASV replies instead of the local address

	// held is the number of uploaded bytes held in memory by all connections.
	held atomic.Int64
}

var _ protocols.StreamHandler = (*Handler)(nil)

// New builds a handler for the persona env.Identity.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if env.Identity == nil {
		return nil, fmt.Errorf("ftp: no device identity: %w", protocols.ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ftp: %w: %w", protocols.ErrConfig, err)
	}
	env = env.WithDefaults()
	expand := expander(env.Identity)
	ident := fmt.Sprintf("%s\x00%s\x00%s", env.Identity.Vendor, env.Identity.Serial, env.Identity.MAC)
	t, err := newTree(cfg.Files, cfg.Dirs, expand, env.Boot, ident)
	if err != nil {
		return nil, fmt.Errorf("ftp: %w: %w", protocols.ErrConfig, err)
	}
	for i, a := range cfg.Accounts {
		if a.Home == "" {
			continue
		}
		if n := t.lookup(resolve("/", a.Home)); n == nil || !n.dir {
			return nil, fmt.Errorf("ftp: %w: accounts[%d]: home %q is not a directory of the tree", protocols.ErrConfig, i, a.Home)
		}
	}
	h := &Handler{cfg: *cfg, env: env, tree: t, banner: expand(cfg.Banner)}
	if cfg.PassiveAddress != "" {
		h.passive = netip.MustParseAddr(cfg.PassiveAddress) // checked by Validate
	}
	return h, nil
}

// ServeStream serves one control connection: the greeting, then commands until QUIT,
// the peer closes, the idle timeout, a limit, or ctx is cancelled.
func (h *Handler) ServeStream(ctx context.Context, s protocols.Session, conn net.Conn) error {
	c := &session{h: h, s: s, ctrl: conn, ctx: ctx, cwd: "/", typ: 'A', uploads: map[string]*node{}}
	defer c.close()
	stop := context.AfterFunc(ctx, func() {
		conn.SetReadDeadline(time.Unix(1, 0))
		c.abortData()
	})
	defer stop()
	if err := c.reply(220, h.banner); err != nil {
		return quiet(err)
	}
	return c.serve()
}

// sanitize makes attacker text safe to echo in a one-line reply.
func sanitize(s string, max int) string {
	b := []byte(s[:min(len(s), max)])
	for i, c := range b {
		if c < 0x20 || c == 0x7F {
			b[i] = '?'
		}
	}
	return string(b)
}

// addrOf returns the address of a net.Addr without an IPv4-in-IPv6 mapping.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
