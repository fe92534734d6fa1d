package guardian

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// testNow is the fixed clock of the byte-level tests: 07:12 UTC, when the daily
// temperature swing of the model is zero, so temperatures are the configured ones.
var testNow = time.Date(2026, 3, 2, 7, 12, 0, 0, time.UTC)

func testIdentity() *protocols.Identity {
	return &protocols.Identity{
		Vendor:     "Veeder-Root",
		Product:    "TLS-350",
		Serial:     "350R-118202",
		ModuleName: "Lakeside Express 41",
		Location:   "2207 Shore Dr",
	}
}

// testConfig is a two-tank station whose values the byte-level cases spell out: at
// testNow (= boot) tank 1 is exactly half full, so its height is half the diameter.
func testConfig() *Config {
	cfg := NewConfig()
	cfg.TimeZone = "UTC"
	cfg.StationHeader = []string{"LAKESIDE EXPRESS 41", "2207 SHORE DR"}
	cfg.Shifts = []string{"00:00"}
	cfg.CommandTimeout = 50 * time.Millisecond
	cfg.IdleTimeout = 2 * time.Second
	cfg.Tanks = []Tank{
		{Product: "REGULAR UNLEADED", Capacity: 10000, Diameter: 96, Fill: 0.5, Reorder: 0.2, Level: 0.5, Usage: 100, Temperature: 60},
		{Product: "DIESEL", ProductCode: "D", Capacity: 8000, Diameter: 92, Fill: 0.9, Reorder: 0.25, Level: 0.25, Usage: 40, Temperature: 55, Alarms: []string{"HIGH WATER WARNING"}},
	}
	return cfg
}

func testEnv(t testing.TB, now func() time.Time) protocols.Env {
	env := protocoltest.Env(t, testIdentity())
	env.Boot = testNow
	env.Now = now
	return env
}

