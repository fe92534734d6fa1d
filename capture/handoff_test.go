package capture

import (
	"bytes"
	"testing"
	"time"
)

// TestHandoff checks that every packet put reaches the handler once, in order, with
// its own bytes (the reader reuses its buffer right after put), across full batches,
// packets larger than a batch's free room, flushes and close.
func TestHandoff(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes func(i int) int
		n     int
		slow  bool // the handler dawdles, so that batches fill and queue
	}{
		{"small", func(int) int { return 60 }, 10000, false},
		{"mixed sizes, slow handler", func(i int) int { return []int{60, 1514, 9000, 65000}[i%4] }, 2000, true},
		{"more packets than a batch holds", func(int) int { return 40 }, 3 * handoffBatchPkts, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []Packet
			h := newHandoff(128<<10, func(p Packet) {
				if tc.slow && len(got)%500 == 0 {
					time.Sleep(2 * time.Millisecond)
				}
				got = append(got, Packet{Time: p.Time, Data: bytes.Clone(p.Data), Length: p.Length})
			})
			buf := make([]byte, 65536) // the reader's one buffer, reused for every packet
			t0 := time.Unix(1700000000, 0)
			for i := range tc.n {
				n := tc.sizes(i)
				for j := range n {
					buf[j] = byte(i + j)
				}
				h.put(Packet{Time: t0.Add(time.Duration(i)), Data: buf[:n], Length: n + i%3})
				if i%1000 == 999 {
					h.flush()
				}
			}
			h.close()
			if len(got) != tc.n {
				t.Fatalf("handled %d packets, put %d", len(got), tc.n)
			}
			for i, p := range got {
				n := tc.sizes(i)
				want := make([]byte, n)
				for j := range n {
					want[j] = byte(i + j)
				}
				if !p.Time.Equal(t0.Add(time.Duration(i))) || p.Length != n+i%3 || !bytes.Equal(p.Data, want) {
					t.Fatalf("packet %d: time %v, length %d, %d bytes, want %d", i, p.Time, p.Length, len(p.Data), n)
				}
			}
		})
	}
}
