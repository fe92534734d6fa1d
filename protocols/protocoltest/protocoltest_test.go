package protocoltest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
)

// greeter writes a greeting, then reads until the peer closes or ctx is cancelled and
// reports what it read in one event.
type greeter struct{ fail error }

func (g greeter) ServeStream(ctx context.Context, s protocols.Session, c net.Conn) error {
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write([]byte("hello")); err != nil && !protocols.PeerGone(err) {
		return err
	}
	var got bytes.Buffer
	_, err := io.Copy(&got, c)
	s.Emit(protocols.Event{Op: "read", Data: got.Bytes()})
	if err != nil && !protocols.PeerGone(err) {
		return err
	}
	return g.fail
}

func TestDrive(t *testing.T) {
	for _, end := range []End{Cancel, Hangup} {
		out, evs, err := Drive(t, greeter{}, []byte("abc"), end, 5*time.Second)
		if string(out) != "hello" || err != nil || len(evs) != 1 || string(evs[0].Data) != "abc" {
			t.Errorf("end %d: out %q, events %+v, err %v", end, out, evs, err)
		}
	}
	boom := errors.New("boom")
	if _, _, err := Drive(t, greeter{fail: boom}, nil, Hangup, 5*time.Second); !errors.Is(err, boom) {
		t.Errorf("err %v, want %v", err, boom)
	}
}

func TestCancelEnds(t *testing.T) {
	CancelEnds(t, greeter{})
}

func TestUnhex(t *testing.T) {
	if got := Unhex(t, "0564 05c0 01"); !bytes.Equal(got, []byte{0x05, 0x64, 0x05, 0xc0, 0x01}) {
		t.Fatalf("Unhex = % x", got)
	}
}

