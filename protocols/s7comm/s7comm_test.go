package s7comm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// testIdentity is the shared test persona with the hardware revision the SZL
// records below spell out.
func testIdentity() *protocols.Identity {
	id := protocoltest.Identity()
	id.Hardware = "5"
	return id
}

func newHandler(t testing.TB, mutate func(*Config)) *Handler {
	t.Helper()
	cfg := NewConfig()
	if mutate != nil {
		mutate(cfg)
	}
	h, err := New(protocoltest.Env(t, testIdentity()), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// readTPKT reads one TPKT packet.
func readTPKT(t testing.TB, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("read TPKT header: %v", err)
	}
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	b := make([]byte, n)
	copy(b, hdr)
	if _, err := io.ReadFull(c, b[4:]); err != nil {
		t.Fatalf("read TPKT body: %v", err)
	}
	return b
}

// readPDU reads DT TPDUs until EOT and returns the reassembled S7 PDU.
func readPDU(t testing.TB, c net.Conn) []byte {
	t.Helper()
	var pdu []byte
	for {
		p := readTPKT(t, c)
		if len(p) < 7 || p[5] != TPDUData {
			t.Fatalf("expected DT TPDU, got % x", p)
		}
		pdu = append(pdu, p[7:]...)
		if p[6]&0x80 != 0 {
			return pdu
		}
	}
}

func send(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// expectClosed checks that the server closes the connection.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if err == nil {
		t.Fatalf("expected close, read % x", b[:n])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 5 s")
	}
}

// Requests used across tests. The CR and setup are nmap s7-info's bytes.
const (
	hexCRSlot2     = "0300001611e00000001400c1020100c2020102c0010a"
	hexCRSlot0     = "0300001611e00000000500c1020100c2020200c0010a"
	hexSetup       = "0300001902f08032010000000000080000f0000001000101e0"
	hexSZL0011     = "0300002102f080320700000000000800080001120411440100ff09000400110001"
	hexSZL001C     = "0300002102f080320700000000000800080001120411440100ff090004001c0001"
	hexConpotCC    = "030000130ed00000000000c1020000c2020000"
	hexStandardCR  = "0300001611e00000000400c1020100c2020102c0010a"
	hexStandardCR1 = "0300001611e00000000400c1020100c2020101c0010a"
)

// connect performs COTP CR/CC (slot 1) and Setup Communication with the given PDU size.
func connect(t testing.TB, c net.Conn, pdu uint16) {
	t.Helper()
	send(t, c, protocoltest.Unhex(t, hexStandardCR1))
	cc := readTPKT(t, c)
	if cc[5] != TPDUConnConfirm {
		t.Fatalf("CR answered with % x", cc)
	}
	setup := AppendPDU(nil, Header{ROSCTR: ROSCTRJob, PDURef: 0x100}, AppendSetup(nil, Setup{1, 1, pdu}), nil)
	send(t, c, AppendDataPackets(nil, setup, 1024))
	resp := readPDU(t, c)
	if resp[1] != ROSCTRAckData {
		t.Fatalf("setup answered with % x", resp)
	}
}

// job sends an S7 PDU and returns the answer PDU.
func job(t testing.TB, c net.Conn, h Header, params, data []byte) []byte {
	t.Helper()
	send(t, c, AppendDataPackets(nil, AppendPDU(nil, h, params, data), 1024))
	return readPDU(t, c)
}

func TestCOTPConnect(t *testing.T) {
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)
	tests := []struct {
		name string
		cr   string
		// want is the CC with its source reference (bytes 8..9) zeroed; "" means the
		// CR is refused with wantType and the connection closed.
		want     string
		wantType byte
		closed   bool
	}{
		{
			name: "standard CR, rack 0 slot 1",
			cr:   hexStandardCR1,
			want: "0300001611d00004000000c0010ac1020100c2020101",
		},
		{
			name: "nmap alternative CR, slot 0, src ref 5",
			cr:   hexCRSlot0,
			want: "0300001611d00005000000c0010ac1020100c2020200",
		},
		{
			name: "TIA string TSAPs, TPDU size 2048 offered is cut to 1024",
			cr:   "030000241fe0000000ab00c0010bc1020600c21053494d415449432d524f4f542d484d49",
			want: "030000241fd000ab000000c0010ac1020600c21053494d415449432d524f4f542d484d49",
		},
		{
			name: "no TPDU size: ISO default, none in the CC",
			cr:   "030000130ee00000004200c1020100c2020101",
			want: "030000130ed00042000000c1020100c2020101",
		},
		{
			name:     "wrong slot is refused with a DR",
			cr:       hexStandardCR,
			wantType: TPDUDisconnRequest,
			closed:   true,
		},
		{
			name:     "wrong rack is refused with a DR",
			cr:       "0300001611e00000000400c1020100c2020121c0010a",
			wantType: TPDUDisconnRequest,
			closed:   true,
		},
		{
			name:     "parameter length overruns the header: ER",
			cr:       "0300001611e00000000400c1020100c2090101c0010a",
			wantType: TPDUError,
		},
		{
			name:     "invalid TPDU size value: ER",
			cr:       "0300001611e00000000400c1020100c2020101c00103",
			wantType: TPDUError,
		},
		{
			name:     "DT without CR: DR",
			cr:       hexSetup,
			wantType: TPDUDisconnRequest,
			closed:   true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := srv.Dial(t)
			send(t, c, protocoltest.Unhex(t, tc.cr))
			got := readTPKT(t, c)
			if tc.want == "" {
				if got[5] != tc.wantType {
					t.Fatalf("answer % x, want TPDU type %#x", got, tc.wantType)
				}
				if tc.wantType == TPDUDisconnRequest {
					cr := protocoltest.Unhex(t, tc.cr)
					if !bytes.Equal(got[6:8], cr[8:10]) && cr[5] == TPDUConnRequest {
						t.Errorf("DR dst ref % x, want the CR's src ref % x", got[6:8], cr[8:10])
					}
				}
				if tc.closed {
					expectClosed(t, c)
				}
				return
			}
			if got[8] == 0 && got[9] == 0 {
				t.Errorf("CC source reference is zero: % x", got)
			}
			norm := bytes.Clone(got)
			norm[8], norm[9] = 0, 0
			if want := protocoltest.Unhex(t, tc.want); !bytes.Equal(norm, want) {
				t.Errorf("CC\n got % x\nwant % x", norm, want)
			}
		})
	}
}

