package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// decodeYAML overlays the YAML document b on c. The document is checked
// against c's type first, so that every problem is reported with the
// field as the file writes it (cache.max_keys, routes[0].method) and its
// line; only a document that passes is decoded.
func decodeYAML(b []byte, c *Config) []error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return []error{err} // not YAML: the parser's line and column
	}
	ch := checker{budget: maxValues}
	if errs := ch.node(&doc, reflect.TypeOf(c).Elem(), ""); len(errs) > 0 {
		return errs
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return []error{err}
	}
	return nil
}

var unmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

// maxValues bounds the values checked in one file, aliases expanded: a
// few aliases can stand for billions of values.
const maxValues = 100_000

// checker checks a document against a type.
type checker struct {
	budget int // values left to check
}

// node returns the problems of node n as the value of field, of type t.
// A null value is no problem: the field keeps its default (a list
// becomes empty), as yaml decodes it.
func (ch *checker) node(n *yaml.Node, t reflect.Type, field string) []error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if ch.budget--; ch.budget == 0 {
		return []error{fieldError("", n.Line, "the file holds more than %d values, aliases expanded", maxValues)}
	}
	if ch.budget < 0 {
		return nil // reported once
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	if n.ShortTag() == "!!null" {
		return nil
	}
	switch {
	case t.Kind() == reflect.Struct:
		return ch.mapping(n, t, field)
	case t.Kind() == reflect.Map:
		return ch.mapOf(n, t, field)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []error{wrongKind(field, n, "a list")}
		}
		var errs []error
		for i, e := range n.Content {
			errs = append(errs, ch.node(e, t.Elem(), fmt.Sprintf("%s[%d]", field, i))...)
		}
		return errs
	case n.Kind != yaml.ScalarNode:
		return []error{wrongKind(field, n, scalarKind(t))}
	}
	if msg := checkScalar(n, t); msg != "" {
		return []error{fieldError(field, n.Line, "%s", msg)}
	}
	return nil
}

// mapping checks the fields of a struct of type t, written as the
// mapping n.
func (ch *checker) mapping(n *yaml.Node, t reflect.Type, field string) []error {
	if n.Kind != yaml.MappingNode {
		return []error{wrongKind(field, n, "fields (name: value)")}
	}
	fields := yamlFields(t)
	seen := map[string]int{}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" { // "<<: *defaults" merges another mapping's fields in
			errs = append(errs, ch.merge(v, t, field)...)
			continue
		}
		name := k.Value
		if field != "" {
			name = field + "." + k.Value
		}
		ft, ok := fields[k.Value]
		switch line, dup := seen[k.Value]; {
		case !ok:
			errs = append(errs, unknownField(name, k, fields))
		case dup:
			errs = append(errs, fmt.Errorf("%s: given twice, on lines %d and %d", name, line, k.Line))
		default:
			seen[k.Value] = k.Line
			errs = append(errs, ch.node(v, ft, name)...)
		}
	}
	return errs
}

// mapOf checks a map of type t, written as the mapping n: its keys are
// scalars, each once, named in field as field.key.
func (ch *checker) mapOf(n *yaml.Node, t reflect.Type, field string) []error {
	if n.Kind != yaml.MappingNode {
		return []error{wrongKind(field, n, "fields (name: value)")}
	}
	seen := map[string]int{}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			errs = append(errs, ch.merge(v, t, field)...)
			continue
		}
		name := field + "." + k.Value
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fieldError(field, k.Line, "a name must be a single value"))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			errs = append(errs, fmt.Errorf("%s: given twice, on lines %d and %d", name, line, k.Line))
			continue
		}
		seen[k.Value] = k.Line
		errs = append(errs, ch.node(v, t.Elem(), name)...)
	}
	return errs
}

// merge checks the mapping, or list of mappings, merged into one of
// type t.
func (ch *checker) merge(n *yaml.Node, t reflect.Type, field string) []error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.SequenceNode {
		return ch.node(n, t, field)
	}
	var errs []error
	for _, e := range n.Content {
		errs = append(errs, ch.node(e, t, field)...)
	}
	return errs
}

// checkScalar says what is wrong with the scalar n as a value of type t,
// or "" if nothing is.
func checkScalar(n *yaml.Node, t reflect.Type) string {
	v := quote(n.Value)
	switch {
	case reflect.PointerTo(t).Implements(unmarshaler):
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return err.Error()
		}
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		// 1e6 is a whole number; 1.5 is not, and yaml would drop the .5.
		var f float64
		if n.Decode(&f) != nil || f != math.Trunc(f) {
			return v + " is not a whole number"
		}
		if n.Decode(reflect.New(t).Interface()) != nil {
			return v + " is out of range"
		}
	case t.Kind() == reflect.Bool:
		if n.Decode(new(bool)) != nil {
			return v + " is not true or false"
		}
	case t.Kind() == reflect.String: // any scalar reads as text
	default:
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return v + " is not a " + t.String()
		}
	}
	return ""
}

// scalarKind names the values of type t for people.
func scalarKind(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return "a Go duration like 30s"
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "a whole number"
	case t.Kind() == reflect.Bool:
		return "true or false"
	}
	return "a single value"
}

// yamlFields maps the YAML names of struct type t's fields to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case opts == "inline":
			maps.Copy(m, yamlFields(f.Type))
		case name != "" && name != "-":
			m[name] = f.Type
		}
	}
	return m
}

// fieldError is a problem with field, on line; field "" is the whole file.
func fieldError(field string, line int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...) + fmt.Sprintf(" (line %d)", line)
	if field == "" {
		return errors.New(msg)
	}
	return errors.New(field + ": " + msg)
}

func wrongKind(field string, n *yaml.Node, want string) error {
	got := "a list"
	switch n.Kind {
	case yaml.MappingNode:
		got = "fields (name: value)"
	case yaml.ScalarNode:
		got = quote(n.Value)
	}
	return fieldError(field, n.Line, "want %s, got %s", want, got)
}

// unknownField reports a field name the section does not have, with the
// nearest name it does have if one is close.
func unknownField(name string, k *yaml.Node, fields map[string]reflect.Type) error {
	best, bestDist := "", 3 // suggest names at most 2 edits away
	for f := range fields {
		if d := editDistance(k.Value, f); d < bestDist || (d == bestDist && f < best) {
			best, bestDist = f, d
		}
	}
	if best == "" {
		return fieldError(name, k.Line, "unknown field")
	}
	return fmt.Errorf("%s: unknown field (line %d); did you mean %s?", name, k.Line, strings.TrimSuffix(name, k.Value)+best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// quote writes a value from the file for an error message, cut to 40
// bytes.
func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return fmt.Sprintf("%q", s)
}
