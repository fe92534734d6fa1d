package eventlog

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ECSVersion is the Elastic Common Schema version the records follow.
const ECSVersion = "8.11.0"

// Record actions (event.action of session records).
const (
	ActionSessionStart = "session-start"
	ActionSessionEnd   = "session-end"
	ActionProbeSummary = "probe-summary"
)

// Datasets (event.dataset).
const (
	DatasetSession  = "pcapot.session"
	DatasetProtocol = "pcapot.protocol"
	DatasetProbe    = "pcapot.probe"
)

// Caps on attacker-controlled content in one record. Longer values are cut (on a UTF-8
// boundary) and the record says so in pcapot.ics.truncated.
const (
	maxDataBytes    = 1024 // bytes of Event.Data carried in data_hex
	maxStringBytes  = 2048 // bytes of Area, Op and each Detail value
	maxDetailFields = 64
)

// The record is built from these structs; encoding/json escapes every string (quotes,
// control characters, <, > and &, U+2028/U+2029), so attacker bytes can never break a
// line of NDJSON nor a syslog frame. Pointers and omitempty keep fields that do not apply
// out of the record instead of writing zeros.
type record struct {
	Timestamp   string        `json:"@timestamp"`
	ECS         ecsField      `json:"ecs"`
	Message     string        `json:"message"`
	Event       eventField    `json:"event"`
	Source      endpointField `json:"source,omitzero"`
	Destination endpointField `json:"destination,omitzero"`
	Network     networkField  `json:"network"`
	Observer    observerField `json:"observer"`
	Related     relatedField  `json:"related"`
	File        *fileField    `json:"file,omitempty"`
	Pcapot      pcapotField   `json:"pcapot"`
}

type ecsField struct {
	Version string `json:"version"`
}

type eventField struct {
	Kind     string   `json:"kind"`
	Category []string `json:"category"`
	Type     []string `json:"type"`
	Action   string   `json:"action"`
	Dataset  string   `json:"dataset"`
	Module   string   `json:"module"`
	Provider string   `json:"provider,omitempty"`
	ID       string   `json:"id"`
	Created  string   `json:"created"`
	Start    string   `json:"start,omitempty"`
	End      string   `json:"end,omitempty"`
	// Duration is in nanoseconds (ECS).
	Duration *int64 `json:"duration,omitempty"`
	Outcome  string `json:"outcome,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Severity int    `json:"severity"`
}

type endpointField struct {
	IP      string `json:"ip,omitempty"`
	Port    int    `json:"port,omitempty"`
	Address string `json:"address,omitempty"`
	Bytes   *int64 `json:"bytes,omitempty"`
	Packets *int64 `json:"packets,omitempty"`
}

type networkField struct {
	Transport   string `json:"transport,omitempty"`
	Protocol    string `json:"protocol,omitempty"`
	Type        string `json:"type,omitempty"`
	IANANumber  string `json:"iana_number,omitempty"`
	Bytes       *int64 `json:"bytes,omitempty"`
	Packets     *int64 `json:"packets,omitempty"`
	CommunityID string `json:"community_id,omitempty"`
	Direction   string `json:"direction"`
}

type observerField struct {
	Name     string   `json:"name,omitempty"`
	Type     string   `json:"type"`
	Vendor   string   `json:"vendor"`
	Product  string   `json:"product"`
	Version  string   `json:"version,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	IP       []string `json:"ip,omitempty"`
}

type relatedField struct {
	IP []string `json:"ip,omitempty"`
}

type fileField struct {
	Name     string    `json:"name,omitempty"`
	Path     string    `json:"path,omitempty"`
	Size     int64     `json:"size"`
	MimeType string    `json:"mime_type,omitempty"`
	Hash     hashField `json:"hash"`
}

type hashField struct {
	SHA256 string `json:"sha256"`
}

type pcapotField struct {
	SessionID          string     `json:"session_id,omitempty"`
	SensorID           string     `json:"sensor_id,omitempty"`
	Service            string     `json:"service,omitempty"`
	PossiblyIncomplete *bool      `json:"possibly_incomplete,omitempty"`
	KernelDrops        *uint64    `json:"kernel_drops,omitempty"`
	Events             *int       `json:"events,omitempty"`
	EventsDropped      *int       `json:"events_dropped,omitempty"`
	STIX               *stixField `json:"stix,omitempty"`
	// PCAP is the first (often only) pcap part; PCAPs lists all parts when there are
	// several.
	PCAP  *pcapField  `json:"pcap,omitempty"`
	PCAPs []pcapField `json:"pcaps,omitempty"`
	ICS   *icsField   `json:"ics,omitempty"`
	Probe *probeField `json:"probe,omitempty"`
}

type probeField struct {
	Flows int   `json:"flows"`
	Ports []int `json:"ports"`
}

