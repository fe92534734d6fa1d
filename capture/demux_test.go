package capture

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// conv builds the frames of one synthetic conversation with advancing timestamps.
type conv struct {
	t          testing.TB
	proto      uint8
	c, s       netip.AddrPort
	now        time.Time
	seqC, seqS uint32
}

func newConv(t testing.TB, proto uint8, client, server string, start time.Time) *conv {
	return &conv{t: t, proto: proto, c: mustAddrPort(client), s: mustAddrPort(server), now: start, seqC: 1000, seqS: 5000}
}

func (cv *conv) tuple() Tuple { return Tuple{Proto: cv.proto, Client: cv.c, Server: cv.s} }

// pkt returns the next frame, dt after the previous one.
func (cv *conv) pkt(dt time.Duration, fromClient bool, flags uint8, payload string) Packet {
	cv.t.Helper()
	cv.now = cv.now.Add(dt)
	fs := frameSpec{proto: cv.proto, src: cv.c.Addr(), dst: cv.s.Addr(), sport: cv.c.Port(), dport: cv.s.Port(),
		flags: flags, seq: cv.seqC, ack: cv.seqS, payload: []byte(payload)}
	if !fromClient {
		fs.src, fs.dst, fs.sport, fs.dport, fs.seq, fs.ack = fs.dst, fs.src, fs.dport, fs.sport, cv.seqS, cv.seqC
	}
	data := fs.build(cv.t)
	return Packet{Time: cv.now, Data: data, Length: len(data)}
}

// handshake returns SYN, SYN-ACK, ACK.
func (cv *conv) handshake() []Packet {
	return []Packet{
		cv.pkt(time.Millisecond, true, tcpSYN, ""),
		cv.pkt(time.Millisecond, false, tcpSYN|tcpACK, ""),
		cv.pkt(time.Millisecond, true, tcpACK, ""),
	}
}

// exchange returns n request/response pairs.
func (cv *conv) exchange(n int) []Packet {
	var out []Packet
	for i := range n {
		out = append(out,
			cv.pkt(10*time.Millisecond, true, tcpACK|tcpPSH, fmt.Sprintf("request %d", i)),
			cv.pkt(time.Millisecond, false, tcpACK|tcpPSH, fmt.Sprintf("response %d", i)))
	}
	return out
}

// teardown returns FIN from the client, FIN-ACK from the server, the last ACK.
func (cv *conv) teardown() []Packet {
	return []Packet{
		cv.pkt(time.Millisecond, true, tcpFIN|tcpACK, ""),
		cv.pkt(time.Millisecond, false, tcpFIN|tcpACK, ""),
		cv.pkt(time.Millisecond, true, tcpACK, ""),
	}
}

// sink collects emitted parts.
type sink struct {
	mu  sync.Mutex
	got []*Finished
}

func (s *sink) emit(f *Finished) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, f)
}

func (s *sink) parts() []*Finished {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func newTestDemux(t testing.TB, cfg Config) (*Demux, *sink) {
	s := &sink{}
	logger := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	return NewDemux(cfg, logger, s.emit), s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func feed(d *Demux, pkts ...Packet) {
	for _, p := range pkts {
		d.Handle(p)
	}
}

// frames reads a part's file back.
func frames(t testing.TB, pcap []byte) []Packet {
	t.Helper()
	var out []Packet
	if err := ReadPackets(bytes.NewReader(pcap), func(p Packet) {
		out = append(out, Packet{Time: p.Time, Data: slices.Clone(p.Data), Length: p.Length})
	}); err != nil {
		t.Fatalf("read part: %v", err)
	}
	return out
}

// samePackets fails unless got holds exactly want's frames (bytes, times, lengths).
func samePackets(t testing.TB, got, want []Packet) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].Data, want[i].Data) || !got[i].Time.Equal(want[i].Time) || got[i].Length != want[i].Length {
			t.Fatalf("packet %d differs: %v/%d vs %v/%d", i, got[i].Time, got[i].Length, want[i].Time, want[i].Length)
		}
	}
}

// wantParts returns the emitted parts, failing unless there are n.
func wantParts(t testing.TB, s *sink, n int) []*Finished {
	t.Helper()
	got := s.parts()
	if len(got) != n {
		t.Fatalf("%d parts, want %d", len(got), n)
	}
	return got
}

func checkPart(t testing.TB, f *Finished, id string, part int, last bool, reason string) {
	t.Helper()
	if f.ID != id || f.Part != part || f.Last != last || f.Reason != reason {
		t.Fatalf("part = {ID %s Part %d Last %v Reason %s}, want {%s %d %v %s}", f.ID, f.Part, f.Last, f.Reason, id, part, last, reason)
	}
	if f.SHA256 != sha256.Sum256(f.PCAP) {
		t.Fatal("SHA256 does not match PCAP")
	}
}

