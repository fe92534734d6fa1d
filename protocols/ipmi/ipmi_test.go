package ipmi

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// testIdentity is the persona of the tests: the Modicon M340 of protocoltest without
// order number and hostname, with Schneider's enterprise number 3833 in its
// sysObjectID.
func testIdentity() *protocols.Identity {
	id := protocoltest.M340()
	id.OrderNumber, id.Hostname = "", ""
	id.SysObjectID = "1.3.6.1.4.1.3833.1.7.255.44"
	return id
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testConfig() *Config {
	cfg := NewConfig()
	cfg.Users = append(cfg.Users,
		User{Name: "operator", Password: "0per@tor!", Privilege: "operator"},
		User{Name: "viewer", Password: "v", Privilege: "user"})
	cfg.ProductID = 0x1234
	cfg.GUID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0"
	return cfg
}

func newTestHandler(t testing.TB, cfg *Config) (*Handler, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
	env := protocoltest.Env(t, testIdentity())
	env.Now = clk.now
	h, err := New(env, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h, clk
}

var nextPort = 41000

func newSession(t testing.TB) *protocoltest.Session {
	nextPort++
	return protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:623"), netip.AddrPortFrom(netip.MustParseAddr("192.0.2.7"), uint16(nextPort)))
}

func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestPresencePing(t *testing.T) {
	h, _ := newTestHandler(t, testConfig())
	got := protocoltest.Reply(t, h, newSession(t), hx("06 00 ff 06 000011be 80 c4 00 00"))
	want := hx("06 00 ff 06 000011be 40 c4 00 10 000011be 00000000 81 00 000000000000")
	if !bytes.Equal(got, want) {
		t.Errorf("pong % x, want % x", got, want)
	}
}

// The probe nmap's ipmi-version script and service detection send.
const nmapProbe = "0600ff07 00 00000000 00000000 09 2018c8 81 00 38 8e 04 b5"

func TestSessionless(t *testing.T) {
	h, _ := newTestHandler(t, testConfig())
	cases := []struct {
		name, req, want string
	}{
		{"auth caps, IPMI 1.5", nmapProbe,
			"0600ff07 00 00000000 00000000 10 811c63 20 00 38 00 01 80 04 02 00000000 21"},
		{"auth caps, channel 1", "0600ff07 00 00000000 00000000 09 2018c8 81 04 38 01 04" + " " + sum("8104380104"),
			"0600ff07 00 00000000 00000000 10 811c63 20 04 38 00 01 80 04 02 00000000" + " " + sum("2004380001800402")},
		{"auth caps, bad length", "0600ff07 00 00000000 00000000 08 2018c8 81 08 38 8e" + " " + sum("8108388e"),
			"0600ff07 00 00000000 00000000 08 811c63 20 08 38 c7" + " " + sum("200838c7")},
		{"auth caps, other channel", "0600ff07 00 00000000 00000000 09 2018c8 81 0c 38 05 04" + " " + sum("810c380504"),
			"0600ff07 00 00000000 00000000 08 811c63 20 0c 38 cc" + " " + sum("200c38cc")},
		{"auth caps, privilege 0", "0600ff07 00 00000000 00000000 09 2018c8 81 10 38 8e 00" + " " + sum("8110388e00"),
			"0600ff07 00 00000000 00000000 08 811c63 20 10 38 cc" + " " + sum("201038cc")},
		{"device id needs a session", "0600ff07 00 00000000 00000000 07 2018c8 81 14 01" + " " + sum("811401"),
			"0600ff07 00 00000000 00000000 08 811c63 20 14 01 d4" + " " + sum("201401d4")},
		{"v1.5 message in a session is dropped", "0600ff07 00 00000000 01020304 07 2018c8 81 14 01" + " " + sum("811401"), ""},
		{"bad checksum is dropped", "0600ff07 00 00000000 00000000 09 2018c8 81 00 38 8e 04 b6", ""},
		{"RMCP ACK", "0600ff87", ""},
		{"other RMCP version", "0700ff07 00 00000000 00000000 09 2018c8 81 00 38 8e 04 b5", ""},
		{"short", "0600", ""},
		{"ASF other than ping", "0600ff06 000011be 83 01 00 00", ""},
		{"ASF of another IANA", "0600ff06 00000001 80 01 00 00", ""},
		{"OEM payload", "0600ff07 06 02 00000000 00000000 0000", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := protocoltest.Reply(t, h, newSession(t), hx(tc.req))
			if !bytes.Equal(got, hx(tc.want)) {
				t.Errorf("reply\n got % x\nwant % x", got, hx(tc.want))
			}
		})
	}
}

// sum returns the IPMI checksum of hex bytes, as hex.
func sum(s string) string { return hex.EncodeToString([]byte{Checksum(hx(s))}) }

// v2req wraps an IPMI request in a pre-session RMCP+ packet.
func v2req(netfn, cmd byte, data ...byte) []byte {
	m := AppendRequest(nil, Message{RsAddr: BMCAddr, NetFn: netfn, RqAddr: ConsoleAddr, RqSeq: 3, Cmd: cmd, Data: data})
	return AppendSession20(nil, PayloadIPMI, false, 0, 0, m, IntegrityNone, nil)
}

// v2resp parses the pre-session RMCP+ response to a request.
func v2resp(t *testing.T, b []byte) (byte, []byte) {
	t.Helper()
	_, body, err := ParseRMCP(b)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := ParseSession20(body)
	if err != nil || sh.ID != 0 || sh.PayloadType != PayloadIPMI || sh.Authenticated || sh.Encrypted {
		t.Fatalf("session header %+v: %v", sh, err)
	}
	m, err := ParseResponse(sh.Payload)
	if err != nil || m.RqAddr != ConsoleAddr || m.RsAddr != BMCAddr || m.RqSeq != 3 {
		t.Fatalf("response %+v: %v", m, err)
	}
	return m.Data[0], m.Data[1:]
}

func TestCipherSuites(t *testing.T) {
	h, _ := newTestHandler(t, testConfig())
	cases := []struct {
		data []byte
		cc   byte
		want string
	}{
		{[]byte{0x0e, 0x00, 0x80}, 0, "01 c0030141 81 c0110344 81"},
		{[]byte{0x01, 0x00, 0x81}, 0, "01"},
		{[]byte{0x0e, 0x01, 0x80}, 0, "01 c0030141 81 c0110344 81"},
		{[]byte{0x0e, 0x00, 0x00}, 0, "01 01 03 41 44 81"},
		{[]byte{0x0e, 0x00}, CCDataLength, ""},
		{[]byte{0x03, 0x00, 0x80}, CCInvalidField, ""},
		{[]byte{0x0e, 0x05, 0x80}, CCInvalidField, ""},
	}
	for _, tc := range cases {
		cc, data := v2resp(t, protocoltest.Reply(t, h, newSession(t), v2req(NetFnApp, 0x54, tc.data...)))
		if cc != tc.cc || !bytes.Equal(data, hx(tc.want)) {
			t.Errorf("cipher suites % x: cc %02x data % x, want %02x % x", tc.data, cc, data, tc.cc, hx(tc.want))
		}
	}
	// Get Channel Authentication Capabilities in RMCP+ form is answered in kind.
	cc, data := v2resp(t, protocoltest.Reply(t, h, newSession(t), v2req(NetFnApp, 0x38, 0x8e, 0x04)))
	if cc != 0 || !bytes.Equal(data, hx("01 80 04 02 00000000")) {
		t.Errorf("auth caps: %02x % x", cc, data)
	}
}

// console is an RMCP+ client written from the specification's definitions, apart
// from the handler's key derivation, so that the tests check the handler against
// an independent layout of every HMAC input.
type console struct {
	t      *testing.T
	h      *Handler
	s      *protocoltest.Session
	auth   byte
	integ  byte
	user   string
	pass   string
	role   byte
	id     uint32 // console session ID
	bmcID  uint32
	rm     [16]byte // console random
	rc     [16]byte // BMC random
	guid   [16]byte
	sik    []byte
	k1, k2 []byte
	seq    uint32
	rqSeq  byte
}

func newConsole(t *testing.T, h *Handler, suite byte, user, pass string) *console {
	c := &console{t: t, h: h, s: newSession(t), user: user, pass: pass, role: 0x14, id: 0xA0A2A3A4}
	c.auth, c.integ = AuthRAKPHMACSHA1, IntegrityHMACSHA1_96
	if suite == 17 {
		c.auth, c.integ = AuthRAKPHMACSHA256, IntegrityHMACSHA256128
	}
	copy(c.rm[:], "console-random!!")
	return c
}

func (c *console) mac(key []byte, parts ...[]byte) []byte {
	var m hash.Hash
	if c.auth == AuthRAKPHMACSHA256 {
		m = hmac.New(sha256.New, key)
	} else {
		m = hmac.New(sha1.New, key)
	}
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// setup sends a pre-session payload and returns the reply payload of type want.
func (c *console) setup(pt byte, payload []byte, want byte) []byte {
	c.t.Helper()
	out := protocoltest.Reply(c.t, c.h, c.s, AppendSession20(nil, pt, false, 0, 0, payload, IntegrityNone, nil))
	if out == nil {
		c.t.Fatalf("no reply to payload type %02x", pt)
	}
	_, body, _ := ParseRMCP(out)
	sh, err := ParseSession20(body)
	if err != nil || sh.PayloadType != want || sh.ID != 0 || sh.Sequence != 0 {
		c.t.Fatalf("reply %+v: %v", sh, err)
	}
	return sh.Payload
}

func (c *console) open() OpenSessionResponse {
	c.t.Helper()
	p := c.setup(PayloadOpenRequest, AppendOpenSessionRequest(nil, OpenSessionRequest{Tag: 7, ConsoleID: c.id, Auth: c.auth, Integrity: c.integ, Conf: ConfAESCBC128}), PayloadOpenReply)
	r, err := ParseOpenSessionResponse(p)
	if err != nil {
		c.t.Fatal(err)
	}
	c.bmcID = r.BMCID
	return r
}

func (c *console) rakp1() RAKP2 {
	c.t.Helper()
	p := c.setup(PayloadRAKP1, AppendRAKP1(nil, RAKP1{Tag: 8, BMCID: c.bmcID, ConsoleRn: c.rm, Role: c.role, User: []byte(c.user)}), PayloadRAKP2)
	r, err := ParseRAKP2(p)
	if err != nil {
		c.t.Fatal(err)
	}
	c.rc, c.guid = r.BMCRn, r.GUID
	return r
}

func le(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// rakp2OK checks RAKP 2's HMAC: SIDm, SIDc, Rm, Rc, GUIDc, ROLEm, ULENGTHm, UNAMEm.
func (c *console) rakp2OK(r RAKP2) bool {
	want := c.mac([]byte(c.pass), le(c.id), le(c.bmcID), c.rm[:], c.rc[:], c.guid[:], []byte{c.role, byte(len(c.user))}, []byte(c.user))
	return hmac.Equal(r.AuthCode, want)
}

func (c *console) rakp3(status byte, authCode []byte) RAKP4 {
	c.t.Helper()
	if authCode == nil && status == 0 {
		authCode = c.mac([]byte(c.pass), c.rc[:], le(c.id), []byte{c.role, byte(len(c.user))}, []byte(c.user))
	}
	p := c.setup(PayloadRAKP3, AppendRAKP3(nil, RAKP3{Tag: 9, Status: status, BMCID: c.bmcID, AuthCode: authCode}), PayloadRAKP4)
	r, err := ParseRAKP4(p)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// login runs the whole handshake and checks every code the BMC sends.
func (c *console) login() {
	c.t.Helper()
	if r := c.open(); r.Status != StatusOK {
		c.t.Fatalf("open session status %02x", r.Status)
	}
	if r := c.rakp1(); r.Status != StatusOK || !c.rakp2OK(r) {
		c.t.Fatalf("RAKP 2 %+v: HMAC ok %v", r, c.rakp2OK(r))
	}
	r4 := c.rakp3(0, nil)
	if r4.Status != StatusOK || r4.ConsoleID != c.id {
		c.t.Fatalf("RAKP 4 %+v", r4)
	}
	c.sik = c.mac([]byte(c.pass), c.rm[:], c.rc[:], []byte{c.role, byte(len(c.user))}, []byte(c.user))
	icv := c.mac(c.sik, c.rm[:], le(c.bmcID), c.guid[:])
	n := 12
	if c.auth == AuthRAKPHMACSHA256 {
		n = 16
	}
	if !bytes.Equal(r4.ICV, icv[:n]) {
		c.t.Fatalf("RAKP 4 ICV % x, want % x", r4.ICV, icv[:n])
	}
	c.k1 = c.mac(c.sik, bytes.Repeat([]byte{1}, 20))
	c.k2 = c.mac(c.sik, bytes.Repeat([]byte{2}, 20))
}

// packet builds an authenticated, encrypted request of the session.
func (c *console) packet(netfn, cmd byte, data []byte) []byte {
	c.seq++
	c.rqSeq = (c.rqSeq + 1) & 0x3F
	msg := AppendRequest(nil, Message{RsAddr: BMCAddr, NetFn: netfn, RqAddr: ConsoleAddr, RqSeq: c.rqSeq, Cmd: cmd, Data: data})
	// Encrypt by hand: IV, payload, pad 1..n, pad length.
	pad := (16 - (len(msg)+1)%16) % 16
	plain := append(bytes.Clone(msg), make([]byte, pad+1)...)
	for i := range pad {
		plain[len(msg)+i] = byte(i + 1)
	}
	plain[len(plain)-1] = byte(pad)
	iv := bytes.Repeat([]byte{0x5A}, 16)
	block, _ := aes.NewCipher(c.k2[:16])
	enc := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(enc, plain)
	return AppendSession20(nil, PayloadIPMI, true, c.bmcID, c.seq, append(iv, enc...), c.integ, c.k1)
}

// cmd runs a command in the session and returns the completion code and data.
func (c *console) cmd(netfn, cmd byte, data ...byte) (byte, []byte) {
	c.t.Helper()
	out := protocoltest.Reply(c.t, c.h, c.s, c.packet(netfn, cmd, data))
	if out == nil {
		c.t.Fatalf("no answer to %02x/%02x", netfn, cmd)
	}
	_, body, _ := ParseRMCP(out)
	sh, err := ParseSession20(body)
	if err != nil || sh.ID != c.id || !sh.Encrypted || !sh.Authenticated || sh.PayloadType != PayloadIPMI {
		c.t.Fatalf("answer header %+v: %v", sh, err)
	}
	if err := VerifyTrailer(body, sh, c.integ, c.k1); err != nil {
		c.t.Fatalf("answer trailer: %v", err)
	}
	plain, err := Decrypt(c.k2, sh.Payload)
	if err != nil {
		c.t.Fatal(err)
	}
	m, err := ParseResponse(plain)
	if err != nil || m.NetFn != netfn|1 || m.Cmd != cmd || m.RqSeq != c.rqSeq || m.RqAddr != ConsoleAddr {
		c.t.Fatalf("answer %+v: %v", m, err)
	}
	return m.Data[0], m.Data[1:]
}

func TestSessionCommands(t *testing.T) {
	for _, suite := range []byte{3, 17} {
		t.Run(fmt.Sprintf("suite %d", suite), func(t *testing.T) {
			h, _ := newTestHandler(t, testConfig())
			c := newConsole(t, h, suite, "ADMIN", "ADMIN")
			c.login()
			if !bytes.Equal(c.guid[:], hx("0f1e2d3c4b5a49788695a4b3c2d1e0f0")) {
				t.Errorf("GUID % x", c.guid)
			}
			steps := []struct {
				name      string
				netfn, cm byte
				data      []byte
				cc        byte
				want      string
			}{
				{"device id", NetFnApp, 0x01, nil, 0, "20 01 03 40 02 80 f90e00 3412"},
				{"chassis status", NetFnChassis, 0x01, nil, 0, "21 00 00 00"},
				{"control needs operator", NetFnChassis, 0x02, []byte{0}, CCInsufficientPriv, ""},
				{"current privilege", NetFnApp, 0x3B, []byte{0}, 0, "02"},
				{"raise to administrator", NetFnApp, 0x3B, []byte{4}, 0, "04"},
				{"OEM exceeds the request", NetFnApp, 0x3B, []byte{5}, CCPrivExceedsLimit, ""},
				{"callback is invalid", NetFnApp, 0x3B, []byte{1}, CCInvalidField, ""},
				{"power down", NetFnChassis, 0x02, []byte{0}, 0, ""},
				{"status off", NetFnChassis, 0x01, nil, 0, "20 00 00 00"},
				{"cycle while off", NetFnChassis, 0x02, []byte{2}, CCNotInPresentState, ""},
				{"power up", NetFnChassis, 0x02, []byte{1}, 0, ""},
				{"status on by command", NetFnChassis, 0x01, nil, 0, "21 10 00 00"},
				{"unknown action", NetFnChassis, 0x02, []byte{7}, CCInvalidField, ""},
				{"no action", NetFnChassis, 0x02, nil, CCDataLength, ""},
				{"device id with data", NetFnApp, 0x01, []byte{1}, CCDataLength, ""},
				{"system guid", NetFnApp, 0x37, nil, 0, "0f1e2d3c4b5a49788695a4b3c2d1e0f0"},
				{"session info", NetFnApp, 0x3D, []byte{0}, 0, ""}, // see below
				{"second active session", NetFnApp, 0x3D, []byte{2}, 0, "00 10 01"},
				{"session by handle", NetFnApp, 0x3D, []byte{0xFE, 9}, CCNotPresent, ""},
				{"session by id", NetFnApp, 0x3D, append([]byte{0xFF}, le(c.bmcID)...), 0, ""},
				{"sdr repository info", 0x0A, 0x20, nil, CCInvalidCommand, ""},
				{"get channel auth caps in session", NetFnApp, 0x38, []byte{0x8e, 0x04}, 0, "01 80 04 02 00000000"},
			}
			for _, s := range steps {
				cc, data := c.cmd(s.netfn, s.cm, s.data...)
				want := hx(s.want)
				if s.name == "session info" {
					want = append(hx("01 10 01 02 04 11 c0000207 000000000000"), le(uint32(c.s.Remote().Port()))[:2]...)
				}
				if s.name == "session by id" {
					if cc != 0 || len(data) != 18 || data[0] != 1 {
						t.Errorf("%s: %02x % x", s.name, cc, data)
					}
					continue
				}
				if cc != s.cc || !bytes.Equal(data, want) {
					t.Errorf("%s: cc %02x data % x, want %02x % x", s.name, cc, data, s.cc, want)
				}
			}
			ev := c.s.EventsOf("chassis_control")
			if len(ev) != 6 || ev[1].Detail["action"] != "power_down" || !ev[1].Write || ev[1].Detail["power_after"] != "off" ||
				ev[0].Exception != CCInsufficientPriv || ev[1].Code != 0x0002 || ev[1].Detail["username"] != "ADMIN" {
				t.Errorf("chassis events %+v", ev)
			}
			// Close the session: answered, then the session is gone.
			if cc, _ := c.cmd(NetFnApp, 0x3C, le(c.bmcID)...); cc != 0 {
				t.Errorf("close session cc %02x", cc)
			}
			if out := protocoltest.Reply(t, h, c.s, c.packet(NetFnApp, 0x01, nil)); out != nil {
				t.Errorf("answer after close: % x", out)
			}
			if ev := c.s.EventsOf("unknown_session"); len(ev) != 1 {
				t.Errorf("events %+v", c.s.Events())
			}
		})
	}
}

func TestLoginEvents(t *testing.T) {
	h, _ := newTestHandler(t, testConfig())
	c := newConsole(t, h, 17, "ADMIN", "ADMIN")
	c.login()
	evs := c.s.Events()
	if len(evs) != 3 {
		t.Fatalf("events %+v", evs)
	}
	o, r1, r3 := evs[0], evs[1], evs[2]
	if o.Op != "open_session" || o.Code != PayloadOpenRequest || o.Detail["cipher_suite"] != "17" || o.Detail["authentication_algorithm"] != "rakp_hmac_sha256" ||
		o.Detail["integrity_algorithm"] != "hmac_sha256_128" || o.Detail["confidentiality_algorithm"] != "aes_cbc_128" || o.Exception != 0 {
		t.Errorf("open event %+v", o)
	}
	if r1.Op != "rakp_1" || r1.Detail["username"] != "ADMIN" || r1.Detail["requested_privilege"] != "administrator" || r1.Detail["lookup"] != "name_only" {
		t.Errorf("rakp 1 event %+v", r1)
	}
	if r3.Op != "rakp_3" || r3.Detail["result"] != "success" || r3.Detail["privilege"] != "user" || r3.Detail["session_id"] != o.Detail["session_id"] {
		t.Errorf("rakp 3 event %+v", r3)
	}
}

func TestOpenSessionErrors(t *testing.T) {
	cases := []struct {
		name   string
		req    OpenSessionRequest
		raw    []byte
		status byte
	}{
		{"cipher zero", OpenSessionRequest{Tag: 1, ConsoleID: 5, Auth: 0, Integrity: 0, Conf: 0}, nil, StatusInvalidAuthAlg},
		{"MD5", OpenSessionRequest{Tag: 1, ConsoleID: 5, Auth: AuthRAKPHMACMD5, Integrity: 1, Conf: 1}, nil, StatusInvalidAuthAlg},
		{"no integrity", OpenSessionRequest{Tag: 1, ConsoleID: 5, Auth: 1, Integrity: 0, Conf: 1}, nil, StatusInvalidIntegrityAlg},
		{"no confidentiality", OpenSessionRequest{Tag: 1, ConsoleID: 5, Auth: 1, Integrity: 1, Conf: 0}, nil, StatusInvalidConfAlg},
		{"mixed suite", OpenSessionRequest{Tag: 1, ConsoleID: 5, Auth: 1, Integrity: 4, Conf: 1}, nil, StatusNoCipherSuiteMatch},
		{"privilege 6", OpenSessionRequest{Tag: 1, MaxPriv: 6, ConsoleID: 5, Auth: 1, Integrity: 1, Conf: 1}, nil, StatusInvalidRole},
		{"console ID 0", OpenSessionRequest{Tag: 1, Auth: 1, Integrity: 1, Conf: 1}, nil, StatusIllegalParameter},
		{"payload types swapped", OpenSessionRequest{}, hx("01000000 05000000 01000008 01000000 00000008 01000000 02000008 01000000"), StatusIllegalParameter},
		{"short request", OpenSessionRequest{}, hx("01000000 05000000 00"), StatusIllegalParameter},
	}
	h, _ := newTestHandler(t, testConfig())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newConsole(t, h, 3, "ADMIN", "ADMIN")
			raw := tc.raw
			if raw == nil {
				raw = AppendOpenSessionRequest(nil, tc.req)
			}
			p := c.setup(PayloadOpenRequest, raw, PayloadOpenReply)
			consoleID := uint32(5)
			if tc.name == "console ID 0" {
				consoleID = 0
			}
			if len(p) != 36 || p[0] != 1 || p[1] != tc.status || binary.LittleEndian.Uint32(p[4:]) != consoleID || !bytes.Equal(p[8:], make([]byte, 28)) {
				t.Errorf("reply % x, want status %02x", p, tc.status)
			}
			if ev := c.s.EventsOf("open_session"); len(ev) != 1 || ev[0].Exception != int(tc.status) {
				t.Errorf("events %+v", ev)
			}
		})
	}
	t.Run("no more sessions", func(t *testing.T) {
		cfg := testConfig()
		cfg.MaxSessions = 2
		h, _ := newTestHandler(t, cfg)
		for i := range 3 {
			r := newConsole(t, h, 3, "ADMIN", "ADMIN").open()
			want := byte(StatusOK)
			if i == 2 {
				want = StatusNoResources
			}
			if r.Status != want {
				t.Errorf("session %d: status %02x", i, r.Status)
			}
		}
	})
}

func TestRAKPErrors(t *testing.T) {
	h, clk := newTestHandler(t, testConfig())
	cases := []struct {
		name   string
		user   string
		role   byte
		bmcID  func(*console) uint32
		status byte
	}{
		{"unknown user", "root", 0x14, nil, StatusUnauthorizedName},
		{"null user", "", 0x14, nil, StatusUnauthorizedName},
		{"name and privilege lookup mismatch", "operator", 0x04, nil, StatusUnauthorizedName},
		{"callback role", "ADMIN", 0x11, nil, StatusUnauthorizedRole},
		{"role 7", "ADMIN", 0x17, nil, StatusInvalidRole},
		{"long name", "ABCDEFGHIJKLMNOPQ", 0x14, nil, StatusInvalidNameLength},
		{"unknown session", "ADMIN", 0x14, func(*console) uint32 { return 0xdeadbeef }, StatusInvalidSessionID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newConsole(t, h, 3, tc.user, "x")
			c.role = tc.role
			c.open()
			if tc.bmcID != nil {
				c.bmcID = tc.bmcID(c)
			}
			r := c.rakp1()
			if r.Status != tc.status || len(r.AuthCode) != 0 || r.BMCRn != [16]byte{} {
				t.Errorf("RAKP 2 %+v, want status %02x", r, tc.status)
			}
			if ev := c.s.EventsOf("rakp_1"); len(ev) != 1 || ev[0].Exception != int(tc.status) || ev[0].Detail["username"] != tc.user[:min(len(tc.user), 16)] {
				t.Errorf("events %+v", ev)
			}
		})
	}
	t.Run("name and privilege lookup match", func(t *testing.T) {
		c := newConsole(t, h, 3, "operator", "0per@tor!")
		c.role = 0x03
		c.login()
		if cc, _ := c.cmd(NetFnApp, 0x3B, 4); cc != CCPrivExceedsLimit {
			t.Errorf("operator to administrator: %02x", cc)
		}
		if cc, d := c.cmd(NetFnApp, 0x3B, 3); cc != 0 || d[0] != 3 {
			t.Errorf("operator to operator: %02x", cc)
		}
	})
	t.Run("wrong password in RAKP 3", func(t *testing.T) {
		c := newConsole(t, h, 3, "ADMIN", "ADMIN")
		c.open()
		c.rakp1()
		r := c.rakp3(0, bytes.Repeat([]byte{0xAA}, 20))
		if r.Status != StatusInvalidIntegrity || r.ConsoleID != c.id || len(r.ICV) != 0 {
			t.Errorf("RAKP 4 %+v", r)
		}
		if ev := c.s.EventsOf("rakp_3"); len(ev) != 1 || ev[0].Detail["result"] != "wrong_password" || ev[0].Exception != StatusInvalidIntegrity {
			t.Errorf("events %+v", ev)
		}
		if r := c.rakp3(0, nil); r.Status != StatusInvalidSessionID {
			t.Errorf("RAKP 3 after a failure: %+v", r)
		}
	})
	t.Run("console rejects RAKP 2", func(t *testing.T) {
		c := newConsole(t, h, 3, "ADMIN", "wrong")
		c.open()
		r2 := c.rakp1()
		if c.rakp2OK(r2) {
			t.Fatal("RAKP 2 HMAC matches a wrong password")
		}
		if r := c.rakp3(StatusInvalidIntegrity, nil); r.Status != StatusInvalidIntegrity {
			t.Errorf("RAKP 4 %+v", r)
		}
		if ev := c.s.EventsOf("rakp_3"); len(ev) != 1 || ev[0].Detail["result"] != "client_rejected" || ev[0].Detail["console_status"] != "0x0f" {
			t.Errorf("events %+v", ev)
		}
	})
	t.Run("abandoned after RAKP 2", func(t *testing.T) {
		c := newConsole(t, h, 3, "ADMIN", "whatever")
		c.open()
		c.rakp1()
		clk.advance(11 * time.Second)
		// The next datagram of any flow expires it (the timer would too).
		protocoltest.Reply(t, h, newSession(t), hx(nmapProbe))
		if ev := c.s.EventsOf("rakp_abandoned"); len(ev) != 1 || ev[0].Detail["username"] != "ADMIN" {
			t.Errorf("events %+v", c.s.Events())
		}
		if r := c.rakp3(0, nil); r.Status != StatusInvalidSessionID {
			t.Errorf("RAKP 3 after expiry: %+v", r)
		}
	})
}