// TestStandardCRIsNotConpot is the honeyscanner signature: Conpot answers every CR
// with a static CC whose references and TSAPs are zero.
func TestStandardCRIsNotConpot(t *testing.T) {
	h := newHandler(t, func(c *Config) { c.Slots = []int{2} })
	srv := protocoltest.ServeTCP(t, "", h)
	c := srv.Dial(t)
	send(t, c, protocoltest.Unhex(t, hexStandardCR))
	got := readTPKT(t, c)
	if bytes.Equal(got, protocoltest.Unhex(t, hexConpotCC)) {
		t.Fatalf("answered with Conpot's static CC % x", got)
	}
	cr := protocoltest.Unhex(t, hexStandardCR)
	switch {
	case got[5] != TPDUConnConfirm:
		t.Fatalf("not a CC: % x", got)
	case !bytes.Equal(got[6:8], cr[8:10]):
		t.Errorf("CC dst ref % x, want CR src ref % x", got[6:8], cr[8:10])
	case got[8] == 0 && got[9] == 0:
		t.Errorf("CC src ref is zero")
	case !bytes.Contains(got, protocoltest.Unhex(t, "c1020100")) || !bytes.Contains(got, protocoltest.Unhex(t, "c2020102")):
		t.Errorf("TSAPs not echoed: % x", got)
	case !bytes.Contains(got, protocoltest.Unhex(t, "c0010a")):
		t.Errorf("TPDU size not negotiated: % x", got)
	}
	// A second connection gets another source reference.
	c2 := srv.Dial(t)
	send(t, c2, cr)
	got2 := readTPKT(t, c2)
	if bytes.Equal(got[8:10], got2[8:10]) {
		t.Errorf("two connections share source reference % x", got[8:10])
	}
}

func TestSetupCommunication(t *testing.T) {
	tests := []struct {
		name      string
		maxPDU    int
		req       Setup
		want      Setup
		wantEvent int
	}{
		{"nmap asks 480, S7-1200 gives 240", 240, Setup{1, 1, 480}, Setup{1, 1, 240}, 240},
		{"S7-400 class max 480", 480, Setup{1, 1, 480}, Setup{1, 1, 480}, 480},
		{"AmQ capped by the CPU", 240, Setup{8, 8, 240}, Setup{3, 3, 240}, 240},
		{"small PDU request raised to 240", 480, Setup{1, 1, 128}, Setup{1, 1, 240}, 240},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandler(t, func(c *Config) { c.MaxPDUSize = tc.maxPDU })
			srv := protocoltest.ServeTCP(t, "", h)
			c := srv.Dial(t)
			send(t, c, protocoltest.Unhex(t, hexStandardCR1))
			readTPKT(t, c)
			resp := job(t, c, Header{ROSCTR: ROSCTRJob, PDURef: 0x0a0b}, AppendSetup(nil, tc.req), nil)
			want := AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: 0x0a0b}, AppendSetup(nil, tc.want), nil)
			if !bytes.Equal(resp, want) {
				t.Fatalf("\n got % x\nwant % x", resp, want)
			}
			waitEvents(t, srv, func(evs []protocols.Event) bool {
				e, ok := findEvent(evs, "setup_communication")
				return ok && e.Quantity == tc.wantEvent
			})
		})
	}
	// nmap's literal setup bytes.
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)
	c := srv.Dial(t)
	send(t, c, protocoltest.Unhex(t, hexCRSlot0))
	readTPKT(t, c)
	send(t, c, protocoltest.Unhex(t, hexSetup))
	got := readTPKT(t, c)
	if want := protocoltest.Unhex(t, "0300001b02f080320300000000000800000000f0000001000100f0"); !bytes.Equal(got, want) {
		t.Fatalf("nmap setup\n got % x\nwant % x", got, want)
	}
}

func findEvent(evs []protocols.Event, op string) (protocols.Event, bool) {
	for _, e := range evs {
		if e.Op == op {
			return e, true
		}
	}
	return protocols.Event{}, false
}

// waitEvents waits until ok holds for the events of all sessions served.
func waitEvents(t testing.TB, srv *protocoltest.Server, ok func([]protocols.Event) bool) []protocols.Event {
	t.Helper()
	evs, done := srv.WaitEvents(3*time.Second, ok)
	if !done {
		t.Fatalf("events not as expected: %+v", evs)
	}
	return evs
}

// szlReq builds a first Read SZL userdata request.
func szlReq(id, index uint16) (Header, []byte, []byte) {
	p := AppendUserdataParam(nil, UserdataParam{Method: UDMethodRequest, Type: UDTypeRequest, Group: GroupCPU, SubFunc: SubReadSZL})
	d := []byte{RetSuccess, DTSOctetStr, 0, 4, byte(id >> 8), byte(id), byte(index >> 8), byte(index)}
	return Header{ROSCTR: ROSCTRUserdata, PDURef: 0x0200}, p, d
}

