package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"github.com/keygate/keygate/internal/apikey"
)

// secretWords name a secret wherever they stand in a field's name:
// "hash", "key_hash", "client_secret", "password".
var secretWords = map[string]bool{
	"hash": true, "hashes": true, "secret": true, "secrets": true, "password": true, "passwords": true,
	"passwd": true, "credential": true, "credentials": true, "creds": true, "authorization": true,
	"plaintext": true, "seed": true,
}

// secretLast name a secret as a field name's last word: "key", "api_key",
// "token", "access_token"; but not "key_id", "tokens" or "token_limit".
var secretLast = map[string]bool{"key": true, "token": true, "nkey": true, "jwt": true}

// secretName reports whether a field's name says it holds a secret.
func secretName(name string) bool {
	words := nameWords(name)
	for _, w := range words {
		if secretWords[w] {
			return true
		}
	}
	return len(words) > 0 && secretLast[words[len(words)-1]]
}

// nameWords splits a field name into its lower-case words at
// non-letters-or-digits and where case changes: "apiKey", "api_key",
// "API-Key" and "APIKey" are all "api", "key".
func nameWords(name string) []string {
	var words []string
	var w []rune
	rs := []rune(name)
	for i, c := range rs {
		alnum := unicode.IsLetter(c) || unicode.IsDigit(c)
		if len(w) > 0 && (!alnum || unicode.IsUpper(c) && i > 0 && (!unicode.IsUpper(rs[i-1]) ||
			i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
			words, w = append(words, string(w)), w[:0]
		}
		if alnum {
			w = append(w, unicode.ToLower(c))
		}
	}
	if len(w) > 0 {
		words = append(words, string(w))
	}
	return words
}

// secretValue returns whether a string holds, anywhere in it, what
// format f would take for a key but for its checksum (so a mistyped key
// too), or 64 hex digits (a key's SHA-256): a key pasted into a key's
// name is found as well as a key on its own. A masked key is not a key.
func secretValue(f apikey.Format) func(string) bool {
	f.Checksum = false
	return func(s string) bool {
		for _, p := range f.Prefixes {
			for rest := s; rest != ""; rest = rest[1:] {
				i := strings.Index(rest, p)
				if i < 0 {
					break
				}
				if rest = rest[i:]; len(rest) >= f.Length && f.Check(rest[:f.Length]) == nil {
					return true
				}
			}
		}
		return hasHexRun(s, 64)
	}
}

// hasHexRun reports whether s has n hex digits in a row.
func hasHexRun(s string, n int) bool {
	run := 0
	for i := range len(s) {
		if c := s[i]; '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' {
			if run++; run >= n {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

// scrub returns m as JSON values (objects, arrays, strings, numbers,
// booleans, null) without any member whose name says it is a secret and
// without any string that looks like one, at any depth. Nothing is left
// of an object that only held secrets but {}.
func scrub(m map[string]any, secret func(string) bool) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var v map[string]any
	if err := decodeJSON(b, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return scrubValue(v, secret).(map[string]any), nil
}

// decodeJSON decodes b into v with numbers kept exact.
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// scrubValue drops secrets from a decoded JSON value; it returns nil
// for a string that looks like a secret.
func scrubValue(v any, secret func(string) bool) any {
	switch v := v.(type) {
	case map[string]any:
		for name, x := range v {
			if secretName(name) || secret(name) {
				delete(v, name)
				continue
			}
			if x = scrubValue(x, secret); x == nil && v[name] != nil {
				delete(v, name)
				continue
			}
			v[name] = x
		}
		return v
	case []any:
		out := v[:0]
		for _, x := range v {
			if y := scrubValue(x, secret); y != nil || x == nil {
				out = append(out, y)
			}
		}
		return out
	case string:
		if secret(v) {
			return nil
		}
	}
	return v
}
