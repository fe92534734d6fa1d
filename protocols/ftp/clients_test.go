package ftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// These tests drive the handler, served on loopback the way the sensor serves it,
// with real FTP clients: Python's ftplib, curl and netkit ftp.

func serveReal(t *testing.T, mod func(*Config)) *protocoltest.Server {
	t.Helper()
	cfg := NewConfig()
	cfg.LoginDelay = 50 * time.Millisecond
	if mod != nil {
		mod(cfg)
	}
	env := protocoltest.Env(t, testIdentity())
	h, err := New(env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return protocoltest.ServeTCP(t, "127.0.0.1:0", h)
}

// run runs a client; it fails the test on a non-zero exit unless allowFail.
func run(t *testing.T, stdin string, allowFail bool, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && !allowFail {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out) + stderr.String(), err
}

const ftplibScript = `
import ftplib, io, json, sys
port = int(sys.argv[1])
out = {}
f = ftplib.FTP()
out["welcome"] = f.connect("127.0.0.1", port, timeout=10)
out["login"] = f.login("USER", "USER")
out["syst"] = f.sendcmd("SYST")
out["pwd"] = f.pwd()
out["nlst_root"] = f.nlst()
lines = []
f.dir("/sys", lines.append)
out["dir_sys"] = lines
buf = io.BytesIO()
f.retrbinary("RETR /sys/version.txt", buf.write)
out["version"] = buf.getvalue().decode()
out["size_fw"] = f.size("/fw/v3.40.ldx")
f.cwd("/data")
payload = bytes(range(256)) * 40
out["stor"] = f.storbinary("STOR payload.bin", io.BytesIO(payload))
out["nlst_data"] = f.nlst()
buf = io.BytesIO()
f.retrbinary("RETR payload.bin", buf.write)
out["roundtrip"] = buf.getvalue() == payload
f.set_pasv(False)
buf = io.BytesIO()
f.retrbinary("RETR /sys/net.cfg", buf.write)
out["active_retr"] = buf.getvalue().decode()
lines = []
f.retrlines("LIST /web", lines.append)
out["active_list"] = lines
f.set_pasv(True)
for cmd in ("MKD /x", "DELE /sys/version.txt", "RMD /sys"):
    try:
        f.sendcmd(cmd)
        out[cmd] = "accepted"
    except ftplib.error_perm as e:
        out[cmd] = str(e)
try:
    f.retrbinary("RETR /nope.txt", lambda b: None)
except ftplib.error_perm as e:
    out["missing"] = str(e)
out["quit"] = f.quit()
g = ftplib.FTP()
g.connect("127.0.0.1", port, timeout=10)
try:
    g.login("USER", "wrong")
    out["bad_login"] = "accepted"
except ftplib.error_perm as e:
    out["bad_login"] = str(e)
print(json.dumps(out))
`

func TestPythonFtplib(t *testing.T) {
	python := testenv.Python(t)
	srv := serveReal(t, nil)
	dir := t.TempDir()
	script := filepath.Join(dir, "client.py")
	if err := os.WriteFile(script, []byte(ftplibScript), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := run(t, "", false, python, script, strconv.Itoa(int(srv.Addr.Port())))
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	t.Logf("ftplib: %v", got)
	want := map[string]any{
		"welcome":               "220 VxWorks (5.5.1) FTP server ready",
		"login":                 "230 User logged in.",
		"syst":                  "215 UNIX Type: L8 Version: VxWorks",
		"pwd":                   "/",
		"size_fw":               float64(1867776),
		"stor":                  "226 Transfer complete.",
		"roundtrip":             true,
		"MKD /x":                "550 Permission denied.",
		"DELE /sys/version.txt": "550 Permission denied.",
		"RMD /sys":              "550 Permission denied.",
		"missing":               "550 No such file or directory.",
		"quit":                  "221 Goodbye.",
		"bad_login":             "530 Login incorrect.",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if v, _ := got["version"].(string); !strings.Contains(v, "Firmware   : v3.40\r\n") || !strings.Contains(v, "Serial no. : 21M3417082") {
		t.Errorf("version.txt = %q", v)
	}
	if v, _ := got["active_retr"].(string); !strings.Contains(v, "HOSTNAME=m340-pump-station") {
		t.Errorf("net.cfg over an active connection = %q", v)
	}
	if fmtList(got["nlst_root"]) != "data fw sys web" || fmtList(got["nlst_data"]) != "payload.bin" {
		t.Errorf("nlst root %v, data %v", got["nlst_root"], got["nlst_data"])
	}
	if l := fmtList(got["dir_sys"]); !strings.Contains(l, "net.cfg") || !strings.HasPrefix(l, "-rw-r--r--   1 0        0") {
		t.Errorf("dir /sys: %v", got["dir_sys"])
	}
	if l := fmtList(got["active_list"]); !strings.Contains(l, " images") || !strings.Contains(l, " index.htm") {
		t.Errorf("active LIST /web: %v", got["active_list"])
	}

	payload := bytes.Repeat(func() []byte {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}(), 40)
	sum := sha256.Sum256(payload)
	evs, _ := srv.WaitEvents(5*time.Second, protocoltest.HasOp("login", func(e protocols.Event) bool { return e.Detail["result"] == "failure" }))
	var upload *protocols.Event
	for i, e := range evs {
		if e.Op == "upload" {
			upload = &evs[i]
		}
	}
	if upload == nil || !bytes.Equal(upload.Data, payload[:256]) || upload.Detail["sha256"] != hex.EncodeToString(sum[:]) ||
		upload.Detail["size"] != "10240" || upload.Detail["name"] != "payload.bin" || upload.Detail["path"] != "/data/payload.bin" ||
		upload.Detail["complete"] != "true" || !upload.Write || upload.Code != 226 {
		t.Errorf("upload event %+v", upload)
	}
	if !protocoltest.HasOp("login", func(e protocols.Event) bool {
		return e.Detail["username"] == "USER" && e.Detail["password"] == "wrong" && e.Exception == 530
	})(evs) {
		t.Errorf("no failed login event: %+v", evs)
	}
	if f := srv.Files(); len(f) != 1 || f[0].Name != "payload.bin" || !bytes.Equal(f[0].Data, payload) || f[0].Truncated {
		t.Errorf("kept files %+v", f)
	}
}

func fmtList(v any) string {
	l, _ := v.([]any)
	s := make([]string, len(l))
	for i, x := range l {
		s[i], _ = x.(string)
	}
	return strings.Join(s, " ")
}

func TestCurl(t *testing.T) {
	curl := testenv.LookPath(t, "curl")
	srv := serveReal(t, nil)
	base := "ftp://127.0.0.1:" + strconv.Itoa(int(srv.Addr.Port()))

	out, _ := run(t, "", false, curl, "-sS", "--max-time", "20", "-u", "USER:USER", base+"/sys/version.txt")
	if !strings.Contains(out, "Schneider Electric Modicon M340\r\n") {
		t.Errorf("curl RETR: %q", out)
	}
	out, _ = run(t, "", false, curl, "-sS", "--max-time", "20", "-u", "USER:USER", base+"/web/")
	if !strings.Contains(out, " index.htm\n") || !strings.Contains(out, "drwxr-xr-x   2 0        0               512 ") {
		t.Errorf("curl LIST: %q", out)
	}
	// Active mode: curl sends EPRT with its own address.
	out, _ = run(t, "", false, curl, "-sS", "--max-time", "20", "-u", "USER:USER", "--ftp-port", "127.0.0.1", base+"/sys/net.cfg")
	if !strings.Contains(out, "[NETWORK]") {
		t.Errorf("curl active RETR: %q", out)
	}
	// Upload, then a wrong password (curl exits 67: login denied).
	file := filepath.Join(t.TempDir(), "evil.sh")
	if err := os.WriteFile(file, []byte("#!/bin/sh\necho pwned\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "", false, curl, "-sS", "--max-time", "20", "-u", "USER:USER", "-T", file, base+"/data/")
	_, err := run(t, "", true, curl, "-sS", "--max-time", "20", "-u", "USER:nope", base+"/sys/version.txt")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 67 {
		t.Errorf("curl with a wrong password: %v, want exit 67", err)
	}
	evs, _ := srv.WaitEvents(5*time.Second, func(evs []protocols.Event) bool {
		return protocoltest.HasOp("upload", nil)(evs) && protocoltest.HasOp("login", func(e protocols.Event) bool { return e.Detail["result"] == "failure" })(evs)
	})
	if !protocoltest.HasOp("upload", func(e protocols.Event) bool {
		return string(e.Data) == "#!/bin/sh\necho pwned\n" && e.Detail["path"] == "/data/evil.sh" && e.Detail["complete"] == "true"
	})(evs) {
		t.Errorf("no upload event: %+v", evs)
	}
	if f := srv.Files(); len(f) != 1 || f[0].Name != "evil.sh" || string(f[0].Data) != "#!/bin/sh\necho pwned\n" {
		t.Errorf("kept files %+v", f)
	}
	if !protocoltest.HasOp("extended_port", func(e protocols.Event) bool { return e.Code == 200 && e.Detail["bounce"] == "" })(evs) {
		t.Errorf("no EPRT event: %+v", evs)
	}
}

func TestNetkitFtp(t *testing.T) {
	ftp := testenv.LookPath(t, "ftp")
	srv := serveReal(t, nil)
	port := strconv.Itoa(int(srv.Addr.Port()))
	for _, mode := range []struct {
		name string
		args []string
	}{{"active", []string{"-n"}}, {"passive", []string{"-n", "-p"}}} {
		t.Run(mode.name, func(t *testing.T) {
			script := "user USER USER\nbinary\npwd\ncd /sys\nls\nget version.txt -\nsize /fw/v3.40.ldx\nquit\n"
			out, _ := run(t, script, false, ftp, append(mode.args, "127.0.0.1", port)...)
			for _, want := range []string{"Model      : BMX P34 2020", "version.txt", "net.cfg", "Remote directory: /", "/fw/v3.40.ldx\t1867776"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestNmap checks what nmap's version detection and FTP scripts make of the server:
// the banner is recognised as a VxWorks ftpd, and the bounce check fails.
func TestNmap(t *testing.T) {
	nmap := testenv.LookPath(t, "nmap")
	srv := serveReal(t, func(c *Config) { c.Anonymous = true })
	out, _ := run(t, "", false, nmap, "-n", "-Pn", "-sV", "--version-light", "-p", strconv.Itoa(int(srv.Addr.Port())),
		"--script", "ftp-anon,ftp-syst,ftp-bounce", "--script-args", "ftp-bounce.checkhost=192.0.2.1", "127.0.0.1")
	t.Logf("nmap:\n%s", out)
	for _, want := range []string{"ftp     VxWorks ftpd 5.5.1", "ftp-anon: Anonymous FTP login allowed (FTP code 230)", "SYST: Version: VxWorks",
		"[ftp-bounce] PORT response: 500 Illegal PORT command."} {
		if !strings.Contains(out, want) {
			t.Errorf("nmap output lacks %q", want)
		}
	}
	if strings.Contains(out, "bounce working") {
		t.Errorf("nmap reports a working FTP bounce")
	}
	evs, _ := srv.WaitEvents(5*time.Second, protocoltest.HasOp("port", nil))
	if !protocoltest.HasOp("port", func(e protocols.Event) bool { return e.Detail["bounce"] == "true" && e.Exception == 500 })(evs) {
		t.Errorf("no bounce event: %+v", evs)
	}
}

// TestWireshark captures a curl session's control connection and has Wireshark's FTP
// dissector decode it: no malformed frame, and the commands and reply codes in order.
func TestWireshark(t *testing.T) {
	curl := testenv.LookPath(t, "curl")
	srv := serveReal(t, nil)
	capture := protocoltest.StartCapture(t, srv.Addr.Port())
	base := "ftp://127.0.0.1:" + strconv.Itoa(int(srv.Addr.Port()))
	run(t, "", false, curl, "-sS", "--max-time", "20", "-u", "USER:USER", base+"/sys/version.txt")
	srv.WaitEvent(t, "quit", nil)
	pcap := capture.Stop()
	port := "tcp.port==" + strconv.Itoa(int(srv.Addr.Port())) + ",ftp"
	protocoltest.TsharkClean(t, pcap, protocoltest.TsharkBad, "-d", port)
	out := string(protocoltest.Tshark(t, pcap, "-d", port, "-Y", "ftp", "-T", "fields", "-E", "separator=,",
		"-e", "ftp.request.command", "-e", "ftp.response.code"))
	got := strings.Join(strings.Fields(out), " ")
	want := ",220 USER, ,331 PASS, ,230 PWD, ,257 CWD, ,250 EPSV, ,229 TYPE, ,200 SIZE, ,213 RETR, ,150 ,226 QUIT, ,221"
	if got != want {
		t.Errorf("FTP conversation:\n got %s\nwant %s", got, want)
	}
}
