//go:build linux

package capture

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/sys/unix"
)

type ringSource = afpacket.TPacket

// readerNice is the nice value of the ring reader's thread.
const readerNice = -10

// OpenLive opens a TPACKET_V3 socket on c.Interface and attaches c.Filter. It needs
// root or CAP_NET_RAW.
func OpenLive(c LiveConfig) (*Live, error) {
	c = c.withDefaults()
	if c.Interface == "" {
		return nil, errors.New("capture: OpenLive needs an interface")
	}
	if len(c.Filter) == 0 {
		return nil, errors.New("capture: OpenLive needs a filter (SensorFilter)")
	}
	if _, err := net.InterfaceByName(c.Interface); err != nil {
		return nil, fmt.Errorf("capture: interface %q: %w", c.Interface, err)
	}
	opened := time.Now()
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(c.Interface),
		afpacket.TPacketVersion3,
		afpacket.OptBlockSize(c.BlockSize),
		afpacket.OptNumBlocks(c.NumBlocks),
		afpacket.OptBlockTimeout(c.BlockTimeout),
		afpacket.OptPollTimeout(c.PollTimeout),
	)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("capture: open AF_PACKET socket on %s needs root or CAP_NET_RAW: %w", c.Interface, err)
		}
		return nil, fmt.Errorf("capture: open AF_PACKET socket on %s: %w", c.Interface, err)
	}
	// afpacket binds the socket to ETH_P_ALL before a filter can be attached (libpcap
	// attaches first), so a few unfiltered packets may be queued; Run checks those.
	if err := tp.SetBPF(c.Filter); err != nil {
		tp.Close()
		return nil, fmt.Errorf("capture: attach filter on %s: %w", c.Interface, err)
	}
	return &Live{cfg: c, src: tp, opened: opened, attached: time.Now(), window: true, windowCheck: userSpaceFilter(c.Filter)}, nil
}

// Run reads packets and calls handle for each, in order, from one goroutine of its
// own (see handoff), until ctx is done or the socket fails; it returns (nil when ctx
// is done) after the last handle call. Packet.Data is only valid during handle.
func (l *Live) Run(ctx context.Context, handle func(Packet)) error {
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return ErrLiveClosed
	case l.running:
		l.mu.Unlock()
		return ErrRunning
	}
	l.running = true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.running = false
		l.mu.Unlock()
	}()
	h := newHandoff(l.cfg.BlockSize, handle)
	defer h.close()
	// The reader gets a thread of its own, at a higher priority when the process may
	// set one (CAP_SYS_NICE): when the ring wakes it, it should run before the
	// emulators and whatever else shares the CPUs, as the ring overflows in
	// milliseconds at high rates. Lowering the nice value fails quietly otherwise.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, readerNice); err == nil {
		defer unix.Setpriority(unix.PRIO_PROCESS, tid, 0)
	}
	done := ctx.Done()
	for {
		select {
		case <-done:
			return nil
		default:
		}
		data, ci, err := l.src.ZeroCopyReadPacketData()
		if err != nil {
			if errors.Is(err, afpacket.ErrTimeout) || errors.Is(err, unix.EINTR) {
				h.flush() // nothing more came: what is batched goes now
				continue
			}
			return fmt.Errorf("capture: read %s: %w", l.cfg.Interface, err)
		}
		if l.inWindow(ci.Timestamp) && (l.windowCheck == nil || !l.windowCheck(data)) {
			l.discarded.Add(1)
			continue
		}
		h.put(Packet{Time: ci.Timestamp, Data: data, Length: ci.Length})
	}
}

// Stats returns the socket's cumulative counters: packets that passed the filter
// (including those dropped) and packets dropped because the ring was full.
func (l *Live) Stats() (packets, drops uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.readStats()
	}
	return l.packets, l.drops
}

// readStats folds the kernel counters into the 64-bit totals; l.mu is held.
func (l *Live) readStats() {
	_, v3, err := l.src.SocketStats()
	if err != nil {
		return
	}
	p, d := uint32(v3.Packets()), uint32(v3.Drops())
	l.packets += uint64(p - l.lastPackets)
	l.drops += uint64(d - l.lastDrp)
	l.lastPackets, l.lastDrp = p, d
}

// Close releases the socket and its ring. It fails with ErrRunning while Run is
// active: cancel Run's context and wait for it first.
func (l *Live) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		return ErrRunning
	}
	if l.closed {
		return nil
	}
	l.readStats()
	l.closed = true
	l.src.Close()
	return nil
}
