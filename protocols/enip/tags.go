package enip

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"
)

// Logix atomic data types (1756-PM020, "Logix 5000 Data Access").
type tagType struct {
	name string
	code uint16
	size int
}

var tagTypes = []tagType{
	{"BOOL", 0xc1, 1}, {"SINT", 0xc2, 1}, {"INT", 0xc3, 2}, {"DINT", 0xc4, 4},
	{"LINT", 0xc5, 8}, {"REAL", 0xca, 4}, {"LREAL", 0xcb, 8},
}

func typeByName(s string) (tagType, bool) {
	for _, t := range tagTypes {
		if strings.EqualFold(t.name, s) {
			return t, true
		}
	}
	return tagType{}, false
}

func typeByCode(c uint16) (tagType, bool) {
	for _, t := range tagTypes {
		if t.code == c {
			return t, true
		}
	}
	return tagType{}, false
}

// TagConfig is one controller-scope tag served by the Logix tag services.
type TagConfig struct {
	Name string `yaml:"name"`
	// Type is BOOL, SINT, INT, DINT, LINT, REAL or LREAL.
	Type string `yaml:"type"`
	// Elements is the array length (1 for a scalar).
	Elements int `yaml:"elements"`
	// Values are the initial values of the first elements (the rest are 0).
	Values []float64 `yaml:"values"`
	// A scalar tag can follow the process until a client writes it: Variation is the
	// amplitude of a slow movement around the value over Period (a BOOL flips every
	// half Period), Rate a steady increase per second since boot (a counter; integer
	// types wrap around).
	Variation float64       `yaml:"variation"`
	Period    time.Duration `yaml:"period"`
	Rate      float64       `yaml:"rate"`
}

// maxTagElements bounds an array tag.
const maxTagElements = 4096

// tag is one tag with its current value (Elements × size bytes, little-endian).
type tag struct {
	id   uint32 // Symbol object instance
	name string
	typ  tagType
	n    int
	data []byte
	// The process behind a scalar tag, until a client writes it.
	dynamic               bool
	written               bool
	base, variation, rate float64
	period                time.Duration
	phase                 float64
}

func newTag(c TagConfig) (*tag, error) {
	if c.Name == "" || len(c.Name) > 40 {
		return nil, fmt.Errorf("tag name %q: want 1 to 40 characters", c.Name)
	}
	for i, r := range c.Name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return nil, fmt.Errorf("tag name %q: letters, digits and _ only, not starting with a digit", c.Name)
		}
	}
	t, ok := typeByName(c.Type)
	if !ok {
		return nil, fmt.Errorf("tag %s: type %q: want BOOL, SINT, INT, DINT, LINT, REAL or LREAL", c.Name, c.Type)
	}
	n := c.Elements
	if n == 0 {
		n = 1
	}
	if n < 0 || n > maxTagElements {
		return nil, fmt.Errorf("tag %s: elements %d: want 1 to %d", c.Name, c.Elements, maxTagElements)
	}
	if len(c.Values) > n {
		return nil, fmt.Errorf("tag %s: %d values for %d elements", c.Name, len(c.Values), n)
	}
	for _, x := range []float64{c.Variation, c.Rate} {
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > math.MaxFloat32 {
			return nil, fmt.Errorf("tag %s: variation/rate %v out of range", c.Name, x)
		}
	}
	if c.Period < 0 {
		return nil, fmt.Errorf("tag %s: negative period", c.Name)
	}
	moves := (c.Variation != 0 || t.code == 0xc1) && c.Period > 0 || c.Rate != 0
	if moves && n != 1 {
		return nil, fmt.Errorf("tag %s: variation, period and rate apply to scalar tags only", c.Name)
	}
	if moves && t.code == 0xc1 && c.Rate != 0 {
		return nil, fmt.Errorf("tag %s: a BOOL has no rate", c.Name)
	}
	tg := &tag{name: c.Name, typ: t, n: n, data: make([]byte, n*t.size), dynamic: moves,
		variation: c.Variation, period: c.Period, rate: c.Rate}
	if len(c.Values) > 0 {
		tg.base = c.Values[0]
	}
	h := fnv.New32a()
	h.Write([]byte(c.Name))
	tg.phase = float64(h.Sum32()%1000) / 1000 * 2 * math.Pi
	for i, v := range c.Values {
		b, err := encodeValue(t, v)
		if err != nil {
			return nil, fmt.Errorf("tag %s: value %d: %w", c.Name, i, err)
		}
		copy(tg.data[i*t.size:], b)
	}
	return tg, nil
}

