// Package sensor wires the protocol emulators, the capture engine and the incident
// pipeline into one running sensor: configuration and persona, listeners, the session
// lifecycle, and the joining of each session's pcap with its protocol events.
package sensor

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/pcapot/pcapot/capture"
	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/sensor/api"
	"github.com/pcapot/pcapot/sensor/eventlog"
	"github.com/pcapot/pcapot/sensor/metrics"
)

// Sensor is a configured, ready-to-run sensor.
type Sensor struct {
	cfg      *Config
	log      *slog.Logger
	persona  *Persona
	identity *protocols.Identity
	state    *State
	sensor   incidents.Sensor
	services []*service
	listen   netip.Addr

	store    incidents.Store
	uploader *incidents.Uploader
	demux    *capture.Demux
	lives    []*capture.Live
	ifaces   []string

	finished *queue[*capture.Finished]

	metrics *metrics.Metrics
	events  *eventlog.Log
	api     *api.Server
	apiLn   net.Listener
	apiTLS  *tls.Config

	connsMu sync.Mutex
	conns   map[string]net.Conn

	mu       sync.Mutex
	sessions map[string]*session
	perIP    map[netip.Addr]int
	wg       sync.WaitGroup // handlers
	complWG  sync.WaitGroup // incident builders, started by finish
}

// service is one protocol served on one port.
type service struct {
	spec    protocols.Spec
	cfg     any // the protocol's decoded configuration
	port    uint16
	stream  protocols.StreamHandler
	dgram   protocols.DatagramHandler
	ln      net.Listener
	pc      net.PacketConn
	flowsMu sync.Mutex
	flows   map[flowKey]*session
}

// flowKey names one UDP flow of a service: the attacker and the sensor address it sent to.
type flowKey struct {
	remote netip.AddrPort
	local  netip.Addr
}

// New prepares a sensor: it validates the configuration, loads the persona and the
// install's state, builds the handlers, opens the store, the capture and the
// listeners. Errors are single lines that name the problem and the fix.
func New(ctx context.Context, cfg *Config, specs []protocols.Spec, logger *slog.Logger) (*Sensor, error) {
	if ps := cfg.Validate(); len(ps) > 0 {
		return nil, fmt.Errorf("configuration: %w", ps)
	}
	s := &Sensor{
		cfg:      cfg,
		log:      logger,
		sessions: map[string]*session{},
		perIP:    map[netip.Addr]int{},
		finished: newQueue[*capture.Finished](),
	}
	s.listen = netip.MustParseAddr(cfg.Listen).Unmap()
	var err error
	if s.persona, err = LoadPersona(cfg.Persona); err != nil {
		return nil, err
	}
	if s.state, err = LoadState(cfg.Data, cfg.Sensor.ID); err != nil {
		return nil, err
	}
	if s.identity, err = s.state.Identity(cfg.Data, s.persona); err != nil {
		return nil, err
	}
	s.sensor = incidents.Sensor{
		ID:         s.state.SensorID,
		Name:       cfg.Sensor.Name,
		IdentityID: s.state.IdentityID,
		Vendor:     s.identity.Vendor,
		Product:    s.identity.Product,
		// One (id, modified) pair must always serialize the same: the identity's
		// version is the install's creation time.
		IdentityCreated:  s.state.Created,
		IdentityModified: s.state.Created,
	}
	if err := s.buildServices(specs); err != nil {
		return nil, err
	}
	if s.store, err = OpenStore(ctx, cfg); err != nil {
		return nil, err
	}
	if err := s.openSIEM(); err != nil {
		return nil, err
	}
	if s.uploader, err = incidents.NewUploader(s.store, spoolDir(cfg), logger.With("component", "uploader")); err != nil {
		return nil, fmt.Errorf("upload spool: %w", err)
	}
	if err := s.openCapture(); err != nil {
		s.closeAPI()
		return nil, err
	}
	if err := s.openListeners(); err != nil {
		s.closeListeners()
		s.closeCapture()
		s.closeAPI()
		return nil, err
	}
	s.observeCapture()
	return s, nil
}

