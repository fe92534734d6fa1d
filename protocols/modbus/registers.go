package modbus

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"time"
)

// Area is one of the four Modbus data areas. Its value is the Event.Area name.
type Area string

// Data areas.
const (
	Coils            Area = "coils"
	DiscreteInputs   Area = "discrete_inputs"
	InputRegisters   Area = "input_registers"
	HoldingRegisters Area = "holding_registers"
)

func (a Area) bits() bool { return a == Coils || a == DiscreteInputs }

// ValueType is how a register block encodes its point values.
type ValueType string

// Register value types. 32-bit types take two consecutive registers per point.
const (
	Uint16  ValueType = "uint16"
	Int16   ValueType = "int16"
	Uint32  ValueType = "uint32"
	Int32   ValueType = "int32"
	Float32 ValueType = "float32"
)

// WordOrder is the register order of 32-bit values.
type WordOrder string

// Word orders.
const (
	HighWordFirst WordOrder = "high_first"
	LowWordFirst  WordOrder = "low_first"
)

// BehaviorKind names how a block's values move over time.
type BehaviorKind string

// Behaviours. The value of point p at time t (seconds since the device booted) is
// its base value plus:
//
//	sine     amplitude × sin(2π (t/period + p/points))
//	ramp     amplitude × frac(t/period + p/points)      (sawtooth)
//	square   amplitude while frac(t/period + p/points) < duty, else 0
//	         (coils and discrete inputs: on while < duty, else off)
//	counter  rate × t, wrapping at the type's range
//	noise    amplitude × smooth value noise in [-1, 1] with a new sample every period
const (
	Sine    BehaviorKind = "sine"
	Ramp    BehaviorKind = "ramp"
	Square  BehaviorKind = "square"
	Counter BehaviorKind = "counter"
	Noise   BehaviorKind = "noise"
)

// Behavior makes the values of a block move over time. Values are computed from the
// device clock, so two reads at the same instant agree and a curve is continuous
// across sessions. A point written by a client holds the written value from then on.
type Behavior struct {
	Kind BehaviorKind `yaml:"kind"`
	// Period of sine, ramp and square; sample interval of noise.
	Period time.Duration `yaml:"period"`
	// Amplitude of sine, noise and square; span of ramp.
	Amplitude float64 `yaml:"amplitude"`
	// Rate is the counter's increment per second.
	Rate float64 `yaml:"rate"`
	// Duty is the fraction of the period a square wave is high (default 0.5).
	Duty float64 `yaml:"duty"`
}

// Block is a run of consecutive points in one data area.
type Block struct {
	// Name labels the block in events ("tank_level"); it never goes on the wire.
	Name string `yaml:"name"`
	// Address is the protocol (0-based) address of the first point.
	Address uint16 `yaml:"address"`
	// Count is the number of points.
	Count int `yaml:"count"`
	// Type of register points (default uint16); not used for coils and discrete inputs.
	Type ValueType `yaml:"type"`
	// WordOrder of 32-bit types (default high_first).
	WordOrder WordOrder `yaml:"word_order"`
	// Values are the initial (base) values of the points; missing ones are 0. For
	// coils and discrete inputs any non-zero value is on.
	Values []float64 `yaml:"values"`
	// Behavior, when set, moves the values over time around their base values.
	Behavior *Behavior `yaml:"behavior"`
}

// block is a Block compiled for serving.
type block struct {
	name       string
	start, end int // addresses [start, end)
	width      int // registers per point
	typ        ValueType
	lowFirst   bool
	beh        *Behavior
	period     float64 // seconds
	base       []float64
	words      []uint16 // current static value of each address (bits: 0 or 1)
	pinned     []bool   // address written by a client: overrides the behaviour
	seed       uint64
	bitsOnly   bool
	pointCount int
}

func (t ValueType) width() int {
	switch t {
	case Uint32, Int32, Float32:
		return 2
	}
	return 1
}

