package incidents

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestKeys(t *testing.T) {
	start := time.Date(2026, 1, 2, 23, 59, 59, 0, time.FixedZone("UTC+2", 2*3600)) // 21:59:59Z
	const sid = "3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f"
	pcap, bundle, err := Keys("plant-a-01", start, sid)
	if err != nil {
		t.Fatal(err)
	}
	if want := "plant-a-01/2026/01/02/" + sid + ".pcap"; pcap != want {
		t.Errorf("pcap key = %q, want %q", pcap, want)
	}
	if want := "plant-a-01/2026/01/02/" + sid + ".json"; bundle != want {
		t.Errorf("bundle key = %q, want %q", bundle, want)
	}
	for n, want := range map[int]string{0: pcap, 1: pcap, 2: strings.TrimSuffix(pcap, ".pcap") + ".part2.pcap", 13: strings.TrimSuffix(pcap, ".pcap") + ".part13.pcap"} {
		got, err := PartKey(pcap, n)
		if err != nil || got != want {
			t.Errorf("PartKey(%d) = %q, %v; want %q", n, got, err, want)
		}
		if err := ValidKey(got); err != nil {
			t.Errorf("ValidKey(PartKey(%d)): %v", n, err)
		}
	}
	if err := ValidKey(bundle); err != nil {
		t.Errorf("ValidKey(bundle key): %v", err)
	}
}

func TestKeysRejectHostileIDs(t *testing.T) {
	const sid = "3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f"
	start := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name, sensor, session string
		start                 time.Time
	}{
		{"empty sensor", "", sid, start},
		{"traversal sensor", "../etc", sid, start},
		{"slash in sensor", "a/b", sid, start},
		{"uppercase sensor", "Plant", sid, start},
		{"space in sensor", "a b", sid, start},
		{"NUL in sensor", "a\x00b", sid, start},
		{"unicode sensor", "plänt", sid, start},
		{"leading hyphen", "-a", sid, start},
		{"trailing hyphen", "a-", sid, start},
		{"sensor too long", strings.Repeat("a", 64), sid, start},
		{"empty session", "s", "", start},
		{"uppercase uuid", "s", strings.ToUpper(sid), start},
		{"braced uuid", "s", "{" + sid + "}", start},
		{"urn uuid", "s", "urn:uuid:" + sid, start},
		{"traversal session", "s", "../../../../../../etc/passwd-aaaaaaaa", start},
		{"session with slash", "s", "3f2b8c1e/5d4a-4c7b-9e8f-1a2b3c4d5e6f", start},
		{"session of attacker text", "s", "<script>alert(1)</script>aaaaaaaaaaa", start},
		{"zero start", "s", sid, time.Time{}},
		{"five-digit year", "s", sid, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, b, err := Keys(tc.sensor, tc.start, tc.session)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Keys = %q, %q, %v; want an ErrInvalid error", p, b, err)
			}
		})
	}
}

func TestValidKeyRejects(t *testing.T) {
	const base = "plant-a-01/2026/01/02/3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f"
	for _, k := range []string{
		"", base, base + ".txt", base + ".pcap/x", "/" + base + ".pcap", base + ".part1.pcap", base + ".part02.pcap",
		base + ".part-2.pcap", base + ".part.pcap", base + ".part2.json", "x/../" + base + ".pcap",
		"plant-a-01/2026/13/02/3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f.pcap", "plant-a-01/26/01/02/3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f.pcap",
		"plant-a-01/2026/1/02/3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f.pcap", "PLANT/2026/01/02/3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f.pcap",
	} {
		if err := ValidKey(k); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidKey(%q) = %v, want an ErrInvalid error", k, err)
		}
	}
	if _, err := PartKey(base+".json", 2); err == nil {
		t.Error("PartKey of a bundle key: no error")
	}
	if _, err := PartKey(base+".part2.pcap", 3); err == nil {
		t.Error("PartKey of a part key: no error")
	}
}
