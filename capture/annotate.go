package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// Note is a line of text about a moment of a session, such as an emulator's event:
// AnnotatePCAPNG makes it the comment of the packet it is about.
type Note struct {
	Time time.Time
	Text string
}

// maxNoteBytes caps one packet comment.
const maxNoteBytes = 1024

// AnnotatePCAPNG returns a copy of the pcapng file data (a part written by the Demux)
// in which every note is a comment (opt_comment) of the last packet from the client
// (inbound) stamped at or before the note's time, or of the file's first packet when
// there is none: an emulator event on the request that caused it. Everything else is
// kept: the section and interface blocks, each packet's bytes, lengths, time and
// flags, and the closing interface statistics. Without notes it returns data itself.
func AnnotatePCAPNG(data []byte, notes []Note) ([]byte, error) {
	if len(notes) == 0 {
		return data, nil
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.NgReaderOptions{})
	if err != nil {
		return nil, fmt.Errorf("capture: annotate: %w", err)
	}
	if r.NInterfaces() != 1 {
		return nil, fmt.Errorf("capture: annotate: %d interfaces, want 1", r.NInterfaces())
	}
	type packet struct {
		data []byte
		ci   gopacket.CaptureInfo
		opts pcapgo.NgPacketOptions
	}
	var pkts []packet
	for {
		b, ci, opts, err := r.ReadPacketDataWithOptions()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("capture: annotate: packet %d: %w", len(pkts)+1, err)
		}
		pkts = append(pkts, packet{data: b, ci: ci, opts: opts})
	}
	if len(pkts) == 0 {
		return data, nil // no packet to hang a note on
	}
	for _, n := range notes {
		at := 0
		for i, p := range pkts {
			if p.ci.Timestamp.After(n.Time) {
				break
			}
			if p.opts.Flags != nil && p.opts.Flags.Direction == pcapgo.NgEpbFlagDirectionInbound {
				at = i
			}
		}
		text := n.Text
		if len(text) > maxNoteBytes {
			text = strings.ToValidUTF8(text[:maxNoteBytes], "")
		}
		pkts[at].opts.Comments = append(pkts[at].opts.Comments, text)
	}
	intf, err := r.Interface(0)
	if err != nil {
		return nil, fmt.Errorf("capture: annotate: %w", err)
	}
	var out bytes.Buffer
	out.Grow(len(data) + len(notes)*64)
	w, err := pcapgo.NewNgWriterInterface(&out, intf, pcapgo.NgWriterOptions{SectionInfo: r.SectionInfo()})
	if err != nil {
		return nil, fmt.Errorf("capture: annotate: %w", err)
	}
	for _, p := range pkts {
		if err := w.WritePacketWithOptions(p.ci, p.data, p.opts); err != nil {
			return nil, fmt.Errorf("capture: annotate: %w", err)
		}
	}
	if err := w.WriteInterfaceStats(0, intf.Statistics); err != nil {
		return nil, fmt.Errorf("capture: annotate: %w", err)
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("capture: annotate: %w", err)
	}
	return out.Bytes(), nil
}
