package capture

import (
	"sync"
	"sync/atomic"
)

// handoff carries packets from the ring reader to the goroutine that handles them. The
// reader copies each packet out of the ring into a batch and gives the ring block back
// at once; the handler (the Demux, which allocates: flows, buffered frames) runs on
// another goroutine. The reader itself then never allocates, so it never does garbage
// collector assist work, which was what held it up long enough for the ring to
// overflow under load (docs/BENCHMARKS.md §2b). A batch goes to the handler as soon as
// the handler is idle, or when it is full; the reader waits only when every batch is
// queued, and then the ring absorbs the rest, as it would without the handoff.
type handoff struct {
	free  chan *batch
	ready chan *batch
	idle  atomic.Bool // the handler waits for a batch
	cur   *batch      // being filled; the reader's
	done  sync.WaitGroup
}

type batch struct {
	buf  []byte
	pkts []Packet // Data slices into buf
}

// Batches of the handoff: batchBytes each (at least the largest frame), batches in all.
const (
	handoffBatches    = 16
	handoffBatchBytes = 256 << 10
	handoffBatchPkts  = 2048
)

// newHandoff starts the handler goroutine, which calls handle for every packet put,
// in order, until close.
func newHandoff(maxFrame int, handle func(Packet)) *handoff {
	h := &handoff{free: make(chan *batch, handoffBatches), ready: make(chan *batch, handoffBatches)}
	for range handoffBatches {
		h.free <- &batch{buf: make([]byte, 0, max(handoffBatchBytes, maxFrame)), pkts: make([]Packet, 0, handoffBatchPkts)}
	}
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		for {
			h.idle.Store(true)
			b, ok := <-h.ready
			h.idle.Store(false)
			if !ok {
				return
			}
			for _, p := range b.pkts {
				handle(p)
			}
			clear(b.pkts) // no references into buf while it waits
			b.buf, b.pkts = b.buf[:0], b.pkts[:0]
			h.free <- b
		}
	}()
	return h
}

// put copies p into the current batch. Packet.Data need only be valid during the call.
func (h *handoff) put(p Packet) {
	if h.cur != nil && (len(h.cur.pkts) == cap(h.cur.pkts) || len(p.Data) > cap(h.cur.buf)-len(h.cur.buf)) {
		h.ready <- h.cur // full
		h.cur = nil
	}
	if h.cur == nil {
		h.cur = <-h.free
	}
	b := h.cur
	off := len(b.buf)
	b.buf = append(b.buf, p.Data...)
	b.pkts = append(b.pkts, Packet{Time: p.Time, Data: b.buf[off:len(b.buf):len(b.buf)], Length: p.Length})
	if h.idle.Load() && len(h.ready) == 0 {
		h.flush()
	}
}

// flush hands the current batch to the handler.
func (h *handoff) flush() {
	if h.cur != nil && len(h.cur.pkts) > 0 {
		h.ready <- h.cur
		h.cur = nil
	}
}

// close hands over what is left and waits until the handler has handled everything.
func (h *handoff) close() {
	h.flush()
	close(h.ready)
	h.done.Wait()
}
