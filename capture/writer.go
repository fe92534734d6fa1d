package capture

import (
	"bytes"
	"fmt"
	"runtime"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Output formats and their media types.
const (
	FormatPCAP   = "pcap"
	FormatPCAPNG = "pcapng"

	MimePCAP   = "application/vnd.tcpdump.pcap"
	MimePCAPNG = "application/x-pcapng"
)

// partWriter serializes one part of a session into memory.
type partWriter interface {
	// write appends one frame; inbound is client -> sensor.
	write(ts time.Time, data []byte, wire int, inbound bool) error
	// size is the number of bytes the part's file has so far.
	size() int
	// overhead is the memory the writer holds besides the file's bytes.
	overhead() int
	// recordSize is what write adds for a frame of n captured bytes.
	recordSize(n int) int
	// finish completes the file and returns its bytes.
	finish(st *partStats) ([]byte, error)
}

// partMeta is what a part's file header records.
type partMeta struct {
	id       string
	part     int
	iface    string
	snaplen  int
	filter   Filter
	bytecode string
}

func newPartWriter(format string, m partMeta) (partWriter, error) {
	if format == FormatPCAPNG {
		return newNgPartWriter(m)
	}
	return newPcapPartWriter(m.snaplen)
}

// pcapPartWriter writes classic pcap: nanosecond timestamps, LINKTYPE_ETHERNET.
type pcapPartWriter struct {
	buf bytes.Buffer
	w   *pcapgo.Writer
}

func newPcapPartWriter(snaplen int) (*pcapPartWriter, error) {
	pw := &pcapPartWriter{}
	pw.w = pcapgo.NewWriterNanos(&pw.buf)
	if err := pw.w.WriteFileHeader(uint32(snaplen), layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("capture: pcap header: %w", err)
	}
	return pw, nil
}

func (pw *pcapPartWriter) write(ts time.Time, data []byte, wire int, _ bool) error {
	return pw.w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: wire}, data)
}

func (pw *pcapPartWriter) size() int { return pw.buf.Len() }

func (pw *pcapPartWriter) overhead() int { return 0 }

func (pw *pcapPartWriter) recordSize(n int) int { return 16 + n }

func (pw *pcapPartWriter) finish(*partStats) ([]byte, error) { return pw.buf.Bytes(), nil }

// ngPartWriter writes pcapng: the section header's comment names the session, the
// interface block carries the session's filter expression (if_filter) and bytecode
// (comment), every packet its direction, and a closing statistics block the kernel
// drops seen during the part.
type ngPartWriter struct {
	buf           bytes.Buffer
	w             *pcapgo.NgWriter
	n             int // bytes written, including what the NgWriter still buffers
	in, out       pcapgo.NgPacketOptions
	inFlag, outFl pcapgo.NgEpbFlags
}

// ngEPBOverhead is an enhanced packet block without data: 28 bytes of header, the
// 4-byte trailer, and the flags option (4 header + 4 value + 4 end of options).
const ngEPBOverhead = 28 + 4 + 12

func newNgPartWriter(m partMeta) (*ngPartWriter, error) {
	nw := &ngPartWriter{}
	nw.inFlag.Direction = pcapgo.NgEpbFlagDirectionInbound
	nw.outFl.Direction = pcapgo.NgEpbFlagDirectionOutbound
	nw.in.Flags, nw.out.Flags = &nw.inFlag, &nw.outFl
	intf := pcapgo.NgInterface{
		Name:                m.iface,
		Comment:             "session BPF (tcpdump -ddd):\n" + m.bytecode,
		Filter:              m.filter.Expr,
		OS:                  runtime.GOOS,
		LinkType:            layers.LinkTypeEthernet,
		TimestampResolution: 9,
		SnapLength:          uint32(m.snaplen),
	}
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          runtime.GOOS,
		Application: "pcapot",
		Comment:     fmt.Sprintf("pcapot session %s part %d", m.id, m.part),
	}}
	w, err := pcapgo.NewNgWriterInterface(&nw.buf, intf, opts)
	if err != nil {
		return nil, fmt.Errorf("capture: pcapng header: %w", err)
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("capture: pcapng header: %w", err)
	}
	nw.w, nw.n = w, nw.buf.Len()
	return nw, nil
}

func (nw *ngPartWriter) write(ts time.Time, data []byte, wire int, inbound bool) error {
	opts := nw.out
	if inbound {
		opts = nw.in
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: wire}
	if err := nw.w.WritePacketWithOptions(ci, data, opts); err != nil {
		return err
	}
	nw.n += nw.recordSize(len(data))
	return nil
}

func (nw *ngPartWriter) size() int { return nw.n }

// overhead is the NgWriter's bufio buffer (bufio's default size).
func (nw *ngPartWriter) overhead() int { return 4096 }

func (nw *ngPartWriter) recordSize(n int) int { return ngEPBOverhead + (n+3)&^3 }

func (nw *ngPartWriter) finish(st *partStats) ([]byte, error) {
	stats := pcapgo.NgInterfaceStatistics{
		LastUpdate:      st.end,
		StartTime:       st.start,
		EndTime:         st.end,
		PacketsReceived: pcapgo.NgNoValue64,
		PacketsDropped:  st.drops,
	}
	if err := nw.w.WriteInterfaceStats(0, stats); err != nil {
		return nil, fmt.Errorf("capture: pcapng statistics: %w", err)
	}
	if err := nw.w.Flush(); err != nil {
		return nil, fmt.Errorf("capture: pcapng flush: %w", err)
	}
	return nw.buf.Bytes(), nil
}

var (
	_ partWriter = (*pcapPartWriter)(nil)
	_ partWriter = (*ngPartWriter)(nil)
)
