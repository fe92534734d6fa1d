package capture

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// The replay fixture: a full capture of concurrent TCP and UDP sessions (IPv4 and
// IPv6, FIN and RST endings, a fragmented UDP response, a same-host flow) mixed with
// noise (a SYN scan, a reversed-port flow, ICMP, ARP), plus the list of sessions and
// when the sensor registers each. `go test -run TestReplayFixture -update` rewrites
// both from buildReplay.
var (
	replayPcap     = filepath.Join("testdata", "replay", "multi.pcap")
	replaySessions = filepath.Join("testdata", "replay", "sessions.txt")
)

// replaySession is one line of sessions.txt: the tuple, and the index of the packet
// after which the sensor registers it (-1: before the capture starts).
type replaySession struct {
	id    string
	tuple Tuple
	after int
}

// buildReplay generates the fixture deterministically.
func buildReplay(t testing.TB) ([]Packet, []replaySession) {
	rng := rand.New(rand.NewPCG(7, 7))
	type script struct {
		id    string
		cv    *conv
		pkts  []Packet
		early bool // registered before its first packet
		udp   bool
	}
	var scripts []*script
	tcp := func(id, c, s string, n int, abort, early bool) {
		cv := newConv(t, ProtoTCP, c, s, t0)
		p := append(cv.handshake(), cv.exchange(n)...)
		if abort {
			p = append(p, cv.pkt(time.Millisecond, true, tcpRST|tcpACK, ""))
		} else {
			p = append(p, cv.teardown()...)
		}
		scripts = append(scripts, &script{id: id, cv: cv, pkts: p, early: early})
	}
	udp := func(id, c, s string, n int) {
		cv := newConv(t, ProtoUDP, c, s, t0)
		var p []Packet
		for i := range n {
			p = append(p, cv.pkt(time.Millisecond, true, 0, fmt.Sprint("get ", i)), cv.pkt(time.Millisecond, false, 0, fmt.Sprint("value ", i)))
		}
		scripts = append(scripts, &script{id: id, cv: cv, pkts: p, udp: true})
	}
	tcp("modbus-1", "192.0.2.10:40001", "10.0.0.2:502", 6, false, false)
	tcp("modbus-2", "192.0.2.11:40002", "10.0.0.2:502", 8, true, false)
	tcp("modbus-3", "198.51.100.20:51000", "10.0.0.2:502", 2, false, true)
	tcp("s7-1", "192.0.2.10:40003", "10.0.0.2:102", 6, false, false)
	tcp("s7-2", "203.0.113.5:33333", "10.0.0.2:102", 1, true, false)
	tcp("same-host", "10.0.0.2:40004", "10.0.0.2:502", 2, false, false)
	tcp("modbus-v6", "[2001:db8:1::10]:40005", "[2001:db8::2]:502", 5, false, false)
	tcp("s7-v6", "[2001:db8:1::11]:40006", "[2001:db8::2]:102", 2, true, true)
	udp("snmp-1", "192.0.2.10:40007", "10.0.0.2:161", 5)
	udp("snmp-2", "192.0.2.12:161", "10.0.0.2:161", 2) // client port equals the server port
	udp("bacnet-v6", "[2001:db8:1::12]:47808", "[2001:db8::2]:47808", 2)

	// A fragmented SNMP response (first, middle, last fragment) inside snmp-frag.
	fragCV := newConv(t, ProtoUDP, "192.0.2.13:40008", "10.0.0.2:161", t0)
	fragPkts := []Packet{fragCV.pkt(time.Millisecond, true, 0, "getbulk")}
	for _, kind := range []string{"first", "middle", "last"} {
		fs := frameSpec{proto: ProtoUDP, src: mustAddr("10.0.0.2"), dst: mustAddr("192.0.2.13"), sport: 161, dport: 40008,
			payload: bytes.Repeat([]byte("bulk"), 30), frag: kind, fragID: 0x4242}
		b := fs.build(t)
		fragPkts = append(fragPkts, Packet{Data: b, Length: len(b)})
	}
	scripts = append(scripts, &script{id: "snmp-frag", cv: fragCV, pkts: fragPkts, udp: true})

	// Noise, never registered: a SYN scan, a flow with modbus-1's ports swapped, ICMP,
	// ARP, and a lone fragment of an unknown datagram.
	var noise []Packet
	for _, port := range []uint16{21, 22, 80, 102, 443, 502, 2404, 20000} {
		cv := newConv(t, ProtoTCP, "192.0.2.66:61000", fmt.Sprintf("10.0.0.2:%d", port), t0)
		noise = append(noise, cv.pkt(0, true, tcpSYN, ""), cv.pkt(0, false, tcpRST|tcpACK, ""))
	}
	swapped := newConv(t, ProtoTCP, "192.0.2.10:502", "10.0.0.2:40001", t0)
	noise = append(noise, swapped.pkt(0, true, tcpSYN, ""))
	for _, fs := range []frameSpec{
		{proto: 1, src: mustAddr("192.0.2.10"), dst: mustAddr("10.0.0.2"), sport: 40001, dport: 502},
		{proto: ProtoUDP, src: mustAddr("192.0.2.13"), dst: mustAddr("10.0.0.2"), sport: 1, dport: 2, payload: make([]byte, 24), frag: "last", fragID: 0x4242},
	} {
		b := fs.build(t)
		noise = append(noise, Packet{Data: b, Length: len(b)})
	}
	arp := append(bytes.Repeat([]byte{0xff}, 6), 2, 0, 0, 0, 0, 1, 0x08, 0x06)
	noise = append(noise, Packet{Data: append(arp, make([]byte, 28)...), Length: 42})
	scripts = append(scripts, &script{id: "", pkts: noise})

	// Interleave: each step takes the next packet of a random script, so that the
	// sessions overlap while each keeps its order.
	var out []Packet
	var sessions []replaySession
	now := t0
	for {
		var live []*script
		for _, s := range scripts {
			if len(s.pkts) > 0 {
				live = append(live, s)
			}
		}
		if len(live) == 0 {
			break
		}
		s := live[rng.IntN(len(live))]
		p := s.pkts[0]
		s.pkts = s.pkts[1:]
		now = now.Add(time.Duration(1+rng.IntN(900)) * time.Microsecond)
		p.Time = now
		out = append(out, p)
		if s.id == "" || slices.ContainsFunc(sessions, func(r replaySession) bool { return r.id == s.id }) {
			continue
		}
		// Register like the sensor: UDP at the first datagram, TCP at Accept (after
		// the handshake's third packet), or before any packet.
		after := len(out) - 1
		if s.early {
			after = -1
		} else if !s.udp {
			if len(s.pkts) > 0 && s.cv.proto == ProtoTCP && countFlow(out, s.cv.tuple()) < 3 {
				continue
			}
		}
		sessions = append(sessions, replaySession{id: s.id, tuple: s.cv.tuple(), after: after})
	}
	return out, sessions
}