// readSZL reads a whole SZL partial list, following fragments; it returns the SZL
// data (header + records) or the userdata error code.
func readSZL(t testing.TB, c net.Conn, id, index uint16) ([]byte, uint16, int) {
	t.Helper()
	h, p, d := szlReq(id, index)
	resp := job(t, c, h, p, d)
	var out []byte
	frags := 0
	for {
		frags++
		rh, params, data, err := ParseHeader(resp)
		if err != nil || rh.ROSCTR != ROSCTRUserdata {
			t.Fatalf("SZL answer % x: %v", resp, err)
		}
		u, err := ParseUserdataParam(params)
		if err != nil || !u.Long || u.Method != UDMethodResponse || u.Type != UDTypeResponse || u.Group != GroupCPU || u.SubFunc != SubReadSZL {
			t.Fatalf("SZL answer param % x: %v", params, err)
		}
		if u.ErrorCode != 0 {
			if !bytes.Equal(data, []byte{0x0A, 0, 0, 0}) {
				t.Errorf("error answer data % x", data)
			}
			return nil, u.ErrorCode, frags
		}
		if len(data) < 4 || data[0] != RetSuccess || data[1] != DTSOctetStr || int(binary.BigEndian.Uint16(data[2:4])) != len(data)-4 {
			t.Fatalf("SZL data header % x", data)
		}
		if len(resp) > 240 {
			t.Fatalf("SZL answer of %d bytes exceeds the PDU", len(resp))
		}
		out = append(out, data[4:]...)
		if u.LastDU == 0 {
			if u.DURN != 0 && frags == 1 {
				t.Errorf("single answer with DURN %d", u.DURN)
			}
			return out, 0, frags
		}
		if u.DURN == 0 {
			t.Fatalf("fragment without data unit reference")
		}
		// Follow-up request for the next fragment.
		fp := AppendUserdataParam(nil, UserdataParam{Method: UDMethodResponse, Type: UDTypeRequest, Group: GroupCPU, SubFunc: SubReadSZL, Seq: u.Seq, DURN: u.DURN, Long: true})
		resp = job(t, c, Header{ROSCTR: ROSCTRUserdata, PDURef: 0x0201}, fp, []byte{0x0A, 0, 0, 0})
	}
}

// szlRecords splits SZL data into its header fields and records.
func szlRecords(t testing.TB, b []byte) (id, index uint16, recs [][]byte) {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("SZL data too short: % x", b)
	}
	id, index = binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])
	l, n := int(binary.BigEndian.Uint16(b[4:])), int(binary.BigEndian.Uint16(b[6:]))
	if len(b) != 8+l*n {
		t.Fatalf("SZL %04x: %d records of %d bytes, but %d bytes", id, n, l, len(b)-8)
	}
	for i := range n {
		recs = append(recs, b[8+i*l:8+(i+1)*l])
	}
	return id, index, recs
}

