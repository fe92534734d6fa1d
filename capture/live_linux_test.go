//go:build linux

package capture

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
)

// liveCapture runs a Live capture feeding a Demux, with a ticker, for a test.
type liveCapture struct {
	t      *testing.T
	live   *Live
	demux  *Demux
	sink   *sink
	cancel context.CancelFunc
	done   chan error
}

func startLiveCapture(t *testing.T, lc LiveConfig, cfg Config) *liveCapture {
	t.Helper()
	live, err := OpenLive(lc)
	if err != nil {
		t.Fatal(err)
	}
	d, s := newTestDemux(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	c := &liveCapture{t: t, live: live, demux: d, sink: s, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- live.Run(ctx, d.Handle) }()
	go func() {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tk.C:
				d.Tick(now)
			}
		}
	}()
	t.Cleanup(c.stop)
	return c
}

// stop ends Run, then closes the socket (the required order).
func (c *liveCapture) stop() {
	c.cancel()
	if c.done != nil {
		if err := <-c.done; err != nil {
			c.t.Errorf("Run: %v", err)
		}
		c.done = nil
	}
	if err := c.live.Close(); err != nil {
		c.t.Errorf("Close: %v", err)
	}
}

// waitParts waits until n sessions have ended.
func (c *liveCapture) waitParts(n int, timeout time.Duration) []*Finished {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := c.sink.parts()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d of %d sessions ended within %v; stats %+v", len(got), n, timeout, c.demux.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tcpdump is a reference capture written by tcpdump itself.
type tcpdump struct {
	t      *testing.T
	cmd    *exec.Cmd
	path   string
	done   chan error
	stderr strings.Builder // after "listening on": tcpdump's closing statistics
}

// startTcpdump starts `tcpdump -i iface -w file -U expr` (optionally inside netns) and
// waits until it is listening.
func startTcpdump(t *testing.T, netns, iface, expr string) *tcpdump {
	t.Helper()
	bin := testenv.LookPath(t, "tcpdump")
	path := filepath.Join(t.TempDir(), "ref.pcap")
	// Not --immediate-mode: libpcap then falls back to TPACKET_V2 with one
	// snaplen-sized frame per packet and drops bursts; stop() waits for the
	// TPACKET_V3 block timeout (1 s) instead.
	args := []string{bin, "-i", iface, "-n", "-B", "32768", "-U", "-w", path, expr}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	td := &tcpdump{t: t, cmd: cmd, path: path, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { close(ready) })
				continue
			}
			td.stderr.WriteString(sc.Text() + "; ")
		}
		_, _ = io.Copy(io.Discard, stderr)
		td.done <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-td.done:
		t.Fatalf("tcpdump exited: %v", err)
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("tcpdump did not start listening")
	}
	t.Cleanup(func() {
		if td.cmd.ProcessState == nil {
			_ = td.cmd.Process.Kill()
		}
	})
	return td
}

// stop interrupts tcpdump (it flushes) and returns the captured frames.
func (td *tcpdump) stop() []Packet {
	td.t.Helper()
	time.Sleep(1200 * time.Millisecond) // libpcap's ring block timeout is tcpdump's 1 s
	if err := td.cmd.Process.Signal(syscall.SIGINT); err != nil {
		td.t.Fatal(err)
	}
	select {
	case <-td.done:
	case <-time.After(10 * time.Second):
		td.t.Fatal("tcpdump did not stop")
	}
	td.t.Logf("tcpdump: %s", td.stderr.String())
	if strings.Contains(td.stderr.String(), "by filter") && !strings.Contains(td.stderr.String(), " 0 packets dropped by kernel") {
		td.t.Fatalf("the reference capture dropped packets: %s", td.stderr.String())
	}
	var out []Packet
	if err := ReadFile(td.path, func(p Packet) {
		out = append(out, Packet{Time: p.Time, Data: bytes.Clone(p.Data), Length: p.Length})
	}); err != nil {
		td.t.Fatal(err)
	}
	return out
}

