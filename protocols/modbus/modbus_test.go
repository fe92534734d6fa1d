package modbus

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// testIdentity is the persona of the tests: a Modicon M340 on a lift station.
func testIdentity() *protocols.Identity {
	return &protocols.Identity{
		Vendor:      "Schneider Electric",
		VendorURL:   "www.se.com",
		Product:     "Modicon M340",
		Model:       "BMX P34 2020",
		OrderNumber: "BMXP342020",
		ProductCode: "BMX P34 2020",
		Firmware:    "v3.20",
		Serial:      "20M3417082",
		ModuleName:  "PS3_LIFT",
	}
}

// testBoot and testNow are the fixed clock of the byte-level tests: 1000 s uptime.
var (
	testBoot = time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)
	testNow  = testBoot.Add(1000 * time.Second)
)

// testConfig is a small register map whose values the byte-level cases spell out.
func testConfig() *Config {
	cfg := NewConfig()
	cfg.PollRate = 0
	coils := make([]float64, 200)
	for i := 1; i <= 128; i++ {
		coils[i] = 1 // Conpot's test: 128 ones from address 1
	}
	coils[130] = 1
	hold := []float64{18, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	cfg.Coils = []Block{
		{Name: "outputs", Address: 0, Count: 200, Values: coils},
		{Name: "remote", Address: 1000, Count: 16},
	}
	cfg.DiscreteInputs = []Block{
		{Name: "inputs", Address: 0, Count: 16, Values: []float64{1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1}},
	}
	cfg.InputRegisters = []Block{
		{Name: "ai", Address: 0, Count: 4, Values: []float64{100, 200, 300, 400}},
		{Name: "temperature", Address: 4, Count: 1, Type: Int16, Values: []float64{-5}},
		{Name: "voltage", Address: 5, Count: 1, Type: Float32, Values: []float64{230.5}},
		{Name: "energy", Address: 7, Count: 1, Type: Uint32, WordOrder: LowWordFirst, Values: []float64{0x12345678}},
	}
	cfg.HoldingRegisters = []Block{
		{Name: "setpoints", Address: 0, Count: 10, Values: hold},
		{Name: "config", Address: 10, Count: 190},
		{Name: "heartbeat", Address: 300, Count: 1, Behavior: &Behavior{Kind: Counter, Rate: 1}},
	}
	return cfg
}

func testEnv(t testing.TB, now func() time.Time) protocols.Env {
	env := protocoltest.Env(t, testIdentity())
	env.Boot = testBoot
	env.Now = now
	return env
}

func newTestHandler(t testing.TB, cfg *Config) *Handler {
	t.Helper()
	h, err := New(testEnv(t, func() time.Time { return testNow }), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// hx decodes test bytes: hex pairs separated by spaces, and "quoted" ASCII text.
func hx(s string) []byte {
	var out []byte
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				panic("unterminated string in " + s)
			}
			out = append(out, s[1:1+end]...)
			s = s[2+end:]
			continue
		}
		tok, rest, _ := strings.Cut(s, " ")
		b, err := hex.DecodeString(tok)
		if err != nil {
			panic(err)
		}
		out = append(out, b...)
		s = rest
	}
	return out
}

// pipe serves h on one end of a net.Pipe and returns the other end.
type pipe struct {
	net.Conn
	sess *protocoltest.Session
	done chan error
}

func startPipe(t *testing.T, ctx context.Context, h *Handler) *pipe {
	t.Helper()
	client, server := net.Pipe()
	p := &pipe{
		Conn: client,
		sess: protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:502"), netip.MustParseAddrPort("127.0.0.1:40000")),
		done: make(chan error, 1),
	}
	go func() {
		defer server.Close()
		p.done <- h.ServeStream(ctx, p.sess, server)
	}()
	t.Cleanup(func() { client.Close() })
	return p
}

// readFrame reads one response frame, or returns nil when none comes within wait or
// the connection is closed. It may run in a goroutine of the test.
func (p *pipe) readFrame(t *testing.T, wait time.Duration) []byte {
	p.SetReadDeadline(time.Now().Add(wait))
	f, err := readADU(p)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) && !isTimeout(err) {
		t.Errorf("read response: %v", err)
	}
	return f
}

