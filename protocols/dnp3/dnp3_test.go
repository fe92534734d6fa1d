package dnp3

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// TestCRC validates CRC-16/DNP against independent known-good values: the catalogue
// check value of "123456789" (reveng CRC-16/DNP: poly 0x3D65, refin/refout, xorout
// 0xFFFF, check 0xEA82), and link headers from opendnp3's unit tests
// (cpp/tests TestCRC.cpp: RESET_LINK_STATES "05 64 05 C0 01 00 00 04 E9 21";
// LinkFrame tests: REQUEST_LINK_STATUS "05 64 05 49 01 00 00 04 D2 36").
func TestCRC(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want uint16
	}{
		{"catalogue check", []byte("123456789"), 0xEA82},
		{"reset link states header", protocoltest.Unhex(t, "05 64 05 C0 01 00 00 04"), 0x21E9},
		{"request link status header", protocoltest.Unhex(t, "05 64 05 49 01 00 00 04"), 0x36D2},
		{"class 1230 read block", protocoltest.Unhex(t, "C0 C3 01 3C 02 06 3C 03 06 3C 04 06 3C 01 06"), 0x129A},
		{"empty", nil, 0xFFFF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CRC(tc.in); got != tc.want {
				t.Fatalf("CRC = 0x%04x, want 0x%04x", got, tc.want)
			}
		})
	}
}

func TestParseLinkFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    LinkFrame
		n       int
		wantErr error
	}{
		{
			name: "reset link states (opendnp3)", in: "05 64 05 C0 01 00 00 04 E9 21",
			want: LinkFrame{Control: 0xC0, Dest: 1, Src: 1024, Data: []byte{}}, n: 10,
		},
		{
			// opendnp3 link parser test: unconfirmed user data, READ class 1,2,3,0.
			name: "user data with block CRC",
			in:   "05 64 14 F3 01 00 00 04 0A 3B C0 C3 01 3C 02 06 3C 03 06 3C 04 06 3C 01 06 9A 12",
			want: LinkFrame{Control: 0xF3, Dest: 1, Src: 1024, Data: protocoltest.Unhex(t, "C0 C3 01 3C 02 06 3C 03 06 3C 04 06 3C 01 06")}, n: 27,
		},
		{name: "short header", in: "05 64 05 C0 01", wantErr: ErrShortFrame},
		{name: "short body", in: "05 64 14 F3 01 00 00 04 0A 3B C0 C3", wantErr: ErrShortFrame},
		{name: "bad start", in: "05 65 05 C0 01 00 00 04 E9 21", wantErr: ErrBadStart},
		{name: "bad first octet", in: "06", wantErr: ErrBadStart},
		{name: "header CRC", in: "05 64 05 C0 01 00 00 04 E9 22", wantErr: ErrHeaderCRC},
		{name: "body CRC", in: "05 64 14 F3 01 00 00 04 0A 3B C0 C3 01 3C 02 06 3C 03 06 3C 04 06 3C 01 06 9A 13", wantErr: ErrDataCRC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, n, err := ParseLinkFrame(protocoltest.Unhex(t, tc.in))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.n || f.Control != tc.want.Control || f.Dest != tc.want.Dest || f.Src != tc.want.Src || !bytes.Equal(f.Data, tc.want.Data) {
				t.Fatalf("got %+v n %d, want %+v n %d", f, n, tc.want, tc.n)
			}
			if re := AppendLinkFrame(nil, f.Control, f.Dest, f.Src, f.Data); !bytes.Equal(re, protocoltest.Unhex(t, tc.in)) {
				t.Fatalf("re-encoded % X", re)
			}
		})
	}
	// Bad length with a valid header CRC.
	hdr := []byte{0x05, 0x64, 0x04, 0xC0, 0x01, 0x00, 0x00, 0x04}
	hdr = binary.LittleEndian.AppendUint16(hdr, CRC(hdr))
	if _, _, err := ParseLinkFrame(hdr); !errors.Is(err, ErrBadLength) {
		t.Fatalf("length 4: err = %v", err)
	}
}

func TestAppendLinkFrameBlocks(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 32, 33, 249, 250} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i * 7)
		}
		b := AppendLinkFrame(nil, 0x44, 1, 10, data)
		if want := 10 + n + 2*((n+15)/16); len(b) != want {
			t.Fatalf("%d octets: frame of %d, want %d", n, len(b), want)
		}
		f, m, err := ParseLinkFrame(b)
		if err != nil || m != len(b) || !bytes.Equal(f.Data, data) {
			t.Fatalf("%d octets: round trip %v %d", n, err, m)
		}
	}
}

func TestParseObjectHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ObjectHeader
		n       int
		wantErr error
	}{
		{"class 0 all", "3C 01 06", ObjectHeader{Group: 60, Var: 1, Qual: 6, All: true}, 3, nil},
		{"8-bit range", "1E 01 00 02 05", ObjectHeader{Group: 30, Var: 1, Qual: 0, Start: 2, Stop: 5, Count: 4}, 5, nil},
		{"16-bit range", "01 02 01 00 01 FF 01", ObjectHeader{Group: 1, Var: 2, Qual: 1, Start: 256, Stop: 511, Count: 256}, 7, nil},
		{"8-bit count", "32 01 07 01", ObjectHeader{Group: 50, Var: 1, Qual: 7, Stop: 0, Count: 1}, 4, nil},
		{"CROB index prefix 16", "0C 01 28 01 00", ObjectHeader{Group: 12, Var: 1, Qual: 0x28, Stop: 0, Count: 1}, 5, nil},
		{"stop before start", "1E 01 00 05 02", ObjectHeader{}, 0, ErrBadObject},
		{"truncated range", "1E 01 01 00", ObjectHeader{}, 0, ErrBadObject},
		{"reserved qualifier", "1E 01 0C", ObjectHeader{}, 0, ErrBadObject},
		{"prefix code 7", "1E 01 77 01", ObjectHeader{}, 0, ErrBadObject},
		{"too short", "1E 01", ObjectHeader{}, 0, ErrBadObject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := ParseObjectHeader(protocoltest.Unhex(t, tc.in))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || h != tc.want || n != tc.n {
				t.Fatalf("got %+v n %d err %v, want %+v n %d", h, n, err, tc.want, tc.n)
			}
		})
	}
}

func TestTimeAndCROB(t *testing.T) {
	ts := time.Date(2025, 3, 1, 12, 0, 0, 123e6, time.UTC)
	b := AppendTime(nil, ts)
	if got, err := ParseTime(b); err != nil || !got.Equal(ts) {
		t.Fatalf("time round trip %v %v", got, err)
	}
	// 1740830400123 ms = 0x01955193DE7B, sent little-endian.
	if want := protocoltest.Unhex(t, "7B DE 93 51 95 01"); !bytes.Equal(b, want) {
		t.Fatalf("time % X, want % X", b, want)
	}
	c := CROB{Code: 0x41, Count: 1, OnMs: 100, OffMs: 0, Status: 0}
	if want := protocoltest.Unhex(t, "41 01 64 00 00 00 00 00 00 00 00"); !bytes.Equal(c.Append(nil), want) {
		t.Fatalf("CROB % X", c.Append(nil))
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"reserved address", func(c *Config) { c.Address = 0xFFF0 }, "address 65520"},
		{"fragment too small", func(c *Config) { c.MaxFragment = 100 }, "max_fragment"},
		{"class 4", func(c *Config) { c.BinaryInputs[0].Class = 4 }, "class 4"},
		{"feedback out of range", func(c *Config) { c.BinaryOutputs[0].FeedbackInput = intp(99) }, "feedback_input 99"},
		{"bad variation", func(c *Config) { c.StaticVariations.Counter = 3 }, "static_variations"},
		{"wave without period", func(c *Config) { c.AnalogInputs[0].Period = 0 }, "positive period"},
		{"restart delay", func(c *Config) { c.ColdRestartDelay = time.Minute * 2 }, "restart delays"},
		{"class 0 too big", func(c *Config) {
			c.MaxFragment = 249
			c.AnalogInputs = make([]AnalogInput, 60)
		}, "exceeds max_fragment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			tc.modify(c)
			_, err := New(protocoltest.Env(t, &protocols.Identity{}), c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, protocols.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrConfig with %q", err, tc.want)
			}
		})
	}
}

func TestSpec(t *testing.T) {
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "dnp3", Transport: protocols.TCP, Port: 20000, Service: "dnp"},
		protocoltest.Env(t, &protocols.Identity{}))
}

// ---------------------------------------------------------------------------------
// A minimal master for the end-to-end tests.

const (
	master   = 1
	outst    = 10
	ctrlData = 0xC4 // DIR, PRM, UNCONFIRMED_USER_DATA
)

type dclient struct {
	t    testing.TB
	c    net.Conn
	buf  []byte
	tseq byte
	aseq byte
}

var testIdentity = &protocols.Identity{Vendor: "Northbridge Grid Controls", Product: "FRC-400", Model: "FRC-400 R2",
	Firmware: "3.12.7", Hardware: "C", Serial: "NB4-0019823", Hostname: "recloser-f12", Location: "Feeder 12 pole 87"}