func TestDemuxFinEndsAfterLinger(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{Linger: 500 * time.Millisecond})
	cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "198.51.100.5:502", t0)
	var all []Packet
	all = append(all, cv.handshake()...)
	feed(d, all...)
	if st := d.Stats(); st.Pending != 1 || st.Active != 0 {
		t.Fatalf("stats after handshake: %+v", st)
	}
	if err := d.Register(cv.tuple(), "s1"); err != nil {
		t.Fatal(err)
	}
	rest := append(cv.exchange(3), cv.teardown()...)
	feed(d, rest...)
	all = append(all, rest...)
	lastFIN := all[len(all)-2].Time
	d.Tick(lastFIN.Add(499 * time.Millisecond))
	if n := len(s.parts()); n != 0 {
		t.Fatalf("%d parts emitted during linger", n)
	}
	d.Tick(lastFIN.Add(500 * time.Millisecond))
	got := s.parts()
	if len(got) != 1 {
		t.Fatalf("%d parts, want 1", len(got))
	}
	f := got[0]
	checkPart(t, f, "s1", 1, true, ReasonFIN)
	samePackets(t, frames(t, f.PCAP), all)
	want, _ := SessionFilter(cv.tuple())
	if f.Filter.Expr != want.Expr || !slices.Equal(f.Filter.Program, want.Program) || f.Tuple != cv.tuple() {
		t.Errorf("filter/tuple = %v %q", f.Tuple, f.Filter.Expr)
	}
	var cB, sB int64
	cP, sP := 0, 0
	for i, p := range all {
		if slices.Contains([]int{0, 2, 3, 5, 7, 9, 11}, i) {
			cP++
			cB += int64(p.Length)
		} else {
			sP++
			sB += int64(p.Length)
		}
	}
	if f.ClientPackets != cP || f.ServerPackets != sP || f.ClientBytes != cB || f.ServerBytes != sB {
		t.Errorf("counts c=%d/%d s=%d/%d, want c=%d/%d s=%d/%d", f.ClientPackets, f.ClientBytes, f.ServerPackets, f.ServerBytes, cP, cB, sP, sB)
	}
	if !f.Start.Equal(all[0].Time) || !f.End.Equal(all[len(all)-1].Time) || f.Format != FormatPCAP || f.MimeType != MimePCAP || f.PossiblyIncomplete {
		t.Errorf("part = %+v", f)
	}
	if st := d.Stats(); st.Active != 0 || st.Pending != 0 || st.Sessions != 1 || st.BufferedBytes != 0 {
		t.Errorf("stats after finish: %+v", st)
	}
}

func TestDemuxEndings(t *testing.T) {
	t.Parallel()
	cfg := Config{Linger: time.Second, TCPIdle: 20 * time.Second, UDPIdle: 5 * time.Second}
	cases := []struct {
		name   string
		proto  uint8
		pkts   func(cv *conv) []Packet
		tick   time.Duration // after the last packet
		reason string
	}{
		{"rst from client", ProtoTCP, func(cv *conv) []Packet {
			return append(cv.handshake(), cv.pkt(time.Millisecond, true, tcpRST, ""))
		}, time.Second, ReasonRST},
		{"rst from server after data", ProtoTCP, func(cv *conv) []Packet {
			return append(append(cv.handshake(), cv.exchange(1)...), cv.pkt(time.Millisecond, false, tcpRST|tcpACK, ""))
		}, time.Second, ReasonRST},
		{"tcp idle", ProtoTCP, func(cv *conv) []Packet { return append(cv.handshake(), cv.exchange(2)...) }, 20 * time.Second, ReasonIdle},
		{"half close then idle", ProtoTCP, func(cv *conv) []Packet {
			return append(cv.handshake(), cv.pkt(time.Millisecond, true, tcpFIN|tcpACK, ""))
		}, 20 * time.Second, ReasonIdle},
		{"udp idle", ProtoUDP, func(cv *conv) []Packet {
			return []Packet{cv.pkt(0, true, 0, "get"), cv.pkt(time.Millisecond, false, 0, "response")}
		}, 5 * time.Second, ReasonIdle},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, s := newTestDemux(t, cfg)
			cv := newConv(t, tc.proto, "203.0.113.7:5555", "10.0.0.2:502", t0)
			pkts := tc.pkts(cv)
			feed(d, pkts[0])
			if err := d.Register(cv.tuple(), "x"); err != nil {
				t.Fatal(err)
			}
			feed(d, pkts[1:]...)
			last := pkts[len(pkts)-1].Time
			d.Tick(last.Add(tc.tick - time.Millisecond))
			if len(s.parts()) != 0 {
				t.Fatal("ended too early")
			}
			d.Tick(last.Add(tc.tick))
			got := s.parts()
			if len(got) != 1 {
				t.Fatalf("%d parts", len(got))
			}
			checkPart(t, got[0], "x", 1, true, tc.reason)
			samePackets(t, frames(t, got[0].PCAP), pkts)
		})
	}
}