func TestReadSZL(t *testing.T) {
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)
	c := srv.Dial(t)
	connect(t, c, 480)
	id := testIdentity()
	recHex := func(r []byte) string { return hex.EncodeToString(r) }
	ident := func(index uint16, mlfb string, ausbg, ausbe uint16) string {
		return recHex(AppendIdentRecord(nil, index, mlfb, 0x00C0, ausbg, ausbe))
	}
	comp := func(index uint16, s string, n int) string {
		r := AppendU16(nil, index)
		r = AppendPadded(r, s, n, 0)
		return recHex(AppendPadded(r, "", 34-len(r), 0))
	}
	tests := []struct {
		name      string
		id, index uint16
		want      []string // records, hex
		wantErr   uint16
		frags     int
	}{
		{"0x0011 all identification records", 0x0011, 0x0001, []string{
			"0001" + hex.EncodeToString([]byte("6ES7 214-1AG40-0XB0 ")) + "00c0" + "0005" + "0000",
			ident(6, id.OrderNumber, 5, 0),
			"0007" + strings.Repeat("20", 20) + "00c0" + "5604" + "0502",
		}, 0, 1},
		{"0x0111 index 1", 0x0111, 0x0001, []string{ident(1, id.OrderNumber, 5, 0)}, 0, 1},
		{"0x0111 index 6", 0x0111, 0x0006, []string{ident(6, id.OrderNumber, 5, 0)}, 0, 1},
		{"0x0111 index 7 firmware V4.5.2", 0x0111, 0x0007, []string{ident(7, "", 0x5604, 0x0502)}, 0, 1},
		{"0x0111 unknown index", 0x0111, 0x0002, nil, UDErrSZLUnavailable, 1},
		{"0x001C all components (fragmented)", 0x001C, 0x0000, []string{
			comp(1, id.ModuleName, 24), comp(2, id.Model, 24), comp(3, id.PlantID, 32),
			comp(4, id.Copyright, 26), comp(5, id.Serial, 24), comp(7, id.Model, 32),
			comp(8, "", 32), "0009002af6000001" + strings.Repeat("00", 26), comp(10, "", 32), comp(11, id.Location, 32),
		}, 0, 2},
		{"0x011C index 1 AS name", 0x011C, 1, []string{comp(1, id.ModuleName, 24)}, 0, 1},
		{"0x011C index 2 module name", 0x011C, 2, []string{comp(2, id.Model, 24)}, 0, 1},
		{"0x011C index 3 plant", 0x011C, 3, []string{comp(3, id.PlantID, 32)}, 0, 1},
		{"0x011C index 4 copyright", 0x011C, 4, []string{comp(4, id.Copyright, 26)}, 0, 1},
		{"0x011C index 5 serial", 0x011C, 5, []string{comp(5, id.Serial, 24)}, 0, 1},
		{"0x011C index 7 module type", 0x011C, 7, []string{comp(7, id.Model, 32)}, 0, 1},
		{"0x011C index 8 memory card", 0x011C, 8, []string{comp(8, "", 32)}, 0, 1},
		{"0x011C index 0x0B location", 0x011C, 0x0B, []string{comp(11, id.Location, 32)}, 0, 1},
		{"0x011C index 6 does not exist", 0x011C, 6, nil, UDErrSZLUnavailable, 1},
		{"0x0131 index 1 communication", 0x0131, 1, []string{
			"0001" + "00f0" + "0008" + "00b71b00" + "0002dc6c" + "05f5e100" + strings.Repeat("00", 22),
		}, 0, 1},
		{"0x0131 index 3 consistent data = PDU", 0x0131, 3, []string{
			"0003" + "7ffc8301" + "00f0" + "0010" + "0001" + "0003" + strings.Repeat("00", 26),
		}, 0, 1},
		{"0x0232 index 4 protection", 0x0232, 4, []string{
			"0004" + "0001" + "0000" + "0001" + "0001" + "0002" + strings.Repeat("00", 28),
		}, 0, 1},
		{"unknown SZL-ID", 0x0123, 0, nil, UDErrSZLUnavailable, 1},
		{"0x0F11 header only", 0x0F11, 0, []string{}, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, errCode, frags := readSZL(t, c, tc.id, tc.index)
			if errCode != tc.wantErr {
				t.Fatalf("error code %#04x, want %#04x", errCode, tc.wantErr)
			}
			if frags != tc.frags {
				t.Errorf("%d fragments, want %d", frags, tc.frags)
			}
			if tc.wantErr != 0 {
				return
			}
			if tc.id&0x0F00 == 0x0F00 {
				if gid := binary.BigEndian.Uint16(data); gid != tc.id || len(data) != 8 || binary.BigEndian.Uint16(data[6:]) != 3 {
					t.Errorf("header-only list % x", data)
				}
				return
			}
			gid, gindex, recs := szlRecords(t, data)
			if gid != tc.id {
				t.Errorf("SZL-ID %#04x, want %#04x", gid, tc.id)
			}
			if tc.id&0x0F00 != 0x0F00 && gindex != tc.index {
				t.Errorf("index %#04x, want %#04x", gindex, tc.index)
			}
			if len(recs) != len(tc.want) {
				t.Fatalf("%d records, want %d", len(recs), len(tc.want))
			}
			for i, r := range recs {
				if got := hex.EncodeToString(r); got != tc.want[i] {
					t.Errorf("record %d\n got %s\nwant %s", i, got, tc.want[i])
				}
			}
		})
	}
	t.Run("0x0000 lists exactly the answered SZL-IDs", func(t *testing.T) {
		data, _, _ := readSZL(t, c, 0x0000, 0)
		_, _, recs := szlRecords(t, data)
		for _, r := range recs {
			sid := binary.BigEndian.Uint16(r)
			idx := uint16(0)
			switch sid {
			case 0x0111, 0x011C, 0x0131:
				idx = 1
			case 0x0132, 0x0232:
				idx = 4
			}
			if _, code, _ := readSZL(t, c, sid, idx); code != 0 {
				t.Errorf("listed SZL-ID %#04x answers %#04x", sid, code)
			}
		}
	})
}

// varReq builds an S7ANY item.
func varItem(area byte, db uint16, ts byte, count uint16, byteAddr, bit int) Item {
	return Item{Syntax: 0x10, TransportSize: ts, Count: count, DB: db, Area: area, BitAddress: uint32(byteAddr*8 + bit)}
}

func readVar(t testing.TB, c net.Conn, items ...Item) []byte {
	t.Helper()
	return job(t, c, Header{ROSCTR: ROSCTRJob, PDURef: 0x0300}, AppendVarItems(nil, FuncReadVar, items), nil)
}

func writeVar(t testing.TB, c net.Conn, items []Item, data []DataItem) []byte {
	t.Helper()
	return job(t, c, Header{ROSCTR: ROSCTRJob, PDURef: 0x0400}, AppendVarItems(nil, FuncWriteVar, items), AppendDataItems(nil, data))
}

