package incidents

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/pcapot/pcapot/incidents/internal/scoid"
)

// BuildOption changes how Build works.
type BuildOption func(*buildConfig)

type buildConfig struct {
	random io.Reader // nil: crypto/rand
}

// WithRandom makes Build draw the UUIDv4 ids of SDOs, SROs and the bundle from r
// instead of crypto/rand. Tests use it for reproducible (golden) bundles.
func WithRandom(r io.Reader) BuildOption {
	return func(c *buildConfig) { c.random = r }
}

// Build returns the STIX 2.1 bundle of one session, built at time now:
//
//   - the pcapot project identity and the ICS extension-definition it created
//     (constant objects);
//   - the sensor identity (identity_class "system");
//   - an incident with the Incident Core Extension (determination "suspected",
//     investigation_status "new");
//   - observed-data referencing the network-traffic, both addresses and each pcap
//     artifact, carrying the ICS extension (session, capture filter, events);
//   - network-traffic (attacker = src, sensor = dst), ipv4-addr/ipv6-addr ×2 and an
//     artifact per pcap, with deterministic UUIDv5 ids;
//   - an indicator for the attacker address and a sighting of it by the sensor;
//   - relationships: incident related-to observed-data and indicator, indicator
//     based-on observed-data.
//
// SDO, SRO and bundle ids are random UUIDv4 (see WithRandom). Build checks its input
// and returns an error wrapping ErrInvalid for anything it cannot represent faithfully.
func Build(s Sensor, sess Session, now time.Time, opts ...BuildOption) (*Bundle, error) {
	var cfg buildConfig
	for _, o := range opts {
		o(&cfg)
	}
	if err := checkSensor(s); err != nil {
		return nil, err
	}
	pcaps, err := checkSession(&sess)
	if err != nil {
		return nil, err
	}
	if err := validTime(now); err != nil {
		return nil, fmt.Errorf("incidents: build time: %w", err)
	}
	b := &builder{random: cfg.random}
	return b.build(s, sess, pcaps, now)
}

type builder struct {
	random io.Reader
	err    error
}

// id returns a new UUIDv4 id of type typ. The first failure is kept in b.err.
func (b *builder) id(typ string) string {
	var u uuid.UUID
	var err error
	if b.random != nil {
		u, err = uuid.NewRandomFromReader(b.random)
	} else {
		u, err = uuid.NewRandom()
	}
	if err != nil && b.err == nil {
		b.err = fmt.Errorf("incidents: random id: %w", err)
	}
	return typ + "--" + u.String()
}