func TestDemuxRegisterBeforePackets(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{})
	cv := newConv(t, ProtoTCP, "[2001:db8::10]:40000", "[2001:db8::5]:102", t0)
	if err := d.Register(cv.tuple(), "early"); err != nil {
		t.Fatal(err)
	}
	if err := d.Register(cv.tuple(), "early"); err != nil {
		t.Fatalf("re-register with the same id: %v", err)
	}
	if err := d.Register(cv.tuple(), "other"); !errors.Is(err, ErrAlreadyRegistered) {
		t.Fatalf("register with another id: %v", err)
	}
	pkts := append(append(cv.handshake(), cv.exchange(1)...), cv.teardown()...)
	feed(d, pkts...)
	d.Close(cv.now)
	got := wantParts(t, s, 1) // Close cuts the linger short; the session ended on FIN
	checkPart(t, got[0], "early", 1, true, ReasonFIN)
	samePackets(t, frames(t, got[0].PCAP), pkts)
	if err := d.Register(cv.tuple(), "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("register after close: %v", err)
	}
}

func TestDemuxRegisteredWithoutPackets(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{TCPIdle: 10 * time.Second})
	tu := Tuple{ProtoTCP, mustAddrPort("127.0.0.1:40000"), mustAddrPort("127.0.0.1:502")}
	if err := d.Register(tu, "ghost"); err != nil {
		t.Fatal(err)
	}
	d.Tick(t0)
	d.Tick(t0.Add(10 * time.Second))
	got := s.parts()
	if len(got) != 1 {
		t.Fatalf("%d parts", len(got))
	}
	checkPart(t, got[0], "ghost", 1, true, ReasonIdle)
	if n := len(frames(t, got[0].PCAP)); n != 0 || !got[0].PossiblyIncomplete {
		t.Fatalf("%d packets, incomplete=%v", n, got[0].PossiblyIncomplete)
	}
}

func TestDemuxProbes(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{PendingTimeout: 5 * time.Second, MaxPending: 3})
	scanner := "192.0.2.66"
	var last time.Time
	for i, port := range []int{502, 102, 502, 161, 44818} {
		cv := newConv(t, ProtoTCP, fmt.Sprintf("%s:%d", scanner, 50000+i), fmt.Sprintf("10.0.0.2:%d", port), t0.Add(time.Duration(i)*time.Millisecond))
		p := cv.pkt(0, true, tcpSYN, "")
		feed(d, p, cv.pkt(time.Millisecond, false, tcpRST|tcpACK, ""))
		last = cv.now
	}
	// Beyond MaxPending only the SYNs are attributed (the server's RST could not be).
	st := d.Stats()
	if st.Pending != 3 || st.PendingOverflow != 4 {
		t.Fatalf("stats: %+v", st)
	}
	d.Tick(last.Add(5 * time.Second))
	if len(s.parts()) != 0 {
		t.Fatal("probe emitted as a session")
	}
	got := d.Probes()
	if len(got) != 1 {
		t.Fatalf("probes: %+v", got)
	}
	p := got[0]
	if p.Source != mustAddr(scanner) || !slices.Equal(p.Ports, []uint16{102, 161, 502, 44818}) || p.Flows != 5 || p.Packets != 8 ||
		!p.First.Equal(t0) || !p.Last.Equal(t0.Add(4*time.Millisecond)) {
		t.Errorf("probe = %+v", p)
	}
	if st := d.Stats(); st.ProbeFlows != 3 || st.Pending != 0 {
		t.Errorf("stats: %+v", st)
	}
	if again := d.Probes(); len(again) != 0 {
		t.Errorf("probes not drained: %+v", again)
	}
}

func TestDemuxProbeSummaryAttribution(t *testing.T) {
	t.Parallel()
	d, _ := newTestDemux(t, Config{PendingTimeout: time.Second})
	synack := newConv(t, ProtoTCP, "192.0.2.1:40000", "10.0.0.2:502", t0)
	feed(d, synack.pkt(0, false, tcpSYN|tcpACK, ""))
	rst := newConv(t, ProtoTCP, "192.0.2.2:40000", "10.0.0.2:102", t0)
	feed(d, rst.pkt(0, true, tcpRST, ""))
	d.Tick(t0.Add(2 * time.Second))
	got := d.Probes()
	want := []string{"192.0.2.1 [502]", "192.0.2.2 [102]"}
	var have []string
	for _, p := range got {
		have = append(have, fmt.Sprintf("%v %v", p.Source, p.Ports))
	}
	if !slices.Equal(have, want) {
		t.Fatalf("probes %v, want %v", have, want)
	}
}

