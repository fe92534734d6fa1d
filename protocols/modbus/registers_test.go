package modbus

import (
	"bytes"
	"math"
	"testing"
	"time"
)

// pointWords compiles b as a holding register block and returns the registers of
// its first point t seconds after boot.
func pointWords(t *testing.T, b Block, at float64) []uint16 {
	t.Helper()
	c, err := compileBlock(HoldingRegisters, b, 1)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint16
	for a := c.start; a < c.start+c.width; a++ {
		out = append(out, c.word(a, at))
	}
	return out
}

func TestEncoding(t *testing.T) {
	counter := func(rate float64) *Behavior { return &Behavior{Kind: Counter, Rate: rate} }
	cases := []struct {
		name string
		b    Block
		t    float64
		want []uint16
	}{
		{"uint16 rounds", Block{Count: 1, Values: []float64{41.6}}, 0, []uint16{42}},
		{"uint16 saturates high", Block{Count: 1, Values: []float64{70000}}, 0, []uint16{65535}},
		{"uint16 saturates low", Block{Count: 1, Values: []float64{-3}}, 0, []uint16{0}},
		{"int16 negative", Block{Count: 1, Type: Int16, Values: []float64{-2}}, 0, []uint16{0xfffe}},
		{"int16 saturates", Block{Count: 1, Type: Int16, Values: []float64{-40000}}, 0, []uint16{0x8000}},
		{"uint32 high first", Block{Count: 1, Type: Uint32, Values: []float64{0x10002}}, 0, []uint16{1, 2}},
		{"uint32 low first", Block{Count: 1, Type: Uint32, WordOrder: LowWordFirst, Values: []float64{0x10002}}, 0, []uint16{2, 1}},
		{"int32 negative", Block{Count: 1, Type: Int32, Values: []float64{-1}}, 0, []uint16{0xffff, 0xffff}},
		{"float32", Block{Count: 1, Type: Float32, Values: []float64{-1.5}}, 0, []uint16{0xbfc0, 0x0000}},
		{"float32 keeps fraction", Block{Count: 1, Type: Float32, Values: []float64{0.1}}, 0,
			[]uint16{uint16(math.Float32bits(0.1) >> 16), uint16(math.Float32bits(0.1))}},
		{"counter truncates", Block{Count: 1, Behavior: counter(0.5)}, 3, []uint16{1}},
		{"counter wraps uint16", Block{Count: 1, Values: []float64{65535}, Behavior: counter(1)}, 2, []uint16{1}},
		{"counter wraps int16", Block{Count: 1, Type: Int16, Values: []float64{32767}, Behavior: counter(1)}, 1, []uint16{0x8000}},
		{"counter uint32 carries", Block{Count: 1, Type: Uint32, Values: []float64{65535}, Behavior: counter(1)}, 1, []uint16{1, 0}},
		{"counter counts down", Block{Count: 1, Values: []float64{10}, Behavior: counter(-1)}, 3, []uint16{7}},
		{"sine quarter period", Block{Count: 1, Values: []float64{100}, Behavior: &Behavior{Kind: Sine, Period: 40 * time.Second, Amplitude: 20}}, 10, []uint16{120}},
		{"sine three quarters", Block{Count: 1, Values: []float64{100}, Behavior: &Behavior{Kind: Sine, Period: 40 * time.Second, Amplitude: 20}}, 30, []uint16{80}},
		{"ramp", Block{Count: 1, Values: []float64{10}, Behavior: &Behavior{Kind: Ramp, Period: 100 * time.Second, Amplitude: 50}}, 130, []uint16{25}},
		{"square high", Block{Count: 1, Values: []float64{5}, Behavior: &Behavior{Kind: Square, Period: 10 * time.Second, Amplitude: 7, Duty: 0.3}}, 12, []uint16{12}},
		{"square low", Block{Count: 1, Values: []float64{5}, Behavior: &Behavior{Kind: Square, Period: 10 * time.Second, Amplitude: 7, Duty: 0.3}}, 14, []uint16{5}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := pointWords(t, tc.b, tc.t)
			if len(got) != len(tc.want) {
				t.Fatalf("got %04x, want %04x", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %04x, want %04x", got, tc.want)
				}
			}
		})
	}
}

