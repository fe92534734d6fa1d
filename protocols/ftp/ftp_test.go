package ftp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// testIdentity is the persona of the tests: a Modicon M340.
var testIdentity = protocoltest.M340

var (
	testBoot = time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)
	testNow  = testBoot.Add(2 * time.Hour)
	// testModified is the modification time of the test files that have one.
	testModified = time.Date(2025, 11, 14, 9, 30, 5, 0, time.UTC)
)

// testConfig is the default configuration with short timeouts and two extra files
// whose bytes the cases spell out.
func testConfig() *Config {
	cfg := NewConfig()
	cfg.LoginDelay = 20 * time.Millisecond
	cfg.DataTimeout = 2 * time.Second
	cfg.IdleTimeout = 3 * time.Second
	cfg.Files = append(cfg.Files,
		File{Path: "/sys/lines.txt", Content: "a\nb\r\nc\n", Modified: testModified},
		File{Path: "/sys/{model}.txt", Content: "model {model} fw {firmware}", Modified: testModified},
	)
	return cfg
}

func testEnv(t testing.TB) protocols.Env {
	env := protocoltest.Env(t, testIdentity())
	env.Boot = testBoot
	env.Now = func() time.Time { return testNow }
	return env
}

func newTestHandler(t testing.TB, cfg *Config) *Handler {
	t.Helper()
	h, err := New(testEnv(t), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// ctl is a test client on the control connection of a session served over a
// net.Pipe; the session's addresses are on loopback, so data connections are real.
type ctl struct {
	t    *testing.T
	pipe *protocoltest.Pipe
	conn net.Conn
	r    *bufio.Reader
	sess *protocoltest.Session
}

func start(t *testing.T, ctx context.Context, h *Handler) *ctl {
	t.Helper()
	p := protocoltest.ServePipe(t, ctx, h,
		protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:21"), netip.MustParseAddrPort("127.0.0.1:40000")))
	return &ctl{t: t, pipe: p, conn: p.Conn, r: bufio.NewReader(p.Conn), sess: p.Session}
}

// reply reads one whole reply.
func (c *ctl) reply() (int, string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var raw []byte
	for {
		line, err := c.r.ReadBytes('\n')
		raw = append(raw, line...)
		if err != nil {
			c.t.Fatalf("reading reply after %q: %v", raw, err)
		}
		code, lines, n, perr := ParseReply(raw)
		if perr != nil {
			c.t.Fatalf("reply %q: %v", raw, perr)
		}
		if n > 0 {
			return code, strings.Join(lines, "\n")
		}
	}
}

// cmd sends a command line and returns the reply.
func (c *ctl) cmd(line string) (int, string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
	return c.reply()
}

// expect sends a command and checks the reply code and text.
func (c *ctl) expect(line string, code int, text string) {
	c.t.Helper()
	gc, gt := c.cmd(line)
	if gc != code || gt != text {
		c.t.Errorf("%q: got %d %q, want %d %q", line, gc, gt, code, text)
	}
}

func (c *ctl) login() {
	c.t.Helper()
	if code, text := c.reply(); code != 220 {
		c.t.Fatalf("greeting %d %q", code, text)
	}
	c.expect("USER USER", 331, "Password required.")
	c.expect("PASS USER", 230, "User logged in.")
}

func (c *ctl) wait(within time.Duration) error {
	c.t.Helper()
	return c.pipe.Wait(c.t, within)
}

// pasv sends PASV and connects to the announced port.
func (c *ctl) pasv() net.Conn {
	c.t.Helper()
	code, text := c.cmd("PASV")
	if code != 227 {
		c.t.Fatalf("PASV: %d %q", code, text)
	}
	ap, err := ParsePASVReply(text)
	if err != nil {
		c.t.Fatalf("PASV reply %q: %v", text, err)
	}
	dc, err := net.DialTimeout("tcp", ap.String(), 2*time.Second)
	if err != nil {
		c.t.Fatalf("data connect %v: %v", ap, err)
	}
	c.t.Cleanup(func() { dc.Close() })
	return dc
}

// download runs a transfer command on a passive connection and returns the data.
func (c *ctl) download(line string) string {
	c.t.Helper()
	dc := c.pasv()
	if code, text := c.cmd(line); code != 150 {
		c.t.Fatalf("%q: %d %q", line, code, text)
	}
	dc.SetReadDeadline(time.Now().Add(5 * time.Second))
	data, err := io.ReadAll(dc)
	if err != nil {
		c.t.Fatalf("%q data: %v", line, err)
	}
	if code, text := c.reply(); code != 226 {
		c.t.Fatalf("%q end: %d %q", line, code, text)
	}
	return string(data)
}

// upload runs a store command on a passive connection and returns the final reply.
func (c *ctl) upload(line string, data []byte) (int, string) {
	c.t.Helper()
	dc := c.pasv()
	code, text := c.cmd(line)
	if code != 150 {
		return code, text
	}
	dc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	dc.Write(data)
	dc.Close()
	return c.reply()
}

func TestGreetingAndPreLogin(t *testing.T) {
	c := start(t, context.Background(), newTestHandler(t, testConfig()))
	if code, text := c.reply(); code != 220 || text != "VxWorks (5.5.1) FTP server ready" {
		t.Errorf("greeting %d %q", code, text)
	}
	c.expect("PWD", 530, "Please login with USER and PASS.")
	c.expect("RETR /sys/version.txt", 530, "Please login with USER and PASS.")
	c.expect("XYZW", 500, "Command not understood.")
	c.expect("SYST", 215, "UNIX Type: L8 Version: VxWorks")
	c.expect("FEAT", 211, "Features:\n EPRT\n EPSV\n MDTM\n REST STREAM\n SIZE\nEnd")
	c.expect("NOOP", 200, "NOOP command successful.")
	c.expect("AUTH TLS", 502, "AUTH command not implemented.")
	c.expect("OPTS UTF8 ON", 501, "Option not understood.")
	c.expect("PASS secret", 503, "Login with USER first.")
	if code, text := c.cmd("HELP"); code != 214 || !strings.HasPrefix(text, "The following commands are recognized.\n ABOR") || !strings.HasSuffix(text, "\nHelp OK.") {
		t.Errorf("HELP %d %q", code, text)
	}
	c.expect("QUIT", 221, "Goodbye.")
	if err := c.wait(time.Second); err != nil {
		t.Errorf("ServeStream: %v", err)
	}
	evs := c.sess.Events()
	ops := make([]string, len(evs))
	for i, e := range evs {
		ops[i] = e.Op
	}
	want := "print_directory retrieve unknown_command system features noop auth options login help quit"
	if strings.Join(ops, " ") != want {
		t.Errorf("ops %q, want %q", strings.Join(ops, " "), want)
	}
	if evs[0].Code != 530 || evs[0].Exception != 530 || evs[0].Detail["command"] != "PWD" || evs[3].Code != 215 || evs[3].Exception != 0 {
		t.Errorf("events %+v", evs[:4])
	}
}

func TestLogin(t *testing.T) {
	t.Run("success", func(t *testing.T) {
		c := start(t, context.Background(), newTestHandler(t, testConfig()))
		c.login()
		c.expect("USER other", 530, "Can't change to another user.")
		c.expect("PASS USER", 503, "Already logged in.")
		ev := c.sess.EventsOf("login")
		if len(ev) != 2 || ev[0].Detail["username"] != "USER" || ev[0].Detail["password"] != "USER" || ev[0].Detail["result"] != "success" || ev[0].Code != 230 {
			t.Errorf("login events %+v", ev)
		}
		if u := c.sess.EventsOf("user"); len(u) != 2 || u[0].Detail["username"] != "USER" || u[0].Code != 331 {
			t.Errorf("user events %+v", u)
		}
	})
	t.Run("failures are delayed and end the session", func(t *testing.T) {
		cfg := testConfig()
		cfg.LoginDelay = 100 * time.Millisecond
		c := start(t, context.Background(), newTestHandler(t, cfg))
		c.reply()
		for i := 1; i <= 3; i++ {
			c.expect("USER admin", 331, "Password required.")
			startAt := time.Now()
			c.expect("PASS admin"+strconv.Itoa(i), 530, "Login incorrect.")
			if d := time.Since(startAt); d < 90*time.Millisecond {
				t.Errorf("failure %d answered after %v", i, d)
			}
		}
		if err := c.wait(time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
		ev := c.sess.EventsOf("login")
		if len(ev) != 3 || ev[2].Detail["failures"] != "3" || ev[2].Detail["password"] != "admin3" || ev[2].Exception != 530 || ev[2].Detail["result"] != "failure" {
			t.Errorf("login events %+v", ev)
		}
	})
	t.Run("anonymous refused by default", func(t *testing.T) {
		c := start(t, context.Background(), newTestHandler(t, testConfig()))
		c.reply()
		c.expect("USER anonymous", 331, "Password required.")
		c.expect("PASS guest@example.com", 530, "Login incorrect.")
	})
	t.Run("anonymous read-only", func(t *testing.T) {
		cfg := testConfig()
		cfg.Anonymous = true
		c := start(t, context.Background(), newTestHandler(t, cfg))
		c.reply()
		c.expect("USER ftp", 331, "Guest login ok, send your complete e-mail address as password.")
		c.expect("PASS guest@example.com", 230, "Guest login ok, access restrictions apply.")
		if got := c.download("RETR /sys/lines.txt"); got != "a\r\nb\r\nc\r\n" {
			t.Errorf("anonymous RETR %q", got)
		}
		c.expect("STOR /data/x", 550, "Permission denied.")
		if ev := c.sess.EventsOf("login"); len(ev) != 1 || ev[0].Detail["result"] != "anonymous" {
			t.Errorf("login events %+v", ev)
		}
	})
	t.Run("account without write", func(t *testing.T) {
		cfg := testConfig()
		cfg.Accounts = []Account{{User: "operator", Password: "op3r", Home: "/web"}}
		c := start(t, context.Background(), newTestHandler(t, cfg))
		c.reply()
		c.expect("USER operator", 331, "Password required.")
		c.expect("PASS op3r", 230, "User logged in.")
		c.expect("PWD", 257, `"/web" is current directory.`)
		c.expect("STOR x", 550, "Permission denied.")
	})
}

func TestNavigation(t *testing.T) {
	c := start(t, context.Background(), newTestHandler(t, testConfig()))
	c.login()
	steps := []struct {
		cmd  string
		code int
		text string
	}{
		{"PWD", 257, `"/" is current directory.`},
		{"CWD /web/images", 250, "CWD command successful."},
		{"XPWD", 257, `"/web/images" is current directory.`},
		{"CDUP", 250, "CWD command successful."},
		{"PWD", 257, `"/web" is current directory.`},
		{"CWD ../../../../sys", 250, "CWD command successful."},
		{"PWD", 257, `"/sys" is current directory.`},
		{"CWD version.txt", 550, "No such file or directory."},
		{"CWD /nope", 550, "No such file or directory."},
		{"CWD", 501, "Syntax error in parameters or arguments."},
		{"XCWD /", 250, "CWD command successful."},
		{"CDUP", 250, "CWD command successful."},
		{"PWD", 257, `"/" is current directory.`},
		{"TYPE I", 200, "Type set to I."},
		{"TYPE A N", 200, "Type set to A."},
		{"TYPE L 8", 200, "Type set to I."},
		{"TYPE E", 504, "Command not implemented for that parameter."},
		{"TYPE A T", 504, "Command not implemented for that parameter."},
		{"TYPE X", 501, "Syntax error in parameters or arguments."},
		{"TYPE", 501, "Syntax error in parameters or arguments."},
		{"MODE S", 200, "Mode set to S."},
		{"MODE B", 504, "Command not implemented for that parameter."},
		{"MODE Z", 501, "Syntax error in parameters or arguments."},
		{"STRU F", 200, "Structure set to F."},
		{"STRU R", 504, "Command not implemented for that parameter."},
		{"SIZE /fw/v3.40.ldx", 213, "1867776"},
		{"SIZE sys/BMX P34 2020.txt", 213, "27"},
		{"SIZE /sys", 550, "Could not get file size."},
		{"SIZE", 501, "Syntax error in parameters or arguments."},
		{"MDTM /sys/lines.txt", 213, "20251114093005"},
		{"MDTM /nope", 550, "Could not get file modification time."},
		{"REST 100", 350, "Restarting at 100. Send STORE or RETRIEVE to initiate transfer."},
		{"REST -1", 501, "Syntax error in parameters or arguments."},
		{"ALLO 1000", 202, "ALLO command ignored."},
		{"ACCT x", 202, "ACCT command superfluous."},
		{"SITE CHMOD 777 x", 502, "SITE command not implemented."},
		{"STAT /", 502, "STAT command not implemented for that parameter."},
		{"ABOR", 225, "ABOR command successful."},
		{"\xff\xf4\xff\xf2ABOR", 225, "ABOR command successful."},
		{"noop", 200, "NOOP command successful."},
		{"DELE /sys/version.txt", 550, "Permission denied."},
		{"DELE /nope", 550, "No such file or directory."},
		{"MKD /newdir", 550, "Permission denied."},
		{"XMKD newdir", 550, "Permission denied."},
		{"RMD /sys", 550, "Permission denied."},
		{"RNTO /x", 503, "Bad sequence of commands."},
		{"RNFR /nope", 550, "No such file or directory."},
		{"RNFR /sys/version.txt", 350, "File exists, ready for destination name."},
		{"RNTO /sys/v.txt", 550, "Permission denied."},
		{"RNFR /sys/version.txt", 350, "File exists, ready for destination name."},
		{"NOOP", 200, "NOOP command successful."},
		{"RNTO /sys/v.txt", 503, "Bad sequence of commands."},
		{"RETR", 501, "Syntax error in parameters or arguments."},
		{"RETR /sys/version.txt", 425, "Use PORT or PASV first."},
		{"LIST", 425, "Use PORT or PASV first."},
	}
	for _, s := range steps {
		c.expect(s.cmd, s.code, s.text)
	}
	if code, text := c.cmd("STAT"); code != 211 || !strings.Contains(text, "Connected to 127.0.0.1\n") || !strings.Contains(text, "TYPE: BINARY") {
		t.Errorf("STAT %d %q", code, text)
	}
	ev := c.sess.EventsOf("rename_to")
	if len(ev) != 3 || ev[1].Detail["from"] != "/sys/version.txt" || ev[1].Area != "/sys/v.txt" || !ev[1].Write || ev[1].Exception != 550 {
		t.Errorf("rename events %+v", ev)
	}
	if ev := c.sess.EventsOf("change_directory"); ev[0].Area != "/web/images" || ev[0].Detail["argument"] != "/web/images" {
		t.Errorf("cwd event %+v", ev[0])
	}
}

func TestTransfers(t *testing.T) {
	h := newTestHandler(t, testConfig())
	c := start(t, context.Background(), h)
	c.login()

	if got := c.download("RETR /sys/lines.txt"); got != "a\r\nb\r\nc\r\n" {
		t.Errorf("ASCII RETR %q", got)
	}
	c.expect("TYPE I", 200, "Type set to I.")
	if got := c.download("RETR /sys/lines.txt"); got != "a\nb\r\nc\n" {
		t.Errorf("binary RETR %q", got)
	}
	c.expect("REST 2", 350, "Restarting at 2. Send STORE or RETRIEVE to initiate transfer.")
	if got := c.download("RETR /sys/lines.txt"); got != "b\r\nc\n" {
		t.Errorf("RETR after REST %q", got)
	}
	if got := c.download("RETR /sys/BMX P34 2020.txt"); got != "model BMX P34 2020 fw v3.40" {
		t.Errorf("placeholders %q", got)
	}
	fw := c.download("RETR /fw/v3.40.ldx")
	if len(fw) != 1867776 || !strings.HasPrefix(fw, "LDX\x01") {
		t.Errorf("firmware image: %d bytes, starts %q", len(fw), fw[:min(8, len(fw))])
	}
	if again := c.download("RETR /fw/v3.40.ldx"); again != fw {
		t.Errorf("the firmware image differs between downloads")
	}
	// The TFTP server serves the same bytes for fw/v3.40.ldx (its tests check the
	// same constant).
	if len(fw) > 1016 && hex.EncodeToString([]byte(fw[1000:1016])) != "f5d51df5c9f475be6a06d50b3c453367" {
		t.Errorf("firmware bytes at 1000: %x", fw[1000:1016])
	}

	list := c.download("LIST /sys")
	wantList := "-rw-r--r--   1 0        0                27 Nov 14 09:30 BMX P34 2020.txt\r\n" +
		"-rw-r--r--   1 0        0                 7 Nov 14 09:30 lines.txt\r\n"
	if !strings.HasPrefix(list, wantList) || strings.Count(list, "\r\n") != 4 {
		t.Errorf("LIST /sys:\n%s", list)
	}
	if got := c.download("NLST"); got != "data\r\nfw\r\nsys\r\nweb\r\n" {
		t.Errorf("NLST %q", got)
	}
	if got := c.download("NLST -la /web"); got != "/web/images\r\n/web/index.htm\r\n" {
		t.Errorf("NLST -la /web %q", got)
	}
	if got := c.download("NLST /sys/*.txt"); got != "/sys/BMX P34 2020.txt\r\n/sys/lines.txt\r\n/sys/version.txt\r\n" {
		t.Errorf("NLST glob %q", got)
	}
	if got := c.download("LIST /sys/lines.txt"); got != "-rw-r--r--   1 0        0                 7 Nov 14 09:30 lines.txt\r\n" {
		t.Errorf("LIST of a file %q", got)
	}
	c.pasv()
	c.expect("NLST /nope", 550, "No such file or directory.")
	// The passive listener was closed after the failed command.
	c.expect("RETR /sys/lines.txt", 425, "Use PORT or PASV first.")
	c.pasv()
	c.expect("RETR /nope", 550, "No such file or directory.")
	ev := c.sess.EventsOf("retrieve")
	if len(ev) < 4 || ev[0].Area != "/sys/lines.txt" || ev[0].Quantity != 7 || ev[0].Detail["size"] != "7" || ev[2].Detail["offset"] != "2" || ev[0].Code != 226 {
		t.Errorf("retrieve events %+v", ev[:min(4, len(ev))])
	}
}

func TestUploads(t *testing.T) {
	cfg := testConfig()
	cfg.MaxUploadSize = 1000
	h := newTestHandler(t, cfg)
	c := start(t, context.Background(), h)
	c.login()
	c.expect("TYPE I", 200, "Type set to I.")
	c.expect("CWD /data", 250, "CWD command successful.")

	payload := []byte("\x7fELF\x02\x01\x01 dropper payload")
	if code, text := c.upload("STOR ../data/x.bin", payload); code != 226 || text != "Transfer complete." {
		t.Fatalf("STOR: %d %q", code, text)
	}
	// The upload is visible to this session...
	c.expect("SIZE x.bin", 213, strconv.Itoa(len(payload)))
	if got := c.download("RETR x.bin"); got != string(payload) {
		t.Errorf("RETR of the upload %q", got)
	}
	if got := c.download("NLST"); got != "x.bin\r\n" {
		t.Errorf("NLST /data %q", got)
	}
	// ...APPE appends to it...
	if code, _ := c.upload("APPE x.bin", []byte("+more")); code != 226 {
		t.Errorf("APPE: %d", code)
	}
	if got := c.download("RETR x.bin"); got != string(payload)+"+more" {
		t.Errorf("after APPE %q", got)
	}
	// ...STOU picks a name.
	dc := c.pasv()
	if code, text := c.cmd("STOU"); code != 150 || text != "FILE: ftp0001.tmp" {
		t.Errorf("STOU: %d %q", code, text)
	}
	dc.Write([]byte("unique"))
	dc.Close()
	if code, _ := c.reply(); code != 226 {
		t.Errorf("STOU end: %d", code)
	}
	// The device's files and missing directories are refused before any data.
	c.expect("STOR /sys/version.txt", 550, "Permission denied.")
	c.expect("STOR /sys", 550, "Permission denied.")
	c.expect("STOR /nodir/x", 553, "Could not create file.")
	c.expect("STOR", 501, "Syntax error in parameters or arguments.")
	// A file over max_upload_size is cut at the limit.
	big := bytes.Repeat([]byte("A"), 3000)
	if code, text := c.upload("STOR big.bin", big); code != 552 || text != "Requested file action aborted. Exceeded storage allocation." {
		t.Errorf("STOR over the limit: %d %q", code, text)
	}

	ev := c.sess.EventsOf("upload")
	if len(ev) != 8 {
		t.Fatalf("%d upload events: %+v", len(ev), ev)
	}
	sum := sha256.Sum256(payload)
	e := ev[0]
	if !bytes.Equal(e.Data, payload) || e.Detail["sha256"] != hex.EncodeToString(sum[:]) || e.Detail["size"] != strconv.Itoa(len(payload)) ||
		e.Detail["name"] != "../data/x.bin" || e.Detail["path"] != "/data/x.bin" || e.Area != "/data/x.bin" || e.Detail["command"] != "STOR" ||
		e.Detail["complete"] != "true" || e.Detail["type"] != "I" || !e.Write || e.Code != 226 || e.Exception != 0 {
		t.Errorf("STOR event %+v", e)
	}
	if e := ev[1]; string(e.Data) != "+more" || e.Detail["command"] != "APPE" {
		t.Errorf("APPE event %+v", e)
	}
	if e := ev[2]; string(e.Data) != "unique" || e.Detail["path"] != "/data/ftp0001.tmp" || e.Detail["command"] != "STOU" {
		t.Errorf("STOU event %+v", e)
	}
	if e := ev[7]; len(e.Data) != 256 || e.Quantity != 1000 || e.Detail["size"] != "1000" || e.Detail["complete"] != "false" || e.Detail["reason"] != "size_limit" || e.Exception != 552 {
		t.Errorf("cut upload event %+v (data %d bytes)", e, len(e.Data))
	}
	// Every upload that reached the data connection is kept as evidence, whole up to
	// the limit, under the name the client gave.
	files := c.sess.Files()
	if len(files) != 4 || files[0].Name != "../data/x.bin" || !bytes.Equal(files[0].Data, payload) || files[0].Protocol != "ftp" ||
		string(files[1].Data) != "+more" || files[2].Name != "ftp0001.tmp" || len(files[3].Data) != 1000 || !files[3].Truncated || files[0].Truncated {
		t.Errorf("kept files %+v", files)
	}
	if ev[3].Exception != 550 || ev[3].Data != nil || ev[5].Exception != 553 {
		t.Errorf("refused upload events %+v", ev[3:6])
	}

	// Another session does not see the uploads; the memory they held is released
	// when the session ends.
	d := start(t, context.Background(), h)
	d.login()
	d.expect("SIZE /data/x.bin", 550, "Could not get file size.")
	if h.held.Load() == 0 {
		t.Errorf("no upload memory held while the session lives")
	}
	c.expect("QUIT", 221, "Goodbye.")
	c.wait(time.Second)
	if n := h.held.Load(); n != 0 {
		t.Errorf("%d upload bytes still held after the session", n)
	}
}

func TestUploadMemoryBound(t *testing.T) {
	cfg := testConfig()
	cfg.MaxUploadSize, cfg.MaxSessionUpload, cfg.MaxUploadMemory = 100, 150, 150
	h := newTestHandler(t, cfg)
	c := start(t, context.Background(), h)
	c.login()
	if code, _ := c.upload("STOR /data/a", bytes.Repeat([]byte("a"), 100)); code != 226 {
		t.Errorf("first upload %d", code)
	}
	// The session has 50 bytes left.
	if code, _ := c.upload("STOR /data/b", bytes.Repeat([]byte("b"), 80)); code != 552 {
		t.Errorf("second upload %d", code)
	}
	d := start(t, context.Background(), h)
	d.login()
	// The handler as a whole holds 150 bytes: nothing is left for another session.
	if code, _ := d.upload("STOR /data/c", []byte("c")); code != 552 {
		t.Errorf("upload over the memory bound %d", code)
	}
	if ev := d.sess.EventsOf("upload"); len(ev) != 1 || ev[0].Detail["reason"] != "memory_limit" {
		t.Errorf("events %+v", ev)
	}
}

func TestDataConnectionSetup(t *testing.T) {
	c := start(t, context.Background(), newTestHandler(t, testConfig()))
	c.login()
	steps := []struct {
		cmd  string
		code int
		text string
	}{
		{"PORT 10,0,0,1,4,1", 500, "Illegal PORT command."},
		{"PORT 127,0,0,1,0,80", 500, "Illegal PORT command."},
		{"PORT 127,0,0,1,300,1", 501, "Syntax error in parameters or arguments."},
		{"PORT 1,2,3", 501, "Syntax error in parameters or arguments."},
		{"EPRT |1|10.0.0.1|5000|", 500, "Illegal EPRT command."},
		{"EPRT |3|x|5000|", 522, "Network protocol not supported, use (1,2)."},
		{"EPRT |1|::1|5000|", 501, "Syntax error in parameters or arguments."},
		{"EPRT |2|::1|5000|", 500, "Illegal EPRT command."},
		{"EPSV 2", 522, "Network protocol not supported, use (1)."},
	}
	for _, s := range steps {
		c.expect(s.cmd, s.code, s.text)
	}
	ev := c.sess.EventsOf("port")
	if len(ev) != 4 || ev[0].Detail["bounce"] != "true" || ev[0].Detail["data_address"] != "10.0.0.1:1025" || ev[1].Detail["reason"] != "privileged_port" {
		t.Errorf("port events %+v", ev)
	}

	// EPSV: the announced port accepts the client.
	code, text := c.cmd("EPSV")
	port, err := ParseEPSVReply(text)
	if code != 229 || err != nil || !strings.HasPrefix(text, "Entering Extended Passive Mode (|||") {
		t.Fatalf("EPSV %d %q %v", code, text, err)
	}
	dc, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	c.expect("RETR /sys/lines.txt", 150, "Opening ASCII mode data connection for /sys/lines.txt (7 bytes).")
	data, _ := io.ReadAll(dc)
	if string(data) != "a\r\nb\r\nc\r\n" {
		t.Errorf("EPSV data %q", data)
	}
	c.reply()

	// A connection to the passive port from another address is refused; the client's
	// own connection is then accepted.
	_, text = c.cmd("PASV")
	ap, _ := ParsePASVReply(text)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	thief, err := d.Dial("tcp", ap.String())
	if err != nil {
		t.Skipf("cannot dial from 127.0.0.2: %v", err)
	}
	defer thief.Close()
	mine, err := net.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	c.expect("RETR /sys/lines.txt", 150, "Opening ASCII mode data connection for /sys/lines.txt (7 bytes).")
	data, _ = io.ReadAll(mine)
	if string(data) != "a\r\nb\r\nc\r\n" {
		t.Errorf("data after a refused thief %q", data)
	}
	c.reply()
	thief.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := thief.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Errorf("the thief got %d bytes, %v", n, err)
	}
	if ev := c.sess.EventsOf("data_connection_rejected"); len(ev) != 1 || ev[0].Detail["from"] != "127.0.0.2" {
		t.Errorf("rejection events %+v", ev)
	}

	// Active mode: the server connects to the client's own port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lp := uint16(ln.Addr().(*net.TCPAddr).Port)
	c.expect("PORT "+FormatHostPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), lp)), 200, "PORT command successful.")
	go io.WriteString(c.conn, "NLST /web\r\n")
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
	ac, err := ln.Accept()
	if err != nil {
		t.Fatalf("active accept: %v", err)
	}
	if code, _ := c.reply(); code != 150 {
		t.Errorf("active NLST start %d", code)
	}
	data, _ = io.ReadAll(ac)
	if string(data) != "/web/images\r\n/web/index.htm\r\n" {
		t.Errorf("active NLST %q", data)
	}
	if code, _ := c.reply(); code != 226 {
		t.Errorf("active NLST end %d", code)
	}

	c.expect("EPSV ALL", 200, "EPSV ALL command successful.")
	c.expect("PASV", 500, "PASV not allowed after EPSV ALL.")
	c.expect("PORT 127,0,0,1,200,10", 500, "PORT not allowed after EPSV ALL.")
}

func TestPassiveTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.DataTimeout = 100 * time.Millisecond
	c := start(t, context.Background(), newTestHandler(t, cfg))
	c.login()
	if code, _ := c.cmd("PASV"); code != 227 {
		t.Fatal(code)
	}
	startAt := time.Now()
	c.expect("RETR /sys/lines.txt", 425, "Can't open data connection.")
	if d := time.Since(startAt); d > time.Second {
		t.Errorf("waited %v for a data connection", d)
	}
}

func TestControlLimits(t *testing.T) {
	t.Run("long line", func(t *testing.T) {
		c := start(t, context.Background(), newTestHandler(t, testConfig()))
		c.reply()
		c.expect("USER "+strings.Repeat("A", 3000), 500, "Command line too long.")
		c.expect("NOOP", 200, "NOOP command successful.")
		if ev := c.sess.EventsOf("malformed_command"); len(ev) != 1 || ev[0].Detail["reason"] != "line_too_long" {
			t.Errorf("events %+v", ev)
		}
	})
	t.Run("malformed verb", func(t *testing.T) {
		c := start(t, context.Background(), newTestHandler(t, testConfig()))
		c.reply()
		c.expect("GET / HTTP/1.0", 500, "Command not understood.")
		c.expect("\x00\x01\x02", 500, "Command not understood.")
		if ev := c.sess.EventsOf("malformed_command"); len(ev) != 1 || string(ev[0].Data) != "\x00\x01\x02" {
			t.Errorf("events %+v", ev)
		}
		if ev := c.sess.EventsOf("unknown_command"); len(ev) != 1 || ev[0].Detail["command"] != "GET" || ev[0].Detail["argument"] != "/ HTTP/1.0" {
			t.Errorf("events %+v", ev)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleTimeout = 150 * time.Millisecond
		c := start(t, context.Background(), newTestHandler(t, cfg))
		c.reply()
		if code, text := c.reply(); code != 421 || text != "Timeout (0 seconds): closing control connection." {
			t.Errorf("timeout reply %d %q", code, text)
		}
		if err := c.wait(time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})
	t.Run("a line trickled byte by byte times out", func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleTimeout = 300 * time.Millisecond
		c := start(t, context.Background(), newTestHandler(t, cfg))
		c.reply()
		go func() {
			for i := 0; i < 100; i++ {
				if _, err := c.conn.Write([]byte("N")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		if err := c.wait(2 * time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})
	t.Run("command limit", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxCommands = 3
		c := start(t, context.Background(), newTestHandler(t, cfg))
		c.reply()
		for range 3 {
			c.expect("NOOP", 200, "NOOP command successful.")
		}
		c.expect("NOOP", 421, "Too many commands, closing control connection.")
		if err := c.wait(time.Second); !errors.Is(err, ErrSessionLimit) {
			t.Errorf("ServeStream: %v", err)
		}
	})
	t.Run("context cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		c := start(t, ctx, newTestHandler(t, testConfig()))
		c.reply()
		cancel()
		if code, _ := c.reply(); code != 421 {
			t.Errorf("reply on shutdown %d", code)
		}
		if err := c.wait(time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})
	t.Run("EOF mid-line", func(t *testing.T) {
		c := start(t, context.Background(), newTestHandler(t, testConfig()))
		c.reply()
		c.conn.Write([]byte("US"))
		c.conn.Close()
		if err := c.wait(time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})
	t.Run("pipelined commands", func(t *testing.T) {
		c := start(t, context.Background(), newTestHandler(t, testConfig()))
		c.reply()
		go c.conn.Write([]byte("USER USER\r\nPASS USER\nPWD\r\n\r\nSYST\r\n"))
		for _, want := range []int{331, 230, 257, 215} {
			if code, text := c.reply(); code != want {
				t.Errorf("reply %d %q, want %d", code, text, want)
			}
		}
	})
	t.Run("client stops reading", func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleTimeout = 200 * time.Millisecond
		c := start(t, context.Background(), newTestHandler(t, cfg))
		// Never read the greeting: the write deadline ends the session.
		if err := c.wait(2 * time.Second); err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})
}

func TestParseCommand(t *testing.T) {
	cases := []struct {
		in, verb, arg string
		err           error
	}{
		{"USER bob", "USER", "bob", nil},
		{"user bob smith", "USER", "bob smith", nil},
		{"RETR  two spaces", "RETR", " two spaces", nil},
		{"PWD\r", "PWD", "", nil},
		{"  NOOP", "NOOP", "", nil},
		{"\xff\xf4\xff\xf2ABOR", "ABOR", "", nil},
		{"\xff\xfb\x01PWD", "PWD", "", nil},
		{"STOR a\xff\xffb", "STOR", "a\xffb", nil},
		{"", "", "", ErrEmptyLine},
		{"\r", "", "", ErrEmptyLine},
		{"AB", "AB", "", ErrVerb},
		{"ABCDE x", "ABCDE", "x", ErrVerb},
		{"US3R x", "US3R", "x", ErrVerb},
		{"GET / HTTP/1.0", "GET", "/ HTTP/1.0", nil},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			v, a, err := ParseCommand([]byte(tc.in))
			if !errors.Is(err, tc.err) || (err == nil && (v != tc.verb || a != tc.arg)) {
				t.Errorf("ParseCommand(%q) = %q, %q, %v; want %q, %q, %v", tc.in, v, a, err, tc.verb, tc.arg, tc.err)
			}
		})
	}
}

func TestReplies(t *testing.T) {
	cases := []struct {
		code int
		text string
		wire string
	}{
		{200, "OK.", "200 OK.\r\n"},
		{211, "Features:\n SIZE\nEnd", "211-Features:\r\n SIZE\r\n211 End\r\n"},
		{220, "line one\r\nline two", "220-line one\r\n220 line two\r\n"},
	}
	for _, tc := range cases {
		got := AppendReply(nil, tc.code, tc.text)
		if string(got) != tc.wire {
			t.Errorf("AppendReply(%d, %q) = %q, want %q", tc.code, tc.text, got, tc.wire)
		}
		code, lines, n, err := ParseReply(append(got, "230 next\r\n"...))
		if err != nil || code != tc.code || n != len(got) || strings.Join(lines, "\n") != strings.ReplaceAll(tc.text, "\r", "") {
			t.Errorf("ParseReply(%q) = %d, %q, %d, %v", got, code, lines, n, err)
		}
	}
	for _, partial := range []string{"", "200 OK", "211-Features:\r\n SIZE\r\n"} {
		if _, _, n, err := ParseReply([]byte(partial)); n != 0 || err != nil {
			t.Errorf("ParseReply(%q) = n %d, %v", partial, n, err)
		}
	}
	for _, bad := range []string{"20 x\r\n", "abc x\r\n", "200x\r\n", "999 x\r\n"} {
		if _, _, _, err := ParseReply([]byte(bad)); err == nil {
			t.Errorf("ParseReply(%q) accepted", bad)
		}
	}
}

func TestHostPort(t *testing.T) {
	ap := netip.MustParseAddrPort("192.168.10.7:50001")
	if s := FormatHostPort(ap); s != "192,168,10,7,195,81" {
		t.Errorf("FormatHostPort = %q", s)
	}
	if got, err := ParseHostPort("192,168,10,7,195,81"); err != nil || got != ap {
		t.Errorf("ParseHostPort = %v, %v", got, err)
	}
	if got, err := ParsePASVReply("Entering Passive Mode (192,168,10,7,195,81)."); err != nil || got != ap {
		t.Errorf("ParsePASVReply = %v, %v", got, err)
	}
	for _, bad := range []string{"", "1,2,3,4,5", "1,2,3,4,5,6,7", "256,1,1,1,1,1", "a,b,c,d,e,f", "-1,1,1,1,1,1"} {
		if _, err := ParseHostPort(bad); err == nil {
			t.Errorf("ParseHostPort(%q) accepted", bad)
		}
	}
	eprt := []struct {
		in   string
		want string
		err  error
	}{
		{"|1|132.235.1.2|6275|", "132.235.1.2:6275", nil},
		{"|2|1080::8:800:200C:417A|5282|", "[1080::8:800:200c:417a]:5282", nil},
		{"!1!10.0.0.1!21!", "10.0.0.1:21", nil},
		{"|3|1.2.3.4|5|", "", ErrNetProto},
		{"|1|::1|5|", "", ErrHostPort},
		{"|2|1.2.3.4|5|", "", ErrHostPort},
		{"|1|1.2.3.4|0|", "", ErrHostPort},
		{"|1|1.2.3.4|70000|", "", ErrHostPort},
		{"|1|1.2.3.4|5", "", ErrHostPort},
		{"", "", ErrHostPort},
		{" 1 1.2.3.4 5 ", "", ErrHostPort},
	}
	for _, tc := range eprt {
		got, err := ParseEPRT(tc.in)
		if !errors.Is(err, tc.err) || (err == nil && got.String() != tc.want) {
			t.Errorf("ParseEPRT(%q) = %v, %v; want %s, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if p, err := ParseEPSVReply("Entering Extended Passive Mode (|||6446|)."); err != nil || p != 6446 {
		t.Errorf("ParseEPSVReply = %d, %v", p, err)
	}
	for _, bad := range []string{"", "(|||0|)", "(||1|2|)", "(|||x|)", "no parens"} {
		if _, err := ParseEPSVReply(bad); err == nil {
			t.Errorf("ParseEPSVReply(%q) accepted", bad)
		}
	}
}

func TestNetASCII(t *testing.T) {
	out, cr := ToNetASCII(nil, []byte("a\nb\r\nc\r"), false)
	if string(out) != "a\r\nb\r\nc\r" || !cr {
		t.Errorf("first chunk %q %v", out, cr)
	}
	// A CR at the end of one chunk pairs with the LF starting the next.
	out, cr = ToNetASCII(nil, []byte("\nd\n"), cr)
	if string(out) != "\nd\r\n" || cr {
		t.Errorf("second chunk %q %v", out, cr)
	}
}

func TestTree(t *testing.T) {
	expand := expander(testIdentity())
	files := []File{
		{Path: "/a/b/c.txt", Content: "{serial}", Size: 20, Modified: testModified},
		{Path: "/top.bin", Size: 64},
	}
	tr, err := newTree(files, []string{"/empty", "/a/x/y"}, expand, testBoot, "ident")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"/", "/a", "/a/b", "/a/x", "/a/x/y", "/empty"} {
		if n := tr.lookup(dir); n == nil || !n.dir {
			t.Errorf("%s is not a directory", dir)
		}
	}
	n := tr.lookup("/a/b/c.txt")
	buf := make([]byte, 100)
	k, err := n.ReadAt(buf, 0)
	if k != 20 || err != io.EOF || string(buf[:10]) != "21M3417082" {
		t.Errorf("ReadAt = %d, %v, %q", k, err, buf[:k])
	}
	// Filler bytes are the same whatever the read boundaries.
	whole := append([]byte(nil), buf[:20]...)
	for off := int64(0); off < 20; off++ {
		b := make([]byte, 3)
		k, _ := n.ReadAt(b, off)
		if !bytes.Equal(b[:k], whole[off:min(off+3, 20)]) {
			t.Errorf("ReadAt at %d = %q, want %q", off, b[:k], whole[off:min(off+3, 20)])
		}
	}
	if k, err := n.ReadAt(buf, 20); k != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v", k, err)
	}
	if m := tr.lookup("/top.bin").modified; !m.Before(testBoot.Add(-20*24*time.Hour)) || m.Before(testBoot.Add(-400*24*time.Hour)) {
		t.Errorf("generated modification time %v", m)
	}
	kids := tr.children("/a")
	if len(kids) != 2 || kids[0].path != "/a/b" || kids[1].path != "/a/x" {
		t.Errorf("children of /a: %v %v", kids[0].path, kids[1].path)
	}
	for _, bad := range [][]File{
		{{Path: "relative"}},
		{{Path: "/"}},
		{{Path: "/x"}, {Path: "/x"}},
		{{Path: "/x"}, {Path: "/x/y"}},
		{{Path: "/a\nb"}},
	} {
		if _, err := newTree(bad, nil, expand, testBoot, "ident"); err == nil {
			t.Errorf("tree %+v accepted", bad)
		}
	}
	resolveCases := map[[2]string]string{
		{"/", "sys"}:              "/sys",
		{"/sys", "../web"}:        "/web",
		{"/sys", "/../../etc"}:    "/etc",
		{"/", "../../etc/passwd"}: "/etc/passwd",
		{"/a/b", "./c//d/"}:       "/a/b/c/d",
		{"/a", ""}:                "/a",
	}
	for in, want := range resolveCases {
		if got := resolve(in[0], in[1]); got != want {
			t.Errorf("resolve(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}

func TestListLine(t *testing.T) {
	now := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		dir  bool
		size int64
		mod  time.Time
		want string
	}{
		{"recent.txt", false, 1234, time.Date(2026, 2, 3, 14, 5, 0, 0, time.UTC), "-rw-r--r--   1 0        0              1234 Feb  3 14:05 recent.txt"},
		{"old.bin", false, 1867776, time.Date(2024, 11, 20, 9, 0, 0, 0, time.UTC), "-rw-r--r--   1 0        0           1867776 Nov 20  2024 old.bin"},
		{"web", true, 0, time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC), "drwxr-xr-x   2 0        0               512 Jan 15 00:00 web"},
	}
	for _, tc := range cases {
		if got := listLine(tc.name, tc.dir, tc.size, tc.mod, now, "0", "0"); got != tc.want {
			t.Errorf("listLine:\n got %q\nwant %q", got, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	protocoltest.RefuseConfigs(t, NewConfig, New, testIdentity, protocoltest.BadConfigs[Config]{
		{"empty banner", func(c *Config) { c.Banner = "" }},
		{"banner with CR", func(c *Config) { c.Banner = "a\rb" }},
		{"system with LF", func(c *Config) { c.System = "a\nb" }},
		{"empty feature", func(c *Config) { c.Features = []string{""} }},
		{"user with space", func(c *Config) { c.Accounts[0].User = "a b" }},
		{"user twice", func(c *Config) { c.Accounts = append(c.Accounts, c.Accounts[0]) }},
		{"password with LF", func(c *Config) { c.Accounts[0].Password = "a\nb" }},
		{"relative home", func(c *Config) { c.Accounts[0].Home = "web" }},
		{"home not in the tree", func(c *Config) { c.Accounts[0].Home = "/nope" }},
		{"anonymous account", func(c *Config) { c.Anonymous = true; c.Accounts[0].User = "ftp" }},
		{"nobody can log in", func(c *Config) { c.Accounts = nil }},
		{"owner", func(c *Config) { c.Owner = "" }},
		{"passive address", func(c *Config) { c.PassiveAddress = "::1" }},
		{"passive ports", func(c *Config) { c.PassivePortMax = 0 }},
		{"passive ports reversed", func(c *Config) { c.PassivePortMin, c.PassivePortMax = 6000, 5000 }},
		{"idle timeout", func(c *Config) { c.IdleTimeout = 0 }},
		{"data timeout", func(c *Config) { c.DataTimeout = -1 }},
		{"login delay", func(c *Config) { c.LoginDelay = time.Hour }},
		{"login failures", func(c *Config) { c.MaxLoginFailures = 0 }},
		{"commands", func(c *Config) { c.MaxCommands = 0 }},
		{"upload limits", func(c *Config) { c.MaxUploadSize = c.MaxSessionUpload + 1 }},
		{"bad file", func(c *Config) { c.Files = append(c.Files, File{Path: "x"}) }},
	})
}

func TestSpec(t *testing.T) {
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "ftp", Transport: protocols.TCP, Port: 21, Service: "ftp"},
		protocoltest.Env(t, testIdentity()))
}

func TestPassiveAddressAndPorts(t *testing.T) {
	cfg := testConfig()
	cfg.PassiveAddress = "203.0.113.9"
	cfg.PassivePortMin, cfg.PassivePortMax = 40100, 40199
	c := start(t, context.Background(), newTestHandler(t, cfg))
	c.login()
	code, text := c.cmd("PASV")
	ap, err := ParsePASVReply(text)
	if code != 227 || err != nil || ap.Addr().String() != "203.0.113.9" || ap.Port() < 40100 || ap.Port() > 40199 {
		t.Errorf("PASV %d %q (%v)", code, text, err)
	}
}