func serve(t testing.TB, cfg *Config, mod func(*protocols.Env)) (*Handler, *protocoltest.Server) {
	t.Helper()
	env := protocoltest.Env(t, testIdentity)
	if mod != nil {
		mod(&env)
	}
	h, err := New(env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h, protocoltest.ServeTCP(t, "", h)
}

func dial(t testing.TB, srv *protocoltest.Server) *dclient {
	t.Helper()
	return &dclient{t: t, c: srv.Dial(t)}
}

func (c *dclient) write(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// link sends a link frame from the master.
func (c *dclient) link(ctrl byte, dest uint16, data []byte) {
	c.t.Helper()
	c.write(AppendLinkFrame(nil, ctrl, dest, master, data))
}

// request sends an application request (objects in hex) to dest in one or more
// segments and returns the sequence number used.
func (c *dclient) requestTo(dest uint16, fc byte, objs string) byte {
	c.t.Helper()
	seq := c.aseq
	c.aseq = (c.aseq + 1) & 0x0F
	frag := append([]byte{acFIR | acFIN | seq, fc}, protocoltest.Unhex(c.t, objs)...)
	var frames []byte
	frames, c.tseq = AppendSegments(nil, ctrlData, dest, master, c.tseq, frag)
	c.write(frames)
	return seq
}

func (c *dclient) request(fc byte, objs string) byte {
	c.t.Helper()
	return c.requestTo(outst, fc, objs)
}

func (c *dclient) read(timeout time.Duration) (LinkFrame, error) {
	c.c.SetReadDeadline(time.Now().Add(timeout))
	rd := make([]byte, 1024)
	for {
		f, n, err := ParseLinkFrame(c.buf)
		if err == nil {
			c.buf = c.buf[n:]
			if f.Dir() {
				c.t.Fatalf("outstation frame with DIR set: %+v", f)
			}
			if f.Src != outst || f.Dest != master {
				c.t.Fatalf("frame addresses %d→%d", f.Src, f.Dest)
			}
			return f, nil
		}
		if !errors.Is(err, ErrShortFrame) {
			c.t.Fatalf("outstation frame: %v (% X)", err, c.buf)
		}
		m, rerr := c.c.Read(rd)
		c.buf = append(c.buf, rd[:m]...)
		if rerr != nil {
			return LinkFrame{}, rerr
		}
	}
}

func (c *dclient) frame() LinkFrame {
	c.t.Helper()
	f, err := c.read(3 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// response reassembles one application fragment.
func (c *dclient) response() []byte {
	c.t.Helper()
	var frag []byte
	var next byte
	for first := true; ; first = false {
		f := c.frame()
		if f.Control != ctrlPRM|LinkUnconfirmedData || len(f.Data) < 1 {
			c.t.Fatalf("want user data, got control 0x%02X % X", f.Control, f.Data)
		}
		h := f.Data[0]
		if first != (h&tpFIR != 0) || (!first && h&0x3F != next) {
			c.t.Fatalf("transport header 0x%02X (first %v, want seq %d)", h, first, next)
		}
		next = (h + 1) & 0x3F
		frag = append(frag, f.Data[1:]...)
		if h&tpFIN != 0 {
			return frag
		}
	}
}

func (c *dclient) none(d time.Duration) {
	c.t.Helper()
	if f, err := c.read(d); err == nil {
		c.t.Fatalf("unexpected frame % X", AppendLinkFrame(nil, f.Control, f.Dest, f.Src, f.Data))
	}
}

func (c *dclient) confirm(seq byte, uns bool) {
	c.t.Helper()
	ac := acFIR | acFIN | seq
	if uns {
		ac |= acUNS
	}
	frag := []byte{ac, FuncConfirm}
	c.link(ctrlData, outst, append([]byte{tpFIR | tpFIN | c.tseq&0x3F}, frag...))
	c.tseq++
}

// iin returns the IIN of a response, IIN1 in the low octet.
func iin(t testing.TB, resp []byte) uint16 {
	t.Helper()
	if len(resp) < 4 || resp[1] != FuncResponse && resp[1] != FuncUnsolicited {
		t.Fatalf("not a response: % X", resp)
	}
	return uint16(resp[2]) | uint16(resp[3])<<8
}

// clear clears IIN1.7 and writes the time, as a master does after connecting.
func (c *dclient) clear() {
	c.t.Helper()
	c.request(FuncWrite, "50 01 00 07 07 00")
	if r := c.response(); iin(c.t, r)&IIN1Restart != 0 {
		c.t.Fatalf("restart still set: % X", r)
	}
	c.request(FuncWrite, "32 01 07 01 "+hex.EncodeToString(AppendTime(nil, time.Now())))
	if r := c.response(); iin(c.t, r)&(IIN1NeedTime|0xFF00) != 0 {
		c.t.Fatalf("need time or error after time write: % X", r)
	}
}

func TestLinkServices(t *testing.T) {
	_, srv := serve(t, NewConfig(), nil)
	c := dial(t, srv)
	tests := []struct {
		name string
		send []byte
		want []byte // nil: no answer
	}{
		{"request link status", AppendLinkFrame(nil, 0xC9, outst, master, nil), AppendLinkFrame(nil, 0x0B, master, outst, nil)},
		{"confirmed data before reset", AppendLinkFrame(nil, 0xF3, outst, master, []byte{0xC0, 0xC0, 0x01, 0x3C, 0x01, 0x06}), AppendLinkFrame(nil, 0x01, master, outst, nil)},
		{"reset link states", AppendLinkFrame(nil, 0xC0, outst, master, nil), AppendLinkFrame(nil, 0x00, master, outst, nil)},
		{"test link states", AppendLinkFrame(nil, 0xF2, outst, master, nil), AppendLinkFrame(nil, 0x00, master, outst, nil)},
		{"unsupported primary function", AppendLinkFrame(nil, 0xC5, outst, master, nil), AppendLinkFrame(nil, 0x0F, master, outst, nil)},
		{"other outstation", AppendLinkFrame(nil, 0xC9, 11, master, nil), nil},
		{"broadcast link status", AppendLinkFrame(nil, 0xC9, 0xFFFF, master, nil), nil},
		{"bad header CRC", protocoltest.Unhex(t, "05 64 05 C9 0A 00 01 00 00 00"), nil},
		{"garbage", []byte("GET / HTTP/1.0\r\n\r\n"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.write(tc.send)
			if tc.want == nil {
				c.none(150 * time.Millisecond)
				return
			}
			f := c.frame()
			if got := AppendLinkFrame(nil, f.Control, f.Dest, f.Src, f.Data); !bytes.Equal(got, tc.want) {
				t.Fatalf("got % X, want % X", got, tc.want)
			}
		})
	}
	c.t = t
	// After the reset and one TEST_LINK_STATES (FCB 1), confirmed user data with the
	// toggled FCB 0 is acknowledged and passed up; a repetition (FCB 0 again) is only
	// acknowledged.
	c.link(0xD3, outst, []byte{0xC0, 0xC0, 0x01, 0x3C, 0x01, 0x06})
	if f := c.frame(); f.Control != LinkAck {
		t.Fatalf("want ACK, got 0x%02X", f.Control)
	}
	if r := c.response(); r[0]&0x0F != 0 || r[1] != FuncResponse {
		t.Fatalf("response % X", r)
	}
	c.link(0xD3, outst, []byte{0xC1, 0xC1, 0x01, 0x3C, 0x01, 0x06})
	if f := c.frame(); f.Control != LinkAck {
		t.Fatalf("want ACK, got 0x%02X", f.Control)
	}
	c.none(150 * time.Millisecond)
	e := srv.WaitEvent(t, "reset_link_states", nil)
	if e.Unit != outst || e.Detail["src"] != "1" {
		t.Fatalf("event %+v", e)
	}
	srv.WaitEvent(t, "bad_frame", func(e protocols.Event) bool { return e.Detail["reason"] == "header" })
}

func TestClass0AndIIN(t *testing.T) {
	_, srv := serve(t, NewConfig(), nil)
	c := dial(t, srv)
	c.request(FuncRead, "3C 01 06")
	r := c.response()
	// C0 81, IIN1 = DEVICE_RESTART | NEED_TIME, IIN2 = 0
	if !bytes.HasPrefix(r, protocoltest.Unhex(t, "C0 81 90 00")) {
		t.Fatalf("header % X", r[:4])
	}
	want := "" +
		"01 02 00 00 07 81 81 81 01 01 01 01 01" + // g1v2 0..7
		"0A 02 00 00 03 81 81 01 01" // g10v2 0..3
	if !bytes.HasPrefix(r[4:], protocoltest.Unhex(t, want)) {
		t.Fatalf("class 0 objects % X", r[4:])
	}
	rest := r[4+len(protocoltest.Unhex(t, want)):]
	if !bytes.HasPrefix(rest, protocoltest.Unhex(t, "14 01 00 00 02 01 9C 01 00 00 01 11 00 00 00 01")) { // g20v1: 412, 17, ...
		t.Fatalf("counters % X", rest)
	}
	rest = rest[5+15:]
	if !bytes.HasPrefix(rest, protocoltest.Unhex(t, "1E 01 00 00 09")) || len(rest) != 5+50+5+10 {
		t.Fatalf("analog inputs % X", rest)
	}
	if ao := rest[55:]; !bytes.Equal(ao, protocoltest.Unhex(t, "28 01 00 00 01 01 90 01 00 00 01 05 00 00 00")) {
		t.Fatalf("analog outputs % X", ao)
	}
	c.clear()
	c.request(FuncRead, "3C 01 06")
	if got := iin(t, c.response()); got != 0 {
		t.Fatalf("IIN after clearing = %04X", got)
	}
	e := srv.WaitEvent(t, "write", func(e protocols.Event) bool { return e.Area == "g80v1" })
	if !e.Write || e.Address != 7 || e.Exception != 0 {
		t.Fatalf("event %+v", e)
	}
}

func TestReads(t *testing.T) {
	tests := []struct {
		name string
		fc   byte
		objs string
		iin2 uint16
		want string // expected objects, "" to skip
	}{
		{"g1v1 packed", FuncRead, "01 01 06", 0, "01 01 00 00 07 07"},
		{"g1v2 range", FuncRead, "01 02 00 02 03", 0, "01 02 00 02 03 81 01"},
		{"g1 range past end", FuncRead, "01 02 00 06 09", IIN2ParamError, "01 02 00 06 07 01 01"},
		{"g1 start past end", FuncRead, "01 02 00 09 09", IIN2ParamError, ""},
		{"g10 count", FuncRead, "0A 00 07 02", 0, "0A 02 00 00 01 81 81"},
		{"g20v6", FuncRead, "14 06 00 00 01", 0, "14 06 00 00 01 9C 01 11 00"},
		{"g30v5 float", FuncRead, "1E 05 00 09 09", 0, "1E 05 00 09 09 01 00 00 C8 43"},
		{"g30v4 16-bit", FuncRead, "1E 04 00 09 09", 0, "1E 04 00 09 09 90 01"},
		{"g40v3", FuncRead, "28 03 00 01 01", 0, "28 03 00 01 01 01 00 00 A0 40"},
		{"unknown object", FuncRead, "63 01 06", IIN2ObjUnknown, ""},
		{"g12 read", FuncRead, "0C 01 06", IIN2ObjUnknown, ""},
		{"truncated header", FuncRead, "1E 01 00 02", IIN2ParamError, ""},
		{"manufacturer", FuncRead, "00 FC 00 00 00", 0, "00 FC 00 00 00 01 19 " + hex.EncodeToString([]byte("Northbridge Grid Controls"))},
		{"product and model", FuncRead, "00 FA 06", 0, "00 FA 00 00 00 01 0A " + hex.EncodeToString([]byte("FRC-400 R2"))},
		{"firmware", FuncRead, "00 F2 06", 0, "00 F2 00 00 00 01 06 " + hex.EncodeToString([]byte("3.12.7"))},
		{"serial", FuncRead, "00 F8 06", 0, "00 F8 00 00 00 01 0B " + hex.EncodeToString([]byte("NB4-0019823"))},
		{"user-assigned id", FuncRead, "00 F6 06", 0, "00 F6 00 00 00 01 0C " + hex.EncodeToString([]byte("recloser-f12"))},
		{"max rx fragment", FuncRead, "00 F1 06", 0, "00 F1 00 00 00 02 02 00 08"},
		{"unknown attribute", FuncRead, "00 C8 06", IIN2ObjUnknown, ""},
		{"unknown function", 0x1F, "", IIN2NoFuncCode, ""},
		{"immediate freeze", FuncImmedFreeze, "14 00 06", IIN2NoFuncCode, ""},
		{"enable unsolicited bad object", FuncEnableUnsolicited, "01 02 06", IIN2ObjUnknown, ""},
		{"write unknown object", FuncWrite, "0A 02 00 00 00 81", IIN2ObjUnknown, ""},
		{"write restart bit set", FuncWrite, "50 01 00 07 07 01", IIN2ParamError, ""},
		{"delay measure", FuncDelayMeasure, "", 0, ""},
	}
	_, srv := serve(t, NewConfig(), nil)
	c := dial(t, srv)
	c.clear()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			seq := c.request(tc.fc, tc.objs)
			r := c.response()
			if r[0] != acFIR|acFIN|seq {
				t.Fatalf("application control 0x%02X, want seq %d", r[0], seq)
			}
			if got := iin(t, r) & 0xFF00 >> 8; got != tc.iin2>>8 {
				t.Fatalf("IIN2 %02X, want %02X (% X)", got, tc.iin2>>8, r)
			}
			if tc.want != "" && !bytes.Equal(r[4:], protocoltest.Unhex(t, tc.want)) {
				t.Fatalf("objects % X, want %s", r[4:], tc.want)
			}
		})
	}
	c.t = t
	c.request(FuncRead, "00 FE 06")
	r := c.response()
	for _, s := range []string{"Northbridge Grid Controls", "FRC-400 R2", "3.12.7", "NB4-0019823", "recloser-f12", "Feeder 12 pole 87"} {
		if !bytes.Contains(r, []byte(s)) {
			t.Fatalf("all attributes lacks %q: % X", s, r)
		}
	}
	e := srv.WaitEvent(t, "unsupported_function", nil)
	if e.Code != 0x1F || e.Exception != 0x01 {
		t.Fatalf("event %+v", e)
	}
}

func TestControlsAndEvents(t *testing.T) {
	cfg := NewConfig()
	cfg.ScanInterval = 20 * time.Millisecond
	for i := range cfg.AnalogInputs {
		cfg.AnalogInputs[i].Deadband = 0 // only the commanded changes make events
	}
	_, srv := serve(t, cfg, nil)
	c := dial(t, srv)
	c.clear()

	// Class 1 poll with nothing buffered: empty, no CON.
	c.request(FuncRead, "3C 02 06")
	if r := c.response(); len(r) != 4 || r[0]&acCON != 0 {
		t.Fatalf("empty class 1: % X", r)
	}

	// OPERATE without SELECT → NO_SELECT (2); state unchanged.
	crobTrip := "0C 01 28 01 00 00 00 81 01 64 00 00 00 00 00 00 00 00"
	c.request(FuncOperate, crobTrip)
	if r := c.response(); r[len(r)-1] != StatusNoSelect {
		t.Fatalf("operate without select: % X", r)
	}
	// SELECT then OPERATE (next sequence, identical objects) → SUCCESS, echoed.
	c.request(FuncSelect, crobTrip)
	if r := c.response(); !bytes.Equal(r[4:], protocoltest.Unhex(t, crobTrip)) {
		t.Fatalf("select: % X", r)
	}
	c.request(FuncOperate, crobTrip)
	if r := c.response(); !bytes.Equal(r[4:], protocoltest.Unhex(t, crobTrip)) {
		t.Fatalf("operate: % X", r)
	}
	// Breaker output 0 and its feedback input 0 are now open.
	c.request(FuncRead, "0A 02 00 00 00 01 02 00 00 00")
	if r := c.response(); !bytes.Equal(r[4:], protocoltest.Unhex(t, "0A 02 00 00 00 01 01 02 00 00 00 01")) {
		t.Fatalf("state after trip: % X", r)
	}
	// Events: class 1 read returns g11v2 (output) and g2v2 (input) with CON; IIN1.1
	// stays set until the CONFIRM.
	time.Sleep(60 * time.Millisecond)
	seq := c.request(FuncRead, "3C 02 06")
	r := c.response()
	if r[0]&acCON == 0 || iin(t, r)&IIN1Class1 == 0 {
		t.Fatalf("class 1 events: % X", r)
	}
	if !bytes.Contains(r, protocoltest.Unhex(t, "0B 02 28 01 00 00 00 01")) || !bytes.Contains(r, protocoltest.Unhex(t, "02 02 28 01 00 00 00 01")) {
		t.Fatalf("class 1 objects: % X", r)
	}
	c.confirm(seq, false)
	c.request(FuncRead, "3C 02 06")
	if r := c.response(); len(r) != 4 || iin(t, r)&IIN1Class1 != 0 {
		t.Fatalf("after confirm: % X", r)
	}

	// SELECT with a different OPERATE → NO_SELECT; bad index → NOT_SUPPORTED.
	c.request(FuncSelect, crobTrip)
	c.response()
	c.request(FuncOperate, "0C 01 28 01 00 00 00 41 01 64 00 00 00 00 00 00 00 00")
	if r := c.response(); r[len(r)-1] != StatusNoSelect {
		t.Fatalf("mismatched operate: % X", r)
	}
	c.request(FuncDirectOperate, "0C 01 17 01 09 03 01 64 00 00 00 00 00 00 00 00")
	if r := c.response(); r[len(r)-1] != StatusNotSupported {
		t.Fatalf("bad index: % X", r)
	}
	// Analog output direct operate (g41v2 = 800) → g40 and feedback g30 index 9.
	c.request(FuncDirectOperate, "29 02 17 01 00 20 03 00")
	if r := c.response(); r[len(r)-1] != StatusSuccess {
		t.Fatalf("analog output: % X", r)
	}
	c.request(FuncRead, "28 02 00 00 00 1E 04 00 09 09")
	if r := c.response(); !bytes.Equal(r[4:], protocoltest.Unhex(t, "28 02 00 00 00 01 20 03 1E 04 00 09 09 20 03")) {
		t.Fatalf("after set point: % X", r)
	}
	// Out of range (2000 > 1200) → NOT_SUPPORTED.
	c.request(FuncDirectOperate, "29 02 17 01 00 D0 07 00")
	if r := c.response(); r[len(r)-1] != StatusNotSupported {
		t.Fatalf("out of range: % X", r)
	}
	// DIRECT_OPERATE_NR closes the breaker without a response.
	c.request(FuncDirectOperateNR, "0C 01 17 01 00 41 01 64 00 00 00 00 00 00 00 00")
	c.none(100 * time.Millisecond)
	c.request(FuncRead, "01 02 00 00 00")
	if r := c.response(); !bytes.Equal(r[4:], protocoltest.Unhex(t, "01 02 00 00 00 81")) {
		t.Fatalf("after close: % X", r)
	}
	e := srv.WaitEvent(t, "operate", func(e protocols.Event) bool { return e.Detail["status"] == "0" })
	if !e.Write || e.Area != "g12v1" || e.Address != 0 || e.Quantity != 1 || len(e.Data) != 18 {
		t.Fatalf("event %+v", e)
	}
}

func TestUnsolicited(t *testing.T) {
	cfg := NewConfig()
	cfg.ScanInterval = 20 * time.Millisecond
	cfg.ConfirmTimeout = 200 * time.Millisecond
	for i := range cfg.AnalogInputs {
		cfg.AnalogInputs[i].Deadband = 0
	}
	_, srv := serve(t, cfg, nil)
	c := dial(t, srv)
	c.clear()
	c.request(FuncEnableUnsolicited, "3C 02 06 3C 03 06 3C 04 06")
	if r := c.response(); len(r) != 4 {
		t.Fatalf("enable: % X", r)
	}
	c.request(FuncDirectOperate, "0C 01 17 01 02 03 01 64 00 00 00 00 00 00 00 00") // latch on output 2
	c.response()
	u := c.response()
	if u[1] != FuncUnsolicited || u[0]&(acUNS|acCON|acFIR|acFIN) != acUNS|acCON|acFIR|acFIN {
		t.Fatalf("unsolicited: % X", u)
	}
	if !bytes.Contains(u, protocoltest.Unhex(t, "0B 02 28 01 00 02 00 81")) {
		t.Fatalf("unsolicited objects % X", u)
	}
	// Not confirmed: repeated after the confirm timeout with the same sequence.
	again := c.response()
	if !bytes.Equal(again, u) {
		t.Fatalf("retry % X, want % X", again, u)
	}
	c.confirm(u[0]&0x0F, true)
	c.none(300 * time.Millisecond)
}

func TestRestartAndBroadcast(t *testing.T) {
	_, srv := serve(t, NewConfig(), nil)
	c := dial(t, srv)
	c.clear()
	// Broadcast write (0xFFFF): executed silently; next response has IIN1.0.
	c.requestTo(0xFFFF, FuncDirectOperateNR, "0C 01 17 01 03 03 01 64 00 00 00 00 00 00 00 00")
	c.none(100 * time.Millisecond)
	c.request(FuncRead, "0A 02 00 03 03")
	r := c.response()
	if iin(t, r)&IIN1AllStations == 0 || !bytes.Equal(r[4:], protocoltest.Unhex(t, "0A 02 00 03 03 81")) {
		t.Fatalf("after broadcast: % X", r)
	}
	// Warm restart: g52v2 2000 ms; IIN1.7 set again.
	c.request(FuncWarmRestart, "")
	if r := c.response(); !bytes.Equal(r[4:], protocoltest.Unhex(t, "34 02 07 01 D0 07")) || iin(t, r)&IIN1Restart == 0 {
		t.Fatalf("warm restart: % X", r)
	}
	// Cold restart: g52v2 5000 ms, then the device drops the connection and comes
	// back with its configured state.
	c.request(FuncColdRestart, "")
	if r := c.response(); !bytes.Equal(r[4:], protocoltest.Unhex(t, "34 02 07 01 88 13")) {
		t.Fatalf("cold restart: % X", r)
	}
	if _, err := c.read(2 * time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("after cold restart: %v", err)
	}
	c2 := dial(t, srv)
	c2.request(FuncRead, "0A 02 00 03 03")
	if r := c2.response(); !bytes.Equal(r[4:], protocoltest.Unhex(t, "0A 02 00 03 03 01")) || iin(t, r)&(IIN1Restart|IIN1NeedTime) != IIN1Restart|IIN1NeedTime {
		t.Fatalf("after cold restart: % X", r)
	}
	srv.WaitEvent(t, "cold_restart", func(e protocols.Event) bool { return e.Write })
}

func TestTransport(t *testing.T) {
	cfg := NewConfig()
	cfg.AnalogInputs = nil
	cfg.AnalogOutputs = nil
	for i := range 120 {
		cfg.AnalogInputs = append(cfg.AnalogInputs, AnalogInput{Name: "AI", Value: float64(i)})
	}
	_, srv := serve(t, cfg, nil)
	c := dial(t, srv)

	// A response larger than a segment comes in FIR..FIN segments with consecutive
	// sequence numbers (checked by response()).
	c.request(FuncRead, "1E 01 06")
	r := c.response()
	if len(r) != 4+5+120*5 {
		t.Fatalf("response of %d octets", len(r))
	}

	// A request in two segments is reassembled.
	frag := []byte{acFIR | acFIN | 5, FuncRead, 0x01, 0x02, 0x00, 0x00, 0x01}
	c.link(ctrlData, outst, append([]byte{tpFIR | 10}, frag[:3]...))
	c.link(ctrlData, outst, append([]byte{tpFIN | 11}, frag[3:]...))
	if r := c.response(); !bytes.Equal(r, protocoltest.Unhex(t, "C5 81 90 00 01 02 00 00 01 81 81")) {
		t.Fatalf("reassembled request: % X", r)
	}
	// Out of sequence: the fragment is discarded.
	c.link(ctrlData, outst, append([]byte{tpFIR | 20}, frag[:3]...))
	c.link(ctrlData, outst, append([]byte{tpFIN | 22}, frag[3:]...))
	c.none(150 * time.Millisecond)
	// Middle segment without FIR: discarded.
	c.link(ctrlData, outst, append([]byte{tpFIN | 23}, frag...))
	c.none(150 * time.Millisecond)
	// Fragment beyond max_fragment: discarded.
	for i := range 10 {
		h := byte(30 + i)
		if i == 0 {
			h |= tpFIR
		}
		c.link(ctrlData, outst, append([]byte{h}, make([]byte, MaxSegment)...))
	}
	c.none(150 * time.Millisecond)
	srv.WaitEvent(t, "bad_frame", func(e protocols.Event) bool { return e.Detail["reason"] == "fragment_too_long" })
	// A repeated request (same sequence and octets) is answered again.
	c.link(ctrlData, outst, append([]byte{tpFIR | tpFIN | 50}, frag...))
	first := c.response()
	c.link(ctrlData, outst, append([]byte{tpFIR | tpFIN | 51}, frag...))
	if again := c.response(); !bytes.Equal(again, first) {
		t.Fatalf("repeat % X, want % X", again, first)
	}
}

func TestKeepAlive(t *testing.T) {
	cfg := NewConfig()
	cfg.KeepAlive = 200 * time.Millisecond
	_, srv := serve(t, cfg, nil)
	c := dial(t, srv)
	c.request(FuncRead, "3C 01 06")
	c.response()
	f := c.frame()
	if f.Control != ctrlPRM|LinkRequestLinkStatus {
		t.Fatalf("want REQUEST_LINK_STATUS, got 0x%02X", f.Control)
	}
	c.link(LinkStatus|ctrlDIR, outst, nil) // master answers LINK_STATUS
	if f := c.frame(); f.Control != ctrlPRM|LinkRequestLinkStatus {
		t.Fatalf("want second keep-alive, got 0x%02X", f.Control)
	}
	if _, err := c.read(2 * time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("unanswered keep-alive: %v", err)
	}
	srv.WaitEvent(t, "keep_alive_timeout", nil)
}

// ---------------------------------------------------------------------------------
// tshark's DNP3 dissector over a tcpdump capture of a full master session.

func TestTshark(t *testing.T) {
	testenv.LookPath(t, "tshark")
	cfg := NewConfig()
	for i := range 50 { // a class 0 response of several segments
		cfg.AnalogInputs = append(cfg.AnalogInputs, AnalogInput{Name: "spare", Value: float64(i * 10)})
	}
	cfg.ScanInterval = 20 * time.Millisecond
	_, srv := serve(t, cfg, nil)
	capture := protocoltest.StartCapture(t, srv.Addr.Port())

	c := dial(t, srv)
	c.link(0xC9, outst, nil)
	c.frame()
	c.link(0xC0, outst, nil)
	c.frame()
	c.request(FuncRead, "3C 02 06 3C 03 06 3C 04 06 3C 01 06")
	c.response()
	c.clear()
	c.request(FuncRead, "00 FE 06")
	c.response()
	c.request(FuncRead, "01 01 06 0A 02 00 00 03 14 05 06 1E 05 06 28 03 06")
	c.response()
	crob := "0C 01 28 01 00 00 00 81 01 64 00 00 00 00 00 00 00 00"
	c.request(FuncSelect, crob)
	c.response()
	c.request(FuncOperate, crob)
	c.response()
	c.request(FuncDirectOperate, "29 02 17 01 00 20 03 00")
	c.response()
	time.Sleep(60 * time.Millisecond)
	seq := c.request(FuncRead, "3C 02 06 3C 03 06 3C 04 06")
	c.response()
	c.confirm(seq, false)
	c.request(FuncEnableUnsolicited, "3C 02 06")
	c.response()
	c.request(FuncDirectOperate, "0C 01 17 01 00 41 01 64 00 00 00 00 00 00 00 00")
	c.response()
	u := c.response()
	c.confirm(u[0]&0x0F, true)
	c.request(FuncDelayMeasure, "")
	c.response()
	c.request(0x1F, "")
	c.response()
	c.request(FuncRead, "63 01 06")
	c.response()
	c.request(FuncColdRestart, "")
	c.response()
	c.read(2 * time.Second)

	pcap := capture.Stop()
	dnp3 := "tcp.port==" + strconv.Itoa(int(srv.Addr.Port())) + ",dnp3"
	protocoltest.TsharkClean(t, pcap, protocoltest.TsharkBad, "-d", dnp3)
	out := protocoltest.Tshark(t, pcap, "-d", dnp3, "-T", "fields", "-e", "dnp3.al.func", "-e", "dnp3.al.iin.rst")
	funcs := map[string]bool{}
	for _, l := range strings.Fields(strings.ReplaceAll(string(out), ",", " ")) {
		funcs[l] = true
	}
	// requests and both response kinds dissected
	for _, want := range []string{"1", "2", "3", "4", "5", "13", "20", "23", "129", "130"} {
		if !funcs[want] {
			t.Errorf("tshark saw no application function %s: %v", want, funcs)
		}
	}
}

func TestAnalogEventsAndOverflow(t *testing.T) {
	boot := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := boot
	cfg := NewConfig()
	cfg.ScanInterval = 10 * time.Millisecond
	cfg.EventBuffer = 2
	cfg.AnalogInputs = []AnalogInput{{Name: "load", Value: 100, Behaviour: "wave", Amplitude: 50, Period: time.Hour, Deadband: 5, Class: 2}}
	cfg.AnalogOutputs = nil
	_, srv := serve(t, cfg, func(e *protocols.Env) {
		e.Boot = boot
		e.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	c := dial(t, srv)
	c.clear()
	mu.Lock()
	now = now.Add(10 * time.Minute) // the wave moves by far more than the deadband
	mu.Unlock()
	time.Sleep(60 * time.Millisecond)
	seq := c.request(FuncRead, "3C 03 06")
	r := c.response()
	if iin(t, r)&IIN1Class2 == 0 || r[0]&acCON == 0 || !bytes.HasPrefix(r[4:], protocoltest.Unhex(t, "20 03 28 01 00 00 00 01")) {
		t.Fatalf("class 2 analog event: % X", r)
	}
	// The station clock was set to the real time by clear(), 10 fake minutes ago.
	at, _ := ParseTime(r[4+8+4:])
	if d := at.Sub(time.Now().Add(10 * time.Minute)); d.Abs() > 5*time.Second {
		t.Fatalf("event time %v is %v off", at, d)
	}
	c.confirm(seq, false)

	// Three output changes for a buffer of two: IIN2.3 until the buffer is read.
	for _, code := range []string{"04", "03", "04"} {
		c.request(FuncDirectOperate, "0C 01 17 01 00 "+code+" 01 64 00 00 00 00 00 00 00 00")
		c.response()
		time.Sleep(40 * time.Millisecond)
	}
	seq = c.request(FuncRead, "3C 02 06")
	r = c.response()
	if iin(t, r)&IIN2EventOverflw == 0 {
		t.Fatalf("no overflow: % X", r)
	}
	c.confirm(seq, false)
	c.request(FuncRead, "3C 02 06 3C 03 06")
	if r := c.response(); iin(t, r)&IIN2EventOverflw != 0 {
		t.Fatalf("overflow after confirm: % X", r)
	}
}
