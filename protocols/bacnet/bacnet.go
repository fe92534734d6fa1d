// Package bacnet emulates a BACnet/IP device (UDP 47808, ASHRAE 135 Annex J) behind
// the sensor's device persona: BVLC and NPDU handled as a non-BBMD, non-router device,
// Who-Is/I-Am, Who-Has/I-Have, ReadProperty, ReadPropertyMultiple, WriteProperty,
// DeviceCommunicationControl and ReinitializeDevice on a Device object and a handful
// of analog and binary points. See README.md.
package bacnet

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Spec returns the registry entry of the BACnet/IP emulator.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      "bacnet",
		Transport: protocols.UDP,
		Port:      47808,
		Service:   "bacnet",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc("bacnet", New),
	}
}

// Config is the persona's `bacnet:` section. NewConfig fills in the defaults, which
// describe a building-automation controller running an air-handling unit.
type Config struct {
	// DeviceInstance is the Device object's instance number (0..4194302). When unset it
	// is derived from the identity's serial number and MAC address, so that every
	// install has its own.
	DeviceInstance *uint32 `yaml:"device_instance"`
	// VendorID is the BACnet vendor identifier of Identity.Vendor (ASHRAE's list);
	// the default 222 is WAGO Kontakttechnik.
	VendorID uint16 `yaml:"vendor_id"`
	// ApplicationSoftwareVersion is the version of the application program loaded.
	ApplicationSoftwareVersion string `yaml:"application_software_version"`
	// MaxAPDU is max-apdu-length-accepted: 50, 128, 206, 480, 1024 or 1476.
	MaxAPDU uint16 `yaml:"max_apdu"`
	// APDUTimeout (milliseconds) and APDURetries are the device's apdu-timeout and
	// number-of-apdu-retries.
	APDUTimeout uint32 `yaml:"apdu_timeout_ms"`
	APDURetries uint8  `yaml:"apdu_retries"`
	// DatabaseRevision is the device's database-revision.
	DatabaseRevision uint32 `yaml:"database_revision"`
	// Password, when set, is required by DeviceCommunicationControl and
	// ReinitializeDevice (Error security/password-failure otherwise).
	Password string `yaml:"password"`
	// MaxDisable caps how long DeviceCommunicationControl can silence the device (a
	// request without a duration means "until re-enabled"; the honeypot does not stay
	// deaf longer than this).
	MaxDisable time.Duration `yaml:"max_disable"`
	// Objects are the device's points besides the Device object.
	Objects []ObjectConfig `yaml:"objects"`
}

// NewConfig returns the default configuration: an air-handling-unit controller.
func NewConfig() *Config {
	return &Config{
		VendorID:                   222,
		ApplicationSoftwareVersion: "AHU-2.4.1",
		MaxAPDU:                    1476,
		APDUTimeout:                3000,
		APDURetries:                3,
		DatabaseRevision:           17,
		MaxDisable:                 15 * time.Minute,
		Objects: []ObjectConfig{
			{Type: "analog-input", Instance: 1, Name: "AHU1_SAT", Description: "Supply air temperature", Units: "degrees-celsius", Value: 16.4, Variation: 0.7, Period: 23 * time.Minute},
			{Type: "analog-input", Instance: 2, Name: "AHU1_RAT", Description: "Return air temperature", Units: "degrees-celsius", Value: 22.3, Variation: 0.5, Period: 71 * time.Minute},
			{Type: "analog-input", Instance: 3, Name: "AHU1_OAT", Description: "Outside air temperature", Units: "degrees-celsius", Value: 11.2, Variation: 4.5, Period: 24 * time.Hour},
			{Type: "analog-input", Instance: 4, Name: "AHU1_SA_PRESS", Description: "Supply duct static pressure", Units: "pascals", Value: 249, Variation: 11, Period: 7 * time.Minute},
			{Type: "analog-input", Instance: 5, Name: "AHU1_RA_HUM", Description: "Return air humidity", Units: "percent-relative-humidity", Value: 41, Variation: 3, Period: 5 * time.Hour},
			{Type: "analog-value", Instance: 1, Name: "AHU1_SAT_SP", Description: "Supply air temperature setpoint", Units: "degrees-celsius", Value: 16},
			{Type: "analog-value", Instance: 2, Name: "AHU1_SF_SPD_CMD", Description: "Supply fan speed command", Units: "percent", Value: 68},
			{Type: "binary-input", Instance: 1, Name: "AHU1_SF_STS", Description: "Supply fan status", Value: 1, ActiveText: "On", InactiveText: "Off"},
			{Type: "binary-input", Instance: 2, Name: "AHU1_FILT_ALM", Description: "Filter differential pressure switch", Value: 0, ActiveText: "Alarm", InactiveText: "Normal"},
			{Type: "binary-input", Instance: 3, Name: "AHU1_HTG_PMP_STS", Description: "Heating coil pump status", Value: 1, Period: 3 * time.Hour, ActiveText: "On", InactiveText: "Off"},
			{Type: "binary-value", Instance: 1, Name: "AHU1_OCC_MODE", Description: "Occupancy mode", Value: 1, ActiveText: "Occupied", InactiveText: "Unoccupied"},
			{Type: "binary-value", Instance: 2, Name: "AHU1_ENABLE", Description: "AHU enable", Value: 1, ActiveText: "Enabled", InactiveText: "Disabled"},
		},
	}
}