func TestPcap(t *testing.T) {
	var p Pcap
	p.UDP(40000, 47808, []byte("udp"))
	p.TCP(47808, 40000, 7, 9, []byte("tcp!"))
	b := p.buf
	if !bytes.Equal(b[:24], pcapHeader) {
		t.Fatalf("header % x", b[:24])
	}
	b = b[24:]
	for i, want := range []struct {
		proto byte
		len   int
	}{{17, 20 + 8 + 3}, {6, 20 + 20 + 4}} {
		ts, n := binary.LittleEndian.Uint32(b), int(binary.LittleEndian.Uint32(b[8:]))
		if ts != uint32(1741944615+i) || n != want.len || int(binary.LittleEndian.Uint32(b[12:])) != n {
			t.Fatalf("record %d: ts %d, length %d", i, ts, n)
		}
		ip := b[16 : 16+20]
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[j:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		if sum != 0xffff || ip[9] != want.proto || int(binary.BigEndian.Uint16(ip[2:])) != n {
			t.Fatalf("packet %d: IPv4 header % x", i, ip)
		}
		b = b[16+n:]
	}
	if len(b) != 0 {
		t.Fatalf("%d octets after the packets", len(b))
	}
	testenv.LookPath(t, "tshark")
	out := Tshark(t, p.Write(t, "test.pcap"), "-T", "fields", "-e", "udp.srcport", "-e", "tcp.srcport", "-e", "tcp.seq_raw", "-e", "data.data")
	if got, want := strings.Fields(string(out)), []string{"40000", "756470", "47808", "7", "74637021"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("tshark reads %q, want %q", got, want)
	}
}

// TestCapture records a loopback exchange with tcpdump and reads it back with tshark.
func TestCapture(t *testing.T) {
	testenv.LookPath(t, "tshark")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	capture := StartCapture(t, port)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 200
	buf := make([]byte, 5)
	for range rounds {
		if _, err := c.Write([]byte("ping!")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	pcap := capture.Stop()
	if again := capture.Stop(); again != pcap {
		t.Fatalf("second Stop: %s, first %s", again, pcap)
	}
	out := Tshark(t, pcap, "-Y", "tcp.len == 5", "-T", "fields", "-e", "tcp.srcport")
	if n := strings.Count(string(out), "\n"); n != 2*rounds {
		t.Fatalf("%d data segments captured, want %d:\n%s", n, 2*rounds, out)
	}
	if !strings.Contains(string(out), strconv.Itoa(int(port))) {
		t.Fatalf("no segment from port %d", port)
	}
	TsharkClean(t, pcap, TsharkBad)
}

func TestServerEvents(t *testing.T) {
	srv := ServeTCP(t, "", greeter{})
	for _, in := range []string{"one", "two"} {
		c := srv.Dial(t)
		c.Write([]byte(in))
		c.Close()
		srv.WaitEvent(t, "read", func(e protocols.Event) bool { return string(e.Data) == in })
	}
	if evs := srv.Events(); len(evs) != 2 || string(evs[0].Data) != "one" || string(evs[1].Data) != "two" {
		t.Fatalf("events %+v", evs)
	}
	start := time.Now()
	if evs, ok := srv.WaitEvents(50*time.Millisecond, func(evs []protocols.Event) bool { return len(evs) > 2 }); ok || len(evs) != 2 {
		t.Fatalf("WaitEvents = %d events, %v", len(evs), ok)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("WaitEvents gave up after %v", d)
	}
}

type testConfig struct{}

func TestCheckSpec(t *testing.T) {
	spec := protocols.Spec{
		Name: "greeter", Transport: protocols.TCP, Port: 7, Service: "echo",
		NewConfig: func() any { return &testConfig{} },
		New: protocols.NewFunc("greeter", func(protocols.Env, *testConfig) (greeter, error) {
			return greeter{}, nil
		}),
	}
	if h := CheckSpec(t, spec, protocols.Spec{Name: "greeter", Transport: protocols.TCP, Port: 7, Service: "echo"}, Env(t, Identity())); h != (greeter{}) {
		t.Fatalf("handler %#v", h)
	}
}

func TestServePipe(t *testing.T) {
	p := ServePipe(t, context.Background(), greeter{}, NewSession(t, netip.MustParseAddrPort("127.0.0.1:7"), netip.MustParseAddrPort("127.0.0.1:40000")))
	hello := make([]byte, 5)
	if _, err := io.ReadFull(p, hello); err != nil || string(hello) != "hello" {
		t.Fatalf("read %q: %v", hello, err)
	}
	p.Write([]byte("abc"))
	p.Close()
	if err := p.Wait(t, 2*time.Second); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if evs := p.Session.EventsOf("read"); len(evs) != 1 || string(evs[0].Data) != "abc" || len(p.Session.EventsOf("write")) != 0 {
		t.Fatalf("events %+v", p.Session.Events())
	}
	if !HasOp("read", nil)(p.Session.Events()) || HasOp("read", func(e protocols.Event) bool { return len(e.Data) == 0 })(p.Session.Events()) {
		t.Fatal("HasOp")
	}
}

// replier answers each datagram n times and keeps it as a file.
type replier struct{ n int }

func (r replier) ServeDatagram(_ context.Context, s protocols.Session, req []byte, reply func([]byte) error) error {
	s.KeepFile(protocols.File{Name: "req", Data: req})
	for range r.n {
		reply(append([]byte("re:"), req...))
	}
	return nil
}

func TestReply(t *testing.T) {
	s := NewSession(t, netip.MustParseAddrPort("127.0.0.1:69"), netip.MustParseAddrPort("127.0.0.1:40000"))
	if got := Reply(t, replier{1}, s, []byte("x")); string(got) != "re:x" {
		t.Fatalf("Reply = %q", got)
	}
	if got := Reply(t, replier{0}, s, []byte("y")); got != nil {
		t.Fatalf("Reply without an answer = %q", got)
	}
	srv := ServeUDP(t, "", replier{1})
	c, err := net.Dial("udp", srv.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("z"))
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	if f := srv.Files(); len(f) != 1 || string(f[0].Data) != "z" {
		t.Fatalf("Files = %+v", f)
	}
}

type refusing struct{ Bad bool }

func TestRefuseConfigs(t *testing.T) {
	New := func(env protocols.Env, c *refusing) (greeter, error) {
		if env.Identity == nil || c.Bad {
			return greeter{}, protocols.ErrConfig
		}
		return greeter{}, nil
	}
	RefuseConfigs(t, func() *refusing { return &refusing{} }, New, Identity, BadConfigs[refusing]{
		{"bad", func(c *refusing) { c.Bad = true }},
	})
}