// buildServices resolves the persona's services (overridden by the config) to specs and
// builds one handler per service.
func (s *Sensor) buildServices(specs []protocols.Spec) error {
	byName := map[string]protocols.Spec{}
	for _, sp := range specs {
		byName[sp.Name] = sp
	}
	ports := map[string]uint16{}
	for name, port := range s.persona.Services {
		ports[name] = port
	}
	var ps Problems
	for name, o := range s.cfg.Services {
		if _, ok := byName[name]; !ok {
			ps = append(ps, Problem{Msg: fmt.Sprintf("services.%s: unknown protocol (known: %s)", name, specNames(specs))})
			continue
		}
		if o.Enabled != nil && !*o.Enabled {
			delete(ports, name)
			continue
		}
		p := o.Port
		if p == 0 {
			p = ports[name]
		}
		if p == 0 {
			p = byName[name].Port
		}
		ports[name] = p
	}
	names := make([]string, 0, len(ports))
	for name := range ports {
		names = append(names, name)
	}
	sort.Strings(names)
	boot, err := bootTime(time.Now())
	if err != nil {
		return err
	}
	env := func(name string) protocols.Env {
		return protocols.Env{
			Identity: s.identity,
			Logger:   s.log.With("protocol", name),
			Boot:     boot, // one device: every protocol counts uptime from the same boot
			Now:      time.Now,
		}
	}
	for _, name := range names {
		sp, ok := byName[name]
		if !ok {
			ps = append(ps, Problem{Msg: fmt.Sprintf("persona %s: service %q is not a protocol this sensor has (known: %s)", s.persona.Name, name, specNames(specs))})
			continue
		}
		pcfg, pps := s.persona.ProtocolConfig(sp)
		if len(pps) > 0 {
			ps = append(ps, pps...)
			continue
		}
		h, err := sp.New(env(name), pcfg)
		if err != nil {
			ps = append(ps, Problem{Msg: fmt.Sprintf("persona %s: protocols.%s: %v", s.persona.Name, name, err)})
			continue
		}
		svc := &service{spec: sp, cfg: pcfg, port: ports[name], flows: map[flowKey]*session{}}
		switch sp.Transport {
		case protocols.TCP:
			sh, ok := h.(protocols.StreamHandler)
			if !ok {
				return fmt.Errorf("protocol %s: handler is not a StreamHandler", name)
			}
			svc.stream = sh
		case protocols.UDP:
			dh, ok := h.(protocols.DatagramHandler)
			if !ok {
				return fmt.Errorf("protocol %s: handler is not a DatagramHandler", name)
			}
			svc.dgram = dh
		}
		s.services = append(s.services, svc)
	}
	if len(ps) > 0 {
		return ps
	}
	if len(s.services) == 0 {
		return errors.New("no service enabled: enable one in the persona's services or the config's services")
	}
	return nil
}

func specNames(specs []protocols.Spec) string {
	var n []string
	for _, sp := range specs {
		n = append(n, sp.Name)
	}
	sort.Strings(n)
	return fmt.Sprint(n)
}

// bootTime is the emulated device's boot time: a random uptime of 3 to 14 days at
// start rather than the second the sensor started, which would be a tell.
func bootTime(now time.Time) (time.Time, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(11*24*time.Hour)))
	if err != nil {
		return time.Time{}, fmt.Errorf("boot time: %w", err)
	}
	return now.Add(-3*24*time.Hour - time.Duration(n.Int64())), nil
}