// Validate checks c; New calls it.
func (c *Config) Validate() error {
	if c.DeviceInstance != nil && *c.DeviceInstance >= MaxInstance {
		return fmt.Errorf("device_instance %d: want 0..%d", *c.DeviceInstance, MaxInstance-1)
	}
	if maxAPDUCode(int(c.MaxAPDU)) < 0 {
		return fmt.Errorf("max_apdu %d: want 50, 128, 206, 480, 1024 or 1476", c.MaxAPDU)
	}
	if c.APDUTimeout == 0 {
		return errors.New("apdu_timeout_ms: want a positive number")
	}
	if c.MaxDisable < 0 {
		return fmt.Errorf("max_disable %v: want a duration >= 0", c.MaxDisable)
	}
	if len([]rune(c.Password)) > 20 {
		return errors.New("password: at most 20 characters")
	}
	seen := map[uint32]bool{}
	for _, oc := range c.Objects {
		o, err := newObject(oc)
		if err != nil {
			return fmt.Errorf("objects: %w", err)
		}
		id := ObjectID(o.typ, o.instance)
		if seen[id] {
			return fmt.Errorf("objects: %s twice", o.area())
		}
		seen[id] = true
	}
	return nil
}

func maxAPDUCode(n int) int {
	for i, v := range maxAPDUSizes {
		if v == n && v != 0 {
			return i
		}
	}
	return -1
}

// Segmentation-supported value of a device that does not segment.
const noSegmentation = 3

// Error classes and codes (ASHRAE 135 clause 18).
const (
	classDevice   = 0
	classObject   = 1
	classProperty = 2
	classSecurity = 4
	classServices = 5

	codeOther                       = 0
	codeInvalidDataType             = 9
	codePasswordFailure             = 26
	codeUnknownObject               = 31
	codeUnknownProperty             = 32
	codeValueOutOfRange             = 37
	codeWriteAccessDenied           = 40
	codeInvalidArrayIndex           = 42
	codeOptionalFunctionalityAbsent = 45
	codePropertyIsNotAnArray        = 50
)

var errorClassNames = map[uint32]string{0: "device", 1: "object", 2: "property", 3: "resources", 4: "security", 5: "services"}
var errorCodeNames = map[uint32]string{
	0: "other", 9: "invalid-data-type", 26: "password-failure", 31: "unknown-object",
	32: "unknown-property", 37: "value-out-of-range", 40: "write-access-denied",
	42: "invalid-array-index", 45: "optional-functionality-not-supported", 50: "property-is-not-an-array",
}

// bacError is a BACnet Error (class, code).
type bacError struct{ class, code uint32 }

var (
	errUnknownObject   = &bacError{classObject, codeUnknownObject}
	errUnknownProperty = &bacError{classProperty, codeUnknownProperty}
	errNotArray        = &bacError{classProperty, codePropertyIsNotAnArray}
	errArrayIndex      = &bacError{classProperty, codeInvalidArrayIndex}
	errWriteDenied     = &bacError{classProperty, codeWriteAccessDenied}
	errDataType        = &bacError{classProperty, codeInvalidDataType}
	errValueRange      = &bacError{classProperty, codeValueOutOfRange}
	errPassword        = &bacError{classSecurity, codePasswordFailure}
	errNotSupported    = &bacError{classServices, codeOptionalFunctionalityAbsent}
)

// Handler serves BACnet/IP datagrams. The device state (written values, out-of-service
// flags, communication control) lives in the Handler and is shared by all flows; it is
// safe for concurrent use.
type Handler struct {
	cfg      Config
	env      protocols.Env
	log      *slog.Logger
	id       *protocols.Identity
	instance uint32
	device   *object
	objects  []*object // device first, then the points in configuration order
	byID     map[uint32]*object

	mu            sync.Mutex
	disabled      bool // DeviceCommunicationControl disable in force
	disabledUntil time.Time
}

var _ protocols.DatagramHandler = (*Handler)(nil)

// New builds a handler for the persona env.Identity.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if env.Identity == nil {
		return nil, fmt.Errorf("bacnet: no device identity: %w", protocols.ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bacnet: %w: %w", protocols.ErrConfig, err)
	}
	env = env.WithDefaults()
	h := &Handler{cfg: *cfg, env: env, log: env.Logger, id: env.Identity, byID: map[uint32]*object{}}
	if cfg.DeviceInstance != nil {
		h.instance = *cfg.DeviceInstance
	} else {
		if env.Identity.Serial == "" && len(env.Identity.MAC) == 0 {
			return nil, fmt.Errorf("bacnet: device_instance unset and the identity has no serial number or MAC to derive it from: %w", protocols.ErrConfig)
		}
		f := fnv.New32a()
		fmt.Fprintf(f, "bacnet-device-instance\x00%s\x00%s", env.Identity.Serial, env.Identity.MAC)
		h.instance = f.Sum32() % MaxInstance
	}
	h.device = &object{typ: ObjectDevice, instance: h.instance, name: deviceName(env.Identity), description: env.Identity.Description}
	h.objects = append(h.objects, h.device)
	h.byID[ObjectID(ObjectDevice, h.instance)] = h.device
	for _, oc := range cfg.Objects {
		o, err := newObject(oc)
		if err != nil { // Validate has accepted it
			return nil, fmt.Errorf("bacnet: %w: %w", protocols.ErrConfig, err)
		}
		h.objects = append(h.objects, o)
		h.byID[ObjectID(o.typ, o.instance)] = o
	}
	if msg := vendorMismatch(env.Identity.Vendor, cfg.VendorID); msg != "" {
		h.log.Warn("bacnet: vendor_id does not match the identity's vendor; scanners show both", "vendor", env.Identity.Vendor, "vendor_id", cfg.VendorID, "expected", msg)
	}
	return h, nil
}

