package tftp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// testIdentity is the persona of the tests: a Modicon M340.
var testIdentity = protocoltest.M340

var testNow = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

// testConfig serves a few small files whose bytes the cases spell out.
func testConfig() *Config {
	cfg := NewConfig()
	cfg.Files = append(cfg.Files,
		File{Path: "/t/hello.txt", Content: "hello\n"},
		File{Path: "t/twenty.bin", Content: "0123456789abcdefghij"},
		File{Path: "t/sixteen.bin", Content: "0123456789abcdef"},
		File{Path: "t/text.txt", Content: "ab\ncd\ref\r\nend"},
		File{Path: "t/{model}.txt", Content: "{firmware}"},
		File{Path: "t/split.txt", Content: "abcdefg\nh"},
	)
	return cfg
}

func newTestHandler(t testing.TB, cfg *Config) *Handler {
	t.Helper()
	env := protocoltest.Env(t, testIdentity())
	env.Now = func() time.Time { return testNow }
	h, err := New(env, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// flow is one client address talking to the handler.
type flow struct {
	t    *testing.T
	h    *Handler
	sess *protocoltest.Session
}

var port = 40000

func newFlow(t *testing.T, h *Handler) *flow {
	port++
	return &flow{t: t, h: h, sess: protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:69"),
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)))}
}

// send delivers one datagram and returns the reply, nil for none.
func (f *flow) send(pkt []byte) []byte {
	f.t.Helper()
	return protocoltest.Reply(f.t, f.h, f.sess, pkt)
}

// expect sends pkt and checks the reply.
func (f *flow) expect(pkt, want []byte) {
	f.t.Helper()
	if got := f.send(pkt); !bytes.Equal(got, want) {
		f.t.Errorf("reply to %q:\n got %q\nwant %q", pkt, got, want)
	}
}

func rrq(name, mode string, opts ...string) []byte {
	return request(OpRRQ, name, mode, opts...)
}

func wrq(name, mode string, opts ...string) []byte {
	return request(OpWRQ, name, mode, opts...)
}

func request(op uint16, name, mode string, opts ...string) []byte {
	r := Request{Op: op, Filename: name, Mode: mode}
	for i := 0; i+1 < len(opts); i += 2 {
		r.Options = append(r.Options, Option{opts[i], opts[i+1]})
	}
	return AppendRequest(nil, r)
}

func data(block uint16, s string) []byte { return AppendData(nil, block, []byte(s)) }
func ack(block uint16) []byte            { return AppendACK(nil, block) }
func oack(opts ...string) []byte {
	var o []Option
	for i := 0; i+1 < len(opts); i += 2 {
		o = append(o, Option{opts[i], opts[i+1]})
	}
	return AppendOACK(nil, o)
}
func errPkt(code uint16) []byte { return AppendError(nil, code) }

