package authz

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/config"
)

// Bits of FuzzExtract's form argument: how the headers are sent.
const (
	formNoMap           = 1 << iota // leave attributes.request.http.headers empty
	formNoHeaderMap                 // leave header_map empty
	formValue                       // header_map entries use value, not raw_value
	formUpperNames                  // header_map names as "Authorization", "X-Api-Key"
	formNoAuthorization             // send no authorization header
	formNoAPIKey                    // send no x-api-key header
	formGrowAPIKey                  // grow pads x-api-key rather than authorization
)

// sentHeader is one header as Envoy delivers it: in the headers map, whose
// names are lowercase by contract and matched exactly, or in header_map.
type sentHeader struct {
	name, value string
	inMap       bool
}

// buildRequest builds the request FuzzExtract checks: an authorization, an
// x-api-key and one arbitrary header, in the headers map, in header_map
// (Envoy's encode_raw_headers form), or both. It returns every header it
// sent, duplicates included. grow appends that many 'k's to one of the
// credential values: huge values come from small corpus entries, which
// keeps fuzzing fast.
func buildRequest(auth, apiKey, name, value string, form uint8, grow uint16) (*authv3.AttributeContext_HttpRequest, []sentHeader) {
	if form&formGrowAPIKey != 0 {
		apiKey += strings.Repeat("k", int(grow))
	} else {
		auth += strings.Repeat("k", int(grow))
	}
	var hs []sentHeader
	if form&formNoAuthorization == 0 {
		hs = append(hs, sentHeader{name: "authorization", value: auth})
	}
	if form&formNoAPIKey == 0 {
		hs = append(hs, sentHeader{name: "x-api-key", value: apiKey})
	}
	hs = append(hs, sentHeader{name: name, value: value})

	req := &authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/v1/chat/completions"}
	var sent []sentHeader
	if form&formNoMap == 0 {
		req.Headers = map[string]string{}
		for _, h := range hs {
			req.Headers[h.name] = h.value // a later header of the same name replaces an earlier one
		}
		for n, v := range req.Headers {
			sent = append(sent, sentHeader{n, v, true})
		}
	}
	if form&formNoHeaderMap == 0 {
		req.HeaderMap = &corev3.HeaderMap{}
		for i, h := range hs {
			n := h.name
			if form&formUpperNames != 0 && i < len(hs)-1 {
				n = map[string]string{"authorization": "Authorization", "x-api-key": "X-Api-Key"}[n]
			}
			hv := &corev3.HeaderValue{Key: n}
			if form&formValue != 0 {
				hv.Value = h.value
			} else {
				hv.RawValue = []byte(h.value)
			}
			req.HeaderMap.Headers = append(req.HeaderMap.Headers, hv)
			sent = append(sent, sentHeader{n, h.value, false})
		}
	}
	return req, sent
}

// asciiEqualFold compares header names as HTTP does: ASCII letters in
// either case, everything else exactly.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// reference reads one credential header the way the spec describes it:
// "<scheme> <key>" with a case-insensitive scheme when the source has one,
// else the whole value; surrounding space ignored; over 8 KiB refused.
func reference(value, scheme string) (key string, bad credStatus) {
	if len(value) > 8<<10 {
		return "", credTooLong
	}
	v := strings.TrimSpace(value)
	if scheme == "" || v == "" {
		return v, credOK
	}
	i := strings.IndexByte(v, ' ')
	if i < 0 {
		i = len(v)
	}
	if !strings.EqualFold(v[:i], scheme) {
		return "", credBadScheme
	}
	return strings.TrimSpace(v[i:]), credOK
}