// deviceName is the Device object's object-name: the station name the plant gave it.
func deviceName(id *protocols.Identity) string {
	for _, s := range []string{id.ModuleName, id.Hostname, id.Model, id.Product} {
		if s != "" {
			return s
		}
	}
	return "device"
}

// knownVendorIDs are BACnet vendor identifiers of vendors a persona is likely to name,
// used only to warn about a persona whose vendor_id tells another story.
var knownVendorIDs = []struct {
	name string
	ids  []uint16
}{
	{"wago", []uint16{222}},
	{"siemens", []uint16{7, 9, 22, 313}},
	{"honeywell", []uint16{17, 18, 333}},
	{"johnson controls", []uint16{5, 107}},
	{"schneider", []uint16{10, 335}},
	{"trane", []uint16{2}},
	{"delta controls", []uint16{8}},
	{"automated logic", []uint16{24}},
	{"tridium", []uint16{36}},
	{"distech", []uint16{332, 364}},
	{"phoenix contact", []uint16{226}},
	{"beckhoff", []uint16{415}},
	{"abb", []uint16{127}},
	{"carrier", []uint16{16}},
	{"kmc", []uint16{28}},
	{"reliable controls", []uint16{35}},
	{"sauter", []uint16{80}},
	{"loytec", []uint16{178}},
}

func vendorMismatch(vendor string, id uint16) string {
	v := strings.ToLower(vendor)
	for _, k := range knownVendorIDs {
		if !strings.Contains(v, k.name) {
			continue
		}
		for _, x := range k.ids {
			if x == id {
				return ""
			}
		}
		s := make([]string, len(k.ids))
		for i, x := range k.ids {
			s[i] = strconv.Itoa(int(x))
		}
		return strings.Join(s, " or ")
	}
	return ""
}

// ServeDatagram answers one BACnet/IP datagram. Every datagram is reported as one
// event; what a real device ignores gets no reply.
func (h *Handler) ServeDatagram(ctx context.Context, s protocols.Session, req []byte, reply func([]byte) error) error {
	now := h.env.Now()
	ev := protocols.Event{Time: now, Protocol: "bacnet", Unit: -1, Detail: map[string]string{}}
	out := h.handle(req, now, &ev)
	s.Emit(ev)
	if out == nil {
		return nil
	}
	if err := reply(out); err != nil {
		return fmt.Errorf("bacnet: send reply: %w", err)
	}
	return nil
}

var bvlcOps = map[byte]string{
	BVLCResult: "bvlc_result", BVLCWriteBDT: "write_bdt", BVLCReadBDT: "read_bdt",
	BVLCReadBDTAck: "read_bdt_ack", BVLCRegisterForeignDevice: "register_foreign_device",
	BVLCReadFDT: "read_fdt", BVLCReadFDTAck: "read_fdt_ack", BVLCDeleteFDTEntry: "delete_fdt_entry",
	BVLCDistributeBroadcastToNet: "distribute_broadcast_to_network", BVLCSecureBVLL: "secure_bvll",
}

// bvlcNAK is the BVLC-Result a device without BBMD function answers to BBMD requests.
var bvlcNAK = map[byte]uint16{
	BVLCWriteBDT:                 resultWriteBDTNAK,
	BVLCReadBDT:                  resultReadBDTNAK,
	BVLCRegisterForeignDevice:    resultRegisterForeignDeviceNAK,
	BVLCReadFDT:                  resultReadFDTNAK,
	BVLCDeleteFDTEntry:           resultDeleteFDTEntryNAK,
	BVLCDistributeBroadcastToNet: resultDistributeBroadcastToNetNAK,
}

// handle returns the reply datagram to req, nil for none, and fills ev.
func (h *Handler) handle(req []byte, now time.Time, ev *protocols.Event) []byte {
	v, err := ParseBVLC(req)
	if err != nil {
		malformed(ev, "bvlc", err)
		return nil
	}
	ev.Detail["bvlc_function"] = fmt.Sprintf("0x%02x", v.Function)
	switch v.Function {
	case BVLCOriginalUnicastNPDU, BVLCOriginalBroadcastNPDU, BVLCForwardedNPDU:
		if v.Function == BVLCForwardedNPDU {
			a := netip.AddrFrom4([4]byte(v.Origin[:4]))
			ev.Detail["forwarded_from"] = netip.AddrPortFrom(a, uint16(v.Origin[4])<<8|uint16(v.Origin[5])).String()
		}
		npdu := h.handleNPDU(v.Payload, now, ev)
		if npdu == nil {
			return nil
		}
		return AppendBVLC(nil, BVLCOriginalUnicastNPDU, npdu)
	}
	ev.Code = int(v.Function)
	ev.Op = bvlcOps[v.Function]
	if ev.Op == "" {
		ev.Op = "bvlc_function"
	}
	if nak, ok := bvlcNAK[v.Function]; ok {
		ev.Exception = int(nak)
		ev.Detail["result"] = "nak"
		ev.Write = v.Function != BVLCReadBDT && v.Function != BVLCReadFDT
		if len(v.Payload) > 0 {
			ev.Data = append([]byte(nil), v.Payload...)
		}
		return AppendBVLCResult(nil, nak)
	}
	ev.Detail["result"] = "ignored"
	return nil
}