func TestReadWriteAcrossSessions(t *testing.T) {
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)
	a, b := srv.Dial(t), srv.Dial(t)
	connect(t, a, 240)
	connect(t, b, 240)

	// Initial DB1 content: REAL 63.2 at DBD0.
	got := readVar(t, b, varItem(AreaDB, 1, TSReal, 1, 0, 0))
	if want := protocoltest.Unhex(t, "32030000030000020008000004 01 ff070004 427cccd0"); !bytes.Equal(got, want) {
		t.Fatalf("read DB1.DBD0\n got % x\nwant % x", got, want)
	}

	// Session a writes DB1.DBW10, M5.3 and Q0 (three items, odd length padding).
	resp := writeVar(t, a,
		[]Item{varItem(AreaDB, 1, TSByte, 3, 10, 0), varItem(AreaMerkers, 0, TSBit, 1, 5, 3), varItem(AreaOutputs, 0, TSWord, 1, 0, 0)},
		[]DataItem{{0, DTSByte, []byte{0xde, 0xad, 0xbe}}, {0, DTSBit, []byte{1}}, {0, DTSByte, []byte{0x12, 0x34}}})
	if want := protocoltest.Unhex(t, "320300000400000200030000 0503 ffffff"); !bytes.Equal(resp, want) {
		t.Fatalf("write\n got % x\nwant % x", resp, want)
	}

	// Session b sees it.
	got = readVar(t, b, varItem(AreaDB, 1, TSByte, 3, 10, 0), varItem(AreaMerkers, 0, TSBit, 1, 5, 3),
		varItem(AreaMerkers, 0, TSByte, 1, 5, 0), varItem(AreaOutputs, 0, TSInt, 1, 0, 0))
	want := AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: 0x0300}, []byte{FuncReadVar, 4}, AppendDataItems(nil, []DataItem{
		{RetSuccess, DTSByte, []byte{0xde, 0xad, 0xbe}},
		{RetSuccess, DTSBit, []byte{1}},
		{RetSuccess, DTSByte, []byte{0x08}},
		{RetSuccess, DTSInt, []byte{0x12, 0x34}},
	}))
	if !bytes.Equal(got, want) {
		t.Fatalf("read back\n got % x\nwant % x", got, want)
	}
	// Padding: item 1 (3 bytes) is followed by a fill byte.
	if !bytes.Contains(got, protocoltest.Unhex(t, "ff040018deadbe00ff030001")) {
		t.Errorf("odd item not padded: % x", got)
	}

	// Clearing the bit from session b is visible in a.
	writeVar(t, b, []Item{varItem(AreaMerkers, 0, TSBit, 1, 5, 3)}, []DataItem{{0, DTSBit, []byte{0}}})
	got = readVar(t, a, varItem(AreaMerkers, 0, TSByte, 1, 5, 0))
	if got[len(got)-1] != 0 {
		t.Errorf("M5 = %#x after clearing bit 3", got[len(got)-1])
	}

	evs := waitEvents(t, srv, func(evs []protocols.Event) bool {
		n := 0
		for _, e := range evs {
			if e.Op == "write_var" {
				n++
			}
		}
		return n == 4
	})
	for _, e := range evs {
		if e.Op == "write_var" && e.Area == "DB1" {
			if e.Address != 10 || e.Quantity != 3 || !bytes.Equal(e.Data, []byte{0xde, 0xad, 0xbe}) || !e.Write || e.Exception != 0 || e.Code != FuncWriteVar || e.Protocol != Name {
				t.Errorf("DB1 write event %+v", e)
			}
		}
		if e.Op == "write_var" && e.Area == "M" && e.Detail["bit"] != "3" {
			t.Errorf("M write event %+v", e)
		}
	}
}

func TestReadWriteErrors(t *testing.T) {
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)
	c := srv.Dial(t)
	connect(t, c, 240)
	readTests := []struct {
		name string
		item Item
		want byte
	}{
		{"DB that does not exist", varItem(AreaDB, 99, TSByte, 1, 0, 0), RetObjectNotExist},
		{"past the end of DB1", varItem(AreaDB, 1, TSByte, 2, 127, 0), RetAddressOutOfRange},
		{"past the end of M", varItem(AreaMerkers, 0, TSByte, 1, 8192, 0), RetAddressOutOfRange},
		{"unknown transport size", varItem(AreaDB, 1, 0x13, 1, 0, 0), RetInvalidDataType},
		{"timer transport size on DB", varItem(AreaDB, 1, TSTimer, 1, 0, 0), RetInvalidDataType},
		{"counters area", varItem(AreaCounter, 0, TSByte, 1, 0, 0), RetObjectNotExist},
		{"two bits", varItem(AreaMerkers, 0, TSBit, 2, 0, 0), RetAddressOutOfRange},
		{"byte access with bit offset", varItem(AreaMerkers, 0, TSByte, 1, 0, 3), RetAddressOutOfRange},
		{"zero count", varItem(AreaMerkers, 0, TSByte, 0, 0, 0), RetAddressOutOfRange},
	}
	for _, tc := range readTests {
		t.Run("read "+tc.name, func(t *testing.T) {
			got := readVar(t, c, tc.item)
			want := AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: 0x0300}, []byte{FuncReadVar, 1}, []byte{tc.want, 0, 0, 0})
			if !bytes.Equal(got, want) {
				t.Fatalf("\n got % x\nwant % x", got, want)
			}
		})
	}
	writeTests := []struct {
		name string
		item Item
		data DataItem
		want byte
	}{
		{"DB that does not exist", varItem(AreaDB, 42, TSByte, 1, 0, 0), DataItem{0, DTSByte, []byte{1}}, RetObjectNotExist},
		{"length mismatch", varItem(AreaDB, 1, TSByte, 4, 0, 0), DataItem{0, DTSByte, []byte{1, 2}}, RetDataTypeMismatch},
		{"bit data for a byte item", varItem(AreaDB, 1, TSByte, 1, 0, 0), DataItem{0, DTSBit, []byte{1}}, RetDataTypeMismatch},
		{"out of range", varItem(AreaInputs, 0, TSByte, 2, 1023, 0), DataItem{0, DTSByte, []byte{1, 2}}, RetAddressOutOfRange},
	}
	for _, tc := range writeTests {
		t.Run("write "+tc.name, func(t *testing.T) {
			got := writeVar(t, c, []Item{tc.item}, []DataItem{tc.data})
			want := AppendPDU(nil, Header{ROSCTR: ROSCTRAckData, PDURef: 0x0400}, []byte{FuncWriteVar, 1}, []byte{tc.want})
			if !bytes.Equal(got, want) {
				t.Fatalf("\n got % x\nwant % x", got, want)
			}
		})
	}
	t.Run("answer larger than the PDU: Ack 0x8500", func(t *testing.T) {
		got := readVar(t, c, varItem(AreaMerkers, 0, TSByte, 230, 0, 0))
		if want := protocoltest.Unhex(t, "320200000300000000008500"); !bytes.Equal(got, want) {
			t.Fatalf("\n got % x\nwant % x", got, want)
		}
	})
	t.Run("request larger than the PDU: Ack 0x8104", func(t *testing.T) {
		data := make([]byte, 236)
		got := writeVar(t, c, []Item{varItem(AreaMerkers, 0, TSByte, 236, 0, 0)}, []DataItem{{0, DTSByte, data}})
		if want := protocoltest.Unhex(t, "320200000400000000008104"); !bytes.Equal(got, want) {
			t.Fatalf("\n got % x\nwant % x", got, want)
		}
	})
	t.Run("21 items: Ack 0x8104", func(t *testing.T) {
		items := make([]Item, 21)
		for i := range items {
			items[i] = varItem(AreaMerkers, 0, TSByte, 1, i, 0)
		}
		h := newHandler(t, func(c *Config) { c.MaxPDUSize = 480 })
		srv := protocoltest.ServeTCP(t, "", h)
		c := srv.Dial(t)
		connect(t, c, 480)
		got := readVar(t, c, items...)
		if want := protocoltest.Unhex(t, "320200000300000000008104"); !bytes.Equal(got, want) {
			t.Fatalf("\n got % x\nwant % x", got, want)
		}
	})
	evs := waitEvents(t, srv, func(evs []protocols.Event) bool { return len(evs) > 10 })
	for _, e := range evs {
		if e.Op == "read_var" && e.Area == "DB99" && e.Exception != RetObjectNotExist {
			t.Errorf("DB99 event %+v", e)
		}
	}
}

