// Package stixcheck validates STIX 2.1 bundles and objects the way the OASIS validator
// does, in Go: every object against the JSON schema of its type (the OASIS
// cti-stix2-json-schemas, read from disk), then the specification's MUST rules that
// schemas cannot express, and a few stricter pcapot policies.
//
// Checks, per object:
//   - JSON schema of the object's type (core or cyber-observable-core for unknown
//     types), with format assertions;
//   - spec_version "2.1" present on every object (pcapot policy; SCOs may omit it in
//     STIX);
//   - timestamps are real calendar times (Feb 30 and hour 24 fail);
//   - modified >= created; last_observed >= first_observed; last_seen >= first_seen;
//     network-traffic end >= start; stop_time > start_time; valid_until > valid_from;
//   - every *_ref/*_refs property (also inside extensions) holds identifiers, and the
//     spec's target-type rules hold (created_by_ref -> identity, sighting_of_ref -> SDO,
//     network-traffic src_ref -> address, observed-data object_refs -> SCO/SRO with at
//     least one SCO, ...);
//   - SCO ids equal the deterministic UUIDv5 recomputed from the ID contributing
//     properties (UUIDv4 when there are none); SDO/SRO ids are UUIDv4 (a SHOULD in
//     STIX, required here);
//   - extension-definition has created_by_ref;
//   - Incident Core Extension payloads use its enumerations; payloads of extensions
//     given to New with WithExtensionSchema validate against their schema;
//   - indicator patterns of type stix are bracketed with balanced quotes (the full
//     STIX pattern grammar is not parsed).
//
// and per bundle: type, id and a non-empty objects list; every reference resolves to an
// object of the bundle; no id (and no UUID across types) appears twice; extension
// payloads match the extension_types of extension-definitions in the bundle.
//
// The bundle schema of the OASIS repository is not used: it rejects every bundle that
// holds an incident (see shared/reference/stix-taxii.md section 2.2).
package stixcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pcapot/pcapot/incidents/internal/scoid"
)

// SchemaBase is the $id prefix of the OASIS STIX 2.1 schemas.
const SchemaBase = "http://raw.githubusercontent.com/oasis-open/cti-stix2-json-schemas/stix2.1/schemas/"

// IncidentCoreExtensionID is the OASIS Incident Core Extension.
const IncidentCoreExtensionID = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"

// Checker validates STIX objects. It is safe for concurrent use.
type Checker struct {
	byType     map[string]*jsonschema.Schema
	core       *jsonschema.Schema
	scoCore    *jsonschema.Schema
	extensions map[string]*jsonschema.Schema
}

// Option configures New.
type Option func(*options)

type options struct {
	extensions map[string][]byte
}

// WithExtensionSchema makes the checker validate the payload of extension id (an
// "extension-definition--<uuid>") against schema, a JSON schema document.
func WithExtensionSchema(id string, schema []byte) Option {
	return func(o *options) { o.extensions[id] = schema }
}

// helper schema files of common/ that are not object types.
var notTypes = []string{"core", "cyber-observable-core", "bundle", "properties", "binary", "dictionary",
	"extension", "external-reference", "granular-marking", "hashes-type", "hex", "identifier",
	"kill-chain-phase", "timestamp", "url-regex"}