func malformed(ev *protocols.Event, layer string, err error) {
	ev.Op = "malformed"
	ev.Detail["layer"] = layer
	ev.Detail["error"] = err.Error()
	ev.Detail["result"] = "ignored"
}

// handleNPDU returns the reply NPDU (with its APDU), or nil.
func (h *Handler) handleNPDU(b []byte, now time.Time, ev *protocols.Event) []byte {
	n, apdu, err := ParseNPDU(b)
	if err != nil {
		malformed(ev, "npdu", err)
		return nil
	}
	if n.HasSource {
		ev.Detail["snet"] = strconv.Itoa(int(n.SNET))
		ev.Detail["sadr"] = fmt.Sprintf("%x", n.SADR)
	}
	if n.HasDest {
		ev.Detail["dnet"] = strconv.Itoa(int(n.DNET))
		ev.Detail["dadr"] = fmt.Sprintf("%x", n.DADR)
	}
	if n.NetworkLayer {
		// A device that is not a router ignores network-layer messages.
		ev.Code = int(n.MessageType)
		ev.Op = networkMessageNames[n.MessageType]
		if ev.Op == "" {
			ev.Op = "network_message"
		}
		if len(n.NetworkDetail) > 0 {
			ev.Data = append([]byte(nil), n.NetworkDetail...)
		}
		ev.Detail["result"] = "ignored"
		return nil
	}
	if n.HasDest && n.DNET != GlobalBroadcastNetwork {
		// Addressed to a device on another network: only a router would pass it on.
		ev.Op = "remote_network_npdu"
		ev.Detail["result"] = "ignored"
		return nil
	}
	out := h.handleAPDU(apdu, now, ev)
	if out == nil {
		return nil
	}
	var rn NPDU
	if n.HasSource {
		// The request came through a router: address the reply to the originator.
		rn = NPDU{HasDest: true, DNET: n.SNET, DADR: n.SADR, HopCount: 255}
	}
	return append(AppendNPDU(nil, rn), out...)
}

var confirmedOps = [...]string{
	"acknowledge_alarm", "confirmed_cov_notification", "confirmed_event_notification",
	"get_alarm_summary", "get_enrollment_summary", "subscribe_cov", "atomic_read_file",
	"atomic_write_file", "add_list_element", "remove_list_element", "create_object",
	"delete_object", "read_property", "read_property_conditional", "read_property_multiple",
	"write_property", "write_property_multiple", "device_communication_control",
	"confirmed_private_transfer", "confirmed_text_message", "reinitialize_device", "vt_open",
	"vt_close", "vt_data", "authenticate", "request_key", "read_range", "life_safety_operation",
	"subscribe_cov_property", "get_event_information", "subscribe_cov_property_multiple",
	"confirmed_cov_notification_multiple", "confirmed_audit_notification", "audit_log_query",
}

var unconfirmedOps = [...]string{
	"i_am", "i_have", "unconfirmed_cov_notification", "unconfirmed_event_notification",
	"unconfirmed_private_transfer", "unconfirmed_text_message", "time_synchronization",
	"who_has", "who_is", "utc_time_synchronization", "write_group",
	"unconfirmed_cov_notification_multiple", "unconfirmed_audit_notification", "who_am_i", "you_are",
}

var pduOps = [...]string{2: "simple_ack", 3: "complex_ack", 4: "segment_ack", 5: "error", 6: "reject", 7: "abort"}

func opName(a APDU) string {
	switch a.Type {
	case PDUConfirmedRequest:
		if int(a.Service) < len(confirmedOps) {
			return confirmedOps[a.Service]
		}
		return "confirmed_request"
	case PDUUnconfirmedRequest:
		if int(a.Service) < len(unconfirmedOps) {
			return unconfirmedOps[a.Service]
		}
		return "unconfirmed_request"
	}
	if int(a.Type) < len(pduOps) && pduOps[a.Type] != "" {
		return pduOps[a.Type]
	}
	return "apdu"
}