// readADU reads one Modbus TCP frame from r.
func readADU(r io.Reader) ([]byte, error) {
	hdr := make([]byte, HeaderLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	h, _ := ParseHeader(hdr)
	if h.Length < 2 || h.Length > 254 {
		return nil, fmt.Errorf("response length field %d", h.Length)
	}
	rest := make([]byte, h.Length-1)
	if _, err := io.ReadFull(r, rest); err != nil {
		return nil, err
	}
	return append(hdr, rest...), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (p *pipe) send(t *testing.T, b []byte) {
	t.Helper()
	p.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := p.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// wantEvent lists the event fields a case checks; Data and Detail only when set.
type wantEvent struct {
	Op        string
	Code      int
	Unit      int
	Area      string
	Address   int
	Quantity  int
	Exception int
	Write     bool
	Data      []byte
	Detail    map[string]string
}

func checkEvent(t *testing.T, got protocols.Event, want wantEvent) {
	t.Helper()
	g := wantEvent{got.Op, got.Code, got.Unit, got.Area, got.Address, got.Quantity, got.Exception, got.Write, nil, nil}
	w := want
	w.Data, w.Detail = nil, nil
	if g.Op != w.Op || g.Code != w.Code || g.Unit != w.Unit || g.Area != w.Area || g.Address != w.Address ||
		g.Quantity != w.Quantity || g.Exception != w.Exception || g.Write != w.Write {
		t.Errorf("event = %+v\nwant    %+v", g, w)
	}
	if want.Data != nil && !bytes.Equal(got.Data, want.Data) {
		t.Errorf("event data = % x, want % x", got.Data, want.Data)
	}
	for k, v := range want.Detail {
		if got.Detail[k] != v {
			t.Errorf("event detail[%q] = %q, want %q (all: %v)", k, got.Detail[k], v, got.Detail)
		}
	}
	if got.Protocol != "modbus" {
		t.Errorf("event protocol = %q", got.Protocol)
	}
	if !got.Time.Equal(testNow) {
		t.Errorf("event time = %v, want %v", got.Time, testNow)
	}
}

// exchangeCase is one request/response pair at the byte level. The requests in
// before are sent first (and answered) on the same connection; want empty means no
// answer.
type exchangeCase struct {
	name   string
	config func(*Config)
	before []string
	req    string
	want   string
	event  wantEvent
}

func TestExchange(t *testing.T) {
	fc1 := func(addr, qty int, exc int) wantEvent {
		return wantEvent{Op: "read_coils", Code: 1, Unit: 1, Area: "coils", Address: addr, Quantity: qty, Exception: exc}
	}
	fc3 := func(addr, qty int, exc int) wantEvent {
		return wantEvent{Op: "read_holding_registers", Code: 3, Unit: 1, Area: "holding_registers", Address: addr, Quantity: qty, Exception: exc}
	}
	gateway := func(c *Config) { c.UnknownUnits = GatewayNoResponse }
	// mbServer is the Siemens S7-1200 MB_SERVER instruction: FC 1-6, 15, 16 and the
	// diagnostics echo and clear of FC 8 (S7-1200 system manual).
	mbServer := func(c *Config) {
		c.FunctionCodes = []uint8{1, 2, 3, 4, 5, 6, 8, 15, 16}
		c.DiagnosticSubFunctions = []uint16{0x00, 0x0A}
	}
	cases := []exchangeCase{
		// FC 1 read coils.
		{name: "fc1 conpot 128 ones", req: "00 01 00 00 00 06 01 01 00 01 00 80",
			want: "00 01 00 00 00 13 01 01 10 ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff", event: fc1(1, 128, 0)},
		{name: "fc1 packing lsb first", req: "00 02 00 00 00 06 01 01 00 00 00 0a",
			want: "00 02 00 00 00 05 01 01 02 fe 03", event: fc1(0, 10, 0)},
		{name: "fc1 padding of last byte", req: "00 03 00 00 00 06 01 01 00 7f 00 04",
			want: "00 03 00 00 00 04 01 01 01 0b", event: fc1(127, 4, 0)},
		{name: "fc1 quantity 0", req: "00 04 00 00 00 06 01 01 00 00 00 00",
			want: "00 04 00 00 00 03 01 81 03", event: fc1(0, 0, 3)},
		{name: "fc1 quantity 2001", req: "00 05 00 00 00 06 01 01 00 00 07 d1",
			want: "00 05 00 00 00 03 01 81 03", event: fc1(0, 2001, 3)},
		{name: "fc1 quantity 2000 past the map", req: "00 06 00 00 00 06 01 01 00 00 07 d0",
			want: "00 06 00 00 00 03 01 81 02", event: fc1(0, 2000, 2)},
		{name: "fc1 runs past block end", req: "00 07 00 00 00 06 01 01 00 c7 00 02",
			want: "00 07 00 00 00 03 01 81 02", event: fc1(199, 2, 2)},
		{name: "fc1 address 65535 quantity 2", req: "00 08 00 00 00 06 01 01 ff ff 00 02",
			want: "00 08 00 00 00 03 01 81 02", event: fc1(65535, 2, 2)},
		{name: "fc1 unmapped gap", req: "00 09 00 00 00 06 01 01 01 f4 00 01",
			want: "00 09 00 00 00 03 01 81 02", event: fc1(500, 1, 2)},
		{name: "fc1 second block", req: "00 0a 00 00 00 06 01 01 03 e8 00 10",
			want: "00 0a 00 00 00 05 01 01 02 00 00", event: fc1(1000, 16, 0)},
		{name: "fc1 short pdu", req: "00 0b 00 00 00 05 01 01 00 00 00",
			want: "00 0b 00 00 00 03 01 81 03", event: wantEvent{Op: "read_coils", Code: 1, Unit: 1, Area: "coils", Exception: 3}},
		{name: "fc1 long pdu", req: "00 0c 00 00 00 07 01 01 00 00 00 01 00",
			want: "00 0c 00 00 00 03 01 81 03", event: wantEvent{Op: "read_coils", Code: 1, Unit: 1, Area: "coils", Exception: 3}},

		// FC 2 read discrete inputs.
		{name: "fc2 read 16", req: "00 01 00 00 00 06 01 02 00 00 00 10",
			want:  "00 01 00 00 00 05 01 02 02 0d 8f",
			event: wantEvent{Op: "read_discrete_inputs", Code: 2, Unit: 1, Area: "discrete_inputs", Quantity: 16}},
		{name: "fc2 past end", req: "00 01 00 00 00 06 01 02 00 0f 00 02",
			want:  "00 01 00 00 00 03 01 82 02",
			event: wantEvent{Op: "read_discrete_inputs", Code: 2, Unit: 1, Area: "discrete_inputs", Address: 15, Quantity: 2, Exception: 2}},
		{name: "fc2 quantity 0 before address", req: "00 01 00 00 00 06 01 02 ff ff 00 00",
			want:  "00 01 00 00 00 03 01 82 03",
			event: wantEvent{Op: "read_discrete_inputs", Code: 2, Unit: 1, Area: "discrete_inputs", Address: 65535, Exception: 3}},

		// FC 3 read holding registers.
		{name: "fc3 read 3", req: "00 01 00 00 00 06 01 03 00 00 00 03",
			want: "00 01 00 00 00 09 01 03 06 00 12 00 02 00 03", event: fc3(0, 3, 0)},
		{name: "fc3 across adjacent blocks", req: "00 01 00 00 00 06 01 03 00 08 00 04",
			want: "00 01 00 00 00 0b 01 03 08 00 09 00 0a 00 00 00 00", event: fc3(8, 4, 0)},
		{name: "fc3 quantity 125", req: "00 01 00 00 00 06 01 03 00 00 00 7d",
			want:  "00 01 00 00 00 fd 01 03 fa" + " 00 12 00 02 00 03 00 04 00 05 00 06 00 07 00 08 00 09 00 0a" + strings.Repeat(" 00 00", 115),
			event: fc3(0, 125, 0)},
		{name: "fc3 quantity 126", req: "00 01 00 00 00 06 01 03 00 00 00 7e",
			want: "00 01 00 00 00 03 01 83 03", event: fc3(0, 126, 3)},
		{name: "fc3 beyond map", req: "00 01 00 00 00 06 01 03 00 64 00 7d",
			want: "00 01 00 00 00 03 01 83 02", event: fc3(100, 125, 2)},
		{name: "fc3 moving counter at 1000 s", req: "00 01 00 00 00 06 01 03 01 2c 00 01",
			want: "00 01 00 00 00 05 01 03 02 03 e8", event: fc3(300, 1, 0)},

		// FC 4 read input registers: uint16, int16, float32, uint32 low word first.
		{name: "fc4 typed values", req: "00 01 00 00 00 06 01 04 00 00 00 09",
			want: "00 01 00 00 00 15 01 04 12 00 64 00 c8 01 2c 01 90 ff fb 43 66 80 00 56 78 12 34",
			event: wantEvent{Op: "read_input_registers", Code: 4, Unit: 1, Area: "input_registers", Quantity: 9,
				Detail: map[string]string{"points": "ai,temperature,voltage,energy"}}},
		{name: "fc4 quantity 0", req: "00 01 00 00 00 06 01 04 00 00 00 00",
			want:  "00 01 00 00 00 03 01 84 03",
			event: wantEvent{Op: "read_input_registers", Code: 4, Unit: 1, Area: "input_registers", Exception: 3}},
		{name: "fc4 past end", req: "00 01 00 00 00 06 01 04 00 08 00 02",
			want:  "00 01 00 00 00 03 01 84 02",
			event: wantEvent{Op: "read_input_registers", Code: 4, Unit: 1, Area: "input_registers", Address: 8, Quantity: 2, Exception: 2}},

		// FC 5 write single coil.
		{name: "fc5 on then read back", before: []string{"00 01 00 00 00 06 01 05 00 00 ff 00"},
			req: "00 02 00 00 00 06 01 01 00 00 00 01", want: "00 02 00 00 00 04 01 01 01 01", event: fc1(0, 1, 0)},
		{name: "fc5 echo", req: "00 01 00 00 00 06 01 05 00 05 00 00", want: "00 01 00 00 00 06 01 05 00 05 00 00",
			event: wantEvent{Op: "write_single_coil", Code: 5, Unit: 1, Area: "coils", Address: 5, Quantity: 1, Write: true, Data: hx("00 00")}},
		{name: "fc5 bad value", req: "00 01 00 00 00 06 01 05 00 00 12 34", want: "00 01 00 00 00 03 01 85 03",
			event: wantEvent{Op: "write_single_coil", Code: 5, Unit: 1, Area: "coils", Quantity: 1, Write: true, Exception: 3, Data: hx("12 34")}},
		{name: "fc5 bad value before bad address", req: "00 01 00 00 00 06 01 05 ff ff 00 01", want: "00 01 00 00 00 03 01 85 03",
			event: wantEvent{Op: "write_single_coil", Code: 5, Unit: 1, Area: "coils", Address: 65535, Quantity: 1, Write: true, Exception: 3}},
		{name: "fc5 bad address", req: "00 01 00 00 00 06 01 05 13 88 ff 00", want: "00 01 00 00 00 03 01 85 02",
			event: wantEvent{Op: "write_single_coil", Code: 5, Unit: 1, Area: "coils", Address: 5000, Quantity: 1, Write: true, Exception: 2}},

		// FC 6 write single register.
		{name: "fc6 echo and read back", before: []string{"00 01 00 00 00 06 01 06 00 05 12 34"},
			req: "00 02 00 00 00 06 01 03 00 05 00 01", want: "00 02 00 00 00 05 01 03 02 12 34", event: fc3(5, 1, 0)},
		{name: "fc6 echo", req: "00 01 00 00 00 06 01 06 00 05 12 34", want: "00 01 00 00 00 06 01 06 00 05 12 34",
			event: wantEvent{Op: "write_single_register", Code: 6, Unit: 1, Area: "holding_registers", Address: 5, Quantity: 1, Write: true, Data: hx("12 34")}},
		{name: "fc6 bad address", req: "00 01 00 00 00 06 01 06 01 2d 00 01", want: "00 01 00 00 00 03 01 86 02",
			event: wantEvent{Op: "write_single_register", Code: 6, Unit: 1, Area: "holding_registers", Address: 301, Quantity: 1, Write: true, Exception: 2}},
		{name: "fc6 short pdu", req: "00 01 00 00 00 04 01 06 00 05", want: "00 01 00 00 00 03 01 86 03",
			event: wantEvent{Op: "write_single_register", Code: 6, Unit: 1, Area: "holding_registers", Write: true, Exception: 3}},
		{name: "fc6 pins a moving register", before: []string{"00 01 00 00 00 06 01 06 01 2c 00 07"},
			req: "00 02 00 00 00 06 01 03 01 2c 00 01", want: "00 02 00 00 00 05 01 03 02 00 07", event: fc3(300, 1, 0)},

		// FC 15 write multiple coils: Conpot's case, write [1,0,0,1,0,0,1,1] at 1, read it back.
		{name: "fc15 conpot write then read", before: []string{"00 01 00 00 00 08 01 0f 00 01 00 08 01 c9"},
			req: "00 02 00 00 00 06 01 01 00 01 00 08", want: "00 02 00 00 00 04 01 01 01 c9", event: fc1(1, 8, 0)},
		{name: "fc15 response", req: "00 01 00 00 00 09 01 0f 00 00 00 0a 02 ff 00", want: "00 01 00 00 00 06 01 0f 00 00 00 0a",
			event: wantEvent{Op: "write_multiple_coils", Code: 15, Unit: 1, Area: "coils", Quantity: 10, Write: true, Data: hx("ff 00")}},
		{name: "fc15 byte count too small for quantity", req: "00 01 00 00 00 08 01 0f 00 00 00 0a 01 ff", want: "00 01 00 00 00 03 01 8f 03",
			event: wantEvent{Op: "write_multiple_coils", Code: 15, Unit: 1, Area: "coils", Quantity: 10, Write: true, Exception: 3}},
		{name: "fc15 byte count disagrees with data", req: "00 01 00 00 00 08 01 0f 00 00 00 08 02 ff", want: "00 01 00 00 00 03 01 8f 03",
			event: wantEvent{Op: "write_multiple_coils", Code: 15, Unit: 1, Area: "coils", Quantity: 8, Write: true, Exception: 3}},
		{name: "fc15 quantity 0", req: "00 01 00 00 00 07 01 0f 00 00 00 00 00", want: "00 01 00 00 00 03 01 8f 03",
			event: wantEvent{Op: "write_multiple_coils", Code: 15, Unit: 1, Area: "coils", Write: true, Exception: 3}},
		{name: "fc15 quantity 1969", req: "00 01 00 00 00 08 01 0f 00 00 07 b1 01 00", want: "00 01 00 00 00 03 01 8f 03",
			event: wantEvent{Op: "write_multiple_coils", Code: 15, Unit: 1, Area: "coils", Quantity: 1969, Write: true, Exception: 3}},
		{name: "fc15 bad address", req: "00 01 00 00 00 08 01 0f 00 c7 00 02 01 03", want: "00 01 00 00 00 03 01 8f 02",
			event: wantEvent{Op: "write_multiple_coils", Code: 15, Unit: 1, Area: "coils", Address: 199, Quantity: 2, Write: true, Exception: 2}},
		{name: "fc15 too short", req: "00 01 00 00 00 05 01 0f 00 00 00", want: "00 01 00 00 00 03 01 8f 03",
			event: wantEvent{Op: "write_multiple_coils", Code: 15, Unit: 1, Area: "coils", Write: true, Exception: 3}},

		// FC 16 write multiple registers.
		{name: "fc16 write then read", before: []string{"00 01 00 00 00 0b 01 10 00 00 00 02 04 00 7b 01 c8"},
			req: "00 02 00 00 00 06 01 03 00 00 00 03", want: "00 02 00 00 00 09 01 03 06 00 7b 01 c8 00 03", event: fc3(0, 3, 0)},
		{name: "fc16 response", req: "00 01 00 00 00 0b 01 10 00 00 00 02 04 00 7b 01 c8", want: "00 01 00 00 00 06 01 10 00 00 00 02",
			event: wantEvent{Op: "write_multiple_registers", Code: 16, Unit: 1, Area: "holding_registers", Quantity: 2, Write: true, Data: hx("00 7b 01 c8"),
				Detail: map[string]string{"points": "setpoints"}}},
		{name: "fc16 byte count not 2n", req: "00 01 00 00 00 09 01 10 00 00 00 02 02 00 7b", want: "00 01 00 00 00 03 01 90 03",
			event: wantEvent{Op: "write_multiple_registers", Code: 16, Unit: 1, Area: "holding_registers", Quantity: 2, Write: true, Exception: 3}},
		{name: "fc16 quantity 124", req: "00 01 00 00 00 09 01 10 00 00 00 7c 02 00 7b", want: "00 01 00 00 00 03 01 90 03",
			event: wantEvent{Op: "write_multiple_registers", Code: 16, Unit: 1, Area: "holding_registers", Quantity: 124, Write: true, Exception: 3}},
		{name: "fc16 bad address", req: "00 01 00 00 00 0b 01 10 00 c7 00 02 04 00 01 00 02", want: "00 01 00 00 00 03 01 90 02",
			event: wantEvent{Op: "write_multiple_registers", Code: 16, Unit: 1, Area: "holding_registers", Address: 199, Quantity: 2, Write: true, Exception: 2}},

		// FC 22 mask write register: the specification's example, 0x12 AND 0xF2 OR 0x25 = 0x17.
		{name: "fc22 spec example", before: []string{"00 01 00 00 00 08 01 16 00 00 00 f2 00 25"},
			req: "00 02 00 00 00 06 01 03 00 00 00 01", want: "00 02 00 00 00 05 01 03 02 00 17", event: fc3(0, 1, 0)},
		{name: "fc22 echo", req: "00 01 00 00 00 08 01 16 00 00 00 f2 00 25", want: "00 01 00 00 00 08 01 16 00 00 00 f2 00 25",
			event: wantEvent{Op: "mask_write_register", Code: 22, Unit: 1, Area: "holding_registers", Quantity: 1, Write: true, Data: hx("00 f2 00 25")}},
		{name: "fc22 bad address", req: "00 01 00 00 00 08 01 16 ff 00 00 f2 00 25", want: "00 01 00 00 00 03 01 96 02",
			event: wantEvent{Op: "mask_write_register", Code: 22, Unit: 1, Area: "holding_registers", Address: 0xff00, Quantity: 1, Write: true, Exception: 2}},
		{name: "fc22 short", req: "00 01 00 00 00 06 01 16 00 00 00 f2", want: "00 01 00 00 00 03 01 96 03",
			event: wantEvent{Op: "mask_write_register", Code: 22, Unit: 1, Area: "holding_registers", Write: true, Exception: 3}},

		// FC 23 read/write multiple registers: the write happens before the read.
		{name: "fc23 write first", req: "00 01 00 00 00 0f 01 17 00 02 00 04 00 03 00 02 04 00 aa 00 bb",
			want: "00 01 00 00 00 0b 01 17 08 00 03 00 aa 00 bb 00 06",
			event: wantEvent{Op: "read_write_multiple_registers", Code: 23, Unit: 1, Area: "holding_registers", Address: 2, Quantity: 4, Write: true,
				Data: hx("00 aa 00 bb"), Detail: map[string]string{"write_address": "3", "write_quantity": "2"}}},
		{name: "fc23 read quantity 126", req: "00 01 00 00 00 0d 01 17 00 00 00 7e 00 00 00 01 02 00 01", want: "00 01 00 00 00 03 01 97 03",
			event: wantEvent{Op: "read_write_multiple_registers", Code: 23, Unit: 1, Area: "holding_registers", Quantity: 126, Write: true, Exception: 3}},
		{name: "fc23 write quantity 122", req: "00 01 00 00 00 0d 01 17 00 00 00 01 00 00 00 7a 02 00 01", want: "00 01 00 00 00 03 01 97 03",
			event: wantEvent{Op: "read_write_multiple_registers", Code: 23, Unit: 1, Area: "holding_registers", Quantity: 1, Write: true, Exception: 3}},
		{name: "fc23 byte count", req: "00 01 00 00 00 0d 01 17 00 00 00 01 00 00 00 02 02 00 01", want: "00 01 00 00 00 03 01 97 03",
			event: wantEvent{Op: "read_write_multiple_registers", Code: 23, Unit: 1, Area: "holding_registers", Quantity: 1, Write: true, Exception: 3}},
		{name: "fc23 bad write address", req: "00 01 00 00 00 0d 01 17 00 00 00 01 01 00 00 01 02 00 01", want: "00 01 00 00 00 03 01 97 02",
			event: wantEvent{Op: "read_write_multiple_registers", Code: 23, Unit: 1, Area: "holding_registers", Quantity: 1, Write: true, Exception: 2}},
		{name: "fc23 bad read address", req: "00 01 00 00 00 0d 01 17 01 00 00 01 00 00 00 01 02 00 01", want: "00 01 00 00 00 03 01 97 02",
			event: wantEvent{Op: "read_write_multiple_registers", Code: 23, Unit: 1, Area: "holding_registers", Address: 256, Quantity: 1, Write: true, Exception: 2}},

		// FC 8 diagnostics.
		{name: "fc8 return query data", req: "00 01 00 00 00 08 01 08 00 00 a5 37 12 34", want: "00 01 00 00 00 08 01 08 00 00 a5 37 12 34",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Data: hx("a5 37 12 34"), Detail: map[string]string{"sub_function": "return_query_data", "sub_function_code": "0"}}},
		{name: "fc8 restart communications", req: "00 01 00 00 00 06 01 08 00 01 ff 00", want: "00 01 00 00 00 06 01 08 00 01 ff 00",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Detail: map[string]string{"sub_function": "restart_communications_option"}}},
		{name: "fc8 restart communications bad data", req: "00 01 00 00 00 06 01 08 00 01 12 34", want: "00 01 00 00 00 03 01 88 03",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Exception: 3}},
		{name: "fc8 diagnostic register", req: "00 01 00 00 00 06 01 08 00 02 00 00", want: "00 01 00 00 00 06 01 08 00 02 00 00",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1}},
		{name: "fc8 clear counters", req: "00 01 00 00 00 06 01 08 00 0a 00 00", want: "00 01 00 00 00 06 01 08 00 0a 00 00",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Detail: map[string]string{"sub_function": "clear_counters_and_diagnostic_register", "sub_function_code": "10"}}},
		{name: "fc8 bus message count", before: []string{"00 01 00 00 00 06 01 03 00 00 00 01", "00 01 00 00 00 06 01 03 00 00 00 00"},
			req: "00 03 00 00 00 06 01 08 00 0b 00 00", want: "00 03 00 00 00 06 01 08 00 0b 00 03",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1}},
		{name: "fc8 exception count", before: []string{"00 01 00 00 00 06 01 03 00 00 00 01", "00 01 00 00 00 06 01 03 00 00 00 00"},
			req: "00 03 00 00 00 06 01 08 00 0d 00 00", want: "00 03 00 00 00 06 01 08 00 0d 00 01",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1}},
		{name: "fc8 server message count", before: []string{"00 01 00 00 00 06 01 03 00 00 00 01"},
			req: "00 03 00 00 00 06 01 08 00 0e 00 00", want: "00 03 00 00 00 06 01 08 00 0e 00 02",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1}},
		{name: "fc8 comm error count", before: []string{"00 01 00 01 00 06 01 03 00 00 00 01"},
			req: "00 03 00 00 00 06 01 08 00 0c 00 00", want: "00 03 00 00 00 06 01 08 00 0c 00 01",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1}},
		{name: "fc8 counters cleared", before: []string{"00 01 00 00 00 06 01 03 00 00 00 00", "00 02 00 00 00 06 01 08 00 0a 00 00"},
			req: "00 03 00 00 00 06 01 08 00 0d 00 00", want: "00 03 00 00 00 06 01 08 00 0d 00 00",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1}},
		{name: "fc8 no response count", req: "00 01 00 00 00 06 01 08 00 0f 00 00", want: "00 01 00 00 00 06 01 08 00 0f 00 00",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Detail: map[string]string{"sub_function": "return_server_no_response_count"}}},
		{name: "fc8 overrun count", req: "00 01 00 00 00 06 01 08 00 12 00 00", want: "00 01 00 00 00 06 01 08 00 12 00 00",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1}},
		{name: "fc8 counter with data", req: "00 01 00 00 00 06 01 08 00 0b 00 01", want: "00 01 00 00 00 03 01 88 03",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Exception: 3}},
		{name: "fc8 force listen only", req: "00 01 00 00 00 06 01 08 00 04 00 00", want: "00 01 00 00 00 03 01 88 01",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Exception: 1, Detail: map[string]string{"sub_function": "force_listen_only_mode"}}},
		{name: "fc8 ascii delimiter", req: "00 01 00 00 00 06 01 08 00 03 0a 00", want: "00 01 00 00 00 03 01 88 01",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Exception: 1}},
		{name: "fc8 clear overrun", req: "00 01 00 00 00 06 01 08 00 14 00 00", want: "00 01 00 00 00 03 01 88 01",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Exception: 1}},
		{name: "fc8 reserved", req: "00 01 00 00 00 06 01 08 12 34 00 00", want: "00 01 00 00 00 03 01 88 01",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Exception: 1, Detail: map[string]string{"sub_function": "reserved", "sub_function_code": "4660"}}},
		{name: "fc8 short", req: "00 01 00 00 00 04 01 08 00 00", want: "00 01 00 00 00 03 01 88 03",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Exception: 3}},

		// FC 17 report server id: byte count, server id, run indicator 0xFF, identity.
		{name: "fc17 conpot request", req: "00 00 00 00 00 02 01 11",
			want:  `00 00 00 00 00 24 01 11 21 01 ff "Modicon M340 BMX P34 2020 v3.20"`,
			event: wantEvent{Op: "report_server_id", Code: 17, Unit: 1, Detail: map[string]string{"server_id": "1"}}},
		{name: "fc17 configured", config: func(c *Config) { id := uint8(0xfa); c.ServerID = &id; c.ServerIDData = "PM710PowerMeter" },
			req: "00 00 00 00 00 02 05 11", want: `00 00 00 00 00 14 05 11 11 fa ff "PM710PowerMeter"`,
			event: wantEvent{Op: "report_server_id", Code: 17, Unit: 5}},
		{name: "fc17 with data", req: "00 00 00 00 00 03 01 11 00", want: "00 00 00 00 00 03 01 91 03",
			event: wantEvent{Op: "report_server_id", Code: 17, Unit: 1, Exception: 3}},

		// FC 43 / 14 read device identification.
		{name: "fc43 basic", req: "00 01 00 00 00 05 01 2b 0e 01 00",
			want: `00 01 00 00 00 31 01 2b 0e 01 82 00 00 03 00 12 "Schneider Electric" 01 0c "BMX P34 2020" 02 05 "v3.20"`,
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Quantity: 3,
				Detail: map[string]string{"read_device_id_code": "1", "mei_type": "14"}}},
		{name: "fc43 conpot basic from object 2", req: "00 01 00 00 00 05 01 2b 0e 01 02",
			want:  `00 01 00 00 00 0f 01 2b 0e 01 82 00 00 01 02 05 "v3.20"`,
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Address: 2, Quantity: 1}},
		{name: "fc43 regular", req: "00 01 00 00 00 05 01 2b 0e 02 00",
			want: `00 01 00 00 00 63 01 2b 0e 02 82 00 00 07 00 12 "Schneider Electric" 01 0c "BMX P34 2020" 02 05 "v3.20" ` +
				`03 0a "www.se.com" 04 0c "Modicon M340" 05 0c "BMX P34 2020" 06 08 "PS3_LIFT"`,
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Quantity: 7}},
		{name: "fc43 regular from object 4", req: "00 01 00 00 00 05 01 2b 0e 02 04",
			want:  `00 01 00 00 00 2e 01 2b 0e 02 82 00 00 03 04 0c "Modicon M340" 05 0c "BMX P34 2020" 06 08 "PS3_LIFT"`,
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Address: 4, Quantity: 3}},
		{name: "fc43 basic unknown start restarts at 0", req: "00 01 00 00 00 05 01 2b 0e 01 05",
			want:  `00 01 00 00 00 31 01 2b 0e 01 82 00 00 03 00 12 "Schneider Electric" 01 0c "BMX P34 2020" 02 05 "v3.20"`,
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Address: 5, Quantity: 3}},
		{name: "fc43 extended without extended objects", req: "00 01 00 00 00 05 01 2b 0e 03 80",
			want: `00 01 00 00 00 63 01 2b 0e 03 82 00 00 07 00 12 "Schneider Electric" 01 0c "BMX P34 2020" 02 05 "v3.20" ` +
				`03 0a "www.se.com" 04 0c "Modicon M340" 05 0c "BMX P34 2020" 06 08 "PS3_LIFT"`,
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Address: 0x80, Quantity: 7}},
		{name: "fc43 extended", config: func(c *Config) {
			c.ExtendedObjects = []ExtendedObject{{ID: 0x81, Value: "20M3417082"}, {ID: 0x80, Value: "PV:03"}}
		}, req: "00 01 00 00 00 05 01 2b 0e 03 06",
			want:  `00 01 00 00 00 25 01 2b 0e 03 83 00 00 03 06 08 "PS3_LIFT" 80 05 "PV:03" 81 0a "20M3417082"`,
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Address: 6, Quantity: 3}},
		{name: "fc43 individual", req: "00 01 00 00 00 05 01 2b 0e 04 05",
			want:  `00 01 00 00 00 16 01 2b 0e 04 82 00 00 01 05 0c "BMX P34 2020"`,
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Address: 5, Quantity: 1}},
		{name: "fc43 individual unknown object", req: "00 01 00 00 00 05 01 2b 0e 04 07", want: "00 01 00 00 00 03 01 ab 02",
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Address: 7, Exception: 2}},
		{name: "fc43 individual extended absent", req: "00 01 00 00 00 05 01 2b 0e 04 80", want: "00 01 00 00 00 03 01 ab 02",
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Address: 0x80, Exception: 2}},
		{name: "fc43 code 0", req: "00 01 00 00 00 05 01 2b 0e 00 00", want: "00 01 00 00 00 03 01 ab 03",
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Exception: 3}},
		{name: "fc43 code 5", req: "00 01 00 00 00 05 01 2b 0e 05 00", want: "00 01 00 00 00 03 01 ab 03",
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Exception: 3}},
		{name: "fc43 short", req: "00 01 00 00 00 04 01 2b 0e 01", want: "00 01 00 00 00 03 01 ab 03",
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Area: "device_identification", Exception: 3}},
		{name: "fc43 canopen mei", req: "00 01 00 00 00 05 01 2b 0d 00 00", want: "00 01 00 00 00 03 01 ab 01",
			event: wantEvent{Op: "illegal_function", Code: 43, Unit: 1, Exception: 1, Detail: map[string]string{"mei_type": "13"}}},
		{name: "fc43 no mei", req: "00 01 00 00 00 02 01 2b", want: "00 01 00 00 00 03 01 ab 01",
			event: wantEvent{Op: "illegal_function", Code: 43, Unit: 1, Exception: 1}},

		// Function codes that are not served.
		{name: "fc7 read exception status", req: "00 01 00 00 00 02 01 07", want: "00 01 00 00 00 03 01 87 01",
			event: wantEvent{Op: "illegal_function", Code: 7, Unit: 1, Exception: 1}},
		{name: "fc20 read file record", req: "00 01 00 00 00 0a 01 14 07 06 00 04 00 01 00 02", want: "00 01 00 00 00 03 01 94 01",
			event: wantEvent{Op: "illegal_function", Code: 20, Unit: 1, Exception: 1}},
		{name: "fc24 read fifo", req: "00 01 00 00 00 04 01 18 04 de", want: "00 01 00 00 00 03 01 98 01",
			event: wantEvent{Op: "illegal_function", Code: 24, Unit: 1, Exception: 1}},
		{name: "fc90 unity", req: "00 01 00 00 00 04 01 5a 00 02", want: "00 01 00 00 00 03 01 da 01",
			event: wantEvent{Op: "illegal_function", Code: 90, Unit: 1, Exception: 1}},
		{name: "fc0", req: "00 01 00 00 00 02 01 00", want: "00 01 00 00 00 03 01 80 01",
			event: wantEvent{Op: "illegal_function", Code: 0, Unit: 1, Exception: 1}},
		{name: "fc 0x83 exception code as request", req: "00 01 00 00 00 03 01 83 02", want: "00 01 00 00 00 03 01 83 01",
			event: wantEvent{Op: "illegal_function", Code: 0x83, Unit: 1, Exception: 1}},

		// Function codes the device does not implement (function_codes) answer 01 like
		// codes nobody knows; the event still names the operation.
		{name: "fc43 not implemented", config: mbServer, req: "00 01 00 00 00 05 01 2b 0e 01 00", want: "00 01 00 00 00 03 01 ab 01",
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 1, Exception: 1,
				Detail: map[string]string{"function": "not_implemented", "mei_type": "14"}}},
		{name: "fc17 not implemented", config: mbServer, req: "00 00 00 00 00 02 01 11", want: "00 00 00 00 00 03 01 91 01",
			event: wantEvent{Op: "report_server_id", Code: 17, Unit: 1, Exception: 1, Detail: map[string]string{"function": "not_implemented"}}},
		{name: "fc23 not implemented", config: mbServer, req: "00 01 00 00 00 0d 01 17 00 00 00 01 00 00 00 01 02 00 01",
			want:  "00 01 00 00 00 03 01 97 01",
			event: wantEvent{Op: "read_write_multiple_registers", Code: 23, Unit: 1, Write: true, Exception: 1}},
		{name: "fc22 not implemented", config: mbServer, req: "00 01 00 00 00 08 01 16 00 00 00 f2 00 25", want: "00 01 00 00 00 03 01 96 01",
			event: wantEvent{Op: "mask_write_register", Code: 22, Unit: 1, Write: true, Exception: 1}},
		{name: "fc8 not implemented", config: func(c *Config) { c.FunctionCodes = []uint8{3} },
			req: "00 01 00 00 00 06 01 08 00 00 12 34", want: "00 01 00 00 00 03 01 88 01",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Exception: 1, Detail: map[string]string{"function": "not_implemented"}}},
		{name: "fc3 of a device without fc16", config: func(c *Config) { c.FunctionCodes = []uint8{3} },
			req: "00 01 00 00 00 06 01 03 00 00 00 01", want: "00 01 00 00 00 05 01 03 02 00 12", event: fc3(0, 1, 0)},
		{name: "fc16 not implemented", config: func(c *Config) { c.FunctionCodes = []uint8{3} },
			req: "00 01 00 00 00 0b 01 10 00 00 00 02 04 00 7b 01 c8", want: "00 01 00 00 00 03 01 90 01",
			event: wantEvent{Op: "write_multiple_registers", Code: 16, Unit: 1, Write: true, Exception: 1}},
		{name: "fc8 echo of mb_server", config: mbServer, req: "00 01 00 00 00 06 01 08 00 00 a5 37", want: "00 01 00 00 00 06 01 08 00 00 a5 37",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Detail: map[string]string{"sub_function": "return_query_data"}}},
		{name: "fc8 clear counters of mb_server", config: mbServer, req: "00 01 00 00 00 06 01 08 00 0a 00 00", want: "00 01 00 00 00 06 01 08 00 0a 00 00",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1}},
		{name: "fc8 sub-function not implemented", config: mbServer, req: "00 01 00 00 00 06 01 08 00 0b 00 00", want: "00 01 00 00 00 03 01 88 01",
			event: wantEvent{Op: "diagnostics", Code: 8, Unit: 1, Exception: 1,
				Detail: map[string]string{"sub_function": "return_bus_message_count", "sub_function_code": "11"}}},

		// Unit identifiers.
		{name: "unit 7 served by default", req: "00 01 00 00 00 06 07 03 00 00 00 01", want: "00 01 00 00 00 05 07 03 02 00 12",
			event: wantEvent{Op: "read_holding_registers", Code: 3, Unit: 7, Area: "holding_registers", Quantity: 1}},
		{name: "unit 255", req: "00 01 00 00 00 06 ff 03 00 00 00 01", want: "00 01 00 00 00 05 ff 03 02 00 12",
			event: wantEvent{Op: "read_holding_registers", Code: 3, Unit: 255, Area: "holding_registers", Quantity: 1}},
		{name: "gateway unknown unit", config: gateway, req: "00 01 00 00 00 06 05 01 00 00 00 08", want: "00 01 00 00 00 03 05 81 0b",
			event: wantEvent{Op: "read_coils", Code: 1, Unit: 5, Exception: 11, Detail: map[string]string{"unit_status": "not_served"}}},
		{name: "gateway unknown unit device id", config: gateway, req: "00 01 00 00 00 05 05 2b 0e 01 00", want: "00 01 00 00 00 03 05 ab 0b",
			event: wantEvent{Op: "read_device_identification", Code: 43, Unit: 5, Exception: 11}},
		{name: "gateway served unit", config: gateway, req: "00 01 00 00 00 06 01 03 00 00 00 01", want: "00 01 00 00 00 05 01 03 02 00 12",
			event: fc3(0, 1, 0)},
		{name: "gateway unit 0 accepted", config: gateway, req: "00 01 00 00 00 06 00 03 00 00 00 01", want: "00 01 00 00 00 05 00 03 02 00 12",
			event: wantEvent{Op: "read_holding_registers", Code: 3, Unit: 0, Area: "holding_registers", Quantity: 1}},
		{name: "gateway unit 255 refused", config: func(c *Config) { gateway(c); c.AcceptUnit255 = false },
			req: "00 01 00 00 00 06 ff 03 00 00 00 01", want: "00 01 00 00 00 03 ff 83 0b",
			event: wantEvent{Op: "read_holding_registers", Code: 3, Unit: 255, Exception: 11}},
		{name: "gateway path unavailable", config: func(c *Config) { c.UnknownUnits = GatewayNoPath },
			req: "00 01 00 00 00 06 09 10 00 00 00 00", want: "00 01 00 00 00 03 09 90 0a",
			event: wantEvent{Op: "write_multiple_registers", Code: 16, Unit: 9, Exception: 10}},
		{name: "ignored unit", config: func(c *Config) { c.UnknownUnits = Ignore },
			req: "00 01 00 00 00 06 09 03 00 00 00 01", want: "",
			event: wantEvent{Op: "read_holding_registers", Code: 3, Unit: 9, Detail: map[string]string{"response": "none"}}},
		{name: "served unit list", config: func(c *Config) { c.UnknownUnits = Ignore; c.UnitIDs = []uint8{1, 9} },
			req: "00 01 00 00 00 06 09 03 00 00 00 01", want: "00 01 00 00 00 05 09 03 02 00 12",
			event: wantEvent{Op: "read_holding_registers", Code: 3, Unit: 9, Area: "holding_registers", Quantity: 1}},

		// Frames that are not requests.
		{name: "protocol id 1 discarded", req: "12 34 00 01 00 06 01 03 00 00 00 01", want: "",
			event: wantEvent{Op: "malformed_frame", Unit: 1, Detail: map[string]string{"reason": "protocol_id", "protocol_id": "1", "transaction_id": "4660"}}},
		{name: "empty pdu discarded", req: "00 01 00 00 00 01 01", want: "",
			event: wantEvent{Op: "malformed_frame", Unit: 1, Detail: map[string]string{"reason": "pdu_length"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.config != nil {
				tc.config(cfg)
			}
			h := newTestHandler(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := startPipe(t, ctx, h)
			for _, b := range tc.before {
				p.send(t, hx(b))
				p.readFrame(t, 300*time.Millisecond) // answered or not: the case checks the effect
			}
			p.send(t, hx(tc.req))
			wait := time.Second
			if tc.want == "" {
				wait = 100 * time.Millisecond
			}
			got := p.readFrame(t, wait)
			if want := hx(tc.want); !bytes.Equal(got, want) {
				t.Fatalf("response\n got % x\nwant % x", got, want)
			}
			evs := p.sess.Events()
			if len(evs) != len(tc.before)+1 {
				t.Fatalf("%d events, want %d: %+v", len(evs), len(tc.before)+1, evs)
			}
			checkEvent(t, evs[len(evs)-1], tc.event)
			// The connection stays usable after every one of these.
			p.send(t, hx("00 99 00 00 00 06 01 03 00 00 00 01"))
			if got := p.readFrame(t, time.Second); len(got) < 8 || got[7] != 0x03 || got[1] != 0x99 {
				t.Fatalf("follow-up request answered % x", got)
			}
		})
	}
}

