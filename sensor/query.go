package sensor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pcapot/pcapot/incidents"
)

// ErrNoSession is returned when no stored incident has the session id.
var ErrNoSession = errors.New("no such session")

// SessionInfo is what `pcapot sessions list` shows of one stored session.
type SessionInfo struct {
	SessionID          string           `json:"session_id"`
	SensorID           string           `json:"sensor_id"`
	Protocol           string           `json:"protocol"`
	Transport          string           `json:"transport"`
	Client             string           `json:"client"`
	Server             string           `json:"server"`
	Start              time.Time        `json:"start"`
	End                time.Time        `json:"end"`
	Reason             string           `json:"close_reason"`
	Packets            int64            `json:"packets"`
	Bytes              int64            `json:"bytes"`
	Events             int              `json:"events"`
	PossiblyIncomplete bool             `json:"possibly_incomplete"`
	Filter             string           `json:"filter"`
	IncidentID         string           `json:"incident_id"`
	BundleKey          string           `json:"bundle_key"`
	PCAPs              []incidents.PCAP `json:"pcaps"`
}

func newSessionInfo(key string, s *incidents.Summary) SessionInfo {
	return SessionInfo{
		SessionID: s.SessionID, SensorID: s.SensorID, Protocol: s.Protocol, Transport: s.Transport,
		Client: s.Client.String(), Server: s.Server.String(), Start: s.Start, End: s.End, Reason: s.Reason,
		Packets: s.ClientPackets + s.ServerPackets, Bytes: s.ClientBytes + s.ServerBytes, Events: s.Events,
		PossiblyIncomplete: s.PossiblyIncomplete, Filter: s.Filter, IncidentID: s.IncidentID,
		BundleKey: key, PCAPs: s.PCAPs,
	}
}

// ListSessions reads every stored incident bundle and summarises it, oldest first.
func ListSessions(ctx context.Context, st incidents.Store) ([]SessionInfo, error) {
	objs, err := st.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list store: %w", err)
	}
	var out []SessionInfo
	for _, o := range objs {
		if !isBundleKey(o.Key) {
			continue // the data folder also holds the spool and state.json
		}
		sum, err := loadSummary(ctx, st, o.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, newSessionInfo(o.Key, sum))
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
	if incidents.ValidUUID(id) != nil {
		return nil, fmt.Errorf("%q is not a session id (a UUID as shown by `pcapot sessions list`)", id)
	}
	objs, err := st.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list store: %w", err)
	}
	for _, o := range objs {
		if isBundleKey(o.Key) && strings.HasSuffix(o.Key, "/"+id+".json") {
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

// isBundleKey reports whether key is where the sensor stores an incident bundle.
func isBundleKey(key string) bool {
	return strings.HasSuffix(key, ".json") && incidents.ValidKey(key) == nil
}
