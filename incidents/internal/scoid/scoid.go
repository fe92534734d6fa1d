// Package scoid computes the deterministic identifiers of STIX 2.1 Cyber-observable
// Objects (STIX 2.1 sections 2.9 and 3.4): a UUIDv5 in the STIX namespace over the
// RFC 8785 (JCS) canonical JSON of the object's ID contributing properties.
//
// The builder (package incidents) and the validator (package incidents/stixcheck) both
// use it: the builder names the contributing properties it sets, the validator takes
// them from the emitted JSON through Contributing, so a property the builder forgets
// to hash shows up as an id mismatch.
package scoid

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// Namespace is the STIX 2.1 namespace for SCO UUIDv5 ids.
var Namespace = uuid.MustParse("00abedb4-aa42-466c-9c01-fed23315a9b7")

// ErrNoContributing reports that an object has none of its type's ID contributing
// properties (or its type has none); the spec then requires a UUIDv4 id.
var ErrNoContributing = errors.New("no ID contributing properties")

// contributing lists the ID contributing properties of each SCO type (STIX 2.1
// section 6). process has none: its ids are always UUIDv4.
var contributing = map[string][]string{
	"artifact":             {"hashes", "payload_bin"},
	"autonomous-system":    {"number"},
	"directory":            {"path"},
	"domain-name":          {"value"},
	"email-addr":           {"value"},
	"email-message":        {"from_ref", "subject", "body"},
	"file":                 {"hashes", "name", "extensions", "parent_directory_ref"},
	"ipv4-addr":            {"value"},
	"ipv6-addr":            {"value"},
	"mac-addr":             {"value"},
	"mutex":                {"name"},
	"network-traffic":      {"start", "end", "src_ref", "dst_ref", "src_port", "dst_port", "protocols", "extensions"},
	"process":              nil,
	"software":             {"name", "cpe", "swid", "vendor", "version"},
	"url":                  {"value"},
	"user-account":         {"account_type", "user_id", "account_login"},
	"windows-registry-key": {"key", "values"},
	"x509-certificate":     {"hashes", "serial_number"},
}

// IsSCO reports whether typ is a STIX 2.1 Cyber-observable Object type.
func IsSCO(typ string) bool {
	_, ok := contributing[typ]
	return ok
}

// Contributing returns the names of the ID contributing properties of an SCO type, nil
// for an unknown type or one without any.
func Contributing(typ string) []string {
	return slices.Clone(contributing[typ])
}

// hashPreference is the order in which one hash of a "hashes" dictionary is chosen to
// contribute to an id (the rule of the OASIS python-stix2 implementation).
var hashPreference = []string{"MD5", "SHA-1", "SHA-256", "SHA-512"}

// ID returns "<typ>--<uuidv5>" for an SCO whose properties are obj (a JSON object as
// decoded by encoding/json, or built from Go strings, integers, bools, slices and
// maps). Only typ's contributing properties present in obj are hashed; a "hashes"
// dictionary contributes one hash only: MD5, SHA-1, SHA-256 or SHA-512, the first
// present in that order, else the alphabetically first key. It returns an error
// wrapping ErrNoContributing when none is present.
func ID(typ string, obj map[string]any) (string, error) {
	props, ok := contributing[typ]
	if !ok {
		return "", fmt.Errorf("scoid: %q is not an SCO type", typ)
	}
	name := make(map[string]any, len(props))
	for _, p := range props {
		v, ok := obj[p]
		if !ok || v == nil {
			continue
		}
		if p == "hashes" {
			h, err := oneHash(v)
			if err != nil {
				return "", fmt.Errorf("scoid: %s: %w", typ, err)
			}
			v = h
		}
		name[p] = v
	}
	if len(name) == 0 {
		return "", fmt.Errorf("scoid: %s: %w", typ, ErrNoContributing)
	}
	b, err := Canonical(name)
	if err != nil {
		return "", fmt.Errorf("scoid: %s: %w", typ, err)
	}
	return typ + "--" + uuid.NewSHA1(Namespace, b).String(), nil
}

func oneHash(v any) (map[string]any, error) {
	var hashes map[string]any
	switch h := v.(type) {
	case map[string]any:
		hashes = h
	case map[string]string:
		hashes = make(map[string]any, len(h))
		for k, s := range h {
			hashes[k] = s
		}
	default:
		return nil, fmt.Errorf("hashes is a %T, not a dictionary", v)
	}
	if len(hashes) == 0 {
		return nil, errors.New("hashes is empty")
	}
	for _, k := range hashPreference {
		if s, ok := hashes[k]; ok {
			return map[string]any{k: s}, nil
		}
	}
	keys := make([]string, 0, len(hashes))
	for k := range hashes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return map[string]any{keys[0]: hashes[keys[0]]}, nil
}
