package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// ErrLinkType reports a capture whose link type is not Ethernet, the only one the
// demux parses.
var ErrLinkType = errors.New("capture: link type not supported (Ethernet only)")

const pcapngMagic = 0x0a0d0d0a // section header block type

// ReadFile replays a classic pcap or pcapng file: it calls handle for every packet,
// in file order. Packet.Data is only valid during the call.
func ReadFile(path string, handle func(Packet)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	defer f.Close()
	if err := ReadPackets(f, handle); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ReadPackets is ReadFile for a stream.
func ReadPackets(r io.Reader, handle func(Packet)) error {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return fmt.Errorf("capture: read file header: %w", err)
	}
	if binary.LittleEndian.Uint32(magic) == pcapngMagic {
		return readNg(br, handle)
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return fmt.Errorf("capture: pcap header: %w", err)
	}
	if lt := pr.LinkType(); lt != layers.LinkTypeEthernet {
		return fmt.Errorf("%w: %v", ErrLinkType, lt)
	}
	return readAll(pr, nil, handle)
}

func readNg(r io.Reader, handle func(Packet)) error {
	ng, err := pcapgo.NewNgReader(r, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		return fmt.Errorf("capture: pcapng header: %w", err)
	}
	return readAll(ng, func(ci gopacket.CaptureInfo) error {
		intf, err := ng.Interface(ci.InterfaceIndex)
		if err != nil {
			return err
		}
		if intf.LinkType != layers.LinkTypeEthernet {
			return fmt.Errorf("%w: %v (interface %d)", ErrLinkType, intf.LinkType, ci.InterfaceIndex)
		}
		return nil
	}, handle)
}

// readAll hands every packet of r to handle, after check (if any) accepted it.
func readAll(r gopacket.ZeroCopyPacketDataSource, check func(gopacket.CaptureInfo) error, handle func(Packet)) error {
	for {
		data, ci, err := r.ZeroCopyReadPacketData()
		if err == io.EOF {
			return nil
		}
		if err == nil && check != nil {
			err = check(ci)
		}
		if err != nil {
			return fmt.Errorf("capture: read packet: %w", err)
		}
		handle(Packet{Time: ci.Timestamp, Data: data, Length: ci.Length})
	}
}