// captureIfaces resolves the capture interfaces: the configured comma-separated
// list, else the one interface that carries the listen address.
func (s *Sensor) captureIfaces() ([]string, map[string]bool, error) {
	lo := map[string]bool{}
	if s.cfg.Interface == "" {
		if !s.listen.IsValid() || s.listen.IsUnspecified() {
			return nil, nil, fmt.Errorf("listen %s covers every interface: name the capture interface(s) with --iface (e.g. --iface eth0,eth1)", s.listen)
		}
		name, loopback, err := capture.InterfaceFor(s.listen)
		if err != nil {
			return nil, nil, fmt.Errorf("capture: no interface carries %s (%v): use --iface or a local --listen address", s.listen, err)
		}
		lo[name] = loopback
		return []string{name}, lo, nil
	}
	var names []string
	for _, name := range strings.Split(s.cfg.Interface, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, nil, fmt.Errorf("capture: interface %q: %v: name one listed by `ip link`", name, err)
		}
		if _, dup := lo[name]; dup {
			continue
		}
		lo[name] = ifi.Flags&net.FlagLoopback != 0
		names = append(names, name)
	}
	return names, lo, nil
}

// openCapture opens one TPACKET_V3 ring per capture interface, all feeding one demux.
func (s *Sensor) openCapture() error {
	names, loopback, err := s.captureIfaces()
	if err != nil {
		return err
	}
	s.ifaces = names
	c := s.cfg.Capture
	s.demux = capture.NewDemux(capture.Config{
		Format:          c.Format,
		Interface:       strings.Join(names, ","),
		Linger:          c.Linger,
		TCPIdle:         c.TCPIdle,
		UDPIdle:         c.UDPIdle,
		PendingTimeout:  c.PendingTimeout,
		MaxPending:      c.MaxPending,
		MaxSessions:     s.cfg.Limits.MaxSessions * 2,
		MaxSessionBytes: c.MaxSessionSize,
		MaxLifetime:     c.MaxLifetime,
	}, s.log.With("component", "capture"), s.captured)
	for _, name := range names {
		fc := capture.SensorFilterConfig{Loopback: loopback[name], Exclude: s.excluded()}
		if !s.listen.IsUnspecified() {
			fc.Addrs = []netip.Addr{s.listen}
		}
		for _, svc := range s.services {
			if svc.spec.Transport == protocols.TCP {
				fc.TCPPorts = append(fc.TCPPorts, svc.port)
			} else {
				fc.UDPPorts = append(fc.UDPPorts, svc.port)
			}
			if svc.spec.CapturePorts != nil {
				fc.TCPPorts = append(fc.TCPPorts, svc.spec.CapturePorts(svc.cfg)...)
			}
		}
		prog, expr, err := capture.SensorFilter(fc)
		if err != nil {
			s.closeCapture()
			return fmt.Errorf("capture filter: %w", err)
		}
		live, err := capture.OpenLive(capture.LiveConfig{Interface: name, Filter: prog,
			BlockSize: c.RingBlockKiB * 1024, NumBlocks: c.RingMiB * 1024 / c.RingBlockKiB, BlockTimeout: c.RingBlockTimeout})
		if err != nil {
			s.closeCapture()
			if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
				return fmt.Errorf("capture on %s: permission denied: run as root or grant the binary CAP_NET_RAW (setcap cap_net_raw,cap_net_bind_service+ep pcapot)", name)
			}
			return fmt.Errorf("capture on %s: %w", name, err)
		}
		s.lives = append(s.lives, live)
		s.log.Debug("capture filter", "iface", name, "expr", expr)
	}
	return nil
}

func (s *Sensor) closeAPI() {
	if s.apiLn != nil {
		s.apiLn.Close()
	}
}

func (s *Sensor) closeCapture() {
	for _, l := range s.lives {
		l.Close()
	}
}

// kernelDrops sums the drop counters of every capture ring.
func (s *Sensor) kernelDrops() uint64 {
	var n uint64
	for _, l := range s.lives {
		_, d := l.Stats()
		n += d
	}
	return n
}

// excluded lists endpoints whose traffic is never captured (the sensor's own uploads).
func (s *Sensor) excluded() []netip.AddrPort {
	var ex []netip.AddrPort
	if s.cfg.S3.Endpoint != "" {
		if ap, err := netip.ParseAddrPort(s.cfg.S3.Endpoint); err == nil {
			ex = append(ex, ap)
		} else if host, port, err := net.SplitHostPort(s.cfg.S3.Endpoint); err == nil {
			addrs, _ := net.LookupHost(host)
			for _, a := range addrs {
				if ap, err := netip.ParseAddrPort(net.JoinHostPort(a, port)); err == nil {
					ex = append(ex, ap)
				}
			}
		}
	}
	return ex
}