func TestAbandonTimer(t *testing.T) {
	cfg := testConfig()
	cfg.SetupTimeout = 50 * time.Millisecond
	h, _ := newTestHandler(t, cfg)
	c := newConsole(t, h, 3, "ADMIN", "guess")
	c.open()
	c.rakp1()
	deadline := time.Now().Add(2 * time.Second)
	for len(c.s.EventsOf("rakp_abandoned")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no rakp_abandoned event")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.mu.Lock()
	n := len(h.sessions)
	h.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sessions left", n)
	}
}

func TestSessionIntegrity(t *testing.T) {
	h, clk := newTestHandler(t, testConfig())
	c := newConsole(t, h, 3, "ADMIN", "ADMIN")
	c.login()
	drop := func(name string, pkt []byte, op string) {
		t.Helper()
		before := len(c.s.EventsOf(op))
		if out := protocoltest.Reply(t, h, c.s, pkt); out != nil {
			t.Errorf("%s: answered % x", name, out)
		}
		if len(c.s.EventsOf(op)) != before+1 {
			t.Errorf("%s: no %s event: %+v", name, op, c.s.Events())
		}
	}
	p := c.packet(NetFnApp, 0x01, nil)
	p[len(p)-1] ^= 1
	drop("bad auth code", p, "integrity_failure")
	p = c.packet(NetFnApp, 0x01, nil)
	p[20] ^= 1 // a payload byte
	drop("changed payload", p, "integrity_failure")
	msg := AppendRequest(nil, Message{RsAddr: BMCAddr, NetFn: NetFnApp, RqAddr: ConsoleAddr, Cmd: 0x01})
	c.seq++
	drop("unencrypted", AppendSession20(nil, PayloadIPMI, false, c.bmcID, c.seq, msg, c.integ, c.k1), "integrity_failure")
	c.seq++
	drop("unauthenticated", AppendSession20(nil, PayloadIPMI, false, c.bmcID, c.seq, msg, IntegrityNone, nil), "integrity_failure")
	drop("SOL payload", AppendSession20(nil, PayloadSOL, true, c.bmcID, c.seq, msg, c.integ, c.k1), "unsupported_payload")
	drop("another session", AppendSession20(nil, PayloadIPMI, true, 0x1234, 1, msg, c.integ, c.k1), "unknown_session")
	// Sequence numbers: far behind the highest is a replay.
	c.seq = 100
	if cc, _ := c.cmd(NetFnApp, 0x01); cc != 0 {
		t.Fatalf("cc %02x", cc)
	}
	c.seq = 50
	drop("replay", c.packet(NetFnApp, 0x01, nil), "replay")
	c.seq = 80
	if cc, _ := c.cmd(NetFnApp, 0x01); cc != 0 {
		t.Errorf("within the window: cc %02x", cc)
	}
	// An idle session times out.
	c.seq = 200
	clk.advance(61 * time.Second)
	drop("timed out", c.packet(NetFnApp, 0x01, nil), "unknown_session")
}