// refresh writes the process value at now into a dynamic tag that no client has
// written. The caller holds the device lock.
func (t *tag) refresh(now, boot time.Time) {
	if !t.dynamic || t.written {
		return
	}
	sec := float64(now.UnixNano()) / 1e9
	v := t.base
	if t.period > 0 {
		cycle := sec/t.period.Seconds() + t.phase/(2*math.Pi)
		if t.typ.code == 0xc1 {
			if int64(math.Floor(2*cycle))%2 == 1 {
				v = 1 - v
			}
		} else {
			w := 2 * math.Pi * cycle
			v += t.variation*math.Sin(w) + 0.07*t.variation*math.Sin(6.1*w+t.phase)
		}
	}
	v += t.rate * now.Sub(boot).Seconds()
	switch t.typ.code {
	case 0xc1:
		t.data[0] = 0
		if v != 0 {
			t.data[0] = 0xff
		}
	case 0xca:
		binary.LittleEndian.PutUint32(t.data, math.Float32bits(float32(v)))
	case 0xcb:
		binary.LittleEndian.PutUint64(t.data, math.Float64bits(v))
	default: // integers wrap around like a PLC counter
		x := uint64(int64(math.Round(v)))
		for i := range t.data {
			t.data[i] = byte(x >> (8 * i))
		}
	}
}

// encodeValue encodes one element of type t.
func encodeValue(t tagType, v float64) ([]byte, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		if t.code == 0xca || t.code == 0xcb {
			return nil, fmt.Errorf("%v is not a process value", v)
		}
		return nil, fmt.Errorf("%v is not an integer", v)
	}
	b := make([]byte, t.size)
	switch t.code {
	case 0xc1:
		if v != 0 {
			b[0] = 0xff
		}
	case 0xca:
		if math.Abs(v) > math.MaxFloat32 {
			return nil, fmt.Errorf("%v out of REAL range", v)
		}
		binary.LittleEndian.PutUint32(b, math.Float32bits(float32(v)))
	case 0xcb:
		binary.LittleEndian.PutUint64(b, math.Float64bits(v))
	default:
		bits := uint(8 * t.size)
		lo, hi := -math.Ldexp(1, int(bits)-1), math.Ldexp(1, int(bits)-1)-1
		if v != math.Trunc(v) || v < lo || v > hi {
			return nil, fmt.Errorf("%v out of %s range", v, t.name)
		}
		x := uint64(int64(v))
		for i := range b {
			b[i] = byte(x >> (8 * i))
		}
	}
	return b, nil
}

// formatValues renders elements of type t for events (at most a few).
func formatValues(t tagType, b []byte) string {
	var s []string
	for i := 0; i+t.size <= len(b) && i < 8*t.size; i += t.size {
		e := b[i : i+t.size]
		switch t.code {
		case 0xc1:
			s = append(s, strconv.FormatBool(e[0] != 0))
		case 0xca:
			s = append(s, strconv.FormatFloat(float64(math.Float32frombits(binary.LittleEndian.Uint32(e))), 'g', -1, 32))
		case 0xcb:
			s = append(s, strconv.FormatFloat(math.Float64frombits(binary.LittleEndian.Uint64(e)), 'g', -1, 64))
		default:
			var x uint64
			for j := len(e) - 1; j >= 0; j-- {
				x = x<<8 | uint64(e[j])
			}
			shift := 64 - 8*len(e)
			s = append(s, strconv.FormatInt(int64(x<<shift)>>shift, 10))
		}
	}
	if len(b) > 8*t.size {
		s = append(s, "…")
	}
	return strings.Join(s, ",")
}

