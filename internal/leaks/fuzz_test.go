package leaks_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/leaks"
)

var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

// FuzzReport: whatever GitHub's key signs, the endpoint answers 200 with
// one label per distinct string and type, by SHA-256 and in order, or
// 400; it never answers with a key it was sent.
func FuzzReport(f *testing.F) {
	gh := newSigner(f)
	fx, _ := newURLFixture(f, gh)
	live, _ := fx.createKey(f, apikey.LivePrefix, false)
	for _, seed := range []string{
		`[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]`,
		`[{"token":"` + live + `","type":"keygate_api_key","url":"","source":"content"},{"token":"` + badChecksum(live) + `","type":"t"}]`,
		`[{"token":"\u0067` + live[1:] + `","type":"a"},{"token":"` + live + `","type":"b"},{"token":"` + live + `","type":"a"}]`,
		`[]`, `null`, `[null]`, `{}`, `[{"token":1}]`, `[{"token":"x","extra":{"deep":[1,2]}}]`, "",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, leaks.Path, bytes.NewReader(body))
		req.Header.Set(leaks.HeaderKeyID, gh.id)
		req.Header.Set(leaks.HeaderSignature, gh.sign(t, body))
		w := httptest.NewRecorder()
		fx.h.ServeHTTP(w, req)
		var matches []leaks.Match
		parseErr := json.Unmarshal(body, &matches)
		switch {
		case parseErr != nil && w.Code == http.StatusBadRequest:
			return
		case parseErr != nil || w.Code != http.StatusOK:
			t.Fatalf("%d %s for a body that parses: %v", w.Code, w.Body, parseErr)
		}
		dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
		dec.DisallowUnknownFields()
		var labels []leaks.Label
		if err := dec.Decode(&labels); err != nil {
			t.Fatalf("answer %s: %v", w.Body, err)
		}
		var want []leaks.Label
		seen := map[[2]string]bool{}
		for _, m := range matches {
			h := apikey.Hash(m.Token)
			if !seen[[2]string{h, m.Type}] {
				seen[[2]string{h, m.Type}] = true
				want = append(want, leaks.Label{TokenHash: h, TokenType: m.Type})
			}
		}
		if len(labels) != len(want) {
			t.Fatalf("%d labels for %d distinct strings: %s", len(labels), len(want), w.Body)
		}
		for i, l := range labels {
			if l.TokenHash != want[i].TokenHash || l.TokenType != want[i].TokenType || !hexHash.MatchString(l.TokenHash) ||
				(l.Label != leaks.TruePositive && l.Label != leaks.FalsePositive) {
				t.Fatalf("label %d is %+v, want %+v", i, l, want[i])
			}
		}
		// Nothing but the labels: the strings are there only as hashes
		// (and a type only as GitHub sent it).
		if b, _ := json.Marshal(labels); w.Body.String() != string(b)+"\n" {
			t.Fatalf("the answer holds more than its labels: %s", w.Body)
		}
	})
}
