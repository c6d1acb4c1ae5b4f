package audit

import (
	"encoding/json"
	"reflect"
	"time"
)

// Diff returns the fields that differ between before and after, by
// their JSON names, as they were and as they are: a field only one side
// has is on that side alone; an object present on both sides is compared
// member by member, at any depth; an array is compared whole. Two
// strings that are the same RFC 3339 instant are equal, whatever their
// zone. before or after may be nil (a creation, a removal); a value that
// is not a JSON object is compared as the member "value". Equal values
// give nil, nil.
func Diff(before, after any) (map[string]any, map[string]any) {
	b, a := diffObjects(asObject(before), asObject(after))
	if len(b) == 0 {
		b = nil
	}
	if len(a) == 0 {
		a = nil
	}
	return b, a
}

// asObject is v as a decoded JSON object: nil for nil or what cannot be
// encoded, {"value": v} for what encodes to anything else.
func asObject(v any) map[string]any {
	if v == nil {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var x any
	if decodeJSON(raw, &x) != nil || x == nil {
		return nil
	}
	if m, ok := x.(map[string]any); ok {
		return m
	}
	return map[string]any{"value": x}
}

func diffObjects(before, after map[string]any) (map[string]any, map[string]any) {
	b, a := map[string]any{}, map[string]any{}
	for name, x := range before {
		y, ok := after[name]
		if !ok {
			b[name] = x
			continue
		}
		xm, xok := x.(map[string]any)
		ym, yok := y.(map[string]any)
		if xok && yok {
			if db, da := diffObjects(xm, ym); len(db)+len(da) > 0 {
				b[name], a[name] = db, da
			}
			continue
		}
		if !equal(x, y) {
			b[name], a[name] = x, y
		}
	}
	for name, y := range after {
		if _, ok := before[name]; !ok {
			a[name] = y
		}
	}
	return b, a
}

// equal compares decoded JSON values, taking strings that are the same
// RFC 3339 instant as equal.
func equal(x, y any) bool {
	if xs, ok := x.(string); ok {
		if ys, ok := y.(string); ok && xs != ys {
			tx, errx := time.Parse(time.RFC3339Nano, xs)
			ty, erry := time.Parse(time.RFC3339Nano, ys)
			return errx == nil && erry == nil && tx.Equal(ty)
		}
	}
	if xa, ok := x.([]any); ok {
		ya, ok := y.([]any)
		if !ok || len(xa) != len(ya) {
			return false
		}
		for i := range xa {
			if !equal(xa[i], ya[i]) {
				return false
			}
		}
		return true
	}
	if xm, ok := x.(map[string]any); ok {
		ym, ok := y.(map[string]any)
		if !ok || len(xm) != len(ym) {
			return false
		}
		for k, v := range xm {
			if w, ok := ym[k]; !ok || !equal(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(x, y)
}
