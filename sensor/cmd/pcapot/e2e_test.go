package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pcapot/pcapot/incidents/stixcheck"
	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/sensor"
)

// buildBinary compiles the pcapot command once per test binary (pure Go, as shipped).
// buildBinary builds the sensor as shipped (CGO_ENABLED=0), or, with
// PCAPOT_TEST_RACE=1, with the race detector (which needs cgo): a race then makes the
// sensor exit with status 66, which fails the test that stops it.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pcapot")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if os.Getenv("PCAPOT_TEST_RACE") == "1" {
		cmd = exec.Command("go", "build", "-race", "-o", bin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// sensorProc is a running `pcapot run`.
type sensorProc struct {
	cmd    *exec.Cmd
	stdout *bytes.Buffer
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startSensor(t *testing.T, bin string, args ...string) *sensorProc {
	t.Helper()
	if !slices.Contains(args, "--api") {
		args = append(args, "--api", "127.0.0.1:0") // tests run side by side
	}
	cmd := exec.Command(bin, append([]string{"run"}, args...)...)
	sp := &sensorProc{cmd: cmd, stdout: &bytes.Buffer{}, stderr: &lockedBuffer{}}
	pr, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = sp.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready, exited := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			sp.stdout.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "storing:") {
				close(ready)
			}
		}
		close(exited) // stdout closed: the process is gone
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("sensor exited at start:\n%s\n%s", sp.stdout, sp.stderr)
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sensor did not start:\n%s\n%s", sp.stdout, sp.stderr)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return sp
}

func (sp *sensorProc) stop(t *testing.T) {
	t.Helper()
	sp.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- sp.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sensor exit: %v\n%s", err, sp.stderr)
		}
	case <-time.After(60 * time.Second):
		sp.cmd.Process.Kill()
		t.Fatalf("sensor did not stop on SIGTERM\n%s", sp.stderr)
	}
}

// readFrames returns the frames of a pcap file in order.
func readFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, append([]byte(nil), data...))
	}
}