// A frame whose MBAP length is out of range loses the framing: the connection is
// closed, as a real device does, after one event.
func TestBadLengthCloses(t *testing.T) {
	for _, tc := range []struct{ name, req, length string }{
		{"length 0", "00 01 00 00 00 00 01 03 00 00 00 01", "0"},
		{"length 255", "00 01 00 00 00 ff 01 03 00 00 00 01", "255"},
		{"http request", "47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31 0d 0a 0d 0a", "12064"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, testConfig())
			p := startPipe(t, context.Background(), h)
			p.send(t, hx(tc.req))
			select {
			case err := <-p.done:
				if err != nil {
					t.Fatalf("ServeStream: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("connection not closed")
			}
			evs := p.sess.Events()
			if len(evs) != 1 || evs[0].Op != "malformed_frame" || evs[0].Detail["length"] != tc.length {
				t.Fatalf("events %+v", evs)
			}
		})
	}
}

func TestPipelinedAndSplit(t *testing.T) {
	reqs := hx("00 01 00 00 00 06 01 03 00 00 00 01" +
		" 00 02 00 00 00 06 01 06 00 01 00 2a" +
		" 00 03 00 00 00 06 01 03 00 01 00 01" +
		" 00 04 00 00 00 02 01 07" +
		" 00 05 00 00 00 05 01 2b 0e 04 00")
	want := [][]byte{
		hx("00 01 00 00 00 05 01 03 02 00 12"),
		hx("00 02 00 00 00 06 01 06 00 01 00 2a"),
		hx("00 03 00 00 00 05 01 03 02 00 2a"),
		hx("00 04 00 00 00 03 01 87 01"),
		hx(`00 05 00 00 00 1c 01 2b 0e 04 82 00 00 01 00 12 "Schneider Electric"`),
	}
	for _, tc := range []struct {
		name   string
		chunks [][]byte
	}{
		{"one segment", [][]byte{reqs}},
		{"byte by byte", splitEvery(reqs, 1)},
		{"split in headers", splitEvery(reqs, 5)},
		{"split across frames", splitEvery(reqs, 17)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, testConfig())
			p := startPipe(t, context.Background(), h)
			var got [][]byte
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range want {
					f := p.readFrame(t, 2*time.Second)
					if f == nil {
						return
					}
					got = append(got, f)
				}
			}()
			for _, c := range tc.chunks {
				p.send(t, c)
			}
			wg.Wait()
			if len(got) != len(want) {
				t.Fatalf("%d responses, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Errorf("response %d\n got % x\nwant % x", i, got[i], want[i])
				}
			}
			if n := len(p.sess.Events()); n != len(want) {
				t.Errorf("%d events, want %d", n, len(want))
			}
		})
	}
}