func TestCloseOtherSession(t *testing.T) {
	h, _ := newTestHandler(t, testConfig())
	a := newConsole(t, h, 3, "ADMIN", "ADMIN")
	a.login()
	b := newConsole(t, h, 17, "viewer", "v")
	b.login()
	// The user-level session may not close the administrator's once raised.
	a.cmd(NetFnApp, 0x3B, 4)
	if cc, _ := b.cmd(NetFnApp, 0x3C, le(a.bmcID)...); cc != CCInsufficientPriv {
		t.Errorf("close by a lower privilege: %02x", cc)
	}
	if cc, d := a.cmd(NetFnApp, 0x3D, 2); cc != 0 || len(d) != 18 || d[0] != 2 || d[3] != 4 || d[4] != 2 {
		t.Errorf("second session info: %02x % x", cc, d)
	}
	if cc, _ := a.cmd(NetFnApp, 0x3C, 0, 0, 0, 0, 9); cc != CCInvalidHandle {
		t.Errorf("close by unknown handle: %02x", cc)
	}
	if cc, _ := a.cmd(NetFnApp, 0x3C, 1, 2, 3, 4); cc != CCInvalidSessionID {
		t.Errorf("close by unknown id: %02x", cc)
	}
	if cc, _ := a.cmd(NetFnApp, 0x3C, 0, 0, 0, 0, 2); cc != 0 {
		t.Errorf("close by handle: %02x", cc)
	}
	if out := protocoltest.Reply(t, h, b.s, b.packet(NetFnApp, 0x01, nil)); out != nil {
		t.Errorf("closed session answered")
	}
}

