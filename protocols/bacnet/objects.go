package bacnet

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Object types the emulator serves.
const (
	ObjectAnalogInput   uint16 = 0
	ObjectAnalogValue   uint16 = 2
	ObjectBinaryInput   uint16 = 3
	ObjectBinaryValue   uint16 = 5
	ObjectDevice        uint16 = 8
	numObjectTypesRev14        = 55 // protocol-object-types-supported bits at revision 14
	numServicesRev14           = 41 // protocol-services-supported bits at revision 14
	protocolVersion            = 1
	protocolRevision           = 14
)

var objectTypeNames = map[uint16]string{
	0: "analog-input", 1: "analog-output", 2: "analog-value", 3: "binary-input",
	4: "binary-output", 5: "binary-value", 6: "calendar", 7: "command", 8: "device",
	9: "event-enrollment", 10: "file", 11: "group", 12: "loop", 13: "multi-state-input",
	14: "multi-state-output", 15: "notification-class", 16: "program", 17: "schedule",
	18: "averaging", 19: "multi-state-value", 20: "trend-log", 21: "life-safety-point",
	22: "life-safety-zone", 23: "accumulator", 24: "pulse-converter", 25: "event-log",
	26: "global-group", 27: "trend-log-multiple", 28: "load-control", 29: "structured-view",
	30: "access-door", 56: "network-port",
}

func objectTypeName(t uint16) string {
	if n, ok := objectTypeNames[t]; ok {
		return n
	}
	return strconv.Itoa(int(t))
}

// Property identifiers (ASHRAE 135 clause 21, BACnetPropertyIdentifier).
const (
	PropActiveText                 uint32 = 4
	PropAll                        uint32 = 8
	PropAPDUTimeout                uint32 = 11
	PropApplicationSoftwareVersion uint32 = 12
	PropDaylightSavingsStatus      uint32 = 24
	PropDescription                uint32 = 28
	PropDeviceAddressBinding       uint32 = 30
	PropEventState                 uint32 = 36
	PropFirmwareRevision           uint32 = 44
	PropInactiveText               uint32 = 46
	PropLocalDate                  uint32 = 56
	PropLocalTime                  uint32 = 57
	PropLocation                   uint32 = 58
	PropMaxAPDULengthAccepted      uint32 = 62
	PropModelName                  uint32 = 70
	PropNumberOfAPDURetries        uint32 = 73
	PropObjectIdentifier           uint32 = 75
	PropObjectList                 uint32 = 76
	PropObjectName                 uint32 = 77
	PropObjectType                 uint32 = 79
	PropOptional                   uint32 = 80
	PropOutOfService               uint32 = 81
	PropPolarity                   uint32 = 84
	PropPresentValue               uint32 = 85
	PropProtocolObjectTypes        uint32 = 96
	PropProtocolServices           uint32 = 97
	PropProtocolVersion            uint32 = 98
	PropRequired                   uint32 = 105
	PropSegmentationSupported      uint32 = 107
	PropStatusFlags                uint32 = 111
	PropSystemStatus               uint32 = 112
	PropUnits                      uint32 = 117
	PropUTCOffset                  uint32 = 119
	PropVendorIdentifier           uint32 = 120
	PropVendorName                 uint32 = 121
	PropProtocolRevision           uint32 = 139
	PropDatabaseRevision           uint32 = 155
	PropPropertyList               uint32 = 371
	PropSerialNumber               uint32 = 372
)

var propertyNames = map[uint32]string{
	PropActiveText: "active-text", PropAll: "all", PropAPDUTimeout: "apdu-timeout",
	PropApplicationSoftwareVersion: "application-software-version",
	PropDaylightSavingsStatus:      "daylight-savings-status", PropDescription: "description",
	PropDeviceAddressBinding: "device-address-binding", PropEventState: "event-state",
	PropFirmwareRevision: "firmware-revision", PropInactiveText: "inactive-text",
	PropLocalDate: "local-date", PropLocalTime: "local-time", PropLocation: "location",
	PropMaxAPDULengthAccepted: "max-apdu-length-accepted", PropModelName: "model-name",
	PropNumberOfAPDURetries: "number-of-apdu-retries", PropObjectIdentifier: "object-identifier",
	PropObjectList: "object-list", PropObjectName: "object-name", PropObjectType: "object-type",
	PropOptional: "optional", PropOutOfService: "out-of-service", PropPolarity: "polarity",
	PropPresentValue: "present-value", PropProtocolObjectTypes: "protocol-object-types-supported",
	PropProtocolServices: "protocol-services-supported", PropProtocolVersion: "protocol-version",
	PropRequired: "required", PropSegmentationSupported: "segmentation-supported",
	PropStatusFlags: "status-flags", PropSystemStatus: "system-status", PropUnits: "units",
	PropUTCOffset: "utc-offset", PropVendorIdentifier: "vendor-identifier",
	PropVendorName: "vendor-name", PropProtocolRevision: "protocol-revision",
	PropDatabaseRevision: "database-revision", PropPropertyList: "property-list",
	PropSerialNumber: "serial-number",
	// Properties the device does not have, named because clients and scanners ask.
	87: "priority-array", 103: "reliability", 104: "relinquish-default", 22: "cov-increment",
	167: "max-segments-accepted", 10: "apdu-segment-timeout",
}

