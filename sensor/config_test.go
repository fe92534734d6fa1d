package sensor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultConfigValid(t *testing.T) {
	c, err := DefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	if ps := c.Validate(); len(ps) > 0 {
		t.Fatalf("embedded default does not validate: %v", ps)
	}
	if c.Listen != "127.0.0.1" || c.Persona == "" || c.Capture.Format != "pcap" {
		t.Fatalf("unexpected default: listen %q persona %q format %q", c.Listen, c.Persona, c.Capture.Format)
	}
}

func TestLoadConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings, one per expected problem, in order
	}{
		{"empty file keeps defaults", "", nil},
		{"overlay", "listen: 10.0.0.5\ncapture:\n  linger: 2s\n", nil},
		{"unknown top-level key", "listen: 127.0.0.1\nlisten_addr: x\n", []string{`:2: unknown key "listen_addr" in the top level`}},
		{"unknown nested keys all reported", "capture:\n  lingr: 1s\n  formt: pcap\ns3:\n  bucket_name: x\n", []string{
			`:2: unknown key "lingr" in capture`, `:3: unknown key "formt" in capture`, `:5: unknown key "bucket_name" in s3`}},
		{"wrong type", "capture:\n  linger: soon\n", []string{"line 2"}},
		{"not yaml", "listen: [\n", []string{"yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(path)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if c == nil {
					t.Fatal("nil config")
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestValidateValues(t *testing.T) {
	c, _ := DefaultConfig()
	c.Listen = "localhost:80"
	c.Capture.Format = "erf"
	c.Sensor.ID = "Bad/ID"
	c.S3.Endpoint = "127.0.0.1:9000"
	ps := c.Validate()
	for _, w := range []string{"sensor.id", "listen", "capture.format", "s3.bucket", "s3 credentials"} {
		found := false
		for _, p := range ps {
			if strings.Contains(p.Msg, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem mentions %q in %v", w, ps)
		}
	}
}

func TestPersonasLoad(t *testing.T) {
	names := Personas()
	if len(names) < 2 {
		t.Fatalf("want at least two embedded personas, have %v", names)
	}
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			p, err := LoadPersona(n)
			if err != nil {
				t.Fatal(err)
			}
			if p.Identity.Vendor == "" || p.Identity.Model == "" || p.Identity.OrderNumber == "" || p.Identity.Firmware == "" {
				t.Errorf("persona %s lacks identity basics: %+v", n, p.Identity)
			}
			if len(p.Services) == 0 {
				t.Errorf("persona %s has no services", n)
			}
			if p.Generate.Serial == "" || p.Generate.MACOUI == "" {
				t.Errorf("persona %s does not generate per-install serial and MAC", n)
			}
		})
	}
	if _, err := LoadPersona("no-such-persona"); err == nil || !strings.Contains(err.Error(), "embedded:") {
		t.Errorf("unknown persona: %v", err)
	}
}

func TestStatePerInstall(t *testing.T) {
	p, err := LoadPersona("siemens-s7-1200")
	if err != nil {
		t.Fatal(err)
	}
	a, b := t.TempDir(), t.TempDir()
	sa, err := LoadState(a, "")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := LoadState(b, "")
	if err != nil {
		t.Fatal(err)
	}
	ia, err := sa.Identity(a, p)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := sb.Identity(b, p)
	if err != nil {
		t.Fatal(err)
	}
	if ia.Serial == ib.Serial || ia.MAC.String() == ib.MAC.String() || sa.SensorID == sb.SensorID || sa.IdentityID == sb.IdentityID {
		t.Fatalf("two installs look alike: %s/%s %s/%s", ia.Serial, ib.Serial, ia.MAC, ib.MAC)
	}
	if !strings.HasPrefix(ia.MAC.String(), "00:1b:1b:") {
		t.Errorf("MAC %s lacks the persona's OUI", ia.MAC)
	}
	if !strings.Contains(ia.Description, ia.Serial) || strings.Contains(ia.Description, "{") {
		t.Errorf("description not expanded: %q", ia.Description)
	}
	// A restart keeps everything.
	sa2, err := LoadState(a, "")
	if err != nil {
		t.Fatal(err)
	}
	ia2, err := sa2.Identity(a, p)
	if err != nil {
		t.Fatal(err)
	}
	if sa2.SensorID != sa.SensorID || sa2.IdentityID != sa.IdentityID || ia2.Serial != ia.Serial || ia2.MAC.String() != ia.MAC.String() {
		t.Fatal("state not kept across restarts")
	}
	if !validID(sa.SensorID) {
		t.Errorf("generated sensor id %q is not a valid key component", sa.SensorID)
	}
}

func TestGeneratePattern(t *testing.T) {
	s, err := generate("S C-@%#-x")
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 9 || s[:4] != "S C-" || s[7:] != "-x" {
		t.Fatalf("pattern not kept: %q", s)
	}
	if c := s[4]; c < 'A' || c > 'Z' {
		t.Errorf("@ gave %q", c)
	}
	if c := s[6]; c < '0' || c > '9' {
		t.Errorf("# gave %q", c)
	}
}
