package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/sensor"
)

// TestFTPUploadEvidence: an attacker logs in to the device's FTP server, reads a file
// and uploads one (passive mode). The control connection and each data connection are
// sessions of their own with complete pcaps; the upload is stored beside the control
// session's pcap, under the sensor's name for it, with the hash the incident names.
func TestFTPUploadEvidence(t *testing.T) {
	testenv.RequireRoot(t)
	py := testenv.Python(t)
	tshark := testenv.LookPath(t, "tshark")
	bin := buildBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	persona := filepath.Join(dir, "plc-ftp.yaml")
	os.WriteFile(persona, []byte(`name: plc-ftp
identity:
  vendor: Schneider Electric
  product: Modicon M340
  model: BMX P34 2020
  order_number: BMXP342020
  firmware: v3.40
  hardware: PV 07
  hostname: m340-test
generate:
  serial: "21########"
  mac_oui: "00:80:f4"
services:
  ftp: 21
`), 0o600)
	sp := startSensor(t, bin, "--data", dir, "--persona", persona, "--listen", "127.0.0.1", "--port", fmt.Sprintf("ftp=%d", port))
	payload := "#!/bin/sh\n# attacker's logic bomb \x00\xff\n" + strings.Repeat("A", 5000)
	script := fmt.Sprintf(`
import ftplib, io, sys
f = ftplib.FTP()
f.connect("127.0.0.1", %d, timeout=10)
f.login("USER", "USER")
f.set_pasv(True)
buf = io.BytesIO()
f.retrbinary("RETR /sys/version.txt", buf.write)
assert b"BMX P34 2020" in buf.getvalue(), buf.getvalue()
f.storbinary("STOR /data/evil;rm -rf $(id).sh", io.BytesIO(sys.stdin.buffer.read()))
f.quit()
`, port)
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(payload)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ftplib: %v\n%s", err, out)
	}
	var list []sensor.SessionInfo
	waitFor(t, 30*time.Second, func() bool {
		list = sessionsList(t, bin, []string{"--data", dir})
		return len(list) == 3
	})
	sp.stop(t)
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "evil") {
			t.Errorf("a file is named after the attacker's upload: %s", p)
		}
		return nil
	})
	var control *sensor.SessionInfo
	data := 0
	for i, s := range list {
		switch s.Protocol {
		case "ftp":
			control = &list[i]
		case "ftp-data":
			data++
			out := filepath.Join(dir, s.SessionID+".pcap")
			if b, err := exec.Command(bin, "pcap", "get", s.SessionID, "-o", out, "--data", dir).CombinedOutput(); err != nil {
				t.Fatalf("pcap get: %v\n%s", err, b)
			}
			frames := readFrames(t, out)
			if len(frames) < 6 || frames[0][47]&0x02 == 0 {
				t.Errorf("data session pcap has %d packets and does not start with the SYN", len(frames))
			}
			if mal, _ := exec.Command(tshark, "-r", out, "-Y", "_ws.malformed || _ws.expert.severity >= error").Output(); len(bytes.TrimSpace(mal)) != 0 {
				t.Errorf("tshark: malformed packets in the data session:\n%s", mal)
			}
		}
	}
	if control == nil || data != 2 {
		t.Fatalf("want one ftp and two ftp-data sessions, got %+v", list)
	}
	st, err := incidents.NewFolderStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	bundle, _, err := st.Get(context.Background(), control.BundleKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(payload))
	want := hex.EncodeToString(sum[:])
	if !bytes.Contains(bundle, []byte(want)) || !bytes.Contains(bundle, []byte(`"type":"file"`)) {
		t.Fatalf("the control session's incident does not name the upload by its SHA-256 %s", want)
	}
	fileKey, err := incidents.FileKey(control.PCAPs[0].Key, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, meta, err := st.Get(context.Background(), fileKey)
	if err != nil {
		t.Fatalf("stored upload %s: %v", fileKey, err)
	}
	if string(got) != payload || meta.SHA256 != want {
		t.Fatalf("stored upload differs from what the attacker sent (%d bytes, sha %s)", len(got), meta.SHA256)
	}
}
