package sensor

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pcapot/pcapot/capture"
	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/protocols"
)

// CarveResult counts what Carve wrote.
type CarveResult struct {
	Sessions int
	Parts    int
	Stats    capture.Stats
	Probes   []capture.ProbeSummary
}

// Carve splits a full capture (pcap or pcapng) into one pcap and one STIX bundle per
// session, with the same demux and BPF provenance as live capture, into a folder store
// at outDir. Every TCP flow that starts with a SYN and every UDP flow is a session; its
// protocol is named by the server port of a known protocol, else by its transport.
func Carve(ctx context.Context, path, outDir, sensorID string, specs []protocols.Spec, logger *slog.Logger) (*CarveResult, error) {
	st, err := LoadState(outDir, sensorID)
	if err != nil {
		return nil, err
	}
	store, err := incidents.NewFolderStore(outDir)
	if err != nil {
		return nil, fmt.Errorf("output folder %s: %w", outDir, err)
	}
	sensor := incidents.Sensor{
		ID: st.SensorID, Name: "pcapot carve", IdentityID: st.IdentityID,
		IdentityCreated: st.Created, IdentityModified: st.Created,
	}
	byPort := map[[2]uint16]protocols.Spec{}
	for _, sp := range specs {
		proto := uint16(capture.ProtoTCP)
		if sp.Transport == protocols.UDP {
			proto = uint16(capture.ProtoUDP)
		}
		byPort[[2]uint16{proto, sp.Port}] = sp
	}

	res := &CarveResult{}
	parts := map[string][]*capture.Finished{}
	var werr error
	emit := func(f *capture.Finished) {
		parts[f.ID] = append(parts[f.ID], f)
		if !f.Last || werr != nil {
			return
		}
		ps := parts[f.ID]
		delete(parts, f.ID)
		if err := carveSession(ctx, store, sensor, byPort, ps); err != nil {
			werr = err
			return
		}
		res.Sessions++
		res.Parts += len(ps)
	}
	d := capture.NewDemux(capture.Config{AutoRegister: true, Interface: "file"}, logger, emit)
	var last time.Time
	err = capture.ReadFile(path, func(p capture.Packet) {
		d.Handle(p)
		if p.Time.Sub(last) >= 100*time.Millisecond {
			d.Tick(p.Time)
			last = p.Time
		}
	})
	if err != nil {
		return nil, err
	}
	d.Close(last)
	if werr != nil {
		return nil, werr
	}
	res.Stats = d.Stats()
	res.Probes = d.Probes()
	return res, nil
}

func carveSession(ctx context.Context, store incidents.Store, sensor incidents.Sensor, byPort map[[2]uint16]protocols.Spec, ps []*capture.Finished) error {
	t := ps[0].Tuple
	sp, ok := byPort[[2]uint16{uint16(t.Proto), t.Server.Port()}]
	if !ok {
		sp = protocols.Spec{Name: "tcp", Transport: protocols.TCP}
		if t.Proto == capture.ProtoUDP {
			sp = protocols.Spec{Name: "udp", Transport: protocols.UDP}
		}
	}
	rec, err := assemble(sensor, store, sp, t, ps[0].ID, recorded{parts: ps})
	if err != nil {
		return err
	}
	for _, o := range rec.objects {
		if err := store.Put(ctx, o.Key, o.Body, o.Meta); err != nil {
			return err
		}
	}
	return store.Put(ctx, rec.bundleKey, rec.bundle, incidents.Meta{ContentType: incidents.BundleMimeType, SHA256: sha256hex(rec.bundle), Size: int64(len(rec.bundle))})
}
