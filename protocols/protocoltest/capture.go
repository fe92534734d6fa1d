package protocoltest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
)

// Capture is a tcpdump capture of the loopback traffic of one TCP port.
type Capture struct {
	t       testing.TB
	path    string
	cmd     *exec.Cmd
	stderr  *watchWriter
	exited  chan struct{}
	stopped bool
}

// StartCapture runs tcpdump on lo for TCP port port until Stop or the end of the test.
// It needs root and tcpdump (testenv decides whether their absence skips or fails).
// tcpdump writes each packet as libpcap hands it over (-U) from an 8 MiB buffer; it
// does not use --immediate-mode, with which libpcap drops packets of a burst.
func StartCapture(t testing.TB, port uint16) *Capture {
	t.Helper()
	testenv.RequireRoot(t)
	tcpdump := testenv.LookPath(t, "tcpdump")
	c := &Capture{
		t:      t,
		path:   filepath.Join(t.TempDir(), "capture.pcap"),
		stderr: &watchWriter{want: "listening on", seen: make(chan struct{})},
		exited: make(chan struct{}),
	}
	c.cmd = exec.Command(tcpdump, "-i", "lo", "-B", "8192", "-U", "-n", "-w", c.path, "tcp port "+strconv.Itoa(int(port)))
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()
	select {
	case <-c.stderr.seen:
	case <-c.exited:
		t.Fatalf("tcpdump exited: %s", c.stderr.String())
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
		t.Fatalf("tcpdump did not start: %s", c.stderr.String())
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

var dropped = regexp.MustCompile(`(?m)^(\d+) packets? dropped by (kernel|interface)`)

// Stop waits until tcpdump has written what libpcap still buffers, stops it and
// returns the path of the pcap. The test fails when tcpdump reports dropped packets.
// Stop may be called more than once.
func (c *Capture) Stop() string {
	c.t.Helper()
	if c.stopped {
		return c.path
	}
	c.stopped = true
	// libpcap hands packets over in ring blocks (timeout 1 s) and tcpdump writes each as
	// it gets it (-U): wait for the block timeout, then until the file stops growing.
	time.Sleep(1200 * time.Millisecond)
	var last int64 = -1
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(400 * time.Millisecond)
		fi, err := os.Stat(c.path)
		if err == nil && fi.Size() == last {
			break
		}
		if err == nil {
			last = fi.Size()
		}
	}
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
		c.t.Fatalf("tcpdump did not stop: %s", c.stderr.String())
	}
	out := c.stderr.String()
	if !strings.Contains(out, "packets captured") {
		c.t.Fatalf("tcpdump printed no statistics:\n%s", out)
	}
	for _, m := range dropped.FindAllStringSubmatch(out, -1) {
		if m[1] != "0" {
			c.t.Fatalf("tcpdump dropped packets, the capture is incomplete:\n%s", out)
		}
	}
	return c.path
}

// watchWriter keeps what a program writes and closes seen once want appears in it.
type watchWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TsharkBad is the display filter of frames that a dissector could not decode
// cleanly: malformed, or with expert information of severity error.
const TsharkBad = "_ws.malformed || _ws.expert.severity >= error"

// Tshark runs tshark -r pcap with args and returns its standard output; the test fails
// when tshark fails.
func Tshark(t testing.TB, pcap string, args ...string) []byte {
	t.Helper()
	tshark := testenv.LookPath(t, "tshark")
	var stderr bytes.Buffer
	cmd := exec.Command(tshark, append([]string{"-r", pcap}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// TsharkClean fails the test when a frame of pcap matches the display filter bad
// (TsharkBad, or stricter), dissected with the options args (such as "-d
// tcp.port==PORT,dnp3" for a protocol on a port tshark does not know it on).
func TsharkClean(t testing.TB, pcap, bad string, args ...string) {
	t.Helper()
	if out := Tshark(t, pcap, append(append([]string(nil), args...), "-Y", bad)...); len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("tshark finds frames matching %q:\n%s", bad, out)
	}
}