func (s *Sensor) openListeners() error {
	for _, svc := range s.services {
		addr := net.JoinHostPort(s.listen.String(), fmt.Sprint(svc.port))
		var err error
		// An IPv4 listen address binds IPv4 only; "::" is dual-stack (IPv4-mapped peers
		// are recorded as IPv4).
		suffix := ""
		if s.listen.Is4() {
			suffix = "4"
		}
		if svc.spec.Transport == protocols.TCP {
			svc.ln, err = net.Listen("tcp"+suffix, addr)
		} else {
			svc.pc, err = net.ListenPacket("udp"+suffix, addr)
		}
		if err != nil {
			if errors.Is(err, syscall.EACCES) {
				return fmt.Errorf("%s on %s/%s: permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE (or move it: --port %s=N)", svc.spec.Name, addr, svc.spec.Transport, svc.spec.Name)
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("%s on %s/%s: address already in use: stop the other program or move it: --port %s=N", svc.spec.Name, addr, svc.spec.Transport, svc.spec.Name)
			}
			return fmt.Errorf("%s: listen %s/%s: %w", svc.spec.Name, addr, svc.spec.Transport, err)
		}
	}
	return nil
}

func (s *Sensor) closeListeners() {
	for _, svc := range s.services {
		if svc.ln != nil {
			svc.ln.Close()
		}
		if svc.pc != nil {
			svc.pc.Close()
		}
	}
}

// Addrs returns "proto/port name" lines for what the sensor listens on.
func (s *Sensor) Addrs() []string {
	var out []string
	for _, svc := range s.services {
		a := ""
		if svc.ln != nil {
			a = svc.ln.Addr().String()
		} else if svc.pc != nil {
			a = svc.pc.LocalAddr().String()
		}
		out = append(out, fmt.Sprintf("%s %s/%s", svc.spec.Name, a, svc.spec.Transport))
	}
	return out
}

// SensorID is the id used in object keys.
func (s *Sensor) SensorID() string { return s.state.SensorID }

// Interfaces are the capture interfaces.
func (s *Sensor) Interfaces() []string { return s.ifaces }

// StoreLocation describes where incidents go.
func (s *Sensor) StoreLocation() string {
	if s.cfg.S3.Endpoint != "" {
		return fmt.Sprintf("s3 %s bucket %s", s.cfg.S3.Endpoint, s.cfg.S3.Bucket)
	}
	return "folder " + s.cfg.Data
}

// Run serves until ctx is cancelled, then stops accepting, finalizes every open
// session, flushes the uploads and returns.
func (s *Sensor) Run(ctx context.Context) error {
	handlerCtx, stopHandlers := context.WithCancel(context.Background())
	defer stopHandlers()

	capCtx, stopCapture := context.WithCancel(context.Background())
	defer stopCapture()
	capDone := make(chan error, len(s.lives))
	for _, l := range s.lives {
		go func() { capDone <- l.Run(capCtx, s.demux.Handle) }()
	}

	upCtx, stopUploads := context.WithCancel(context.Background())
	upDone := make(chan struct{})
	go func() { s.uploader.Run(upCtx); close(upDone) }()

	finDone := make(chan struct{})
	go func() { s.finish(); close(finDone) }()

	apiCtx, stopAPI := context.WithCancel(context.Background())
	defer stopAPI()
	apiDone := make(chan struct{})
	go func() { s.serveAPI(apiCtx); close(apiDone) }()

	tickDone := make(chan struct{})
	tickCtx, stopTick := context.WithCancel(context.Background())
	go func() { s.tick(tickCtx); close(tickDone) }()

	var lwg sync.WaitGroup
	for _, svc := range s.services {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			if svc.ln != nil {
				s.acceptLoop(handlerCtx, svc)
			} else {
				s.datagramLoop(handlerCtx, svc)
			}
		}()
	}

	var capErr error
	select {
	case <-ctx.Done():
	case capErr = <-capDone:
		capErr = fmt.Errorf("capture stopped: %w", capErr)
	}
	s.log.Info("shutting down: no new sessions, finalizing open ones")
	s.closeListeners()
	lwg.Wait()
	stopHandlers() // handlers see ctx done; their connections are closed below
	s.closeConns()
	s.wg.Wait()
	// Let the last FIN/ACK exchange reach the capture before it stops.
	time.Sleep(s.cfg.Capture.Linger + 200*time.Millisecond)
	stopTick()
	<-tickDone
	stopCapture()
	running := len(s.lives)
	if capErr != nil {
		running--
	}
	for ; running > 0; running-- {
		if err := <-capDone; err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("capture reader", "err", err)
		}
	}
	s.closeCapture()
	s.demux.Close(time.Now())
	s.reportProbes()
	s.finished.close()
	<-finDone
	s.complWG.Wait()
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := s.uploader.Drain(dctx); err != nil {
		s.log.Warn("uploads left in the spool for the next start", "err", err)
	}
	cancel()
	stopUploads()
	<-upDone
	if s.events != nil {
		ectx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.events.Close(ectx); err != nil {
			s.log.Warn("event log close", "err", err)
		}
		cancel()
	}
	stopAPI()
	<-apiDone
	return capErr
}

