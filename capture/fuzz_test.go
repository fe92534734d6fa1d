package capture

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary frames to the parser: it must never panic or read out of
// bounds, and what it reports must be consistent.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p pinfo
		res := parse(b, &p)
		var again pinfo
		if parse(b, &again) != res || again != p {
			t.Fatal("parse is not deterministic")
		}
		if res != parseOK {
			return
		}
		if p.proto == 0 && !p.v6 {
			t.Fatal("IPv4 result without protocol")
		}
		if !p.hasPorts {
			if !p.frag {
				t.Fatal("no ports but not a fragment")
			}
			return
		}
		if p.proto != ProtoTCP && p.proto != ProtoUDP {
			t.Fatalf("ports reported for protocol %d", p.proto)
		}
		if p.proto == ProtoUDP && p.flags != 0 {
			t.Fatal("TCP flags on UDP")
		}
		k1, l1 := makeKey(p.proto, p.v6, p.src, p.dst)
		k2, l2 := makeKey(p.proto, p.v6, p.dst, p.src)
		if k1 != k2 || (l1 == l2 && p.src != p.dst) {
			t.Fatal("flow key not canonical")
		}
		// Any prefix is parsed without panicking, too.
		for n := range len(b) {
			var q pinfo
			parse(b[:n], &q)
		}
	})
}

// fuzzSeeds returns frames of every shape the parser handles.
func fuzzSeeds(t testing.TB) [][]byte {
	c4, s4 := mustAddr("192.0.2.10"), mustAddr("198.51.100.5")
	c6, s6 := mustAddr("2001:db8::10"), mustAddr("2001:db8::5")
	var out [][]byte
	for _, pair := range [][2]frameSpec{
		{{src: c4, dst: s4}, {src: s4, dst: c4}},
		{{src: c6, dst: s6}, {src: s6, dst: c6}},
	} {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP} {
			for _, v := range variants(pair[0].src.Is6()) {
				v.proto, v.src, v.dst, v.sport, v.dport = proto, pair[0].src, pair[0].dst, 40000, 502
				v.flags, v.payload = tcpSYN, []byte("seed")
				out = append(out, v.build(t))
			}
		}
	}
	return out
}

// TestWriteFuzzSeeds rewrites the committed seed corpora with -update.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz seeds")
	}
	writeSeeds(t, "FuzzParse", fuzzSeeds(t))
	// FuzzDemux seeds follow with the demux.
}

func writeSeeds(t *testing.T, name string, seeds [][]byte) {
	dir := filepath.Join("testdata", "fuzz", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