func newTestHandler(t testing.TB, cfg *Config, now func() time.Time) *Handler {
	t.Helper()
	if now == nil {
		now = func() time.Time { return testNow }
	}
	h, err := New(testEnv(t, now), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

func newSession(t testing.TB) *protocoltest.Session {
	return protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:10001"), netip.MustParseAddrPort("127.0.0.1:40000"))
}

// ask serves the raw input through the handler's command framing and returns the
// bytes answered, as ServeStream does for input that arrives in one piece and is
// followed by a pause.
func ask(t *testing.T, h *Handler, s protocols.Session, in string) string {
	t.Helper()
	c := &conversation{h: h, s: s}
	out, rest, err := c.drain(nil, []byte(in), true)
	c.flushNoise()
	if err != nil || len(rest) != 0 {
		t.Fatalf("drain %q: rest %q, %v", in, rest, err)
	}
	return string(out)
}

func display(lines ...string) string {
	return string(AppendDisplay(nil, lines))
}

const testHeader = "MAR 2, 2026  7:12 AM"

func TestReports(t *testing.T) {
	h := newTestHandler(t, testConfig(), nil)
	station := []string{"", "LAKESIDE EXPRESS 41", "2207 SHORE DR", "", ""}
	head := func(code string) []string { return append([]string{code, testHeader}, station...) }
	// Tank 2 is at its reorder level: 2000 gallons, TC volume at 55 °F with the
	// diesel coefficient.
	tc2 := 2000 * (1 - expansionDiesel*(55-60))
	h2 := 92 * cylinderHeight(0.25)
	cases := []struct {
		name, in, want string
	}{
		{"inventory", "\x01I20100\r\n", display(append(head("I20100"), "IN-TANK INVENTORY", "",
			"TANK PRODUCT             VOLUME TC VOLUME   ULLAGE   HEIGHT    WATER     TEMP",
			"  1  REGULAR UNLEADED      5000      5000     5000    48.00     0.00    60.00",
			fmt.Sprintf("  2  DIESEL                2000%10.0f     6000%9.2f     0.00    55.00", tc2, h2))...)},
		{"inventory one tank", "\x01I20101\n", display(append(head("I20101"), "IN-TANK INVENTORY", "",
			"TANK PRODUCT             VOLUME TC VOLUME   ULLAGE   HEIGHT    WATER     TEMP",
			"  1  REGULAR UNLEADED      5000      5000     5000    48.00     0.00    60.00")...)},
		{"inventory without terminator", "\x01I20102", display(append(head("I20102"), "IN-TANK INVENTORY", "",
			"TANK PRODUCT             VOLUME TC VOLUME   ULLAGE   HEIGHT    WATER     TEMP",
			fmt.Sprintf("  2  DIESEL                2000%10.0f     6000%9.2f     0.00    55.00", tc2, h2))...)},
		{"inventory of a tank that is not there", "\x01I20109\r\n", display(append(head("I20109"), "IN-TANK INVENTORY", "",
			"TANK PRODUCT             VOLUME TC VOLUME   ULLAGE   HEIGHT    WATER     TEMP")...)},
		{"leak", "\x01I20300\r\n", display(append(head("I20300"),
			"TANK 1    REGULAR UNLEADED", "    TEST STATUS: OFF", "LEAK DATA NOT AVAILABLE ON THIS TANK", "",
			"TANK 2    DIESEL", "    TEST STATUS: OFF", "LEAK DATA NOT AVAILABLE ON THIS TANK", "")...)},
		{"status", "\x01I20500\r\n", display(append(head("I20500"), "TANK   PRODUCT                 STATUS", "",
			"  1    REGULAR UNLEADED        NORMAL", "",
			"  2    DIESEL                  HIGH WATER WARNING",
			"                               DELIVERY NEEDED", "")...)},
		{"labels", "\x01I60200\r\n", display(append(head("I60200"), "PRODUCT LABEL", "", "TANK PRODUCT LABEL",
			"  1  REGULAR UNLEADED", "  2  DIESEL")...)},
		{"status computer", "\x01i20500\r\n", string(AppendComputer(nil, []byte("i205002603020712"+"0100"+"02021011")))},
		{"unknown function", "\x01I10100\r\n", "\x019999FF1B\x03"},
		{"unknown set", "\x01S50100\r\n", "\x019999FF1B\x03"},
		{"computer label report has no computer format", "\x01i60200\r\n", "\x019999FF1B\x03"},
		{"conpot's short set command", "\x01S6020\r\n", "\x019999FF1B\x03"},
		{"bad type letter", "\x01X20100\r\n", "\x019999FF1B\x03"},
		{"bad device number", "\x01I201AB\r\n", "\x019999FF1B\x03"},
		{"set on a tank that is not there", "\x01S60207ADMIX\r\n", "\x019999FF1B\x03"},
		{"no SOH is not answered", "I20100\r\n", ""},
		{"line ends between commands", "\r\n\r\n\x01I10100\r\n\r\n", "\x019999FF1B\x03"},
		{"two commands in one segment", "\x01I10100\x01I99900\r\n", "\x019999FF1B\x03\x019999FF1B\x03"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ask(t, h, newSession(t), tc.in)
			if got != tc.want {
				t.Errorf("answer to %q:\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestComputerInventory(t *testing.T) {
	h := newTestHandler(t, testConfig(), nil)
	got := []byte(ask(t, h, newSession(t), "\x01i20100\r\n"))
	if !VerifyChecksum(got) {
		t.Fatalf("checksum of %q does not verify", got)
	}
	body := got[1 : len(got)-7]
	want := "i201002603020712"
	if !bytes.HasPrefix(body, []byte(want)) {
		t.Fatalf("body %q, want prefix %q", body, want)
	}
	rec := body[len(want):]
	// Two records: TT p ssss NN and seven floats each.
	const recLen = 2 + 1 + 4 + 2 + 7*8
	if len(rec) != 2*recLen {
		t.Fatalf("records %q: %d bytes, want %d", rec, len(rec), 2*recLen)
	}
	for i, head := range []string{"0110000" + "07", "02D0000" + "07"} {
		r := rec[i*recLen : (i+1)*recLen]
		if string(r[:9]) != head {
			t.Errorf("tank %d record head %q, want %q", i+1, r[:9], head)
		}
	}
	var vals []float64
	for i := 0; i < 7; i++ {
		v, err := ParseFloat(rec[9+8*i : 17+8*i])
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, v)
	}
	for i, want := range []float64{5000, 5000, 5000, 48, 0, 60, 0} {
		if math.Abs(vals[i]-want) > 0.01 {
			t.Errorf("tank 1 field %d = %v, want %v", i+1, vals[i], want)
		}
	}
}

func TestComputerShift(t *testing.T) {
	// One shift a day at midnight; at 07:12 on day 2 the last completed shift ran from
	// day 0 00:00 to day 1 00:00 (boot is at testNow on day 0... so use a later clock).
	now := testNow.Add(48 * time.Hour)
	h := newTestHandler(t, testConfig(), func() time.Time { return now })
	got := []byte(ask(t, h, newSession(t), "\x01i20401\r\n"))
	if !VerifyChecksum(got) {
		t.Fatalf("checksum of %q does not verify", got)
	}
	body := got[1 : len(got)-7]
	prefix := "i204012603040712" + "01" + "1" + "01" + "0D"
	if !strings.HasPrefix(string(body), prefix) || len(body) != len(prefix)+13*8 {
		t.Fatalf("body %q, want %q and 13 floats", body, prefix)
	}
	f := func(i int) float64 {
		v, err := ParseFloat(body[len(prefix)+8*i : len(prefix)+8*i+8])
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	start, end, total := f(0), f(6), f(12)
	// The shift ran a whole day; tank 1 sells 100 gal/h.
	if math.Abs(total-2400) > 0.5 {
		t.Errorf("shift total %v, want 2400", total)
	}
	m := h.tanks[0]
	shiftStart := time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)
	if math.Abs(start-m.at(shiftStart).Volume) > 0.5 || math.Abs(end-m.at(shiftStart.Add(24*time.Hour)).Volume) > 0.5 {
		t.Errorf("start %v end %v, want the model's volumes", start, end)
	}
}

func TestDeliveryReport(t *testing.T) {
	h := newTestHandler(t, testConfig(), nil)
	got := ask(t, h, newSession(t), "\x01I20201\r\n")
	// Tank 1 was full (its fill level) at boot = now: its last delivery ended now.
	for _, want := range []string{
		"\x01\r\nI20201\r\n" + testHeader + "\r\n\r\nLAKESIDE EXPRESS 41\r\n2207 SHORE DR\r\n\r\n\r\nDELIVERY REPORT\r\n\r\nT 1:REGULAR UNLEADED\r\n",
		"INCREASE   DATE / TIME            GALLONS TC GALLONS  WATER TEMP DEG F   HEIGHT\r\n",
		"      END: MAR 2, 2026  7:12 AM      5000       5000   0.00      60.00    48.00\r\n",
		"    START: MAR 2, 2026  6:44 AM      2000       2000   0.00",
		"   AMOUNT:                           3000       3000\r\n",
		"      END: MAR 1, 2026 12:44 AM      5000",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("delivery report lacks %q:\n%s", want, got)
		}
	}
	if !strings.HasSuffix(got, "\r\n\r\n\x03") {
		t.Errorf("report does not end with a blank line and ETX: %q", got)
	}
}

func TestShiftReport(t *testing.T) {
	now := testNow.Add(30 * time.Hour) // day 1, 13:12
	cfg := testConfig()
	cfg.Shifts = []string{"14:00", "06:00"}
	h := newTestHandler(t, cfg, func() time.Time { return now })
	got := ask(t, h, newSession(t), "\x01I20401\r\n")
	// The last completed shift is shift 2 (06:00 sorts first: shift 1 06:00, shift 2
	// 14:00): day 0 14:00 to day 1 06:00, 16 hours at 100 gal/h.
	for _, want := range []string{
		"SHIFT REPORT\r\n\r\nSHIFT 2 TIME: 2:00 PM\r\n\r\nTANK PRODUCT\r\n\r\n",
		"  1  REGULAR UNLEADED        VOLUME TC VOLUME  ULLAGE  HEIGHT  WATER   TEMP\r\n",
		"SHIFT  2 STARTING VALUES ",
		"         ENDING VALUES   ",
		"         DELIVERY VALUE           0\r\n",
		"         TOTALS                1600\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("shift report lacks %q:\n%s", want, got)
		}
	}
}

func TestSetLabel(t *testing.T) {
	h := newTestHandler(t, testConfig(), nil)
	sess := newSession(t)
	got := ask(t, h, sess, "\x01S60202BIODIESEL B20\r\n")
	want := display("I60202", testHeader, "", "LAKESIDE EXPRESS 41", "2207 SHORE DR", "", "", "PRODUCT LABEL", "", "TANK PRODUCT LABEL", "  2  BIODIESEL B20")
	if got != want {
		t.Fatalf("set answer\n got %q\nwant %q", got, want)
	}
	// The label is device state: another session sees it in the inventory.
	inv := ask(t, h, newSession(t), "\x01I20100\r\n")
	if !strings.Contains(inv, "  2  BIODIESEL B20         2000") {
		t.Errorf("inventory after set:\n%s", inv)
	}
	// S60200 sets every tank; labels are cut to 20 characters, control bytes blanked.
	ask(t, h, sess, "\x01S60200ALL\x7fTANKS LABEL IS VERY LONG\r\n")
	labels := ask(t, h, newSession(t), "\x01I60200")
	if !strings.Contains(labels, "  1  ALL TANKS LABEL IS V\r\n  2  ALL TANKS LABEL IS V\r\n") {
		t.Errorf("labels after S60200:\n%q", labels)
	}
	evs := sess.Events()
	if len(evs) != 2 || evs[0].Op != "set_product_label" || !evs[0].Write || evs[0].Detail["label"] != "BIODIESEL B20" ||
		string(evs[0].Data) != "BIODIESEL B20" || evs[0].Address != 2 || evs[0].Code != 602 {
		t.Errorf("events %+v", evs)
	}
}

func TestSecurityCode(t *testing.T) {
	cfg := testConfig()
	cfg.SecurityCode = "A1B2C3"
	h := newTestHandler(t, cfg, nil)
	sess := newSession(t)
	if got := ask(t, h, sess, "\x01I20500\r\n"); got != "" {
		t.Errorf("answered a command without the security code: %q", got)
	}
	if got := ask(t, h, sess, "\x01A1B2C3I10100\r\n"); got != "\x019999FF1B\x03" {
		t.Errorf("unknown command with the code: %q", got)
	}
	if got := ask(t, h, sess, "\x01A1B2C3I20501"); !strings.HasPrefix(got, "\x01\r\nI20501\r\n") {
		t.Errorf("inquiry with the code, no terminator: %q", got)
	}
	evs := sess.Events()
	if len(evs) != 3 || evs[0].Op != "security_code_mismatch" || evs[1].Op != "unknown_command" || evs[2].Op != "status_report" {
		t.Errorf("events %+v", evs)
	}
}

func TestEvents(t *testing.T) {
	h := newTestHandler(t, testConfig(), nil)
	sess := newSession(t)
	ask(t, h, sess, "hello\r\n\x01I20100\r\n\x01i20501\r\n\x01I10100\r\n\x01S6020\r\nGET / HTTP/1.0\r\n\r\n")
	want := []struct {
		op     string
		code   int
		addr   int
		qty    int
		format string
		exc    int
	}{
		{"ignored_input", 0, 0, 0, "", 0},
		{"inventory_report", 201, 0, 2, "display", 0},
		{"status_report", 205, 1, 1, "computer", 0},
		{"unknown_command", 101, 0, 2, "display", 9999},
		{"malformed_command", 0, 0, 0, "", 9999},
		{"ignored_input", 0, 0, 0, "", 0},
	}
	evs := sess.Events()
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, w := range want {
		e := evs[i]
		if e.Op != w.op || e.Code != w.code || e.Address != w.addr || e.Quantity != w.qty || e.Detail["format"] != w.format ||
			e.Exception != w.exc || e.Protocol != "guardian_ast" || e.Unit != -1 || !e.Time.Equal(testNow) {
			t.Errorf("event %d = %+v, want %+v", i, e, w)
		}
	}
	if string(evs[0].Data) != "hello" || evs[0].Detail["size"] != "5" {
		t.Errorf("noise event %+v", evs[0])
	}
	if string(evs[5].Data) != "GET / HTTP/1.0" {
		t.Errorf("trailing noise event data %q", evs[5].Data)
	}
	if string(evs[4].Data) != "S6020" {
		t.Errorf("malformed event data %q", evs[4].Data)
	}
}

func TestSplitCommand(t *testing.T) {
	cases := []struct {
		name     string
		in       string
		sec      int
		final    bool
		cmd      string
		consumed int
		complete bool
	}{
		{"CRLF", "\x01I20100\r\n", 0, false, "\x01I20100", 7, true},
		{"inquiry ends with its function code", "\x01I20100", 0, false, "\x01I20100", 7, true},
		{"inquiry followed by line end", "\x01I20100\n\x01", 0, false, "\x01I20100", 7, true},
		{"partial function code", "\x01I201", 0, false, "", 0, false},
		{"partial function code, final", "\x01I201", 0, true, "\x01I201", 5, true},
		{"set waits for its data", "\x01S60201UNLEAD", 0, false, "", 0, false},
		{"set, final", "\x01S60201UNLEAD", 0, true, "\x01S60201UNLEAD", 13, true},
		{"set with ETX", "\x01S60201UNLEAD\x03rest", 0, false, "\x01S60201UNLEAD", 14, true},
		{"next SOH ends a command", "\x01S60201A\x01I20100", 0, false, "\x01S60201A", 8, true},
		{"unknown inquiry waits", "\x01I10100", 0, false, "", 0, false},
		{"security code", "\x01123456I20100", 6, false, "\x01123456I20100", 13, true},
		{"security code not yet complete", "\x01123456I201", 6, false, "", 0, false},
		{"not at SOH", "I20100", 0, true, "", 0, false},
		{"empty", "", 0, true, "", 0, false},
		{"too long", "\x01S60201" + strings.Repeat("x", 200), 0, false, "\x01S60201" + strings.Repeat("x", MaxCommandLen-7), MaxCommandLen, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd, n, ok := SplitCommand([]byte(tc.in), tc.sec, tc.final)
			if string(cmd) != tc.cmd || n != tc.consumed || ok != tc.complete {
				t.Errorf("SplitCommand(%q) = %q, %d, %v; want %q, %d, %v", tc.in, cmd, n, ok, tc.cmd, tc.consumed, tc.complete)
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	cases := []struct {
		in   string
		sec  int
		want Command
		err  error
	}{
		{"\x01I20100", 0, Command{Type: 'I', Function: "201", Device: 0, Data: []byte{}}, nil},
		{"\x01i20512", 0, Command{Type: 'i', Function: "205", Device: 12, Data: []byte{}}, nil},
		{"\x01S60203PREMIUM", 0, Command{Type: 'S', Function: "602", Device: 3, Data: []byte("PREMIUM")}, nil},
		{"\x01IA3001", 0, Command{Type: 'I', Function: "A30", Device: 1, Data: []byte{}}, nil},
		{"\x01SECRETI20100", 6, Command{Security: "SECRET", Type: 'I', Function: "201", Data: []byte{}}, nil},
		{"\x01I2010", 0, Command{}, ErrShortCommand},
		{"\x01", 0, Command{}, ErrShortCommand},
		{"", 0, Command{}, ErrShortCommand},
		{"I20100", 0, Command{}, ErrShortCommand},
		{"\x01X20100", 0, Command{}, ErrBadFunction},
		{"\x01I2-100", 0, Command{}, ErrBadFunction},
		{"\x01I2010A", 0, Command{}, ErrBadFunction},
		{"\x01" + strings.Repeat("I", MaxCommandLen), 0, Command{}, ErrCommandLength},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			got, err := ParseCommand([]byte(tc.in), tc.sec)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if got.Security != tc.want.Security || got.Type != tc.want.Type || got.Function != tc.want.Function ||
				got.Device != tc.want.Device || !bytes.Equal(got.Data, tc.want.Data) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestChecksum(t *testing.T) {
	// The manual's example: FF1B is the checksum of "<SOH>9999".
	if got := Checksum([]byte("\x019999")); got != 0xFF1B {
		t.Errorf("checksum = %04X, want FF1B", got)
	}
	msg := AppendComputer(nil, []byte("i2050026030207120100"))
	if string(msg) != "\x01i2050026030207120100&&"+fmt.Sprintf("%04X", Checksum([]byte("\x01i2050026030207120100&&")))+"\x03" {
		t.Errorf("computer message %q", msg)
	}
	if !VerifyChecksum(msg) {
		t.Errorf("%q does not verify", msg)
	}
	bad := bytes.Clone(msg)
	bad[3]++
	for _, m := range [][]byte{bad, msg[:len(msg)-1], []byte("\x01&&0000\x03"), NotUnderstood} {
		if VerifyChecksum(m) && !bytes.Equal(m, []byte("\x01&&0000\x03")) {
			t.Errorf("%q verifies", m)
		}
	}
}

func TestFloat(t *testing.T) {
	cases := []struct {
		v   float64
		hex string
	}{
		{1, "3F800000"}, {0, "00000000"}, {-2, "C0000000"}, {5000, "459C4000"}, {60, "42700000"},
	}
	for _, tc := range cases {
		if got := string(AppendFloat(nil, tc.v)); got != tc.hex {
			t.Errorf("AppendFloat(%v) = %s, want %s", tc.v, got, tc.hex)
		}
		if v, err := ParseFloat([]byte(tc.hex)); err != nil || v != tc.v {
			t.Errorf("ParseFloat(%s) = %v, %v", tc.hex, v, err)
		}
	}
	for _, bad := range []string{"", "3F80000", "3F80000G", "3F8000000"} {
		if _, err := ParseFloat([]byte(bad)); err == nil {
			t.Errorf("ParseFloat(%q) accepted", bad)
		}
	}
}

func TestDisplayTime(t *testing.T) {
	cases := map[time.Time]string{
		time.Date(2015, 1, 25, 15, 3, 0, 0, time.UTC):  "JAN 25, 2015  3:03 PM",
		time.Date(2026, 12, 1, 0, 5, 0, 0, time.UTC):   "DEC 1, 2026 12:05 AM",
		time.Date(2026, 7, 4, 12, 59, 0, 0, time.UTC):  "JUL 4, 2026 12:59 PM",
		time.Date(2026, 7, 4, 23, 0, 59, 0, time.UTC):  "JUL 4, 2026 11:00 PM",
		time.Date(2026, 10, 10, 9, 30, 0, 0, time.UTC): "OCT 10, 2026  9:30 AM",
	}
	for tm, want := range cases {
		if got := displayTime(tm); got != want {
			t.Errorf("displayTime(%v) = %q, want %q", tm, got, want)
		}
	}
	if got := computerTime(time.Date(2026, 3, 2, 7, 12, 0, 0, time.UTC)); got != "2603020712" {
		t.Errorf("computerTime = %q", got)
	}
}

func TestTimeZone(t *testing.T) {
	cfg := testConfig()
	cfg.TimeZone = "America/Chicago"
	h := newTestHandler(t, cfg, nil)
	got := ask(t, h, newSession(t), "\x01I20500")
	// 07:12 UTC is 01:12 CST.
	if !strings.HasPrefix(got, "\x01\r\nI20500\r\nMAR 2, 2026  1:12 AM\r\n") {
		t.Errorf("header in the station zone: %q", got[:40])
	}
}

func TestTankModel(t *testing.T) {
	tank := Tank{Product: "UNLEADED", Capacity: 10000, Diameter: 96, Fill: 0.9, Reorder: 0.3, Level: 0.6, Usage: 100, Temperature: 60}
	m := newModel(tank, testNow, 0)
	at := func(h float64) tankState { return m.at(testNow.Add(time.Duration(h * float64(time.Hour)))) }
	if v := at(0).Volume; math.Abs(v-6000) > 1e-6 {
		t.Errorf("volume at boot %v, want 6000", v)
	}
	if v := at(10).Volume; math.Abs(v-5000) > 1e-6 {
		t.Errorf("volume after 10 h %v, want 5000", v)
	}
	// It reaches the reorder level after 30 h, is refilled during the delivery and
	// sells again from the fill level.
	if v := at(30).Volume; math.Abs(v-3000) > 1e-6 {
		t.Errorf("volume at reorder %v, want 3000", v)
	}
	mid := 30 + deliveryDuration.Hours()/2
	if !m.delivering(testNow.Add(time.Duration(mid*float64(time.Hour)))) || math.Abs(at(mid).Volume-6000) > 1e-6 {
		t.Errorf("mid-delivery volume %v", at(mid).Volume)
	}
	after := 30 + deliveryDuration.Hours() + 1
	if v := at(after).Volume; math.Abs(v-8900) > 1e-6 {
		t.Errorf("volume an hour after the delivery %v, want 8900", v)
	}
	// The flows over any interval account for the change of volume.
	for _, span := range [][2]float64{{0, 10}, {20, 40}, {0, 200}, {29, 31}} {
		from, to := testNow.Add(time.Duration(span[0]*float64(time.Hour))), testNow.Add(time.Duration(span[1]*float64(time.Hour)))
		sold, delivered := m.flows(from, to)
		if d := m.at(from).Volume + delivered - sold - m.at(to).Volume; math.Abs(d) > 1e-6 {
			t.Errorf("flows %v: off by %v", span, d)
		}
	}
	// Deliveries are one cycle apart, most recent first, and end at the fill level.
	ds := m.deliveries(testNow.Add(100*time.Hour), 3)
	if len(ds) != 3 || ds[0].End.Sub(ds[1].End) != time.Duration(m.period*float64(time.Hour)) || ds[0].After.Volume != 9000 || ds[0].Before.Volume != 3000 {
		t.Errorf("deliveries %+v", ds)
	}
	if ds[0].End.After(testNow.Add(100 * time.Hour)) {
		t.Errorf("last delivery ends in the future: %v", ds[0].End)
	}
	// Temperature compensation shrinks warm gasoline.
	warm := newModel(Tank{Product: "PREMIUM", Capacity: 1000, Diameter: 48, Fill: 0.9, Reorder: 0.1, Level: 0.5, Usage: 10, Temperature: 80}, testNow, 0)
	if st := warm.at(testNow); !(st.TCVolume < st.Volume) || math.Abs(st.TCVolume-500*(1-expansionGasoline*20)) > 1e-6 {
		t.Errorf("TC volume %v of %v", st.TCVolume, st.Volume)
	}
}

func TestCylinder(t *testing.T) {
	for _, h := range []float64{0, 0.01, 0.2, 0.5, 0.77, 1} {
		f := cylinderFraction(h)
		if back := cylinderHeight(f); math.Abs(back-h) > 1e-9 {
			t.Errorf("height %v -> fraction %v -> %v", h, f, back)
		}
	}
	if f := cylinderFraction(0.5); math.Abs(f-0.5) > 1e-12 {
		t.Errorf("half height fills %v", f)
	}
	if f := cylinderFraction(0.25); math.Abs(f-0.1955) > 1e-3 {
		t.Errorf("quarter height fills %v, want 0.1955", f)
	}
}

func TestPerInstallLevels(t *testing.T) {
	cfg := NewConfig()
	a := newTestHandler(t, cfg, nil)
	id := testIdentity()
	id.Serial = "350R-990001"
	env := testEnv(t, func() time.Time { return testNow })
	env.Identity = id
	b, err := New(env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.tanks[0].at(testNow).Volume == b.tanks[0].at(testNow).Volume {
		t.Errorf("two installs show the same level")
	}
	again := newTestHandler(t, cfg, nil)
	if a.tanks[0].at(testNow).Volume != again.tanks[0].at(testNow).Volume {
		t.Errorf("one install is not consistent across restarts")
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cases := protocoltest.BadConfigs[Config]{
		{"too many header lines", func(c *Config) { c.StationHeader = []string{"a", "b", "c", "d", "e"} }},
		{"control character in header", func(c *Config) { c.StationHeader = []string{"a\x01"} }},
		{"unknown zone", func(c *Config) { c.TimeZone = "Mars/Olympus" }},
		{"short security code", func(c *Config) { c.SecurityCode = "123" }},
		{"no shifts", func(c *Config) { c.Shifts = nil }},
		{"bad shift", func(c *Config) { c.Shifts = []string{"25:00"} }},
		{"bad shift form", func(c *Config) { c.Shifts = []string{"6:00"} }},
		{"delivery needed", func(c *Config) { c.DeliveryNeeded = 1 }},
		{"no tanks", func(c *Config) { c.Tanks = nil }},
		{"long label", func(c *Config) { c.Tanks[0].Product = strings.Repeat("X", 21) }},
		{"product code", func(c *Config) { c.Tanks[0].ProductCode = "AB" }},
		{"capacity", func(c *Config) { c.Tanks[0].Capacity = 10 }},
		{"diameter", func(c *Config) { c.Tanks[0].Diameter = 1000 }},
		{"reorder above fill", func(c *Config) { c.Tanks[0].Reorder = 0.9 }},
		{"level outside the cycle", func(c *Config) { c.Tanks[0].Level = 0.99 }},
		{"no usage", func(c *Config) { c.Tanks[0].Usage = 0 }},
		{"NaN usage", func(c *Config) { c.Tanks[0].Usage = math.NaN() }},
		{"too fast a cycle", func(c *Config) { c.Tanks[0].Usage = 1e9 }},
		{"temperature", func(c *Config) { c.Tanks[0].Temperature = 500 }},
		{"water", func(c *Config) { c.Tanks[0].Water = 90 }},
		{"unknown alarm", func(c *Config) { c.Tanks[0].Alarms = []string{"FIRE"} }},
		{"idle timeout", func(c *Config) { c.IdleTimeout = 0 }},
		{"command timeout", func(c *Config) { c.CommandTimeout = time.Hour }},
		{"max commands", func(c *Config) { c.MaxCommands = 0 }},
		{"max bytes", func(c *Config) { c.MaxBytes = 10 }},
	}
	for _, tc := range cases {
		c := NewConfig()
		tc.Mod(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", tc.Name)
		}
	}
	protocoltest.RefuseConfigs(t, NewConfig, New, testIdentity, cases)
}

func TestSpec(t *testing.T) {
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "guardian_ast", Transport: protocols.TCP, Port: 10001, Service: "scp-config"},
		protocoltest.Env(t, testIdentity()))
}

// pipe serves h on one end of a net.Pipe.
type pipe struct{ *protocoltest.Pipe }

func startPipe(t *testing.T, ctx context.Context, h *Handler) *pipe {
	t.Helper()
	return &pipe{protocoltest.ServePipe(t, ctx, h, newSession(t))}
}

// readResponse reads one framed response (SOH ... ETX).
func (p *pipe) readResponse(t *testing.T) string {
	t.Helper()
	p.SetReadDeadline(time.Now().Add(3 * time.Second))
	var out []byte
	b := make([]byte, 1)
	for {
		if _, err := p.Read(b); err != nil {
			t.Fatalf("read after %q: %v", out, err)
		}
		out = append(out, b[0])
		if b[0] == ETX {
			return string(out)
		}
	}
}

func TestServeStream(t *testing.T) {
	h := newTestHandler(t, testConfig(), nil)

	t.Run("byte by byte", func(t *testing.T) {
		p := startPipe(t, context.Background(), h)
		go func() {
			for _, b := range []byte("\x01I20501\r\n") {
				p.Write([]byte{b})
				time.Sleep(5 * time.Millisecond)
			}
		}()
		if got := p.readResponse(t); !strings.HasPrefix(got, "\x01\r\nI20501\r\n") {
			t.Errorf("answer %q", got)
		}
		p.Close()
		if err := p.Wait(t, time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})

	t.Run("set without terminator is answered after a pause", func(t *testing.T) {
		p := startPipe(t, context.Background(), h)
		go p.Write([]byte("\x01S60201E85 FLEX"))
		start := time.Now()
		got := p.readResponse(t)
		if !strings.Contains(got, "  1  E85 FLEX\r\n") {
			t.Errorf("answer %q", got)
		}
		if d := time.Since(start); d < 40*time.Millisecond {
			t.Errorf("answered after %v, before the command timeout", d)
		}
		p.Close()
		p.Wait(t, time.Second)
	})

	t.Run("pipelined", func(t *testing.T) {
		p := startPipe(t, context.Background(), h)
		go p.Write([]byte("\x01I10100\r\n\x01I20502\r\n\x01I99900\r\n"))
		got := []string{p.readResponse(t), p.readResponse(t), p.readResponse(t)}
		if got[0] != string(NotUnderstood) || !strings.HasPrefix(got[1], "\x01\r\nI20502") || got[2] != string(NotUnderstood) {
			t.Errorf("answers %q", got)
		}
		p.Close()
		p.Wait(t, time.Second)
	})

	t.Run("EOF mid-command", func(t *testing.T) {
		p := startPipe(t, context.Background(), h)
		p.Write([]byte("\x01I20"))
		p.Close()
		if err := p.Wait(t, time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})

	t.Run("idle timeout", func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleTimeout = 100 * time.Millisecond
		h := newTestHandler(t, cfg, nil)
		p := startPipe(t, context.Background(), h)
		if err := p.Wait(t, time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})

	t.Run("a slow sender cannot hold a command open", func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleTimeout = 300 * time.Millisecond
		cfg.CommandTimeout = 100 * time.Millisecond
		h := newTestHandler(t, cfg, nil)
		p := startPipe(t, context.Background(), h)
		stop := make(chan struct{})
		defer close(stop)
		var got bytes.Buffer
		go io.Copy(&got, p)
		go func() {
			p.Write([]byte("\x01S60201"))
			for {
				select {
				case <-stop:
					return
				case <-time.After(60 * time.Millisecond):
					if _, err := p.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		time.Sleep(500 * time.Millisecond)
		if len(p.Session.Events()) == 0 {
			t.Errorf("the trickled command was not taken as complete within idle_timeout")
		}
	})

	t.Run("context cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		p := startPipe(t, ctx, h)
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := p.Wait(t, time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})

	t.Run("command limit", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxCommands = 2
		h := newTestHandler(t, cfg, nil)
		p := startPipe(t, context.Background(), h)
		go io.Copy(io.Discard, p)
		go p.Write([]byte(strings.Repeat("\x01I10100\r\n", 5)))
		if err := p.Wait(t, time.Second); !errors.Is(err, ErrSessionLimit) {
			t.Errorf("ServeStream: %v, want ErrSessionLimit", err)
		}
		if n := len(p.Session.Events()); n != 2 {
			t.Errorf("%d events, want 2", n)
		}
	})

	t.Run("byte limit", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxBytes = 1000
		h := newTestHandler(t, cfg, nil)
		p := startPipe(t, context.Background(), h)
		go io.Copy(io.Discard, p)
		go p.Write(bytes.Repeat([]byte("A"), 5000))
		if err := p.Wait(t, time.Second); !errors.Is(err, ErrSessionLimit) {
			t.Errorf("ServeStream: %v, want ErrSessionLimit", err)
		}
	})

	t.Run("client that does not read", func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleTimeout = 200 * time.Millisecond
		h := newTestHandler(t, cfg, nil)
		p := startPipe(t, context.Background(), h)
		p.Write([]byte("\x01I20200\r\n"))
		if err := p.Wait(t, 2*time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})
}

// TestTCP drives the handler over real loopback TCP as the sensor serves it, the
// way scanners probe port 10001 (Shodan and others send <SOH>I20100 and a line end).
func TestTCP(t *testing.T) {
	h := newTestHandler(t, testConfig(), time.Now)
	srv := protocoltest.ServeTCP(t, "", h)
	conn := srv.Dial(t)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("\x01I20100\n")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(got, []byte{ETX}) {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.HasPrefix(got, []byte("\x01\r\nI20100\r\n")) || !bytes.Contains(got, []byte("IN-TANK INVENTORY\r\n")) ||
		!bytes.Contains(got, []byte("  1  REGULAR UNLEADED ")) {
		t.Errorf("answer %q", got)
	}
	conn.Close()
	srv.WaitEvent(t, "inventory_report", func(e protocols.Event) bool { return e.Detail["function_code"] == "I20100" })
	if errs := srv.Errors(); len(errs) != 0 {
		t.Errorf("handler errors: %v", errs)
	}
}