// New compiles the OASIS schemas found in schemaDir (the repository's schemas/ tree:
// common/, sdos/, sros/, observables/), each registered under its own $id, so that no
// network access is needed.
func New(schemaDir string, opts ...Option) (*Checker, error) {
	o := options{extensions: map[string][]byte{}}
	for _, opt := range opts {
		opt(&o)
	}
	comp := jsonschema.NewCompiler()
	comp.AssertFormat()
	types := map[string]string{} // type -> $id
	root := os.DirFS(schemaDir)
	err := fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		m, _ := doc.(map[string]any)
		id, _ := m["$id"].(string)
		if !strings.HasPrefix(id, SchemaBase) {
			return fmt.Errorf("%s: $id %q does not start with %s", p, id, SchemaBase)
		}
		if err := comp.AddResource(id, doc); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if name := strings.TrimSuffix(path.Base(p), ".json"); !slices.Contains(notTypes, name) {
			types[name] = id
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stixcheck: load schemas from %s: %w", schemaDir, err)
	}
	for _, typ := range []string{"incident", "observed-data", "network-traffic", "artifact", "relationship", "sighting", "extension-definition"} {
		if types[typ] == "" {
			return nil, fmt.Errorf("stixcheck: %s has no schema for %s; is it the schemas/ tree of cti-stix2-json-schemas?", schemaDir, typ)
		}
	}
	c := &Checker{byType: map[string]*jsonschema.Schema{}, extensions: map[string]*jsonschema.Schema{}}
	for typ, id := range types {
		if c.byType[typ], err = comp.Compile(id); err != nil {
			return nil, fmt.Errorf("stixcheck: compile %s: %w", id, err)
		}
	}
	if c.core, err = comp.Compile(SchemaBase + "common/core.json"); err != nil {
		return nil, fmt.Errorf("stixcheck: %w", err)
	}
	if c.scoCore, err = comp.Compile(SchemaBase + "common/cyber-observable-core.json"); err != nil {
		return nil, fmt.Errorf("stixcheck: %w", err)
	}
	for id, b := range o.extensions {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("stixcheck: extension schema %s: %w", id, err)
		}
		loc := "urn:stixcheck:extension:" + id
		if m, ok := doc.(map[string]any); ok {
			if sid, ok := m["$id"].(string); ok {
				loc = sid
			}
		}
		if err := comp.AddResource(loc, doc); err != nil {
			return nil, fmt.Errorf("stixcheck: extension schema %s: %w", id, err)
		}
		if c.extensions[id], err = comp.Compile(loc); err != nil {
			return nil, fmt.Errorf("stixcheck: extension schema %s: %w", id, err)
		}
	}
	return c, nil
}

// CheckBundle validates a serialized bundle and every object in it, and returns every
// problem found (nil when the bundle is valid).
func (c *Checker) CheckBundle(data []byte) []error {
	b, err := decodeObject("bundle", data)
	if err != nil {
		return []error{err}
	}
	var errs []error
	bid, _ := b["id"].(string)
	if t, _ := b["type"].(string); t != "bundle" {
		errs = append(errs, fmt.Errorf("bundle: type is %q, want bundle", t))
	}
	if !strings.HasPrefix(bid, "bundle--") || uuidVersion(bid) != 4 {
		errs = append(errs, fmt.Errorf("bundle: id %q is not bundle--<uuid4>", bid))
	}
	list, ok := b["objects"].([]any)
	if !ok || len(list) == 0 {
		return append(errs, errors.New("bundle: objects is not a non-empty list"))
	}
	objs := make([]map[string]any, 0, len(list))
	for i, v := range list {
		o, ok := v.(map[string]any)
		if !ok {
			errs = append(errs, fmt.Errorf("bundle: objects[%d] is not a JSON object", i))
			continue
		}
		errs = append(errs, c.checkObject(o)...)
		objs = append(objs, o)
	}
	return append(errs, checkCrossRefs(objs)...)
}

// CheckObject validates one serialized object on its own (references are checked for
// form and target type, not resolved).
func (c *Checker) CheckObject(data []byte) []error {
	o, err := decodeObject("object", data)
	if err != nil {
		return []error{err}
	}
	return c.checkObject(o)
}

// decodeObject parses a JSON object, keeping numbers as json.Number.
func decodeObject(what string, data []byte) (map[string]any, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: not JSON: %w", what, err)
	}
	o, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: not a JSON object", what)
	}
	return o, nil
}

// report collects the problems of one object.
type report struct {
	id   string
	errs []error
}

func (r *report) add(format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", r.id, fmt.Sprintf(format, args...)))
}