// handleAPDU returns the reply APDU, or nil.
func (h *Handler) handleAPDU(b []byte, now time.Time, ev *protocols.Event) []byte {
	a, err := ParseAPDU(b)
	if err != nil {
		malformed(ev, "apdu", err)
		return nil
	}
	ev.Op = opName(a)
	switch a.Type {
	case PDUConfirmedRequest, PDUUnconfirmedRequest:
		ev.Code = int(a.Service)
	default:
		// ACKs, errors and aborts the device is not waiting for are dropped.
		ev.Code = int(a.Type)
		ev.Detail["result"] = "ignored"
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.silenced(now) && !(a.Type == PDUConfirmedRequest && (a.Service == ServiceDeviceCommunicationControl || a.Service == ServiceReinitializeDevice)) {
		ev.Detail["result"] = "communication_disabled"
		return nil
	}
	if a.Type == PDUUnconfirmedRequest {
		return h.unconfirmed(a, now, ev)
	}
	ev.Detail["invoke_id"] = strconv.Itoa(int(a.InvokeID))
	if a.Segmented() {
		return abort(a, AbortSegmentationUnsupported, ev)
	}
	var out []byte
	switch a.Service {
	case ServiceReadProperty:
		out = h.readProperty(a, now, ev)
	case ServiceReadPropertyMultiple:
		out = h.readPropertyMultiple(a, now, ev)
	case ServiceWriteProperty:
		out = h.writeProperty(a, now, ev)
	case ServiceDeviceCommunicationControl:
		out = h.communicationControl(a, now, ev)
	case ServiceReinitializeDevice:
		out = h.reinitialize(a, ev)
	default:
		if len(a.Body) > 0 {
			ev.Data = append([]byte(nil), a.Body...)
		}
		return reject(a, RejectUnrecognizedService, nil, ev)
	}
	if len(out) > h.responseLimit(a) {
		// The answer does not fit in one APDU and the device does not segment.
		return abort(a, AbortSegmentationUnsupported, ev)
	}
	return out
}

// responseLimit is the largest APDU the client accepts and the device sends.
func (h *Handler) responseLimit(a APDU) int {
	limit := int(h.cfg.MaxAPDU)
	if a.MaxResponse > 0 && a.MaxResponse < limit {
		limit = a.MaxResponse
	}
	return limit
}

func (h *Handler) silenced(now time.Time) bool {
	if h.disabled && !now.Before(h.disabledUntil) {
		h.disabled = false
	}
	return h.disabled
}

func reject(a APDU, reason byte, err error, ev *protocols.Event) []byte {
	ev.Exception = int(reason)
	ev.Detail["result"] = "reject"
	if err != nil {
		ev.Detail["error"] = err.Error()
	}
	return AppendRejectPDU(nil, a.InvokeID, reason)
}

func abort(a APDU, reason byte, ev *protocols.Event) []byte {
	ev.Exception = int(reason)
	ev.Detail["result"] = "abort"
	return AppendAbortPDU(nil, a.InvokeID, reason)
}

func errorPDU(a APDU, e *bacError, ev *protocols.Event) []byte {
	setError(ev, e)
	return AppendErrorPDU(nil, a.InvokeID, a.Service, e.class, e.code)
}

func setError(ev *protocols.Event, e *bacError) {
	ev.Exception = int(e.code)
	ev.Detail["result"] = "error"
	ev.Detail["error_class"] = errorClassNames[e.class]
	ev.Detail["error_code"] = errorCodeNames[e.code]
}

// lookup finds an object; device instance 4194303 is the device itself.
func (h *Handler) lookup(typ uint16, instance uint32) *object {
	if typ == ObjectDevice && instance == MaxInstance {
		return h.device
	}
	return h.byID[ObjectID(typ, instance)]
}

func refArea(typ uint16, instance uint32, prop uint32) string {
	return objectTypeName(typ) + ":" + strconv.FormatUint(uint64(instance), 10) + "/" + propertyName(prop)
}

func setRef(ev *protocols.Event, r PropertyRef) {
	ev.Area = refArea(r.Type, r.Instance, r.Property)
	ev.Address = int(r.Instance)
	ev.Quantity = 1
	ev.Detail["object_type"] = objectTypeName(r.Type)
	ev.Detail["instance"] = strconv.FormatUint(uint64(r.Instance), 10)
	ev.Detail["property"] = propertyName(r.Property)
	if r.HasIndex {
		ev.Detail["array_index"] = strconv.FormatUint(uint64(r.Index), 10)
	}
}

func (h *Handler) readProperty(a APDU, now time.Time, ev *protocols.Event) []byte {
	r, err := ParseReadProperty(a.Body)
	if err != nil {
		return reject(a, rejectReason(err), err, ev)
	}
	setRef(ev, r)
	o := h.lookup(r.Type, r.Instance)
	if o == nil {
		return errorPDU(a, errUnknownObject, ev)
	}
	if r.Property == PropAll || r.Property == PropRequired || r.Property == PropOptional {
		// The special identifiers are for ReadPropertyMultiple only.
		return errorPDU(a, errUnknownProperty, ev)
	}
	val, e := h.encodeProperty(nil, o, r, now)
	if e != nil {
		return errorPDU(a, e, ev)
	}
	out := AppendComplexACKHeader(nil, a.InvokeID, ServiceReadProperty)
	out = AppendContextObjectID(out, 0, o.typ, o.instance)
	out = AppendContextUnsigned(out, 1, r.Property)
	if r.HasIndex {
		out = AppendContextUnsigned(out, 2, r.Index)
	}
	out = AppendOpening(out, 3)
	out = append(out, val...)
	out = AppendClosing(out, 3)
	ev.Detail["result"] = "ack"
	return out
}

// maxDetail bounds the lists of objects and properties an event names.
const maxDetail = 512

func appendCapped(b *strings.Builder, s string) {
	if b.Len() >= maxDetail {
		return
	}
	if b.Len() > 0 {
		b.WriteByte(',')
	}
	b.WriteString(s)
}

func (h *Handler) readPropertyMultiple(a APDU, now time.Time, ev *protocols.Event) []byte {
	specs, err := ParseReadPropertyMultiple(a.Body)
	if err != nil {
		return reject(a, rejectReason(err), err, ev)
	}
	limit := h.responseLimit(a)
	var objs, props strings.Builder
	out := AppendComplexACKHeader(nil, a.InvokeID, ServiceReadPropertyMultiple)
	accessErrors := 0
	for _, s := range specs {
		appendCapped(&objs, objectTypeName(s.Type)+":"+strconv.FormatUint(uint64(s.Instance), 10))
		o := h.lookup(s.Type, s.Instance)
		typ, inst := s.Type, s.Instance
		if o != nil {
			typ, inst = o.typ, o.instance
		}
		out = AppendContextObjectID(out, 0, typ, inst)
		out = AppendOpening(out, 1)
		for _, r := range s.Properties {
			ev.Quantity++
			appendCapped(&props, propertyName(r.Property))
			if o == nil {
				out = appendAccessError(out, r, errUnknownObject)
				accessErrors++
				continue
			}
			switch r.Property {
			case PropAll, PropRequired, PropOptional:
				for _, p := range o.properties(r.Property) {
					out = h.appendResult(out, o, PropertyRef{Type: typ, Instance: inst, Property: p}, now, &accessErrors)
				}
			default:
				out = h.appendResult(out, o, r, now, &accessErrors)
			}
			if len(out) > limit {
				break // aborted by the caller; stop encoding
			}
		}
		out = AppendClosing(out, 1)
		if len(out) > limit {
			break
		}
	}
	ev.Area = objs.String()
	if len(specs) > 0 {
		ev.Address = int(specs[0].Instance)
	}
	ev.Detail["objects"] = objs.String()
	ev.Detail["properties"] = props.String()
	ev.Detail["access_errors"] = strconv.Itoa(accessErrors)
	ev.Detail["result"] = "ack"
	return out
}

func (h *Handler) appendResult(out []byte, o *object, r PropertyRef, now time.Time, accessErrors *int) []byte {
	val, e := h.encodeProperty(nil, o, r, now)
	if e != nil {
		*accessErrors++
		return appendAccessError(out, r, e)
	}
	out = AppendContextUnsigned(out, 2, r.Property)
	if r.HasIndex {
		out = AppendContextUnsigned(out, 3, r.Index)
	}
	out = AppendOpening(out, 4)
	out = append(out, val...)
	return AppendClosing(out, 4)
}

func appendAccessError(out []byte, r PropertyRef, e *bacError) []byte {
	out = AppendContextUnsigned(out, 2, r.Property)
	if r.HasIndex {
		out = AppendContextUnsigned(out, 3, r.Index)
	}
	out = AppendOpening(out, 5)
	out = AppendEnumerated(out, e.class)
	out = AppendEnumerated(out, e.code)
	return AppendClosing(out, 5)
}

// encodeProperty appends the application-tagged value of property r.Property of o.
func (h *Handler) encodeProperty(dst []byte, o *object, r PropertyRef, now time.Time) ([]byte, *bacError) {
	if !o.has(r.Property) {
		return nil, errUnknownProperty
	}
	if r.HasIndex && r.Property != PropObjectList && r.Property != PropPropertyList {
		return nil, errNotArray
	}
	switch r.Property {
	case PropObjectList:
		return appendArray(dst, r, len(h.objects), func(dst []byte, i int) []byte {
			return AppendObjectID(dst, h.objects[i].typ, h.objects[i].instance)
		})
	case PropPropertyList:
		l := o.propertyList()
		return appendArray(dst, r, len(l), func(dst []byte, i int) []byte {
			return AppendEnumerated(dst, l[i])
		})
	case PropObjectIdentifier:
		return AppendObjectID(dst, o.typ, o.instance), nil
	case PropObjectName:
		return AppendCharacterString(dst, o.name), nil
	case PropObjectType:
		return AppendEnumerated(dst, uint32(o.typ)), nil
	case PropDescription:
		return AppendCharacterString(dst, o.description), nil
	}
	if o.typ == ObjectDevice {
		return h.encodeDeviceProperty(dst, r.Property, now), nil
	}
	switch r.Property {
	case PropPresentValue:
		v := o.presentValue(now)
		if isBinary(o.typ) {
			return AppendEnumerated(dst, uint32(v)), nil
		}
		return AppendReal(dst, float32(v)), nil
	case PropStatusFlags: // in-alarm, fault, overridden, out-of-service
		return AppendBitString(dst, 4, func(i int) bool { return i == 3 && o.outOfService }), nil
	case PropEventState:
		return AppendEnumerated(dst, 0), nil // normal
	case PropOutOfService:
		return AppendBoolean(dst, o.outOfService), nil
	case PropUnits:
		return AppendEnumerated(dst, o.units), nil
	case PropPolarity:
		return AppendEnumerated(dst, 0), nil // normal
	case PropActiveText:
		return AppendCharacterString(dst, o.activeText), nil
	case PropInactiveText:
		return AppendCharacterString(dst, o.inactiveText), nil
	}
	return nil, errUnknownProperty
}

func appendArray(dst []byte, r PropertyRef, n int, elem func([]byte, int) []byte) ([]byte, *bacError) {
	if !r.HasIndex {
		for i := range n {
			dst = elem(dst, i)
		}
		return dst, nil
	}
	if r.Index == 0 {
		return AppendUnsigned(dst, uint32(n)), nil
	}
	if r.Index > uint32(n) {
		return nil, errArrayIndex
	}
	return elem(dst, int(r.Index-1)), nil
}

// servicesExecuted are the services the device executes (protocol-services-supported).
var servicesExecuted = map[int]bool{
	12: true, // readProperty
	14: true, // readPropertyMultiple
	15: true, // writeProperty
	17: true, // deviceCommunicationControl
	20: true, // reinitializeDevice
	26: true, // i-Am
	27: true, // i-Have
	32: true, // timeSynchronization
	33: true, // who-Has
	34: true, // who-Is
	36: true, // utcTimeSynchronization
}

func (h *Handler) encodeDeviceProperty(dst []byte, prop uint32, now time.Time) []byte {
	id := h.id
	switch prop {
	case PropSystemStatus:
		return AppendEnumerated(dst, 0) // operational
	case PropVendorName:
		return AppendCharacterString(dst, id.Vendor)
	case PropVendorIdentifier:
		return AppendUnsigned(dst, uint32(h.cfg.VendorID))
	case PropModelName:
		if id.Model != "" {
			return AppendCharacterString(dst, id.Model)
		}
		return AppendCharacterString(dst, id.Product)
	case PropFirmwareRevision:
		return AppendCharacterString(dst, id.Firmware)
	case PropApplicationSoftwareVersion:
		return AppendCharacterString(dst, h.cfg.ApplicationSoftwareVersion)
	case PropLocation:
		return AppendCharacterString(dst, id.Location)
	case PropSerialNumber:
		return AppendCharacterString(dst, id.Serial)
	case PropProtocolVersion:
		return AppendUnsigned(dst, protocolVersion)
	case PropProtocolRevision:
		return AppendUnsigned(dst, protocolRevision)
	case PropProtocolServices:
		return AppendBitString(dst, numServicesRev14, func(i int) bool { return servicesExecuted[i] })
	case PropProtocolObjectTypes:
		return AppendBitString(dst, numObjectTypesRev14, func(i int) bool {
			for _, t := range supportedObjectTypes {
				if int(t) == i {
					return true
				}
			}
			return false
		})
	case PropMaxAPDULengthAccepted:
		return AppendUnsigned(dst, uint32(h.cfg.MaxAPDU))
	case PropSegmentationSupported:
		return AppendEnumerated(dst, noSegmentation)
	case PropAPDUTimeout:
		return AppendUnsigned(dst, h.cfg.APDUTimeout)
	case PropNumberOfAPDURetries:
		return AppendUnsigned(dst, uint32(h.cfg.APDURetries))
	case PropDeviceAddressBinding:
		return dst // an empty list: the device has no bindings
	case PropDatabaseRevision:
		return AppendUnsigned(dst, h.cfg.DatabaseRevision)
	case PropLocalDate:
		return AppendDate(dst, now)
	case PropLocalTime:
		return AppendTime(dst, now)
	case PropUTCOffset:
		// Minutes from local standard time to UTC, positive west of Greenwich.
		_, off := now.Zone()
		if now.IsDST() {
			off -= 3600
		}
		return AppendSigned(dst, int32(-off/60))
	case PropDaylightSavingsStatus:
		return AppendBoolean(dst, now.IsDST())
	}
	return dst
}

func (h *Handler) writeProperty(a APDU, now time.Time, ev *protocols.Event) []byte {
	w, err := ParseWriteProperty(a.Body)
	if err != nil {
		return reject(a, rejectReason(err), err, ev)
	}
	setRef(ev, w.PropertyRef)
	ev.Write = true
	ev.Data = append([]byte(nil), w.Value...)
	if w.HasPriority {
		ev.Detail["priority"] = strconv.FormatUint(uint64(w.Priority), 10)
	}
	o := h.lookup(w.Type, w.Instance)
	if o == nil {
		return errorPDU(a, errUnknownObject, ev)
	}
	if !o.has(w.Property) {
		return errorPDU(a, errUnknownProperty, ev)
	}
	if w.HasIndex && w.Property != PropObjectList && w.Property != PropPropertyList {
		return errorPDU(a, errNotArray, ev)
	}
	if e := h.write(o, w, now, ev); e != nil {
		return errorPDU(a, e, ev)
	}
	ev.Detail["result"] = "ack"
	return AppendSimpleACK(nil, a.InvokeID, ServiceWriteProperty)
}

// write applies a WriteProperty to o. Only present-value (of value objects, and of
// inputs that are out of service) and out-of-service are writable.
func (h *Handler) write(o *object, w WriteRequest, now time.Time, ev *protocols.Event) *bacError {
	if o.typ == ObjectDevice || (w.Property != PropPresentValue && w.Property != PropOutOfService) {
		return errWriteDenied
	}
	v, n, err := ParseValue(w.Value)
	if err != nil || n != len(w.Value) {
		return errDataType
	}
	if w.Property == PropOutOfService {
		b, err := v.Boolean()
		if err != nil {
			return errDataType
		}
		if b && !o.outOfService && isInput(o.typ) {
			// The input keeps its last value, decoupled from the process, until
			// written or put back in service.
			o.value, o.written = o.presentValue(now), true
		}
		if !b && isInput(o.typ) {
			o.written = false
		}
		o.outOfService = b
		ev.Detail["value"] = strconv.FormatBool(b)
		return nil
	}
	if isInput(o.typ) && !o.outOfService {
		return errWriteDenied
	}
	if isBinary(o.typ) {
		x, err := v.Enumerated()
		if err != nil {
			return errDataType
		}
		if x > 1 {
			return errValueRange
		}
		o.value, o.written = float64(x), true
		ev.Detail["value"] = strconv.FormatUint(uint64(x), 10)
		return nil
	}
	x, err := v.Real()
	if err != nil {
		return errDataType
	}
	if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
		return errValueRange
	}
	o.value, o.written = float64(x), true
	ev.Detail["value"] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	return nil
}

