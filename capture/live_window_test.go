package capture

import (
	"net/netip"
	"testing"
	"time"
)

func TestUserSpaceFilter(t *testing.T) {
	t.Parallel()
	c := SensorFilterConfig{Addrs: []netip.Addr{mustAddr("10.0.0.2")}, TCPPorts: []uint16{502}}
	prog, _, err := SensorFilter(c)
	if err != nil {
		t.Fatal(err)
	}
	check := userSpaceFilter(prog)
	if check == nil {
		t.Fatal("no user-space filter for a plain program")
	}
	in := frameSpec{proto: ProtoTCP, src: mustAddr("192.0.2.1"), dst: mustAddr("10.0.0.2"), sport: 40000, dport: 502}
	out := frameSpec{proto: ProtoTCP, src: mustAddr("192.0.2.1"), dst: mustAddr("10.0.0.2"), sport: 40000, dport: 22}
	if !check(in.build(t)) || check(out.build(t)) {
		t.Fatal("user-space filter does not follow the program")
	}
	c.Loopback = true
	if prog, _, _ = SensorFilter(c); userSpaceFilter(prog) != nil {
		t.Fatal("the lo prefix cannot run in user space; want nil (discard)")
	}
}

func TestLiveAttachWindow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		stamps []time.Duration // relative to opened; attached is at +1ms
		want   []bool
	}{
		{"queued before attach, then filtered", []time.Duration{100 * time.Microsecond, 900 * time.Microsecond, 2 * time.Millisecond, 500 * time.Microsecond}, []bool{true, true, false, false}},
		{"first packet after attach", []time.Duration{time.Millisecond, 0}, []bool{false, false}},
		{"clock set back", []time.Duration{-2 * time.Second, 0}, []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Live{opened: t0, attached: t0.Add(time.Millisecond), window: true}
			for i, d := range tc.stamps {
				if got := l.inWindow(t0.Add(d)); got != tc.want[i] {
					t.Fatalf("packet %d (%v): inWindow = %v, want %v", i, d, got, tc.want[i])
				}
			}
		})
	}
}