func (c *Checker) checkObject(o map[string]any) []error {
	typ, _ := o["type"].(string)
	id, _ := o["id"].(string)
	r := &report{id: id}
	if id == "" || typ == "" {
		r.id = fmt.Sprintf("object of type %q", typ)
		r.add("an object must have string 'id' and 'type' properties")
		return r.errs
	}
	sch := c.byType[typ]
	if sch == nil {
		sch = c.scoCore
		if _, ok := o["created"]; ok {
			sch = c.core
		}
	}
	if err := sch.Validate(any(o)); err != nil {
		r.add("schema: %v", oneLine(err))
	}
	if sv, _ := o["spec_version"].(string); sv != "2.1" {
		r.add("spec_version is %q, want \"2.1\"", sv)
	}
	if !strings.HasPrefix(id, typ+"--") {
		r.add("id does not start with %q", typ+"--")
	}
	checkTimes(r, typ, o)
	checkRefs(r, typ, o)
	checkID(r, typ, id, o)
	if typ == "extension-definition" {
		if _, ok := o["created_by_ref"]; !ok {
			r.add("extension-definition has no created_by_ref (required by STIX 2.1 section 7.3)")
		}
	}
	if typ == "indicator" {
		if pt, _ := o["pattern_type"].(string); pt == "stix" {
			p, _ := o["pattern"].(string)
			if err := checkPattern(p); err != nil {
				r.add("pattern %q: %v", p, err)
			}
		}
	}
	c.checkExtensions(r, typ, o)
	return r.errs
}

// oneLine flattens a multi-line validation error.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

var sdoTypes = []string{"attack-pattern", "campaign", "course-of-action", "grouping", "identity", "incident",
	"indicator", "infrastructure", "intrusion-set", "location", "malware", "malware-analysis", "note",
	"observed-data", "opinion", "report", "threat-actor", "tool", "vulnerability"}

var sroTypes = []string{"relationship", "sighting"}

func isSDO(typ string) bool { return slices.Contains(sdoTypes, typ) }
func isSRO(typ string) bool { return slices.Contains(sroTypes, typ) }

// timestamp properties per type (STIX 2.1; the validator's "timestamp" MUST check).
var timeProps = map[string][]string{
	"campaign":             {"first_seen", "last_seen"},
	"infrastructure":       {"first_seen", "last_seen"},
	"intrusion-set":        {"first_seen", "last_seen"},
	"malware":              {"first_seen", "last_seen"},
	"threat-actor":         {"first_seen", "last_seen"},
	"indicator":            {"valid_from", "valid_until"},
	"observed-data":        {"first_observed", "last_observed"},
	"relationship":         {"start_time", "stop_time"},
	"sighting":             {"first_seen", "last_seen"},
	"report":               {"published"},
	"malware-analysis":     {"submitted", "analysis_started", "analysis_ended"},
	"language-content":     {"object_modified"},
	"network-traffic":      {"start", "end"},
	"file":                 {"ctime", "mtime", "atime"},
	"directory":            {"ctime", "mtime", "atime"},
	"process":              {"created_time"},
	"email-message":        {"date"},
	"user-account":         {"account_created", "account_expires", "credential_last_changed", "account_first_login", "account_last_login"},
	"windows-registry-key": {"modified_time"},
	"x509-certificate":     {"validity_not_before", "validity_not_after"},
}

// ordered pairs (earlier, later, strict) per type; "*" applies to every type.
var timeOrder = map[string][][3]string{
	"*":               {{"created", "modified", ""}},
	"observed-data":   {{"first_observed", "last_observed", ""}},
	"sighting":        {{"first_seen", "last_seen", ""}},
	"campaign":        {{"first_seen", "last_seen", ""}},
	"infrastructure":  {{"first_seen", "last_seen", ""}},
	"intrusion-set":   {{"first_seen", "last_seen", ""}},
	"malware":         {{"first_seen", "last_seen", ""}},
	"threat-actor":    {{"first_seen", "last_seen", ""}},
	"network-traffic": {{"start", "end", ""}},
	"relationship":    {{"start_time", "stop_time", "strict"}},
	"indicator":       {{"valid_from", "valid_until", "strict"}},
}

var timestampRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$`)

func checkTimes(r *report, typ string, o map[string]any) {
	parsed := map[string]time.Time{}
	for _, p := range append([]string{"created", "modified"}, timeProps[typ]...) {
		v, ok := o[p]
		if !ok {
			continue
		}
		s, _ := v.(string)
		if !timestampRE.MatchString(s) {
			r.add("%s %q is not a STIX timestamp (RFC 3339, UTC, Z)", p, s)
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			r.add("%s %q is not a real date and time: %v", p, s, err)
			continue
		}
		parsed[p] = t
	}
	for _, pair := range append(timeOrder["*"], timeOrder[typ]...) {
		a, aok := parsed[pair[0]]
		b, bok := parsed[pair[1]]
		if !aok || !bok {
			continue
		}
		if pair[2] == "strict" && !b.After(a) {
			r.add("%s must be later than %s", pair[1], pair[0])
		} else if b.Before(a) {
			r.add("%s must not be earlier than %s", pair[1], pair[0])
		}
	}
}

var identifierRE = regexp.MustCompile(`^([a-z][a-z0-9-]+[a-z0-9])--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$`)

var addrTypes = []string{"ipv4-addr", "ipv6-addr", "mac-addr", "domain-name"}

// refTargets: allowed target types of reference properties, per source type ("*": any
// source). A nil list means any type; the special names "SDO", "SCO", "SRO" stand for
// the categories.
var refTargets = map[string]map[string][]string{
	"*": {
		"created_by_ref":      {"identity"},
		"object_marking_refs": {"marking-definition"},
	},
	"observed-data":        {"object_refs": {"SCO", "SRO"}},
	"sighting":             {"sighting_of_ref": {"SDO"}, "observed_data_refs": {"observed-data"}, "where_sighted_refs": {"identity", "location"}},
	"relationship":         {"source_ref": {"SDO", "SCO"}, "target_ref": {"SDO", "SCO"}},
	"network-traffic":      {"src_ref": addrTypes, "dst_ref": addrTypes, "src_payload_ref": {"artifact"}, "dst_payload_ref": {"artifact"}, "encapsulates_refs": {"network-traffic"}, "encapsulated_by_ref": {"network-traffic"}},
	"ipv4-addr":            {"resolves_to_refs": {"mac-addr"}, "belongs_to_refs": {"autonomous-system"}},
	"ipv6-addr":            {"resolves_to_refs": {"mac-addr"}, "belongs_to_refs": {"autonomous-system"}},
	"domain-name":          {"resolves_to_refs": {"ipv4-addr", "ipv6-addr", "domain-name"}},
	"email-addr":           {"belongs_to_ref": {"user-account"}},
	"email-message":        {"from_ref": {"email-addr"}, "sender_ref": {"email-addr"}, "to_refs": {"email-addr"}, "cc_refs": {"email-addr"}, "bcc_refs": {"email-addr"}, "raw_email_ref": {"artifact"}},
	"file":                 {"parent_directory_ref": {"directory"}, "contains_refs": {"SCO"}, "content_ref": {"artifact"}},
	"directory":            {"contains_refs": {"file", "directory"}},
	"process":              {"opened_connection_refs": {"network-traffic"}, "creator_user_ref": {"user-account"}, "image_ref": {"file"}, "parent_ref": {"process"}, "child_refs": {"process"}},
	"malware":              {"sample_refs": {"file", "artifact"}, "operating_system_refs": {"software"}},
	"windows-registry-key": {"creator_user_ref": {"user-account"}},
}

func allowed(target string, kinds []string) bool {
	for _, k := range kinds {
		switch {
		case k == target,
			k == "SDO" && isSDO(target),
			k == "SRO" && isSRO(target),
			k == "SCO" && scoid.IsSCO(target):
			return true
		}
	}
	return false
}

// refType returns the type part of an identifier.
func refType(id string) string {
	t, _, _ := strings.Cut(id, "--")
	return t
}

func checkRefs(r *report, typ string, o map[string]any) {
	walkRefs(o, "", func(where, ref string) {
		if !identifierRE.MatchString(ref) {
			r.add("%s: %q is not a STIX identifier", where, ref)
		}
	}, func(where string) {
		r.add("%s: a reference property must hold an identifier (or a list of them)", where)
	})
	for src, props := range refTargets {
		if src != "*" && src != typ {
			continue
		}
		for prop, kinds := range props {
			for _, ref := range refList(o[prop]) {
				if t := refType(ref); !allowed(t, kinds) {
					r.add("%s must reference %s, not %s", prop, strings.Join(kinds, " or "), t)
				}
			}
		}
	}
	if typ == "observed-data" {
		if _, ok := o["object_refs"]; ok && !slices.ContainsFunc(refList(o["object_refs"]), func(ref string) bool { return scoid.IsSCO(refType(ref)) }) {
			r.add("object_refs must contain at least one SCO reference")
		}
	}
}

// walkRefs calls fn for every string held by a *_ref or *_refs property anywhere in v,
// and bad for such a property holding something else.
func walkRefs(v any, where string, fn func(where, ref string), bad func(where string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			w := k
			if where != "" {
				w = where + "." + k
			}
			switch {
			case strings.HasSuffix(k, "_ref"):
				if s, ok := e.(string); ok {
					fn(w, s)
				} else {
					bad(w)
				}
			case strings.HasSuffix(k, "_refs"):
				list, ok := e.([]any)
				if !ok {
					bad(w)
					continue
				}
				for _, item := range list {
					if s, ok := item.(string); ok {
						fn(w, s)
					} else {
						bad(w)
					}
				}
			default:
				walkRefs(e, w, fn, bad)
			}
		}
	case []any:
		for i, e := range x {
			walkRefs(e, fmt.Sprintf("%s[%d]", where, i), fn, bad)
		}
	}
}

func refList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// uuidVersion returns the version of the UUID in a STIX identifier, 0 if none.
func uuidVersion(id string) int {
	_, u, ok := strings.Cut(id, "--")
	if !ok {
		return 0
	}
	parsed, err := uuid.Parse(u)
	if err != nil || len(u) != 36 {
		return 0
	}
	return int(parsed.Version())
}

func checkID(r *report, typ, id string, o map[string]any) {
	if !scoid.IsSCO(typ) {
		if v := uuidVersion(id); v != 4 && identifierRE.MatchString(id) {
			r.add("SDO/SRO/meta ids should be UUIDv4, this is version %d", v)
		}
		return
	}
	want, err := scoid.ID(typ, o)
	switch {
	case errors.Is(err, scoid.ErrNoContributing):
		if v := uuidVersion(id); v != 4 {
			r.add("an SCO without ID contributing properties must have a UUIDv4 id, this is version %d", v)
		}
	case err != nil:
		r.add("cannot recompute the deterministic id: %v", err)
	case want != id:
		r.add("id is not the deterministic UUIDv5 of its ID contributing properties %v: want %s", scoid.Contributing(typ), want)
	}
}

var determinations = []string{"blocked", "failed-attempt", "false-positive", "low-value", "successful-attempt", "suspected"}

func (c *Checker) checkExtensions(r *report, typ string, o map[string]any) {
	exts, _ := o["extensions"].(map[string]any)
	for key, v := range exts {
		payload, _ := v.(map[string]any)
		if key == IncidentCoreExtensionID {
			checkIncidentCore(r, typ, payload)
		}
		if sch := c.extensions[key]; sch != nil {
			if err := sch.Validate(v); err != nil {
				r.add("extension %s: %v", key, oneLine(err))
			}
		}
	}
}

func checkIncidentCore(r *report, typ string, p map[string]any) {
	if typ != "incident" {
		r.add("the Incident Core Extension applies to incidents only")
	}
	if et, _ := p["extension_type"].(string); et != "property-extension" {
		r.add("Incident Core Extension: extension_type is %q, want property-extension", et)
	}
	if d, _ := p["determination"].(string); !slices.Contains(determinations, d) {
		r.add("Incident Core Extension: determination %q is not one of %v", d, determinations)
	}
	if s, _ := p["investigation_status"].(string); s == "" {
		r.add("Incident Core Extension: investigation_status is required")
	}
	for _, list := range []string{"detection_methods", "incident_types"} {
		v, ok := p[list]
		if !ok {
			continue
		}
		items, ok := v.([]any)
		if !ok || len(items) == 0 {
			r.add("Incident Core Extension: %s must be a non-empty list", list)
			continue
		}
		for _, it := range items {
			if s, _ := it.(string); s == "" {
				r.add("Incident Core Extension: %s holds a non-string or empty value", list)
			}
		}
	}
	if v, ok := p["criticality"]; ok {
		n, isNum := v.(json.Number)
		i, err := n.Int64()
		if !isNum || err != nil || i < 0 || i > 100 {
			r.add("Incident Core Extension: criticality must be an integer 0-100")
		}
	}
}

// checkPattern checks the outline of a STIX pattern: one or more bracketed observation
// expressions with balanced single-quoted strings.
func checkPattern(p string) error {
	p = strings.TrimSpace(p)
	if !strings.HasPrefix(p, "[") {
		return errors.New("does not start with '['")
	}
	depth, inString := 0, false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case inString && c == '\\':
			i++
		case c == '\'':
			inString = !inString
		case inString:
		case c == '[':
			depth++
		case c == ']':
			depth--
			if depth < 0 {
				return errors.New("unbalanced ']'")
			}
		}
	}
	if inString {
		return errors.New("unterminated string")
	}
	if depth != 0 {
		return errors.New("unbalanced '['")
	}
	return nil
}

// checkCrossRefs checks what needs the whole bundle.
func checkCrossRefs(objs []map[string]any) []error {
	var errs []error
	byID := map[string]map[string]any{}
	uuidType := map[string]string{}
	for _, o := range objs {
		id, _ := o["id"].(string)
		typ, _ := o["type"].(string)
		if id == "" {
			continue
		}
		if prev, dup := byID[id]; dup {
			if scoid.IsSCO(typ) || prev["modified"] == o["modified"] {
				errs = append(errs, fmt.Errorf("%s: appears twice in the bundle", id))
			}
		}
		byID[id] = o
		if _, u, ok := strings.Cut(id, "--"); ok {
			u = strings.ToLower(u)
			if t, seen := uuidType[u]; seen && t != typ {
				errs = append(errs, fmt.Errorf("%s: its UUID is also used by a %s", id, t))
			}
			uuidType[u] = typ
		}
	}
	for _, o := range objs {
		id, _ := o["id"].(string)
		walkRefs(o, "", func(where, ref string) {
			if _, ok := byID[ref]; !ok {
				errs = append(errs, fmt.Errorf("%s: %s references %s, which is not in the bundle", id, where, ref))
			}
		}, func(string) {})
		exts, _ := o["extensions"].(map[string]any)
		for key, v := range exts {
			def, ok := byID[key]
			if !ok {
				continue
			}
			payload, _ := v.(map[string]any)
			et, _ := payload["extension_type"].(string)
			if types, _ := def["extension_types"].([]any); !slices.Contains(types, any(et)) {
				errs = append(errs, fmt.Errorf("%s: extension %s is used as %q, which its definition does not list", id, key, et))
			}
		}
	}
	return errs
}
