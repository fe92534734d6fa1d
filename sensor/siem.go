package sensor

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/sensor/api"
	"github.com/pcapot/pcapot/sensor/eventlog"
	"github.com/pcapot/pcapot/sensor/metrics"
)

// openSIEM creates the metrics, the ECS event log and the management API (TAXII 2.1 +
// /metrics). It refuses a non-loopback API address without credentials before
// anything listens.
func (s *Sensor) openSIEM() error {
	s.metrics = metrics.New(s.log.With("component", "metrics"))
	if s.cfg.API.Listen != "" {
		key, err := api.LoadOrCreateKey(filepath.Join(s.cfg.Data, "taxii-next.key"))
		if err != nil {
			return err
		}
		srv, err := api.New(api.Config{
			Store:            s.store,
			Users:            s.cfg.API.Users,
			Tokens:           s.cfg.API.Tokens,
			Title:            "pcapot " + s.state.SensorID,
			Metrics:          s.metrics,
			NextKey:          key,
			VisibilityDelay:  s.cfg.API.VisibilityDelay,
			EmptyObjectsList: s.cfg.API.EmptyObjectsList,
		}, s.log.With("component", "api"))
		if err != nil {
			return fmt.Errorf("management API: %w", err)
		}
		if err := api.CheckListen(s.cfg.API.Listen, srv.HasCredentials()); err != nil {
			return err
		}
		if c := s.cfg.API; c.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
			if err != nil {
				return fmt.Errorf("management API TLS key pair: %w", err)
			}
			s.apiTLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		}
		ln, err := net.Listen("tcp", s.cfg.API.Listen)
		if err != nil {
			return fmt.Errorf("management API on %s: %w: move it with --api ADDR or turn it off with --api off", s.cfg.API.Listen, err)
		}
		s.api, s.apiLn = srv, ln
	}
	path := s.cfg.Events.Path
	switch path {
	case "":
		path = filepath.Join(s.cfg.Data, "events.ndjson")
	case "off":
		path = ""
	}
	ec := eventlog.Config{
		Path:     path,
		MaxBytes: s.cfg.Events.MaxBytes,
		MaxFiles: s.cfg.Events.MaxFiles,
		Observer: s.observer(),
	}
	if sl := s.cfg.Events.Syslog; sl.Address != "" {
		ec.Syslog = &eventlog.SyslogConfig{Network: sl.Network, Address: sl.Address, Facility: sl.Facility, NewlineFraming: sl.NewlineFraming}
	}
	if ec.Path == "" && ec.Syslog == nil {
		return nil
	}
	ev, err := eventlog.New(ec, s.log.With("component", "eventlog"))
	if err != nil {
		return fmt.Errorf("event log: %w", err)
	}
	s.events = ev
	s.metrics.ObserveEventLog(func() metrics.EventLogStats { return metrics.EventLogStats(ev.Stats()) })
	return nil
}

func (s *Sensor) observer() eventlog.Observer {
	host, _ := os.Hostname()
	return eventlog.Observer{
		Name:     s.cfg.Sensor.Name,
		SensorID: s.state.SensorID,
		Hostname: host,
		IPs:      []netip.Addr{s.listen},
		Vendor:   "pcapot",
		Product:  "pcapot",
	}
}

// observeCapture exports the capture engine's and the uploader's counters at scrape time.
func (s *Sensor) observeCapture() {
	s.metrics.ObserveCapture(func() metrics.CaptureStats {
		st := s.demux.Stats()
		return metrics.CaptureStats{
			PacketsSeen: st.PacketsSeen, PacketsMatched: st.PacketsMatched, PacketsUnparsed: st.PacketsUnparsed,
			KernelDrops: s.kernelDrops(), ProbeFlows: st.ProbeFlows,
			PendingOverflow: st.PendingOverflow, PendingDropped: st.PendingDropped, WriteErrors: st.WriteErrors,
			Pending: st.Pending, Active: st.Active, BufferedBytes: st.BufferedBytes,
		}
	})
	s.metrics.ObserveUploads(func() metrics.UploadStats { return metrics.UploadStats(s.uploader.Stats()) })
}

// APIURL is the management API's base URL, or "" when it is off.
func (s *Sensor) APIURL() string {
	if s.apiLn == nil {
		return ""
	}
	scheme := "http"
	if s.apiTLS != nil {
		scheme = "https"
	}
	return scheme + "://" + s.apiLn.Addr().String()
}