func compileBlock(area Area, b Block, seed uint64) (*block, error) {
	c := &block{name: b.Name, start: int(b.Address), typ: b.Type, bitsOnly: area.bits(), pointCount: b.Count}
	if c.typ == "" {
		c.typ = Uint16
	}
	switch {
	case c.bitsOnly && b.Type != "":
		return nil, fmt.Errorf("type %q: %s have no value type", b.Type, area)
	case c.bitsOnly && b.WordOrder != "":
		return nil, fmt.Errorf("word_order %q: %s have no word order", b.WordOrder, area)
	}
	switch c.typ {
	case Uint16, Int16, Uint32, Int32, Float32:
	default:
		return nil, fmt.Errorf("type %q: want uint16, int16, uint32, int32 or float32", b.Type)
	}
	switch b.WordOrder {
	case "", HighWordFirst:
	case LowWordFirst:
		c.lowFirst = true
	default:
		return nil, fmt.Errorf("word_order %q: want high_first or low_first", b.WordOrder)
	}
	c.width = c.typ.width()
	if b.Count < 1 {
		return nil, fmt.Errorf("count %d: want at least 1", b.Count)
	}
	c.end = c.start + b.Count*c.width
	if c.end > 0x10000 {
		return nil, fmt.Errorf("address %d + %d points runs past 65535", b.Address, b.Count)
	}
	if len(b.Values) > b.Count {
		return nil, fmt.Errorf("%d values for %d points", len(b.Values), b.Count)
	}
	c.base = make([]float64, b.Count)
	for i, v := range b.Values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("value %d is not a finite number", i)
		}
		c.base[i] = v
	}
	if b.Behavior != nil {
		beh := *b.Behavior
		if err := checkBehavior(area, &beh); err != nil {
			return nil, fmt.Errorf("behavior: %w", err)
		}
		c.beh = &beh
		c.period = beh.Period.Seconds()
	}
	c.words = make([]uint16, c.end-c.start)
	c.pinned = make([]bool, c.end-c.start)
	for p := range c.base {
		c.encode(c.words[p*c.width:(p+1)*c.width], c.base[p], false)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s/%d", area, b.Name, b.Address)
	c.seed = seed ^ h.Sum64()
	return c, nil
}

func checkBehavior(area Area, b *Behavior) error {
	finite := func(name string, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s is not a finite number", name)
		}
		return nil
	}
	if err := finite("amplitude", b.Amplitude); err != nil {
		return err
	}
	if err := finite("rate", b.Rate); err != nil {
		return err
	}
	if area.bits() && b.Kind != Square {
		return fmt.Errorf("kind %q: %s only take square", b.Kind, area)
	}
	switch b.Kind {
	case Sine, Ramp, Square, Noise:
		if b.Period <= 0 {
			return fmt.Errorf("kind %s needs a positive period", b.Kind)
		}
	case Counter:
		if b.Rate == 0 {
			return fmt.Errorf("kind counter needs a non-zero rate")
		}
	default:
		return fmt.Errorf("kind %q: want sine, ramp, square, counter or noise", b.Kind)
	}
	if b.Kind == Square {
		if b.Duty == 0 {
			b.Duty = 0.5
		}
		if !(b.Duty > 0 && b.Duty < 1) {
			return fmt.Errorf("duty %v: want a fraction between 0 and 1", b.Duty)
		}
	}
	return nil
}

// value returns point p's value t seconds after boot.
func (c *block) value(p int, t float64) float64 {
	v := c.base[p]
	if c.beh == nil {
		return v
	}
	phase := float64(p) / float64(c.pointCount)
	switch c.beh.Kind {
	case Sine:
		v += c.beh.Amplitude * math.Sin(2*math.Pi*(t/c.period+phase))
	case Ramp:
		v += c.beh.Amplitude * frac(t/c.period+phase)
	case Square:
		high := frac(t/c.period+phase) < c.beh.Duty
		if c.bitsOnly {
			return b2f(high)
		}
		if high {
			v += c.beh.Amplitude
		}
	case Counter:
		v += c.beh.Rate * t
	case Noise:
		v += c.beh.Amplitude * valueNoise(c.seed, p, t/c.period)
	}
	return v
}

// encode writes v into words in the block's type and word order. Integer types round
// (counters truncate) and saturate at the type's range, except counters, which wrap.
func (c *block) encode(words []uint16, v float64, wrap bool) {
	if c.bitsOnly {
		words[0] = uint16(b2f(v != 0))
		return
	}
	if c.typ != Float32 {
		if wrap {
			v = math.Floor(v)
		} else {
			v = math.Round(v)
		}
	}
	var u uint32
	switch c.typ {
	case Uint16:
		words[0] = uint16(integer(v, 0, math.MaxUint16, wrap))
		return
	case Int16:
		words[0] = uint16(integer(v, math.MinInt16, math.MaxInt16, wrap))
		return
	case Uint32:
		u = uint32(integer(v, 0, math.MaxUint32, wrap))
	case Int32:
		u = uint32(integer(v, math.MinInt32, math.MaxInt32, wrap))
	case Float32:
		u = math.Float32bits(float32(v))
	}
	hi, lo := uint16(u>>16), uint16(u)
	if c.lowFirst {
		hi, lo = lo, hi
	}
	words[0], words[1] = hi, lo
}

// integer maps v to [lo, hi]: modulo the range size when wrap is set, else clamped.
// v is already an integer-valued float.
func integer(v float64, lo, hi int64, wrap bool) int64 {
	if wrap {
		span := float64(hi - lo + 1)
		m := math.Mod(v-float64(lo), span)
		if m < 0 {
			m += span
		}
		return lo + int64(m)
	}
	switch {
	case v <= float64(lo):
		return lo
	case v >= float64(hi):
		return hi
	}
	return int64(v)
}

// word returns the register (or bit) at addr t seconds after boot.
func (c *block) word(addr int, t float64) uint16 {
	i := addr - c.start
	if c.beh == nil || c.pinned[i] {
		return c.words[i]
	}
	p := i / c.width
	var w [2]uint16
	c.encodeValue(w[:c.width], p, t)
	return w[i%c.width]
}

