//go:build !linux

package capture

import (
	"context"
	"errors"
	"fmt"
)

type ringSource struct{}

// OpenLive is only available on Linux.
func OpenLive(c LiveConfig) (*Live, error) {
	return nil, fmt.Errorf("capture: live capture needs Linux AF_PACKET: %w", errors.ErrUnsupported)
}

// Run is only available on Linux.
func (l *Live) Run(ctx context.Context, handle func(Packet)) error { return errors.ErrUnsupported }

// Stats is only available on Linux.
func (l *Live) Stats() (packets, drops uint64) { return 0, 0 }

// Close is only available on Linux.
func (l *Live) Close() error { return errors.ErrUnsupported }
