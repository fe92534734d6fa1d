package sensor

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pcapot/pcapot/capture"
)

// Config is the sensor configuration. The embedded default (default.yaml) is loaded
// first, then the config file, then command-line flags.
type Config struct {
	Sensor SensorConfig `yaml:"sensor"`
	// Persona is an embedded persona name (see Personas) or a path to a persona YAML file.
	Persona string `yaml:"persona"`
	// Listen is the IP address every emulated service binds to.
	Listen string `yaml:"listen"`
	// Interface is the capture interface; empty means the one that carries Listen.
	Interface string `yaml:"interface"`
	// Data is the folder for the local store, the upload spool and per-install state.
	Data string `yaml:"data"`
	// Services overrides the persona's services: port, or enabled: false.
	Services map[string]ServiceConfig `yaml:"services"`
	Capture  CaptureConfig            `yaml:"capture"`
	S3       S3Config                 `yaml:"s3"`
	Limits   LimitsConfig             `yaml:"limits"`
	API      APIConfig                `yaml:"api"`
	Events   EventsConfig             `yaml:"events"`
	Log      LogConfig                `yaml:"log"`
}

// SensorConfig names the sensor.
type SensorConfig struct {
	// ID is used in object keys ([a-z0-9-]); empty means generated once and persisted.
	ID string `yaml:"id"`
	// Name is the human-readable sensor name in incidents.
	Name string `yaml:"name"`
}

// ServiceConfig overrides one service of the persona.
type ServiceConfig struct {
	Port    uint16 `yaml:"port"`
	Enabled *bool  `yaml:"enabled"`
}

// CaptureConfig tunes the capture engine.
type CaptureConfig struct {
	Format         string        `yaml:"format"`
	Linger         time.Duration `yaml:"linger"`
	TCPIdle        time.Duration `yaml:"tcp_idle"`
	UDPIdle        time.Duration `yaml:"udp_idle"`
	PendingTimeout time.Duration `yaml:"pending_timeout"`
	MaxPending     int           `yaml:"max_pending"`
	MaxSessionSize int64         `yaml:"max_session_bytes"`
	MaxLifetime    time.Duration `yaml:"max_lifetime"`
	// The TPACKET_V3 ring of each capture interface: RingMiB in all, cut into blocks
	// of RingBlockKiB that the kernel hands to the reader when full or after
	// RingBlockTimeout (see capture/README.md, ring geometry).
	RingMiB          int           `yaml:"ring_mib"`
	RingBlockKiB     int           `yaml:"ring_block_kib"`
	RingBlockTimeout time.Duration `yaml:"ring_block_timeout"`
}

// S3Config selects S3-compatible storage; empty Endpoint means the local folder store.
type S3Config struct {
	Endpoint  string `yaml:"endpoint"`
	Bucket    string `yaml:"bucket"`
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	Region    string `yaml:"region"`
	Insecure  bool   `yaml:"insecure"`
}

// LimitsConfig bounds what attackers can make the sensor hold.
type LimitsConfig struct {
	MaxSessions       int `yaml:"max_sessions"`
	MaxSessionsPerIP  int `yaml:"max_sessions_per_ip"`
	MaxEventsPerSess  int `yaml:"max_events_per_session"`
	MaxUDPFlows       int `yaml:"max_udp_flows"`
	MaxDatagramsPerSe int `yaml:"max_datagrams_per_session"`
	// Uploads (FTP STOR, TFTP WRQ...) kept as evidence per session.
	MaxFilesPerSess     int   `yaml:"max_files_per_session"`
	MaxFileBytesPerSess int64 `yaml:"max_file_bytes_per_session"`
}

// APIConfig is the management API: TAXII 2.1 at /taxii2/ and Prometheus /metrics.
type APIConfig struct {
	// Listen is host:port; "" turns the API off. A non-loopback address needs users
	// or tokens.
	Listen string `yaml:"listen"`
	// Users are HTTP Basic credentials (name: password); Tokens API keys
	// ("Authorization: Bearer|Token <key>").
	Users  map[string]string `yaml:"users"`
	Tokens []string          `yaml:"tokens"`
	// TLSCert and TLSKey serve HTTPS (TLS 1.2+).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// VisibilityDelay: a bundle is served this long after it is stored, so that TAXII
	// pollers never skip one (see sensor/api). Same value on every instance.
	VisibilityDelay time.Duration `yaml:"visibility_delay"`
	// EmptyObjectsList answers empty pages with "objects": [] (Elastic needs it).
	EmptyObjectsList bool `yaml:"empty_objects_list"`
}

