package capture

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// ngFile is a pcapng file read back: its section, interface and packets.
type ngFile struct {
	section pcapgo.NgSectionInfo
	intf    pcapgo.NgInterface
	pkts    []ngPacket
}

type ngPacket struct {
	data []byte
	ci   gopacket.CaptureInfo
	opts pcapgo.NgPacketOptions
}

func readNgFile(t *testing.T, data []byte) ngFile {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var f ngFile
	for {
		b, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f.pkts = append(f.pkts, ngPacket{b, ci, opts})
	}
	f.section = r.SectionInfo()
	if f.intf, err = r.Interface(0); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestAnnotatePCAPNG(t *testing.T) {
	filter, err := SessionFilter(Tuple{ProtoTCP, mustAddrPort("192.0.2.10:40000"), mustAddrPort("10.0.0.2:502")})
	if err != nil {
		t.Fatal(err)
	}
	w, err := newNgPartWriter(partMeta{id: "s1", part: 1, iface: "eth0", snaplen: 262144, filter: filter, bytecode: filter.Bytecode()})
	if err != nil {
		t.Fatal(err)
	}
	cv := newConv(t, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	pkts := append(cv.handshake(), cv.exchange(2)...) // SYN, SYN-ACK, ACK, then request/response twice
	for i, p := range pkts {
		in := i != 1 && (i < 3 || (i-3)%2 == 0) // the client's packets
		if err := w.write(p.Time, p.Data, p.Length, in); err != nil {
			t.Fatal(err)
		}
	}
	data, err := w.finish(&partStats{start: pkts[0].Time, end: pkts[len(pkts)-1].Time, drops: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := AnnotatePCAPNG(data, nil); !bytes.Equal(got, data) {
		t.Fatal("no notes: the file changed")
	}

	req1, req2 := pkts[3], pkts[5] // the two requests
	notes := []Note{
		{Time: t0.Add(-time.Second), Text: "before any packet"},
		{Time: req1.Time.Add(time.Microsecond), Text: "modbus read 1"},
		{Time: pkts[4].Time.Add(time.Microsecond), Text: "after the response: still the request's"},
		{Time: req2.Time.Add(time.Millisecond), Text: "modbus read 2 " + strings.Repeat("é", 600)},
	}
	out, err := AnnotatePCAPNG(data, notes)
	if err != nil {
		t.Fatal(err)
	}
	before, after := readNgFile(t, data), readNgFile(t, out)
	if !reflect.DeepEqual(before.section, after.section) || !reflect.DeepEqual(before.intf, after.intf) {
		t.Errorf("section or interface changed:\n%+v\n%+v\n%+v\n%+v", before.section, after.section, before.intf, after.intf)
	}
	if after.intf.Filter != filter.Expr || after.intf.Statistics.PacketsDropped != 3 {
		t.Errorf("interface filter %q, drops %d", after.intf.Filter, after.intf.Statistics.PacketsDropped)
	}
	want := map[int][]string{0: {"before any packet"}, 3: {"modbus read 1", "after the response: still the request's"}, 5: nil}
	for i := range pkts {
		b, a := before.pkts[i], after.pkts[i]
		if !bytes.Equal(a.data, b.data) || !reflect.DeepEqual(a.ci, b.ci) || !reflect.DeepEqual(a.opts.Flags, b.opts.Flags) {
			t.Errorf("packet %d changed", i)
		}
		if i == 5 {
			if len(a.opts.Comments) != 1 || !strings.HasPrefix(a.opts.Comments[0], "modbus read 2 é") || len(a.opts.Comments[0]) > maxNoteBytes {
				t.Errorf("packet 5 comments: %d, first %d bytes", len(a.opts.Comments), len(a.opts.Comments[0]))
			}
			continue
		}
		if !reflect.DeepEqual(a.opts.Comments, want[i]) {
			t.Errorf("packet %d comments %q, want %q", i, a.opts.Comments, want[i])
		}
	}
}
