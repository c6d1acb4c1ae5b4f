// Command schemagen turns a Kubernetes OpenAPI v2 document (swagger.json, as
// shipped in the k8s.io/kubernetes module under api/openapi-spec/) into the
// JSON schema files kubeconform reads: one file per kind, named
// {kind}-{group}-{version}.json (group's first label; core kinds have no
// group part), each standalone (the definitions it needs are copied in) and
// strict (objects reject unknown fields), so validation works offline.
//
//	go run ./k8s/internal/schemagen -in swagger.json -out DIR
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type gvk struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

func main() {
	in := flag.String("in", "", "swagger.json (OpenAPI v2) of Kubernetes")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *in == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	n, err := run(*in, *out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("schemagen: %d schemas in %s\n", n, *out)
}

func run(in, out string) (int, error) {
	raw, err := os.ReadFile(in)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, fmt.Errorf("%s: %w", in, err)
	}
	defs := doc.Definitions
	if len(defs) == 0 {
		return 0, fmt.Errorf("%s: no definitions", in)
	}
	for name, d := range defs {
		fixup(name, d)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 0, err
	}
	names := make([]string, 0, len(defs))
	for name := range defs {
		names = append(names, name)
	}
	sort.Strings(names)
	n := 0
	for _, name := range names {
		d := defs[name]
		gvks, _ := d["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			b, _ := json.Marshal(g)
			var k gvk
			if err := json.Unmarshal(b, &k); err != nil || k.Kind == "" {
				continue
			}
			// kubeconform: lower(kind) + "-" + first label of group + "-" + version.
			file := strings.ToLower(k.Kind)
			if k.Group != "" {
				file += "-" + strings.ToLower(strings.Split(k.Group, ".")[0])
			}
			file += "-" + strings.ToLower(k.Version) + ".json"
			s := standalone(name, defs)
			b, err := json.Marshal(s)
			if err != nil {
				return n, err
			}
			if err := os.WriteFile(filepath.Join(out, file), b, 0o644); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// fixup makes a swagger definition usable as a JSON schema for YAML
// manifests: int-or-string and quantity accept both forms, and objects with
// declared properties refuse unknown ones (strict).
func fixup(name string, d map[string]any) {
	switch {
	case strings.HasSuffix(name, ".util.intstr.IntOrString"), strings.HasSuffix(name, ".api.resource.Quantity"):
		for k := range d {
			if k != "description" {
				delete(d, k)
			}
		}
		d["anyOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}, map[string]any{"type": "number"}}
		if strings.HasSuffix(name, "IntOrString") {
			d["anyOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
		}
		return
	}
	walk(d)
}

func walk(v any) {
	switch t := v.(type) {
	case map[string]any:
		if props, ok := t["properties"].(map[string]any); ok && len(props) > 0 {
			if _, set := t["additionalProperties"]; !set {
				t["additionalProperties"] = false
			}
		}
		// Formats such as int32/byte are documentation here, not checks.
		delete(t, "format")
		for _, c := range t {
			walk(c)
		}
	case []any:
		for _, c := range t {
			walk(c)
		}
	}
}

const refPrefix = "#/definitions/"

// standalone returns the schema of definition name with every definition it
// reaches copied into its "definitions".
func standalone(name string, defs map[string]map[string]any) map[string]any {
	need := map[string]bool{}
	var visit func(v any)
	visit = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if r, ok := t["$ref"].(string); ok && strings.HasPrefix(r, refPrefix) {
				dn := strings.TrimPrefix(r, refPrefix)
				if !need[dn] {
					need[dn] = true
					visit(defs[dn])
				}
			}
			for _, c := range t {
				visit(c)
			}
		case []any:
			for _, c := range t {
				visit(c)
			}
		}
	}
	root := defs[name]
	visit(root)
	out := map[string]any{"$schema": "http://json-schema.org/draft-04/schema#"}
	for k, v := range root {
		out[k] = v
	}
	if len(need) > 0 {
		sub := map[string]any{}
		for dn := range need {
			sub[dn] = defs[dn]
		}
		out["definitions"] = sub
	}
	return out
}