type stixField struct {
	BundleID       string `json:"bundle_id,omitempty"`
	IncidentID     string `json:"incident_id,omitempty"`
	ObservedDataID string `json:"observed_data_id,omitempty"`
	IndicatorID    string `json:"indicator_id,omitempty"`
	SightingID     string `json:"sighting_id,omitempty"`
}

type pcapField struct {
	Part     int    `json:"part"`
	Key      string `json:"key,omitempty"`
	URL      string `json:"url,omitempty"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	MimeType string `json:"mime_type,omitempty"`
}

type icsField struct {
	Op          string            `json:"op"`
	OpHex       string            `json:"op_hex,omitempty"`
	Code        int               `json:"code"`
	Unit        *int              `json:"unit,omitempty"`
	Area        string            `json:"area,omitempty"`
	AreaHex     string            `json:"area_hex,omitempty"`
	Address     *int              `json:"address,omitempty"`
	Quantity    *int              `json:"quantity,omitempty"`
	DataHex     string            `json:"data_hex,omitempty"`
	DataLen     *int              `json:"data_len,omitempty"`
	Exception   int               `json:"exception"`
	Write       bool              `json:"write"`
	Detail      map[string]string `json:"detail,omitempty"`
	DetailHex   map[string]string `json:"detail_hex,omitempty"`
	Truncated   bool              `json:"truncated,omitempty"`
	ProtocolHex string            `json:"protocol_hex,omitempty"`
}

// builder turns sessions and events into records.
type builder struct {
	obs    observerField
	sensor string
	now    func() time.Time
}

func newBuilder(o Observer, now func() time.Time) builder {
	of := observerField{
		Name:     o.Name,
		Type:     "honeypot",
		Vendor:   o.Vendor,
		Product:  o.Product,
		Version:  o.Version,
		Hostname: o.Hostname,
	}
	if of.Vendor == "" {
		of.Vendor = "pcapot"
	}
	if of.Product == "" {
		of.Product = "pcapot"
	}
	for _, ip := range o.IPs {
		if ip.IsValid() {
			of.IP = append(of.IP, ip.Unmap().WithZone("").String())
		}
	}
	return builder{obs: of, sensor: o.SensorID, now: now}
}

// ts formats a record time: UTC RFC 3339 with exactly six fraction digits
// (microseconds, the precision of pcap and TAXII timestamps), a fixed width that
// every SIEM's time parser accepts.
func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// newEventID returns a random UUIDv4, unique per record (event.id).
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// base fills the fields every record of session s has.
func (b builder) base(s *Session, action, dataset string, severity int) *record {
	client, server := unmapped(s.Client), unmapped(s.Server)
	r := &record{
		ECS: ecsField{Version: ECSVersion},
		Event: eventField{
			Kind:     "event",
			Category: []string{"network"},
			Action:   action,
			Dataset:  dataset,
			Module:   "pcapot",
			ID:       newEventID(),
			Created:  ts(b.now()),
			Severity: severity,
		},
		Network:  networkField{Direction: "ingress"},
		Observer: b.obs,
		Pcapot:   pcapotField{SessionID: clean(s.ID), SensorID: b.sensor},
	}
	r.Event.Provider = clean(s.Protocol)
	r.Pcapot.Service = clean(s.Service)
	if client.IsValid() {
		r.Source = endpointField{IP: client.Addr().String(), Port: int(client.Port()), Address: client.Addr().String()}
		r.Related.IP = append(r.Related.IP, client.Addr().String())
	}
	if server.IsValid() {
		r.Destination = endpointField{IP: server.Addr().String(), Port: int(server.Port()), Address: server.Addr().String()}
		if !slices.Contains(r.Related.IP, server.Addr().String()) {
			r.Related.IP = append(r.Related.IP, server.Addr().String())
		}
	}
	n := &r.Network
	n.Protocol = strings.ToLower(clean(s.Protocol))
	n.Transport = strings.ToLower(clean(s.Transport))
	var proto uint8
	switch n.Transport {
	case "tcp":
		proto = ProtoTCP
	case "udp":
		proto = ProtoUDP
	case "sctp":
		proto = ProtoSCTP
	}
	if proto != 0 {
		n.IANANumber = strconv.Itoa(int(proto))
	}
	if client.IsValid() {
		n.Type = "ipv4"
		if client.Addr().Is6() {
			n.Type = "ipv6"
		}
		if proto != 0 && server.IsValid() {
			n.CommunityID = CommunityID(0, proto, client.Addr(), server.Addr(), client.Port(), server.Port())
		}
	}
	return r
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	if !ap.IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// clean makes s valid UTF-8 for fields that come from the sensor's own code (ids,
// protocol names), where invalid bytes would be a bug rather than evidence.
func clean(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

func (b builder) sessionStart(s *Session) *record {
	r := b.base(s, ActionSessionStart, DatasetSession, 1)
	r.Timestamp = ts(orNow(s.Start, b.now))
	r.Event.Type = []string{"connection", "start"}
	r.Event.Start = ts(orNow(s.Start, b.now))
	r.Message = fmt.Sprintf("%s session %s from %s to %s started", r.Network.Protocol, r.Pcapot.SessionID, unmapped(s.Client), unmapped(s.Server))
	return r
}

func (b builder) sessionEnd(s *Session) *record {
	r := b.base(s, ActionSessionEnd, DatasetSession, 1)
	start := orNow(s.Start, b.now)
	end := s.End
	if end.IsZero() || end.Before(start) {
		end = start
	}
	r.Timestamp = ts(end)
	r.Event.Type = []string{"connection", "end"}
	r.Event.Start, r.Event.End = ts(start), ts(end)
	d := end.Sub(start).Nanoseconds()
	r.Event.Duration = &d
	r.Event.Outcome = "unknown"
	r.Event.Reason = clean(s.Reason)
	cp, sp, cb, sb := max(s.ClientPackets, 0), max(s.ServerPackets, 0), max(s.ClientBytes, 0), max(s.ServerBytes, 0)
	r.Source.Packets, r.Source.Bytes = &cp, &cb
	r.Destination.Packets, r.Destination.Bytes = &sp, &sb
	np, nb := cp+sp, cb+sb
	r.Network.Packets, r.Network.Bytes = &np, &nb

	p := &r.Pcapot
	incomplete, drops, events, dropped := s.PossiblyIncomplete, s.Drops, max(s.Events, 0), max(s.EventsDropped, 0)
	p.PossiblyIncomplete, p.KernelDrops, p.Events, p.EventsDropped = &incomplete, &drops, &events, &dropped
	if st := (stixField{BundleID: clean(s.BundleID), IncidentID: clean(s.IncidentID), ObservedDataID: clean(s.ObservedDataID),
		IndicatorID: clean(s.IndicatorID), SightingID: clean(s.SightingID)}); st != (stixField{}) {
		p.STIX = &st
	}
	pcaps := slices.Clone(s.PCAPs)
	slices.SortStableFunc(pcaps, func(a, b PCAP) int { return a.Part - b.Part })
	for _, pc := range pcaps {
		part := pc.Part
		if part <= 0 {
			part = 1
		}
		p.PCAPs = append(p.PCAPs, pcapField{Part: part, Key: clean(pc.Key), URL: clean(pc.URL), SHA256: clean(pc.SHA256), Size: pc.Size, MimeType: clean(pc.MimeType)})
	}
	if len(p.PCAPs) > 0 {
		first := p.PCAPs[0]
		p.PCAP = &first
		if len(p.PCAPs) == 1 {
			p.PCAPs = nil // pcapot.pcap says it all
		}
		r.File = &fileField{Name: path.Base(first.Key), Path: first.Key, Size: first.Size, MimeType: first.MimeType, Hash: hashField{SHA256: first.SHA256}}
		if first.Key == "" {
			r.File.Name = ""
		}
	}
	r.Message = fmt.Sprintf("%s session %s from %s to %s ended (%s): %d packets, %d bytes, %d events",
		r.Network.Protocol, p.SessionID, unmapped(s.Client), unmapped(s.Server), orDash(r.Event.Reason), np, nb, events+dropped)
	return r
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNow(t time.Time, now func() time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return t
}

func (b builder) event(s *Session, e *Event) *record {
	severity := 3
	if e.Write {
		severity = 5
	}
	r := b.base(s, "", DatasetProtocol, severity)
	r.Timestamp = ts(orNow(e.Time, b.now))
	r.Event.Type = []string{"protocol"}
	r.Event.Outcome = "success"
	if e.Exception != 0 {
		r.Event.Outcome = "failure"
	}
	ics := &icsField{Code: e.Code, Exception: e.Exception, Write: e.Write}
	ics.Op, ics.OpHex = text(e.Op, &ics.Truncated)
	ics.Area, ics.AreaHex = text(e.Area, &ics.Truncated)
	if e.Protocol != "" && e.Protocol != s.Protocol {
		// An event of another protocol than its session (HTTP inside a tunnel, say).
		var proto string
		proto, ics.ProtocolHex = text(e.Protocol, &ics.Truncated)
		r.Event.Provider = proto
	}
	if e.Unit >= 0 {
		u := e.Unit
		ics.Unit = &u
	}
	if e.Address != 0 || e.Quantity != 0 {
		a, q := e.Address, e.Quantity
		ics.Address, ics.Quantity = &a, &q
	}
	if len(e.Data) > 0 {
		n := len(e.Data)
		ics.DataLen = &n
		data := e.Data
		if len(data) > maxDataBytes {
			data = data[:maxDataBytes]
			ics.Truncated = true
		}
		ics.DataHex = hex.EncodeToString(data)
	}
	if len(e.Detail) > 0 {
		keys := slices.Sorted(maps.Keys(e.Detail))
		if len(keys) > maxDetailFields {
			keys = keys[:maxDetailFields]
			ics.Truncated = true
		}
		ics.Detail = make(map[string]string, len(keys))
		for _, k := range keys {
			name := fieldKey(k)
			for n := 2; ; n++ {
				if _, dup := ics.Detail[name]; !dup {
					break
				}
				name = fieldKey(k) + "_" + strconv.Itoa(n)
			}
			v, vhex := text(e.Detail[k], &ics.Truncated)
			ics.Detail[name] = v
			if vhex != "" {
				if ics.DetailHex == nil {
					ics.DetailHex = map[string]string{}
				}
				ics.DetailHex[name] = vhex
			}
		}
	}
	r.Pcapot.ICS = ics
	r.Event.Action = ics.Op
	if r.Event.Action == "" {
		r.Event.Action = "protocol-event"
	}
	var where strings.Builder
	if ics.Unit != nil {
		fmt.Fprintf(&where, " unit %d", *ics.Unit)
	}
	if ics.Area != "" {
		fmt.Fprintf(&where, " %s", ics.Area)
	}
	if ics.Address != nil {
		fmt.Fprintf(&where, " address %d quantity %d", *ics.Address, *ics.Quantity)
	}
	if e.Exception != 0 {
		fmt.Fprintf(&where, " -> exception %d", e.Exception)
	}
	r.Message = fmt.Sprintf("%s %s (code %d)%s from %s", r.Network.Protocol, r.Event.Action, e.Code, where.String(), r.Source.IP)
	return r
}

// text returns attacker text for a JSON string field: s itself when it is valid UTF-8,
// else s with U+FFFD replacements and the hex of its exact bytes. Both are cut to
// maxStringBytes (the hex to the same bytes), setting *truncated.
func text(s string, truncated *bool) (string, string) {
	if len(s) > maxStringBytes {
		s = s[:maxStringBytes]
		*truncated = true
	}
	if utf8.ValidString(s) {
		return s, ""
	}
	return strings.ToValidUTF8(s, "\uFFFD"), hex.EncodeToString([]byte(s))
}

// fieldKey maps a detail key onto [a-z0-9_] (1-64 characters), so that keys never
// create nested or odd field names in a SIEM (a '.' would nest in Elasticsearch).
func fieldKey(k string) string {
	if k == "" {
		return "_"
	}
	b := []byte(k[:min(len(k), 64)])
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'):
			b[i] = '_'
		}
	}
	return string(b)
}

// probe is the record of a probe summary: the flows one source sent that never reached
// a protocol handler.
func (b builder) probe(p *Probe) *record {
	first, last := orNow(p.First, b.now), orNow(p.Last, b.now)
	if last.Before(first) {
		last = first
	}
	r := &record{
		Timestamp: ts(last),
		ECS:       ecsField{Version: ECSVersion},
		Event: eventField{
			Kind:     "event",
			Category: []string{"network"},
			Type:     []string{"connection"},
			Action:   ActionProbeSummary,
			Dataset:  DatasetProbe,
			Module:   "pcapot",
			ID:       newEventID(),
			Created:  ts(b.now()),
			Start:    ts(first),
			End:      ts(last),
			Severity: 2,
		},
		Network:  networkField{Direction: "ingress"},
		Observer: b.obs,
		Pcapot:   pcapotField{SensorID: b.sensor, Probe: &probeField{Flows: max(p.Flows, 0), Ports: make([]int, 0, len(p.Ports))}},
	}
	d := last.Sub(first).Nanoseconds()
	r.Event.Duration = &d
	packets := int64(max(p.Packets, 0))
	r.Network.Packets = &packets
	if src := p.Source.Unmap().WithZone(""); src.IsValid() {
		r.Source = endpointField{IP: src.String(), Address: src.String(), Packets: &packets}
		r.Related.IP = []string{src.String()}
		r.Network.Type = "ipv4"
		if src.Is6() {
			r.Network.Type = "ipv6"
		}
	}
	ports := make([]string, 0, len(p.Ports))
	for _, port := range p.Ports {
		r.Pcapot.Probe.Ports = append(r.Pcapot.Probe.Ports, int(port))
		ports = append(ports, strconv.Itoa(int(port)))
	}
	r.Message = fmt.Sprintf("probes from %s that reached no emulated service: %d flows, %d packets, ports %s",
		r.Source.IP, r.Pcapot.Probe.Flows, packets, strings.Join(ports, ","))
	return r
}
