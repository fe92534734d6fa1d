package modbus

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// The seed corpora are committed in testdata/fuzz/FuzzParseFrame and
// testdata/fuzz/FuzzHandle: one request of every function code, exception paths,
// pipelined and malformed frames.

// FuzzParseFrame checks that ParseFrame never panics, never reads past the frame it
// reports, and that a parsed frame re-encodes to the same bytes.
func FuzzParseFrame(f *testing.F) {
	f.Add(hx("00 01 00 00 00 06 01 03 00 00 00 01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, pdu, n, err := ParseFrame(b)
		switch {
		case errors.Is(err, ErrShortFrame), errors.Is(err, ErrFrameLength):
			if n != 0 || pdu != nil {
				t.Fatalf("%v with n=%d pdu=% x", err, n, pdu)
			}
			return
		case err == nil, errors.Is(err, ErrProtocolID), errors.Is(err, ErrEmptyPDU):
		default:
			t.Fatalf("unexpected error %v", err)
		}
		if n != HeaderLen-1+int(h.Length) || n > len(b) || n > MaxADULen {
			t.Fatalf("n=%d for length %d, buffer %d", n, h.Length, len(b))
		}
		if len(pdu) != n-HeaderLen || cap(pdu) != len(pdu) {
			t.Fatalf("pdu len %d cap %d for n=%d", len(pdu), cap(pdu), n)
		}
		if re := AppendFrame(nil, h, pdu); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoded % x, want % x", re, b[:n])
		}
		// The PDU parsers must not panic on whatever the frame carries.
		ParseRange(pdu)
		ParseSingleWrite(pdu)
		ParseMultipleWrite(pdu)
		ParseMaskWrite(pdu)
		ParseReadWrite(pdu)
		ParseDiagnostic(pdu)
		ParseDeviceIDRequest(pdu)
		ParseDeviceIDResponse(pdu)
		ParseReadResponse(pdu)
		ParseException(pdu)
	})
}

// FuzzHandle feeds random bytes through the handler's framing and request handling,
// as ServeStream does, and checks every answer: never a panic, one event per frame,
// and each response a well-formed Modbus TCP frame that answers its request.
func FuzzHandle(f *testing.F) {
	f.Add(hx("00 01 00 00 00 06 01 03 00 00 00 01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		clock := func() time.Time { return testNow }
		cfg := testConfig()
		if len(b) > 0 && b[0]&1 == 1 { // half of the inputs against a gateway
			cfg.UnknownUnits = GatewayNoResponse
		}
		h, err := New(testEnv(t, clock), cfg)
		if err != nil {
			t.Fatal(err)
		}
		sess := protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:502"), netip.MustParseAddrPort("127.0.0.1:40000"))
		frames := 0
		for {
			hdr, pdu, n, err := ParseFrame(b)
			if errors.Is(err, ErrShortFrame) || errors.Is(err, ErrFrameLength) {
				break
			}
			frames++
			out := h.serveFrame(sess, hdr, pdu, err, nil)
			if err != nil {
				if len(out) != 0 {
					t.Fatalf("answer % x to a frame that is not a request (%v)", out, err)
				}
			} else {
				checkAnswer(t, hdr, pdu, out, cfg)
			}
			b = b[n:]
		}
		if got := len(sess.Events()); got != frames {
			t.Fatalf("%d events for %d frames", got, frames)
		}
	})
}

// checkAnswer checks that resp is a well-formed answer to the request pdu of hdr.
func checkAnswer(t *testing.T, hdr Header, req, resp []byte, cfg *Config) {
	t.Helper()
	if len(resp) == 0 {
		if cfg.UnknownUnits == Ignore {
			return
		}
		t.Fatalf("no answer to % x", req)
	}
	rh, pdu, n, err := ParseFrame(resp)
	if err != nil || n != len(resp) {
		t.Fatalf("answer % x: %v (n=%d)", resp, err, n)
	}
	if rh.Transaction != hdr.Transaction || rh.Unit != hdr.Unit || rh.Protocol != 0 {
		t.Fatalf("answer header %+v to %+v", rh, hdr)
	}
	if fc, e, ok := ParseException(pdu); ok {
		if fc != req[0]&^exceptionFlag {
			t.Fatalf("exception for fc 0x%02x to fc 0x%02x", fc, req[0])
		}
		switch e {
		case IllegalFunction, IllegalDataAddress, IllegalDataValue, GatewayPathUnavailable, GatewayTargetDeviceFailedToRespond:
		default:
			t.Fatalf("exception %v", e)
		}
		return
	}
	if pdu[0] != req[0] {
		t.Fatalf("answer fc 0x%02x to fc 0x%02x", pdu[0], req[0])
	}
	switch req[0] {
	case FuncReadCoils, FuncReadDiscreteInputs, FuncReadHoldingRegisters, FuncReadInputRegisters:
		rq, _ := ParseRange(req)
		_, data, err := ParseReadResponse(pdu)
		want := 2 * int(rq.Quantity)
		if req[0] <= FuncReadDiscreteInputs {
			want = (int(rq.Quantity) + 7) / 8
		}
		if err != nil || len(data) != want {
			t.Fatalf("read answer % x to % x", pdu, req)
		}
	case FuncReadWriteMultipleRegisters:
		rw, _ := ParseReadWrite(req)
		if _, data, err := ParseReadResponse(pdu); err != nil || len(data) != 2*int(rw.Read.Quantity) {
			t.Fatalf("read/write answer % x to % x", pdu, req)
		}
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncMaskWriteRegister:
		if !bytes.Equal(pdu, req) {
			t.Fatalf("write answer % x is not the request % x", pdu, req)
		}
	case FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if !bytes.Equal(pdu, req[:5]) {
			t.Fatalf("write answer % x to % x", pdu, req)
		}
	case FuncDiagnostics:
		if len(pdu) < 5 || !bytes.Equal(pdu[1:3], req[1:3]) {
			t.Fatalf("diagnostics answer % x to % x", pdu, req)
		}
	case FuncReportServerID:
		if len(pdu) < 4 || int(pdu[1]) != len(pdu)-2 || pdu[3] != runIndicatorOn {
			t.Fatalf("report server id answer % x", pdu)
		}
	case FuncEncapsulatedInterface:
		r, err := ParseDeviceIDResponse(pdu)
		if err != nil || r.Code != req[2] || len(r.Objects) == 0 {
			t.Fatalf("device id answer % x to % x: %v", pdu, req, err)
		}
	default:
		t.Fatalf("normal answer % x to unserved fc 0x%02x", pdu, req[0])
	}
}