func (c *block) encodeValue(words []uint16, p int, t float64) {
	c.encode(words, c.value(p, t), c.beh != nil && c.beh.Kind == Counter)
}

// set stores a value written by a client.
func (c *block) set(addr int, v uint16) {
	i := addr - c.start
	c.words[i] = v
	c.pinned[i] = true
}

// registerMap holds the four data areas of the device. It is not safe for concurrent
// use; the Handler's mutex guards it.
type registerMap struct {
	areas map[Area][]*block // sorted by start, non-overlapping
}

func newRegisterMap(cfg *Config, seed uint64) (*registerMap, error) {
	m := &registerMap{areas: make(map[Area][]*block, 4)}
	for _, a := range []struct {
		area   Area
		blocks []Block
	}{
		{Coils, cfg.Coils},
		{DiscreteInputs, cfg.DiscreteInputs},
		{InputRegisters, cfg.InputRegisters},
		{HoldingRegisters, cfg.HoldingRegisters},
	} {
		var bs []*block
		for i, b := range a.blocks {
			c, err := compileBlock(a.area, b, seed)
			if err != nil {
				return nil, fmt.Errorf("%s[%d] %q: %w", a.area, i, b.Name, err)
			}
			bs = append(bs, c)
		}
		sort.Slice(bs, func(i, j int) bool { return bs[i].start < bs[j].start })
		for i := 1; i < len(bs); i++ {
			if bs[i].start < bs[i-1].end {
				return nil, fmt.Errorf("%s: block %q (address %d) overlaps block %q (addresses %d-%d)",
					a.area, bs[i].name, bs[i].start, bs[i-1].name, bs[i-1].start, bs[i-1].end-1)
			}
		}
		m.areas[a.area] = bs
	}
	return m, nil
}

// find returns the index of the block holding addr, or -1.
func (m *registerMap) find(area Area, addr int) int {
	bs := m.areas[area]
	i := sort.Search(len(bs), func(i int) bool { return bs[i].end > addr })
	if i < len(bs) && bs[i].start <= addr {
		return i
	}
	return -1
}

// covered reports whether every address of [addr, addr+n) is mapped.
func (m *registerMap) covered(area Area, addr, n int) bool {
	if n <= 0 || addr+n > 0x10000 {
		return false
	}
	i := m.find(area, addr)
	if i < 0 {
		return false
	}
	bs := m.areas[area]
	end := addr + n
	for reach := bs[i].end; reach < end; reach = bs[i].end {
		i++
		if i == len(bs) || bs[i].start != reach {
			return false
		}
	}
	return true
}

// read appends the values of [addr, addr+n) at t to dst; the range must be covered.
func (m *registerMap) read(dst []uint16, area Area, addr, n int, t float64) []uint16 {
	bs := m.areas[area]
	i := m.find(area, addr)
	for a := addr; a < addr+n; a++ {
		if a >= bs[i].end {
			i++
		}
		dst = append(dst, bs[i].word(a, t))
	}
	return dst
}

// write stores vals from addr on; the range must be covered.
func (m *registerMap) write(area Area, addr int, vals []uint16) {
	bs := m.areas[area]
	i := m.find(area, addr)
	for k, v := range vals {
		a := addr + k
		if a >= bs[i].end {
			i++
		}
		bs[i].set(a, v)
	}
}

// names returns the names of the blocks [addr, addr+n) touches, for events.
func (m *registerMap) names(area Area, addr, n int) string {
	bs := m.areas[area]
	i := m.find(area, addr)
	if i < 0 {
		return ""
	}
	s := ""
	for ; i < len(bs) && bs[i].start < addr+n; i++ {
		if bs[i].name == "" {
			continue
		}
		if s != "" {
			s += ","
		}
		s += bs[i].name
	}
	return s
}

func frac(x float64) float64 { return x - math.Floor(x) }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// valueNoise is smooth 1-D value noise in [-1, 1]: a pseudo-random sample at every
// integer x, derived from seed and point, eased in between. Deterministic in x.
func valueNoise(seed uint64, point int, x float64) float64 {
	i := math.Floor(x)
	f := x - i
	a := lattice(seed, point, int64(i))
	b := lattice(seed, point, int64(i)+1)
	s := f * f * (3 - 2*f)
	return a + (b-a)*s
}

func lattice(seed uint64, point int, i int64) float64 {
	z := seed ^ uint64(point)*0x9E3779B97F4A7C15 ^ uint64(i)*0xBF58476D1CE4E5B9
	// splitmix64 finaliser
	z ^= z >> 30
	z *= 0xBF58476D1CE4E5B9
	z ^= z >> 27
	z *= 0x94D049BB133111EB
	z ^= z >> 31
	return float64(z>>11)/float64(1<<52) - 1 // [-1, 1)
}