// checkAgainstReference requires each session part to hold exactly the reference
// frames its own Filter.Program accepts, byte for byte and in order, and tshark to
// read the first tsharkSample of them (tshark takes ~150 ms per start).
func checkAgainstReference(t *testing.T, parts []*Finished, ref []Packet, tsharkSample int) {
	t.Helper()
	tshark := testenv.LookPath(t, "tshark")
	dir := t.TempDir()
	for i, f := range parts {
		accept := vmFilter(t, f.Filter.Program)
		var want [][]byte
		for _, p := range ref {
			if accept(p.Data) {
				want = append(want, p.Data)
			}
		}
		got := frames(t, f.PCAP)
		if len(got) != len(want) {
			t.Errorf("session %s (%v): %d packets, tcpdump has %d", f.ID, f.Tuple, len(got), len(want))
			continue
		}
		for i := range got {
			if !bytes.Equal(got[i].Data, want[i]) {
				t.Errorf("session %s packet %d differs from tcpdump's", f.ID, i)
				break
			}
		}
		if i >= tsharkSample {
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("session-%d.pcap", i))
		if err := os.WriteFile(path, f.PCAP, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tshark, "-n", "-r", path, "-T", "fields", "-e", "frame.number").Output()
		if err != nil {
			t.Fatalf("tshark -r %s: %v", path, err)
		}
		if n := len(strings.Fields(string(out))); n != len(got) {
			t.Errorf("tshark reads %d packets from session %s, want %d", n, f.ID, len(got))
		}
	}
}

// serveTCP accepts on ln, registers each connection with d from the Accept (as the
// sensor does) and answers every request line with one response line until EOF.
func serveTCP(t *testing.T, ln net.Listener, d *Demux) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tu := Tuple{ProtoTCP, c.RemoteAddr().(*net.TCPAddr).AddrPort(), c.LocalAddr().(*net.TCPAddr).AddrPort()}
		if err := d.Register(tu, "tcp-"+tu.Client.String()); err != nil {
			t.Errorf("Register: %v", err)
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := c.Write([]byte("response to " + line)); err != nil {
					return
				}
			}
		}()
	}
}

// talk makes one client connection with n request/response exchanges. With abort it
// ends with an RST (SO_LINGER 0) instead of a FIN.
func talk(dial func() (net.Conn, error), n int, abort bool) error {
	c, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	for i := range n {
		if _, err := fmt.Fprintf(c, "request %d %s\n", i, strings.Repeat("x", 10*i)); err != nil {
			return err
		}
		if _, err := r.ReadString('\n'); err != nil {
			return err
		}
	}
	if abort {
		return c.(*net.TCPConn).SetLinger(0)
	}
	return nil
}

// TestLiveLoopback captures concurrent TCP sessions on lo with the sensor filter,
// registers each from the server's Accept, and compares every session pcap with a
// tcpdump reference capture cut by the session's own filter.
func TestLiveLoopback(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			host := "127.0.0.1"
			if network == "tcp6" {
				host = "::1"
			}
			ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			srv := ln.Addr().(*net.TCPAddr).AddrPort()
			name, loopback, err := InterfaceFor(srv.Addr())
			if err != nil || !loopback {
				t.Fatalf("InterfaceFor(%v) = %q, %v, %v", srv.Addr(), name, loopback, err)
			}
			prog, expr, err := SensorFilter(SensorFilterConfig{Addrs: []netip.Addr{srv.Addr()}, TCPPorts: []uint16{srv.Port()}, Loopback: true})
			if err != nil {
				t.Fatal(err)
			}
			td := startTcpdump(t, "", name, fmt.Sprintf("port %d", srv.Port()))
			lc := startLiveCapture(t, LiveConfig{Interface: name, Filter: prog}, Config{Linger: 200 * time.Millisecond, Interface: name})
			go serveTCP(t, ln, lc.demux)

			const sessions = 8
			var wg sync.WaitGroup
			for i := range sessions {
				wg.Go(func() {
					if err := talk(func() (net.Conn, error) { return net.Dial(network, srv.String()) }, 3+i%3, false); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			parts := lc.waitParts(sessions, 10*time.Second)
			ref := td.stop()
			lc.stop()
			for _, f := range parts {
				if f.Reason != ReasonFIN || !f.Last || f.PossiblyIncomplete || f.ClientPackets < 6 {
					t.Errorf("session %s: %+v", f.ID, f)
				}
			}
			checkAgainstReference(t, parts, ref, len(parts))
			packets, drops := lc.live.Stats()
			t.Logf("expr %q: %d sessions, %d reference frames, socket packets %d drops %d, discarded at start %d",
				expr, len(parts), len(ref), packets, drops, lc.live.Discarded())
			if drops != 0 {
				t.Errorf("%d kernel drops", drops)
			}
		})
	}
}

