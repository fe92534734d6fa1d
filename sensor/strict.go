package sensor

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one configuration problem with the line it was found on (0 when unknown).
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	switch {
	case p.File != "" && p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	case p.File != "":
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	default:
		return p.Msg
	}
}

// Problems is a list of configuration problems; as an error it names all of them.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "; ")
}

// decodeStrict decodes node into out and reports every key that out has no field for,
// and every type error, with its line. yaml's Node.Decode has no known-fields mode, so
// the key check walks the node against out's type.
func decodeStrict(file string, node *yaml.Node, out any) Problems {
	var ps Problems
	checkKeys(file, node, reflect.TypeOf(out), "", &ps)
	if err := node.Decode(out); err != nil {
		if te, ok := err.(*yaml.TypeError); ok {
			for _, e := range te.Errors {
				ps = append(ps, Problem{File: file, Msg: e})
			}
		} else {
			ps = append(ps, Problem{File: file, Line: node.Line, Msg: err.Error()})
		}
	}
	return ps
}

func checkKeys(file string, n *yaml.Node, t reflect.Type, path string, ps *Problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if t == nodeType || t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // Decode reports the type error
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				*ps = append(*ps, Problem{File: file, Line: k.Line,
					Msg: fmt.Sprintf("unknown key %q in %s (known: %s)", k.Value, orTop(path), strings.Join(sortedKeys(fields), ", "))})
				continue
			}
			checkKeys(file, v, ft, join(path, k.Value), ps)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(file, n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), ps)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			checkKeys(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ps)
		}
	}
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	nodeType        = reflect.TypeOf(yaml.Node{})
)

// yamlFields maps yaml keys to field types, following inline structs.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

func sortedKeys(m map[string]reflect.Type) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func orTop(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}