func TestDemuxPendingPacketCap(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{MaxPendingPackets: 3})
	cv := newConv(t, ProtoUDP, "192.0.2.10:5000", "10.0.0.2:161", t0)
	var pkts []Packet
	for i := range 5 {
		pkts = append(pkts, cv.pkt(time.Millisecond, i%2 == 0, 0, "datagram"))
	}
	feed(d, pkts...)
	if err := d.Register(cv.tuple(), "u"); err != nil {
		t.Fatal(err)
	}
	d.Close(cv.now)
	got := s.parts()
	if len(got) != 1 || !got[0].PossiblyIncomplete {
		t.Fatalf("parts: %d, incomplete %v", len(got), len(got) > 0 && got[0].PossiblyIncomplete)
	}
	samePackets(t, frames(t, got[0].PCAP), pkts[:3])
	if st := d.Stats(); st.PendingDropped != 2 {
		t.Errorf("PendingDropped = %d", st.PendingDropped)
	}
}

func TestDemuxPendingByteCap(t *testing.T) {
	t.Parallel()
	d, _ := newTestDemux(t, Config{MaxPendingBytes: 200})
	for i := range 4 {
		cv := newConv(t, ProtoUDP, fmt.Sprintf("192.0.2.%d:5000", i+1), "10.0.0.2:161", t0)
		feed(d, cv.pkt(0, true, 0, strings.Repeat("x", 40))) // 82-byte frames
	}
	if st := d.Stats(); st.Pending != 4 || st.PendingDropped != 2 || st.BufferedBytes != 164 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestDemuxMaxSessions(t *testing.T) {
	t.Parallel()
	d, _ := newTestDemux(t, Config{MaxSessions: 2})
	for i := range 3 {
		tu := Tuple{ProtoTCP, netip.AddrPortFrom(mustAddr("192.0.2.1"), uint16(40000+i)), mustAddrPort("10.0.0.2:502")}
		err := d.Register(tu, fmt.Sprint(i))
		if (i < 2) != (err == nil) || (i == 2 && !errors.Is(err, ErrTooManySessions)) {
			t.Fatalf("register %d: %v", i, err)
		}
	}
}

func TestDemuxRotation(t *testing.T) {
	t.Parallel()
	t.Run("size", func(t *testing.T) {
		t.Parallel()
		const limit = 700
		d, s := newTestDemux(t, Config{MaxSessionBytes: limit})
		cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
		pkts := append(append(cv.handshake(), cv.exchange(8)...), cv.teardown()...)
		if err := d.Register(cv.tuple(), "big"); err != nil {
			t.Fatal(err)
		}
		feed(d, pkts...)
		d.Tick(cv.now.Add(time.Minute))
		got := s.parts()
		if len(got) < 3 {
			t.Fatalf("%d parts", len(got))
		}
		var joined []Packet
		for i, f := range got {
			reason := ReasonSize
			if i == len(got)-1 {
				reason = ReasonFIN
			}
			checkPart(t, f, "big", i+1, i == len(got)-1, reason)
			if len(f.PCAP) > limit {
				t.Errorf("part %d has %d bytes > %d", f.Part, len(f.PCAP), limit)
			}
			fr := frames(t, f.PCAP)
			if len(fr) == 0 || !f.Start.Equal(fr[0].Time) || !f.End.Equal(fr[len(fr)-1].Time) || f.ClientPackets+f.ServerPackets != len(fr) {
				t.Errorf("part %d: start/end/counts do not match its %d packets", f.Part, len(fr))
			}
			joined = append(joined, fr...)
		}
		samePackets(t, joined, pkts)
	})
	t.Run("lifetime", func(t *testing.T) {
		t.Parallel()
		d, s := newTestDemux(t, Config{MaxLifetime: 10 * time.Second})
		cv := newConv(t, ProtoUDP, "192.0.2.10:40000", "10.0.0.2:161", t0)
		var pkts []Packet
		for _, dt := range []time.Duration{0, 5, 6, 1, 13} { // t = 0, 5, 11, 12, 25 s
			pkts = append(pkts, cv.pkt(dt*time.Second, true, 0, "poll"))
		}
		if err := d.Register(cv.tuple(), "long"); err != nil {
			t.Fatal(err)
		}
		feed(d, pkts...)
		d.Close(cv.now)
		got := s.parts()
		if len(got) != 3 {
			t.Fatalf("%d parts", len(got))
		}
		for i, want := range [][]Packet{pkts[:2], pkts[2:4], pkts[4:]} {
			reason := ReasonLifetime
			if i == 2 {
				reason = ReasonShutdown
			}
			checkPart(t, got[i], "long", i+1, i == 2, reason)
			samePackets(t, frames(t, got[i].PCAP), want)
		}
	})
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		d, s := newTestDemux(t, Config{MaxBufferedBytes: 2000})
		var convs []*conv
		for i := range 4 {
			cv := newConv(t, ProtoTCP, fmt.Sprintf("192.0.2.%d:40000", i+1), "10.0.0.2:502", t0)
			if err := d.Register(cv.tuple(), fmt.Sprint("m", i)); err != nil {
				t.Fatal(err)
			}
			convs = append(convs, cv)
		}
		want := map[string][]Packet{}
		for round := range 6 {
			for i, cv := range convs {
				p := cv.exchange(1)
				if round == 0 {
					p = append(cv.handshake(), p...)
				}
				feed(d, p...)
				want[fmt.Sprint("m", i)] = append(want[fmt.Sprint("m", i)], p...)
			}
			if st := d.Stats(); st.BufferedBytes > 2000 {
				t.Fatalf("buffered %d bytes > cap", st.BufferedBytes)
			}
		}
		d.Close(t0.Add(time.Minute))
		got := map[string][]Packet{}
		lasts := 0
		for _, f := range s.parts() {
			got[f.ID] = append(got[f.ID], frames(t, f.PCAP)...)
			if f.Last {
				lasts++
			}
		}
		if lasts != 4 || len(s.parts()) <= 4 {
			t.Fatalf("%d parts, %d last", len(s.parts()), lasts)
		}
		for id, w := range want {
			samePackets(t, got[id], w)
		}
	})
}