// TestLiveLoopbackPrefix proves the PACKET_OUTGOING prefix in the kernel: on lo every
// datagram is seen twice without it and once with it.
func TestLiveLoopbackPrefix(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	count := func(loopback bool) int {
		prog, _, err := SensorFilter(SensorFilterConfig{Addrs: []netip.Addr{mustAddr("127.0.0.1")}, UDPPorts: []uint16{port}, Loopback: loopback})
		if err != nil {
			t.Fatal(err)
		}
		live, err := OpenLive(LiveConfig{Interface: "lo", Filter: prog})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		n := 0
		done := make(chan error, 1)
		go func() {
			done <- live.Run(ctx, func(p Packet) {
				var pi pinfo
				if parse(p.Data, &pi) == parseOK && pi.dst.port == port {
					mu.Lock()
					n++
					mu.Unlock()
				}
			})
		}()
		c, err := net.Dial("udp4", pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		time.Sleep(300 * time.Millisecond)
		if err := live.Close(); !errors.Is(err, ErrRunning) {
			t.Errorf("Close during Run: %v, want ErrRunning", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := live.Close(); err != nil {
			t.Fatal(err)
		}
		if err := live.Run(context.Background(), func(Packet) {}); !errors.Is(err, ErrLiveClosed) {
			t.Errorf("Run after Close: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		return n
	}
	if without, with := count(false), count(true); without != 40 || with != 20 {
		t.Fatalf("datagrams seen: %d without the prefix (want 40), %d with it (want 20)", without, with)
	}
}

func TestOpenLiveErrors(t *testing.T) {
	t.Parallel()
	prog, _, err := SensorFilter(SensorFilterConfig{TCPPorts: []uint16{502}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    LiveConfig
	}{
		{"no interface", LiveConfig{Filter: prog}},
		{"no filter", LiveConfig{Interface: "lo"}},
		{"unknown interface", LiveConfig{Interface: "pcapot-none0", Filter: prog}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OpenLive(tc.c); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestInterfaceFor(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"127.0.0.1", "127.0.0.53", "::ffff:127.0.0.1"} {
		name, lo, err := InterfaceFor(mustAddr(a))
		if err != nil || !lo || name == "" {
			t.Errorf("InterfaceFor(%s) = %q, %v, %v", a, name, lo, err)
		}
	}
	for _, a := range []string{"0.0.0.0", "192.0.2.254"} {
		if name, _, err := InterfaceFor(mustAddr(a)); err == nil {
			t.Errorf("InterfaceFor(%s) = %q, no error", a, name)
		}
	}
}

// TestOpenLiveWithoutCapNetRaw re-runs this test binary without CAP_NET_RAW (setpriv)
// and requires OpenLive to say what it needs.
func TestOpenLiveWithoutCapNetRaw(t *testing.T) {
	if os.Getenv("PCAPOT_CAPTURE_NO_CAP") == "1" {
		prog, _, err := SensorFilter(SensorFilterConfig{TCPPorts: []uint16{502}, Loopback: true})
		if err != nil {
			t.Fatal(err)
		}
		_, err = OpenLive(LiveConfig{Interface: "lo", Filter: prog})
		if !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "needs root or CAP_NET_RAW") {
			t.Fatalf("OpenLive without CAP_NET_RAW: %v", err)
		}
		return
	}
	testenv.RequireRoot(t)
	setpriv := testenv.LookPath(t, "setpriv")
	t.Parallel()
	cmd := exec.Command(setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw", os.Args[0], "-test.run=^TestOpenLiveWithoutCapNetRaw$", "-test.v")
	cmd.Env = append(os.Environ(), "PCAPOT_CAPTURE_NO_CAP=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("helper: %v\n%s", err, out)
	}
}
