package ipmi

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"testing"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// The seed corpora are committed in testdata/fuzz/FuzzWire and
// testdata/fuzz/FuzzHandler: presence pings, session-less requests in both formats,
// Open Session requests of every suite, RAKP messages, in-session commands.

// FuzzWire checks the parsers: no panic, and what they accept re-encodes.
func FuzzWire(f *testing.F) {
	f.Add(hx(nmapProbe))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, body, err := ParseRMCP(b); err == nil {
			ParseASF(body)
			if sh, msg, err := ParseSession15(body); err == nil && len(msg) > len(body) {
				t.Fatalf("v1.5 message longer than its packet: %+v", sh)
			}
			if sh, err := ParseSession20(body); err == nil {
				if len(sh.Payload)+len(sh.Trailer)+session20HeaderLen != len(body) {
					t.Fatalf("RMCP+ split %d+%d of %d", len(sh.Payload), len(sh.Trailer), len(body))
				}
				VerifyTrailer(body, sh, IntegrityHMACSHA1_96, make([]byte, 20))
				VerifyTrailer(body, sh, IntegrityHMACSHA256128, make([]byte, 32))
			}
		}
		if m, err := ParseRequest(b); err == nil {
			if re := AppendRequest(nil, m); !bytes.Equal(re, b) {
				t.Fatalf("request % x re-encodes as % x", b, re)
			}
		}
		if r, err := ParseOpenSession(b); err == nil && r.wellFormed() {
			if re := AppendOpenSessionRequest(nil, r); !bytes.Equal(re[8:], b[8:]) && bytes.Equal(b[9:12], []byte{0, 0, 8}) {
				t.Fatalf("open session % x re-encodes as % x", b, re)
			}
		}
		if r, err := ParseRAKP1(b); err == nil {
			if re := AppendRAKP1(nil, r); len(re) != len(b) {
				t.Fatalf("RAKP 1 % x re-encodes as % x", b, re)
			}
		}
		ParseRAKP2(b)
		ParseRAKP3(b)
		ParseRAKP4(b)
		ParseOpenSessionResponse(b)
		Decrypt(make([]byte, 20), b)
	})
}

// FuzzHandler sends arbitrary datagrams to a BMC with an active session: once as
// they are, once as the encrypted payload of a message of that session. Replies must
// be well-formed, and the session keeps working.
func FuzzHandler(f *testing.F) {
	f.Add(hx(nmapProbe))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, _ := newTestHandler(t, testConfig())
		c := newConsole(t, h, 3, "ADMIN", "ADMIN")
		c.login()
		if out := protocoltest.Reply(t, h, newSession(t), b); out != nil {
			checkReply(t, out)
		}
		// The same bytes as the IPMI message of the session.
		c.seq++
		block, _ := aes.NewCipher(c.k2[:16])
		pad := (16 - (len(b)+1)%16) % 16
		plain := append(bytes.Clone(b), make([]byte, pad+1)...)
		for i := range pad {
			plain[len(b)+i] = byte(i + 1)
		}
		plain[len(plain)-1] = byte(pad)
		iv := make([]byte, 16)
		enc := make([]byte, len(plain))
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(enc, plain)
		if len(iv)+len(enc) <= 0xFFFF {
			pkt := AppendSession20(nil, PayloadIPMI, true, c.bmcID, c.seq, append(iv, enc...), c.integ, c.k1)
			if out := protocoltest.Reply(t, h, c.s, pkt); out != nil {
				checkReply(t, out)
			}
		}
		// Unless the fuzz input closed it, the session still answers.
		h.mu.Lock()
		_, alive := h.sessions[c.bmcID]
		h.mu.Unlock()
		if alive {
			if cc, _ := c.cmd(NetFnApp, 0x01); cc != 0 {
				t.Fatalf("Get Device ID after the fuzz input: cc %02x", cc)
			}
		}
	})
}

// checkReply checks that a reply is an RMCP message the BMC may send.
func checkReply(t *testing.T, out []byte) {
	t.Helper()
	rh, body, err := ParseRMCP(out)
	if err != nil || rh.Sequence != RMCPNoAck {
		t.Fatalf("reply % x: %v", out, err)
	}
	switch rh.Class {
	case ClassASF:
		if m, err := ParseASF(body); err != nil || m.Type != ASFPresencePong {
			t.Fatalf("ASF reply % x", out)
		}
	case ClassIPMI:
		if body[0] == AuthRMCPPlus {
			sh, err := ParseSession20(body)
			if err != nil || len(sh.Trailer) != 0 && !sh.Authenticated {
				t.Fatalf("RMCP+ reply % x: %v", out, err)
			}
			if sh.PayloadType == PayloadIPMI && !sh.Encrypted {
				if _, err := ParseResponse(sh.Payload); err != nil {
					t.Fatalf("response % x: %v", sh.Payload, err)
				}
			}
			return
		}
		_, msg, err := ParseSession15(body)
		if err != nil {
			t.Fatalf("v1.5 reply % x: %v", out, err)
		}
		if _, err := ParseResponse(msg); err != nil {
			t.Fatalf("v1.5 response % x: %v", msg, err)
		}
	default:
		t.Fatalf("reply of class %02x", rh.Class)
	}
}
