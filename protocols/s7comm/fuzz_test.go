package s7comm

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// FuzzCOTP fuzzes the TPKT and COTP parsers with whole TPKT packets.
func FuzzCOTP(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseTPKTHeader(b)
		if err != nil {
			return
		}
		if n < TPKTHeaderLen+3 {
			t.Fatalf("accepted TPKT length %d", n)
		}
		if n > len(b) {
			return
		}
		tp, err := ParseTPDU(b[TPKTHeaderLen:n])
		if err != nil {
			return
		}
		if len(tp.Header)+len(tp.Data) != n-TPKTHeaderLen {
			t.Fatalf("TPDU split %d+%d of %d", len(tp.Header), len(tp.Data), n-TPKTHeaderLen)
		}
		switch tp.Code {
		case TPDUConnRequest:
			cr, err := ParseConnRequest(tp.Header)
			if err != nil {
				return
			}
			// The CC built from any accepted CR parses back with the same TSAPs.
			cc := AppendConnConfirm(nil, cr.SrcRef, 1, cr.TPDUSizeCode, cr.CallingTSAP, cr.CalledTSAP)
			back, err := ParseTPDU(cc)
			if err != nil || back.Code != TPDUConnConfirm || len(back.Data) != 0 {
				t.Fatalf("CC % x does not parse: %v", cc, err)
			}
			// Reuse the CR parser on the CC by swapping the code.
			cc[1] = TPDUConnRequest
			again, err := ParseConnRequest(cc)
			if err != nil || !bytes.Equal(again.CallingTSAP, cr.CallingTSAP) || !bytes.Equal(again.CalledTSAP, cr.CalledTSAP) || again.TPDUSizeCode != cr.TPDUSizeCode {
				t.Fatalf("CC parameters lost: %+v vs %+v (%v)", again, cr, err)
			}
		case TPDUData:
			eot, data, err := ParseDataTPDU(tp)
			if err != nil {
				return
			}
			pk := AppendDataPackets(nil, data, 128)
			var got []byte
			for len(pk) > 0 {
				l, err := ParseTPKTHeader(pk)
				if err != nil || l > len(pk) || l > TPKTHeaderLen+128 {
					t.Fatalf("segment % x: %v", pk, err)
				}
				got = append(got, pk[7:l]...)
				pk = pk[l:]
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("segmentation lost data (eot %v)", eot)
			}
		}
	})
}

// FuzzS7 fuzzes the S7 PDU parsers with a PDU (DT payload).
func FuzzS7(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		h, params, data, err := ParseHeader(b)
		if err != nil {
			return
		}
		if got := AppendPDU(nil, h, params, data); !bytes.Equal(got, b) {
			t.Fatalf("header round trip\n got % x\nwant % x", got, b)
		}
		_, _ = ParseSetup(params)
		_, _ = ParsePIService(params)
		_, _ = ParsePLCStop(params)
		if u, err := ParseUserdataParam(params); err == nil {
			if got := AppendUserdataParam(nil, u); !bytes.Equal(got, params) {
				t.Fatalf("userdata param round trip % x vs % x", got, params)
			}
			_, _ = ParseSZLRequest(data)
		}
		items, err := ParseVarItems(params, 255)
		if err != nil {
			return
		}
		s7any := true
		for _, it := range items {
			s7any = s7any && it.Syntax == syntaxS7ANY
		}
		if s7any {
			if got := AppendVarItems(nil, params[0], items); !bytes.Equal(got, params) {
				t.Fatalf("items round trip\n got % x\nwant % x", got, params)
			}
		}
		if d, err := ParseDataItems(data, len(items)); err == nil {
			if got := AppendDataItems(nil, d); len(got) != DataItemsLen(d) {
				t.Fatalf("data items length %d vs %d", len(got), DataItemsLen(d))
			}
		}
	})
}

// FuzzHandler feeds a byte stream to a whole session and checks that the handler
// ends, answers only well-formed TPKTs and never returns an error.
func FuzzHandler(f *testing.F) {
	h := newHandler(f, func(c *Config) { c.IdleTimeout = 2 * time.Second })
	f.Fuzz(func(t *testing.T, in []byte) {
		// Closing our side is EOF for the handler.
		b, _, err := protocoltest.Drive(t, h, in, protocoltest.Hangup, 5*time.Second)
		if err != nil {
			t.Fatalf("handler error: %v", err)
		}
		for len(b) > 0 {
			n, err := ParseTPKTHeader(b)
			if err != nil || n > len(b) {
				t.Fatalf("malformed answer % x: %v", b, err)
			}
			if _, err := ParseTPDU(b[TPKTHeaderLen:n]); err != nil {
				t.Fatalf("malformed TPDU % x: %v", b[:n], err)
			}
			if binary.BigEndian.Uint16(b[2:4]) > TPKTHeaderLen+1024 {
				t.Fatalf("TPKT larger than the TPDU maximum")
			}
			b = b[n:]
		}
	})
}
