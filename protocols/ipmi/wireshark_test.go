package ipmi

import (
	"context"
	"strings"
	"testing"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// recorder serves datagrams like exchange and writes each datagram and its answer
// into a pcap between the console's port and 623.
type recorder struct {
	t    *testing.T
	h    *Handler
	pcap protocoltest.Pcap
}

func (r *recorder) send(s *protocoltest.Session, req []byte) []byte {
	r.t.Helper()
	r.pcap.UDP(s.Remote().Port(), 623, req)
	var out []byte
	if err := r.h.ServeDatagram(context.Background(), s, req, func(b []byte) error {
		out = append([]byte(nil), b...)
		r.pcap.UDP(623, s.Remote().Port(), b)
		return nil
	}); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// TestWireshark has Wireshark's RMCP, ASF and IPMI session dissectors decode a whole
// exchange: presence ping, the session-less commands in both formats, session
// set-up with both cipher suites, and encrypted commands, without a malformed frame.
func TestWireshark(t *testing.T) {
	h, _ := newTestHandler(t, testConfig())
	r := &recorder{t: t, h: h}
	s := newSession(t)
	r.send(s, hx("06 00 ff 06 000011be 80 c4 00 00"))
	r.send(s, hx(nmapProbe))
	r.send(s, v2req(NetFnApp, 0x54, 0x0e, 0x00, 0x80))
	for _, suite := range []byte{3, 17} {
		c := newConsole(t, h, suite, "ADMIN", "ADMIN")
		c.s = s
		// Run the handshake through the recorder.
		open := AppendSession20(nil, PayloadOpenRequest, false, 0, 0,
			AppendOpenSessionRequest(nil, OpenSessionRequest{Tag: 1, ConsoleID: c.id, Auth: c.auth, Integrity: c.integ, Conf: ConfAESCBC128}), IntegrityNone, nil)
		_, body, _ := ParseRMCP(r.send(s, open))
		sh, _ := ParseSession20(body)
		resp, _ := ParseOpenSessionResponse(sh.Payload)
		c.bmcID = resp.BMCID
		_, body, _ = ParseRMCP(r.send(s, AppendSession20(nil, PayloadRAKP1, false, 0, 0,
			AppendRAKP1(nil, RAKP1{Tag: 2, BMCID: c.bmcID, ConsoleRn: c.rm, Role: c.role, User: []byte(c.user)}), IntegrityNone, nil)))
		sh, _ = ParseSession20(body)
		r2, _ := ParseRAKP2(sh.Payload)
		c.rc, c.guid = r2.BMCRn, r2.GUID
		code := c.mac([]byte(c.pass), c.rc[:], le(c.id), []byte{c.role, byte(len(c.user))}, []byte(c.user))
		r.send(s, AppendSession20(nil, PayloadRAKP3, false, 0, 0, AppendRAKP3(nil, RAKP3{Tag: 3, BMCID: c.bmcID, AuthCode: code}), IntegrityNone, nil))
		c.sik = c.mac([]byte(c.pass), c.rm[:], c.rc[:], []byte{c.role, byte(len(c.user))}, []byte(c.user))
		c.k1 = c.mac(c.sik, []byte(strings.Repeat("\x01", 20)))
		c.k2 = c.mac(c.sik, []byte(strings.Repeat("\x02", 20)))
		for _, cmd := range [][]byte{{NetFnApp, 0x3B, 4}, {NetFnApp, 0x01}, {NetFnChassis, 0x01}, {NetFnChassis, 0x02, 1}} {
			if out := r.send(s, c.packet(cmd[0], cmd[1], cmd[2:])); out == nil {
				t.Fatalf("no answer to % x", cmd)
			}
		}
		r.send(s, c.packet(NetFnApp, 0x3C, le(c.bmcID)))
	}
	pcap := r.pcap.Write(t, "ipmi.pcap")
	protocoltest.TsharkClean(t, pcap, protocoltest.TsharkBad)

	out := string(protocoltest.Tshark(t, pcap, "-T", "fields", "-E", "separator=,", "-e", "rmcp.class", "-e", "asf.type",
		"-e", "ipmi_session.authtype", "-e", "ipmi_session.payloadtype"))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// (This Wireshark shows the IPMI messages themselves as raw IPMB data, nmap's
	// own probe included, so the check stops at the session layer.)
	want := []string{
		"0x06,0x80,,", "0x06,0x40,,", // presence ping and pong
		"0x07,,0x00,", "0x07,,0x00,", // Get Channel Authentication Capabilities, v1.5
		"0x07,,0x06,0x00", "0x07,,0x06,0x00", // Get Channel Cipher Suites, RMCP+
		"0x07,,0x06,0x10", "0x07,,0x06,0x11", "0x07,,0x06,0x12", "0x07,,0x06,0x13", "0x07,,0x06,0x14", "0x07,,0x06,0x15",
	}
	if len(lines) != 3*2+2*(6+5*2) {
		t.Fatalf("%d frames:\n%s", len(lines), out)
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("frame %d: %q, want %q", i+1, lines[i], w)
		}
	}
	// The session's messages are authenticated and encrypted both ways.
	enc := protocoltest.Tshark(t, pcap, "-Y", "ipmi_session.payloadtype.enc == 1 && ipmi_session.payloadtype.auth == 1", "-T", "fields", "-e", "frame.number")
	if n := len(strings.Fields(string(enc))); n != 2*5*2 {
		t.Errorf("%d encrypted and authenticated frames, want 20", n)
	}
}
