package incidents

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every error about malformed input (ids, keys, sessions).
var ErrInvalid = errors.New("invalid")

const maxSensorID = 63

// ValidSensorID reports whether id can be a sensor id: 1 to 63 characters of
// [a-z0-9-], starting and ending with a letter or digit.
func ValidSensorID(id string) error {
	if id == "" || len(id) > maxSensorID {
		return fmt.Errorf("incidents: sensor id %q: %w: want 1-%d characters", id, ErrInvalid, maxSensorID)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("incidents: sensor id %q: %w: only a-z, 0-9 and '-' are allowed", id, ErrInvalid)
		}
	}
	if id[0] == '-' || id[len(id)-1] == '-' {
		return fmt.Errorf("incidents: sensor id %q: %w: must not start or end with '-'", id, ErrInvalid)
	}
	return nil
}

// ValidUUID reports whether s is a UUID in canonical form: 36 characters, lowercase
// hex digits and hyphens at positions 8, 13, 18 and 23.
func ValidUUID(s string) error {
	if len(s) != 36 {
		return fmt.Errorf("incidents: uuid %q: %w: want 36 characters", s, ErrInvalid)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("incidents: uuid %q: %w: want '-' at %d", s, ErrInvalid, i)
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return fmt.Errorf("incidents: uuid %q: %w: want lowercase hex digits", s, ErrInvalid)
			}
		}
	}
	return nil
}

// Keys returns the object keys of a session's pcap and bundle:
// "<sensor-id>/<yyyy>/<mm>/<dd>/<session-uuid>.pcap" and ".json", dated by the UTC
// day of start. Both ids are checked, so no attacker-controlled text ever reaches a key.
func Keys(sensorID string, start time.Time, sessionID string) (pcapKey, bundleKey string, err error) {
	if err := ValidSensorID(sensorID); err != nil {
		return "", "", err
	}
	if err := ValidUUID(sessionID); err != nil {
		return "", "", fmt.Errorf("incidents: session id: %w", err)
	}
	if err := validTime(start); err != nil {
		return "", "", fmt.Errorf("incidents: session start: %w", err)
	}
	prefix := sensorID + "/" + start.UTC().Format("2006/01/02") + "/" + sessionID
	return prefix + ".pcap", prefix + ".json", nil
}

// PartKey returns the key of part n of a session's pcap: pcapKey itself for n <= 1,
// "<session-uuid>.part<n>.pcap" beside it for n > 1.
func PartKey(pcapKey string, n int) (string, error) {
	k, err := parseKey(pcapKey)
	if err != nil {
		return "", err
	}
	if k.ext != "pcap" || k.part != 0 {
		return "", fmt.Errorf("incidents: key %q: %w: not a first-part pcap key", pcapKey, ErrInvalid)
	}
	if n <= 1 {
		return pcapKey, nil
	}
	return strings.TrimSuffix(pcapKey, ".pcap") + ".part" + strconv.Itoa(n) + ".pcap", nil
}

// FileKey returns the key of the n-th file (n >= 1) an attacker uploaded in the
// session: "<session-uuid>.file<n>.bin" beside the pcap. Never the attacker's name.
func FileKey(pcapKey string, n int) (string, error) {
	k, err := parseKey(pcapKey)
	if err != nil {
		return "", err
	}
	if k.ext != "pcap" || k.part != 0 || n < 1 {
		return "", fmt.Errorf("incidents: key %q, file %d: %w: want a first-part pcap key and n >= 1", pcapKey, n, ErrInvalid)
	}
	return strings.TrimSuffix(pcapKey, ".pcap") + ".file" + strconv.Itoa(n) + ".bin", nil
}

// ValidKey reports whether key is a key this package makes: a session's pcap (or pcap
// part) or bundle key. Readers use it before fetching a key named in a stored bundle.
func ValidKey(key string) error {
	_, err := parseKey(key)
	return err
}

type parsedKey struct {
	sensorID, sessionID string
	day                 time.Time
	part                int // 0 for the first part and for bundles
	ext                 string
}

func parseKey(key string) (parsedKey, error) {
	bad := func(why string) (parsedKey, error) {
		return parsedKey{}, fmt.Errorf("incidents: key %q: %w: %s", key, ErrInvalid, why)
	}
	segs := strings.Split(key, "/")
	if len(segs) != 5 {
		return bad("want <sensor-id>/<yyyy>/<mm>/<dd>/<session-uuid>.<ext>")
	}
	var k parsedKey
	k.sensorID = segs[0]
	if err := ValidSensorID(k.sensorID); err != nil {
		return bad("bad sensor id")
	}
	if len(segs[1]) != 4 || len(segs[2]) != 2 || len(segs[3]) != 2 {
		return bad("bad date")
	}
	day, err := time.Parse("2006/01/02", segs[1]+"/"+segs[2]+"/"+segs[3])
	if err != nil {
		return bad("bad date")
	}
	k.day = day
	name := segs[4]
	if len(name) < 36 {
		return bad("bad file name")
	}
	k.sessionID, name = name[:36], name[36:]
	if ValidUUID(k.sessionID) != nil {
		return bad("bad session id")
	}
	switch {
	case name == ".pcap":
		k.ext = "pcap"
	case name == ".json":
		k.ext = "json"
	case strings.HasPrefix(name, ".part") && strings.HasSuffix(name, ".pcap"):
		digits := strings.TrimSuffix(strings.TrimPrefix(name, ".part"), ".pcap")
		n, err := strconv.Atoi(digits)
		if err != nil || n < 2 || strconv.Itoa(n) != digits {
			return bad("bad part number")
		}
		k.ext, k.part = "pcap", n
	case strings.HasPrefix(name, ".file") && strings.HasSuffix(name, ".bin"):
		digits := strings.TrimSuffix(strings.TrimPrefix(name, ".file"), ".bin")
		n, err := strconv.Atoi(digits)
		if err != nil || n < 1 || strconv.Itoa(n) != digits {
			return bad("bad file number")
		}
		k.ext, k.part = "bin", n
	default:
		return bad("want .pcap, .part<n>.pcap, .file<n>.bin or .json")
	}
	return k, nil
}

// validTime accepts times whose UTC year has four digits and is not before 1970.
func validTime(t time.Time) error {
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return fmt.Errorf("%w: time %s is out of range", ErrInvalid, t.UTC().Format(time.RFC3339))
	}
	return nil
}
