package sensor

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/incidents/stixcheck"
	"github.com/pcapot/pcapot/protocols"
)

// Carving the capture engine's recorded multi-session replay gives one stored pcap and
// one valid bundle for every session listed beside it, named by protocol.
func TestCarveReplay(t *testing.T) {
	in := filepath.Join("..", "capture", "testdata", "replay", "multi.pcap")
	want := map[string]string{} // client -> protocol name by server port
	f, err := os.Open(filepath.Join("..", "capture", "testdata", "replay", "sessions.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		want[fields[2]] = fields[1]
	}
	f.Close()
	specs := []protocols.Spec{
		{Name: "modbus", Transport: protocols.TCP, Port: 502, Service: "mbap"},
		{Name: "s7comm", Transport: protocols.TCP, Port: 102, Service: "iso-tsap"},
		{Name: "snmp", Transport: protocols.UDP, Port: 161, Service: "snmp"},
		{Name: "bacnet", Transport: protocols.UDP, Port: 47808, Service: "bacnet"},
	}
	out := t.TempDir()
	res, err := Carve(context.Background(), in, out, "carve-test", specs, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	st, err := incidents.NewFolderStore(out)
	if err != nil {
		t.Fatal(err)
	}
	list, err := ListSessions(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != res.Sessions || res.Sessions == 0 {
		t.Fatalf("carved %d sessions, store lists %d", res.Sessions, len(list))
	}
	checker, err := stixcheck.New(filepath.Join("..", "..", "shared", "stix2-json-schemas"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range list {
		seen[s.Client] = true
		if tr, ok := want[s.Client]; ok && tr != s.Transport {
			t.Errorf("%s: transport %s, want %s", s.Client, s.Transport, tr)
		}
		b, _, err := st.Get(context.Background(), s.BundleKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range checker.CheckBundle(b) {
			t.Errorf("%s: %v", s.SessionID, e)
		}
		if _, parts, err := GetPCAPs(context.Background(), st, s.SessionID); err != nil || len(parts) == 0 {
			t.Errorf("%s: pcap get: %v", s.SessionID, err)
		}
	}
	for client := range want {
		if !seen[client] {
			t.Errorf("session from %s not carved", client)
		}
	}
}