func (b *builder) build(s Sensor, sess Session, pcaps []PCAP, now time.Time) (*Bundle, error) {
	created := stamp(now)
	sdo := func(typ string) Common {
		return Common{Type: typ, SpecVersion: specVersion, ID: b.id(typ), CreatedByRef: s.IdentityID, Created: created, Modified: created}
	}

	start, end := sess.Start, sess.End
	if end.Before(start) {
		end = start
	}
	first, last := obsTime(start), obsTime(end)

	client, err := addrSCO(sess.Client.Addr())
	if err != nil {
		return nil, err
	}
	server, err := addrSCO(sess.Server.Addr())
	if err != nil {
		return nil, err
	}
	family := "ipv4"
	if client.Type == "ipv6-addr" {
		family = "ipv6"
	}
	nt := &NetworkTraffic{
		SCOCommon:    SCOCommon{Type: "network-traffic", SpecVersion: specVersion},
		Start:        first,
		End:          last,
		SrcRef:       client.ID,
		DstRef:       server.ID,
		SrcPort:      int(sess.Client.Port()),
		DstPort:      int(sess.Server.Port()),
		Protocols:    []string{family, sess.Transport},
		SrcByteCount: sess.ClientBytes,
		DstByteCount: sess.ServerBytes,
		SrcPackets:   sess.ClientPackets,
		DstPackets:   sess.ServerPackets,
	}
	if sess.Service != "" {
		nt.Protocols = append(nt.Protocols, sess.Service)
	}
	nt.ID, err = scoid.ID(nt.Type, map[string]any{
		"start": nt.Start, "end": nt.End, "src_ref": nt.SrcRef, "dst_ref": nt.DstRef,
		"src_port": nt.SrcPort, "dst_port": nt.DstPort, "protocols": nt.Protocols,
	})
	if err != nil {
		return nil, fmt.Errorf("incidents: network-traffic id: %w", err)
	}

	scos := []STIXObject{nt, client}
	if server.ID != client.ID { // a session from the sensor's own address
		scos = append(scos, server)
	}
	var ics []ICSPCAP
	for _, p := range pcaps {
		a := &Artifact{
			SCOCommon: SCOCommon{Type: "artifact", SpecVersion: specVersion},
			MimeType:  p.MimeType,
			URL:       p.URL,
			Hashes:    map[string]string{"SHA-256": p.SHA256},
		}
		a.ID, err = scoid.ID(a.Type, map[string]any{"hashes": a.Hashes})
		if err != nil {
			return nil, fmt.Errorf("incidents: artifact id: %w", err)
		}
		if !slices.ContainsFunc(scos, func(o STIXObject) bool { return o.STIXID() == a.ID }) {
			scos = append(scos, a) // identical parts are one artifact
		}
		ics = append(ics, ICSPCAP{ArtifactRef: a.ID, Key: p.Key, Part: p.Part, SizeBytes: p.Size})
	}
	var files []ICSFile
	for _, f := range sess.Files {
		hashes := map[string]string{"SHA-256": f.SHA256}
		a := &Artifact{SCOCommon: SCOCommon{Type: "artifact", SpecVersion: specVersion}, MimeType: FileMimeType, URL: f.URL, Hashes: hashes}
		if a.ID, err = scoid.ID(a.Type, map[string]any{"hashes": hashes}); err != nil {
			return nil, fmt.Errorf("incidents: artifact id: %w", err)
		}
		name, nameHex := text(f.Name)
		fo := &FileSCO{SCOCommon: SCOCommon{Type: "file", SpecVersion: specVersion}, Name: name, Size: f.Size, Hashes: hashes, ContentRef: a.ID}
		idProps := map[string]any{"hashes": hashes}
		if name != "" {
			idProps["name"] = name
		}
		if fo.ID, err = scoid.ID(fo.Type, idProps); err != nil {
			return nil, fmt.Errorf("incidents: file id: %w", err)
		}
		for _, o := range []STIXObject{a, fo} {
			if !slices.ContainsFunc(scos, func(x STIXObject) bool { return x.STIXID() == o.STIXID() }) {
				scos = append(scos, o) // the same upload twice is one object
			}
		}
		icf := ICSFile{FileRef: fo.ID, ArtifactRef: a.ID, Key: f.Key, NameHex: nameHex, SizeBytes: f.Size, Truncated: f.Truncated}
		icf.Protocol, _ = text(f.Protocol)
		if !f.Time.IsZero() {
			icf.Time = obsTime(f.Time)
		}
		files = append(files, icf)
	}
	refs := make([]string, len(scos))
	for i, o := range scos {
		refs[i] = o.STIXID()
	}

	writes := 0
	events := make([]ICSEvent, len(sess.Events))
	for i, e := range sess.Events {
		events[i] = icsEvent(e, sess.Protocol)
		if e.Write {
			writes++
		}
	}

	od := &ObservedData{
		Common:         sdo("observed-data"),
		FirstObserved:  first,
		LastObserved:   last,
		NumberObserved: 1,
		ObjectRefs:     refs,
		Extensions: &ObservedDataExtensions{ICS: &ICSSession{
			ExtensionType:         "property-extension",
			SessionID:             sess.ID,
			SensorID:              s.ID,
			Protocol:              sess.Protocol,
			Service:               sess.Service,
			Transport:             sess.Transport,
			CloseReason:           strings.ToValidUTF8(sess.Reason, "\uFFFD"),
			CaptureFilter:         strings.ToValidUTF8(sess.Filter, "\uFFFD"),
			CaptureFilterBytecode: strings.ToValidUTF8(sess.FilterBytecode, "\uFFFD"),
			PossiblyIncomplete:    sess.PossiblyIncomplete,
			KernelDrops:           sess.Drops,
			EventsDropped:         sess.EventsDropped,
			PCAPs:                 ics,
			Files:                 files,
			Events:                events,
		}},
	}
	if len(events) == 0 {
		od.Extensions.ICS.Events = nil
	}

	attacker := sess.Client.Addr().Unmap().WithZone("")
	inc := &Incident{
		Common:      sdo("incident"),
		Name:        fmt.Sprintf("ICS honeypot session: %s from %s", sess.Protocol, attacker),
		Description: describe(s, sess, start, end, writes),
		Extensions: &IncidentExtensions{Core: &IncidentCore{
			ExtensionType:       "property-extension",
			Determination:       "suspected",
			InvestigationStatus: "new",
			DetectionMethods:    []string{"automated-tool"},
			IncidentTypes:       []string{"unauthorized-access"},
		}},
	}

	// Writes change the state of the (emulated) device: malicious. Anything else that
	// reaches a honeypot is at least anomalous.
	indicatorType, activity := "anomalous-activity", "connected to"
	if writes > 0 {
		indicatorType, activity = "malicious-activity", "wrote to"
	}
	ind := &Indicator{
		Common:         sdo("indicator"),
		Name:           fmt.Sprintf("ICS honeypot attacker %s", attacker),
		Description:    fmt.Sprintf("%s %s an emulated ICS device (%s) on honeypot sensor %s.", attacker, activity, sess.Protocol, s.ID),
		IndicatorTypes: []string{indicatorType},
		Pattern:        fmt.Sprintf("[%s:value = '%s']", client.Type, client.Value),
		PatternType:    "stix",
		PatternVersion: specVersion,
		ValidFrom:      first,
	}
	sight := &Sighting{
		Common:           sdo("sighting"),
		Description:      fmt.Sprintf("Honeypot sensor %s saw %s in session %s.", s.ID, attacker, sess.ID),
		FirstSeen:        first,
		LastSeen:         last,
		Count:            1,
		SightingOfRef:    ind.ID,
		ObservedDataRefs: []string{od.ID},
		WhereSightedRefs: []string{s.IdentityID},
	}
	rel := func(typ, src, dst string) *Relationship {
		return &Relationship{Common: sdo("relationship"), RelationshipType: typ, SourceRef: src, TargetRef: dst}
	}

	objects := []STIXObject{projectIdentity(), icsExtensionDefinition(), sensorIdentity(s, created), inc, od}
	objects = append(objects, scos...)
	objects = append(objects, ind, sight,
		rel("related-to", inc.ID, od.ID),
		rel("related-to", inc.ID, ind.ID),
		rel("based-on", ind.ID, od.ID),
	)
	bundle := &Bundle{ID: b.id("bundle"), Objects: objects}
	if b.err != nil {
		return nil, b.err
	}
	return bundle, nil
}

