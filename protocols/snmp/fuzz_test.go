package snmp

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"testing"

	"github.com/gosnmp/gosnmp"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// The seed corpora are in testdata/fuzz/FuzzParseMessage and FuzzServeDatagram:
// requests of net-snmp, gosnmp and nmap, the hand-made edge cases of the table tests
// and garbage.

// FuzzParseMessage checks that the decoder never panics, fails only with its
// sentinel errors, and that whatever it accepts can be echoed in a response that
// carries the same request-id, community and bindings.
func FuzzParseMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		index := 0
		if len(m.vars) <= math.MaxUint8 {
			index = len(m.vars)
		}
		out, err := marshalResponse(m, gosnmp.GenErr, index, echo(m))
		if err != nil {
			t.Fatalf("echo of an accepted request: %v", err)
		}
		req, _ := scanMessage(b)
		resp, err := scanMessage(out)
		if err != nil {
			t.Fatalf("response %x does not scan: %v", out, err)
		}
		if resp.version != req.version || string(resp.community) != string(req.community) ||
			resp.requestID != req.requestID || resp.pdu != byte(gosnmp.GetResponse) ||
			resp.f2 != int64(gosnmp.GenErr) || resp.f3 != int64(index) || len(resp.varbinds) != len(req.varbinds) {
			t.Fatalf("response %+v to %+v", resp, req)
		}
		for i, v := range req.varbinds {
			r := resp.varbinds[i]
			if string(r.name) != string(v.name) || r.value.tag != v.value.tag {
				t.Fatalf("binding %d: %x %x, want %x %x", i+1, r.name, r.value.raw, v.name, v.value.raw)
			}
		}
		if _, err := (&gosnmp.GoSNMP{}).SnmpDecodePacket(out); err != nil {
			t.Fatalf("gosnmp cannot decode the response %x: %v", out, err)
		}
	})
}

// FuzzServeDatagram runs whole messages through the agent: no panic, no error, at
// most one reply, which fits max_message_size and answers the request (a Report to
// an SNMPv3 message).
func FuzzServeDatagram(f *testing.F) {
	cfg := NewConfig()
	cfg.WriteCommunity = "s3cr3t-rw"
	cfg.RateLimit = 0
	env := protocoltest.Env(f, protocoltest.Identity())
	h, err := New(env, cfg)
	if err != nil {
		f.Fatal(err)
	}
	local := netip.MustParseAddrPort("192.0.2.10:161")
	remote := netip.MustParseAddrPort("198.51.100.7:40123")
	f.Fuzz(func(t *testing.T, b []byte) {
		s := protocoltest.NewSession(t, local, remote)
		var replies [][]byte
		err := h.ServeDatagram(context.Background(), s, b, func(r []byte) error {
			replies = append(replies, append([]byte(nil), r...))
			return nil
		})
		if err != nil {
			t.Fatalf("ServeDatagram: %v", err)
		}
		if len(s.Events()) != 1 {
			t.Fatalf("%d events", len(s.Events()))
		}
		switch len(replies) {
		case 0:
			return
		case 1:
		default:
			t.Fatalf("%d replies", len(replies))
		}
		out := replies[0]
		if len(out) > cfg.MaxMessageSize {
			t.Fatalf("reply of %d octets", len(out))
		}
		if v3, err := scanV3(b); err == nil {
			r, err := scanV3(out)
			if err != nil || r.msgID != v3.msgID || r.flags != 0 || r.pdu.pdu != byte(gosnmp.Report) ||
				(!v3.encrypted && r.pdu.requestID != v3.pdu.requestID) {
				t.Fatalf("report %x to %x (%v)", out, b, err)
			}
			return
		}
		req, err := scanMessage(b)
		if err != nil {
			t.Fatalf("answered a message that does not scan: %v", err)
		}
		resp, err := scanMessage(out)
		if err != nil || resp.requestID != req.requestID || resp.version != req.version || resp.pdu != byte(gosnmp.GetResponse) {
			t.Fatalf("reply %x to %x (%v)", out, b, err)
		}
	})
}
