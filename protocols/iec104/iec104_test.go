package iec104

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

func TestParseAPDU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    APCI
		asdu    string
		n       int
		wantErr error
	}{
		// Frames as sent by nmap iec-identify.nse and Conpot's tests.
		{name: "startdt act", in: "68 04 07 00 00 00", want: APCI{Format: FormatU, U: UStartDTAct}, n: 6},
		{name: "testfr act", in: "68 04 43 00 00 00", want: APCI{Format: FormatU, U: UTestFRAct}, n: 6},
		{name: "stopdt con", in: "68 04 23 00 00 00", want: APCI{Format: FormatU, U: UStopDTCon}, n: 6},
		{name: "s frame nr 5", in: "68 04 01 00 0a 00", want: APCI{Format: FormatS, RecvSeq: 5}, n: 6},
		{name: "s frame nr 32767", in: "68 04 01 00 fe ff", want: APCI{Format: FormatS, RecvSeq: 32767}, n: 6},
		{
			name: "nmap C_IC_NA_1 broadcast",
			in:   "68 0e 00 00 00 00 64 01 06 00 ff ff 00 00 00 14",
			want: APCI{Format: FormatI}, asdu: "64 01 06 00 ff ff 00 00 00 14", n: 16,
		},
		{
			name: "i frame ns 2 nr 3 followed by more",
			in:   "68 0e 04 00 06 00 64 01 06 00 01 00 00 00 00 14 68",
			want: APCI{Format: FormatI, SendSeq: 2, RecvSeq: 3}, asdu: "64 01 06 00 01 00 00 00 00 14", n: 16,
		},
		{name: "empty", in: "", wantErr: ErrShortFrame},
		{name: "start only", in: "68", wantErr: ErrShortFrame},
		{name: "half frame", in: "68 04 07 00", wantErr: ErrShortFrame},
		{name: "bad start", in: "69 04 07 00 00 00", wantErr: ErrBadStart},
		{name: "length 3", in: "68 03 07 00 00", wantErr: ErrBadLength},
		{name: "length 254", in: "68 fe", wantErr: ErrBadLength},
		{name: "u frame with asdu", in: "68 05 07 00 00 00 00", wantErr: ErrBadLength},
		{name: "i frame without asdu", in: "68 04 00 00 00 00", wantErr: ErrBadLength},
		{name: "two u functions", in: "68 04 0f 00 00 00", wantErr: ErrBadControl},
		{name: "u frame trailing octets", in: "68 04 07 00 01 00", wantErr: ErrBadControl},
		{name: "s frame second octet", in: "68 04 01 01 00 00", wantErr: ErrBadControl},
		{name: "i frame odd receive octet", in: "68 05 00 00 01 00 64", wantErr: ErrBadControl},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, asdu, n, err := ParseAPDU(protocoltest.Unhex(t, tc.in))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got != tc.want || n != tc.n || !bytes.Equal(asdu, protocoltest.Unhex(t, tc.asdu)) {
				t.Fatalf("got %+v asdu % x n %d, want %+v asdu %s n %d", got, asdu, n, tc.want, tc.asdu, tc.n)
			}
		})
	}
}

func TestAppendAPDU(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"startdt con", AppendUFrame(nil, UStartDTCon), "68 04 0b 00 00 00"},
		{"testfr con", AppendUFrame(nil, UTestFRCon), "68 04 83 00 00 00"},
		{"s frame", AppendSFrame(nil, 300), "68 04 01 00 58 02"},
		{"s frame wraps", AppendSFrame(nil, 32768+1), "68 04 01 00 02 00"},
		{"i frame", AppendIFrame(nil, 1, 2, []byte{0x64, 0x01, 0x07, 0x00, 0x01, 0x00, 0, 0, 0, 0x14}),
			"68 0e 02 00 04 00 64 01 07 00 01 00 00 00 00 14"},
		{"i frame high seq", AppendIFrame(nil, 32767, 128, []byte{1}), "68 05 fe ff 00 01 01"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if want := protocoltest.Unhex(t, tc.want); !bytes.Equal(tc.got, want) {
				t.Fatalf("got % x, want % x", tc.got, want)
			}
		})
	}
}

