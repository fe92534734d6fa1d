package incidents

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// Summary is what `pcapot sessions list` and `pcapot pcap get` need from a stored
// bundle.
type Summary struct {
	BundleID, IncidentID, ObservedDataID string

	SessionID, SensorID          string
	Protocol, Service, Transport string
	Client, Server               netip.AddrPort
	Start, End                   time.Time
	Reason                       string
	// Filter is the capture's exact 5-tuple BPF expression, FilterBytecode its program.
	Filter, FilterBytecode string

	ClientPackets, ServerPackets, ClientBytes, ServerBytes int64

	PossiblyIncomplete bool
	Drops              uint64
	Events             int
	EventsDropped      int

	// PCAPs are the session's stored captures, by part. Their keys are checked with
	// ValidKey, so they can be fetched without further checks.
	PCAPs []PCAP
}

// Summarize reads back the session summary of a bundle made by Build. It checks the
// links it follows and returns an error wrapping ErrInvalid for a bundle it cannot
// read; it does not validate the bundle as STIX (see package stixcheck).
func Summarize(bundleJSON []byte) (*Summary, error) {
	var raw struct {
		Type    string            `json:"type"`
		ID      string            `json:"id"`
		Objects []json.RawMessage `json:"objects"`
	}
	if err := json.Unmarshal(bundleJSON, &raw); err != nil {
		return nil, fmt.Errorf("incidents: summarize: %w: %w", ErrInvalid, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("incidents: summarize bundle %q: %w: %s", raw.ID, ErrInvalid, fmt.Sprintf(format, args...))
	}
	if raw.Type != "bundle" {
		return nil, bad("type is %q, not bundle", raw.Type)
	}
	byID := make(map[string]json.RawMessage, len(raw.Objects))
	var od *ObservedData
	var incidentID string
	for _, o := range raw.Objects {
		var head SCOCommon
		if err := json.Unmarshal(o, &head); err != nil {
			return nil, bad("object: %v", err)
		}
		byID[head.ID] = o
		switch head.Type {
		case "observed-data":
			var x ObservedData
			if err := json.Unmarshal(o, &x); err != nil {
				return nil, bad("observed-data: %v", err)
			}
			if x.Extensions == nil || x.Extensions.ICS == nil {
				continue
			}
			if od != nil {
				return nil, bad("two observed-data objects carry the ICS extension")
			}
			od = &x
		case "incident":
			incidentID = head.ID
		}
	}
	if od == nil {
		return nil, bad("no observed-data with the ICS extension %s", ICSExtensionID)
	}
	ext := od.Extensions.ICS
	sum := &Summary{
		BundleID:           raw.ID,
		IncidentID:         incidentID,
		ObservedDataID:     od.ID,
		SessionID:          ext.SessionID,
		SensorID:           ext.SensorID,
		Protocol:           ext.Protocol,
		Service:            ext.Service,
		Transport:          ext.Transport,
		Reason:             ext.CloseReason,
		Filter:             ext.CaptureFilter,
		FilterBytecode:     ext.CaptureFilterBytecode,
		PossiblyIncomplete: ext.PossiblyIncomplete,
		Drops:              ext.KernelDrops,
		Events:             len(ext.Events),
		EventsDropped:      ext.EventsDropped,
	}

	var nt *NetworkTraffic
	for _, ref := range od.ObjectRefs {
		var x NetworkTraffic
		if o, ok := byID[ref]; ok && json.Unmarshal(o, &x) == nil && x.Type == "network-traffic" {
			nt = &x
			break
		}
	}
	if nt == nil {
		return nil, bad("observed-data %s references no network-traffic in the bundle", od.ID)
	}
	var err error
	if sum.Client, err = endpoint(byID, nt.SrcRef, nt.SrcPort); err != nil {
		return nil, bad("src: %v", err)
	}
	if sum.Server, err = endpoint(byID, nt.DstRef, nt.DstPort); err != nil {
		return nil, bad("dst: %v", err)
	}
	if sum.Start, err = time.Parse(time.RFC3339Nano, nt.Start); err != nil {
		return nil, bad("network-traffic start: %v", err)
	}
	if sum.End, err = time.Parse(time.RFC3339Nano, nt.End); err != nil {
		return nil, bad("network-traffic end: %v", err)
	}
	sum.ClientPackets, sum.ServerPackets = nt.SrcPackets, nt.DstPackets
	sum.ClientBytes, sum.ServerBytes = nt.SrcByteCount, nt.DstByteCount

	for _, p := range ext.PCAPs {
		var a Artifact
		o, ok := byID[p.ArtifactRef]
		if !ok || json.Unmarshal(o, &a) != nil || a.Type != "artifact" {
			return nil, bad("pcap part %d: artifact %s is not in the bundle", p.Part, p.ArtifactRef)
		}
		if err := ValidKey(p.Key); err != nil {
			return nil, bad("pcap part %d: %v", p.Part, err)
		}
		sha := a.Hashes["SHA-256"]
		if !validSHA256(sha) {
			return nil, bad("pcap part %d: artifact has no valid SHA-256", p.Part)
		}
		sum.PCAPs = append(sum.PCAPs, PCAP{Key: p.Key, URL: a.URL, SHA256: sha, Size: p.SizeBytes, MimeType: a.MimeType, Part: p.Part})
	}
	return sum, nil
}

func endpoint(byID map[string]json.RawMessage, ref string, port int) (netip.AddrPort, error) {
	var a Addr
	o, ok := byID[ref]
	if !ok || json.Unmarshal(o, &a) != nil || (a.Type != "ipv4-addr" && a.Type != "ipv6-addr") {
		return netip.AddrPort{}, fmt.Errorf("%s is not an address in the bundle", ref)
	}
	ip, err := netip.ParseAddr(a.Value)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if port < 0 || port > 65535 {
		return netip.AddrPort{}, fmt.Errorf("port %d out of range", port)
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}
