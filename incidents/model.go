// Package incidents turns one recorded attacker session into a STIX 2.1 bundle (an
// incident with its observed data, indicator and sighting, and an artifact per pcap),
// names the stored objects, and stores them in S3-compatible storage or a local folder
// through a disk spool that survives storage outages and process crashes.
//
// The package imports only the standard library and storage/STIX libraries; the sensor
// converts its own session, capture and protocol types into the plain types below.
package incidents

import (
	"net/netip"
	"time"
)

// Sensor describes the sensor that recorded a session.
type Sensor struct {
	// ID is a short stable id, [a-z0-9-], used in object keys.
	ID string
	// Name is a human-readable name for the identity object; "pcapot sensor <ID>" when
	// empty.
	Name string
	// IdentityID is the sensor's STIX identity, "identity--<uuid4>", created once per
	// install and persisted by the sensor. Build refuses to invent one.
	IdentityID string
	// IdentityCreated and IdentityModified are the created/modified times of the
	// identity object. Persist IdentityCreated with IdentityID, and bump IdentityModified
	// whenever Name changes: STIX requires every serialization of one (id, modified) pair
	// to be identical. When zero, the build time is used for both (a new identity
	// version in every bundle, which is legal but noisy for consumers).
	IdentityCreated, IdentityModified time.Time
	// Vendor and Product name the emulated device (the persona), used in descriptions.
	Vendor, Product string
}

// Event is one ICS protocol operation of a session. Its strings may hold attacker
// bytes: the builder keeps them exactly (invalid UTF-8 is carried in hex as well).
type Event struct {
	Time     time.Time
	Protocol string
	// Op is a stable snake_case operation name ("read_holding_registers").
	Op string
	// Code is the function/service code on the wire.
	Code int
	// Unit is the unit/slave/station address; negative when none applies.
	Unit int
	// Area is the memory area, object or resource addressed.
	Area string
	// Address and Quantity describe the range addressed; both zero when none applies.
	Address, Quantity int
	// Data holds the raw values written.
	Data []byte
	// Exception is the protocol error answered, 0 when the request succeeded.
	Exception int
	// Write is true for operations that change device state.
	Write bool
	// Detail carries protocol-specific fields with stable keys.
	Detail map[string]string
}

// PCAP is one stored capture file of a session. A session longer than the capture's
// maximum lifetime has several parts, numbered from 1.
type PCAP struct {
	// Key is the object key (see Keys and PartKey); URL is where consumers fetch it
	// (Store.URL of the key).
	Key, URL string
	// SHA256 is the lowercase hex SHA-256 of the file, computed when it was written.
	SHA256 string
	Size   int64
	// MimeType defaults to PCAPMimeType.
	MimeType string
	// Part is the part number, 1 for the first (0 is taken as 1).
	Part int
}

// File is content the attacker uploaded during the session, stored as evidence.
type File struct {
	// Key is the object key (see FileKey); URL where consumers fetch it.
	Key, URL string
	// SHA256 is the lowercase hex SHA-256 of the stored content.
	SHA256 string
	Size   int64
	// Name is the name the attacker gave (attacker text); Protocol the emulator.
	Name, Protocol string
	Time           time.Time
	// Truncated is set when the content was cut at the sensor's cap.
	Truncated bool
}

// Media types of stored objects.
const (
	PCAPMimeType   = "application/vnd.tcpdump.pcap"
	PCAPNGMimeType = "application/x-pcapng"
	// BundleMimeType is the content type of stored bundles (the STIX media type).
	BundleMimeType = "application/stix+json;version=2.1"
	// FileMimeType is the content type of stored uploads: their type is unknown.
	FileMimeType = "application/octet-stream"
)

// Session is one attacker session as the sensor closed it.
type Session struct {
	// ID is the session UUID (canonical lowercase form).
	ID string
	// Protocol is the emulator name ("modbus"), Service the IANA service name used in
	// network-traffic protocols ("mbap"; may be empty), Transport "tcp" or "udp".
	Protocol, Service, Transport string
	// Client is the attacker, Server the sensor's address.
	Client, Server netip.AddrPort
	// Start and End bound the session. End before Start (a clock step) is taken as Start.
	Start, End time.Time
	// Reason is why the session ended ("fin", "rst", "idle", ...).
	Reason string

	ClientPackets, ServerPackets, ClientBytes, ServerBytes int64

	PCAPs []PCAP
	// Files are the attacker's uploads kept as evidence.
	Files []File
	// Filter is the exact 5-tuple BPF expression of the capture, FilterBytecode its
	// compiled program as text, so an analyst can carve the same session elsewhere.
	Filter, FilterBytecode string

	// PossiblyIncomplete is set when the capture may have missed packets; Drops counts
	// the kernel drops seen during the session.
	PossiblyIncomplete bool
	Drops              uint64

	Events []Event
	// EventsDropped counts events beyond the sensor's per-session cap.
	EventsDropped int
}
