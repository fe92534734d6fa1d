// Package metrics holds the sensor's Prometheus metrics in a registry of its own (never
// the client library's global default registry) and serves them in the Prometheus text
// format.
//
// Two kinds of inputs feed it:
//
//   - events the sensor sees itself, pushed through methods (SessionStarted,
//     SessionFinished, SessionRefused, Event, HandlerError, SpoolSubmit, TAXIIRequest);
//   - counters that another component already keeps (the capture engine, the upload
//     spool, the event log), read at scrape time through a source function given to
//     ObserveCapture, ObserveUploads and ObserveEventLog, so that they are never
//     counted twice and never drift.
//
// Label values are protocol names, endpoint names and result words chosen by the
// sensor's code, never attacker input, so their number stays bounded.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "pcapot"

// Session states of pcapot_sessions_total.
const (
	StateStarted  = "started"
	StateFinished = "finished"
	StateRefused  = "refused"
)

// CaptureStats are the capture engine's counters (capture.Stats). Counters count since
// the engine started; Pending, Active and BufferedBytes are current values.
type CaptureStats struct {
	PacketsSeen, PacketsMatched, PacketsUnparsed uint64
	KernelDrops                                  uint64
	// ProbeFlows counts flows that were never registered by a handler (scans, probes).
	ProbeFlows uint64
	// PendingOverflow and PendingDropped count packets not buffered because of the
	// pending-flow caps.
	PendingOverflow, PendingDropped uint64
	WriteErrors                     uint64
	Pending, Active                 int
	BufferedBytes                   int64
}

// UploadStats are the upload spool's counters (incidents.UploadStats).
type UploadStats struct {
	// Uploaded counts sessions fully stored, Objects the objects stored, Failed the
	// failed attempts (retried), Quarantined the entries set aside for an operator.
	Uploaded, Objects, Failed, Quarantined int64
	// Spooled and SpoolBytes are the entries waiting now and their size.
	Spooled, SpoolBytes int64
}

// EventLogStats are the event log's counters (eventlog.Stats).
type EventLogStats struct {
	Written, Dropped, Errors                uint64
	SyslogSent, SyslogDropped, SyslogErrors uint64
}

// Metrics is the sensor's set of collectors. All methods are safe for concurrent use;
// a nil *Metrics accepts every call and records nothing, so optional wiring needs no
// checks.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	sessions   *prometheus.CounterVec
	active     *prometheus.GaugeVec
	packets    *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	incomplete *prometheus.CounterVec
	events     *prometheus.CounterVec
	// eventCounters caches events_total's read and write counters by protocol name:
	// Event runs on the protocol handlers' goroutines for every request, and
	// CounterVec.WithLabelValues hashes and checks the labels each time, on a deep
	// stack (what an idle session's goroutine keeps).
	eventCounters sync.Map // string -> *[2]prometheus.Counter
	eventsCapped  *prometheus.CounterVec
	handlerErrs   *prometheus.CounterVec
	spoolSubmits  *prometheus.CounterVec
	taxii         *prometheus.CounterVec
	taxiiTime     *prometheus.HistogramVec

	handlerOnce sync.Once
	handler     http.Handler

	capture  atomic.Pointer[func() CaptureStats]
	uploads  atomic.Pointer[func() UploadStats]
	eventlog atomic.Pointer[func() EventLogStats]
}

// New returns the sensor's metrics in a new registry that also holds the Go runtime,
// process and build-info collectors. A nil logger discards the handler's error logs.
func New(logger *slog.Logger) *Metrics {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: logger}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	m.sessions = counter("sessions_total", "Attacker sessions by protocol and state: started (accepted), finished (recorded and handed to the uploader) or refused (over a limit).", "protocol", "state")
	m.active = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "sessions_active", Help: "Sessions started and not yet finished, by protocol."}, []string{"protocol"})
	m.packets = counter("session_packets_total", "Packets captured in finished sessions, by protocol and direction (client = attacker to sensor).", "protocol", "direction")
	m.bytes = counter("session_bytes_total", "Bytes captured in finished sessions, by protocol and direction (client = attacker to sensor).", "protocol", "direction")
	m.incomplete = counter("sessions_possibly_incomplete_total", "Finished sessions whose capture may have missed packets (kernel drops during the session).", "protocol")
	m.events = counter("events_total", "ICS protocol events (operations) recorded, by protocol and access (read or write).", "protocol", "access")
	m.eventsCapped = counter("events_over_cap_total", "Protocol events not kept because a session reached its event cap.", "protocol")
	m.handlerErrs = counter("handler_errors_total", "Protocol handler errors (sessions that ended with an error other than a normal close).", "protocol")
	m.spoolSubmits = counter("spool_submits_total", "Sessions submitted to the upload spool, by result (ok or failed: evidence not made durable).", "result")
	m.taxii = counter("taxii_requests_total", "Management API requests by endpoint and HTTP status code.", "endpoint", "code")
	m.taxiiTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "taxii_request_duration_seconds",
		Help:    "Management API request latency by endpoint.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"endpoint"})

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		m.sessions, m.active, m.packets, m.bytes, m.incomplete, m.events, m.eventsCapped,
		m.handlerErrs, m.spoolSubmits, m.taxii, m.taxiiTime,
		sourceCollector{m},
	)
	return m
}