func propertyName(p uint32) string {
	if n := propertyNames[p]; n != "" {
		return n
	}
	return strconv.FormatUint(uint64(p), 10)
}

// Properties of each object type: required first, then optional. property-list
// (an array) lists all of them except object-identifier, object-name, object-type and
// property-list itself.
var (
	deviceRequired = []uint32{
		PropObjectIdentifier, PropObjectName, PropObjectType, PropSystemStatus, PropVendorName,
		PropVendorIdentifier, PropModelName, PropFirmwareRevision, PropApplicationSoftwareVersion,
		PropProtocolVersion, PropProtocolRevision, PropProtocolServices, PropProtocolObjectTypes,
		PropObjectList, PropMaxAPDULengthAccepted, PropSegmentationSupported, PropAPDUTimeout,
		PropNumberOfAPDURetries, PropDeviceAddressBinding, PropDatabaseRevision, PropPropertyList,
	}
	deviceOptional = []uint32{
		PropLocation, PropDescription, PropLocalDate, PropLocalTime, PropUTCOffset,
		PropDaylightSavingsStatus, PropSerialNumber,
	}
	analogRequired = []uint32{
		PropObjectIdentifier, PropObjectName, PropObjectType, PropPresentValue, PropStatusFlags,
		PropEventState, PropOutOfService, PropUnits, PropPropertyList,
	}
	analogOptional       = []uint32{PropDescription}
	binaryInputRequired  = []uint32{PropObjectIdentifier, PropObjectName, PropObjectType, PropPresentValue, PropStatusFlags, PropEventState, PropOutOfService, PropPolarity, PropPropertyList}
	binaryValueRequired  = []uint32{PropObjectIdentifier, PropObjectName, PropObjectType, PropPresentValue, PropStatusFlags, PropEventState, PropOutOfService, PropPropertyList}
	binaryOptional       = []uint32{PropDescription, PropActiveText, PropInactiveText}
	supportedObjectTypes = []uint16{ObjectAnalogInput, ObjectAnalogValue, ObjectBinaryInput, ObjectBinaryValue, ObjectDevice}
)

// Engineering units by name (BACnetEngineeringUnits); config may also give a number.
var unitNames = map[string]uint32{
	"amperes": 3, "volts": 5, "kilowatt-hours": 19, "hertz": 27, "percent-relative-humidity": 29,
	"kilowatts": 48, "pascals": 53, "kilopascals": 54, "bars": 55, "degrees-celsius": 62,
	"degrees-kelvin": 63, "degrees-fahrenheit": 64, "liters-per-second": 87, "no-units": 95,
	"parts-per-million": 96, "percent": 98, "cubic-meters-per-hour": 135,
}

func parseUnits(s string) (uint32, error) {
	if s == "" {
		return 95, nil // no-units
	}
	if u, ok := unitNames[strings.ToLower(s)]; ok {
		return u, nil
	}
	u, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("units %q: want a BACnetEngineeringUnits name or number", s)
	}
	return uint32(u), nil
}

// ObjectConfig is one point of the device.
type ObjectConfig struct {
	// Type is analog-input, analog-value, binary-input or binary-value.
	Type     string `yaml:"type"`
	Instance uint32 `yaml:"instance"`
	Name     string `yaml:"name"`
	// Description is the object's description property.
	Description string `yaml:"description"`
	// Units is an engineering-units name ("degrees-celsius") or number (analog only).
	Units string `yaml:"units"`
	// Value is the centre value of an analog point, or the state (0 or 1) of a binary
	// point at the start of each period.
	Value float64 `yaml:"value"`
	// Variation is the amplitude of an analog input's movement around Value.
	Variation float64 `yaml:"variation"`
	// Period is the cycle of the movement (analog inputs) or of the state changes
	// (binary inputs: the state flips every half period). 0 holds the value still.
	Period time.Duration `yaml:"period"`
	// ActiveText and InactiveText name a binary point's states.
	ActiveText   string `yaml:"active_text"`
	InactiveText string `yaml:"inactive_text"`
}

// object is one BACnet point of the device with its state.
type object struct {
	typ          uint16
	instance     uint32
	name         string
	description  string
	units        uint32
	base         float64
	variation    float64
	period       time.Duration
	phase        float64
	activeText   string
	inactiveText string
	// Written state: a value object's present value once written, an input's value
	// while it is out of service.
	outOfService bool
	written      bool
	value        float64
}