func projectIdentity() *Identity {
	return &Identity{
		Common:        Common{Type: "identity", SpecVersion: specVersion, ID: ProjectIdentityID, Created: fixedTime, Modified: fixedTime},
		Name:          "pcapot project",
		Description:   "Authors of pcapot, an ICS/OT honeypot sensor that records one pcap per attacker session, and of its ICS session STIX extension.",
		IdentityClass: "organization",
	}
}

func icsExtensionDefinition() *ExtensionDefinition {
	return &ExtensionDefinition{
		Common: Common{Type: "extension-definition", SpecVersion: specVersion, ID: ICSExtensionID,
			CreatedByRef: ProjectIdentityID, Created: fixedTime, Modified: fixedTime},
		Name:           "pcapot ICS honeypot session",
		Description:    "Details of one ICS honeypot session on an observed-data object: session and sensor ids, emulated protocol, exact 5-tuple capture filter and its BPF bytecode, capture completeness (kernel drops), close reason, stored pcap keys, and the ICS protocol operations the attacker performed (function codes, units, areas, addresses, values written, exceptions).",
		Schema:         ICSExtensionSchemaURL,
		Version:        ICSExtensionVersion,
		ExtensionTypes: []string{"property-extension"},
	}
}

func sensorIdentity(s Sensor, buildTime string) *Identity {
	created, modified := buildTime, buildTime
	if !s.IdentityCreated.IsZero() {
		created = stamp(s.IdentityCreated)
		modified = created
		if s.IdentityModified.After(s.IdentityCreated) {
			modified = stamp(s.IdentityModified)
		}
	}
	name := s.Name
	if name == "" {
		name = "pcapot sensor " + s.ID
	}
	return &Identity{
		Common:        Common{Type: "identity", SpecVersion: specVersion, ID: s.IdentityID, Created: created, Modified: modified},
		Name:          strings.ToValidUTF8(name, "\uFFFD"),
		Description:   "pcapot ICS honeypot sensor " + s.ID + ".",
		IdentityClass: "system",
	}
}

