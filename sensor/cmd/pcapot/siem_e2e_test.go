package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/incidents/stixcheck"
	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/sensor/api"
)

// TestSIEMEndToEnd: a real Modbus session through the running sensor reaches a SIEM
// both ways — as ECS records in the NDJSON event log (joined by session id and
// community id) and as STIX objects served over TAXII 2.1 with authentication.
func TestSIEMEndToEnd(t *testing.T) {
	testenv.RequireRoot(t)
	mbpoll := testenv.LookPath(t, "mbpoll")
	nmap := testenv.LookPath(t, "nmap")
	checker, err := stixcheck.New(filepath.Join("..", "..", "..", "..", "shared", "stix2-json-schemas"))
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pcapot.yaml")
	os.WriteFile(cfg, []byte("api:\n  visibility_delay: 500ms\n"), 0o600)
	port, apiPort := freePort(t), freePort(t)
	sp := startSensor(t, bin, "--config", cfg, "--data", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--disable", "s7comm", "--disable", "http", "--disable", "snmp",
		"--api", fmt.Sprintf("127.0.0.1:%d", apiPort), "--api-token", "siem-key-0123456789abcdef")
	if out, err := exec.Command(mbpoll, "-m", "tcp", "-p", fmt.Sprint(port), "-a", "1", "-r", "1", "-c", "4", "-1", "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("mbpoll: %v\n%s", err, out)
	}
	// A SYN scan of the same port: the handshake never completes, so no handler sees
	// it; it is reported as a probe (at shutdown at the latest).
	if out, err := exec.Command(nmap, "-sS", "-Pn", "-n", "-p", fmt.Sprint(port), "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("nmap -sS: %v\n%s", err, out)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d/taxii2/pcapot/collections/%s/objects/", apiPort, api.IncidentsCollectionID)
	get := func(token string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", base, nil)
		req.Header.Set("Accept", "application/taxii+json;version=2.1")
		if token != "" {
			req.Header.Set("Authorization", "Token "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	if resp, _ := get(""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no credentials: status %d, want 401", resp.StatusCode)
	}
	var env struct {
		Objects []json.RawMessage `json:"objects"`
	}
	waitFor(t, 30*time.Second, func() bool {
		resp, body := get("siem-key-0123456789abcdef")
		if resp.StatusCode != 200 {
			return false
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/taxii+json;version=2.1" {
			t.Fatalf("content type %q", ct)
		}
		env.Objects = nil
		json.Unmarshal(body, &env)
		return strings.Contains(string(body), `"type":"incident"`)
	})
	types := map[string]int{}
	for _, o := range env.Objects {
		var h struct{ Type string }
		json.Unmarshal(o, &h)
		types[h.Type]++
		for _, e := range checker.CheckObject(o) {
			t.Errorf("served %s: %v", h.Type, e)
		}
	}
	for _, want := range []string{"incident", "observed-data", "network-traffic", "artifact", "indicator", "sighting", "identity"} {
		if types[want] == 0 {
			t.Errorf("TAXII serves no %s (got %v)", want, types)
		}
	}
	sp.stop(t)

	// The event log: start and end records of the session, and its Modbus operation.
	f, err := os.Open(filepath.Join(dir, "events.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kinds := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var community string
	for sc.Scan() {
		var rec struct {
			Event struct {
				Action string   `json:"action"`
				Type   []string `json:"type"`
			} `json:"event"`
			Network struct {
				CommunityID string `json:"community_id"`
				Transport   string `json:"transport"`
			} `json:"network"`
			Source struct {
				IP   string `json:"ip"`
				Port int    `json:"port"`
			} `json:"source"`
			Pcapot struct {
				Probe *struct {
					Flows int   `json:"flows"`
					Ports []int `json:"ports"`
				} `json:"probe"`
			} `json:"pcapot"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("event log line is not JSON: %v\n%s", err, sc.Text())
		}
		kinds[rec.Event.Action]++
		if rec.Event.Action == "probe-summary" {
			if p := rec.Pcapot.Probe; rec.Source.IP != "127.0.0.1" || p == nil || p.Flows < 1 || !slices.Contains(p.Ports, port) {
				t.Errorf("probe summary does not report the SYN scan of port %d: %s", port, sc.Text())
			}
			continue
		}
		if rec.Network.Transport != "tcp" || rec.Source.Port == 0 || !strings.HasPrefix(rec.Network.CommunityID, "1:") {
			t.Errorf("record lacks ECS network fields: %s", sc.Text())
		}
		if community == "" {
			community = rec.Network.CommunityID
		} else if rec.Network.CommunityID != community {
			t.Errorf("one session, two community ids: %s and %s", community, rec.Network.CommunityID)
		}
	}
	if kinds["session-start"] != 1 || kinds["session-end"] != 1 || kinds["probe-summary"] != 1 || len(kinds) < 4 {
		t.Errorf("event log actions %v: want one session-start, one session-end, one probe-summary and protocol events", kinds)
	}
}
