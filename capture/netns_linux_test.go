//go:build linux

package capture

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pcapot/pcapot/internal/testenv"
)

// netnsPair is two network namespaces joined by a veth pair: "a" (attacker,
// 10.213.0.1 / fd00:213::1) and "s" (sensor, 10.213.0.2 / fd00:213::2).
type netnsPair struct {
	a, s           string // namespace names
	vethA, vethS   string
	addrA, addrS   netip.Addr
	addrA6, addrS6 netip.Addr
}

func newNetnsPair(t *testing.T) *netnsPair {
	t.Helper()
	testenv.RequireRoot(t)
	ip := testenv.LookPath(t, "ip")
	var r [3]byte
	_, _ = rand.Read(r[:])
	tag := hex.EncodeToString(r[:])
	n := &netnsPair{
		a: "pcapot-a-" + tag, s: "pcapot-s-" + tag, vethA: "pva" + tag, vethS: "pvs" + tag,
		addrA: mustAddr("10.213.0.1"), addrS: mustAddr("10.213.0.2"),
		addrA6: mustAddr("fd00:213::1"), addrS6: mustAddr("fd00:213::2"),
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", n.a)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", n.a).Run() })
	run("netns", "add", n.s)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", n.s).Run() })
	run("link", "add", n.vethA, "netns", n.a, "type", "veth", "peer", "name", n.vethS, "netns", n.s)
	for _, side := range []struct {
		ns, dev string
		v4, v6  netip.Addr
	}{{n.a, n.vethA, n.addrA, n.addrA6}, {n.s, n.vethS, n.addrS, n.addrS6}} {
		run("-n", side.ns, "link", "set", "lo", "up")
		run("-n", side.ns, "addr", "add", side.v4.String()+"/24", "dev", side.dev)
		run("-n", side.ns, "addr", "add", side.v6.String()+"/64", "dev", side.dev, "nodad")
		run("-n", side.ns, "link", "set", side.dev, "up")
	}
	return n
}

// in runs fn with the calling goroutine's thread in namespace ns; sockets fn creates
// stay in ns. It may be called from any goroutine.
func (n *netnsPair) in(ns string, fn func()) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it exits with the goroutine instead of serving
		// others in the wrong namespace.
		return fmt.Errorf("restore netns: %w", err)
	}
	runtime.UnlockOSThread()
	return nil
}

// TestNetnsManySessions captures, in the sensor's namespace on a veth, many
// concurrent TCP (IPv4 and IPv6) and UDP sessions from the attacker's namespace, a
// third of the TCP ones aborted with an RST, written as pcapng, and requires every
// session file to equal tcpdump's reference capture cut by the session's filter (and
// tshark to read a sample).
func TestNetnsManySessions(t *testing.T) {
	n := newNetnsPair(t)
	t.Parallel()
	var (
		tcp4, tcp6 net.Listener
		udp        net.PacketConn
		lc         *liveCapture
		td         *tcpdump
	)
	err := n.in(n.s, func() {
		var err error
		if tcp4, err = net.Listen("tcp4", n.addrS.String()+":502"); err != nil {
			t.Fatal(err)
		}
		if tcp6, err = net.Listen("tcp6", "["+n.addrS6.String()+"]:502"); err != nil {
			t.Fatal(err)
		}
		if udp, err = net.ListenPacket("udp4", n.addrS.String()+":161"); err != nil {
			t.Fatal(err)
		}
		prog, _, err := SensorFilter(SensorFilterConfig{Addrs: []netip.Addr{n.addrS, n.addrS6}, TCPPorts: []uint16{502}, UDPPorts: []uint16{161}})
		if err != nil {
			t.Fatal(err)
		}
		lc = startLiveCapture(t, LiveConfig{Interface: n.vethS, Filter: prog}, Config{Format: FormatPCAPNG, Linger: 300 * time.Millisecond, UDPIdle: 700 * time.Millisecond, Interface: n.vethS})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tcp4.Close()
	defer tcp6.Close()
	defer udp.Close()
	td = startTcpdump(t, n.s, n.vethS, "port 502 or port 161")

	go serveTCP(t, tcp4, lc.demux)
	go serveTCP(t, tcp6, lc.demux)
	go serveUDP(t, udp, lc.demux)

	const tcpSessions, udpFlows = 300, 100
	var wg sync.WaitGroup
	for i := range tcpSessions {
		wg.Go(func() {
			target := n.addrS.String() + ":502"
			if i%4 == 3 {
				target = "[" + n.addrS6.String() + "]:502"
			}
			dial := func() (c net.Conn, err error) {
				if nsErr := n.in(n.a, func() { c, err = net.DialTimeout("tcp", target, 5*time.Second) }); nsErr != nil {
					return nil, nsErr
				}
				return c, err
			}
			if err := talk(dial, 2+i%4, i%3 == 0); err != nil {
				t.Error(err)
			}
		})
	}
	for i := range udpFlows {
		wg.Go(func() {
			var c net.Conn
			var err error
			if nsErr := n.in(n.a, func() { c, err = net.Dial("udp4", n.addrS.String()+":161") }); nsErr != nil {
				err = nsErr
			}
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			buf := make([]byte, 512)
			for j := range 2 + i%3 {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprintf(c, "get %d.%d", i, j); err != nil {
					t.Error(err)
					return
				}
				if _, err := c.Read(buf); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	parts := lc.waitParts(tcpSessions+udpFlows, 15*time.Second)
	ref := td.stop()
	lc.stop()

	reasons := map[string]int{}
	for _, f := range parts {
		reasons[f.Reason]++
		if !f.Last || f.Part != 1 || f.PossiblyIncomplete {
			t.Errorf("session %s (%v): part %d last %v incomplete %v", f.ID, f.Tuple, f.Part, f.Last, f.PossiblyIncomplete)
		}
	}
	if reasons[ReasonRST] != tcpSessions/3 || reasons[ReasonFIN] != tcpSessions-tcpSessions/3 || reasons[ReasonIdle] != udpFlows {
		t.Errorf("reasons %v", reasons)
	}
	checkAgainstReference(t, parts, ref, 4)
	packets, drops := lc.live.Stats()
	st := lc.demux.Stats()
	t.Logf("%d sessions, %d reference frames, socket %d packets %d drops, demux %+v", len(parts), len(ref), packets, drops, st)
	if drops != 0 || st.PacketsMatched != uint64(len(ref)) {
		t.Errorf("drops %d, matched %d of %d reference frames", drops, st.PacketsMatched, len(ref))
	}
}

// serveUDP answers every datagram and registers each new remote at its first
// datagram, as the sensor does.
func serveUDP(t *testing.T, pc net.PacketConn, d *Demux) {
	local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	seen := map[netip.AddrPort]bool{}
	buf := make([]byte, 2048)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		remote := addr.(*net.UDPAddr).AddrPort()
		if !seen[remote] {
			seen[remote] = true
			if err := d.Register(Tuple{ProtoUDP, remote, local}, "udp-"+remote.String()); err != nil {
				t.Errorf("Register: %v", err)
			}
		}
		if _, err := pc.WriteTo(append([]byte("value of "), buf[:n]...), addr); err != nil {
			return
		}
	}
}