func TestRead(t *testing.T) {
	h := newTestHandler(t, testConfig())
	cases := []struct {
		name  string
		steps [][2][]byte // request, reply
	}{
		{"one block", [][2][]byte{
			{rrq("t/hello.txt", "octet"), data(1, "hello\n")},
			{ack(1), nil},
		}},
		{"leading slash and upper-case mode", [][2][]byte{
			{rrq("/t/hello.txt", "OCTET"), data(1, "hello\n")},
			{ack(1), nil},
		}},
		{"placeholders", [][2][]byte{
			{rrq("t/BMX P34 2020.txt", "octet"), data(1, "v3.40")},
			{ack(1), nil},
		}},
		{"blksize", [][2][]byte{
			{rrq("t/twenty.bin", "octet", "blksize", "8"), oack("blksize", "8")},
			{ack(0), data(1, "01234567")},
			{ack(1), data(2, "89abcdef")},
			{ack(2), data(3, "ghij")},
			{ack(3), nil},
		}},
		{"a multiple of the block size ends with an empty block", [][2][]byte{
			{rrq("t/sixteen.bin", "octet", "blksize", "8"), oack("blksize", "8")},
			{ack(0), data(1, "01234567")},
			{ack(1), data(2, "89abcdef")},
			{ack(2), data(3, "")},
			{ack(3), nil},
		}},
		{"tsize and timeout", [][2][]byte{
			{rrq("t/twenty.bin", "octet", "tsize", "0", "timeout", "5", "windowsize", "4"), oack("tsize", "20", "timeout", "5")},
			{ack(0), data(1, "0123456789abcdefghij")},
			{ack(1), nil},
		}},
		{"invalid options are left out", [][2][]byte{
			{rrq("t/hello.txt", "octet", "blksize", "4", "timeout", "0", "tsize", "x"), data(1, "hello\n")},
			{ack(1), nil},
		}},
		{"blksize above the maximum is lowered", [][2][]byte{
			{rrq("t/hello.txt", "octet", "BLKSIZE", "65464", "blksize", "8"), oack("BLKSIZE", "1468")},
			{ack(0), data(1, "hello\n")},
			{ack(1), nil},
		}},
		{"netascii", [][2][]byte{
			{rrq("t/text.txt", "netascii"), data(1, "ab\r\ncd\r\x00ef\r\x00\r\nend")},
			{ack(1), nil},
		}},
		{"netascii across blocks, no tsize", [][2][]byte{
			{rrq("t/text.txt", "NetASCII", "blksize", "8", "tsize", "0"), oack("blksize", "8")},
			{ack(0), data(1, "ab\r\ncd\r\x00")},
			{ack(1), data(2, "ef\r\x00\r\nen")},
			{ack(2), data(3, "d")},
			{ack(3), nil},
		}},
		{"netascii CR LF split by a block boundary", [][2][]byte{
			{rrq("t/split.txt", "netascii", "blksize", "8"), oack("blksize", "8")},
			{ack(0), data(1, "abcdefg\r")},
			{ack(1), data(2, "\nh")},
			{ack(2), nil},
		}},
		{"duplicate ACK resends after a gap only", [][2][]byte{
			{rrq("t/twenty.bin", "octet", "blksize", "8"), oack("blksize", "8")},
			{ack(0), data(1, "01234567")},
			{ack(1), data(2, "89abcdef")},
			{ack(1), nil},
		}},
		{"repeated request before progress", [][2][]byte{
			{rrq("t/twenty.bin", "octet", "blksize", "8"), oack("blksize", "8")},
			{rrq("t/twenty.bin", "octet", "blksize", "8"), oack("blksize", "8")},
			{ack(0), data(1, "01234567")},
			{ack(5), nil},
		}},
		{"not found", [][2][]byte{{rrq("t/nope.bin", "octet"), errPkt(ErrNotFound)}}},
		{"directory climb", [][2][]byte{{rrq("../etc/passwd", "octet"), errPkt(ErrAccess)}}},
		{"climb inside the tree", [][2][]byte{{rrq("t/../t/hello.txt", "octet"), errPkt(ErrAccess)}}},
		{"root", [][2][]byte{{rrq("/", "octet"), errPkt(ErrAccess)}}},
		{"mail mode", [][2][]byte{{rrq("t/hello.txt", "mail"), errPkt(ErrIllegalOp)}}},
		{"unterminated", [][2][]byte{{[]byte("\x00\x01t/hello.txt\x00octet"), errPkt(ErrIllegalOp)}}},
		{"empty name", [][2][]byte{{[]byte("\x00\x01\x00octet\x00"), errPkt(ErrIllegalOp)}}},
		{"unknown opcode", [][2][]byte{{[]byte("\x00\x09abc"), errPkt(ErrIllegalOp)}}},
		{"one byte", [][2][]byte{{[]byte("\x01"), errPkt(ErrIllegalOp)}}},
		{"OACK from a client", [][2][]byte{{oack("blksize", "8"), errPkt(ErrIllegalOp)}}},
		{"ACK without a transfer", [][2][]byte{{ack(1), errPkt(ErrUnknownTID)}}},
		{"DATA without a transfer", [][2][]byte{{data(1, "x"), errPkt(ErrUnknownTID)}}},
		{"short ACK", [][2][]byte{{rrq("t/twenty.bin", "octet", "blksize", "8"), oack("blksize", "8")}, {[]byte("\x00\x04\x00"), errPkt(ErrIllegalOp)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlow(t, h)
			for _, s := range tc.steps {
				f.expect(s[0], s[1])
			}
		})
	}
}

func TestReadEvents(t *testing.T) {
	h := newTestHandler(t, testConfig())
	f := newFlow(t, h)
	f.send(rrq("t/twenty.bin", "octet", "blksize", "8", "tsize", "0"))
	for b := uint16(0); b <= 3; b++ {
		f.send(ack(b))
	}
	evs := f.sess.Events()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	r, c := evs[0], evs[1]
	if r.Op != "read_request" || r.Area != "t/twenty.bin" || r.Detail["mode"] != "octet" || r.Detail["options"] != "blksize=8 tsize=0" ||
		r.Detail["blksize"] != "8" || r.Write || r.Exception != 0 || r.Protocol != "tftp" || r.Unit != -1 {
		t.Errorf("request event %+v", r)
	}
	if c.Op != "read_complete" || c.Quantity != 20 || c.Detail["blocks"] != "3" || c.Detail["bytes"] != "20" || c.Detail["options"] != "blksize=8 tsize=20" {
		t.Errorf("complete event %+v", c)
	}
	if _, ok := h.transfers[f.sess.ID()]; ok {
		t.Errorf("the transfer is still kept")
	}

	g := newFlow(t, h)
	g.send(rrq("../../etc/shadow", "octet"))
	if ev := g.sess.EventsOf("read_request"); len(ev) != 1 || ev[0].Exception != int(ErrAccess) || ev[0].Detail["error"] != "Access violation" || ev[0].Area != "../../etc/shadow" {
		t.Errorf("refused request event %+v", ev)
	}
}

func TestResend(t *testing.T) {
	h := newTestHandler(t, testConfig())
	f := newFlow(t, h)
	f.send(rrq("t/twenty.bin", "octet", "blksize", "8"))
	f.send(ack(0))
	f.expect(ack(1), data(2, "89abcdef"))
	// DATA 2 was lost: after the client's timeout it repeats ACK 1.
	h.transfers[f.sess.ID()].lastAt = time.Now().Add(-time.Second)
	f.expect(ack(1), data(2, "89abcdef"))
	f.expect(ack(2), data(3, "ghij"))
}

func TestRollover(t *testing.T) {
	cfg := testConfig()
	cfg.Files = []File{{Path: "big.bin", Size: 8*65536 + 3}}
	h := newTestHandler(t, cfg)
	f := newFlow(t, h)
	if got := f.send(rrq("big.bin", "octet", "blksize", "8")); !bytes.Equal(got, oack("blksize", "8")) {
		t.Fatalf("OACK %q", got)
	}
	var block uint16
	var total int
	for i := 0; i < 65537; i++ {
		got := f.send(ack(block))
		op, b, d, err := ParseBlock(got)
		if err != nil || op != OpDATA || b != block+1 {
			t.Fatalf("ACK %d: reply % x", block, got)
		}
		total += len(d)
		block = b
	}
	if block != 1 || total != 8*65536+3 {
		t.Fatalf("last block %d, %d bytes", block, total)
	}
	f.expect(ack(block), nil)
	if ev := f.sess.EventsOf("read_complete"); len(ev) != 1 || ev[0].Detail["blocks"] != "65537" {
		t.Errorf("events %+v", ev)
	}
}

func TestWrite(t *testing.T) {
	h := newTestHandler(t, testConfig())
	block512 := strings.Repeat("x", 512)
	cases := []struct {
		name  string
		cfg   func(*Config)
		steps [][2][]byte
		data  string // the upload reported, "" for none
		done  bool
	}{
		{"two blocks", nil, [][2][]byte{
			{wrq("up/a.bin", "octet"), ack(0)},
			{data(1, block512), ack(1)},
			{data(2, "end"), ack(2)},
			{data(2, "end"), ack(2)}, // the client repeats its last block: acknowledged again
		}, block512 + "end", true},
		{"options", nil, [][2][]byte{
			{wrq("up/b.bin", "octet", "blksize", "16", "tsize", "20"), oack("blksize", "16", "tsize", "20")},
			{data(1, "0123456789abcdef"), ack(1)},
			{data(1, "0123456789abcdef"), ack(1)},
			{data(3, "zz"), nil},
			{data(2, "ghij"), ack(2)},
		}, "0123456789abcdefghij", true},
		{"empty file", nil, [][2][]byte{{wrq("up/empty", "octet"), ack(0)}, {data(1, ""), ack(1)}}, "", true},
		{"over a device file", nil, [][2][]byte{{wrq("sys/version.txt", "octet"), errPkt(ErrAccess)}}, "", false},
		{"climbing", nil, [][2][]byte{{wrq("../../tmp/x", "octet"), errPkt(ErrAccess)}}, "", false},
		{"writes disabled", func(c *Config) { c.AllowWrite = false }, [][2][]byte{{wrq("up/x", "octet"), errPkt(ErrAccess)}}, "", false},
		{"announced size over the limit", func(c *Config) { c.MaxUploadSize = 100 }, [][2][]byte{
			{wrq("up/x", "octet", "tsize", "101"), errPkt(ErrDiskFull)},
		}, "", false},
		{"size limit", func(c *Config) { c.MaxUploadSize = 10 }, [][2][]byte{
			{wrq("up/cut.bin", "octet", "blksize", "8"), oack("blksize", "8")},
			{data(1, "01234567"), ack(1)},
			{data(2, "89abcdef"), errPkt(ErrDiskFull)},
		}, "0123456789", false},
		{"block larger than negotiated", nil, [][2][]byte{
			{wrq("up/big", "octet", "blksize", "8"), oack("blksize", "8")},
			{data(1, "0123456789"), errPkt(ErrIllegalOp)},
		}, "", false},
		{"ACK to a write", nil, [][2][]byte{{wrq("up/c", "octet"), ack(0)}, {ack(1), errPkt(ErrUnknownTID)}}, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hh := h
			if tc.cfg != nil {
				cfg := testConfig()
				tc.cfg(cfg)
				hh = newTestHandler(t, cfg)
			}
			f := newFlow(t, hh)
			for _, s := range tc.steps {
				f.expect(s[0], s[1])
			}
			ups := f.sess.EventsOf("upload")
			if tc.name == "ACK to a write" {
				return
			}
			if tc.data == "" && !tc.done {
				if len(ups) > 0 && tc.name != "block larger than negotiated" {
					t.Errorf("upload events %+v", ups)
				}
				return
			}
			// The event carries the first 256 bytes; the whole upload is kept as a file.
			want := tc.data[:min(len(tc.data), 256)]
			if len(ups) != 1 || string(ups[0].Data) != want || ups[0].Quantity != len(tc.data) || ups[0].Detail["complete"] != fmt.Sprint(tc.done) || !ups[0].Write {
				t.Fatalf("upload events %+v", ups)
			}
			if f := f.sess.Files(); len(f) != 1 || string(f[0].Data) != tc.data {
				t.Fatalf("kept files %+v", f)
			}
		})
	}
}