func stopJob() []byte { return AppendPLCStop(nil, []byte("P_PROGRAM")) }
func startJob() []byte {
	return AppendPIService(nil, nil, []byte("P_PROGRAM"))
}

func cpuMode(t testing.TB, c net.Conn) byte {
	t.Helper()
	data, code, _ := readSZL(t, c, 0x0424, 0)
	if code != 0 {
		t.Fatalf("SZL 0x0424: %#x", code)
	}
	_, _, recs := szlRecords(t, data)
	if len(recs) != 1 || len(recs[0]) != 20 {
		t.Fatalf("SZL 0x0424 records % x", recs)
	}
	return recs[0][3]
}

func TestStopStart(t *testing.T) {
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)
	a, b := srv.Dial(t), srv.Dial(t)
	connect(t, a, 240)
	connect(t, b, 240)
	if m := cpuMode(t, b); m != 0x08 {
		t.Fatalf("initial mode %#x, want RUN 0x08", m)
	}
	steps := []struct {
		name   string
		params []byte
		want   string
		mode   byte
	}{
		{"stop", stopJob(), "32030000050000010000 0000 29", 0x04},
		{"stop when stopped", stopJob(), "32030000050000020000 8404 2907", 0x04},
		{"warm start", startJob(), "32030000050000010000 0000 28", 0x08},
		{"start when running", startJob(), "32030000050000020000 8404 2803", 0x08},
		{"cold start when running", AppendPIService(nil, []byte("C "), []byte("P_PROGRAM")), "32030000050000020000 8404 2803", 0x08},
		{"malformed stop (bare function code)", []byte{0x29}, "320200000500000000008104", 0x08},
		{"stop with another service name", AppendPLCStop(nil, []byte("P_PROGRAX")), "320200000500000000008104", 0x08},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got := job(t, a, Header{ROSCTR: ROSCTRJob, PDURef: 0x0500}, s.params, nil)
			if want := protocoltest.Unhex(t, strings.ReplaceAll(s.want, " ", "")); !bytes.Equal(got, want) {
				t.Fatalf("\n got % x\nwant % x", got, want)
			}
			// The mode is the device's: the other session sees it.
			if m := cpuMode(t, b); m != s.mode {
				t.Fatalf("mode %#x, want %#x", m, s.mode)
			}
			// Protection record follows the mode too.
			data, _, _ := readSZL(t, b, 0x0232, 4)
			wantSel := byte(1)
			if s.mode == 0x04 {
				wantSel = 3
			}
			if data[8+9] != wantSel {
				t.Errorf("mode selector %d, want %d", data[8+9], wantSel)
			}
		})
	}
	evs := waitEvents(t, srv, func(evs []protocols.Event) bool {
		_, ok := findEvent(evs, "plc_start")
		return ok
	})
	stop, _ := findEvent(evs, "plc_stop")
	if stop.Code != FuncPLCStop || !stop.Write || stop.Exception != 0 || stop.Detail["service"] != "P_PROGRAM" {
		t.Errorf("stop event %+v", stop)
	}
}

func TestInitialStopState(t *testing.T) {
	h := newHandler(t, func(c *Config) { c.CPUState = "stop" })
	srv := protocoltest.ServeTCP(t, "", h)
	c := srv.Dial(t)
	connect(t, c, 240)
	if m := cpuMode(t, c); m != 0x04 {
		t.Fatalf("mode %#x, want STOP", m)
	}
}