func TestParseASDU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		hdr     ASDU
		objs    []Object
		wantErr error
	}{
		{
			name: "single command unknown ioa (Conpot test)",
			in:   "2d 01 06 00 01 00 ee ee ee 01",
			hdr:  ASDU{Type: CScNa1, Num: 1, COT: CotActivation, CommonAddr: 1},
			objs: []Object{{IOA: 0xEEEEEE, Element: []byte{0x01}}},
		},
		{
			name: "negative test bit originator 2-octet cot",
			in:   "2e 01 c7 05 34 12 01 00 00 82",
			hdr:  ASDU{Type: CDcNa1, Num: 1, COT: CotActCon, Negative: true, Test: true, Originator: 5, CommonAddr: 0x1234},
			objs: []Object{{IOA: 1, Element: []byte{0x82}}},
		},
		{
			name: "sequence of three single points",
			in:   "01 83 14 00 01 00 e9 03 00 00 01 00",
			hdr:  ASDU{Type: MSpNa1, SQ: true, Num: 3, COT: CotInrogen, CommonAddr: 1},
			objs: []Object{{IOA: 1001, Element: []byte{0}}, {IOA: 1002, Element: []byte{1}}, {IOA: 1003, Element: []byte{0}}},
		},
		{
			name: "two floats",
			in:   "0d 02 03 00 01 00 a1 0f 00 00 00 a0 41 00 a2 0f 00 00 00 48 43 00",
			hdr:  ASDU{Type: MMeNc1, Num: 2, COT: CotSpontaneous, CommonAddr: 1},
			objs: []Object{{IOA: 4001, Element: protocoltest.Unhex(t, "0000a04100")}, {IOA: 4002, Element: protocoltest.Unhex(t, "0000484300")}},
		},
		{name: "short header", in: "64 01 06 00 01", wantErr: ErrBadASDU},
		{name: "body too short", in: "64 01 06 00 01 00 00 00 00", wantErr: ErrBadASDU},
		{name: "body too long", in: "64 01 06 00 01 00 00 00 00 14 14", wantErr: ErrBadASDU},
		{name: "zero objects", in: "64 00 06 00 01 00", wantErr: ErrBadASDU},
		{name: "unknown type", in: "ff 01 06 00 01 00 00 00 00 14", wantErr: ErrBadASDU},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseASDU(protocoltest.Unhex(t, tc.in))
			var objs []Object
			if err == nil {
				objs, err = a.Objects()
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			a.Body = nil
			if !reflect.DeepEqual(a, tc.hdr) {
				t.Fatalf("header %+v, want %+v", a, tc.hdr)
			}
			if len(objs) != len(tc.objs) {
				t.Fatalf("%d objects, want %d", len(objs), len(tc.objs))
			}
			for i := range objs {
				if objs[i].IOA != tc.objs[i].IOA || !bytes.Equal(objs[i].Element, tc.objs[i].Element) {
					t.Fatalf("object %d = %+v, want %+v", i, objs[i], tc.objs[i])
				}
			}
			// round trip of the header
			if h := tc.hdr.AppendHeader(nil); !bytes.Equal(h, protocoltest.Unhex(t, tc.in)[:6]) {
				t.Fatalf("AppendHeader % x, want %s", h, tc.in[:17])
			}
		})
	}
}

func TestCP56Time2a(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Time
		iv, su  bool
		wantErr error
	}{
		// 2024-03-15 (a Friday, day of week 5) 12:34:56.789
		{name: "friday", in: "d5 dd 22 0c af 03 18", want: time.Date(2024, 3, 15, 12, 34, 56, 789e6, time.UTC)},
		{name: "sunday is 7", in: "00 00 00 00 f1 03 18", want: time.Date(2024, 3, 17, 0, 0, 0, 0, time.UTC)},
		{name: "invalid and summer bits", in: "10 27 85 81 61 01 19", want: time.Date(2025, 1, 1, 1, 5, 10, 0, time.UTC), iv: true, su: true},
		{name: "minute 60", in: "00 00 3c 00 01 01 18", wantErr: ErrBadASDU},
		{name: "month 0", in: "00 00 00 00 01 00 18", wantErr: ErrBadASDU},
		{name: "ms 60000", in: "60 ea 00 00 01 01 18", wantErr: ErrBadASDU},
		{name: "short", in: "00 00 00", wantErr: ErrShortFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := protocoltest.Unhex(t, tc.in)
			got, err := ParseCP56Time2a(in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Time.Equal(tc.want) || got.Invalid != tc.iv || got.Summer != tc.su {
				t.Fatalf("got %+v, want %v iv=%v su=%v", got, tc.want, tc.iv, tc.su)
			}
			if out := AppendCP56Time2a(nil, got); !bytes.Equal(out, in) {
				t.Fatalf("round trip % x, want % x", out, in)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error, "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"ca zero", func(c *Config) { c.CommonAddress = 0 }, "common_address 0"},
		{"ca global", func(c *Config) { c.CommonAddress = 0xFFFF }, "common_address 65535"},
		{"w above k", func(c *Config) { c.W = 13 }, "w 13"},
		{"t2 not below t1", func(c *Config) { c.T2 = c.T1 }, "t2"},
		{"unknown type", func(c *Config) { c.Points[0].Type = "M_XX_NA_1" }, "unknown type"},
		{"command as point", func(c *Config) { c.Points[0].Type = "C_SC_NA_1" }, "not a monitored point type"},
		{"duplicate ioa", func(c *Config) { c.Points[1].IOA = c.Points[0].IOA }, "duplicate ioa"},
		{"ioa too big", func(c *Config) { c.Points[0].IOA = 1 << 24 }, "ioa"},
		{"wave without period", func(c *Config) { c.Points[12].Period = 0 }, "positive period"},
		{"counter group 5", func(c *Config) { c.Points[21].Group = 5 }, "group 5"},
		{"feedback missing", func(c *Config) { c.Commands[0].Feedback = 9999 }, "not a point"},
		{"feedback wrong kind", func(c *Config) { c.Commands[0].Feedback = 1001 }, "cannot drive"},
		{"unsupported command", func(c *Config) { c.Commands[0].Type = "C_RC_NA_1" }, "not a supported command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			tc.modify(c)
			_, err := New(protocoltest.Env(t, &protocols.Identity{}), c)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, protocols.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrConfig containing %q", err, tc.want)
			}
		})
	}
}

func TestSpec(t *testing.T) {
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "iec104", Transport: protocols.TCP, Port: 2404, Service: "iec-104"},
		protocoltest.Env(t, &protocols.Identity{}))
}

// ---------------------------------------------------------------------------------
// A minimal controlling station for the end-to-end tests.

type frame struct {
	APCI
	asdu ASDU
	raw  []byte
}

type client struct {
	t      testing.TB
	c      net.Conn
	vs, vr uint16
	buf    []byte
}

func dial(t testing.TB, srv *protocoltest.Server) *client {
	t.Helper()
	return &client{t: t, c: srv.Dial(t)}
}

