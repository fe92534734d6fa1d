package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
)

// minioServer is a MinIO server of the test's own, so that the test can take S3 away.
type minioServer struct {
	bin, dir, addr string
	cmd            *exec.Cmd
}

const faultUser, faultPass = "pcapot-fault", "pcapot-fault-secret"

func (m *minioServer) start(t *testing.T) {
	t.Helper()
	m.cmd = exec.Command(m.bin, "server", "--quiet", "--address", m.addr, "--console-address", "127.0.0.1:0", m.dir)
	m.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+faultUser, "MINIO_ROOT_PASSWORD="+faultPass)
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + m.addr + "/minio/health/live")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (m *minioServer) stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
		m.cmd = nil
	}
}

// TestS3OutageLosesNothing takes S3 away while attackers keep coming: sessions wait in
// the spool, survive a sensor restart, and reach the bucket when S3 is back.
func TestS3OutageLosesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	mbpoll := testenv.LookPath(t, "mbpoll")
	m := &minioServer{bin: testenv.MinIOBinary(t), dir: t.TempDir(), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	m.start(t)
	defer m.stop()

	bin := buildBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	store := []string{"--data", dir, "--s3-endpoint", m.addr, "--s3-bucket", "outage", "--s3-insecure",
		"--s3-access-key", faultUser, "--s3-secret-key", faultPass}
	run := append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--disable", "s7comm", "--disable", "http", "--disable", "snmp"}, store...)
	poll := func() {
		t.Helper()
		if out, err := exec.Command(mbpoll, "-m", "tcp", "-p", fmt.Sprint(port), "-a", "1", "-r", "1", "-c", "4", "-1", "127.0.0.1").CombinedOutput(); err != nil {
			t.Fatalf("mbpoll: %v\n%s", err, out)
		}
	}

	sp := startSensor(t, bin, run...) // S3 is up: the bucket is created
	poll()
	waitFor(t, 20*time.Second, func() bool { return len(sessionsList(t, bin, store)) == 1 })

	m.stop() // S3 goes away mid-run
	const during = 3
	for i := 0; i < during; i++ {
		poll()
	}
	spooled := func() int {
		ents, _ := filepath.Glob(filepath.Join(dir, "spool", "ready", "*", "manifest.json"))
		return len(ents)
	}
	waitFor(t, 20*time.Second, func() bool { return spooled() >= during })
	sp.stop(t) // and the sensor restarts while S3 is still down

	m.start(t) // S3 is back; a new sensor process finds the spool and uploads it
	sp = startSensor(t, bin, run...)
	waitFor(t, 60*time.Second, func() bool { return len(sessionsList(t, bin, store)) == 1+during })
	sp.stop(t)
	for _, s := range sessionsList(t, bin, store) {
		out := filepath.Join(dir, s.SessionID+".pcap")
		if b, err := exec.Command(bin, append([]string{"pcap", "get", s.SessionID, "-o", out}, store...)...).CombinedOutput(); err != nil || !strings.Contains(string(b), "verified") {
			t.Errorf("pcap get %s: %v\n%s", s.SessionID, err, b)
		}
	}
	if n := spooled(); n != 0 {
		t.Errorf("%d entries left in the spool after S3 came back", n)
	}
}