func (h *Handler) checkPassword(has bool, pw string, ev *protocols.Event) bool {
	if has {
		ev.Detail["password"] = pw
	}
	return h.cfg.Password == "" || (has && pw == h.cfg.Password)
}

var dccStates = [...]string{"enable", "disable", "disable_initiation"}

func (h *Handler) communicationControl(a APDU, now time.Time, ev *protocols.Event) []byte {
	r, err := ParseDeviceCommunicationControl(a.Body)
	if err != nil {
		return reject(a, rejectReason(err), err, ev)
	}
	ev.Write = true
	ev.Area = h.device.area()
	ev.Detail["enable_disable"] = dccStates[r.State]
	if r.HasDuration {
		ev.Detail["duration_minutes"] = strconv.FormatUint(uint64(r.Minutes), 10)
	}
	if !h.checkPassword(r.HasPassword, r.Password, ev) {
		return errorPDU(a, errPassword, ev)
	}
	switch r.State {
	case 0:
		h.disabled = false
	case 1:
		d := h.cfg.MaxDisable
		if r.HasDuration && r.Minutes > 0 && time.Duration(r.Minutes)*time.Minute < d {
			d = time.Duration(r.Minutes) * time.Minute
		}
		h.disabled = d > 0
		h.disabledUntil = now.Add(d)
	}
	// disable-initiation: the device initiates nothing but I-Am, which it still sends.
	ev.Detail["result"] = "ack"
	return AppendSimpleACK(nil, a.InvokeID, ServiceDeviceCommunicationControl)
}