func TestDemuxDropsFlag(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{})
	a := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	feed(d, a.handshake()...)
	if err := d.Register(a.tuple(), "a"); err != nil {
		t.Fatal(err)
	}
	pend := newConv(t, ProtoTCP, "192.0.2.11:40000", "10.0.0.2:502", t0)
	feed(d, pend.handshake()...)
	d.NoteDrops(5)
	d.NoteDrops(0)
	if err := d.Register(pend.tuple(), "p"); err != nil {
		t.Fatal(err)
	}
	b := newConv(t, ProtoTCP, "192.0.2.12:40000", "10.0.0.2:502", t0)
	feed(d, b.handshake()...)
	if err := d.Register(b.tuple(), "b"); err != nil {
		t.Fatal(err)
	}
	d.Close(t0.Add(time.Second))
	drops := map[string]uint64{}
	for _, f := range s.parts() {
		drops[f.ID] = f.Drops
		if f.PossiblyIncomplete != (f.Drops > 0) {
			t.Errorf("%s: drops %d, incomplete %v", f.ID, f.Drops, f.PossiblyIncomplete)
		}
	}
	if want := map[string]uint64{"a": 5, "p": 5, "b": 0}; fmt.Sprint(drops) != fmt.Sprint(want) {
		t.Fatalf("drops %v, want %v", drops, want)
	}
	if d.Stats().KernelDrops != 5 {
		t.Fatal("KernelDrops")
	}
}

// TestDemuxTruncatedFrame checks that a frame cut before the demux (by the ring, whose
// block is smaller than the frame, or by the capture a carved file came from) flags
// its session, and that the pcap records both lengths.
func TestDemuxTruncatedFrame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cut     int
		flagged bool
	}{
		{"whole", 0, false},
		{"cut", 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, s := newTestDemux(t, Config{})
			cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
			pkts := append(cv.handshake(), cv.exchange(1)...)
			last := &pkts[len(pkts)-1]
			last.Data = last.Data[:len(last.Data)-tc.cut]
			feed(d, pkts...)
			if err := d.Register(cv.tuple(), "s"); err != nil {
				t.Fatal(err)
			}
			d.Close(cv.now)
			got := s.parts()
			if len(got) != 1 || got[0].PossiblyIncomplete != tc.flagged {
				t.Fatalf("parts %d, possibly incomplete %v, want %v", len(got), len(got) == 1 && got[0].PossiblyIncomplete, tc.flagged)
			}
			fs := frames(t, got[0].PCAP)
			if p := fs[len(fs)-1]; p.Length-len(p.Data) != tc.cut {
				t.Fatalf("last frame: captured %d of %d bytes, want %d cut", len(p.Data), p.Length, tc.cut)
			}
		})
	}
}

func TestDemuxMidStream(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{})
	cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	cv.handshake() // not captured
	if err := d.Register(cv.tuple(), "mid"); err != nil {
		t.Fatal(err)
	}
	feed(d, cv.exchange(1)...)
	d.Close(cv.now)
	if got := s.parts(); len(got) != 1 || !got[0].PossiblyIncomplete {
		t.Fatal("session without SYN not flagged PossiblyIncomplete")
	}
}

func TestDemuxPortReuse(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{Linger: 2 * time.Second})
	cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	first := append(append(cv.handshake(), cv.exchange(1)...), cv.teardown()...)
	feed(d, first[0])
	if err := d.Register(cv.tuple(), "one"); err != nil {
		t.Fatal(err)
	}
	feed(d, first[1:]...)
	// Within the linger the client connects again from the same port.
	second := append(cv.handshake(), cv.exchange(1)...)
	feed(d, second...)
	if err := d.Register(cv.tuple(), "two"); err != nil {
		t.Fatal(err)
	}
	d.Close(cv.now)
	got := s.parts()
	if len(got) != 2 {
		t.Fatalf("%d parts", len(got))
	}
	checkPart(t, got[0], "one", 1, true, ReasonFIN)
	checkPart(t, got[1], "two", 1, true, ReasonShutdown)
	samePackets(t, frames(t, got[0].PCAP), first)
	samePackets(t, frames(t, got[1].PCAP), second)
}