// EventsConfig is the ECS NDJSON event log.
type EventsConfig struct {
	// Path: "" = <data>/events.ndjson, "-" = standard output, "off" = none.
	Path     string       `yaml:"path"`
	MaxBytes int64        `yaml:"max_bytes"`
	MaxFiles int          `yaml:"max_files"`
	Syslog   SyslogConfig `yaml:"syslog"`
}

// SyslogConfig also sends every event record to a syslog server (RFC 5424).
type SyslogConfig struct {
	Network        string `yaml:"network"` // udp, tcp or tls
	Address        string `yaml:"address"` // host:port; "" = off
	Facility       int    `yaml:"facility"`
	NewlineFraming bool   `yaml:"newline_framing"`
}

// LogConfig sets the process log.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"` // "text" or "json"
}

//go:embed default.yaml
var defaultYAML []byte

// DefaultConfig returns the embedded default configuration.
func DefaultConfig() (*Config, error) {
	var c Config
	if ps := decodeYAML("default.yaml", defaultYAML, &c); len(ps) > 0 {
		return nil, fmt.Errorf("embedded default config: %w", ps)
	}
	return &c, nil
}

// LoadConfig returns the default configuration overlaid with the YAML file at path
// (if path is not empty). Every problem in the file is reported, with its line.
func LoadConfig(path string) (*Config, error) {
	c, err := DefaultConfig()
	if err != nil {
		return nil, err
	}
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if ps := decodeYAML(path, b, c); len(ps) > 0 {
		return nil, ps
	}
	return c, nil
}

// decodeYAML decodes one YAML document strictly into out (overlaying what is there).
func decodeYAML(file string, b []byte, out any) Problems {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: nothing to overlay
		}
		return Problems{{File: file, Msg: err.Error()}}
	}
	return decodeStrict(file, &doc, out)
}

// Validate checks the values that decoding cannot, and reports every problem.
func (c *Config) Validate() Problems {
	var ps Problems
	add := func(format string, a ...any) { ps = append(ps, Problem{Msg: fmt.Sprintf(format, a...)}) }
	if c.Sensor.ID != "" && !validID(c.Sensor.ID) {
		add("sensor.id %q: use 1-40 characters of a-z, 0-9 and '-'", c.Sensor.ID)
	}
	if _, err := netip.ParseAddr(c.Listen); err != nil {
		add("listen %q: not an IP address (e.g. 127.0.0.1 or 0.0.0.0)", c.Listen)
	}
	if c.Data == "" {
		add("data: a folder is required")
	}
	switch c.Capture.Format {
	case "pcap", "pcapng":
	default:
		add("capture.format %q: use pcap or pcapng", c.Capture.Format)
	}
	if c.Capture.Linger <= 0 || c.Capture.TCPIdle <= 0 || c.Capture.UDPIdle <= 0 {
		add("capture.linger, tcp_idle and udp_idle must be positive durations such as 1s")
	}
	if c.Capture.RingBlockKiB < capture.MinBlockSize/1024 || c.Capture.RingBlockKiB%4 != 0 {
		add("capture.ring_block_kib %d: at least %d and a multiple of 4 (a block must hold the largest frame the interface passes up, 64 KiB with GRO/TSO)", c.Capture.RingBlockKiB, capture.MinBlockSize/1024)
	} else if c.Capture.RingMiB <= 0 || c.Capture.RingMiB*1024 < 2*c.Capture.RingBlockKiB {
		add("capture.ring_mib %d: must hold at least two blocks of ring_block_kib", c.Capture.RingMiB)
	}
	if c.Capture.RingBlockTimeout <= 0 || c.Capture.RingBlockTimeout > time.Second {
		add("capture.ring_block_timeout %v: between 1ms and 1s", c.Capture.RingBlockTimeout)
	}
	if c.S3.Endpoint != "" {
		if c.S3.Bucket == "" {
			add("s3.bucket: required with s3.endpoint")
		}
		if c.S3.AccessKey == "" || c.S3.SecretKey == "" {
			add("s3 credentials missing: set --s3-access-key/--s3-secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
		}
	}
	if sl := c.Events.Syslog; sl.Address != "" && sl.Network != "udp" && sl.Network != "tcp" && sl.Network != "tls" {
		add("events.syslog.network %q: use udp, tcp or tls", sl.Network)
	}
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		add("api.tls_cert and api.tls_key go together")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format %q: use text or json", c.Log.Format)
	}
	if c.Limits.MaxSessions <= 0 || c.Limits.MaxEventsPerSess <= 0 || c.Limits.MaxUDPFlows <= 0 || c.Limits.MaxFilesPerSess < 0 || c.Limits.MaxFileBytesPerSess < 0 {
		add("limits: max_sessions, max_events_per_session and max_udp_flows must be positive")
	}
	return ps
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