func TestUploadEvent(t *testing.T) {
	h := newTestHandler(t, testConfig())
	f := newFlow(t, h)
	f.send(wrq("../x/../evil.sh", "netascii", "tsize", "11"))
	f.send(data(1, "echo pwn\r\n\x00"))
	evs := f.sess.Events()
	if len(evs) != 2 || evs[0].Op != "write_request" || evs[0].Exception != int(ErrAccess) || evs[1].Op != "unknown_transfer" || evs[1].Exception != int(ErrUnknownTID) {
		t.Fatalf("events %+v", evs)
	}
	g := newFlow(t, h)
	g.send(wrq("boot/evil.sh", "netascii", "tsize", "11"))
	g.send(data(1, "echo pwn\r\n\x00"))
	evs = g.sess.Events()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	w, u := evs[0], evs[1]
	if w.Op != "write_request" || !w.Write || w.Area != "boot/evil.sh" || w.Detail["options"] != "tsize=11" {
		t.Errorf("request event %+v", w)
	}
	// The bytes are kept as they came, netascii included.
	sum := sha256.Sum256([]byte("echo pwn\r\n\x00"))
	if f := g.sess.Files(); len(f) != 1 || f[0].Name != "boot/evil.sh" || string(f[0].Data) != "echo pwn\r\n\x00" || f[0].Truncated {
		t.Errorf("kept files %+v", f)
	}
	if u.Op != "upload" || string(u.Data) != "echo pwn\r\n\x00" || u.Detail["name"] != "boot/evil.sh" || u.Detail["mode"] != "netascii" ||
		u.Detail["size"] != "11" || u.Detail["complete"] != "true" || u.Detail["sha256"] != hex.EncodeToString(sum[:]) || u.Quantity != 11 {
		t.Errorf("upload event %+v", u)
	}
}