// tick drives the capture engine's timers and carries kernel drop counts into it.
func (s *Sensor) tick(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var lastDrops uint64
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.demux.Tick(now)
			if n++; n%300 == 0 {
				s.reportProbes()
			}
			if n%10 == 0 {
				if drops := s.kernelDrops(); drops > lastDrops {
					s.demux.NoteDrops(drops - lastDrops)
					s.log.Warn("kernel dropped packets; sessions live now are marked possibly incomplete", "drops", drops-lastDrops)
					lastDrops = drops
				}
			}
		}
	}
}

// captured receives the capture engine's finished parts. It runs on the capture
// goroutine, so it only marks the session and queues the part: a UDP datagram that
// arrives after this starts a new session instead of joining a finished one.
func (s *Sensor) captured(f *capture.Finished) {
	if f.Last {
		s.mu.Lock()
		sess := s.sessions[f.ID]
		s.mu.Unlock()
		if sess != nil {
			sess.markFinished()
		}
	}
	s.finished.push(f)
}

// reportProbes logs one summary per source of flows that never reached a protocol
// handler (SYN scans, RST probes, closed ports) since the last report, in the process
// log and as an ECS record of the event log.
func (s *Sensor) reportProbes() {
	for _, p := range s.demux.Probes() {
		s.log.Info("probe summary", "source", p.Source.String(), "ports", fmt.Sprint(p.Ports),
			"flows", p.Flows, "packets", p.Packets, "first", p.First, "last", p.Last)
		if s.events != nil {
			s.events.Probe(eventlog.Probe{Source: p.Source, Ports: p.Ports, Flows: p.Flows, Packets: p.Packets, First: p.First, Last: p.Last})
		}
	}
}

func (s *Sensor) acceptLoop(ctx context.Context, svc *service) {
	for {
		c, err := svc.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept", "protocol", svc.spec.Name, "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		local, remote := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
		sess, ok := s.open(svc.spec, capture.Tuple{Proto: 6, Client: remote, Server: local})
		if !ok {
			c.Close() // over a limit: the flow stays an unregistered probe in the capture
			continue
		}
		s.trackConn(sess.id, c)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer sess.handlerDone()
			defer s.untrackConn(sess.id)
			defer c.Close()
			if err := svc.stream.ServeStream(ctx, sess, c); err != nil && !protocols.PeerGone(err) {
				sess.Logger().Warn("handler", "err", err)
				s.metrics.HandlerError(svc.spec.Name)
			}
		}()
	}
}