func TestDemuxRegisterReusesClosingTuple(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{Linger: 2 * time.Second})
	cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	first := append(cv.handshake(), cv.pkt(time.Millisecond, true, tcpRST, ""))
	feed(d, first...)
	if err := d.Register(cv.tuple(), "one"); err != nil {
		t.Fatal(err)
	}
	// The sensor accepts the next connection on the tuple before the capture saw its SYN.
	if err := d.Register(cv.tuple(), "two"); err != nil {
		t.Fatal(err)
	}
	second := cv.handshake()
	feed(d, second...)
	d.Close(cv.now)
	got := wantParts(t, s, 2)
	checkPart(t, got[0], "one", 1, true, ReasonRST)
	samePackets(t, frames(t, got[0].PCAP), first)
	samePackets(t, frames(t, got[1].PCAP), second)
}

func TestDemuxSameHost(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{})
	cv := newConv(t, ProtoTCP, "127.0.0.1:40000", "127.0.0.1:502", t0)
	pkts := append(cv.handshake(), cv.exchange(2)...)
	if err := d.Register(cv.tuple(), "lo"); err != nil {
		t.Fatal(err)
	}
	feed(d, pkts...)
	d.Close(cv.now)
	f := s.parts()[0]
	if f.ClientPackets != 4 || f.ServerPackets != 3 {
		t.Fatalf("client %d server %d packets", f.ClientPackets, f.ServerPackets)
	}
}

// fragFlow is a UDP flow client:5000 -> server:161 (IPv4 or IPv6) whose packets mk
// builds: frag is "", "first", "middle" or "last", from the client or the server.
func fragFlow(t *testing.T, v6 bool) (c, srv netip.Addr, tu Tuple, mk func(frag string, id uint32, from netip.Addr, ms int) Packet) {
	c, srv = mustAddr("192.0.2.10"), mustAddr("10.0.0.2")
	if v6 {
		c, srv = mustAddr("2001:db8::10"), mustAddr("2001:db8::5")
	}
	tu = Tuple{ProtoUDP, netip.AddrPortFrom(c, 5000), netip.AddrPortFrom(srv, 161)}
	mk = func(frag string, id uint32, from netip.Addr, ms int) Packet {
		to := srv
		sp, dp := uint16(5000), uint16(161)
		if from == srv {
			to, sp, dp = c, 161, 5000
		}
		fs := frameSpec{proto: ProtoUDP, src: from, dst: to, sport: sp, dport: dp, payload: bytes.Repeat([]byte("f"), 64), frag: frag, fragID: id}
		b := fs.build(t)
		return Packet{Time: t0.Add(time.Duration(ms) * time.Millisecond), Data: b, Length: len(b)}
	}
	return c, srv, tu, mk
}

func TestDemuxFragments(t *testing.T) {
	t.Parallel()
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprint("v6=", v6), func(t *testing.T) {
			t.Parallel()
			d, s := newTestDemux(t, Config{})
			c, srv, tu, mk := fragFlow(t, v6)
			pkts := []Packet{
				mk("", 0, c, 0),
				mk("first", 7, srv, 1), // fragmented response
				mk("middle", 7, srv, 2),
				mk("last", 7, srv, 3),
			}
			stray := mk("last", 8, c, 4) // no first fragment seen
			feed(d, pkts[0])
			if err := d.Register(tu, "frag"); err != nil {
				t.Fatal(err)
			}
			feed(d, pkts[1], pkts[2], stray, pkts[3])
			d.Close(t0.Add(time.Second))
			got := s.parts()
			samePackets(t, frames(t, got[0].PCAP), pkts)
			if got[0].ServerPackets != 3 {
				t.Errorf("server packets %d", got[0].ServerPackets)
			}
			if st := d.Stats(); st.Fragments != 2 || st.FragmentsLost != 1 {
				t.Errorf("stats: %+v", st)
			}
		})
	}
}