func splitEvery(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// countingConn counts the reads the handler makes, so that a test sees a loop that
// spins.
type countingConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(b)
}

// TestReadLoopEnds checks that the read loop returns promptly, without spinning, on
// EOF, on half a frame followed by close, on a stalled sender, on a sender that
// trickles one byte at a time, and on cancellation.
func TestReadLoopEnds(t *testing.T) {
	const idle = 300 * time.Millisecond
	cases := []struct {
		name     string
		client   func(ctx context.Context, c net.Conn, cancel context.CancelFunc)
		atLeast  time.Duration
		atMost   time.Duration
		maxReads int64
	}{
		{"eof", func(_ context.Context, c net.Conn, _ context.CancelFunc) { c.Close() }, 0, idle / 2, 2},
		{"half frame then close", func(_ context.Context, c net.Conn, _ context.CancelFunc) {
			c.Write(hx("00 01 00 00 00 06 01 03"))
			c.Close()
		}, 0, idle / 2, 3},
		{"half header then close", func(_ context.Context, c net.Conn, _ context.CancelFunc) {
			c.Write(hx("00 01 00"))
			c.Close()
		}, 0, idle / 2, 3},
		{"stalled after half frame", func(ctx context.Context, c net.Conn, _ context.CancelFunc) {
			c.Write(hx("00 01 00 00 00 06 01 03"))
			<-ctx.Done()
		}, idle, 3 * idle, 3},
		{"silent", func(ctx context.Context, _ net.Conn, _ context.CancelFunc) { <-ctx.Done() }, idle, 3 * idle, 2},
		{"trickle", func(ctx context.Context, c net.Conn, _ context.CancelFunc) {
			frame := hx("00 01 00 00 00 06 01 03 00 00 00 01")
			for i := 0; i < len(frame); i++ {
				if _, err := c.Write(frame[i : i+1]); err != nil {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(idle / 4):
				}
			}
		}, idle, 3 * idle, 8},
		{"cancelled", func(_ context.Context, _ net.Conn, cancel context.CancelFunc) { cancel() }, 0, idle / 2, 2},
	}
	for _, transport := range []string{"pipe", "tcp"} {
		for _, tc := range cases {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				testReadLoopEnd(t, transport, idle, tc.client, tc.atLeast, tc.atMost, tc.maxReads)
			})
		}
	}
}