// Logix extended status of general status 0xFF.
const (
	extBeyondEnd    uint16 = 0x2105 // access beyond the end of the data object
	extTypeMismatch uint16 = 0x2107 // data type does not match the tag's
)

// maxTagReply bounds the tag data of one unconnected reply (a Logix answers partial
// transfers beyond its 500-byte unconnected buffer).
const maxTagReply = 480

// tagResult is the outcome of a tag service.
type tagResult struct {
	status byte
	ext    []uint16
	data   []byte
	// written is the data written, for the event.
	written []byte
}

func fail(status byte, ext ...uint16) tagResult { return tagResult{status: status, ext: ext} }

// readTag serves Read Tag (0x4C) and Read Tag Fragmented (0x52) for elements from
// start. The caller holds the device lock.
func (t *tag) read(start uint32, data []byte, fragmented bool) tagResult {
	need := 2
	if fragmented {
		need = 6
	}
	if len(data) < need {
		return fail(CIPNotEnoughData)
	}
	if len(data) > need {
		return fail(CIPTooMuchData)
	}
	count := uint32(binary.LittleEndian.Uint16(data))
	if count == 0 || uint64(start)+uint64(count) > uint64(t.n) {
		return fail(CIPGeneralError, extBeyondEnd)
	}
	b := t.data[int(start)*t.typ.size : int(start+count)*t.typ.size]
	offset := uint32(0)
	if fragmented {
		offset = binary.LittleEndian.Uint32(data[2:])
		if offset > uint32(len(b)) {
			return fail(CIPGeneralError, extBeyondEnd)
		}
	}
	b = b[offset:]
	status := CIPSuccess
	if len(b) > maxTagReply {
		b = b[:maxTagReply-maxTagReply%t.typ.size]
		status = CIPPartialTransfer
	}
	out := binary.LittleEndian.AppendUint16(nil, t.typ.code)
	return tagResult{status: status, data: append(out, b...)}
}

// write serves Write Tag (0x4D) and Write Tag Fragmented (0x53). The caller holds the
// device lock.
func (t *tag) write(start uint32, data []byte, fragmented bool) tagResult {
	hdr := 4
	if fragmented {
		hdr = 8
	}
	if len(data) < hdr {
		return fail(CIPNotEnoughData)
	}
	code := binary.LittleEndian.Uint16(data)
	if code == 0x02a0 { // a structure type: the handle follows
		return fail(CIPGeneralError, extTypeMismatch)
	}
	if _, ok := typeByCode(code); !ok || code != t.typ.code {
		return fail(CIPGeneralError, extTypeMismatch)
	}
	count := uint32(binary.LittleEndian.Uint16(data[2:]))
	if count == 0 || uint64(start)+uint64(count) > uint64(t.n) {
		return fail(CIPGeneralError, extBeyondEnd)
	}
	values := data[hdr:]
	offset := uint32(0)
	total := int(count) * t.typ.size
	if fragmented {
		offset = binary.LittleEndian.Uint32(data[4:])
		if uint64(offset)+uint64(len(values)) > uint64(total) {
			return fail(CIPGeneralError, extBeyondEnd)
		}
	} else {
		if len(values) < total {
			return fail(CIPNotEnoughData)
		}
		if len(values) > total {
			return fail(CIPTooMuchData)
		}
	}
	dst := t.data[int(start)*t.typ.size+int(offset):]
	copy(dst, values)
	t.written = true
	if t.typ.code == 0xc1 { // a BOOL reads back as 0 or 0xFF
		for i := range values {
			if dst[i] != 0 {
				dst[i] = 0xff
			}
		}
	}
	return tagResult{status: CIPSuccess, written: values}
}