// FuzzExtract checks the credential extractor against a reference reading
// of the headers Envoy may send: it never panics; it answers credOK only
// for exactly one distinct, non-empty key of at most 8 KiB that one of the
// credential headers carries, and never when two headers carry different
// keys or any credential header is malformed.
func FuzzExtract(f *testing.F) {
	const key = "ghub_sk_live_abcdEFGH0123ijklMNOP4567qr000000"
	const other = "ghub_sk_test_abcdEFGH0123ijklMNOP4567qr000000"
	seeds := []struct {
		auth, apiKey, name, value string
		form                      uint8
		grow                      uint16
	}{
		{"Bearer " + key, "", "content-type", "application/json", 0, 0},
		{"Bearer " + key, "", "content-type", "application/json", formNoHeaderMap | formNoAPIKey, 0},
		{"Bearer " + key, "", "content-type", "application/json", formNoMap | formNoAPIKey, 0},
		{"bearer " + key, "", "x", "y", formNoMap | formValue | formUpperNames, 0},
		{"BEARER\t" + key, "", "x", "y", 0, 0},
		{"", key, "accept", "*/*", formNoAuthorization, 0},
		{"Bearer " + key, key, "accept", "*/*", 0, 0},                   // the same key twice
		{"Bearer " + key, other, "accept", "*/*", 0, 0},                 // two different keys
		{"Bearer " + key, "", "Authorization", "Bearer " + other, 0, 0}, // two authorization headers
		{"Bearer " + key, "", "X-API-KEY", other, formNoMap, 0},
		{"Bearer", "", "x", "y", 0, 0},
		{"Bearer ", "", "x", "y", 0, 0},
		{"bearer  x", "", "x", "y", 0, 0},
		{"  Bearer   " + key + "  ", "", "x", "y", 0, 0},
		{"Basic dXNlcjpwYXNz", "", "x", "y", 0, 0},
		{"Bearer a b", "", "x", "y", 0, 0},
		{"Bearerx " + key, "", "x", "y", 0, 0},
		{"", "", "", "", 0, 0},
		{"", "", "", "", formNoAuthorization | formNoAPIKey, 0},
		{"Bearer ", "", "x", "y", 0, 8 << 10},        // 8 KiB + 7
		{"Bearer ", "", "x", "y", 0, 8<<10 - 7},      // exactly 8 KiB
		{"", "", "x", "y", formGrowAPIKey, 8 << 10},  // exactly 8 KiB
		{"", "k", "x", "y", formGrowAPIKey, 8 << 10}, // one byte over
		{"Bearer ", "", "x", "y", 0, 65535},
		{"Bearer \xff\xfe\xfd", "", "x", "y", 0, 0},
		{"", "\xc3\x28", "\xff", "\xfe", 0, 0},
		{"Bearer \u00a0" + key + "\u2003", "", "x", "y", 0, 0},
		{"\u0085Bearer " + key, "", "x", "y", formNoMap, 0},
		{"Bearer " + key, "", "x-api-\u212aey", other, 0, 0}, // Kelvin sign
	}
	for _, s := range seeds {
		f.Add(s.auth, s.apiKey, s.name, s.value, s.form, s.grow)
	}

	x := &extractor{sources: config.Default().Credentials}
	f.Fuzz(func(t *testing.T, auth, apiKey, name, value string, form uint8, grow uint16) {
		req, sent := buildRequest(auth, apiKey, name, value, form, grow)
		got, st := x.key(x.requestOf(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: req}}}))

		// What the reference reading finds in the headers sent.
		// Names in the headers map match exactly (lowercase) or, when no
		// credential header has its exact name there, in any case.
		exact := false
		for _, h := range sent {
			for _, src := range x.sources {
				exact = exact || h.inMap && h.name == src.Header
			}
		}
		keys := map[string]bool{}
		bad := map[credStatus]bool{}
		for _, h := range sent {
			for _, src := range x.sources {
				if h.inMap && h.name != src.Header && (exact || !asciiEqualFold(h.name, src.Header)) || !h.inMap && !asciiEqualFold(h.name, src.Header) {
					continue
				}
				k, b := reference(h.value, src.Scheme)
				switch {
				case b != credOK:
					bad[b] = true
				case k != "":
					keys[k] = true
				}
			}
		}

		if st == credOK {
			if got == "" || len(got) > 8<<10 {
				t.Fatalf("credOK with key of length %d", len(got))
			}
			if !keys[got] {
				t.Fatalf("credOK with %q, which no credential header carries (found %v)", got, keys)
			}
		}
		switch {
		case len(bad) > 0:
			if !bad[st] {
				t.Fatalf("status %d, want one of the problems found %v (keys %v)", st, bad, keys)
			}
		case len(keys) > 1:
			if st != credConflict {
				t.Fatalf("status %d (key %q) for two different keys %v, want credConflict", st, got, keys)
			}
		case len(keys) == 1:
			if st != credOK {
				t.Fatalf("status %d for the one key %v, want credOK", st, keys)
			}
		default:
			if st != credMissing {
				t.Fatalf("status %d (key %q) with no key, want credMissing", st, got)
			}
		}
	})
}