// countFlow counts the packets of t's flow (either direction) in pkts.
func countFlow(pkts []Packet, t Tuple) int {
	want, _ := t.key()
	n := 0
	for _, p := range pkts {
		var pi pinfo
		if parse(p.Data, &pi) == parseOK && pi.hasPorts {
			if k, _ := makeKey(pi.proto, pi.v6, pi.src, pi.dst); k == want {
				n++
			}
		}
	}
	return n
}

func writeReplayFixture(t *testing.T, pkts []Packet, sessions []replaySession) {
	if err := os.MkdirAll(filepath.Dir(replayPcap), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(DefaultSnaplen, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.Length}, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	var list strings.Builder
	list.WriteString("# id proto client server register-after-packet-index (-1: before the capture)\n")
	for _, s := range sessions {
		fmt.Fprintf(&list, "%s %s %s %s %d\n", s.id, protoName(s.tuple.Proto), s.tuple.Client, s.tuple.Server, s.after)
	}
	if err := os.WriteFile(replayPcap, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(replaySessions, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readReplaySessions(t *testing.T) []replaySession {
	f, err := os.Open(replaySessions)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []replaySession
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 5 {
			t.Fatalf("bad line %q", line)
		}
		proto := ProtoTCP
		if f[1] == "udp" {
			proto = ProtoUDP
		}
		after, err := strconv.Atoi(f[4])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, replaySession{id: f[0], tuple: Tuple{proto, netip.MustParseAddrPort(f[2]), netip.MustParseAddrPort(f[3])}, after: after})
	}
	return out
}

// TestReplayFixture keeps the committed fixture equal to what buildReplay generates.
func TestReplayFixture(t *testing.T) {
	pkts, sessions := buildReplay(t)
	if *update {
		writeReplayFixture(t, pkts, sessions)
	}
	var got []Packet
	if err := ReadFile(replayPcap, func(p Packet) { got = append(got, Packet{p.Time, slices.Clone(p.Data), p.Length}) }); err != nil {
		t.Fatal(err)
	}
	samePackets(t, got, pkts)
	if s := readReplaySessions(t); fmt.Sprint(s) != fmt.Sprint(sessions) {
		t.Fatalf("sessions.txt differs from the generator (go test -update):\n%v\n%v", s, sessions)
	}
}

// TestReplay feeds the full capture through the Demux, registering each session when
// the sensor would, and requires each session's pcap to hold exactly the packets its
// own Filter.Program (bpf.NewVM) accepts from the full capture, in order — plus the
// non-first fragments of datagrams whose first fragment the program accepted (the
// program, like libpcap, cannot see their ports; the Demux keeps them).
func TestReplay(t *testing.T) {
	t.Parallel()
	sessions := readReplaySessions(t)
	var all []Packet
	if err := ReadFile(replayPcap, func(p Packet) { all = append(all, Packet{p.Time, slices.Clone(p.Data), p.Length}) }); err != nil {
		t.Fatal(err)
	}
	if len(sessions) < 10 || len(all) < 140 {
		t.Fatalf("fixture too small: %d sessions, %d packets", len(sessions), len(all))
	}
	for _, format := range []string{FormatPCAP, FormatPCAPNG} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			d, s := newTestDemux(t, Config{Format: format, Linger: 50 * time.Millisecond})
			register := func(after int) {
				for _, rs := range sessions {
					if rs.after == after {
						if err := d.Register(rs.tuple, rs.id); err != nil {
							t.Fatalf("register %s: %v", rs.id, err)
						}
					}
				}
			}
			register(-1)
			i := 0
			if err := ReadFile(replayPcap, func(p Packet) {
				d.Handle(p)
				d.Tick(p.Time)
				register(i)
				i++
			}); err != nil {
				t.Fatal(err)
			}
			end := all[len(all)-1].Time.Add(time.Second)
			d.Tick(end) // lingering TCP sessions end; UDP ones are not idle yet
			d.Close(end)

			byID := map[string]*Finished{}
			for _, f := range s.parts() {
				if byID[f.ID] != nil || f.Part != 1 || !f.Last {
					t.Fatalf("session %s: unexpected part %d (last %v)", f.ID, f.Part, f.Last)
				}
				byID[f.ID] = f
			}
			if len(byID) != len(sessions) {
				t.Fatalf("%d sessions emitted, want %d", len(byID), len(sessions))
			}
			for _, rs := range sessions {
				f := byID[rs.id]
				if f == nil {
					t.Fatalf("session %s not emitted", rs.id)
				}
				want := oracle(t, f.Filter, all)
				samePackets(t, frames(t, f.PCAP), want)
				wantReason := ReasonShutdown
				if rs.tuple.Proto == ProtoTCP {
					wantReason = ReasonFIN
					if slices.Contains([]string{"modbus-2", "s7-2", "s7-v6"}, rs.id) { // the aborted ones
						wantReason = ReasonRST
					}
				}
				if f.Reason != wantReason || f.PossiblyIncomplete {
					t.Errorf("session %s: reason %s (want %s), incomplete %v", rs.id, f.Reason, wantReason, f.PossiblyIncomplete)
				}
			}
			probes := d.Probes()
			if i := slices.IndexFunc(probes, func(p ProbeSummary) bool { return p.Source == mustAddr("192.0.2.66") }); i < 0 || len(probes[i].Ports) != 8 {
				t.Errorf("scanner missing from probe summaries: %+v", probes)
			}
			st := d.Stats()
			if st.FragmentsLost != 1 || st.Fragments != 2 || st.PacketsUnparsed != 2 {
				t.Errorf("stats: %+v", st)
			}
		})
	}
}

// oracle returns the packets of all that the session's program accepts, plus the
// non-first fragments of datagrams whose first fragment it accepted.
func oracle(t *testing.T, f Filter, all []Packet) []Packet {
	accept := vmFilter(t, f.Program)
	datagrams := map[fragKey]bool{}
	var out []Packet
	for _, p := range all {
		var pi pinfo
		parsed := parse(p.Data, &pi) == parseOK
		switch {
		case accept(p.Data):
			out = append(out, p)
			if parsed && pi.frag {
				datagrams[pi.fragKey()] = true
			}
		case parsed && !pi.hasPorts && datagrams[pi.fragKey()]:
			out = append(out, p)
		}
	}
	return out
}