func TestWire(t *testing.T) {
	// Integrity trailer: pad to a multiple of four, pad length, next header 07, and
	// HMAC-SHA1-96 of everything from the auth type.
	k1 := bytes.Repeat([]byte{0x11}, 20)
	pkt := AppendSession20(nil, PayloadIPMI, true, 0x01020304, 9, []byte{1, 2, 3, 4, 5}, IntegrityHMACSHA1_96, k1)
	body := pkt[4:]
	authed := body[:len(body)-12]
	if len(authed)%4 != 0 || authed[len(authed)-1] != 0x07 {
		t.Fatalf("trailer % x", body)
	}
	pad := int(authed[len(authed)-2])
	if !bytes.Equal(authed[12+5:12+5+pad], bytes.Repeat([]byte{0xFF}, pad)) || body[1] != 0xC0 {
		t.Errorf("pad % x", body)
	}
	m := hmac.New(sha1.New, k1)
	m.Write(authed)
	if !bytes.Equal(body[len(body)-12:], m.Sum(nil)[:12]) {
		t.Errorf("auth code")
	}
	sh, err := ParseSession20(body)
	if err != nil || sh.ID != 0x01020304 || sh.Sequence != 9 || !bytes.Equal(sh.Payload, []byte{1, 2, 3, 4, 5}) || VerifyTrailer(body, sh, IntegrityHMACSHA1_96, k1) != nil {
		t.Errorf("parse back %+v %v", sh, err)
	}
	if VerifyTrailer(body, sh, IntegrityHMACSHA1_96, bytes.Repeat([]byte{0x12}, 20)) != ErrAuthCode {
		t.Errorf("wrong key verifies")
	}
	// Confidentiality: IV, payload, pad 01 02 ..., pad length.
	key := bytes.Repeat([]byte{0x22}, 20)
	iv := bytes.Repeat([]byte{0x33}, 16)
	enc, err := Encrypt(key, iv, []byte("0123456789"))
	if err != nil || len(enc) != 32 || !bytes.Equal(enc[:16], iv) {
		t.Fatalf("Encrypt: % x %v", enc, err)
	}
	block, _ := aes.NewCipher(key[:16])
	plain := make([]byte, 16)
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, enc[16:])
	if !bytes.Equal(plain, []byte("0123456789\x01\x02\x03\x04\x05\x05")) {
		t.Errorf("plain % x", plain)
	}
	if got, err := Decrypt(key, enc); err != nil || string(got) != "0123456789" {
		t.Errorf("Decrypt = %q, %v", got, err)
	}
	enc[31] ^= 0xFF
	if _, err := Decrypt(key, enc); !errors.Is(err, ErrPadding) {
		t.Errorf("corrupted: %v", err)
	}
	for _, n := range []int{0, 15, 16, 17, 31} {
		e, _ := Encrypt(key, iv, make([]byte, n))
		if got, err := Decrypt(key, e); err != nil || len(got) != n {
			t.Errorf("round trip %d: %d %v", n, len(got), err)
		}
	}
	// Messages and checksums.
	req := AppendRequest(nil, Message{RsAddr: 0x20, NetFn: 6, RqAddr: 0x81, RqSeq: 5, Cmd: 1})
	if !bytes.Equal(req, hx("20 18 c8 81 14 01 6a")) {
		t.Errorf("request % x", req)
	}
	if _, err := ParseRequest(hx("20 18 c8 81 14 01 6b")); !errors.Is(err, ErrChecksum) {
		t.Errorf("bad checksum: %v", err)
	}
	// Open session, RAKP round trips.
	o := OpenSessionRequest{Tag: 3, MaxPriv: 4, ConsoleID: 0xA0A2A3A4, Auth: 3, Integrity: 4, Conf: 1}
	back, err := ParseOpenSession(AppendOpenSessionRequest(nil, o))
	if err != nil || back.Tag != 3 || back.ConsoleID != o.ConsoleID || back.Auth != 3 || back.Integrity != 4 || back.Conf != 1 || !back.wellFormed() {
		t.Errorf("open session %+v %v", back, err)
	}
	r1 := RAKP1{Tag: 1, BMCID: 2, Role: 0x14, User: []byte("ADMIN")}
	if b, err := ParseRAKP1(AppendRAKP1(nil, r1)); err != nil || string(b.User) != "ADMIN" || b.Role != 0x14 || b.BMCID != 2 {
		t.Errorf("RAKP 1 %+v %v", b, err)
	}
	if _, err := ParseRAKP1(append(AppendRAKP1(nil, r1), 'x')); !errors.Is(err, ErrPayload) {
		t.Errorf("RAKP 1 with a wrong length: %v", err)
	}
}