// TestDemuxEarlyFragments checks that non-first fragments that arrive before their
// datagram's first fragment (reordered, or sent last first) still land in the
// session, in arrival order, and that ones whose first fragment never comes are
// counted lost, also after the fragment timeout.
func TestDemuxEarlyFragments(t *testing.T) {
	t.Parallel()
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprint("v6=", v6), func(t *testing.T) {
			t.Parallel()
			d, s := newTestDemux(t, Config{})
			c, _, tu, mk := fragFlow(t, v6)
			// A fragmented request sent last fragment first, then a whole datagram.
			pkts := []Packet{mk("last", 9, c, 0), mk("middle", 9, c, 1), mk("first", 9, c, 2), mk("", 0, c, 3)}
			if err := d.Register(tu, "early"); err != nil {
				t.Fatal(err)
			}
			feed(d, pkts...)
			feed(d, mk("last", 10, c, 4)) // its first fragment never comes
			d.Tick(t0.Add(fragTimeout + time.Second))
			if st := d.Stats(); st.Fragments != 2 || st.FragmentsLost != 1 {
				t.Errorf("after the fragment timeout: %+v", st)
			}
			d.Close(t0.Add(fragTimeout + 2*time.Second))
			got := s.parts()
			if len(got) != 1 {
				t.Fatalf("%d parts", len(got))
			}
			samePackets(t, frames(t, got[0].PCAP), pkts)
			if got[0].ClientPackets != 4 {
				t.Errorf("client packets %d", got[0].ClientPackets)
			}
		})
	}
}

func TestDemuxAutoRegister(t *testing.T) {
	t.Parallel()
	n := 0
	d, s := newTestDemux(t, Config{AutoRegister: true, NewID: func() string { n++; return fmt.Sprint("auto-", n) }, PendingTimeout: time.Second})
	tcp := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	mid := newConv(t, ProtoTCP, "192.0.2.11:40000", "10.0.0.2:502", t0)
	udp := newConv(t, ProtoUDP, "192.0.2.12:40000", "10.0.0.2:161", t0)
	feed(d, tcp.handshake()...)
	feed(d, mid.exchange(1)...)
	feed(d, udp.pkt(0, true, 0, "q"), udp.pkt(time.Millisecond, false, 0, "a"))
	d.Tick(t0.Add(2 * time.Second))
	d.Close(t0.Add(3 * time.Second))
	var ids []string
	for _, f := range s.parts() {
		ids = append(ids, fmt.Sprint(f.ID, " ", f.Tuple))
	}
	slices.Sort(ids)
	want := []string{"auto-1 tcp 192.0.2.10:40000 -> 10.0.0.2:502", "auto-2 udp 192.0.2.12:40000 -> 10.0.0.2:161"}
	if !slices.Equal(ids, want) {
		t.Fatalf("sessions %v, want %v", ids, want)
	}
	if st := d.Stats(); st.ProbeFlows != 1 {
		t.Errorf("mid-stream flow not a probe: %+v", st)
	}
}

func TestDemuxUnparsedAndClosed(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{})
	d.Handle(Packet{Time: t0, Data: []byte{1, 2, 3}})
	d.Handle(Packet{Time: t0, Data: append(make([]byte, 12), 0x08, 0x06)})
	d.Close(t0)
	d.Close(t0)
	cv := newConv(t, ProtoUDP, "192.0.2.10:5000", "10.0.0.2:161", t0)
	d.Handle(cv.pkt(0, true, 0, "after close"))
	if st := d.Stats(); st.PacketsUnparsed != 2 || st.PacketsSeen != 2 || len(s.parts()) != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestDemuxConcurrent registers flows from many goroutines while the reader handles
// their packets and a ticker runs (go test -race).
func TestDemuxConcurrent(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{Linger: 10 * time.Millisecond})
	const n = 64
	convs := make([]*conv, n)
	var pkts []Packet
	for i := range convs {
		convs[i] = newConv(t, ProtoTCP, fmt.Sprintf("192.0.2.%d:%d", 1+i%200, 40000+i), "10.0.0.2:502", t0)
		pkts = append(pkts, append(append(convs[i].handshake(), convs[i].exchange(2)...), convs[i].teardown()...)...)
	}
	var wg sync.WaitGroup
	for i, cv := range convs {
		wg.Go(func() {
			if err := d.Register(cv.tuple(), fmt.Sprint(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			d.Tick(t0)
			d.Stats()
		}
	})
	feed(d, pkts...)
	wg.Wait()
	d.Tick(t0.Add(time.Minute))
	got := s.parts()
	if len(got) != n {
		t.Fatalf("%d sessions, want %d", len(got), n)
	}
	for _, f := range got {
		if f.Reason != ReasonFIN || len(frames(t, f.PCAP)) != 10 {
			t.Fatalf("session %s: reason %s, %d packets", f.ID, f.Reason, len(frames(t, f.PCAP)))
		}
	}
}

func TestPcapngPart(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{Format: FormatPCAPNG, Interface: "eth7"})
	cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	pkts := append(append(cv.handshake(), cv.exchange(2)...), cv.teardown()...)
	feed(d, pkts[:3]...)
	if err := d.Register(cv.tuple(), "ng-session"); err != nil {
		t.Fatal(err)
	}
	d.NoteDrops(3)
	feed(d, pkts[3:]...)
	d.Tick(cv.now.Add(time.Minute))
	f := s.parts()[0]
	if f.Format != FormatPCAPNG || f.MimeType != MimePCAPNG {
		t.Fatalf("format %s %s", f.Format, f.MimeType)
	}
	samePackets(t, frames(t, f.PCAP), pkts)

	r, err := pcapgo.NewNgReader(bytes.NewReader(f.PCAP), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.SectionInfo().Comment; c != "pcapot session ng-session part 1" {
		t.Errorf("SHB comment %q", c)
	}
	var dirs []pcapgo.NgEpbFlag
	for {
		_, _, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			break
		}
		dirs = append(dirs, opts.Flags.Direction)
	}
	intf, err := r.Interface(0)
	if err != nil {
		t.Fatal(err)
	}
	if intf.Filter != f.Filter.Expr || intf.Name != "eth7" || !strings.Contains(intf.Comment, f.Filter.Bytecode()) {
		t.Errorf("IDB filter %q name %q comment %q", intf.Filter, intf.Name, intf.Comment)
	}
	if intf.Statistics.PacketsDropped != 3 || !intf.Statistics.EndTime.Equal(f.End) {
		t.Errorf("ISB %+v", intf.Statistics)
	}
	in, out := pcapgo.NgEpbFlagDirectionInbound, pcapgo.NgEpbFlagDirectionOutbound
	want := []pcapgo.NgEpbFlag{in, out, in, in, out, in, out, in, out, in}
	if !slices.Equal(dirs, want) {
		t.Errorf("directions %v, want %v", dirs, want)
	}
}