func TestExpiry(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 50 * time.Millisecond
	h := newTestHandler(t, cfg)

	r := newFlow(t, h)
	r.send(rrq("t/twenty.bin", "octet", "blksize", "8"))
	r.send(ack(0))
	w := newFlow(t, h)
	w.send(wrq("up/partial.bin", "octet", "blksize", "8"))
	w.send(data(1, "01234567"))
	deadline := time.Now().Add(2 * time.Second)
	for len(r.sess.EventsOf("read_incomplete")) == 0 || len(w.sess.EventsOf("upload")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no expiry events: %+v %+v", r.sess.Events(), w.sess.Events())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ev := r.sess.EventsOf("read_incomplete")[0]; ev.Detail["reason"] != "timeout" || ev.Quantity != 8 {
		t.Errorf("read expiry %+v", ev)
	}
	if ev := w.sess.EventsOf("upload")[0]; string(ev.Data) != "01234567" || ev.Detail["complete"] != "false" || ev.Detail["reason"] != "timeout" {
		t.Errorf("write expiry %+v", ev)
	}
	h.mu.Lock()
	n, held := len(h.transfers), h.held
	h.mu.Unlock()
	if n != 0 || held != 0 {
		t.Errorf("%d transfers and %d bytes held after expiry", n, held)
	}
	// A finished upload is kept only to acknowledge a repeated last block.
	d := newFlow(t, h)
	d.send(wrq("up/done", "octet"))
	d.send(data(1, "x"))
	time.Sleep(150 * time.Millisecond)
	if ev := d.sess.EventsOf("upload"); len(ev) != 1 {
		t.Errorf("a finished upload was reported %d times", len(ev))
	}
	d.expect(data(1, "x"), errPkt(ErrUnknownTID))
}

