package capture

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary frames to the parser: it must never panic or read out of
// bounds, and what it reports must be consistent.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p pinfo
		res := parse(b, &p)
		var again pinfo
		if parse(b, &again) != res || again != p {
			t.Fatal("parse is not deterministic")
		}
		if res != parseOK {
			return
		}
		if p.proto == 0 && !p.v6 {
			t.Fatal("IPv4 result without protocol")
		}
		if !p.hasPorts {
			if !p.frag {
				t.Fatal("no ports but not a fragment")
			}
			return
		}
		if p.proto != ProtoTCP && p.proto != ProtoUDP {
			t.Fatalf("ports reported for protocol %d", p.proto)
		}
		if p.proto == ProtoUDP && p.flags != 0 {
			t.Fatal("TCP flags on UDP")
		}
		k1, l1 := makeKey(p.proto, p.v6, p.src, p.dst)
		k2, l2 := makeKey(p.proto, p.v6, p.dst, p.src)
		if k1 != k2 || (l1 == l2 && p.src != p.dst) {
			t.Fatal("flow key not canonical")
		}
		// Any prefix is parsed without panicking, too.
		for n := range len(b) {
			var q pinfo
			parse(b[:n], &q)
		}
	})
}

// fuzzSeeds returns frames of every shape the parser handles.
func fuzzSeeds(t testing.TB) [][]byte {
	c4, s4 := mustAddr("192.0.2.10"), mustAddr("198.51.100.5")
	c6, s6 := mustAddr("2001:db8::10"), mustAddr("2001:db8::5")
	var out [][]byte
	for _, pair := range [][2]frameSpec{
		{{src: c4, dst: s4}, {src: s4, dst: c4}},
		{{src: c6, dst: s6}, {src: s6, dst: c6}},
	} {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
			for _, v := range variants(pair[0].src.Is6()) {
				v.proto, v.src, v.dst, v.sport, v.dport = proto, pair[0].src, pair[0].dst, 40000, 502
				v.flags, v.payload = tcpSYN, []byte("seed")
				out = append(out, v.build(t))
			}
		}
	}
	return out
}

// TestWriteFuzzSeeds rewrites the committed seed corpora with -update.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz seeds")
	}
	writeSeeds(t, "FuzzParse", fuzzSeeds(t))
	writeSeeds(t, "FuzzDemux", demuxFuzzSeeds(t))
}

func writeSeeds(t *testing.T, name string, seeds [][]byte) {
	dir := filepath.Join("testdata", "fuzz", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzDemux feeds a stream of arbitrary frames and timer ticks through a Demux with
// small limits and AutoRegister: it must not panic, every emitted part must be a
// readable capture, and Close must leave nothing behind. The input is a sequence of
// records: op byte (time step in 100 ms; odd = Tick after the frame), 2-byte length,
// frame.
func FuzzDemux(f *testing.F) {
	for _, s := range demuxFuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		var parts []*Finished
		d := NewDemux(Config{
			AutoRegister: true, MaxPending: 4, MaxPendingPackets: 4, MaxSessions: 8,
			MaxSessionBytes: 512, MaxBufferedBytes: 4096, PendingTimeout: time.Second,
			NewID: func() string { n++; return fmt.Sprint(n) },
		}, nil, func(f *Finished) { parts = append(parts, f) })
		ts, handled := t0, 0
		for len(b) >= 3 {
			op, size := b[0], int(b[1])<<8|int(b[2])
			b = b[3:]
			size = min(size, len(b))
			ts = ts.Add(time.Duration(op) * 100 * time.Millisecond)
			d.Handle(Packet{Time: ts, Data: b[:size], Length: size})
			handled++
			if op&1 != 0 {
				d.Tick(ts)
			}
			b = b[size:]
		}
		d.Close(ts)
		written := 0
		for _, p := range parts {
			if err := ReadPackets(bytes.NewReader(p.PCAP), func(Packet) { written++ }); err != nil {
				t.Fatalf("part %s/%d unreadable: %v", p.ID, p.Part, err)
			}
		}
		if written > handled {
			t.Fatalf("%d packets written from %d handled", written, handled)
		}
		if st := d.Stats(); st.Pending != 0 || st.Active != 0 || st.BufferedBytes != 0 {
			t.Fatalf("after Close: %+v", st)
		}
	})
}

// demuxFuzzSeeds encodes a few conversations in FuzzDemux's record format.
func demuxFuzzSeeds(t testing.TB) [][]byte {
	enc := func(op byte, pkts ...Packet) []byte {
		var out []byte
		for _, p := range pkts {
			out = append(out, op, byte(len(p.Data)>>8), byte(len(p.Data)))
			out = append(out, p.Data...)
		}
		return out
	}
	tcp := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	full := append(append(tcp.handshake(), tcp.exchange(3)...), tcp.teardown()...)
	rst := newConv(t, ProtoTCP, "[2001:db8::10]:40000", "[2001:db8::5]:102", t0)
	reset := append(rst.handshake(), rst.pkt(0, true, tcpRST, ""))
	udp := newConv(t, ProtoUDP, "192.0.2.11:5000", "10.0.0.2:161", t0)
	var frag []Packet
	for _, kind := range []string{"", "first", "last"} {
		fs := frameSpec{proto: ProtoUDP, src: mustAddr("10.0.0.2"), dst: mustAddr("192.0.2.11"), sport: 161, dport: 5000, payload: make([]byte, 40), frag: kind, fragID: 3}
		frag = append(frag, Packet{Data: fs.build(t)})
	}
	return [][]byte{
		enc(0, full...),
		append(enc(0, full...), enc(1, full[:1]...)...),
		append(enc(2, reset...), enc(200, reset[:1]...)...),
		append(enc(0, udp.pkt(0, true, 0, "get")), enc(1, frag...)...),
	}
}