func (cl *client) write(b []byte) {
	cl.t.Helper()
	if _, err := cl.c.Write(b); err != nil {
		cl.t.Fatalf("write: %v", err)
	}
}

func (cl *client) u(fn uint8) { cl.t.Helper(); cl.write(AppendUFrame(nil, fn)) }

func (cl *client) s() { cl.t.Helper(); cl.write(AppendSFrame(nil, cl.vr)) }

// i sends an I-frame with the given ASDU (hex).
func (cl *client) i(asdu string) {
	cl.t.Helper()
	cl.write(AppendIFrame(nil, cl.vs, cl.vr, protocoltest.Unhex(cl.t, asdu)))
	cl.vs++
}

// iNR sends an I-frame with an explicit N(R).
func (cl *client) iNR(asdu string, nr uint16) {
	cl.t.Helper()
	cl.write(AppendIFrame(nil, cl.vs, nr, protocoltest.Unhex(cl.t, asdu)))
	cl.vs++
}

// next reads one frame or fails.
func (cl *client) next() frame {
	cl.t.Helper()
	f, err := cl.read(3 * time.Second)
	if err != nil {
		cl.t.Fatalf("read frame: %v", err)
	}
	return f
}

func (cl *client) read(timeout time.Duration) (frame, error) {
	cl.c.SetReadDeadline(time.Now().Add(timeout))
	rd := make([]byte, 512)
	for {
		a, asdu, n, err := ParseAPDU(cl.buf)
		if err == nil {
			f := frame{APCI: a, raw: append([]byte(nil), cl.buf[:n]...)}
			if a.Format == FormatI {
				if a.SendSeq != cl.vr {
					cl.t.Fatalf("server N(S) %d, want %d", a.SendSeq, cl.vr)
				}
				cl.vr++
				f.asdu, err = ParseASDU(append([]byte(nil), asdu...))
				if err != nil {
					cl.t.Fatalf("server ASDU: %v", err)
				}
			}
			cl.buf = cl.buf[n:]
			return f, nil
		}
		if !errors.Is(err, ErrShortFrame) {
			cl.t.Fatalf("server frame: %v", err)
		}
		n, err = cl.c.Read(rd)
		cl.buf = append(cl.buf, rd[:n]...)
		if err != nil {
			return frame{}, err
		}
	}
}

// closed waits until the server closes the connection.
func (cl *client) closed(within time.Duration) {
	cl.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		_, err := cl.read(time.Until(deadline))
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
			return
		}
		cl.t.Fatalf("expected close, got %v", err)
	}
	cl.t.Fatalf("connection still open after %s", within)
}

func (cl *client) start() {
	cl.t.Helper()
	cl.u(UStartDTAct)
	if f := cl.next(); f.Format != FormatU || f.U != UStartDTCon {
		cl.t.Fatalf("STARTDT: got % x", f.raw)
	}
}

func (cl *client) expectASDU(typ, cot uint8, neg bool) frame {
	cl.t.Helper()
	f := cl.next()
	if f.Format != FormatI || f.asdu.Type != typ || f.asdu.COT != cot || f.asdu.Negative != neg {
		cl.t.Fatalf("got % x (type %d cot %d neg %v), want type %d cot %d neg %v",
			f.raw, f.asdu.Type, f.asdu.COT, f.asdu.Negative, typ, cot, neg)
	}
	return f
}

func serve(t testing.TB, cfg *Config, now func() time.Time) (*Handler, *protocoltest.Server) {
	t.Helper()
	env := protocoltest.Env(t, &protocols.Identity{Vendor: "ACME"})
	if now != nil {
		env.Now = now
	}
	h, err := New(env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h, protocoltest.ServeTCP(t, "", h)
}

func TestUFrames(t *testing.T) {
	_, srv := serve(t, NewConfig(), nil)
	cl := dial(t, srv)
	// Conpot test_startdt / test_testfr, and the nmap probe order (TESTFR first).
	cl.write(protocoltest.Unhex(t, "68 04 43 00 00 00"))
	if f := cl.next(); !bytes.Equal(f.raw, protocoltest.Unhex(t, "68 04 83 00 00 00")) {
		t.Fatalf("TESTFR con: % x", f.raw)
	}
	cl.write(protocoltest.Unhex(t, "68 04 07 00 00 00"))
	if f := cl.next(); !bytes.Equal(f.raw, protocoltest.Unhex(t, "68 04 0b 00 00 00")) {
		t.Fatalf("STARTDT con: % x", f.raw)
	}
	cl.write(protocoltest.Unhex(t, "68 04 13 00 00 00"))
	if f := cl.next(); !bytes.Equal(f.raw, protocoltest.Unhex(t, "68 04 23 00 00 00")) {
		t.Fatalf("STOPDT con: % x", f.raw)
	}
	e := srv.WaitEvent(t, "startdt", nil)
	if e.Code != UStartDTAct || e.Unit != -1 || e.Protocol != "iec104" {
		t.Fatalf("event %+v", e)
	}
	srv.WaitEvent(t, "testfr", nil)
	srv.WaitEvent(t, "stopdt", nil)
}

func TestGeneralInterrogation(t *testing.T) {
	cfg := NewConfig()
	cfg.CommonAddress = 417
	_, srv := serve(t, cfg, nil)
	cl := dial(t, srv)
	cl.start()
	// nmap's broadcast C_IC_NA_1.
	cl.i("64 01 06 00 ff ff 00 00 00 14")
	con := cl.expectASDU(CIcNa1, CotActCon, false)
	if con.asdu.CommonAddr != 417 {
		t.Fatalf("act-con common address %d, want own 417", con.asdu.CommonAddr)
	}
	seen := map[uint32]uint8{}
	for {
		f := cl.next()
		if f.asdu.Type == CIcNa1 {
			if f.asdu.COT != CotActTerm {
				t.Fatalf("C_IC_NA_1 cot %d", f.asdu.COT)
			}
			break
		}
		if f.asdu.COT != CotInrogen || f.asdu.CommonAddr != 417 {
			t.Fatalf("GI object ASDU % x", f.raw)
		}
		switch f.asdu.Type {
		case MSpNa1, MDpNa1, MMeNb1, MMeNc1:
		default:
			t.Fatalf("GI reply with type %d (time-tagged or counter?)", f.asdu.Type)
		}
		objs, err := f.asdu.Objects()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			seen[o.IOA] = f.asdu.Type
		}
	}
	if len(seen) != 21 {
		t.Fatalf("GI returned %d objects, want 21 (all but counters): %v", len(seen), seen)
	}
	if seen[2001] != MDpNa1 || seen[4010] != MMeNb1 || seen[1001] != MSpNa1 {
		t.Fatalf("types: %v", seen)
	}
	cl.s()
	e := srv.WaitEvent(t, "interrogation", nil)
	if e.Code != CIcNa1 || e.Unit != 0xFFFF || e.Quantity != 21 || e.Detail["qoi"] != "20" || e.Exception != 0 {
		t.Fatalf("event %+v", e)
	}

	// Group interrogation 2 (QOI 22): double points only, COT 22.
	cl.i("64 01 06 00 a1 01 00 00 00 16")
	cl.expectASDU(CIcNa1, CotActCon, false)
	f := cl.expectASDU(MDpNa1, CotInrogen+2, false)
	if f.asdu.Num != 5 {
		t.Fatalf("group 2 has %d objects", f.asdu.Num)
	}
	cl.expectASDU(CIcNa1, CotActTerm, false)
}