// Registry returns the registry, for collectors the sensor adds itself.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// label makes s a valid label value: label values must be valid UTF-8, and an empty
// value would read as a missing label.
func label(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// SessionStarted counts a session accepted by a protocol handler.
func (m *Metrics) SessionStarted(protocol string) {
	if m == nil {
		return
	}
	p := label(protocol)
	m.sessions.WithLabelValues(p, StateStarted).Inc()
	m.active.WithLabelValues(p).Inc()
}

// SessionRefused counts a connection refused before it became a session (session or
// per-address limit reached).
func (m *Metrics) SessionRefused(protocol string) {
	if m == nil {
		return
	}
	m.sessions.WithLabelValues(label(protocol), StateRefused).Inc()
}

// Finished describes a finished session for SessionFinished.
type Finished struct {
	Protocol                                               string
	ClientPackets, ServerPackets, ClientBytes, ServerBytes int64
	PossiblyIncomplete                                     bool
}

// SessionFinished counts a session that ended, with its captured traffic. Call it
// once per SessionStarted.
func (m *Metrics) SessionFinished(f Finished) {
	if m == nil {
		return
	}
	p := label(f.Protocol)
	m.sessions.WithLabelValues(p, StateFinished).Inc()
	m.active.WithLabelValues(p).Dec()
	m.packets.WithLabelValues(p, "client").Add(nonNeg(f.ClientPackets))
	m.packets.WithLabelValues(p, "server").Add(nonNeg(f.ServerPackets))
	m.bytes.WithLabelValues(p, "client").Add(nonNeg(f.ClientBytes))
	m.bytes.WithLabelValues(p, "server").Add(nonNeg(f.ServerBytes))
	if f.PossiblyIncomplete {
		m.incomplete.WithLabelValues(p).Inc()
	}
}

func nonNeg(n int64) float64 { return float64(max(n, 0)) }

// Event counts one protocol event (operation) of a session.
func (m *Metrics) Event(protocol string, write bool) {
	if m == nil {
		return
	}
	c, ok := m.eventCounters.Load(protocol)
	if !ok {
		c = m.addEventCounters(protocol)
	}
	i := 0
	if write {
		i = 1
	}
	c.(*[2]prometheus.Counter)[i].Inc()
}

// addEventCounters creates the counters of a protocol's first event: a function of its
// own, so that Event's frame on the handlers' stacks stays small.
func (m *Metrics) addEventCounters(protocol string) any {
	c, _ := m.eventCounters.LoadOrStore(protocol, &[2]prometheus.Counter{
		m.events.WithLabelValues(label(protocol), "read"),
		m.events.WithLabelValues(label(protocol), "write"),
	})
	return c
}

// EventsOverCap counts n events dropped because a session reached its event cap.
func (m *Metrics) EventsOverCap(protocol string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.eventsCapped.WithLabelValues(label(protocol)).Add(float64(n))
}

// HandlerError counts a session whose protocol handler returned an error.
func (m *Metrics) HandlerError(protocol string) {
	if m == nil {
		return
	}
	m.handlerErrs.WithLabelValues(label(protocol)).Inc()
}

// SpoolSubmit counts a session handed to the upload spool; ok is false when the spool
// could not make it durable.
func (m *Metrics) SpoolSubmit(ok bool) {
	if m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "failed"
	}
	m.spoolSubmits.WithLabelValues(result).Inc()
}

// TAXIIRequest counts one management API request. endpoint is one of a fixed set of
// names chosen by the API ("discovery", "objects", "metrics", ...).
func (m *Metrics) TAXIIRequest(endpoint string, code int, d time.Duration) {
	if m == nil {
		return
	}
	e := label(endpoint)
	m.taxii.WithLabelValues(e, strconv.Itoa(code)).Inc()
	m.taxiiTime.WithLabelValues(e).Observe(d.Seconds())
}

// ObserveCapture makes every scrape read the capture engine's counters from fn (for
// example a closure over capture.Demux.Stats and the live source's drop counter). fn
// must be fast and safe for concurrent use. A nil fn stops the observation.
func (m *Metrics) ObserveCapture(fn func() CaptureStats) {
	if m != nil {
		storeFn(&m.capture, fn)
	}
}

// ObserveUploads makes every scrape read the upload spool's counters from fn (a
// closure over incidents.Uploader.Stats).
func (m *Metrics) ObserveUploads(fn func() UploadStats) {
	if m != nil {
		storeFn(&m.uploads, fn)
	}
}

// ObserveEventLog makes every scrape read the event log's counters from fn (a closure
// over eventlog.Log.Stats).
func (m *Metrics) ObserveEventLog(fn func() EventLogStats) {
	if m != nil {
		storeFn(&m.eventlog, fn)
	}
}

