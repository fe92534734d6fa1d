package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Endpoints that take filters.
const (
	epObjects  = "objects"
	epObject   = "object"
	epVersions = "versions"
	epManifest = "manifest"
)

// Bounds on query parameters.
const (
	maxQueryLen   = 16 << 10
	maxMatchItems = 1000
	maxTokenLen   = 24 << 10
)

// query is a parsed filter query. It is also the content of a next token (JSON with
// short names), so a token carries the whole query.
type query struct {
	// AddedAfter is the added_after filter in µs since the epoch; nil when absent.
	AddedAfter *int64   `json:"aa,omitempty"`
	Limit      int      `json:"l,omitempty"` // 0: the server's default
	IDs        []string `json:"id,omitempty"`
	Types      []string `json:"ty,omitempty"`
	// Versions holds "first", "last", "all" and exact versions (ns since the epoch as
	// decimal strings); empty means "last".
	Versions []string `json:"v,omitempty"`
	// Specs holds spec versions; empty means the latest per object.
	Specs []string `json:"sv,omitempty"`
}

// lowerBound is the exclusive date_added bound of the query and the token position.
func lowerBound(q *query, pos *int64) (int64, bool) {
	var b int64
	has := false
	if q.AddedAfter != nil {
		b, has = *q.AddedAfter, true
	}
	if pos != nil && (!has || *pos > b) {
		b, has = *pos, true
	}
	return b, has
}