// TestPartWriterSize checks the size accounting that rotation relies on.
func TestPartWriterSize(t *testing.T) {
	t.Parallel()
	for _, format := range []string{FormatPCAP, FormatPCAPNG} {
		t.Run(format, func(t *testing.T) {
			w, err := newPartWriter(format, partMeta{id: "x", part: 1, snaplen: DefaultSnaplen, filter: Filter{Expr: "tcp"}})
			if err != nil {
				t.Fatal(err)
			}
			for n := range 9 {
				before := w.size()
				if err := w.write(t0, make([]byte, 60+n), 60+n, n%2 == 0); err != nil {
					t.Fatal(err)
				}
				if w.size()-before != w.recordSize(60+n) {
					t.Fatalf("record of %d bytes counted %d, want %d", 60+n, w.size()-before, w.recordSize(60+n))
				}
			}
			size := w.size()
			b, err := w.finish(&partStats{})
			if err != nil {
				t.Fatal(err)
			}
			isb := 0
			if format == FormatPCAPNG {
				isb = 24 + 12 + 4 // ISB header/trailer, ifdrop option, end of options
			}
			if len(b) != size+isb {
				t.Fatalf("file has %d bytes, size() said %d (+%d)", len(b), size, isb)
			}
		})
	}
}

// TestDemuxRegisterMapped registers the IPv4-mapped tuple a dual-stack listener
// reports; the IPv4 packets must land in the session.
func TestDemuxRegisterMapped(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{})
	cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	pkts := append(cv.handshake(), cv.exchange(1)...)
	feed(d, pkts[:3]...)
	mapped := Tuple{ProtoTCP, mustAddrPort("[::ffff:192.0.2.10]:40000"), mustAddrPort("[::ffff:10.0.0.2]:502")}
	if err := d.Register(mapped, "dual"); err != nil {
		t.Fatal(err)
	}
	feed(d, pkts[3:]...)
	d.Close(cv.now)
	f := wantParts(t, s, 1)[0]
	samePackets(t, frames(t, f.PCAP), pkts)
	if f.Tuple != cv.tuple() {
		t.Errorf("tuple %v, want the normalized %v", f.Tuple, cv.tuple())
	}
}

// TestDemuxRetryAfterRefusal: a first attempt refused with an RST and retried from
// the same source port must not make the registered retry a closed session.
func TestDemuxRetryAfterRefusal(t *testing.T) {
	t.Parallel()
	d, s := newTestDemux(t, Config{Linger: time.Second})
	cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	feed(d, cv.pkt(0, true, tcpSYN, ""), cv.pkt(time.Millisecond, false, tcpRST|tcpACK, ""))
	retry := append(cv.handshake(), cv.exchange(2)...)
	feed(d, retry[:3]...)
	if err := d.Register(cv.tuple(), "retry"); err != nil {
		t.Fatal(err)
	}
	feed(d, retry[3:]...)
	d.Tick(cv.now.Add(2 * time.Second)) // past the old RST's linger
	if len(s.parts()) != 0 {
		t.Fatal("the retried session ended with the refused attempt")
	}
	d.Close(cv.now.Add(3 * time.Second))
	f := wantParts(t, s, 1)[0]
	checkPart(t, f, "retry", 1, true, ReasonShutdown)
	samePackets(t, frames(t, f.PCAP), retry)
	if st := d.Stats(); st.ProbeFlows != 1 {
		t.Errorf("refused attempt not counted as a probe: %+v", st)
	}
}