var reinitStates = [...]string{"coldstart", "warmstart", "start_backup", "end_backup", "start_restore", "end_restore", "abort_restore", "activate_changes"}

func (h *Handler) reinitialize(a APDU, ev *protocols.Event) []byte {
	r, err := ParseReinitializeDevice(a.Body)
	if err != nil {
		return reject(a, rejectReason(err), err, ev)
	}
	ev.Write = true
	ev.Area = h.device.area()
	ev.Detail["state"] = reinitStates[r.State]
	if !h.checkPassword(r.HasPassword, r.Password, ev) {
		return errorPDU(a, errPassword, ev)
	}
	switch r.State {
	case 0, 1: // coldstart, warmstart: a restart ends communication control
		h.disabled = false
	case 7: // activate-changes
	default: // backup and restore need file objects the device does not have
		return errorPDU(a, errNotSupported, ev)
	}
	ev.Detail["result"] = "ack"
	return AppendSimpleACK(nil, a.InvokeID, ServiceReinitializeDevice)
}

func setLimits(ev *protocols.Event, l Limits) {
	if l.Set {
		ev.Detail["low_limit"] = strconv.FormatUint(uint64(l.Low), 10)
		ev.Detail["high_limit"] = strconv.FormatUint(uint64(l.High), 10)
	}
}