func testReadLoopEnd(t *testing.T, transport string, idle time.Duration,
	clientFn func(ctx context.Context, c net.Conn, cancel context.CancelFunc),
	atLeast, atMost time.Duration, maxReads int64) {
	cfg := testConfig()
	cfg.IdleTimeout = idle
	h := newTestHandler(t, cfg)
	client, server := connPair(t, transport)
	defer client.Close()
	defer server.Close()
	cc := &countingConn{Conn: server}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clientCtx, stopClient := context.WithCancel(context.Background())
	defer stopClient()
	sess := protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:502"), netip.MustParseAddrPort("127.0.0.1:40000"))
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- h.ServeStream(ctx, sess, cc) }()
	go clientFn(clientCtx, client, cancel)
	select {
	case err := <-done:
		took := time.Since(start)
		if err != nil {
			t.Fatalf("ServeStream = %v, want nil", err)
		}
		if took < atLeast || took > atMost {
			t.Errorf("returned after %v, want %v..%v", took, atLeast, atMost)
		}
	case <-time.After(5 * idle):
		t.Fatal("ServeStream did not return")
	}
	if n := cc.reads.Load(); n > maxReads {
		t.Errorf("%d reads, want at most %d", n, maxReads)
	}
	if evs := sess.Events(); len(evs) != 0 {
		t.Errorf("events for an incomplete request: %+v", evs)
	}
}