func typeFromName(s string) (uint16, bool) {
	switch s {
	case "analog-input":
		return ObjectAnalogInput, true
	case "analog-value":
		return ObjectAnalogValue, true
	case "binary-input":
		return ObjectBinaryInput, true
	case "binary-value":
		return ObjectBinaryValue, true
	}
	return 0, false
}

func newObject(c ObjectConfig) (*object, error) {
	typ, ok := typeFromName(c.Type)
	if !ok {
		return nil, fmt.Errorf("type %q: want analog-input, analog-value, binary-input or binary-value", c.Type)
	}
	if c.Instance >= MaxInstance {
		return nil, fmt.Errorf("%s instance %d: want below %d", c.Type, c.Instance, MaxInstance)
	}
	if c.Name == "" {
		return nil, fmt.Errorf("%s %d: name is empty", c.Type, c.Instance)
	}
	if math.IsNaN(c.Value) || math.IsInf(c.Value, 0) || math.IsNaN(c.Variation) || math.IsInf(c.Variation, 0) || math.Abs(c.Value)+math.Abs(c.Variation) > math.MaxFloat32 {
		return nil, fmt.Errorf("%s %d: value/variation out of range", c.Type, c.Instance)
	}
	if c.Period < 0 {
		return nil, fmt.Errorf("%s %d: negative period", c.Type, c.Instance)
	}
	o := &object{
		typ: typ, instance: c.Instance, name: c.Name, description: c.Description,
		base: c.Value, variation: c.Variation, period: c.Period,
		activeText: c.ActiveText, inactiveText: c.InactiveText,
	}
	if isBinary(typ) {
		if c.Value != 0 && c.Value != 1 {
			return nil, fmt.Errorf("%s %d: value %v: want 0 or 1", c.Type, c.Instance, c.Value)
		}
		if o.activeText == "" {
			o.activeText = "Active"
		}
		if o.inactiveText == "" {
			o.inactiveText = "Inactive"
		}
	} else {
		u, err := parseUnits(c.Units)
		if err != nil {
			return nil, fmt.Errorf("%s %d: %w", c.Type, c.Instance, err)
		}
		o.units = u
	}
	// A fixed phase per point, so that points do not move in step.
	o.phase = float64((uint32(typ)*7919+c.Instance*104729)%1000) / 1000 * 2 * math.Pi
	return o, nil
}

func isBinary(typ uint16) bool { return typ == ObjectBinaryInput || typ == ObjectBinaryValue }
func isInput(typ uint16) bool  { return typ == ObjectAnalogInput || typ == ObjectBinaryInput }

// presentValue returns the point's value at now: what was written, or the simulated
// process value.
func (o *object) presentValue(now time.Time) float64 {
	if o.written {
		return o.value
	}
	if o.period <= 0 || !isInput(o.typ) {
		return o.base
	}
	t := float64(now.UnixNano()) / 1e9
	cycle := t/o.period.Seconds() + o.phase/(2*math.Pi)
	if isBinary(o.typ) {
		if int64(math.Floor(2*cycle))%2 == 0 {
			return o.base
		}
		return 1 - o.base
	}
	w := 2 * math.Pi * cycle
	v := o.base + o.variation*math.Sin(w) + 0.08*o.variation*math.Sin(7.3*w+o.phase)
	return math.Round(v*100) / 100
}

// properties returns the object's properties selected by which: PropAll,
// PropRequired or PropOptional.
func (o *object) properties(which uint32) []uint32 {
	var req, opt []uint32
	switch o.typ {
	case ObjectDevice:
		req, opt = deviceRequired, deviceOptional
	case ObjectAnalogInput, ObjectAnalogValue:
		req, opt = analogRequired, analogOptional
	case ObjectBinaryInput:
		req, opt = binaryInputRequired, binaryOptional
	case ObjectBinaryValue:
		req, opt = binaryValueRequired, binaryOptional
	}
	switch which {
	case PropRequired:
		return req
	case PropOptional:
		return opt
	}
	return append(append([]uint32(nil), req...), opt...)
}

func (o *object) has(prop uint32) bool {
	for _, p := range o.properties(PropAll) {
		if p == prop {
			return true
		}
	}
	return false
}

// propertyList is the content of the property-list property.
func (o *object) propertyList() []uint32 {
	var l []uint32
	for _, p := range o.properties(PropAll) {
		switch p {
		case PropObjectIdentifier, PropObjectName, PropObjectType, PropPropertyList:
		default:
			l = append(l, p)
		}
	}
	return l
}

func (o *object) area() string {
	return objectTypeName(o.typ) + ":" + strconv.FormatUint(uint64(o.instance), 10)
}
