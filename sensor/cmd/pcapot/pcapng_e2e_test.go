package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
)

// TestPCAPNGEventComments runs the sensor with pcapng output: mbpoll reads holding
// registers twice, and the session's pcapng, fetched with `pcap get` (which checks its
// SHA-256 against the incident), carries each Modbus event as the comment of the
// request packet that caused it, keeps the interface's filter, and dissects cleanly.
func TestPCAPNGEventComments(t *testing.T) {
	testenv.RequireRoot(t)
	mbpoll := testenv.LookPath(t, "mbpoll")
	tshark := testenv.LookPath(t, "tshark")
	bin := buildBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	sp := startSensor(t, bin, "--data", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--capture-format", "pcapng",
		"--disable", "s7comm", "--disable", "http", "--disable", "snmp")
	if out, err := exec.Command(mbpoll, "-m", "tcp", "-p", fmt.Sprint(port), "-a", "1", "-r", "1", "-c", "4", "-l", "200", "-1", "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("mbpoll: %v\n%s", err, out)
	}
	store := []string{"--data", dir}
	waitFor(t, 30*time.Second, func() bool { return len(sessionsList(t, bin, store)) == 1 })
	sp.stop(t)
	s := sessionsList(t, bin, store)[0]
	if s.PCAPs[0].MimeType != "application/x-pcapng" {
		t.Fatalf("mime type %q", s.PCAPs[0].MimeType)
	}
	file := filepath.Join(dir, "session.pcapng")
	if out, err := exec.Command(bin, "pcap", "get", s.SessionID, "-o", file, "--data", dir).CombinedOutput(); err != nil {
		t.Fatalf("pcap get (verifies the SHA-256): %v\n%s", err, out)
	}
	decode := fmt.Sprintf("tcp.port==%d,mbtcp", port)
	out, err := exec.Command(tshark, "-r", file, "-d", decode, "-Y", "frame.comment",
		"-T", "fields", "-E", "separator=|", "-e", "tcp.dstport", "-e", "modbus.func_code", "-e", "frame.comment").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d packets with comments, want the one request (mbpoll -1 sends one):\n%s", len(lines), out)
	}
	f := strings.SplitN(lines[0], "|", 3)
	if len(f) != 3 || f[0] != fmt.Sprint(port) || f[1] != "3" ||
		!strings.HasPrefix(f[2], "pcapot modbus read_holding_registers code=3 unit=1 area=holding_registers address=0 quantity=4") {
		t.Errorf("comment not on the request to port %d, or not its event: %q", port, lines[0])
	}
	filter, err := exec.Command(tshark, "-r", file, "-T", "fields", "-e", "frame.interface_name", "-c", "1").Output()
	if err != nil || strings.TrimSpace(string(filter)) != "lo" {
		t.Errorf("interface name %q (%v)", filter, err)
	}
	if mal, err := exec.Command(tshark, "-r", file, "-d", decode, "-Y", "_ws.malformed || _ws.expert.severity >= error").Output(); err != nil || len(strings.TrimSpace(string(mal))) != 0 {
		t.Errorf("tshark reports malformed packets (%v):\n%s", err, mal)
	}
}
