package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcapot/pcapot/internal/testenv"
)

// Bad input ends with one clear line on stderr and a non-zero exit.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("listen: 127.0.0.1\ncaptur:\n  format: pcap\n"), 0o600)
	badPersona := filepath.Join(dir, "p.yaml")
	os.WriteFile(badPersona, []byte("name: x\nidentity:\n  vendor: X\n  colour: red\nservices:\n  modbus: 502\n  telnet: 23\n"), 0o600)
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no command", nil, 2, []string{"Usage"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`}},
		{"unknown flag", []string{"run", "--bogus"}, 2, []string{"flag provided but not defined: -bogus", "pcapot run -h"}},
		{"bad listen port", []string{"run", "--listen", "127.0.0.1:99999"}, 2, []string{"--listen"}},
		{"malformed config", []string{"run", "--config", badCfg, "--data", dir}, 1, []string{`bad.yaml:2: unknown key "captur"`}},
		{"missing config", []string{"run", "--config", filepath.Join(dir, "nope.yaml")}, 1, []string{"no such file"}},
		{"s3 without bucket", []string{"run", "--data", dir, "--s3-endpoint", "127.0.0.1:1", "--s3-access-key", "a", "--s3-secret-key", "b"}, 1, []string{"s3.bucket"}},
		{"unreachable s3", []string{"run", "--data", dir, "--s3-endpoint", "127.0.0.1:1", "--s3-bucket", "honeypot", "--s3-access-key", "a", "--s3-secret-key", "b", "--s3-insecure"}, 1, []string{"127.0.0.1:1"}},
		{"pcap get without id", []string{"pcap", "get", "-o", "x"}, 2, []string{"pcapot pcap get SESSION-ID -o FILE"}},
		{"pcap get bad id", []string{"pcap", "get", "../../etc/passwd", "-o", filepath.Join(dir, "x"), "--data", dir}, 1, []string{"not a session id"}},
		{"validate bad persona", []string{"validate", "--persona", badPersona}, 1, []string{`p.yaml:4: unknown key "colour" in identity`, `services.telnet: unknown protocol`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
			all := out.String() + errb.String()
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("output does not contain %q:\n%s", w, all)
				}
			}
			if tt.code == 1 && tt.name != "validate bad persona" && strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
				t.Errorf("want one error line, got:\n%s", errb.String())
			}
		})
	}
}

func TestValidateEmbedded(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"validate"}, &out, &errb); code != 0 {
		t.Fatalf("embedded default does not validate (exit %d):\n%s%s", code, out.String(), errb.String())
	}
	for _, p := range []string{"siemens-s7-1200", "schneider-m340"} {
		out.Reset()
		errb.Reset()
		if code := run([]string{"validate", "--persona", p}, &out, &errb); code != 0 {
			t.Errorf("persona %s does not validate:\n%s%s", p, out.String(), errb.String())
		}
	}
}

func TestSplitListen(t *testing.T) {
	tests := []struct {
		in   string
		host string
		port uint16
		err  bool
	}{
		{"127.0.0.1", "127.0.0.1", 0, false},
		{"127.0.0.1:5020", "127.0.0.1", 5020, false},
		{"::1", "::1", 0, false},
		{"[::1]:502", "::1", 502, false},
		{"127.0.0.1:0", "", 0, true},
		{"127.0.0.1:x", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			h, p, err := splitListen(tt.in)
			if (err != nil) != tt.err || h != tt.host || p != tt.port {
				t.Fatalf("splitListen(%q) = %q, %d, %v", tt.in, h, p, err)
			}
		})
	}
}

// Without CAP_NET_RAW the sensor names the missing privilege and the fix.
func TestNoCapturePrivilege(t *testing.T) {
	testenv.RequireRoot(t) // to drop to an unprivileged user
	setpriv := testenv.LookPath(t, "setpriv")
	dir, err := os.MkdirTemp("", "pcapot-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	bin := filepath.Join(dir, "pcapot")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	os.Chmod(bin, 0o755)
	data := filepath.Join(dir, "data")
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		bin, "run", "--data", data, "--listen", "127.0.0.1:15502", "--api", "off", "--disable", "s7comm", "--disable", "http", "--disable", "snmp")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if err == nil {
		t.Fatal("the sensor started without capture privileges")
	}
	msg := strings.TrimSpace(stderr.String())
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "CAP_NET_RAW") || !strings.Contains(msg, "permission denied") {
		t.Fatalf("want one line naming CAP_NET_RAW, got:\n%s", msg)
	}
}