func (s *Sensor) datagramLoop(ctx context.Context, svc *service) {
	dst := newDstReader(svc.pc, s.listen)
	buf := make([]byte, 65536)
	for {
		n, from, local, err := dst.readFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		remote := addrPort(from)
		if !local.IsValid() {
			local = s.listen
		}
		key := flowKey{remote: remote, local: local.Unmap()}
		svc.flowsMu.Lock()
		sess := svc.flows[key]
		if sess != nil && sess.isFinished() {
			delete(svc.flows, key)
			sess = nil
		}
		if sess == nil {
			if len(svc.flows) >= s.cfg.Limits.MaxUDPFlows {
				svc.flowsMu.Unlock()
				continue
			}
			var ok bool
			t := capture.Tuple{Proto: capture.ProtoUDP, Client: remote, Server: netip.AddrPortFrom(local, svc.port)}
			if sess, ok = s.open(svc.spec, t); !ok {
				svc.flowsMu.Unlock()
				continue
			}
			sess.handlerDone() // datagram handlers hold no goroutine per flow
			sess.forget = func() {
				svc.flowsMu.Lock()
				if svc.flows[key] == sess {
					delete(svc.flows, key)
				}
				svc.flowsMu.Unlock()
			}
			svc.flows[key] = sess
		}
		svc.flowsMu.Unlock()
		if !sess.countDatagram(s.cfg.Limits.MaxDatagramsPerSe) {
			continue // over the per-session cap: still captured, no longer answered
		}
		reply := func(b []byte) error { return dst.writeTo(b, from, local) }
		if err := svc.dgram.ServeDatagram(ctx, sess, buf[:n], reply); err != nil {
			sess.Logger().Debug("datagram handler", "err", err)
		}
	}
}

// linkFlow opens the session of a connection a handler accepted or opened itself for
// the attacker of parent (an FTP data connection): its own pcap and incident.
func (s *Sensor) linkFlow(parent *session, name, service string, local, remote netip.AddrPort) (*session, error) {
	spec := protocols.Spec{Name: name, Transport: protocols.TCP, Service: service}
	child, ok := s.open(spec, capture.Tuple{Proto: capture.ProtoTCP, Client: remote, Server: local})
	if !ok {
		return nil, fmt.Errorf("linked %s connection refused: session limit", name)
	}
	child.Logger().Info("linked session", "parent", parent.id)
	return child, nil
}

// open creates and registers a session, or reports false when a limit refuses it.
func (s *Sensor) open(spec protocols.Spec, t capture.Tuple) (*session, bool) {
	t.Client = netip.AddrPortFrom(t.Client.Addr().Unmap(), t.Client.Port())
	t.Server = netip.AddrPortFrom(t.Server.Addr().Unmap(), t.Server.Port())
	ip := t.Client.Addr()
	s.mu.Lock()
	if len(s.sessions) >= s.cfg.Limits.MaxSessions || s.perIP[ip] >= s.cfg.Limits.MaxSessionsPerIP {
		s.mu.Unlock()
		s.log.Warn("session refused: limit reached", "protocol", spec.Name, "remote", t.Client.String())
		s.metrics.SessionRefused(spec.Name)
		return nil, false
	}
	id := uuid.NewString()
	sess := &session{
		id:        id,
		spec:      spec,
		tuple:     t,
		started:   time.Now(),
		base:      s.log,
		maxEvents: s.cfg.Limits.MaxEventsPerSess,
		sensor:    s,
		link:      s.linkFlow,
		maxFiles:  s.cfg.Limits.MaxFilesPerSess,
		maxFileB:  s.cfg.Limits.MaxFileBytesPerSess,
		handlerOK: make(chan struct{}),
	}
	s.sessions[id] = sess
	s.perIP[ip]++
	s.mu.Unlock()
	if err := s.demux.Register(t, id); err != nil {
		sess.Logger().Warn("capture register", "err", err)
	}
	s.log.Info("session start", "session", id, "protocol", spec.Name, "remote", t.Client.String(), "local", t.Server.String())
	s.observeStart(sess)
	return sess, true
}

func addrPort(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.TCPAddr:
		return v.AddrPort()
	case *net.UDPAddr:
		return v.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
