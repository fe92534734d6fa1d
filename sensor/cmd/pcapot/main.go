// Command pcapot runs the ICS honeypot sensor and reads what it stored.
//
//	pcapot run [--config FILE] [--listen ADDR] [--iface NAME] [--data DIR] [S3 flags]
//	pcapot sessions list [--data DIR | S3 flags] [--json]
//	pcapot pcap get SESSION-ID -o FILE [--data DIR | S3 flags]
//	pcapot carve FULL.pcap[ng] -o DIR [--sensor-id ID]
//	pcapot validate [CONFIG | --persona FILE]
//	pcapot personas
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pcapot/pcapot/protocols/all"
	"github.com/pcapot/pcapot/sensor"
)

const usage = `pcapot: ICS/OT honeypot sensor with one pcap and one STIX 2.1 incident per attacker session

Usage:
  pcapot run [flags]                          run the sensor (flags: pcapot run -h)
  pcapot sessions list [--json] [store flags] list recorded sessions
  pcapot pcap get SESSION-ID -o FILE [store flags]
                                              download a session's pcap, verifying its SHA-256
  pcapot carve FULL.pcap[ng] -o DIR [--sensor-id ID]
                                              split a capture into per-session pcaps + STIX bundles
  pcapot validate [CONFIG] [--persona FILE]   check a config file and its persona, print every problem
  pcapot personas                             list the embedded device personas
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stdout, stderr)
	case "sessions":
		if len(args) < 2 || args[1] != "list" {
			err = usageError("pcapot sessions: the subcommand is `list`")
			break
		}
		err = cmdSessionsList(args[2:], stdout)
	case "pcap":
		if len(args) < 2 || args[1] != "get" {
			err = usageError("pcapot pcap: the subcommand is `get SESSION-ID -o FILE`")
			break
		}
		err = cmdPcapGet(args[2:], stdout)
	case "carve":
		err = cmdCarve(args[1:], stdout, stderr)
	case "validate":
		err = cmdValidate(args[1:], stdout)
	case "personas":
		for _, p := range sensor.Personas() {
			fmt.Fprintln(stdout, p)
		}
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageError(fmt.Sprintf("pcapot: unknown command %q (run `pcapot help`)", args[0]))
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, string(ue))
			return 2
		}
		fmt.Fprintln(stderr, "pcapot: "+oneLine(err.Error()))
		return 1
	}
	return 0
}

type usageError string

func (u usageError) Error() string { return string(u) }

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// configFlags are the flags that overlay the configuration file.
type configFlags struct {
	fs                                  *flag.FlagSet
	config, listen, iface, data, person string
	sensorID, format, logLevel, logFmt  string
	s3Endpoint, s3Bucket, s3Access      string
	s3Secret, s3Region                  string
	s3Insecure                          bool
	ports                               portFlags
	disable                             listFlag
	apiAddr, apiUser, apiPass, events   string
	apiCert, apiKey                     string
	apiTokens                           listFlag
}

func newConfigFlags(name string, withRun bool) *configFlags {
	f := &configFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	fs := f.fs
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.config, "config", "", "YAML config file (overlays the embedded default)")
	fs.StringVar(&f.data, "data", "", "data folder: local store, upload spool, install state (default ./pcapot-data)")
	fs.StringVar(&f.s3Endpoint, "s3-endpoint", "", "S3 endpoint HOST:PORT (MinIO, AWS S3); empty = local folder store")
	fs.StringVar(&f.s3Bucket, "s3-bucket", "", "S3 bucket (created if missing)")
	fs.BoolVar(&f.s3Insecure, "s3-insecure", false, "plain HTTP to the S3 endpoint")
	fs.StringVar(&f.s3Access, "s3-access-key", "", "S3 access key (default $AWS_ACCESS_KEY_ID)")
	fs.StringVar(&f.s3Secret, "s3-secret-key", "", "S3 secret key (default $AWS_SECRET_ACCESS_KEY)")
	fs.StringVar(&f.s3Region, "s3-region", "", "S3 region")
	if withRun {
		fs.StringVar(&f.listen, "listen", "", "IP address the services bind to (default 127.0.0.1); IP:PORT also moves Modbus to PORT")
		fs.StringVar(&f.iface, "iface", "", "capture interface(s), comma-separated (default: the one carrying --listen)")
		fs.StringVar(&f.person, "persona", "", "embedded persona name or persona YAML file")
		fs.StringVar(&f.sensorID, "sensor-id", "", "sensor id in object keys (default: generated once)")
		fs.StringVar(&f.format, "capture-format", "", "pcap or pcapng")
		fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error")
		fs.StringVar(&f.logFmt, "log-format", "", "text or json")
		fs.Var(&f.ports, "port", "move a service: NAME=PORT (repeatable), e.g. --port modbus=5020")
		fs.Var(&f.disable, "disable", "disable a service of the persona (repeatable)")
		fs.StringVar(&f.apiAddr, "api", "", "management API address: TAXII 2.1 at /taxii2/, metrics at /metrics (default 127.0.0.1:8080; off to disable)")
		fs.StringVar(&f.apiUser, "api-user", "", "management API HTTP Basic user (with --api-password)")
		fs.StringVar(&f.apiPass, "api-password", "", "management API HTTP Basic password")
		fs.Var(&f.apiTokens, "api-token", "management API key for Authorization: Bearer|Token (repeatable)")
		fs.StringVar(&f.apiCert, "api-tls-cert", "", "serve the management API over TLS with this certificate (PEM)")
		fs.StringVar(&f.apiKey, "api-tls-key", "", "private key (PEM) for --api-tls-cert")
		fs.StringVar(&f.events, "events", "", "ECS NDJSON event log (default <data>/events.ndjson; - for stdout; off)")
	}
	return f
}

func (f *configFlags) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.fs.SetOutput(os.Stdout)
			fmt.Fprintf(os.Stdout, "Usage of pcapot %s:\n", f.fs.Name())
			f.fs.PrintDefaults()
			return usageError("")
		}
		return usageError(fmt.Sprintf("pcapot %s: %v (see pcapot %s -h)", f.fs.Name(), err, f.fs.Name()))
	}
	return nil
}

// load builds the configuration: embedded default, then --config, then set flags,
// then the AWS_* environment for missing credentials.
func (f *configFlags) load() (*sensor.Config, error) {
	cfg, err := sensor.LoadConfig(f.config)
	if err != nil {
		return nil, err
	}
	var ferr error
	f.fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "data":
			cfg.Data = f.data
		case "s3-endpoint":
			cfg.S3.Endpoint = f.s3Endpoint
		case "s3-bucket":
			cfg.S3.Bucket = f.s3Bucket
		case "s3-insecure":
			cfg.S3.Insecure = f.s3Insecure
		case "s3-access-key":
			cfg.S3.AccessKey = f.s3Access
		case "s3-secret-key":
			cfg.S3.SecretKey = f.s3Secret
		case "s3-region":
			cfg.S3.Region = f.s3Region
		case "listen":
			host, port, perr := splitListen(f.listen)
			if perr != nil {
				ferr = perr
				return
			}
			cfg.Listen = host
			if port != 0 {
				setPort(cfg, "modbus", port)
			}
		case "iface":
			cfg.Interface = f.iface
		case "persona":
			cfg.Persona = f.person
		case "sensor-id":
			cfg.Sensor.ID = f.sensorID
		case "capture-format":
			cfg.Capture.Format = f.format
		case "log-level":
			cfg.Log.Level = f.logLevel
		case "log-format":
			cfg.Log.Format = f.logFmt
		case "api":
			cfg.API.Listen = f.apiAddr
			if f.apiAddr == "off" {
				cfg.API.Listen = ""
			}
		case "api-tls-cert":
			cfg.API.TLSCert = f.apiCert
		case "api-tls-key":
			cfg.API.TLSKey = f.apiKey
		case "events":
			cfg.Events.Path = f.events
		}
	})
	if ferr != nil {
		return nil, ferr
	}
	if f.apiUser != "" || f.apiPass != "" {
		if f.apiUser == "" || f.apiPass == "" {
			return nil, usageError("pcapot run: --api-user and --api-password go together")
		}
		if cfg.API.Users == nil {
			cfg.API.Users = map[string]string{}
		}
		cfg.API.Users[f.apiUser] = f.apiPass
	}
	cfg.API.Tokens = append(cfg.API.Tokens, f.apiTokens...)
	for name, port := range f.ports {
		setPort(cfg, name, port)
	}
	for _, name := range f.disable {
		off := false
		if cfg.Services == nil {
			cfg.Services = map[string]sensor.ServiceConfig{}
		}
		sc := cfg.Services[name]
		sc.Enabled = &off
		cfg.Services[name] = sc
	}
	if cfg.S3.AccessKey == "" {
		cfg.S3.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
	}
	if cfg.S3.SecretKey == "" {
		cfg.S3.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
	}
	return cfg, nil
}

func setPort(cfg *sensor.Config, name string, port uint16) {
	if cfg.Services == nil {
		cfg.Services = map[string]sensor.ServiceConfig{}
	}
	sc := cfg.Services[name]
	sc.Port = port
	cfg.Services[name] = sc
}

func splitListen(s string) (string, uint16, error) {
	if !strings.Contains(s, ":") || strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
		return s, 0, nil // an IPv4 or IPv6 address without port
	}
	host, p, ok := strings.Cut(s, "]:")
	if ok {
		host = strings.TrimPrefix(host, "[")
	} else {
		i := strings.LastIndex(s, ":")
		host, p = s[:i], s[i+1:]
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return "", 0, usageError(fmt.Sprintf("pcapot run: --listen %q: the port must be 1-65535", s))
	}
	return host, uint16(port), nil
}

type portFlags map[string]uint16

func (p *portFlags) String() string { return fmt.Sprint(map[string]uint16(*p)) }
func (p *portFlags) Set(v string) error {
	name, port, ok := strings.Cut(v, "=")
	n, err := strconv.ParseUint(port, 10, 16)
	if !ok || name == "" || err != nil || n == 0 {
		return fmt.Errorf("want NAME=PORT, e.g. modbus=5020")
	}
	if *p == nil {
		*p = portFlags{}
	}
	(*p)[name] = uint16(n)
	return nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func newLogger(cfg *sensor.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	f := newConfigFlags("run", true)
	if err := f.parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return usageError(fmt.Sprintf("pcapot run: unexpected argument %q (see pcapot run -h)", f.fs.Arg(0)))
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := sensor.New(ctx, cfg, all.Specs(), logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pcapot sensor %s\n", s.SensorID())
	for _, a := range s.Addrs() {
		fmt.Fprintf(stdout, "  listening: %s\n", a)
	}
	if u := s.APIURL(); u != "" {
		fmt.Fprintf(stdout, "  api:       %s/taxii2/ %s/metrics\n", u, u)
	}
	fmt.Fprintf(stdout, "  capturing: %s\n  storing:   %s\n", strings.Join(s.Interfaces(), ", "), s.StoreLocation())
	raiseGOMAXPROCS(logger, len(s.Interfaces()))
	return s.Run(ctx)
}

// storeConfig parses the flags of a command that reads the store (sessions list,
// pcap get) and returns the configuration they select.
func storeConfig(args []string, name string, extra func(fs *flag.FlagSet)) (*configFlags, *sensor.Config, error) {
	f := newConfigFlags(name, false)
	if extra != nil {
		extra(f.fs)
	}
	if err := f.parse(args); err != nil {
		return nil, nil, err
	}
	cfg, err := f.load()
	if err != nil {
		return nil, nil, err
	}
	return f, cfg, nil
}

func cmdSessionsList(args []string, stdout io.Writer) error {
	var asJSON bool
	_, cfg, err := storeConfig(args, "sessions list", func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON lines")
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := sensor.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	list, err := sensor.ListSessions(ctx, st)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		for _, s := range list {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTART\tEND\tATTACKER\tPROTOCOL\tPACKETS\tBYTES\tNOTE")
	for _, s := range list {
		note := ""
		if s.PossiblyIncomplete {
			note = "possibly incomplete"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.SessionID,
			s.Start.UTC().Format(time.RFC3339Nano), s.End.UTC().Format(time.RFC3339Nano),
			s.Client, s.Protocol, s.Packets, s.Bytes, note)
	}
	return tw.Flush()
}

func cmdPcapGet(args []string, stdout io.Writer) error {
	var out string
	// Accept the session id before or after the flags.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	f, cfg, err := storeConfig(args, "pcap get", func(fs *flag.FlagSet) {
		fs.StringVar(&out, "o", "", "output file")
	})
	if err != nil {
		return err
	}
	if id == "" && f.fs.NArg() > 0 {
		id = f.fs.Arg(0)
	}
	if id == "" || out == "" {
		return usageError("pcapot pcap get: usage: pcapot pcap get SESSION-ID -o FILE")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	st, err := sensor.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	_, parts, err := sensor.GetPCAPs(ctx, st, id)
	if err != nil {
		return err
	}
	for _, p := range parts {
		name := out
		if p.Part > 1 {
			name = fmt.Sprintf("%s.part%d", out, p.Part)
		}
		if err := os.WriteFile(name, p.Body, 0o640); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "%s  %s  sha256 %s verified\n", name, p.Key, p.SHA256)
	}
	return nil
}

func cmdValidate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	persona := fs.String("persona", "", "persona file or name to check (default: the config's)")
	if err := fs.Parse(args); err != nil {
		return usageError(fmt.Sprintf("pcapot validate: %v", err))
	}
	path := fs.Arg(0)
	problems, err := sensor.ValidateFiles(path, *persona, all.Specs())
	if err != nil {
		return err
	}
	if len(problems) == 0 {
		fmt.Fprintln(stdout, "ok")
		return nil
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p.String())
	}
	return fmt.Errorf("%d problem(s) found", len(problems))
}

func cmdCarve(args []string, stdout, stderr io.Writer) error {
	var in string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		in, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("carve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("o", "", "output folder (a folder store: <sensor-id>/<yyyy>/<mm>/<dd>/<session>.pcap|.json)")
	sensorID := fs.String("sensor-id", "", "sensor id in the keys (default: generated once per output folder)")
	if err := fs.Parse(args); err != nil {
		return usageError(fmt.Sprintf("pcapot carve: %v", err))
	}
	if in == "" && fs.NArg() > 0 {
		in = fs.Arg(0)
	}
	if in == "" || *out == "" {
		return usageError("pcapot carve: usage: pcapot carve FULL.pcap[ng] -o DIR [--sensor-id ID]")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := sensor.Carve(context.Background(), in, *out, *sensorID, all.Specs(), logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d sessions (%d pcaps) carved into %s; %d packets read, %d unparsed, %d probe flows from %d sources\n",
		res.Sessions, res.Parts, *out, res.Stats.PacketsSeen, res.Stats.PacketsUnparsed, res.Stats.ProbeFlows, len(res.Probes))
	return nil
}

// raiseGOMAXPROCS gives the two capture goroutines of each interface (the ring reader
// and the demux it hands packets to) a P of their own on top of the CPUs, unless
// GOMAXPROCS is set in the environment. A ring reader woken by the kernel then runs
// when the OS scheduler, which favours a thread that slept, gives it a CPU, instead of
// waiting in Go's run queue behind runnable protocol handlers while the ring fills:
// with a 1 MiB ring at about 600k packets/s on 2 CPUs, GOMAXPROCS 2 dropped packets in
// 3 runs of 3, 4 in none (docs/BENCHMARKS.md §2b). Setting it turns off the runtime's
// own updates of GOMAXPROCS from the cgroup CPU limit.
func raiseGOMAXPROCS(logger *slog.Logger, interfaces int) {
	if interfaces == 0 || os.Getenv("GOMAXPROCS") != "" {
		return
	}
	cpus := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(cpus + 2*interfaces)
	logger.Info("GOMAXPROCS raised for capture", "cpus", cpus, "gomaxprocs", cpus+2*interfaces)
}