func TestLimits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxTransfers = 1
	cfg.MaxUploadSize, cfg.MaxUploadMemory = 12, 12
	h := newTestHandler(t, cfg)
	a := newFlow(t, h)
	a.send(wrq("up/a", "octet", "blksize", "8"))
	a.expect(data(1, "01234567"), ack(1))
	b := newFlow(t, h)
	b.expect(rrq("t/hello.txt", "octet"), nil)
	if ev := b.sess.EventsOf("read_request"); len(ev) != 1 || ev[0].Detail["reason"] != "transfer_limit" {
		t.Errorf("events %+v", ev)
	}
	// The client gives up with an ERROR: the transfer ends and is reported.
	a.expect(AppendError(nil, ErrUndefined), nil)
	ev := a.sess.EventsOf("client_error")
	if len(ev) != 1 || ev[0].Code != 0 || ev[0].Detail["message"] != "Undefined error code" || string(ev[0].Data) != "01234567" || ev[0].Detail["reason"] != "client_error" {
		t.Errorf("client error event %+v", ev)
	}
	b.expect(rrq("t/hello.txt", "octet"), data(1, "hello\n"))

	// The memory bound spans transfers.
	cfg.MaxTransfers = 4
	h = newTestHandler(t, cfg)
	a = newFlow(t, h)
	a.send(wrq("up/a", "octet", "blksize", "8"))
	a.expect(data(1, "01234567"), ack(1))
	b = newFlow(t, h)
	b.send(wrq("up/b", "octet", "blksize", "8"))
	b.expect(data(1, "01234567"), errPkt(ErrDiskFull))
	if ev := b.sess.EventsOf("upload"); len(ev) != 1 || string(ev[0].Data) != "0123" || ev[0].Detail["reason"] != "size_limit" {
		t.Errorf("events %+v", ev)
	}
	if f := b.sess.Files(); len(f) != 1 || f[0].Name != "up/b" || string(f[0].Data) != "0123" || !f[0].Truncated || f[0].Protocol != "tftp" {
		t.Errorf("kept files %+v", f)
	}
}