// serveAPI serves the management API until ctx is done.
func (s *Sensor) serveAPI(ctx context.Context) {
	if s.api == nil {
		return
	}
	if err := s.api.Serve(ctx, s.apiLn, s.apiTLS); err != nil && ctx.Err() == nil {
		s.log.Error("management API stopped", "err", err)
	}
}

func (s *Sensor) logSession(sess *session) eventlog.Session {
	var ls eventlog.Session
	setLogSession(&ls, sess)
	return ls
}

// setLogSession sets the identity fields of ls, field by field: in place, with no
// copy of the whole struct on the caller's stack.
func setLogSession(ls *eventlog.Session, sess *session) {
	ls.ID, ls.Protocol, ls.Service, ls.Transport = sess.id, sess.spec.Name, sess.spec.Service, string(sess.spec.Transport)
	ls.Client, ls.Server, ls.Start = sess.tuple.Client, sess.tuple.Server, sess.started
}

func (s *Sensor) observeStart(sess *session) {
	s.metrics.SessionStarted(sess.spec.Name)
	if s.events != nil {
		s.events.SessionStart(s.logSession(sess))
	}
}

// observeEvent counts e and logs it. It runs on the protocol handler's goroutine, so
// it is kept shallow: an idle session costs the stack its handler grew to (see
// docs/BENCHMARKS.md, memory per idle session).
func (s *Sensor) observeEvent(sess *session, e *protocols.Event) {
	s.metrics.Event(sess.spec.Name, e.Write)
	if s.events != nil {
		s.logEvent(sess, e)
	}
}

// logEvent queues e's event log record, made on the heap (see eventlog.Log.Event).
func (s *Sensor) logEvent(sess *session, e *protocols.Event) {
	r := new(eventlog.EventRecord)
	setLogSession(&r.Session, sess)
	ev := &r.Event
	ev.Time, ev.Protocol, ev.Op, ev.Code, ev.Unit, ev.Area = e.Time, e.Protocol, e.Op, e.Code, e.Unit, e.Area
	// The writer goroutine reads the record later: the detail map is copied, so that a
	// handler that broke the Emit contract and changed it could not crash the sensor
	// with a concurrent map access (a changed Data would only be wrong, not fatal).
	ev.Address, ev.Quantity, ev.Data, ev.Exception, ev.Write, ev.Detail = e.Address, e.Quantity, e.Data, e.Exception, e.Write, maps.Clone(e.Detail)
	s.events.Event(r)
}

// observeEnd records a completed session (rec is nil when its incident could not be built).
func (s *Sensor) observeEnd(sess *session, r recorded, rec *record) {
	f := metrics.Finished{Protocol: sess.spec.Name}
	ls := s.logSession(sess)
	ls.End = time.Now()
	ls.Events, ls.EventsDropped = len(r.events), r.eventsDropped
	if rec != nil {
		is := rec.session
		f.ClientPackets, f.ServerPackets, f.ClientBytes, f.ServerBytes = is.ClientPackets, is.ServerPackets, is.ClientBytes, is.ServerBytes
		f.PossiblyIncomplete = is.PossiblyIncomplete
		ls.Start, ls.End, ls.Reason = is.Start, is.End, is.Reason
		ls.ClientPackets, ls.ServerPackets, ls.ClientBytes, ls.ServerBytes = is.ClientPackets, is.ServerPackets, is.ClientBytes, is.ServerBytes
		ls.PossiblyIncomplete, ls.Drops = is.PossiblyIncomplete, is.Drops
		for _, p := range is.PCAPs {
			ls.PCAPs = append(ls.PCAPs, eventlog.PCAP{Part: p.Part, Key: p.Key, URL: p.URL, SHA256: p.SHA256, Size: p.Size, MimeType: p.MimeType})
		}
		ls.BundleID, ls.IncidentID, ls.ObservedDataID = rec.ids.bundle, rec.ids.incident, rec.ids.observedData
		ls.IndicatorID, ls.SightingID = rec.ids.indicator, rec.ids.sighting
	}
	s.metrics.SessionFinished(f)
	s.metrics.EventsOverCap(sess.spec.Name, r.eventsDropped)
	if s.events != nil {
		s.events.SessionEnd(ls)
	}
}
