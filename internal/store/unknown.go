package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// KeyVersion is the newest key record format this keygate reads. A
// record names its format in "v" (absent: 1).
const KeyVersion = 2

// knownKeyFields are the members of a key record this keygate
// understands, from the Key struct's JSON tags.
var knownKeyFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[Key]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

// readUnknown keeps the members of the record b that Key does not know:
// a restriction added by a newer keygate, met during a rolling upgrade or
// after a rollback. Such a key is denied (see Unsupported), and rewriting
// the record keeps them.
func (k *Key) readUnknown(b []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for name, v := range all {
		if !knownKeyFields[name] {
			if k.unknown == nil {
				k.unknown = map[string]json.RawMessage{}
			}
			k.unknown[name] = v
		}
	}
	return nil
}

// Unsupported names what makes the record one this keygate must not
// enforce: members it does not know, or a newer format. Empty for a
// record it reads whole.
func (k *Key) Unsupported() []string {
	var out []string
	for name := range k.unknown {
		out = append(out, name)
	}
	slices.Sort(out)
	if k.V > KeyVersion {
		out = append(out, fmt.Sprintf("v=%d", k.V))
	}
	return out
}

// MarshalJSON writes the record with the members it did not know, as
// read.
func (k *Key) MarshalJSON() ([]byte, error) {
	type plain Key
	b, err := json.Marshal((*plain)(k))
	if err != nil || len(k.unknown) == 0 {
		return b, err
	}
	extra, err := json.Marshal(k.unknown)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte("}"))
	return append(append(b, ','), extra[1:]...), nil
}
