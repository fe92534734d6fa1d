package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/sensor/eventlog"
)

// scrape fetches the handler's output as a real Prometheus server would (text format)
// and parses it with the Prometheus text parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type = %q, want text/plain", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels equal labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] != lp.GetValue() {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount()), true
		case dto.MetricType_UNTYPED:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func TestScrape(t *testing.T) {
	m := New(nil)
	m.SessionStarted("modbus")
	m.SessionStarted("modbus")
	m.SessionStarted("s7comm")
	m.SessionRefused("modbus")
	m.SessionFinished(Finished{Protocol: "modbus", ClientPackets: 10, ServerPackets: 8, ClientBytes: 700, ServerBytes: 500, PossiblyIncomplete: true})
	m.Event("modbus", false)
	m.Event("modbus", true)
	m.Event("modbus", true)
	m.EventsOverCap("modbus", 3)
	m.HandlerError("s7comm")
	m.SpoolSubmit(true)
	m.SpoolSubmit(false)
	m.TAXIIRequest("objects", 200, 3*time.Millisecond)
	m.TAXIIRequest("objects", 400, time.Millisecond)
	m.SessionStarted("bad\xffname") // invalid UTF-8 must not panic
	m.ObserveCapture(func() CaptureStats {
		return CaptureStats{PacketsSeen: 1000, PacketsMatched: 900, PacketsUnparsed: 5, KernelDrops: 7, ProbeFlows: 12,
			PendingOverflow: 2, PendingDropped: 3, Pending: 4, Active: 2, BufferedBytes: 4096}
	})
	m.ObserveUploads(func() UploadStats {
		return UploadStats{Uploaded: 5, Objects: 11, Failed: 2, Quarantined: 1, Spooled: 3, SpoolBytes: 9000}
	})
	m.ObserveEventLog(func() EventLogStats { return EventLogStats{Written: 40, Dropped: 1, SyslogSent: 39, SyslogErrors: 2} })

	fams := scrape(t, m.Handler())
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
		typ    dto.MetricType
	}{
		{"pcapot_sessions_total", map[string]string{"protocol": "modbus", "state": "started"}, 2, dto.MetricType_COUNTER},
		{"pcapot_sessions_total", map[string]string{"protocol": "modbus", "state": "refused"}, 1, dto.MetricType_COUNTER},
		{"pcapot_sessions_total", map[string]string{"protocol": "modbus", "state": "finished"}, 1, dto.MetricType_COUNTER},
		{"pcapot_sessions_total", map[string]string{"protocol": "s7comm", "state": "started"}, 1, dto.MetricType_COUNTER},
		{"pcapot_sessions_total", map[string]string{"protocol": "bad\uFFFDname", "state": "started"}, 1, dto.MetricType_COUNTER},
		{"pcapot_sessions_active", map[string]string{"protocol": "modbus"}, 1, dto.MetricType_GAUGE},
		{"pcapot_session_packets_total", map[string]string{"protocol": "modbus", "direction": "client"}, 10, dto.MetricType_COUNTER},
		{"pcapot_session_packets_total", map[string]string{"protocol": "modbus", "direction": "server"}, 8, dto.MetricType_COUNTER},
		{"pcapot_session_bytes_total", map[string]string{"protocol": "modbus", "direction": "client"}, 700, dto.MetricType_COUNTER},
		{"pcapot_session_bytes_total", map[string]string{"protocol": "modbus", "direction": "server"}, 500, dto.MetricType_COUNTER},
		{"pcapot_sessions_possibly_incomplete_total", map[string]string{"protocol": "modbus"}, 1, dto.MetricType_COUNTER},
		{"pcapot_events_total", map[string]string{"protocol": "modbus", "access": "read"}, 1, dto.MetricType_COUNTER},
		{"pcapot_events_total", map[string]string{"protocol": "modbus", "access": "write"}, 2, dto.MetricType_COUNTER},
		{"pcapot_events_over_cap_total", map[string]string{"protocol": "modbus"}, 3, dto.MetricType_COUNTER},
		{"pcapot_handler_errors_total", map[string]string{"protocol": "s7comm"}, 1, dto.MetricType_COUNTER},
		{"pcapot_spool_submits_total", map[string]string{"result": "ok"}, 1, dto.MetricType_COUNTER},
		{"pcapot_spool_submits_total", map[string]string{"result": "failed"}, 1, dto.MetricType_COUNTER},
		{"pcapot_taxii_requests_total", map[string]string{"endpoint": "objects", "code": "200"}, 1, dto.MetricType_COUNTER},
		{"pcapot_taxii_requests_total", map[string]string{"endpoint": "objects", "code": "400"}, 1, dto.MetricType_COUNTER},
		{"pcapot_taxii_request_duration_seconds", map[string]string{"endpoint": "objects"}, 2, dto.MetricType_HISTOGRAM},
		{"pcapot_capture_packets_seen_total", map[string]string{}, 1000, dto.MetricType_COUNTER},
		{"pcapot_capture_packets_total", map[string]string{"outcome": "matched"}, 900, dto.MetricType_COUNTER},
		{"pcapot_capture_packets_total", map[string]string{"outcome": "unparsed"}, 5, dto.MetricType_COUNTER},
		{"pcapot_capture_kernel_drops_total", map[string]string{}, 7, dto.MetricType_COUNTER},
		{"pcapot_capture_probe_flows_total", map[string]string{}, 12, dto.MetricType_COUNTER},
		{"pcapot_capture_pending_dropped_packets_total", map[string]string{"reason": "overflow"}, 2, dto.MetricType_COUNTER},
		{"pcapot_capture_pending_flows", map[string]string{}, 4, dto.MetricType_GAUGE},
		{"pcapot_capture_active_sessions", map[string]string{}, 2, dto.MetricType_GAUGE},
		{"pcapot_capture_buffered_bytes", map[string]string{}, 4096, dto.MetricType_GAUGE},
		{"pcapot_uploads_total", map[string]string{"result": "ok"}, 5, dto.MetricType_COUNTER},
		{"pcapot_uploads_total", map[string]string{"result": "failed"}, 2, dto.MetricType_COUNTER},
		{"pcapot_uploads_total", map[string]string{"result": "quarantined"}, 1, dto.MetricType_COUNTER},
		{"pcapot_uploaded_objects_total", map[string]string{}, 11, dto.MetricType_COUNTER},
		{"pcapot_spool_entries", map[string]string{}, 3, dto.MetricType_GAUGE},
		{"pcapot_spool_bytes", map[string]string{}, 9000, dto.MetricType_GAUGE},
		{"pcapot_eventlog_records_total", map[string]string{"sink": "file", "result": "written"}, 40, dto.MetricType_COUNTER},
		{"pcapot_eventlog_records_total", map[string]string{"sink": "syslog", "result": "error"}, 2, dto.MetricType_COUNTER},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+strings.Join(labelPairs(tc.labels), ","), func(t *testing.T) {
			got, ok := value(t, fams, tc.name, tc.labels)
			if !ok {
				t.Fatalf("no sample %s%v in the scrape", tc.name, tc.labels)
			}
			if got != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
			}
			if typ := fams[tc.name].GetType(); typ != tc.typ {
				t.Errorf("%s type = %v, want %v", tc.name, typ, tc.typ)
			}
		})
	}
	for _, name := range []string{"go_goroutines", "process_open_fds", "go_build_info", "promhttp_metric_handler_requests_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("standard collector family %s missing", name)
		}
	}
}

