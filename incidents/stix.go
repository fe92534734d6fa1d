package incidents

import (
	_ "embed"
	"encoding/json"
	"slices"
	"time"
)

// Fixed identifiers. They never change: consumers key on them.
const (
	// IncidentCoreExtensionID is the OASIS Incident Core Extension.
	IncidentCoreExtensionID = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"
	// ICSExtensionID is pcapot's property-extension carrying the ICS session details
	// (capture filter, drops, protocol events) on the observed-data object.
	ICSExtensionID = "extension-definition--7455f167-91dc-4f70-a797-6013f1e7ef25"
	// ICSExtensionVersion is the version of that extension's schema.
	ICSExtensionVersion = "1.0.0"
	// ICSExtensionSchemaURL is the normative definition of the extension: the file
	// incidents/schema/ics-session-extension-1.0.0.json of the pcapot repository.
	ICSExtensionSchemaURL = "https://raw.githubusercontent.com/pcapot/pcapot/main/incidents/schema/ics-session-extension-1.0.0.json"
	// ProjectIdentityID is the identity of the pcapot project, creator of the ICS
	// extension definition. The extension definition is one object shared by every
	// sensor, so its creator is the project, not a sensor: each (id, modified) pair must
	// serialize identically wherever it appears.
	ProjectIdentityID = "identity--ea8c0ee4-cb1c-46cf-b4c2-236db4a52d76"
)

// fixedTime is created/modified of the two constant objects (project identity and
// extension definition). Changing their content requires a new modified time.
const fixedTime = "2026-11-25T00:00:00.000Z"

//go:embed schema/ics-session-extension-1.0.0.json
var icsExtensionSchema []byte

// ICSExtensionSchema returns the JSON schema (draft 2020-12) of the ICS extension.
func ICSExtensionSchema() []byte { return slices.Clone(icsExtensionSchema) }

const specVersion = "2.1"

// STIXObject is one object of a Bundle: one of the struct types of this file.
type STIXObject interface {
	STIXID() string
	STIXType() string
}

// Common holds the common properties of SDOs, SROs and meta objects.
type Common struct {
	Type         string `json:"type"`
	SpecVersion  string `json:"spec_version"`
	ID           string `json:"id"`
	CreatedByRef string `json:"created_by_ref,omitempty"`
	Created      string `json:"created"`
	Modified     string `json:"modified"`
}

// STIXID returns the object's id.
func (c Common) STIXID() string { return c.ID }

// STIXType returns the object's type.
func (c Common) STIXType() string { return c.Type }

// SCOCommon holds the common properties of cyber-observable objects.
type SCOCommon struct {
	Type        string `json:"type"`
	SpecVersion string `json:"spec_version"`
	ID          string `json:"id"`
}

// STIXID returns the object's id.
func (c SCOCommon) STIXID() string { return c.ID }

// STIXType returns the object's type.
func (c SCOCommon) STIXType() string { return c.Type }

// Identity is a STIX identity SDO.
type Identity struct {
	Common
	Name          string `json:"name"`
	Description   string `json:"description,omitempty"`
	IdentityClass string `json:"identity_class,omitempty"`
}

// ExtensionDefinition is a STIX extension-definition object.
type ExtensionDefinition struct {
	Common
	Name           string   `json:"name"`
	Description    string   `json:"description,omitempty"`
	Schema         string   `json:"schema"`
	Version        string   `json:"version"`
	ExtensionTypes []string `json:"extension_types"`
}

// Incident is a STIX incident SDO.
type Incident struct {
	Common
	Name        string              `json:"name"`
	Description string              `json:"description,omitempty"`
	Extensions  *IncidentExtensions `json:"extensions,omitempty"`
}

// IncidentExtensions holds the extensions of an incident.
type IncidentExtensions struct {
	Core *IncidentCore `json:"extension-definition--ef765651-680c-498d-9894-99799f2fa126,omitempty"`
}

// IncidentCore is the subset of the Incident Core Extension pcapot emits.
type IncidentCore struct {
	ExtensionType       string   `json:"extension_type"`
	Determination       string   `json:"determination"`
	InvestigationStatus string   `json:"investigation_status"`
	DetectionMethods    []string `json:"detection_methods,omitempty"`
	IncidentTypes       []string `json:"incident_types,omitempty"`
}

// ObservedData is a STIX observed-data SDO.
type ObservedData struct {
	Common
	FirstObserved  string                  `json:"first_observed"`
	LastObserved   string                  `json:"last_observed"`
	NumberObserved int                     `json:"number_observed"`
	ObjectRefs     []string                `json:"object_refs"`
	Extensions     *ObservedDataExtensions `json:"extensions,omitempty"`
}

// ObservedDataExtensions holds the extensions of an observed-data object.
type ObservedDataExtensions struct {
	ICS *ICSSession `json:"extension-definition--7455f167-91dc-4f70-a797-6013f1e7ef25,omitempty"`
}

// ICSSession is the payload of the ICS extension (see ICSExtensionSchema).
type ICSSession struct {
	ExtensionType         string     `json:"extension_type"`
	SessionID             string     `json:"session_id"`
	SensorID              string     `json:"sensor_id"`
	Protocol              string     `json:"protocol"`
	Service               string     `json:"service,omitempty"`
	Transport             string     `json:"transport"`
	CloseReason           string     `json:"close_reason,omitempty"`
	CaptureFilter         string     `json:"capture_filter,omitempty"`
	CaptureFilterBytecode string     `json:"capture_filter_bytecode,omitempty"`
	PossiblyIncomplete    bool       `json:"possibly_incomplete"`
	KernelDrops           uint64     `json:"kernel_drops"`
	EventsDropped         int        `json:"events_dropped"`
	PCAPs                 []ICSPCAP  `json:"pcaps,omitempty"`
	Files                 []ICSFile  `json:"files,omitempty"`
	Events                []ICSEvent `json:"events,omitempty"`
}

