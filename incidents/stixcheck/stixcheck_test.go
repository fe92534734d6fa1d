package stixcheck

import (
	"strings"
	"testing"
)

// The OASIS schemas/ tree beside the clone (shared/ in CI).
const schemaDir = "../../../shared/stix2-json-schemas"

func TestNewErrors(t *testing.T) {
	if _, err := New(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no schema for") {
		t.Errorf("New(empty dir) = %v, want a 'no schema for' error", err)
	}
	if _, err := New(schemaDir + "/does-not-exist"); err == nil {
		t.Error("New(missing dir): no error")
	}
	if _, err := New(schemaDir, WithExtensionSchema("extension-definition--x", []byte("{"))); err == nil {
		t.Error("New with a broken extension schema: no error")
	}
}

// TestCheckObject uses objects of the STIX 2.1 specification's examples.
func TestCheckObject(t *testing.T) {
	c, err := New(schemaDir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, obj, wantErr string // wantErr "" means valid
	}{
		{"spec ipv4-addr", `{"type":"ipv4-addr","spec_version":"2.1","id":"ipv4-addr--9cf4a8ec-7640-5f40-a006-79942896168b","value":"198.51.100.2"}`, ""},
		{"ipv4-addr with another address's id", `{"type":"ipv4-addr","spec_version":"2.1","id":"ipv4-addr--9cf4a8ec-7640-5f40-a006-79942896168b","value":"198.51.100.3"}`, "deterministic"},
		{"process (always UUIDv4)", `{"type":"process","spec_version":"2.1","id":"process--f52a906a-0dfc-40bd-92f1-e7778ead38a9","pid":1221}`, ""},
		{"process with a UUIDv5", `{"type":"process","spec_version":"2.1","id":"process--9cf4a8ec-7640-5f40-a006-79942896168b","pid":1221}`, "UUIDv4"},
		{"identity", `{"type":"identity","spec_version":"2.1","id":"identity--311b2d2d-f010-4473-83ec-1edf84858f4c","created":"2015-12-21T19:59:11.000Z","modified":"2015-12-21T19:59:11.000Z","name":"Cole Powers","identity_class":"individual"}`, ""},
		{"identity modified before created", `{"type":"identity","spec_version":"2.1","id":"identity--311b2d2d-f010-4473-83ec-1edf84858f4c","created":"2015-12-21T19:59:11.000Z","modified":"2015-12-21T19:59:10.999Z","name":"Cole Powers"}`, "modified must not be earlier"},
		{"relationship stop equal to start", `{"type":"relationship","spec_version":"2.1","id":"relationship--57b56a43-b8b0-4cba-9deb-34e3e1faed9e","created":"2016-04-06T20:06:37.000Z","modified":"2016-04-06T20:06:37.000Z","relationship_type":"indicates","source_ref":"indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f","target_ref":"malware--31b940d4-6f7f-459a-80ea-9c1f17b5891b","start_time":"2016-04-06T20:06:37Z","stop_time":"2016-04-06T20:06:37Z"}`, "stop_time must be later than start_time"},
		{"leap day that does not exist", `{"type":"identity","spec_version":"2.1","id":"identity--311b2d2d-f010-4473-83ec-1edf84858f4c","created":"2015-02-29T19:59:11.000Z","modified":"2015-12-21T19:59:11.000Z","name":"x"}`, "not a real date"},
		{"ref that is not an identifier", `{"type":"identity","spec_version":"2.1","id":"identity--311b2d2d-f010-4473-83ec-1edf84858f4c","created":"2015-12-21T19:59:11.000Z","modified":"2015-12-21T19:59:11.000Z","name":"x","x_thing_ref":"nope"}`, "not a STIX identifier"},
		{"no id", `{"type":"identity"}`, "must have string 'id' and 'type'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := c.CheckObject([]byte(tc.obj))
			if tc.wantErr == "" {
				for _, err := range errs {
					t.Error(err)
				}
				return
			}
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.wantErr) {
					return
				}
			}
			t.Errorf("no error containing %q; got %v", tc.wantErr, errs)
		})
	}
}

func TestCheckPattern(t *testing.T) {
	tests := []struct {
		pattern string
		ok      bool
	}{
		{"[ipv4-addr:value = '203.0.113.7']", true},
		{"[file:name = 'it\\'s [here]'] AND [ipv6-addr:value = '2001:db8::1']", true},
		{"ipv4-addr:value = '1.2.3.4'", false},
		{"[ipv4-addr:value = '1.2.3.4'", false},
		{"[ipv4-addr:value = '1.2.3.4]", false},
		{"[a]]", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			if err := checkPattern(tc.pattern); (err == nil) != tc.ok {
				t.Errorf("checkPattern = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