// connPair returns a connected client and server: a net.Pipe, or TCP on loopback.
func connPair(t *testing.T, transport string) (client, server net.Conn) {
	t.Helper()
	if transport == "pipe" {
		client, server = net.Pipe()
		return client, server
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return client, server
}

// A peer that sends requests but never reads the answers cannot hold the session.
func TestWriteDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 200 * time.Millisecond
	h := newTestHandler(t, cfg)
	p := startPipe(t, context.Background(), h)
	p.send(t, hx("00 01 00 00 00 06 01 03 00 00 00 01"))
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("ServeStream: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ServeStream blocked on a peer that does not read")
	}
}

func TestSessionLimits(t *testing.T) {
	req := hx("00 01 00 00 00 06 01 03 00 00 00 01")
	t.Run("max requests", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxRequests = 3
		h := newTestHandler(t, cfg)
		p := startPipe(t, context.Background(), h)
		for i := range 3 {
			p.send(t, req)
			if p.readFrame(t, time.Second) == nil {
				t.Fatalf("request %d not answered", i)
			}
		}
		p.send(t, req)
		if err := <-p.done; !errors.Is(err, ErrSessionLimit) {
			t.Fatalf("ServeStream = %v, want ErrSessionLimit", err)
		}
		if n := len(p.sess.Events()); n != 3 {
			t.Fatalf("%d events, want 3", n)
		}
	})
	t.Run("max bytes", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxBytes = 300 // 25 requests
		h := newTestHandler(t, cfg)
		p := startPipe(t, context.Background(), h)
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			for p.readFrame(t, 2*time.Second) != nil {
			}
		}()
		defer func() { p.Close(); <-drained }()
		sent := 0
		for sent < 1000 {
			p.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := p.Write(req); err != nil {
				break
			}
			sent += len(req)
		}
		if err := <-p.done; !errors.Is(err, ErrSessionLimit) {
			t.Fatalf("ServeStream = %v, want ErrSessionLimit", err)
		}
		if n := len(p.sess.Events()); n != 25 {
			t.Fatalf("%d events, want 25", n)
		}
	})
}