func TestNegativeConfirmations(t *testing.T) {
	tests := []struct {
		name string
		req  string // ASDU
		want string // whole expected reply ASDU
	}{
		{
			// Conpot test: single command to IOA 0xEEEEEE → mirrored with COT 47, P/N set.
			name: "unknown ioa", req: "2d 01 06 00 01 00 ee ee ee 01", want: "2d 01 6f 00 01 00 ee ee ee 01",
		},
		{name: "unknown type", req: "88 01 06 00 01 00 01 00 00 00", want: "88 01 6c 00 01 00 01 00 00 00"},
		{name: "monitor type in control direction", req: "01 01 06 00 01 00 e9 03 00 01", want: "01 01 6c 00 01 00 e9 03 00 01"},
		{name: "unknown common address", req: "64 01 06 00 02 00 00 00 00 14", want: "64 01 6e 00 02 00 00 00 00 14"},
		{name: "command to global address", req: "2d 01 06 00 ff ff 77 17 00 01", want: "2d 01 6e 00 ff ff 77 17 00 01"},
		{name: "wrong cot", req: "64 01 03 00 01 00 00 00 00 14", want: "64 01 6d 00 01 00 00 00 00 14"},
		{name: "read with activation", req: "66 01 06 00 01 00 e9 03 00", want: "66 01 6d 00 01 00 e9 03 00"},
		{name: "read unknown ioa", req: "66 01 05 00 01 00 39 30 00", want: "66 01 6f 00 01 00 39 30 00"},
		{name: "interrogation ioa not zero", req: "64 01 06 00 01 00 01 00 00 14", want: "64 01 6f 00 01 00 01 00 00 14"},
		{name: "bad qoi", req: "64 01 06 00 01 00 00 00 00 05", want: "64 01 47 00 01 00 00 00 00 05"},
		{name: "double command dcs 0", req: "2e 01 06 00 01 00 71 17 00 00", want: "2e 01 47 00 01 00 71 17 00 00"},
		{name: "double command to single command ioa", req: "2e 01 06 00 01 00 77 17 00 02", want: "2e 01 6f 00 01 00 77 17 00 02"},
		{name: "execute without select", req: "2e 01 06 00 01 00 71 17 00 01", want: "2e 01 47 00 01 00 71 17 00 01"},
		{name: "set point out of range", req: "31 01 06 00 01 00 7c 17 00 e8 03 00", want: "31 01 47 00 01 00 7c 17 00 e8 03 00"},
		{name: "deactivate unselected", req: "2e 01 08 00 01 00 71 17 00 81", want: "2e 01 49 00 01 00 71 17 00 81"},
		{name: "test command bad pattern", req: "68 01 06 00 01 00 00 00 00 00 00", want: "68 01 47 00 01 00 00 00 00 00 00"},
		{name: "test command", req: "68 01 06 00 01 00 00 00 00 aa 55", want: "68 01 07 00 01 00 00 00 00 aa 55"},
		{name: "test bit mirrored", req: "68 01 86 00 01 00 00 00 00 aa 55", want: "68 01 87 00 01 00 00 00 00 aa 55"},
		{name: "clock sync bad time", req: "67 01 06 00 01 00 00 00 00 00 00 3c 00 01 01 18", want: "67 01 47 00 01 00 00 00 00 00 00 3c 00 01 01 18"},
	}
	_, srv := serve(t, NewConfig(), nil)
	cl := dial(t, srv)
	cl.start()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl.t = t
			cl.i(tc.req)
			f := cl.next()
			if f.Format != FormatI || !bytes.Equal(f.raw[6:], protocoltest.Unhex(t, tc.want)) {
				t.Fatalf("reply % x, want ASDU %s", f.raw, tc.want)
			}
		})
	}
	cl.t = t
	e := srv.WaitEvent(t, "single_command", func(e protocols.Event) bool { return e.Address == 0xEEEEEE })
	if e.Exception != CotUnknownIOA || e.Code != CScNa1 || e.Unit != 1 || !e.Write || !bytes.Equal(e.Data, []byte{1}) {
		t.Fatalf("event %+v", e)
	}
	e = srv.WaitEvent(t, "unsupported_asdu", func(e protocols.Event) bool { return e.Code == 0x88 })
	if e.Exception != CotUnknownType {
		t.Fatalf("event %+v", e)
	}
}

