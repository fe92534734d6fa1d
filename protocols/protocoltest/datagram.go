package protocoltest

import (
	"bytes"
	"context"
	"testing"

	"github.com/pcapot/pcapot/protocols"
)

// Reply serves one datagram req of session s to h and returns the reply, nil for
// none; the test fails when h returns an error or replies more than once.
func Reply(t testing.TB, h protocols.DatagramHandler, s protocols.Session, req []byte) []byte {
	t.Helper()
	var replies [][]byte
	err := h.ServeDatagram(context.Background(), s, req, func(b []byte) error {
		replies = append(replies, bytes.Clone(b))
		return nil
	})
	if err != nil {
		t.Fatalf("ServeDatagram(% x): %v", req, err)
	}
	switch len(replies) {
	case 0:
		return nil
	case 1:
		return replies[0]
	}
	t.Fatalf("%d replies to % x", len(replies), req)
	return nil
}