// Writes live in the Handler: a later session sees them; values move with the clock.
func TestStateAcrossSessionsAndTime(t *testing.T) {
	var now atomic.Int64
	now.Store(testNow.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	cfg := NewConfig() // the default map
	h, err := New(testEnv(t, clock), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := protocoltest.ServeTCP(t, "", h)
	call := func(req string) []byte {
		t.Helper()
		c, err := net.Dial("tcp", srv.Addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(hx(req)); err != nil {
			t.Fatal(err)
		}
		resp, err := readADU(c)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	reg := func(resp []byte, i int) uint16 { return uint16(resp[9+2*i])<<8 | uint16(resp[10+2*i]) }

	// tank_level (IR 0): 612 + 164 sin(2π t / 97 min).
	r1 := call("00 01 00 00 00 06 01 04 00 00 00 01")
	r1again := call("00 01 00 00 00 06 01 04 00 00 00 01")
	if !bytes.Equal(r1, r1again) {
		t.Errorf("same instant, different values: % x / % x", r1, r1again)
	}
	wantLevel := uint16(math.Round(612 + 164*math.Sin(2*math.Pi*1000/(97*60))))
	if got := reg(r1, 0); got != wantLevel {
		t.Errorf("tank_level = %d, want %d", got, wantLevel)
	}
	now.Add(int64(10 * time.Minute))
	if r2 := call("00 01 00 00 00 06 01 04 00 00 00 01"); reg(r2, 0) == reg(r1, 0) {
		t.Errorf("tank_level did not move in 10 minutes: %d", reg(r2, 0))
	}

	// heartbeat (HR 9) counts seconds since boot; a write pins it.
	if got := reg(call("00 01 00 00 00 06 01 03 00 09 00 01"), 0); got != 1600 {
		t.Errorf("heartbeat = %d, want 1600", got)
	}
	call("00 02 00 00 00 06 01 06 00 09 00 2a")
	now.Add(int64(time.Minute))
	if got := reg(call("00 03 00 00 00 06 01 03 00 09 00 01"), 0); got != 42 {
		t.Errorf("heartbeat after write = %d, want 42 (written, in a later session)", got)
	}
	// FC 16 in one session, FC 3 in another.
	call("00 04 00 00 00 0b 01 10 00 00 00 02 04 00 7b 01 c8")
	if got := call("00 05 00 00 00 06 01 03 00 00 00 02"); !bytes.Equal(got, hx("00 05 00 00 00 07 01 03 04 00 7b 01 c8")) {
		t.Errorf("read after write in another session: % x", got)
	}
	if errs := srv.Errors(); len(errs) != 0 {
		t.Errorf("handler errors: %v", errs)
	}
}

func TestDiagnosticCountersWithPollRate(t *testing.T) {
	var now atomic.Int64
	now.Store(testNow.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	cfg := testConfig()
	cfg.PollRate = 2
	h, err := New(testEnv(t, clock), cfg)
	if err != nil {
		t.Fatal(err)
	}
	count := func(sub byte) uint16 {
		resp, _, _ := h.Process(1, []byte{0x08, 0x00, sub, 0x00, 0x00}, nil)
		return uint16(resp[3])<<8 | uint16(resp[4])
	}
	// 1000 s since boot at 2 requests/s, plus this request.
	if got := count(0x0b); got != 2001 {
		t.Errorf("bus message count = %d, want 2001", got)
	}
	if got := count(0x0e); got != 2002 {
		t.Errorf("server message count = %d, want 2002", got)
	}
	h.Process(1, []byte{0x08, 0x00, 0x0a, 0x00, 0x00}, nil) // clear
	now.Add(int64(5 * time.Second))
	if got := count(0x0b); got != 11 {
		t.Errorf("bus message count 5 s after clear = %d, want 11", got)
	}
	if got := count(0x0c); got != 0 {
		t.Errorf("comm error count = %d", got)
	}
}

func TestMoreFollows(t *testing.T) {
	id := testIdentity()
	id.Vendor = strings.Repeat("V", 80)
	id.Product = strings.Repeat("P", 90)
	id.Model = strings.Repeat("M", 100)
	id.ModuleName = strings.Repeat("U", 244)
	env := testEnv(t, func() time.Time { return testNow })
	env.Identity = id
	cfg := testConfig()
	cfg.ExtendedObjects = []ExtendedObject{{ID: 0x90, Value: strings.Repeat("X", 200)}}
	h, err := New(env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[byte]int{}
	next := byte(0)
	for i := 0; ; i++ {
		if i > 10 {
			t.Fatal("more follows never ends")
		}
		resp, ev, _ := h.Process(1, []byte{0x2b, 0x0e, 0x03, next}, nil)
		if len(resp) > MaxPDULen {
			t.Fatalf("response PDU of %d bytes", len(resp))
		}
		r, err := ParseDeviceIDResponse(resp)
		if err != nil {
			t.Fatalf("response % x: %v", resp, err)
		}
		if r.Conformity != 0x83 || len(r.Objects) == 0 || ev.Quantity != len(r.Objects) {
			t.Fatalf("response %+v", r)
		}
		for _, o := range r.Objects {
			seen[o.ID]++
		}
		if !r.MoreFollows {
			if r.NextObject != 0 {
				t.Errorf("next object 0x%02x without more follows", r.NextObject)
			}
			break
		}
		if r.NextObject <= r.Objects[len(r.Objects)-1].ID {
			t.Fatalf("next object 0x%02x does not advance", r.NextObject)
		}
		next = r.NextObject
	}
	for _, want := range []byte{0, 1, 2, 3, 4, 5, 6, 0x90} {
		if seen[want] != 1 {
			t.Errorf("object 0x%02x seen %d times", want, seen[want])
		}
	}
	// Basic stops at object 2 even though more objects exist.
	resp, _, _ := h.Process(1, []byte{0x2b, 0x0e, 0x01, 0x00}, nil)
	if r, err := ParseDeviceIDResponse(resp); err != nil || r.MoreFollows || len(r.Objects) != 3 {
		t.Errorf("basic: %+v %v", r, err)
	}
	// Individual access to the longest object fits one response.
	resp, _, _ = h.Process(1, []byte{0x2b, 0x0e, 0x04, 0x06}, nil)
	if r, err := ParseDeviceIDResponse(resp); err != nil || len(r.Objects) != 1 || len(r.Objects[0].Value) != 244 {
		t.Errorf("individual: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"unknown units", func(c *Config) { c.UnknownUnits = "maybe" }, `unknown_units "maybe"`},
		{"no unit", func(c *Config) {
			c.UnknownUnits = Ignore
			c.UnitIDs = nil
			c.AcceptUnit0, c.AcceptUnit255 = false, false
		}, "no unit is served"},
		{"idle timeout", func(c *Config) { c.IdleTimeout = 0 }, "idle_timeout"},
		{"max requests", func(c *Config) { c.MaxRequests = 0 }, "max_requests"},
		{"max bytes", func(c *Config) { c.MaxBytes = 10 }, "max_bytes"},
		{"poll rate", func(c *Config) { c.PollRate = -1 }, "poll_rate"},
		{"server id data", func(c *Config) { c.ServerIDData = strings.Repeat("x", 250) }, "server_id_data"},
		{"extended id", func(c *Config) { c.ExtendedObjects = []ExtendedObject{{ID: 0x10, Value: "x"}} }, "0x80-0xFF"},
		{"extended twice", func(c *Config) { c.ExtendedObjects = []ExtendedObject{{ID: 0x80}, {ID: 0x80}} }, "twice"},
		{"overlap", func(c *Config) {
			c.HoldingRegisters = []Block{{Name: "a", Address: 0, Count: 10}, {Name: "b", Address: 9, Count: 1}}
		}, `block "b" (address 9) overlaps block "a"`},
		{"32-bit overlap", func(c *Config) {
			c.InputRegisters = []Block{{Name: "f", Address: 0, Count: 2, Type: Float32}, {Name: "g", Address: 3, Count: 1}}
		}, "overlaps"},
		{"past 65535", func(c *Config) { c.Coils = []Block{{Address: 65535, Count: 2}} }, "runs past 65535"},
		{"count 0", func(c *Config) { c.Coils = []Block{{Address: 1}} }, "count 0"},
		{"too many values", func(c *Config) { c.Coils = []Block{{Count: 1, Values: []float64{1, 0}}} }, "2 values for 1 points"},
		{"bad type", func(c *Config) { c.InputRegisters = []Block{{Count: 1, Type: "float64"}} }, `type "float64"`},
		{"type on coils", func(c *Config) { c.Coils = []Block{{Count: 1, Type: Int16}} }, "coils have no value type"},
		{"word order", func(c *Config) { c.HoldingRegisters = []Block{{Count: 1, Type: Uint32, WordOrder: "middle"}} }, `word_order "middle"`},
		{"sine on coils", func(c *Config) {
			c.Coils = []Block{{Count: 1, Behavior: &Behavior{Kind: Sine, Period: time.Second}}}
		}, "coils only take square"},
		{"no period", func(c *Config) {
			c.InputRegisters = []Block{{Count: 1, Behavior: &Behavior{Kind: Noise, Amplitude: 3}}}
		}, "positive period"},
		{"counter without rate", func(c *Config) {
			c.InputRegisters = []Block{{Count: 1, Behavior: &Behavior{Kind: Counter}}}
		}, "non-zero rate"},
		{"duty", func(c *Config) {
			c.Coils = []Block{{Count: 1, Behavior: &Behavior{Kind: Square, Period: time.Second, Duty: 1.5}}}
		}, "duty 1.5"},
		{"unknown kind", func(c *Config) {
			c.InputRegisters = []Block{{Count: 1, Behavior: &Behavior{Kind: "random", Period: time.Second}}}
		}, `kind "random"`},
		{"nan value", func(c *Config) { c.InputRegisters = []Block{{Count: 1, Values: []float64{math.NaN()}}} }, "not a finite number"},
		{"no function code", func(c *Config) { c.FunctionCodes = []uint8{} }, "function_codes: the device implements no function code"},
		{"function code not emulated", func(c *Config) { c.FunctionCodes = []uint8{3, 11} }, "function_codes: 11 is not emulated"},
		{"function code twice", func(c *Config) { c.FunctionCodes = []uint8{3, 16, 3} }, "function_codes: 3 twice"},
		{"sub-function not emulated", func(c *Config) { c.DiagnosticSubFunctions = []uint16{0, 4} }, "diagnostic_sub_functions: 4 is not emulated"},
		{"sub-function twice", func(c *Config) { c.DiagnosticSubFunctions = []uint16{10, 10} }, "diagnostic_sub_functions: 10 twice"},
		{"server id without fc17", func(c *Config) { c.FunctionCodes = []uint8{3}; c.ServerIDData = "x" }, "function code 17 is not in function_codes"},
		{"extended objects without fc43", func(c *Config) {
			c.FunctionCodes = []uint8{3, 17}
			c.ExtendedObjects = []ExtendedObject{{ID: 0x80, Value: "x"}}
		}, "function code 43 is not in function_codes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewConfig()
			tc.modify(cfg)
			_, err := New(testEnv(t, time.Now), cfg)
			if err == nil || !errors.Is(err, protocols.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want ErrConfig containing %q", err, tc.want)
			}
		})
	}
	t.Run("no identity", func(t *testing.T) {
		env := testEnv(t, time.Now)
		env.Identity = nil
		if _, err := New(env, NewConfig()); !errors.Is(err, protocols.ErrConfig) {
			t.Fatalf("New = %v", err)
		}
	})
	t.Run("wrong config type", func(t *testing.T) {
		if _, err := Spec().New(testEnv(t, time.Now), struct{}{}); !errors.Is(err, protocols.ErrConfig) {
			t.Fatalf("Spec().New = %v", err)
		}
	})
}

func TestSpec(t *testing.T) {
	if _, ok := Spec().NewConfig().(*Config); !ok {
		t.Fatalf("NewConfig returns %T", Spec().NewConfig())
	}
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "modbus", Transport: protocols.TCP, Port: 502, Service: "mbap"},
		testEnv(t, time.Now))
}

func TestDefaultMap(t *testing.T) {
	h := newTestHandler(t, NewConfig())
	// Every default block reads without an exception, in one request per block.
	for area, blocks := range h.regs.areas {
		for _, b := range blocks {
			fc, max := FuncReadHoldingRegisters, MaxReadRegisters
			switch area {
			case Coils:
				fc, max = FuncReadCoils, MaxReadBits
			case DiscreteInputs:
				fc, max = FuncReadDiscreteInputs, MaxReadBits
			case InputRegisters:
				fc = FuncReadInputRegisters
			}
			qty := min(b.end-b.start, max)
			req := AppendRange(nil, fc, Range{uint16(b.start), uint16(qty)})
			resp, ev, _ := h.Process(1, req, nil)
			if ev.Exception != 0 || resp[0] != fc {
				t.Errorf("%s %s: % x", area, b.name, resp)
			}
			if ev.Detail["points"] != b.name {
				t.Errorf("%s %s: points %q", area, b.name, ev.Detail["points"])
			}
		}
	}
	// The default answer to nmap's first probe names the persona.
	resp, _, _ := h.Process(1, []byte{FuncReportServerID}, nil)
	if !bytes.Contains(resp, []byte("Modicon M340 BMX P34 2020 v3.20")) || resp[3] != runIndicatorOn {
		t.Errorf("report server id % x", resp)
	}
}

// TestFunctionCodes sends one valid request of every function code the emulator
// supports to a device that implements all of them, and to devices that lack that
// one code: the first answers it, the others answer exactly what an unknown code
// (FC 7) gets.
func TestFunctionCodes(t *testing.T) {
	valid := map[uint8]string{
		1: "01 00 00 00 08", 2: "02 00 00 00 08", 3: "03 00 00 00 01", 4: "04 00 00 00 01",
		5: "05 00 00 ff 00", 6: "06 00 00 00 07", 8: "08 00 00 12 34", 15: "0f 00 00 00 03 01 05",
		16: "10 00 00 00 01 02 00 07", 17: "11", 22: "16 00 00 00 f2 00 25",
		23: "17 00 00 00 01 00 00 00 01 02 00 01", 43: "2b 0e 01 00",
	}
	if len(valid) != len(Supported()) {
		t.Fatalf("this test has requests for %d codes, the emulator supports %v", len(valid), Supported())
	}
	unknown := func(h *Handler, fc byte) []byte {
		resp, _, _ := h.Process(1, []byte{fc}, nil)
		return resp
	}
	for _, fc := range Supported() {
		req := hx(valid[fc])
		all := newTestHandler(t, testConfig())
		resp, ev, _ := all.Process(1, req, nil)
		if len(resp) == 0 || resp[0] != fc || ev.Exception != 0 {
			t.Errorf("FC %d on the default device: % x (exception %d)", fc, resp, ev.Exception)
		}
		cfg := testConfig()
		cfg.FunctionCodes = slices.DeleteFunc(Supported(), func(c uint8) bool { return c == fc })
		without := newTestHandler(t, cfg)
		resp, ev, _ = without.Process(1, req, nil)
		want := AppendException(nil, fc, IllegalFunction)
		if !bytes.Equal(resp, want) || ev.Exception != 1 || ev.Detail["function"] != "not_implemented" {
			t.Errorf("FC %d on a device without it: % x, event %+v; want % x", fc, resp, ev, want)
		}
		// The same bytes as FC 7, which nobody implements, with its own code.
		if u := unknown(without, 7); !bytes.Equal(resp[1:], u[1:]) || u[0] != 0x87 {
			t.Errorf("FC %d refused as % x, FC 7 as % x", fc, resp, u)
		}
	}
	// Function codes outside the emulator's set answer 01 whatever the list says.
	h := newTestHandler(t, testConfig())
	for fc := 0; fc < 0x80; fc++ {
		if slices.Contains(Supported(), uint8(fc)) {
			continue
		}
		if resp := unknown(h, byte(fc)); !bytes.Equal(resp, AppendException(nil, byte(fc), IllegalFunction)) {
			t.Errorf("FC %d: % x", fc, resp)
		}
	}
}
