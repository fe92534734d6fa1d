package tftp

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// The seed corpora are committed in testdata/fuzz/FuzzPacket and testdata/fuzz/FuzzFlow:
// requests with and without options, reads, writes, lost and repeated blocks, errors,
// malformed packets.

// FuzzPacket checks the packet parsers: no panic, and what they accept re-encodes to
// the same bytes.
func FuzzPacket(f *testing.F) {
	f.Add([]byte("\x00\x01fw/cpu.bin\x00octet\x00blksize\x001428\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParseRequest(b); err == nil {
			again, err := ParseRequest(AppendRequest(nil, r))
			if err != nil || again.Filename != r.Filename || again.Mode != r.Mode || len(again.Options) != len(r.Options) {
				t.Fatalf("request %+v does not round-trip: %+v %v", r, again, err)
			}
			cleanName(r.Filename)
		}
		if op, block, d, err := ParseBlock(b); err == nil {
			var re []byte
			if op == OpDATA {
				re = AppendData(nil, block, d)
			} else {
				re = AppendACK(nil, block)
			}
			if !bytes.Equal(re, b[:len(re)]) {
				t.Fatalf("block packet % x re-encodes as % x", b, re)
			}
		}
		if opts, err := ParseOACK(b); err == nil {
			if re := AppendOACK(nil, opts); !bytes.Equal(re, b) {
				t.Fatalf("OACK % x re-encodes as % x", b, re)
			}
		}
		ParseError(b)
	})
}

// splitDatagrams decodes a fuzz input into datagrams: each is a length byte followed
// by that many bytes; the high bit of the length byte picks the second client flow.
func splitDatagrams(b []byte) (pkts [][]byte, flows []int) {
	for len(b) > 0 {
		n := int(b[0] & 0x7F)
		flow := int(b[0] >> 7)
		b = b[1:]
		n = min(n, len(b))
		pkts = append(pkts, b[:n])
		flows = append(flows, flow)
		b = b[n:]
	}
	return pkts, flows
}

// FuzzFlow feeds sequences of datagrams from two clients through the handler and
// checks every reply: at most one per datagram, a well-formed DATA, ACK, OACK or
// ERROR packet, DATA no larger than the block size; and the memory accounting holds.
func FuzzFlow(f *testing.F) {
	f.Add([]byte("\x11\x00\x01t/hello.txt\x00octet\x00\x04\x00\x04\x00\x01"))
	cfg := testConfig()
	cfg.MaxUploadSize, cfg.MaxUploadMemory = 64, 96
	cfg.Timeout = time.Hour
	f.Fuzz(func(t *testing.T, in []byte) {
		h := newTestHandler(t, cfg)
		fl := [2]*flow{newFlow(t, h), newFlow(t, h)}
		pkts, which := splitDatagrams(in)
		for i, p := range pkts {
			var replies [][]byte
			s := fl[which[i]].sess
			if err := h.ServeDatagram(context.Background(), s, p, func(b []byte) error {
				replies = append(replies, bytes.Clone(b))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(replies) > 1 {
				t.Fatalf("%d replies to % x", len(replies), p)
			}
			for _, r := range replies {
				op, err := Opcode(r)
				if err != nil {
					t.Fatalf("reply % x: %v", r, err)
				}
				switch op {
				case OpDATA:
					h.mu.Lock()
					tr := h.transfers[s.ID()]
					h.mu.Unlock()
					if tr == nil || len(r)-4 > tr.blksize {
						t.Fatalf("DATA of %d bytes", len(r)-4)
					}
				case OpACK:
					if len(r) != 4 {
						t.Fatalf("ACK % x", r)
					}
				case OpERROR:
					if _, _, err := ParseError(r); err != nil || r[len(r)-1] != 0 {
						t.Fatalf("ERROR % x", r)
					}
				case OpOACK:
					if _, err := ParseOACK(r); err != nil {
						t.Fatalf("OACK % x: %v", r, err)
					}
				default:
					t.Fatalf("reply with opcode %d", op)
				}
			}
		}
		h.mu.Lock()
		var sum int64
		for _, tr := range h.transfers {
			sum += int64(len(tr.data))
		}
		if sum != h.held || h.held > cfg.MaxUploadMemory {
			t.Fatalf("held %d, transfers hold %d", h.held, sum)
		}
		for _, tr := range h.transfers {
			h.finish(tr, nil, "test end")
		}
		if h.held != 0 {
			t.Fatalf("held %d after every transfer ended", h.held)
		}
		h.mu.Unlock()
	})
}