func storeFn[T any](p *atomic.Pointer[func() T], fn func() T) {
	if fn == nil {
		p.Store(nil)
		return
	}
	p.Store(&fn)
}

// Handler serves the registry in the Prometheus exposition formats, at most four
// scrapes at a time, each within 10 s. Every call returns the same handler.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	m.handlerOnce.Do(func() {
		h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
			ErrorLog:            promLogger{m.log},
			ErrorHandling:       promhttp.ContinueOnError,
			Registry:            m.reg,
			MaxRequestsInFlight: 4,
			Timeout:             10 * time.Second,
		})
		m.handler = promhttp.InstrumentMetricHandler(m.reg, h)
	})
	return m.handler
}

// promLogger adapts slog to promhttp's error logger.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Warn("metrics: scrape error", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}

// sourceCollector exposes the counters of the observed components at scrape time.
type sourceCollector struct{ m *Metrics }

var _ prometheus.Collector = sourceCollector{}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

var (
	descCapturePackets  = desc("capture_packets_total", "Packets seen by the capture engine, by outcome: matched (written to a session or buffered for a pending flow) or unparsed (not Ethernet/IP/TCP/UDP, or truncated).", "outcome")
	descCapturePktsSeen = desc("capture_packets_seen_total", "Packets seen by the capture engine.")
	descKernelDrops     = desc("capture_kernel_drops_total", "Packets the kernel dropped before the capture engine could read them.")
	descProbeFlows      = desc("capture_probe_flows_total", "Flows never registered by a protocol handler (scans, probes), expired or dropped.")
	descPendingDropped  = desc("capture_pending_dropped_packets_total", "Packets of unregistered flows not buffered, by reason: overflow (too many pending flows) or cap (per-flow or total byte cap).", "reason")
	descWriteErrors     = desc("capture_write_errors_total", "pcap write errors of the capture engine.")
	descPending         = desc("capture_pending_flows", "Flows seen but not (yet) registered by a protocol handler.")
	descActive          = desc("capture_active_sessions", "Sessions being captured now.")
	descBuffered        = desc("capture_buffered_bytes", "Packet bytes buffered in memory by the capture engine.")

	descUploads    = desc("uploads_total", "Upload spool results: ok (session stored), failed (attempt failed, retried) or quarantined (set aside for an operator).", "result")
	descObjects    = desc("uploaded_objects_total", "Objects (pcaps and bundles) stored.")
	descSpoolCount = desc("spool_entries", "Sessions waiting in the upload spool.")
	descSpoolBytes = desc("spool_bytes", "Bytes waiting in the upload spool.")

	descLogRecords = desc("eventlog_records_total", "Event log records by sink (file or syslog) and result (written, dropped: queue full, error: write failed).", "sink", "result")
)

// Describe implements prometheus.Collector.
func (sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCapturePackets, descCapturePktsSeen, descKernelDrops, descProbeFlows,
		descPendingDropped, descWriteErrors, descPending, descActive, descBuffered,
		descUploads, descObjects, descSpoolCount, descSpoolBytes, descLogRecords} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c sourceCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	if fn := c.m.capture.Load(); fn != nil {
		s := (*fn)()
		counter(descCapturePktsSeen, float64(s.PacketsSeen))
		counter(descCapturePackets, float64(s.PacketsMatched), "matched")
		counter(descCapturePackets, float64(s.PacketsUnparsed), "unparsed")
		counter(descKernelDrops, float64(s.KernelDrops))
		counter(descProbeFlows, float64(s.ProbeFlows))
		counter(descPendingDropped, float64(s.PendingOverflow), "overflow")
		counter(descPendingDropped, float64(s.PendingDropped), "cap")
		counter(descWriteErrors, float64(s.WriteErrors))
		gauge(descPending, float64(s.Pending))
		gauge(descActive, float64(s.Active))
		gauge(descBuffered, float64(s.BufferedBytes))
	}
	if fn := c.m.uploads.Load(); fn != nil {
		s := (*fn)()
		counter(descUploads, float64(s.Uploaded), "ok")
		counter(descUploads, float64(s.Failed), "failed")
		counter(descUploads, float64(s.Quarantined), "quarantined")
		counter(descObjects, float64(s.Objects))
		gauge(descSpoolCount, float64(s.Spooled))
		gauge(descSpoolBytes, float64(s.SpoolBytes))
	}
	if fn := c.m.eventlog.Load(); fn != nil {
		s := (*fn)()
		counter(descLogRecords, float64(s.Written), "file", "written")
		counter(descLogRecords, float64(s.Dropped), "file", "dropped")
		counter(descLogRecords, float64(s.Errors), "file", "error")
		counter(descLogRecords, float64(s.SyslogSent), "syslog", "written")
		counter(descLogRecords, float64(s.SyslogDropped), "syslog", "dropped")
		counter(descLogRecords, float64(s.SyslogErrors), "syslog", "error")
	}
}