func TestReplacedTransfer(t *testing.T) {
	h := newTestHandler(t, testConfig())
	f := newFlow(t, h)
	f.send(rrq("t/twenty.bin", "octet", "blksize", "8"))
	f.send(ack(0))
	f.send(ack(1))
	f.expect(rrq("t/hello.txt", "octet"), data(1, "hello\n"))
	if ev := f.sess.EventsOf("read_incomplete"); len(ev) != 1 || ev[0].Detail["reason"] != "replaced" || ev[0].Area != "t/twenty.bin" {
		t.Errorf("events %+v", ev)
	}
}

func TestNoOptions(t *testing.T) {
	cfg := testConfig()
	cfg.Options = false
	f := newFlow(t, newTestHandler(t, cfg))
	f.expect(rrq("t/twenty.bin", "octet", "blksize", "8", "tsize", "0"), data(1, "0123456789abcdefghij"))
}

func TestWire(t *testing.T) {
	r := Request{Op: OpRRQ, Filename: "fw/cpu.bin", Mode: "octet", Options: []Option{{"blksize", "1428"}, {"tsize", "0"}}}
	b := AppendRequest(nil, r)
	if string(b) != "\x00\x01fw/cpu.bin\x00octet\x00blksize\x001428\x00tsize\x000\x00" {
		t.Errorf("AppendRequest = %q", b)
	}
	got, err := ParseRequest(b)
	if err != nil || got.Filename != r.Filename || got.Mode != r.Mode || len(got.Options) != 2 || got.Options[1] != r.Options[1] {
		t.Errorf("ParseRequest = %+v, %v", got, err)
	}
	if v, ok := got.Option("BLKSIZE"); !ok || v != "1428" {
		t.Errorf("Option = %q, %v", v, ok)
	}
	cases := []struct {
		in  string
		err error
	}{
		{"\x00\x02a\x00octet\x00", nil},
		{"\x00\x01a\x00octet\x00blksize\x00", nil},          // an option without a value is ignored
		{"\x00\x01a\x00octet\x00blksize\x00512", nil},       // so is one without its NUL
		{"\x00\x01a\x00octet\x00\x00\x00\x00\x00\x00", nil}, // padding
		{"\x00\x01a\x00octet", ErrString},
		{"\x00\x01a", ErrString},
		{"\x00\x01", ErrString},
		{"\x00\x01\x00octet\x00", ErrEmptyName},
		{"\x00\x03a\x00octet\x00", ErrOpcode},
		{"\x00", ErrShort},
		{"\x00\x07", ErrOpcode},
	}
	for _, tc := range cases {
		if _, err := ParseRequest([]byte(tc.in)); !errors.Is(err, tc.err) {
			t.Errorf("ParseRequest(%q) = %v, want %v", tc.in, err, tc.err)
		}
	}
	if op, blk, d, err := ParseBlock(AppendData(nil, 0xBEEF, []byte("xy"))); err != nil || op != OpDATA || blk != 0xBEEF || string(d) != "xy" {
		t.Errorf("ParseBlock(DATA) = %d %d %q %v", op, blk, d, err)
	}
	if string(AppendACK(nil, 258)) != "\x00\x04\x01\x02" {
		t.Errorf("AppendACK")
	}
	if _, _, _, err := ParseBlock([]byte("\x00\x04\x01")); !errors.Is(err, ErrShort) {
		t.Errorf("short ACK: %v", err)
	}
	if string(AppendError(nil, ErrNotFound)) != "\x00\x05\x00\x01File not found\x00" {
		t.Errorf("AppendError = %q", AppendError(nil, ErrNotFound))
	}
	if code, msg, err := ParseError([]byte("\x00\x05\x00\x08bad option")); err != nil || code != 8 || msg != "bad option" {
		t.Errorf("ParseError = %d %q %v", code, msg, err)
	}
	o := AppendOACK(nil, []Option{{"blksize", "8"}, {"tsize", "20"}})
	if opts, err := ParseOACK(o); err != nil || len(opts) != 2 || opts[1] != (Option{"tsize", "20"}) {
		t.Errorf("ParseOACK = %v, %v", opts, err)
	}
	if _, err := ParseOACK([]byte("\x00\x06blksize\x008")); !errors.Is(err, ErrString) {
		t.Errorf("unterminated OACK: %v", err)
	}
	if got := netASCII(nil, []byte("a\nb\rc\r\n")); string(got) != "a\r\nb\r\x00c\r\x00\r\n" {
		t.Errorf("netASCII = %q", got)
	}
}