func TestUnsupportedAndMalformed(t *testing.T) {
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)
	c := srv.Dial(t)
	connect(t, c, 240)
	tests := []struct {
		name string
		pdu  string
		want string
	}{
		{"start upload", "3201000006000012 0000 1d0000000000000009 5f3041303030303031", "320200000600000000008104"},
		{"request download", "3201000006010002 0000 1a00", "320200000601000000008104"},
		{"unknown function 0x77", "3201000006020001 0000 77", "320200000602000000008104"},
		{"empty parameter", "3201000006030000 0000", "320200000603000000008104"},
		{"header lengths do not match", "3201000006040009 0000 f000000100010001e0", "320200000604000000008104"},
		{"setup with short parameter", "3201000006050002 0000 f000", "320200000605000000008104"},
		{"read var with trailing data", "320100000606000e 0001 0401120a10020001000184000000 00", "320200000606000000008104"},
		{"userdata time group set clock", "3207000006070008 0004 0001120411470200 ff090000", "320700000607000c 0004 000112081287020000008104 0a000000"},
		{"userdata block list", "3207000006080008 0004 0001120411430100 0a000000", "320700000608000c0004000112081283010000008104 0a000000"},
		{"userdata with bad head", "3207000006090008 0004 0002120411440100 ff090000", "320200000609000000008104"},
		{"ack sent to the server is ignored", "3202000006100000 0000 0000", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			send(t, c, AppendDataPackets(nil, protocoltest.Unhex(t, tc.pdu), 1024))
			if tc.want == "" {
				// Nothing comes back; the connection still works.
				data, code, _ := readSZL(t, c, 0x0424, 0)
				if code != 0 || len(data) == 0 {
					t.Fatalf("session broken after ignored PDU")
				}
				return
			}
			got := readPDU(t, c)
			if want := protocoltest.Unhex(t, strings.ReplaceAll(tc.want, " ", "")); !bytes.Equal(got, want) {
				t.Fatalf("\n got % x\nwant % x", got, want)
			}
		})
	}
	t.Run("read clock", func(t *testing.T) {
		p := AppendUserdataParam(nil, UserdataParam{Method: UDMethodRequest, Type: UDTypeRequest, Group: GroupTime, SubFunc: SubReadClock})
		got := job(t, c, Header{ROSCTR: ROSCTRUserdata, PDURef: 0x0700}, p, []byte{0x0a, 0, 0, 0})
		_, _, data, err := ParseHeader(got)
		if err != nil || len(data) != 14 || data[0] != RetSuccess || data[5] != 0x20 {
			t.Fatalf("clock answer % x: %v", got, err)
		}
	})
	t.Run("S7comm-plus closes the connection", func(t *testing.T) {
		c := srv.Dial(t)
		connect(t, c, 240)
		send(t, c, AppendDataPackets(nil, protocoltest.Unhex(t, "72010012310000050000000000300000000072010000"), 1024))
		expectClosed(t, c)
	})
	t.Run("job before setup communication", func(t *testing.T) {
		c := srv.Dial(t)
		send(t, c, protocoltest.Unhex(t, hexStandardCR1))
		readTPKT(t, c)
		got := readVar(t, c, varItem(AreaDB, 1, TSByte, 1, 0, 0))
		if want := protocoltest.Unhex(t, "320200000300000000008104"); !bytes.Equal(got, want) {
			t.Fatalf("\n got % x\nwant % x", got, want)
		}
	})
	t.Run("DR is confirmed and closes", func(t *testing.T) {
		c := srv.Dial(t)
		send(t, c, protocoltest.Unhex(t, hexStandardCR1))
		cc := readTPKT(t, c)
		send(t, c, AppendTPKT(nil, AppendDisconnectRequest(nil, binary.BigEndian.Uint16(cc[8:10]), 4, ReasonNormal)))
		dc := readTPKT(t, c)
		if dc[5] != TPDUDisconnConfirm || !bytes.Equal(dc[6:8], []byte{0, 4}) {
			t.Fatalf("DC % x", dc)
		}
		expectClosed(t, c)
	})
	t.Run("bad TPKT version closes", func(t *testing.T) {
		c := srv.Dial(t)
		send(t, c, protocoltest.Unhex(t, "0400001611e00000000400c1020100c2020101c0010a"))
		expectClosed(t, c)
	})
	t.Run("unknown TPDU type gets an ER", func(t *testing.T) {
		c := srv.Dial(t)
		connect(t, c, 240)
		send(t, c, protocoltest.Unhex(t, "0300000803500004")) // LI 3, code 0x50 (RJ, not in class 0)
		got := readTPKT(t, c)
		if got[5] != TPDUError || got[8] != RejectInvalidTPDUType {
			t.Fatalf("answer % x", got)
		}
	})
}

// TestFraming covers TPKT boundaries: several TPKTs in one segment, one TPKT in many,
// and a PDU in several DT TPDUs.
func TestFraming(t *testing.T) {
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)

	t.Run("CR, setup and SZL in one segment", func(t *testing.T) {
		c := srv.Dial(t)
		send(t, c, protocoltest.Unhex(t, hexCRSlot0+hexSetup+hexSZL0011))
		if cc := readTPKT(t, c); cc[5] != TPDUConnConfirm {
			t.Fatalf("CC % x", cc)
		}
		if s := readPDU(t, c); s[1] != ROSCTRAckData {
			t.Fatalf("setup % x", s)
		}
		if s := readPDU(t, c); s[1] != ROSCTRUserdata {
			t.Fatalf("szl % x", s)
		}
	})
	t.Run("one TPKT byte by byte", func(t *testing.T) {
		c := srv.Dial(t)
		for _, b := range protocoltest.Unhex(t, hexCRSlot0) {
			send(t, c, []byte{b})
			time.Sleep(2 * time.Millisecond)
		}
		if cc := readTPKT(t, c); cc[5] != TPDUConnConfirm {
			t.Fatalf("CC % x", cc)
		}
	})
	t.Run("PDU in DT TPDUs of 128 octets", func(t *testing.T) {
		c := srv.Dial(t)
		connect(t, c, 240)
		items := []Item{varItem(AreaDB, 3, TSByte, 100, 0, 0)}
		pdu := AppendPDU(nil, Header{ROSCTR: ROSCTRJob, PDURef: 9}, AppendVarItems(nil, FuncWriteVar, items), AppendDataItems(nil, []DataItem{{0, DTSByte, bytes.Repeat([]byte{7}, 100)}}))
		send(t, c, AppendDataPackets(nil, pdu, 32))
		if got := readPDU(t, c); !bytes.Equal(got[len(got)-1:], []byte{RetSuccess}) {
			t.Fatalf("write % x", got)
		}
	})
	t.Run("answers are segmented to a small TPDU size", func(t *testing.T) {
		c := srv.Dial(t)
		send(t, c, protocoltest.Unhex(t, "030000130ee00000004200c1020100c2020101")) // no TPDU size: 128
		readTPKT(t, c)
		send(t, c, protocoltest.Unhex(t, hexSetup))
		readPDU(t, c)
		send(t, c, protocoltest.Unhex(t, hexSZL001C))
		n := 0
		var pdu []byte
		for {
			p := readTPKT(t, c)
			if len(p) > 4+128 {
				t.Fatalf("TPKT of %d bytes exceeds TPDU 128", len(p))
			}
			n++
			pdu = append(pdu, p[7:]...)
			if p[6]&0x80 != 0 {
				break
			}
		}
		if n < 2 || len(pdu) != 240 {
			t.Fatalf("%d TPDUs, PDU of %d bytes", n, len(pdu))
		}
	})
}