// TestEndToEndModbusS3 is the vertical slice: the real sensor binary on loopback with
// MinIO, real Modbus clients (mbpoll and pymodbus) in concurrent sessions, a tcpdump
// reference capture alongside; every session's pcap must equal the reference capture
// filtered by the session's own BPF expression, dissect cleanly in tshark, and come
// with a valid STIX bundle whose artifact hash `pcap get` verifies.
func TestEndToEndModbusS3(t *testing.T) {
	testenv.RequireRoot(t)
	tcpdump := testenv.LookPath(t, "tcpdump")
	tshark := testenv.LookPath(t, "tshark")
	mbpoll := testenv.LookPath(t, "mbpoll")
	py := testenv.Python(t)
	s3 := testenv.RequireS3(t)
	schemas := filepath.Join("..", "..", "..", "..", "shared", "stix2-json-schemas")
	checker, err := stixcheck.New(schemas)
	if err != nil {
		t.Fatalf("schemas: %v", err)
	}

	bin := buildBinary(t)
	port := freePort(t)
	dir := t.TempDir()
	bucket := fmt.Sprintf("pcapot-e2e-%d", time.Now().UnixNano())
	s3flags := []string{"--data", dir, "--s3-endpoint", s3.Endpoint, "--s3-bucket", bucket, "--s3-insecure",
		"--s3-access-key", s3.AccessKey, "--s3-secret-key", s3.SecretKey}

	// Reference capture first, so that it sees every handshake.
	ref := filepath.Join(dir, "ref.pcap")
	td := exec.Command(tcpdump, "-i", "lo", "-U", "-n", "-s", "0", "-w", ref, fmt.Sprintf("tcp port %d", port))
	tdErr := &lockedBuffer{}
	td.Stderr = tdErr
	if err := td.Start(); err != nil {
		t.Fatal(err)
	}
	defer td.Process.Kill()
	waitFor(t, 10*time.Second, func() bool { return strings.Contains(tdErr.String(), "listening on") })

	sp := startSensor(t, bin, append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--sensor-id", "e2e-sensor",
		"--disable", "s7comm", "--disable", "http", "--disable", "snmp"}, s3flags...)...)

	// Several concurrent sessions from two real clients.
	const mbpolls = 4
	var wg sync.WaitGroup
	errs := make(chan error, mbpolls+2)
	for i := 0; i < mbpolls; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			args := []string{"-m", "tcp", "-p", fmt.Sprint(port), "-a", "1", "-r", fmt.Sprint(1 + i), "-c", "10", "-1", "127.0.0.1"}
			if out, err := exec.Command(mbpoll, args...).CombinedOutput(); err != nil {
				errs <- fmt.Errorf("mbpoll %v: %v\n%s", args, err, out)
			}
		}(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		script := fmt.Sprintf(`
from pymodbus.client import ModbusTcpClient
c = ModbusTcpClient("127.0.0.1", port=%d)
assert c.connect()
r = c.read_holding_registers(0, 8, slave=1)
assert not r.isError(), r
w = c.write_register(3, 1234, slave=1)
assert not w.isError(), w
r = c.read_holding_registers(3, 1, slave=1)
assert r.registers == [1234], r.registers
c.close()
`, port)
		if out, err := exec.Command(py, "-c", script).CombinedOutput(); err != nil {
			errs <- fmt.Errorf("pymodbus: %v\n%s", err, out)
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	const sessions = mbpolls + 1

	// Sessions end on FIN+linger; wait until every bundle is in the bucket.
	var list []sensor.SessionInfo
	waitFor(t, 30*time.Second, func() bool {
		list = sessionsList(t, bin, s3flags)
		return len(list) >= sessions
	})
	sp.stop(t)
	td.Process.Signal(syscall.SIGTERM)
	td.Wait()
	if len(list) != sessions {
		t.Fatalf("sessions list: %d sessions, want %d", len(list), sessions)
	}

	for _, s := range list {
		t.Run(s.SessionID, func(t *testing.T) {
			out := filepath.Join(dir, s.SessionID+".pcap")
			if b, err := exec.Command(bin, append([]string{"pcap", "get", s.SessionID, "-o", out}, s3flags...)...).CombinedOutput(); err != nil {
				t.Fatalf("pcap get: %v\n%s", err, b)
			}
			got := readFrames(t, out)
			// The reference: tcpdump's own capture filtered by the session's expression.
			want := filepath.Join(dir, s.SessionID+".ref.pcap")
			if b, err := exec.Command(tcpdump, "-r", ref, "-w", want, s.Filter).CombinedOutput(); err != nil {
				t.Fatalf("tcpdump -r with %q: %v\n%s", s.Filter, err, b)
			}
			wantFrames := readFrames(t, want)
			if len(got) != len(wantFrames) {
				t.Fatalf("session pcap has %d packets, tcpdump saw %d for %q", len(got), len(wantFrames), s.Filter)
			}
			for i := range got {
				if !bytes.Equal(got[i], wantFrames[i]) {
					t.Fatalf("packet %d differs from tcpdump's", i+1)
				}
			}
			if len(got) < 8 || got[0][47]&0x02 == 0 {
				t.Fatalf("session pcap does not start with the SYN (%d packets)", len(got))
			}
			if s.Packets != int64(len(got)) {
				t.Errorf("incident says %d packets, pcap has %d", s.Packets, len(got))
			}
			// tshark dissects Modbus in it, with nothing malformed.
			decode := fmt.Sprintf("tcp.port==%d,mbtcp", port)
			mal, err := exec.Command(tshark, "-r", out, "-d", decode, "-Y", "_ws.malformed || _ws.expert.severity >= error").Output()
			if err != nil || len(bytes.TrimSpace(mal)) != 0 {
				t.Errorf("tshark reports malformed packets (%v):\n%s", err, mal)
			}
			mb, err := exec.Command(tshark, "-r", out, "-d", decode, "-Y", "modbus").Output()
			if err != nil || len(bytes.TrimSpace(mb)) == 0 {
				t.Errorf("tshark finds no Modbus PDU in the session pcap (%v)", err)
			}
			// The bundle validates and names the pcap by URL and hash.
			bundle := getObject(t, bin, s3flags, s.BundleKey)
			for _, e := range checker.CheckBundle(bundle) {
				t.Errorf("bundle: %v", e)
			}
			if !bytes.Contains(bundle, []byte(s.PCAPs[0].SHA256)) || !strings.Contains(s.PCAPs[0].URL, bucket) {
				t.Errorf("bundle does not name the stored pcap by hash and bucket URL: %+v", s.PCAPs[0])
			}
		})
	}
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !ok() {
		t.Fatalf("condition not met within %v", d)
	}
}

func sessionsList(t *testing.T, bin string, storeFlags []string) []sensor.SessionInfo {
	t.Helper()
	out, err := exec.Command(bin, append([]string{"sessions", "list", "--json"}, storeFlags...)...).Output()
	if err != nil {
		t.Logf("sessions list: %v", err)
		return nil
	}
	var list []sensor.SessionInfo
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var s sensor.SessionInfo
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("sessions list --json: %v", err)
		}
		list = append(list, s)
	}
	return list
}

// getObject reads one object through the store, as the sensor wrote it.
func getObject(t *testing.T, bin string, storeFlags []string, key string) []byte {
	t.Helper()
	f := newConfigFlags("get", false)
	if err := f.parse(storeFlags); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	st, err := sensor.OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return b
}