func TestCleanName(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"fw/cpu.bin", "fw/cpu.bin", true},
		{"/fw/cpu.bin", "fw/cpu.bin", true},
		{"//fw//./cpu.bin", "fw/cpu.bin", true},
		{"fw/../cpu.bin", "", false},
		{"..", "", false},
		{"a\x00b", "", false},
		{"/", "", true},
		{"C:\\boot.ini", "C:\\boot.ini", true},
	}
	for _, tc := range cases {
		got, ok := cleanName(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cleanName(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	protocoltest.RefuseConfigs(t, NewConfig, New, testIdentity, protocoltest.BadConfigs[Config]{
		{"block size", func(c *Config) { c.MaxBlockSize = 4 }},
		{"timeout", func(c *Config) { c.Timeout = 0 }},
		{"transfers", func(c *Config) { c.MaxTransfers = 0 }},
		{"upload limits", func(c *Config) { c.MaxUploadSize = c.MaxUploadMemory + 1 }},
		{"climbing file", func(c *Config) { c.Files = []File{{Path: "../x"}} }},
		{"empty path", func(c *Config) { c.Files = []File{{Path: "/"}} }},
		{"file twice", func(c *Config) { c.Files = []File{{Path: "a"}, {Path: "/a"}} }},
	})
}

func TestSpec(t *testing.T) {
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "tftp", Transport: protocols.UDP, Port: 69, Service: "tftp"},
		protocoltest.Env(t, testIdentity()))
}

func TestFiller(t *testing.T) {
	h := newTestHandler(t, testConfig())
	f := h.files["fw/v3.40.ldx"]
	a := make([]byte, 64)
	if n := f.readAt(a, 0); n != 64 || string(a[:4]) != "LDX\x01" {
		t.Fatalf("readAt = %d %q", n, a[:8])
	}
	for off := int64(1); off < 40; off += 3 {
		b := make([]byte, 5)
		f.readAt(b, off)
		if !bytes.Equal(b, a[off:off+5]) {
			t.Errorf("readAt at %d = % x, want % x", off, b, a[off:off+5])
		}
	}
	if n := f.readAt(make([]byte, 10), f.size-3); n != 3 {
		t.Errorf("readAt at the end = %d", n)
	}
	// The FTP server serves the same bytes for its /fw/v3.40.ldx (its tests check the
	// same constant).
	same := make([]byte, 16)
	f.readAt(same, 1000)
	if hex.EncodeToString(same) != "f5d51df5c9f475be6a06d50b3c453367" {
		t.Errorf("filler at 1000 = %x", same)
	}
	// Another install serves other filler.
	id := testIdentity()
	id.Serial = "21M0000001"
	env := protocoltest.Env(t, id)
	other, err := New(env, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	c := make([]byte, 64)
	other.files["fw/v3.40.ldx"].readAt(c, 0)
	if bytes.Equal(a, c) {
		t.Errorf("two installs serve the same firmware bytes")
	}
}