func TestCommands(t *testing.T) {
	_, srv := serve(t, NewConfig(), nil)
	cl := dial(t, srv)
	cl.start()

	// Conpot test: single command execute → act-con, spontaneous feedback, act-term.
	cl.i("2d 01 06 00 01 00 77 17 00 00") // 6007 autoreclose off
	cl.expectASDU(CScNa1, CotActCon, false)
	f := cl.expectASDU(MSpTb1, CotSpontaneous, false)
	if objs, _ := f.asdu.Objects(); len(objs) != 1 || objs[0].IOA != 1007 || objs[0].Element[0] != 0 {
		t.Fatalf("feedback % x", f.raw)
	}
	cl.expectASDU(CScNa1, CotActTerm, false)

	// Select-before-operate double command: select, execute → breaker 2001 opens (DPI 1).
	cl.i("2e 01 06 00 01 00 71 17 00 81") // select OFF
	cl.expectASDU(CDcNa1, CotActCon, false)
	cl.i("2e 01 06 00 01 00 71 17 00 01") // execute OFF
	cl.expectASDU(CDcNa1, CotActCon, false)
	f = cl.expectASDU(MDpTb1, CotSpontaneous, false)
	if objs, _ := f.asdu.Objects(); objs[0].IOA != 2001 || objs[0].Element[0] != 1 {
		t.Fatalf("breaker feedback % x", f.raw)
	}
	cl.expectASDU(CDcNa1, CotActTerm, false)

	// Select with a different value than the execute → negative.
	cl.i("2e 01 06 00 01 00 74 17 00 81")
	cl.expectASDU(CDcNa1, CotActCon, false)
	cl.i("2e 01 06 00 01 00 74 17 00 02")
	cl.expectASDU(CDcNa1, CotActCon, true)

	// Select then deactivate → deact-con.
	cl.i("2e 01 06 00 01 00 72 17 00 81")
	cl.expectASDU(CDcNa1, CotActCon, false)
	cl.i("2e 01 08 00 01 00 72 17 00 81")
	cl.expectASDU(CDcNa1, CotDeactCon, false)

	// Scaled set point (direct execute) 2100 → 4012.
	cl.i("31 01 06 00 01 00 7c 17 00 34 08 00")
	cl.expectASDU(CSeNb1, CotActCon, false)
	cl.expectASDU(MMeNb1, CotSpontaneous, false)
	cl.expectASDU(CSeNb1, CotActTerm, false)

	// Float set point 9.5 → 4013.
	cl.i("32 01 06 00 01 00 7d 17 00 00 00 18 41 00")
	cl.expectASDU(CSeNc1, CotActCon, false)
	cl.expectASDU(MMeNc1, CotSpontaneous, false)
	cl.expectASDU(CSeNc1, CotActTerm, false)

	// State visible in a later interrogation.
	cl.i("64 01 06 00 01 00 00 00 00 14")
	cl.expectASDU(CIcNa1, CotActCon, false)
	vals := map[uint32][]byte{}
	for {
		f := cl.next()
		if f.asdu.Type == CIcNa1 {
			break
		}
		objs, _ := f.asdu.Objects()
		for _, o := range objs {
			vals[o.IOA] = o.Element
		}
		cl.s()
	}
	if vals[1007][0] != 0 || vals[2001][0] != 1 || vals[2004][0] != 2 {
		t.Fatalf("binary state after commands: 1007=% x 2001=% x 2004=% x", vals[1007], vals[2001], vals[2004])
	}
	if !bytes.Equal(vals[4012], protocoltest.Unhex(t, "34 08 00")) || !bytes.Equal(vals[4013], protocoltest.Unhex(t, "00 00 18 41 00")) {
		t.Fatalf("set points: 4012=% x 4013=% x", vals[4012], vals[4013])
	}
	e := srv.WaitEvent(t, "double_command", func(e protocols.Event) bool { return e.Address == 6001 && e.Detail["se"] == "execute" })
	if e.Exception != 0 || !e.Write || e.Detail["value"] != "1" || e.Area != "C_DC_NA_1" {
		t.Fatalf("event %+v", e)
	}
}

func TestSpontaneousAcrossSessions(t *testing.T) {
	cfg := NewConfig()
	cfg.ScanInterval = 50 * time.Millisecond
	for i := range cfg.Points {
		cfg.Points[i].Deadband = 0 // only binary changes are spontaneous
	}
	_, srv := serve(t, cfg, nil)
	a, b := dial(t, srv), dial(t, srv)
	a.start()
	b.start()
	a.i("2d 01 06 00 01 00 77 17 00 00")
	a.expectASDU(CScNa1, CotActCon, false)
	f := b.expectASDU(MSpTb1, CotSpontaneous, false)
	objs, _ := f.asdu.Objects()
	if objs[0].IOA != 1007 || objs[0].Element[0] != 0 {
		t.Fatalf("session b got % x", f.raw)
	}
	// CP56Time2a of the change is plausible (now, UTC).
	ts, err := ParseCP56Time2a(objs[0].Element[1:])
	if err != nil || time.Since(ts.Time).Abs() > 5*time.Second {
		t.Fatalf("time tag %v %v", ts, err)
	}
}

