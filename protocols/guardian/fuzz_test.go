package guardian

import (
	"bytes"
	"testing"
	"time"
)

// The seed corpora are committed in testdata/fuzz/FuzzCommand and
// testdata/fuzz/FuzzHandle: every report in both formats, set commands, security
// codes, unknown and malformed commands, noise and pipelined input.

// FuzzCommand checks that SplitCommand and ParseCommand never panic, never read past
// their input, and agree with each other.
func FuzzCommand(f *testing.F) {
	f.Add([]byte("\x01I20100\r\n"), 0)
	f.Fuzz(func(t *testing.T, b []byte, sec int) {
		sec = min(max(sec, 0), 8)
		n := SkipNoise(b)
		if n > len(b) || (n < len(b) && b[n] != SOH) {
			t.Fatalf("SkipNoise = %d for %q", n, b)
		}
		b = b[n:]
		for _, final := range []bool{false, true} {
			cmd, consumed, ok := SplitCommand(b, sec, final)
			if !ok {
				if final && len(b) > 0 {
					t.Fatalf("final split of %q incomplete", b)
				}
				continue
			}
			if consumed < len(cmd) || consumed > len(b) || len(cmd) > MaxCommandLen || !bytes.Equal(cmd, b[:len(cmd)]) {
				t.Fatalf("split %q: cmd %q consumed %d", b, cmd, consumed)
			}
			c, err := ParseCommand(cmd, sec)
			if err != nil {
				continue
			}
			if len(c.Security) != sec || len(c.Function) != 3 || c.Device < 0 || c.Device > 99 {
				t.Fatalf("parsed %+v from %q", c, cmd)
			}
			if re := "\x01" + c.Security + c.Code() + string(c.Data); re != string(cmd) {
				t.Fatalf("command %q re-encodes as %q", cmd, re)
			}
		}
	})
}

// FuzzHandle feeds arbitrary input through the handler's framing and command
// handling and checks every answer: never a panic, every response framed (the 9999
// reply, a display report or a computer report whose checksum verifies), and one
// event per command.
func FuzzHandle(f *testing.F) {
	f.Add([]byte("\x01I20100\r\n\x01i20500"), false)
	f.Fuzz(func(t *testing.T, b []byte, secured bool) {
		cfg := testConfig()
		if secured {
			cfg.SecurityCode = "123456"
		}
		h := newTestHandler(t, cfg, func() time.Time { return testNow.Add(13 * time.Hour) })
		sess := newSession(t)
		c := &conversation{h: h, s: sess}
		var out []byte
		// Feed the input in two parts, as two reads would deliver it.
		half := len(b) / 2
		out, rest, err := c.drain(out, append([]byte(nil), b[:half]...), false)
		if err != nil {
			t.Fatal(err)
		}
		out, rest, err = c.drain(out, append(rest, b[half:]...), true)
		if err != nil || len(rest) != 0 {
			t.Fatalf("drain: rest %q, %v", rest, err)
		}
		c.flushNoise()
		for len(out) > 0 {
			if out[0] != SOH {
				t.Fatalf("response does not start with SOH: %q", out)
			}
			end := bytes.IndexByte(out, ETX)
			if end < 0 {
				t.Fatalf("response without ETX: %q", out)
			}
			r := out[:end+1]
			switch {
			case bytes.Equal(r, NotUnderstood):
			case bytes.HasPrefix(r, []byte("\x01\r\n")):
				if !bytes.HasSuffix(r, []byte("\r\n\r\n\x03")) {
					t.Fatalf("display report without its closing blank line: %q", r)
				}
			default:
				if !VerifyChecksum(r) {
					t.Fatalf("computer report with a bad checksum: %q", r)
				}
			}
			out = out[end+1:]
		}
		if c.commands > len(sess.Events()) {
			t.Fatalf("%d commands, %d events", c.commands, len(sess.Events()))
		}
	})
}