// unconfirmed serves an unconfirmed request. A malformed one is ignored: there is no
// Reject for unconfirmed services.
func (h *Handler) unconfirmed(a APDU, now time.Time, ev *protocols.Event) []byte {
	switch a.Service {
	case ServiceWhoIs:
		l, err := ParseWhoIs(a.Body)
		if err != nil {
			ev.Detail["error"] = err.Error()
			ev.Detail["result"] = "ignored"
			return nil
		}
		setLimits(ev, l)
		if !l.Contains(h.instance) {
			ev.Detail["result"] = "out_of_range"
			return nil
		}
		ev.Detail["result"] = "i_am"
		return AppendIAm(nil, h.instance, uint32(h.cfg.MaxAPDU), noSegmentation, h.cfg.VendorID)
	case ServiceWhoHas:
		w, err := ParseWhoHas(a.Body)
		if err != nil {
			ev.Detail["error"] = err.Error()
			ev.Detail["result"] = "ignored"
			return nil
		}
		setLimits(ev, w.Limits)
		var o *object
		if w.ByName {
			ev.Detail["object_name"] = w.Name
			ev.Area = w.Name
			for _, x := range h.objects {
				if x.name == w.Name {
					o = x
					break
				}
			}
		} else {
			ev.Area = objectTypeName(w.Type) + ":" + strconv.FormatUint(uint64(w.Instance), 10)
			ev.Address = int(w.Instance)
			o = h.lookup(w.Type, w.Instance)
		}
		if o == nil || !w.Limits.Contains(h.instance) {
			ev.Detail["result"] = "not_found"
			return nil
		}
		ev.Detail["result"] = "i_have"
		return AppendIHave(nil, h.instance, o.typ, o.instance, o.name)
	case ServiceTimeSynchronization, ServiceUTCTimeSynchronization:
		ev.Write = true
		ev.Data = append([]byte(nil), a.Body...)
		date, tod, err := ParseTimeSynchronization(a.Body)
		if err != nil {
			ev.Detail["error"] = err.Error()
			ev.Detail["result"] = "ignored"
			return nil
		}
		ev.Detail["date"] = fmt.Sprintf("%d-%02d-%02d", 1900+int(date[0]), date[1], date[2])
		ev.Detail["time"] = fmt.Sprintf("%02d:%02d:%02d.%02d", tod[0], tod[1], tod[2], tod[3])
		// The sensor's clock is the device's clock: the request is recorded, not applied.
		ev.Detail["result"] = "accepted"
		return nil
	}
	if len(a.Body) > 0 {
		ev.Data = append([]byte(nil), a.Body...)
	}
	ev.Detail["result"] = "ignored"
	return nil
}