func TestDeviceIdentity(t *testing.T) {
	fw := []struct {
		in           string
		major, minor byte
		aux          string
	}{
		{"v3.40", 3, 0x40, ""},
		{"V4.5.2", 4, 0x05, "02000000"},
		{"2.10.1.7.9", 2, 0x10, "01070900"},
		{"1.0", 1, 0, ""},
		{"", 0, 0, ""},
		{"V250.123", 127, 0x99, ""},
		{"R07.04 build 3", 7, 0x04, "03000000"},
	}
	for _, tc := range fw {
		major, minor, aux := firmwareRevision(tc.in)
		if major != tc.major || minor != tc.minor || hex.EncodeToString(aux) != tc.aux {
			t.Errorf("firmwareRevision(%q) = %d %02x % x", tc.in, major, minor, aux)
		}
	}
	oids := map[string]uint32{
		"1.3.6.1.4.1.3833.1.7": 3833, ".1.3.6.1.4.1.4329.6.1.2": 4329, "1.3.6.1.4.1.9": 9,
		"1.3.6.1.2.1.1": 0, "": 0, "1.3.6.1.4.1.x": 0, "1.3.6.1.4.1.99999999": 0,
	}
	for oid, want := range oids {
		if got := enterpriseOf(oid); got != want {
			t.Errorf("enterpriseOf(%q) = %d, want %d", oid, got, want)
		}
	}
	// Without a configured GUID or product ID both come from the identity: stable
	// for one install, different for another.
	a, _ := newTestHandler(t, NewConfig())
	b, _ := newTestHandler(t, NewConfig())
	id := testIdentity()
	id.Serial = "21M0000001"
	env := protocoltest.Env(t, id)
	other, err := New(env, NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	if a.guid != b.guid || a.guid == other.guid || a.guid[6]>>4 != 4 || a.guid[8]>>6 != 2 {
		t.Errorf("GUIDs % x % x % x", a.guid, b.guid, other.guid)
	}
	if a.dev.product == 0 || a.dev.product != b.dev.product || a.dev.manufacturer != 3833 {
		t.Errorf("device %+v", a.dev)
	}
}

func TestConfig(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	protocoltest.RefuseConfigs(t, NewConfig, New, testIdentity, protocoltest.BadConfigs[Config]{
		{"no users", func(c *Config) { c.Users = nil }},
		{"long name", func(c *Config) { c.Users[0].Name = strings.Repeat("u", 17) }},
		{"long password", func(c *Config) { c.Users[0].Password = strings.Repeat("p", 21) }},
		{"empty password", func(c *Config) { c.Users[0].Password = "" }},
		{"user twice", func(c *Config) { c.Users = append(c.Users, c.Users[0]) }},
		{"privilege", func(c *Config) { c.Users[0].Privilege = "root" }},
		{"channel", func(c *Config) { c.Channel = 0 }},
		{"manufacturer", func(c *Config) { c.ManufacturerID = 1 << 20 }},
		{"revision", func(c *Config) { c.DeviceRevision = 16 }},
		{"guid", func(c *Config) { c.GUID = "xyz" }},
		{"restore policy", func(c *Config) { c.PowerRestorePolicy = "sometimes" }},
		{"sessions", func(c *Config) { c.MaxSessions = 0 }},
		{"timeouts", func(c *Config) { c.SetupTimeout = 0 }},
	})
}

func TestSpec(t *testing.T) {
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "ipmi", Transport: protocols.UDP, Port: 623, Service: "asf-rmcp"},
		protocoltest.Env(t, testIdentity()))
}