// ICSPCAP names one stored pcap of the session and its artifact.
type ICSPCAP struct {
	ArtifactRef string `json:"artifact_ref"`
	Key         string `json:"key"`
	Part        int    `json:"part"`
	SizeBytes   int64  `json:"size_bytes"`
}

// ICSFile names one stored upload of the session, its file and artifact objects.
type ICSFile struct {
	FileRef     string `json:"file_ref"`
	ArtifactRef string `json:"artifact_ref"`
	Key         string `json:"key"`
	Protocol    string `json:"protocol,omitempty"`
	NameHex     string `json:"name_hex,omitempty"`
	Time        string `json:"time,omitempty"`
	SizeBytes   int64  `json:"size_bytes"`
	Truncated   bool   `json:"truncated"`
}

// ICSEvent is one protocol operation. String fields that were not valid UTF-8 are
// emitted with U+FFFD replacements and, exactly, in hex in the matching *_hex field.
type ICSEvent struct {
	Time        string            `json:"time,omitempty"`
	Protocol    string            `json:"protocol,omitempty"`
	ProtocolHex string            `json:"protocol_hex,omitempty"`
	Op          string            `json:"op"`
	OpHex       string            `json:"op_hex,omitempty"`
	Code        int               `json:"code"`
	Unit        *int              `json:"unit,omitempty"`
	Area        string            `json:"area,omitempty"`
	AreaHex     string            `json:"area_hex,omitempty"`
	Address     *int              `json:"address,omitempty"`
	Quantity    *int              `json:"quantity,omitempty"`
	DataHex     string            `json:"data_hex,omitempty"`
	Exception   int               `json:"exception"`
	Write       bool              `json:"write"`
	Detail      map[string]string `json:"detail,omitempty"`
	DetailHex   map[string]string `json:"detail_hex,omitempty"`
}

// NetworkTraffic is a STIX network-traffic SCO.
type NetworkTraffic struct {
	SCOCommon
	Start        string   `json:"start,omitempty"`
	End          string   `json:"end,omitempty"`
	IsActive     bool     `json:"is_active"`
	SrcRef       string   `json:"src_ref,omitempty"`
	DstRef       string   `json:"dst_ref,omitempty"`
	SrcPort      int      `json:"src_port"`
	DstPort      int      `json:"dst_port"`
	Protocols    []string `json:"protocols"`
	SrcByteCount int64    `json:"src_byte_count"`
	DstByteCount int64    `json:"dst_byte_count"`
	SrcPackets   int64    `json:"src_packets"`
	DstPackets   int64    `json:"dst_packets"`
}

// Addr is a STIX ipv4-addr or ipv6-addr SCO.
type Addr struct {
	SCOCommon
	Value string `json:"value"`
}

// Artifact is a STIX artifact SCO pointing at a stored pcap.
type Artifact struct {
	SCOCommon
	MimeType string            `json:"mime_type,omitempty"`
	URL      string            `json:"url"`
	Hashes   map[string]string `json:"hashes"`
}

// FileSCO is a STIX file SCO: an attacker's upload, its content in an artifact.
type FileSCO struct {
	SCOCommon
	Name       string            `json:"name,omitempty"`
	Size       int64             `json:"size"`
	Hashes     map[string]string `json:"hashes"`
	ContentRef string            `json:"content_ref"`
}

// Indicator is a STIX indicator SDO.
type Indicator struct {
	Common
	Name           string   `json:"name"`
	Description    string   `json:"description,omitempty"`
	IndicatorTypes []string `json:"indicator_types"`
	Pattern        string   `json:"pattern"`
	PatternType    string   `json:"pattern_type"`
	PatternVersion string   `json:"pattern_version,omitempty"`
	ValidFrom      string   `json:"valid_from"`
}

// Sighting is a STIX sighting SRO.
type Sighting struct {
	Common
	Description      string   `json:"description,omitempty"`
	FirstSeen        string   `json:"first_seen"`
	LastSeen         string   `json:"last_seen"`
	Count            int      `json:"count"`
	SightingOfRef    string   `json:"sighting_of_ref"`
	ObservedDataRefs []string `json:"observed_data_refs"`
	WhereSightedRefs []string `json:"where_sighted_refs"`
}

// Relationship is a STIX relationship SRO.
type Relationship struct {
	Common
	RelationshipType string `json:"relationship_type"`
	Description      string `json:"description,omitempty"`
	SourceRef        string `json:"source_ref"`
	TargetRef        string `json:"target_ref"`
}

// Bundle is the STIX bundle of one session.
type Bundle struct {
	ID      string
	Objects []STIXObject
}

// MarshalJSON encodes the bundle as a STIX bundle object. The output depends only on
// the bundle's content (struct field order, sorted map keys).
func (b Bundle) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Type    string       `json:"type"`
		ID      string       `json:"id"`
		Objects []STIXObject `json:"objects"`
	}{"bundle", b.ID, b.Objects})
}

// JSON returns the bundle as indented JSON with a final newline, the stored form.
func (b Bundle) JSON() ([]byte, error) {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// stamp formats created/modified: UTC, exactly millisecond precision.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// obsTime formats observation times (SCO start/end, first_observed, valid_from, ...):
// UTC, microsecond precision with trailing zeros dropped, as python-stix2 emits SCO
// timestamps, so network-traffic ids computed by other STIX tools agree with ours.
func obsTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
}