func labelPairs(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func TestSourcesAbsentUntilObserved(t *testing.T) {
	m := New(nil)
	fams := scrape(t, m.Handler())
	for _, name := range []string{"pcapot_capture_kernel_drops_total", "pcapot_uploads_total", "pcapot_eventlog_records_total"} {
		if _, ok := fams[name]; ok {
			t.Errorf("%s exposed without a source", name)
		}
	}
	m.ObserveCapture(func() CaptureStats { return CaptureStats{KernelDrops: 1} })
	if _, ok := scrape(t, m.Handler())["pcapot_capture_kernel_drops_total"]; !ok {
		t.Error("kernel drops missing after ObserveCapture")
	}
	m.ObserveCapture(nil)
	if _, ok := scrape(t, m.Handler())["pcapot_capture_kernel_drops_total"]; ok {
		t.Error("kernel drops still exposed after ObserveCapture(nil)")
	}
}

func TestSeparateRegistries(t *testing.T) {
	a, b := New(nil), New(nil)
	a.SessionStarted("modbus")
	if v, ok := value(t, scrape(t, b.Handler()), "pcapot_sessions_total", map[string]string{"protocol": "modbus", "state": "started"}); ok {
		t.Errorf("second Metrics sees the first one's session (%v): registries are shared", v)
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.SessionStarted("modbus")
	m.SessionFinished(Finished{Protocol: "modbus"})
	m.Event("modbus", true)
	m.TAXIIRequest("objects", 200, time.Millisecond)
	m.ObserveCapture(func() CaptureStats { return CaptureStats{} })
	if m.Registry() != nil {
		t.Error("nil Metrics has a registry")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Metrics handler answered %d, want 404", rec.Code)
	}
}

// The sensor converts the uploader's and the event log's counters with a plain type
// conversion: these fail to compile when the field lists drift apart.
var (
	_ = UploadStats(incidents.UploadStats{})
	_ = EventLogStats(eventlog.Stats{})
)