func describe(s Sensor, sess Session, start, end time.Time, writes int) string {
	var d strings.Builder
	fmt.Fprintf(&d, "Honeypot sensor %s", s.ID)
	if persona := strings.TrimSpace(s.Vendor + " " + s.Product); persona != "" {
		fmt.Fprintf(&d, " (emulating %s)", strings.ToValidUTF8(persona, "\uFFFD"))
	}
	service := sess.Transport
	if sess.Service != "" {
		service = sess.Service + "/" + sess.Transport
	}
	fmt.Fprintf(&d, " recorded a %s session (%s) from %s to %s, %s to %s: ",
		sess.Protocol, service, unmap(sess.Client), unmap(sess.Server), obsTime(start), obsTime(end))
	fmt.Fprintf(&d, "%d packets (%d bytes) from the client, %d packets (%d bytes) from the sensor; ",
		sess.ClientPackets, sess.ClientBytes, sess.ServerPackets, sess.ServerBytes)
	fmt.Fprintf(&d, "%d protocol operations, %d of them writes", len(sess.Events)+sess.EventsDropped, writes)
	if sess.EventsDropped > 0 {
		fmt.Fprintf(&d, " (%d not listed, over the per-session cap)", sess.EventsDropped)
	}
	d.WriteString(".")
	if sess.Reason != "" {
		fmt.Fprintf(&d, " Session end: %s.", strings.ToValidUTF8(sess.Reason, "\uFFFD"))
	}
	if sess.PossiblyIncomplete {
		fmt.Fprintf(&d, " The capture may be incomplete (%d kernel drops during the session).", sess.Drops)
	}
	if len(sess.PCAPs) == 0 {
		d.WriteString(" No pcap was stored.")
	}
	return d.String()
}

// unmap returns ap with an IPv4-mapped address as plain IPv4 and without zone.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

func addrSCO(a netip.Addr) (*Addr, error) {
	a = a.Unmap().WithZone("")
	typ := "ipv4-addr"
	if a.Is6() {
		typ = "ipv6-addr"
	}
	o := &Addr{SCOCommon: SCOCommon{Type: typ, SpecVersion: specVersion}, Value: a.String()}
	var err error
	if o.ID, err = scoid.ID(typ, map[string]any{"value": o.Value}); err != nil {
		return nil, fmt.Errorf("incidents: %s id: %w", typ, err)
	}
	return o, nil
}

// icsEvent converts one event. Strings are kept exactly: text that is not valid UTF-8
// (which JSON cannot carry) gets U+FFFD replacements and its exact bytes in hex.
func icsEvent(e Event, sessionProtocol string) ICSEvent {
	out := ICSEvent{Code: e.Code, Exception: e.Exception, Write: e.Write}
	if !e.Time.IsZero() {
		out.Time = obsTime(e.Time)
	}
	if e.Protocol != sessionProtocol {
		out.Protocol, out.ProtocolHex = text(e.Protocol)
	}
	out.Op, out.OpHex = text(e.Op)
	out.Area, out.AreaHex = text(e.Area)
	if e.Unit >= 0 {
		u := e.Unit
		out.Unit = &u
	}
	if e.Address != 0 || e.Quantity != 0 {
		a, q := e.Address, e.Quantity
		out.Address, out.Quantity = &a, &q
	}
	if len(e.Data) > 0 {
		out.DataHex = hex.EncodeToString(e.Data)
	}
	if len(e.Detail) > 0 {
		out.Detail = make(map[string]string, len(e.Detail))
		// Keys already in the extension's alphabet first, so that they keep their name.
		keys := make([]string, 0, len(e.Detail))
		for k := range e.Detail {
			keys = append(keys, k)
		}
		mapped := func(k string) int {
			if detailKey(k) == k {
				return 0
			}
			return 1
		}
		slices.SortFunc(keys, func(a, b string) int {
			return cmp.Or(cmp.Compare(mapped(a), mapped(b)), cmp.Compare(a, b))
		})
		for _, k := range keys {
			name := detailKey(k)
			for n := 2; ; n++ {
				if _, dup := out.Detail[name]; !dup {
					break
				}
				name = fmt.Sprintf("%s_%d", detailKey(k), n)
			}
			v, vhex := text(e.Detail[k])
			out.Detail[name] = v
			if vhex != "" {
				if out.DetailHex == nil {
					out.DetailHex = map[string]string{}
				}
				out.DetailHex[name] = vhex
			}
		}
	}
	return out
}

// text returns s itself when it is valid UTF-8, else s with U+FFFD replacements and
// the hex of its exact bytes.
func text(s string) (string, string) {
	if utf8.ValidString(s) {
		return s, ""
	}
	return strings.ToValidUTF8(s, "\uFFFD"), hex.EncodeToString([]byte(s))
}