func TestCounterInterrogationAndClock(t *testing.T) {
	boot := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := boot.Add(10 * time.Hour)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cfg := NewConfig()
	env := protocoltest.Env(t, &protocols.Identity{})
	env.Boot, env.Now = boot, clock
	h, err := New(env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := protocoltest.ServeTCP(t, "", h)
	cl := dial(t, srv)
	cl.start()

	counters := func(cot uint8) map[uint32][]byte {
		out := map[uint32][]byte{}
		for {
			f := cl.next()
			if f.asdu.Type == CCiNa1 {
				if f.asdu.COT != CotActTerm {
					t.Fatalf("counter interrogation cot %d", f.asdu.COT)
				}
				return out
			}
			if f.asdu.Type != MItNa1 || f.asdu.COT != cot {
				t.Fatalf("counter reply % x", f.raw)
			}
			objs, _ := f.asdu.Objects()
			for _, o := range objs {
				out[o.IOA] = o.Element
			}
		}
	}
	// General request, read (FRZ 0): value = 18734211 + 6300*10.
	cl.i("65 01 06 00 01 00 00 00 00 05")
	cl.expectASDU(CCiNa1, CotActCon, false)
	got := counters(CotReqcogen)
	if want := protocoltest.Unhex(t, "9b d2 1e 01 00"); !bytes.Equal(got[5001], want) { // 18797211, sequence 0
		t.Fatalf("counter 5001 = % x, want % x", got[5001], want)
	}
	// Freeze (FRZ 1): act-con + act-term, no data; the next read returns the frozen
	// value with sequence number 1 even after time passed.
	cl.i("65 01 06 00 01 00 00 00 00 45")
	cl.expectASDU(CCiNa1, CotActCon, false)
	counters(CotReqcogen)
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	cl.i("65 01 06 00 01 00 00 00 00 05")
	cl.expectASDU(CCiNa1, CotActCon, false)
	got = counters(CotReqcogen)
	if want := protocoltest.Unhex(t, "9b d2 1e 01 01"); !bytes.Equal(got[5001], want) {
		t.Fatalf("frozen counter 5001 = % x, want % x", got[5001], want)
	}
	cl.s()

	// Clock synchronisation to 2024-03-15 12:34:56.789: act-con echoes the time and
	// later time tags follow the station clock.
	cl.i("67 01 06 00 01 00 00 00 00 d5 dd 22 0c af 03 18")
	f := cl.expectASDU(CCsNa1, CotActCon, false)
	if !bytes.Equal(f.raw[6:], protocoltest.Unhex(t, "67 01 07 00 01 00 00 00 00 d5 dd 22 0c af 03 18")) {
		t.Fatalf("clock act-con % x", f.raw)
	}
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	cl.i("66 01 05 00 01 00 a1 0f 00") // read 4001 (M_ME_NC_1, no time tag)
	cl.expectASDU(MMeNc1, CotRequest, false)
	cl.i("66 01 05 00 01 00 e9 03 00") // read 1001 (M_SP_TB_1)
	f = cl.expectASDU(MSpTb1, CotRequest, false)
	objs, _ := f.asdu.Objects()
	ts, err := ParseCP56Time2a(objs[0].Element[1:])
	if err != nil {
		t.Fatal(err)
	}
	// 1001 last changed at boot, 11 h before the synchronisation.
	want := time.Date(2024, 3, 15, 12, 34, 56, 789e6, time.UTC).Add(-11 * time.Hour)
	if !ts.Time.Equal(want) {
		t.Fatalf("time tag %v, want %v", ts.Time, want)
	}
	e := srv.WaitEvent(t, "clock_sync", nil)
	if e.Detail["time"] != "2024-03-15T12:34:56.789Z" || !e.Write {
		t.Fatalf("event %+v", e)
	}
}

func TestMeasurementsMove(t *testing.T) {
	boot := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	env := protocoltest.Env(t, &protocols.Identity{})
	env.Boot = boot
	h, err := New(env, NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	d := h.dev
	p := d.points[4001]
	lo, hi := 1e9, -1e9
	for m := range 60 {
		v := d.valueLocked(p, boot.Add(time.Duration(m)*time.Minute))
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi-lo < 0.1 || lo < 20.4-0.15-1e-9 || hi > 20.4+0.15+1e-9 {
		t.Fatalf("4001 over an hour in [%f, %f]", lo, hi)
	}
	c := d.points[5001]
	if a, b := d.valueLocked(c, boot.Add(time.Hour)), d.valueLocked(c, boot.Add(2*time.Hour)); b-a != 6300 {
		t.Fatalf("counter rate %f per hour", b-a)
	}
}

func TestFlowControl(t *testing.T) {
	t.Run("k window and t2", func(t *testing.T) {
		cfg := NewConfig()
		cfg.K, cfg.W = 1, 1
		cfg.T1, cfg.T2 = 2*time.Second, 200*time.Millisecond
		_, srv := serve(t, cfg, nil)
		cl := dial(t, srv)
		cl.start()
		cl.i("64 01 06 00 01 00 00 00 00 14")
		cl.expectASDU(CIcNa1, CotActCon, false)
		// Window of 1 is full: nothing more until acknowledged.
		if f, err := cl.read(300 * time.Millisecond); err == nil {
			t.Fatalf("frame beyond k: % x", f.raw)
		}
		cl.s()
		cl.expectASDU(MSpNa1, CotInrogen, false)
	})
	t.Run("w acknowledgement", func(t *testing.T) {
		cfg := NewConfig()
		cfg.K, cfg.W = 2, 2
		_, srv := serve(t, cfg, nil)
		cl := dial(t, srv)
		cl.start()
		cl.i("64 01 06 00 01 00 00 00 00 14")
		cl.expectASDU(CIcNa1, CotActCon, false)
		cl.expectASDU(MSpNa1, CotInrogen, false) // window full (2)
		// N(R) 0: the station's frames stay unacknowledged, so it cannot piggyback.
		cl.iNR("68 01 06 00 01 00 00 00 00 aa 55", 0)
		cl.iNR("68 01 06 00 01 00 00 00 00 aa 55", 0)
		f := cl.next()
		if f.Format != FormatS || f.RecvSeq != 3 {
			t.Fatalf("want S-frame N(R)=3 after w frames, got % x", f.raw)
		}
	})
	t.Run("t2 acknowledgement", func(t *testing.T) {
		cfg := NewConfig()
		cfg.K, cfg.W = 2, 2
		cfg.T1, cfg.T2 = 3*time.Second, 150*time.Millisecond
		_, srv := serve(t, cfg, nil)
		cl := dial(t, srv)
		cl.start()
		start := time.Now()
		cl.i("64 01 06 00 01 00 00 00 00 14")
		cl.expectASDU(CIcNa1, CotActCon, false)  // acks our frame 0
		cl.expectASDU(MSpNa1, CotInrogen, false) // window of 2 full
		cl.iNR("68 01 06 00 01 00 00 00 00 aa 55", 0)
		f := cl.next()
		if f.Format != FormatS || f.RecvSeq != 2 {
			t.Fatalf("want S-frame N(R)=2, got % x", f.raw)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("S-frame after %s, before t2", d)
		}
	})
	t.Run("t1 without acknowledgement closes", func(t *testing.T) {
		cfg := NewConfig()
		cfg.T1, cfg.T2 = 300*time.Millisecond, 100*time.Millisecond
		_, srv := serve(t, cfg, nil)
		cl := dial(t, srv)
		cl.start()
		cl.i("68 01 06 00 01 00 00 00 00 aa 55")
		cl.expectASDU(CTsNa1, CotActCon, false)
		cl.closed(2 * time.Second)
		srv.WaitEvent(t, "protocol_violation", func(e protocols.Event) bool { return e.Detail["reason"] == "t1_expired_ack" })
	})
}

func TestT3TestFrame(t *testing.T) {
	cfg := NewConfig()
	cfg.T1, cfg.T2, cfg.T3 = 400*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond
	_, srv := serve(t, cfg, nil)
	cl := dial(t, srv)
	// Idle for t3: the station tests the link; answering keeps it open.
	f := cl.next()
	if !bytes.Equal(f.raw, protocoltest.Unhex(t, "68 04 43 00 00 00")) {
		t.Fatalf("want TESTFR act, got % x", f.raw)
	}
	cl.u(UTestFRCon)
	f = cl.next()
	if !bytes.Equal(f.raw, protocoltest.Unhex(t, "68 04 43 00 00 00")) {
		t.Fatalf("want second TESTFR act, got % x", f.raw)
	}
	// No TESTFR con within t1: the station closes.
	cl.closed(2 * time.Second)
	srv.WaitEvent(t, "protocol_violation", func(e protocols.Event) bool { return e.Detail["reason"] == "t1_expired_testfr" })
}

func TestProtocolViolationsClose(t *testing.T) {
	tests := []struct {
		name   string
		start  bool
		send   func(cl *client)
		reason string
	}{
		{"i frame before startdt", false, func(cl *client) { cl.i("64 01 06 00 01 00 00 00 00 14") }, "i_frame_while_stopped"},
		{"wrong send sequence", true, func(cl *client) { cl.vs = 5; cl.i("64 01 06 00 01 00 00 00 00 14") }, "send_sequence"},
		{"ack of unsent frames", true, func(cl *client) { cl.write(AppendSFrame(nil, 3)) }, "receive_sequence"},
		{"bad start octet", false, func(cl *client) { cl.write(protocoltest.Unhex(cl.t, "16 04 07 00 00 00")) }, "apci"},
		{"bad length", true, func(cl *client) { cl.write(protocoltest.Unhex(cl.t, "68 02 07 00")) }, "apci"},
		{"unknown u function", false, func(cl *client) { cl.write(protocoltest.Unhex(cl.t, "68 04 ff 00 00 00")) }, "apci"},
		{"startdt con from master", false, func(cl *client) { cl.u(UStartDTCon) }, "unexpected_u_frame"},
		{"truncated asdu", true, func(cl *client) { cl.i("64 01 06 00") }, "asdu"},
		{"wrong asdu length", true, func(cl *client) { cl.i("64 01 06 00 01 00 00 00 00 14 00") }, "asdu"},
		{"two objects in a command", true, func(cl *client) { cl.i("2d 02 06 00 01 00 77 17 00 01 77 17 00 01") }, "asdu"},
		{"i frame after stopdt", true, func(cl *client) {
			cl.u(UStopDTAct)
			if f := cl.next(); f.U != UStopDTCon {
				cl.t.Fatalf("STOPDT: % x", f.raw)
			}
			cl.i("64 01 06 00 01 00 00 00 00 14")
		}, "i_frame_while_stopped"},
	}
	cfg := NewConfig()
	_, srv := serve(t, cfg, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl := dial(t, srv)
			if tc.start {
				cl.start()
			}
			tc.send(cl)
			cl.closed(2 * time.Second)
		})
		srv.WaitEvent(t, "protocol_violation", func(e protocols.Event) bool { return e.Detail["reason"] == tc.reason })
	}
	if errs := srv.Errors(); len(errs) != 0 {
		t.Fatalf("handler errors: %v", errs)
	}
}

func TestPartialFrameTimeout(t *testing.T) {
	cfg := NewConfig()
	cfg.T1, cfg.T2 = 300*time.Millisecond, 100*time.Millisecond
	_, srv := serve(t, cfg, nil)
	cl := dial(t, srv)
	cl.write(protocoltest.Unhex(t, "68 0e 00 00"))
	cl.closed(2 * time.Second)
	srv.WaitEvent(t, "protocol_violation", func(e protocols.Event) bool { return e.Detail["reason"] == "t1_expired_partial_frame" })
}

func TestStopDTWaitsForAck(t *testing.T) {
	_, srv := serve(t, NewConfig(), nil)
	cl := dial(t, srv)
	cl.start()
	cl.i("68 01 06 00 01 00 00 00 00 aa 55")
	cl.expectASDU(CTsNa1, CotActCon, false)
	cl.u(UStopDTAct)
	if f, err := cl.read(200 * time.Millisecond); err == nil {
		t.Fatalf("STOPDT con before our ack: % x", f.raw)
	}
	cl.s()
	if f := cl.next(); f.Format != FormatU || f.U != UStopDTCon {
		t.Fatalf("want STOPDT con, got % x", f.raw)
	}
}

func TestContextCancelEndsSession(t *testing.T) {
	h, err := New(protocoltest.Env(t, &protocols.Identity{}), NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	protocoltest.CancelEnds(t, h)
}

// ---------------------------------------------------------------------------------
// Real clients and dissectors: nmap's iec-identify.nse and tshark's IEC 104 dissector
// over a tcpdump capture of the loopback sessions.

func TestRealClients(t *testing.T) {
	nmap := testenv.LookPath(t, "nmap")
	testenv.LookPath(t, "tshark")
	_, err := os.Stat("/usr/share/nmap/scripts/iec-identify.nse")
	testenv.Require(t, err == nil, "nmap has no iec-identify.nse")
	_, srv := serve(t, NewConfig(), nil)
	capture := protocoltest.StartCapture(t, srv.Addr.Port())

	// nmap iec-identify: TESTFR, STARTDT, broadcast C_IC_NA_1, counts the objects.
	out, err := exec.Command(nmap, "-n", "-Pn", "-sT", "-p", strconv.Itoa(int(srv.Addr.Port())),
		"--script", "+iec-identify", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("nmap: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ASDU address: 1\n") || !strings.Contains(string(out), "Information objects: 21\n") {
		t.Fatalf("nmap iec-identify output:\n%s", out)
	}

	// A scripted controlling station exercising every service.
	cl := dial(t, srv)
	cl.u(UTestFRAct)
	cl.next()
	cl.start()
	cl.i("64 01 06 00 01 00 00 00 00 14")
	for f := cl.next(); f.asdu.Type != CIcNa1 || f.asdu.COT != CotActTerm; f = cl.next() {
	}
	cl.s()
	cl.i("67 01 06 00 01 00 00 00 00 d5 dd 22 0c af 03 18")
	cl.next()
	cl.i("65 01 06 00 01 00 00 00 00 05")
	for f := cl.next(); f.asdu.Type != CCiNa1 || f.asdu.COT != CotActTerm; f = cl.next() {
	}
	cl.i("2e 01 06 00 01 00 71 17 00 81")
	cl.expectASDU(CDcNa1, CotActCon, false)
	cl.i("2e 01 06 00 01 00 71 17 00 01")
	cl.expectASDU(CDcNa1, CotActCon, false)
	cl.expectASDU(MDpTb1, CotSpontaneous, false)
	cl.expectASDU(CDcNa1, CotActTerm, false)
	cl.i("32 01 06 00 01 00 7d 17 00 00 00 18 41 00")
	for f := cl.next(); f.asdu.Type != CSeNc1 || f.asdu.COT != CotActTerm; f = cl.next() {
	}
	cl.i("66 01 05 00 01 00 e9 03 00")
	cl.next()
	cl.i("2d 01 06 00 01 00 ee ee ee 01")
	cl.expectASDU(CScNa1, CotUnknownIOA, true)
	cl.i("88 01 06 00 01 00 01 00 00 00")
	cl.expectASDU(0x88, CotUnknownType, true)
	cl.s()
	cl.u(UStopDTAct)
	cl.next()
	cl.c.Close()
	time.Sleep(100 * time.Millisecond)

	pcap := capture.Stop()
	iec104 := "tcp.port==" + strconv.Itoa(int(srv.Addr.Port())) + ",iec60870_104"
	protocoltest.TsharkClean(t, pcap, protocoltest.TsharkBad, "-d", iec104)
	types := protocoltest.Tshark(t, pcap, "-d", iec104, "-T", "fields", "-e", "iec60870_asdu.typeid")
	got := map[string]bool{}
	for _, l := range strings.Fields(strings.ReplaceAll(string(types), ",", " ")) {
		got[l] = true
	}
	for _, want := range []string{"1", "3", "11", "13", "15", "30", "31", "45", "46", "50", "100", "101", "102", "103"} {
		if !got[want] {
			t.Errorf("tshark saw no ASDU of type %s; saw %v", want, got)
		}
	}
}
