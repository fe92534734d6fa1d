package sensor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pcapot/pcapot/incidents"
)

// ErrNoSession is returned when no stored incident has the session id.
var ErrNoSession = errors.New("no such session")

// ListSessions reads every stored incident bundle and summarises it, oldest first.
func ListSessions(ctx context.Context, st incidents.Store) ([]*incidents.Summary, error) {
	objs, err := st.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list store: %w", err)
	}
	var out []*incidents.Summary
	for _, o := range objs {
		if !strings.HasSuffix(o.Key, ".json") {
			continue
		}
		sum, err := loadSummary(ctx, st, o.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

func loadSummary(ctx context.Context, st incidents.Store, key string) (*incidents.Summary, error) {
	b, _, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	sum, err := incidents.Summarize(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return sum, nil
}

// FindSession returns the summary of the session with this id.
func FindSession(ctx context.Context, st incidents.Store, id string) (*incidents.Summary, error) {
	if !validUUID(id) {
		return nil, fmt.Errorf("%q is not a session id (a UUID as shown by `pcapot sessions list`)", id)
	}
	objs, err := st.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list store: %w", err)
	}
	for _, o := range objs {
		if strings.HasSuffix(o.Key, "/"+id+".json") {
			return loadSummary(ctx, st, o.Key)
		}
	}
	return nil, fmt.Errorf("session %s: %w", id, ErrNoSession)
}

// PCAPPart is one downloaded and verified pcap of a session.
type PCAPPart struct {
	incidents.PCAP
	Body []byte
}

// GetPCAPs downloads every pcap part of the session and verifies each one's SHA-256
// against the hash in its incident (and the store's own metadata).
func GetPCAPs(ctx context.Context, st incidents.Store, id string) (*incidents.Summary, []PCAPPart, error) {
	sum, err := FindSession(ctx, st, id)
	if err != nil {
		return nil, nil, err
	}
	var parts []PCAPPart
	for _, p := range sum.PCAPs {
		body, _, err := st.Get(ctx, p.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("download %s: %w", p.Key, err)
		}
		got := sha256.Sum256(body)
		if hex.EncodeToString(got[:]) != strings.ToLower(p.SHA256) {
			return nil, nil, fmt.Errorf("pcap %s: SHA-256 %x does not match the incident's %s: %w", p.Key, got, p.SHA256, incidents.ErrHashMismatch)
		}
		parts = append(parts, PCAPPart{PCAP: p, Body: body})
	}
	if len(parts) == 0 {
		return nil, nil, fmt.Errorf("session %s: its incident names no pcap", id)
	}
	return sum, parts, nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
				return false
			}
		}
	}
	return true
}
