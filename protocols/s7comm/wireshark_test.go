package s7comm

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// exchange is one client request and the server's whole answer.
type exchange struct{ req, resp []byte }

// converse sends each request and collects the answer: one TPKT for COTP control
// TPDUs, DT TPDUs up to EOT for S7 PDUs.
func converse(t *testing.T, c net.Conn, reqs ...[]byte) []exchange {
	t.Helper()
	var out []exchange
	for _, r := range reqs {
		send(t, c, r)
		var resp []byte
		for {
			p := readTPKT(t, c)
			resp = append(resp, p...)
			if p[5] != TPDUData || p[6]&0x80 != 0 {
				break
			}
		}
		out = append(out, exchange{r, resp})
	}
	return out
}

// writePcap turns exchanges into a pcap with text2pcap (client port 40000, server 102).
func writePcap(t *testing.T, text2pcap string, ex []exchange) string {
	t.Helper()
	var sb strings.Builder
	dump := func(dir string, b []byte) {
		fmt.Fprintf(&sb, "%s 000000", dir)
		for _, x := range b {
			fmt.Fprintf(&sb, " %02x", x)
		}
		sb.WriteString("\n")
	}
	for _, e := range ex {
		dump("I", e.req)
		dump("O", e.resp)
	}
	dir := t.TempDir()
	txt, pcap := filepath.Join(dir, "s7.txt"), filepath.Join(dir, "s7.pcap")
	if err := os.WriteFile(txt, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(text2pcap, "-q", "-D", "-T", "40000,102", txt, pcap).CombinedOutput(); err != nil {
		t.Fatalf("text2pcap: %v\n%s", err, out)
	}
	return pcap
}

func TestWiresharkDissector(t *testing.T) {
	testenv.LookPath(t, "tshark")
	text2pcap := testenv.LookPath(t, "text2pcap")
	h := newHandler(t, nil)
	srv := protocoltest.ServeTCP(t, "", h)
	c := srv.Dial(t)
	pdu := func(ref uint16, rosctr byte, params, data []byte) []byte {
		return AppendDataPackets(nil, AppendPDU(nil, Header{ROSCTR: rosctr, PDURef: ref}, params, data), 1024)
	}
	szl := func(ref, id, index uint16) []byte {
		h, p, d := szlReq(id, index)
		return pdu(ref, h.ROSCTR, p, d)
	}
	items := []Item{varItem(AreaDB, 1, TSReal, 1, 0, 0), varItem(AreaMerkers, 0, TSBit, 1, 5, 3), varItem(AreaDB, 9, TSByte, 1, 0, 0)}
	ex := converse(t, c,
		protocoltest.Unhex(t, hexStandardCR1),
		protocoltest.Unhex(t, hexSetup),
		protocoltest.Unhex(t, hexSZL0011),
		szl(2, 0x0111, 7),
		protocoltest.Unhex(t, hexSZL001C),
	)
	// Follow-up for the second fragment of SZL 0x001C.
	_, params, _, err := ParseHeader(ex[len(ex)-1].resp[7:])
	if err != nil {
		t.Fatal(err)
	}
	u, _ := ParseUserdataParam(params)
	ex = append(ex, converse(t, c,
		pdu(3, ROSCTRUserdata, AppendUserdataParam(nil, UserdataParam{Method: UDMethodResponse, Type: UDTypeRequest, Group: GroupCPU, SubFunc: SubReadSZL, Seq: u.Seq, DURN: u.DURN, Long: true}), []byte{0x0a, 0, 0, 0}),
		szl(4, 0x0131, 1),
		szl(5, 0x0232, 4),
		szl(6, 0x0424, 0),
		szl(7, 0x0123, 0),
		pdu(8, ROSCTRJob, AppendVarItems(nil, FuncWriteVar, items[:2]), AppendDataItems(nil, []DataItem{{0, DTSReal, []byte{0x42, 0x28, 0, 0}}, {0, DTSBit, []byte{1}}})),
		pdu(9, ROSCTRJob, AppendVarItems(nil, FuncReadVar, items), nil),
		pdu(10, ROSCTRJob, stopJob(), nil),
		pdu(11, ROSCTRJob, stopJob(), nil),
		pdu(12, ROSCTRJob, startJob(), nil),
		pdu(13, ROSCTRJob, []byte{FuncStartUpload}, nil),
	)...)
	pcap := writePcap(t, text2pcap, ex)
	out := protocoltest.Tshark(t, pcap, "-o", "tcp.desegment_tcp_streams:TRUE", "-O", "s7comm", "-V")
	id := testIdentity()
	for _, want := range []string{
		"MlfB (Order number of the module): " + id.OrderNumber,
		"Name (Name of the PLC): " + id.ModuleName,
		"Name (Name of the module): " + id.Model,
		"Tag (Plant identification of the module): " + id.PlantID,
		"Copyright: " + id.Copyright,
		"Serialn (Serialnumber of the module): " + id.Serial,
		"Cputypname (Module type namee): " + id.Model,
		"Loc_id (Location designation): " + id.Location,
		"[Reassembled S7COMM length: 348]",
		"bzu-id: 0x08, Requested mode: RUN",
		"Error code: Information function unavailable (0xd401)",
		"[Error code: S7 protocol: The function cannot be performed (0x8404)]",
		"[Error code: This service is not implemented on the module or a frame error was reported (0x8104)]",
		"Item [3]: (Object does not exist)",
		"Data: 42280000",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Wireshark's decode lacks %q", want)
		}
	}
	// No answer of the device is malformed or raises expert information.
	protocoltest.TsharkClean(t, pcap, "tcp.srcport == 102 && (_ws.malformed || _ws.expert)")
	if t.Failed() {
		t.Logf("%s", out)
	}
}