// errBadRequest is wrapped by errors that must be answered with 400.
var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// timestampRE is an RFC 3339 date-time with 0-9 fraction digits: TAXII timestamps
// have 6 digits and end in Z; clients send 0 (Elastic), 3 or 6 digits, some an offset.
var timestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|z|[+-]\d\d:\d\d)$`)

// parseTimestamp parses a timestamp parameter of any precision.
func parseTimestamp(s string) (time.Time, error) {
	if !timestampRE.MatchString(s) {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z)", s)
	}
	t, err := time.Parse(time.RFC3339Nano, strings.Replace(s, "z", "Z", 1))
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: %v", s, err)
	}
	return t, nil
}

// allowed lists the filters each endpoint takes (TAXII 2.1 sections 5.3-5.8).
var allowed = map[string][]string{
	epObjects:  {"added_after", "limit", "next", "match[id]", "match[type]", "match[version]", "match[spec_version]"},
	epManifest: {"added_after", "limit", "next", "match[id]", "match[type]", "match[version]", "match[spec_version]"},
	epObject:   {"added_after", "limit", "next", "match[version]", "match[spec_version]"},
	epVersions: {"added_after", "limit", "next", "match[spec_version]"},
}

// request is a parsed request: the query, an optional token and the raw limit.
type request struct {
	q          query
	next       string
	limitGiven bool
}

// parseQuery parses the raw query string strictly: known parameters must be well
// formed and appear once; unknown match[...] fields and other parameters the endpoint
// does not take are ignored (TAXII 3.4: servers MAY ignore fields they do not
// understand).
func parseQuery(raw string, endpoint string) (*request, error) {
	if len(raw) > maxQueryLen {
		return nil, badRequest("query string longer than %d bytes", maxQueryLen)
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, badRequest("malformed query string: %v", err)
	}
	req := &request{}
	for name, vs := range vals {
		if !slices.Contains(allowed[endpoint], name) {
			continue
		}
		if len(vs) != 1 {
			return nil, badRequest("parameter %s given %d times; it must appear once", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "added_after":
			t, err := parseTimestamp(v)
			if err != nil {
				return nil, badRequest("added_after: %v", err)
			}
			// date_added values are whole microseconds, so "after T" is "after T
			// truncated to the microsecond", whatever T's precision.
			us := t.UnixMicro()
			req.q.AddedAfter = &us
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || strconv.Itoa(n) != v {
				return nil, badRequest("limit %q: want a positive integer", v)
			}
			req.q.Limit, req.limitGiven = n, true
		case "next":
			if v == "" {
				continue // taxii2-client leaves empty values out; others may send next=
			}
			if len(v) > maxTokenLen {
				return nil, badRequest("next token too long")
			}
			req.next = v
		case "match[id]":
			ids, err := splitList(name, v)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				if !validID(id) {
					return nil, badRequest("match[id]: %q is not a STIX identifier (type--uuid)", id)
				}
			}
			req.q.IDs = ids
		case "match[type]":
			types, err := splitList(name, v)
			if err != nil {
				return nil, err
			}
			for _, t := range types {
				if !typeRE.MatchString(t) {
					return nil, badRequest("match[type]: %q is not a STIX type name", t)
				}
			}
			req.q.Types = types
		case "match[version]":
			vers, err := splitList(name, v)
			if err != nil {
				return nil, err
			}
			for i, ver := range vers {
				switch ver {
				case "first", "last", "all":
				default:
					t, err := parseTimestamp(ver)
					if err != nil {
						return nil, badRequest("match[version]: want first, last, all or a timestamp: %v", err)
					}
					vers[i] = strconv.FormatInt(t.UnixNano(), 10)
				}
			}
			if slices.Contains(vers, "all") && len(vers) > 1 {
				return nil, badRequest("match[version]: all must not be combined with other values")
			}
			req.q.Versions = vers
		case "match[spec_version]":
			specs, err := splitList(name, v)
			if err != nil {
				return nil, err
			}
			for _, s := range specs {
				if !specRE.MatchString(s) {
					return nil, badRequest("match[spec_version]: %q is not a version like 2.1", s)
				}
			}
			req.q.Specs = specs
		}
	}
	return req, nil
}

// splitList splits a comma-separated match value: no empty items, no duplicates.
func splitList(name, v string) ([]string, error) {
	items := strings.Split(v, ",")
	if len(items) > maxMatchItems {
		return nil, badRequest("%s: more than %d values", name, maxMatchItems)
	}
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		if it == "" {
			return nil, badRequest("%s: empty value (values are separated by a comma, without spaces)", name)
		}
		if seen[it] {
			return nil, badRequest("%s: %q given twice", name, it)
		}
		seen[it] = true
	}
	return items, nil
}

// token is the content of a next token.
type token struct {
	V         int    `json:"v"`
	Endpoint  string `json:"e"`
	Coll      string `json:"c"`
	Object    string `json:"o,omitempty"`
	Principal string `json:"p"` // SHA-256 prefix of the principal
	Pos       int64  `json:"a"` // date_added (µs) of the last object served
	Issued    int64  `json:"t"` // unix seconds
	Query     query  `json:"q"`
}

const (
	tokenVersion = 1
	tokenDomain  = "pcapot taxii next v1\x00"
)

// Token errors.
var (
	errTokenMalformed = errors.New("malformed next token")
	errTokenSignature = errors.New("next token signature does not verify (issued by another server or before a restart)")
	errTokenExpired   = errors.New("next token expired")
)

func principalTag(p string) string {
	sum := sha256.Sum256([]byte("pcapot principal\x00" + p))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

func sealToken(key []byte, t *token) (string, error) {
	payload, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	p := base64.RawURLEncoding.EncodeToString(payload)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tokenDomain))
	m.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// openToken verifies and decodes a next token. ttl <= 0 disables expiry.
func openToken(key []byte, s string, now time.Time, ttl time.Duration) (*token, error) {
	p, sig, ok := strings.Cut(s, ".")
	if !ok || p == "" || strings.Contains(sig, ".") {
		return nil, errTokenMalformed
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(mac) != sha256.Size {
		return nil, errTokenMalformed
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return nil, errTokenMalformed
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(tokenDomain))
	m.Write([]byte(p))
	if !hmac.Equal(mac, m.Sum(nil)) {
		return nil, errTokenSignature
	}
	var t token
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil || t.V != tokenVersion {
		return nil, errTokenMalformed
	}
	if ttl > 0 && now.Sub(time.Unix(t.Issued, 0)) > ttl {
		return nil, errTokenExpired
	}
	return &t, nil
}
