package sensor

import (
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/capture"
	"github.com/pcapot/pcapot/protocols"
)

func TestEventNote(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    protocols.Event
		want string
	}{
		{"modbus read", protocols.Event{Protocol: "modbus", Op: "read_holding_registers", Code: 3, Unit: 1, Area: "holding_registers", Quantity: 10,
			Detail: map[string]string{"transaction_id": "7", "points": "temp_1"}},
			"pcapot modbus read_holding_registers code=3 unit=1 area=holding_registers address=0 quantity=10 points=temp_1 transaction_id=7"},
		{"write with data", protocols.Event{Protocol: "s7comm", Op: "write_var", Area: "DB1.DBX0.0", Data: []byte{1, 2}, Write: true, Exception: 5},
			"pcapot s7comm write_var area=DB1.DBX0.0 data_len=2 exception=5 write"},
		{"hostile text is quoted", protocols.Event{Protocol: "http", Op: "GET", Area: "/a b\r\nX: 1 \xff\u202e",
			Detail: map[string]string{"user agent": "x\" y"}},
			`pcapot http GET area="/a b\r\nX: 1 \xff\u202e" "user agent"="x\" y"`},
		{"empty op", protocols.Event{Protocol: "snmp"}, `pcapot snmp ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := eventNote(tc.e)
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			for _, c := range []byte(got) {
				if c < 0x20 || c > 0x7e {
					t.Fatalf("note has byte %#x: %q", c, got)
				}
			}
		})
	}
}

func TestPartNotes(t *testing.T) {
	t0 := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	parts := []*capture.Finished{{Start: t0}, {Start: t0.Add(time.Minute)}, {Start: t0.Add(2 * time.Minute)}}
	ev := func(d time.Duration, op string) protocols.Event {
		return protocols.Event{Time: t0.Add(d), Protocol: "modbus", Op: op}
	}
	events := []protocols.Event{ev(-time.Second, "early"), ev(time.Second, "a"), ev(time.Minute, "b"), ev(90*time.Second, "c"), ev(3*time.Minute, "d")}
	for i, want := range []string{"early a", "b c", "d"} {
		var ops []string
		for _, n := range partNotes(events, parts, i) {
			ops = append(ops, strings.TrimPrefix(n.Text, "pcapot modbus "))
		}
		if got := strings.Join(ops, " "); got != want {
			t.Errorf("part %d: %q, want %q", i+1, got, want)
		}
	}
}