func TestBehaviorPhaseAndNoise(t *testing.T) {
	// Three sine points are a third of a period apart: their deviations sum to 0.
	c, err := compileBlock(InputRegisters, Block{Count: 3, Type: Float32, Values: []float64{0, 0, 0},
		Behavior: &Behavior{Kind: Sine, Period: time.Minute, Amplitude: 10}}, 7)
	if err != nil {
		t.Fatal(err)
	}
	sum := c.value(0, 17) + c.value(1, 17) + c.value(2, 17)
	if math.Abs(sum) > 1e-9 {
		t.Errorf("three-phase sum %v", sum)
	}

	// Noise stays within its amplitude, is continuous, repeats for the same instant,
	// and differs between installs (seeds).
	noise := Block{Name: "flow", Count: 1, Values: []float64{1000}, Behavior: &Behavior{Kind: Noise, Period: 10 * time.Second, Amplitude: 30}}
	a, _ := compileBlock(InputRegisters, noise, 1)
	b, _ := compileBlock(InputRegisters, noise, 2)
	differ := 0
	prev := a.value(0, 0)
	for i := 1; i < 5000; i++ {
		at := float64(i) * 0.05
		v := a.value(0, at)
		if v < 970 || v > 1030 {
			t.Fatalf("noise %v outside 1000±30", v)
		}
		if math.Abs(v-prev) > 1 {
			t.Fatalf("noise jumps from %v to %v in 50 ms", prev, v)
		}
		if v != a.value(0, at) {
			t.Fatal("noise not deterministic")
		}
		if math.Abs(v-b.value(0, at)) > 0.5 {
			differ++
		}
		prev = v
	}
	if differ < 1000 {
		t.Errorf("two seeds agree too often (%d of 5000 differ)", differ)
	}

	// Square bits follow the duty cycle.
	sq, err := compileBlock(Coils, Block{Count: 1, Behavior: &Behavior{Kind: Square, Period: 100 * time.Second, Duty: 0.25}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   float64
		want uint16
	}{{0, 1}, {24, 1}, {26, 0}, {99, 0}, {101, 1}} {
		if got := sq.word(0, tc.at); got != tc.want {
			t.Errorf("square bit at %v = %d, want %d", tc.at, got, tc.want)
		}
	}
}

func TestRegisterMapCoverage(t *testing.T) {
	cfg := &Config{HoldingRegisters: []Block{
		{Name: "b", Address: 10, Count: 5},
		{Name: "a", Address: 0, Count: 10},
		{Name: "f", Address: 15, Count: 2, Type: Float32},
		{Name: "far", Address: 100, Count: 1},
	}}
	m, err := newRegisterMap(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr, n int
		want    bool
		names   string
	}{
		{0, 19, true, "a,b,f"}, {0, 20, false, ""}, {9, 2, true, "a,b"}, {18, 1, true, "f"},
		{19, 1, false, ""}, {100, 1, true, "far"}, {99, 2, false, ""}, {0, 0, false, ""},
		{65535, 2, false, ""},
	} {
		if got := m.covered(HoldingRegisters, tc.addr, tc.n); got != tc.want {
			t.Errorf("covered(%d, %d) = %v", tc.addr, tc.n, got)
		}
		if tc.want {
			if got := m.names(HoldingRegisters, tc.addr, tc.n); got != tc.names {
				t.Errorf("names(%d, %d) = %q, want %q", tc.addr, tc.n, got, tc.names)
			}
		}
	}
	m.write(HoldingRegisters, 8, []uint16{1, 2, 3, 4})
	if got := m.read(nil, HoldingRegisters, 7, 6, 0); !equalWords(got, []uint16{0, 1, 2, 3, 4, 0}) {
		t.Errorf("read across blocks after write: %v", got)
	}
}

func equalWords(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWireRoundTrips(t *testing.T) {
	for _, n := range []int{1, 7, 8, 9, 16, 2000} {
		bits := make([]bool, n)
		for i := range bits {
			bits[i] = (i*7)%3 == 0
		}
		packed := PackBits(nil, bits)
		if len(packed) != (n+7)/8 {
			t.Fatalf("%d bits packed into %d bytes", n, len(packed))
		}
		got, err := UnpackBits(packed, n)
		if err != nil {
			t.Fatal(err)
		}
		for i := range bits {
			if got[i] != bits[i] {
				t.Fatalf("bit %d of %d", i, n)
			}
		}
	}
	if _, err := UnpackBits([]byte{0xff}, 9); err == nil {
		t.Error("UnpackBits: 9 bits from one byte")
	}
	r := DeviceIDResponse{Code: 2, Conformity: 0x82, MoreFollows: true, NextObject: 4,
		Objects: []DeviceObject{{0, []byte("A")}, {1, nil}, {3, []byte("xyz")}}}
	back, err := ParseDeviceIDResponse(AppendDeviceIDResponse(nil, r))
	if err != nil || back.Code != 2 || back.Conformity != 0x82 || !back.MoreFollows || back.NextObject != 4 || len(back.Objects) != 3 ||
		!bytes.Equal(back.Objects[2].Value, []byte("xyz")) || len(back.Objects[1].Value) != 0 {
		t.Errorf("device id round trip: %+v %v", back, err)
	}
	for _, bad := range []string{"2b 0e 01 81 00 00 02 00 01 41", "2b 0e 01 81 7f 00 00", "2b 0e 01 81 00 00 00 00", "2b 0e 01"} {
		if _, err := ParseDeviceIDResponse(hx(bad)); err == nil {
			t.Errorf("ParseDeviceIDResponse(%s) accepted", bad)
		}
	}
	if fc, e, ok := ParseException(hx("83 02")); !ok || fc != 3 || e != IllegalDataAddress || e.String() != "illegal data address" {
		t.Errorf("ParseException: %v %v %v", fc, e, ok)
	}
	if (MaskWrite{AndMask: 0xF2, OrMask: 0x25}).Apply(0x12) != 0x17 {
		t.Error("mask write example of the specification")
	}
}
