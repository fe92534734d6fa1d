package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"
)

// LiveConfig configures a live capture on one interface.
type LiveConfig struct {
	// Interface is the interface to capture on (required).
	Interface string
	// Filter is the kernel filter (SensorFilter) for DLT_EN10MB; required, so that no
	// unfiltered traffic reaches the process.
	Filter []bpf.RawInstruction
	// BlockSize and NumBlocks size the TPACKET_V3 ring; defaults 128 KiB × 512 (64
	// MiB). A block must hold the largest frame the interface passes up (64 KiB with
	// GRO/TSO): a larger one is truncated. What the ring can absorb while the reader
	// is held up is about NumBlocks × BlockTimeout at low rates, when the timeout
	// retires blocks mostly empty, and the ring's bytes at high rates: more, smaller
	// blocks give more slack for the same memory.
	BlockSize, NumBlocks int
	// BlockTimeout hands a partly filled block to the reader after this long; default
	// 50 ms (millisecond granularity).
	BlockTimeout time.Duration
	// PollTimeout bounds each wait for a block, and so how long Run takes to notice a
	// cancelled context; default 100 ms.
	PollTimeout time.Duration
}

// Defaults of LiveConfig.
const (
	DefaultBlockSize = 128 << 10
	DefaultNumBlocks = 512
	// MinBlockSize holds a 64 KiB GRO/TSO frame with its headers.
	MinBlockSize        = 128 << 10
	DefaultBlockTimeout = 50 * time.Millisecond
	DefaultPollTimeout  = 100 * time.Millisecond
)

func (c LiveConfig) withDefaults() LiveConfig {
	orDefault(&c.BlockSize, DefaultBlockSize)
	orDefault(&c.NumBlocks, DefaultNumBlocks)
	orDefault(&c.BlockTimeout, DefaultBlockTimeout)
	orDefault(&c.PollTimeout, DefaultPollTimeout)
	return c
}

// Errors of Live.
var (
	ErrLiveClosed = errors.New("capture: live capture closed")
	ErrRunning    = errors.New("capture: live capture is being read (Run active)")
)

// Live is one AF_PACKET TPACKET_V3 capture socket (Linux only). Run reads it; Close it
// only after Run has returned: the ring is unmapped on Close, and the library does not
// guard a reader inside it (closing under a reader crashes), so Close refuses while
// Run is active.
type Live struct {
	cfg LiveConfig
	src *ringSource // platform part

	mu      sync.Mutex // guards running, closed and the stats fields
	running bool
	closed  bool
	// cumulative socket counters (the kernel's are 32-bit and reset on read)
	packets, drops       uint64
	lastPackets, lastDrp uint32

	// The socket receives from its bind, just before the filter is attached: packets
	// queued in between (stamped in [opened, attached)) may not have passed the
	// filter. Until the first packet stamped at or after attached, Run re-checks
	// packets with the filter in user space (windowCheck), or discards them when the
	// program cannot run in user space (the lo prefix reads the packet type).
	opened, attached time.Time
	window           bool // reader-only
	windowCheck      func([]byte) bool
	discarded        atomic.Uint64
}

// Discarded counts the packets dropped at start because they were queued before the
// kernel filter was attached and did not pass it in user space.
func (l *Live) Discarded() uint64 { return l.discarded.Load() }

// Interface is the captured interface's name.
func (l *Live) Interface() string { return l.cfg.Interface }

// inWindow reports whether a packet stamped ts must be checked in user space: the
// window ends at the first packet stamped at or after the attach (packets arrive in
// order), or at one stamped a second before the open (the clock was set back).
func (l *Live) inWindow(ts time.Time) bool {
	if l.window && (!ts.Before(l.attached) || ts.Before(l.opened.Add(-time.Second))) {
		l.window = false
	}
	return l.window
}

// userSpaceFilter returns prog as a function run in bpf.NewVM, or nil if the program
// needs kernel extensions (such as the lo PACKET_OUTGOING prefix).
func userSpaceFilter(prog []bpf.RawInstruction) func([]byte) bool {
	ins, ok := bpf.Disassemble(prog)
	if !ok {
		return nil
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		return nil
	}
	return func(b []byte) bool {
		n, err := vm.Run(b)
		return err == nil && n > 0
	}
}

// InterfaceFor returns the interface that carries addr, and whether it is a loopback
// interface (lo for 127.0.0.1 and ::1, where every packet is seen twice; see
// SensorFilterConfig.Loopback).
func InterfaceFor(addr netip.Addr) (name string, loopback bool, err error) {
	addr = normAddr(addr)
	if !addr.IsValid() || addr.IsUnspecified() {
		return "", false, fmt.Errorf("capture: no single interface carries %v", addr)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", false, fmt.Errorf("capture: list interfaces: %w", err)
	}
	var covering *net.Interface // a loopback interface whose prefix covers addr (127/8)
	for i := range ifs {
		ifi := &ifs[i]
		addrs, err := ifi.Addrs()
		if err != nil {
			return "", false, fmt.Errorf("capture: addresses of %s: %w", ifi.Name, err)
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok {
				continue
			}
			if ip.Unmap() == addr {
				return ifi.Name, ifi.Flags&net.FlagLoopback != 0, nil
			}
			if ifi.Flags&net.FlagLoopback != 0 && n.Contains(addr.AsSlice()) && covering == nil {
				covering = ifi
			}
		}
	}
	if covering != nil {
		return covering.Name, true, nil
	}
	return "", false, fmt.Errorf("capture: no interface has address %v", addr)
}
