package tftp

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// TestWireshark has Wireshark's TFTP dissector decode transfers answered from port
// 69: a read with option negotiation, a netascii read, a write, refusals; no frame is
// malformed and every field is what the handler meant.
func TestWireshark(t *testing.T) {
	h := newTestHandler(t, testConfig())
	var pcap protocoltest.Pcap
	send := func(f *flow, pkt []byte) {
		t.Helper()
		port := f.sess.Remote().Port()
		pcap.UDP(port, 69, pkt)
		if out := f.send(pkt); out != nil {
			pcap.UDP(69, port, out)
		}
	}
	r := newFlow(t, h)
	send(r, rrq("t/twenty.bin", "octet", "blksize", "8", "tsize", "0"))
	for b := uint16(0); b <= 3; b++ {
		send(r, ack(b))
	}
	a := newFlow(t, h)
	send(a, rrq("t/text.txt", "netascii"))
	send(a, ack(1))
	w := newFlow(t, h)
	send(w, wrq("up/x.bin", "octet"))
	send(w, data(1, strings.Repeat("w", 512)))
	send(w, data(2, "end"))
	e := newFlow(t, h)
	send(e, rrq("nope.bin", "octet"))
	send(e, wrq("sys/version.txt", "octet"))
	send(e, ack(9))

	path := pcap.Write(t, "tftp.pcap")
	protocoltest.TsharkClean(t, path, protocoltest.TsharkBad)
	out := string(protocoltest.Tshark(t, path, "-T", "fields", "-E", "separator=,", "-e", "udp.srcport", "-e", "tftp.opcode",
		"-e", "tftp.block", "-e", "tftp.error.code", "-e", "tftp.destination_file"))
	got := strings.Split(strings.TrimSpace(out), "\n")
	// Wireshark ties every answer from port 69 to its request: it names the file of
	// the transfer on each packet.
	rp, ap, wp, ep := r.sess.Remote().Port(), a.sess.Remote().Port(), w.sess.Remote().Port(), e.sess.Remote().Port()
	line := func(port uint16, rest string) string { return fmt.Sprintf("%d,%s", port, rest) }
	want := []string{
		line(rp, "1,,,"), line(69, "6,,,t/twenty.bin"),
		line(rp, "4,0,,t/twenty.bin"), line(69, "3,1,,t/twenty.bin"), line(rp, "4,1,,t/twenty.bin"), line(69, "3,2,,t/twenty.bin"),
		line(rp, "4,2,,t/twenty.bin"), line(69, "3,3,,t/twenty.bin"), line(rp, "4,3,,t/twenty.bin"),
		line(ap, "1,,,"), line(69, "3,1,,t/text.txt"), line(ap, "4,1,,t/text.txt"),
		line(wp, "2,,,up/x.bin"), line(69, "4,0,,up/x.bin"), line(wp, "3,1,,up/x.bin"), line(69, "4,1,,up/x.bin"),
		line(wp, "3,2,,up/x.bin"), line(69, "4,2,,up/x.bin"),
		line(ep, "1,,,"), line(69, "5,,1,nope.bin"), line(ep, "2,,,sys/version.txt"), line(69, "5,,2,sys/version.txt"),
		line(ep, "4,9,,sys/version.txt"), line(69, "5,,5,sys/version.txt"),
	}
	if len(got) != len(want) {
		t.Fatalf("%d frames, want %d:\n%s", len(got), len(want), out)
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("frame %d: %q, want %q", i+1, got[i], w)
		}
	}
	if files := string(protocoltest.Tshark(t, path, "-Y", "tftp.opcode <= 2", "-T", "fields", "-e", "tftp.source_file", "-e", "tftp.destination_file")); strings.Fields(files)[0] != "t/twenty.bin" {
		t.Errorf("request files: %q", files)
	}
}