func TestHostileInput(t *testing.T) {
	h := newHandler(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	srv := protocoltest.ServeTCP(t, "", h)
	tests := []struct {
		name  string
		write func(c net.Conn)
	}{
		{"EOF in the TPKT header", func(c net.Conn) { c.Write([]byte{3, 0}) }},
		{"EOF in the TPKT body", func(c net.Conn) { c.Write(protocoltest.Unhex(t, hexCRSlot0)[:10]) }},
		{"EOF after connect", func(c net.Conn) { c.Write(protocoltest.Unhex(t, hexCRSlot0)) }},
		{"TPKT length below minimum", func(c net.Conn) { c.Write([]byte{3, 0, 0, 4}) }},
		{"TPKT length too large", func(c net.Conn) { c.Write([]byte{3, 0, 0xff, 0xff, 0x02, 0xf0, 0x80}) }},
		{"length indicator beyond the TPDU", func(c net.Conn) { c.Write(protocoltest.Unhex(t, "0300000720e000")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := srv.Dial(t)
			tc.write(c)
			if tcp, ok := c.(*net.TCPConn); ok {
				tcp.CloseWrite()
			}
			start := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, c)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("server took %v to close", d)
			}
		})
	}
	t.Run("idle session times out", func(t *testing.T) {
		c := srv.Dial(t)
		start := time.Now()
		expectClosed(t, c)
		if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
			t.Fatalf("closed after %v", d)
		}
	})
	t.Run("slow sender cannot stretch one TPKT", func(t *testing.T) {
		c := srv.Dial(t)
		cr := protocoltest.Unhex(t, hexCRSlot0)
		start := time.Now()
		for i := 0; i < len(cr); i++ {
			if _, err := c.Write(cr[i : i+1]); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		expectClosed(t, c)
		if d := time.Since(start); d > 2*time.Second+300*time.Millisecond {
			t.Fatalf("slow TPKT kept the session %v", d)
		}
	})
	for _, err := range srv.Errors() {
		t.Errorf("handler returned %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"pdu too small", func(c *Config) { c.MaxPDUSize = 100 }},
		{"tpdu not a power of two", func(c *Config) { c.MaxTPDUSize = 1000 }},
		{"bad cpu state", func(c *Config) { c.CPUState = "halt" }},
		{"duplicate DB", func(c *Config) { c.DataBlocks = append(c.DataBlocks, DataBlock{Number: 1, Size: 4}) }},
		{"DB init larger than DB", func(c *Config) { c.DataBlocks = []DataBlock{{Number: 5, Size: 1, Init: "0102"}} }},
		{"DB init not hex", func(c *Config) { c.DataBlocks = []DataBlock{{Number: 5, Size: 4, Init: "zz"}} }},
		{"no slots", func(c *Config) { c.Slots = nil }},
		{"zero idle timeout", func(c *Config) { c.IdleTimeout = 0 }},
		{"huge area", func(c *Config) { c.Merkers = 1 << 20 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := NewConfig()
			tc.mutate(cfg)
			_, err := New(protocoltest.Env(t, testIdentity()), cfg)
			if !errors.Is(err, protocols.ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
	protocoltest.CheckSpec(t, Spec(), protocols.Spec{Name: "s7comm", Transport: protocols.TCP, Port: 102, Service: "iso-tsap"},
		protocoltest.Env(t, testIdentity()))
}

// TestNmapS7Info drives nmap's s7-info script against the handler. nmap first asks
// for slot 2, which an S7-1200 refuses, then retries slot 0.
func TestNmapS7Info(t *testing.T) {
	nmap := testenv.LookPath(t, "nmap")
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)
	port := strconv.Itoa(int(srv.Addr.Port()))
	out, err := exec.Command(nmap, "-Pn", "-n", "-sT", "-p", port, "--script", "+s7-info", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("nmap: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	id := testIdentity()
	want := map[string]string{
		"Module":               id.OrderNumber,
		"Basic Hardware":       id.OrderNumber,
		"Version":              "4.5.2",
		"System Name":          id.ModuleName,
		"Module Type":          id.Model,
		"Serial Number":        id.Serial,
		"Plant Identification": id.PlantID,
		"Copyright":            id.Copyright,
	}
	for k, v := range want {
		re := regexp.MustCompile(`(?m)^\|[ _]+` + regexp.QuoteMeta(k) + `: (.*)$`)
		m := re.FindSubmatch(out)
		if m == nil {
			t.Errorf("nmap output lacks %q", k)
			continue
		}
		if got := strings.TrimSpace(string(m[1])); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	evs := waitEvents(t, srv, func(evs []protocols.Event) bool {
		n := 0
		for _, e := range evs {
			if e.Op == "read_szl" {
				n++
			}
		}
		return n >= 3
	})
	refused := false
	for _, e := range evs {
		if e.Op == "cotp_connect" && e.Exception == ReasonNormal && e.Detail["tsap_dst"] == "0102" {
			refused = true
		}
	}
	if !refused {
		t.Errorf("slot 2 connect not refused: %+v", evs)
	}
}