// detailKey maps a detail key onto the extension's key alphabet [a-z0-9_], 1 to 240
// characters (room for a "_<n>" suffix when two keys map to one name). Keys are chosen
// by protocol code and normally pass unchanged.
func detailKey(k string) string {
	if k == "" {
		return "_"
	}
	b := []byte(k[:min(len(k), 240)])
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

func checkSensor(s Sensor) error {
	if err := ValidSensorID(s.ID); err != nil {
		return err
	}
	id, ok := strings.CutPrefix(s.IdentityID, "identity--")
	if !ok || ValidUUID(id) != nil || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
		return fmt.Errorf("incidents: sensor identity id %q: %w: want identity--<uuid4>, persisted by the sensor", s.IdentityID, ErrInvalid)
	}
	for _, t := range []time.Time{s.IdentityCreated, s.IdentityModified} {
		if !t.IsZero() {
			if err := validTime(t); err != nil {
				return fmt.Errorf("incidents: sensor identity time: %w", err)
			}
		}
	}
	return nil
}

// checkSession validates sess and returns its pcaps with defaults applied, by part.
func checkSession(sess *Session) ([]PCAP, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("incidents: session %q: %w: %s", sess.ID, ErrInvalid, fmt.Sprintf(format, args...))
	}
	if err := ValidUUID(sess.ID); err != nil {
		return nil, fmt.Errorf("incidents: session id: %w", err)
	}
	if sess.Protocol == "" || !utf8.ValidString(sess.Protocol) {
		return nil, bad("protocol name %q", sess.Protocol)
	}
	if !utf8.ValidString(sess.Service) {
		return nil, bad("service name %q", sess.Service)
	}
	if sess.Transport != "tcp" && sess.Transport != "udp" {
		return nil, bad("transport %q is not tcp or udp", sess.Transport)
	}
	if !sess.Client.IsValid() || !sess.Server.IsValid() {
		return nil, bad("client %v or server %v is not an address:port", sess.Client, sess.Server)
	}
	if err := validTime(sess.Start); err != nil {
		return nil, bad("start: %v", err)
	}
	if !sess.End.IsZero() {
		if err := validTime(sess.End); err != nil {
			return nil, bad("end: %v", err)
		}
	}
	if sess.ClientPackets < 0 || sess.ServerPackets < 0 || sess.ClientBytes < 0 || sess.ServerBytes < 0 || sess.EventsDropped < 0 {
		return nil, bad("negative counter")
	}
	for _, e := range sess.Events {
		if !e.Time.IsZero() {
			if err := validTime(e.Time); err != nil {
				return nil, bad("event time: %v", err)
			}
		}
	}
	pcaps := slices.Clone(sess.PCAPs)
	for i := range pcaps {
		p := &pcaps[i]
		if p.Part == 0 {
			p.Part = 1
		}
		if p.MimeType == "" {
			p.MimeType = PCAPMimeType
		}
		if err := ValidKey(p.Key); err != nil {
			return nil, bad("pcap part %d: %v", p.Part, err)
		}
		if !validSHA256(p.SHA256) {
			return nil, bad("pcap part %d: SHA-256 %q is not 64 lowercase hex digits", p.Part, p.SHA256)
		}
		if u, err := url.Parse(p.URL); err != nil || !u.IsAbs() {
			return nil, bad("pcap part %d: URL %q is not absolute", p.Part, p.URL)
		}
		if p.Size < 0 || p.Part < 0 {
			return nil, bad("pcap part %d: negative size or part", p.Part)
		}
	}
	for i, f := range sess.Files {
		if k, err := parseKey(f.Key); err != nil || k.ext != "bin" {
			return nil, bad("file %d: key %q is not a file key", i+1, f.Key)
		}
		if !validSHA256(f.SHA256) {
			return nil, bad("file %d: SHA-256 %q is not 64 lowercase hex digits", i+1, f.SHA256)
		}
		if u, err := url.Parse(f.URL); err != nil || !u.IsAbs() {
			return nil, bad("file %d: URL %q is not absolute", i+1, f.URL)
		}
		if f.Size < 0 {
			return nil, bad("file %d: negative size", i+1)
		}
		if !f.Time.IsZero() {
			if err := validTime(f.Time); err != nil {
				return nil, bad("file %d time: %v", i+1, err)
			}
		}
	}
	slices.SortStableFunc(pcaps, func(a, b PCAP) int { return cmp.Compare(a.Part, b.Part) })
	for i := 1; i < len(pcaps); i++ {
		if pcaps[i].Part == pcaps[i-1].Part {
			return nil, bad("pcap part %d appears twice", pcaps[i].Part)
		}
	}
	return pcaps, nil
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
