package leaks_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/leaks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// badChecksum is key with its last character changed.
func badChecksum(key string) string {
	last := byte('A')
	if key[len(key)-1] == 'A' {
		last = 'B'
	}
	return key[:len(key)-1] + string(last)
}

// TestReport: a signed report in GitHub's documented shape revokes the
// keygate key it names, and is answered with a label per string: keys
// revoked now or before are true positives; a string with a bad checksum,
// a well-formed key keygate does not have, and an unrelated string are
// false positives. Nothing names a token but its SHA-256.
func TestReport(t *testing.T) {
	gh := newSigner(t)
	f, ks := newURLFixture(t, gh)
	live, liveRec := f.createKey(t, apikey.LivePrefix, false)
	test, testRec := f.createKey(t, apikey.TestPrefix, false)
	revoked, revokedRec := f.createKey(t, apikey.LivePrefix, true)
	unknown, err := apikey.DefaultFormat().Mint(apikey.LivePrefix)
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{"live": live, "test": test, "revoked": revoked, "bad-checksum": badChecksum(live),
		"unknown": unknown, "unrelated": "NMIfyYncKcRALEXAMPLE"}
	body := reportBody(t,
		match(live, "keygate_api_key"),
		match(test, "keygate_api_key"),
		match(revoked, "keygate_api_key"),
		match(tokens["bad-checksum"], "keygate_api_key"),
		match(unknown, "keygate_api_key"),
		match(tokens["unrelated"], "mycompany_api_token"),
		match(live, "keygate_api_key"), // found twice: one answer
	)
	code, resp := f.report(t, gh, body)
	if code != http.StatusOK {
		t.Fatalf("report: %d %s", code, resp)
	}
	golden(t, "report.golden", named(resp, tokens))
	noTokens(t, "response", resp, live, test, revoked, tokens["bad-checksum"], unknown)
	noTokens(t, "logs", f.logs.String(), live, test, revoked, tokens["bad-checksum"], unknown)

	for _, k := range []struct {
		name string
		id   string
		at   time.Time
	}{{"live", liveRec.ID, start}, {"test", testRec.ID, start}, {"revoked", revokedRec.ID, start.Add(-time.Hour)}} {
		got := f.record(t, k.id)
		if got.RevokedAt == nil || !got.RevokedAt.Equal(k.at) {
			t.Errorf("%s key: revoked_at %v, want %v", k.name, got.RevokedAt, k.at)
		}
	}
	if !strings.Contains(f.logs.String(), liveRec.ID) {
		t.Errorf("the revocation is not logged with the key id:\n%s", f.logs.String())
	}

	// Sent again, the report changes nothing and is answered the same.
	f.clock.Advance(time.Minute)
	code, again := f.report(t, gh, body)
	if code != http.StatusOK || again != resp {
		t.Errorf("the same report again: %d %s, want 200 %s", code, again, resp)
	}
	if got := f.record(t, liveRec.ID); !got.RevokedAt.Equal(start) {
		t.Errorf("revoked again: revoked_at %v", got.RevokedAt)
	}
	if n := ks.requests.Load(); n != 1 {
		t.Errorf("GitHub's keys read %d times, want once", n)
	}

	// Each revocation is in the audit trail once, by GitHub.
	var revokedIDs []string
	for r, err := range f.trail.Read(f.ctx, audit.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Action != audit.KeyRevokeLeaked || r.Actor.Kind != audit.ActorGitHub || r.After["revoked_at"] != start.Format(time.RFC3339Nano) {
			t.Errorf("audit record %+v", r)
		}
		revokedIDs = append(revokedIDs, r.Target.ID)
	}
	slices.Sort(revokedIDs)
	want := []string{liveRec.ID, testRec.ID}
	slices.Sort(want)
	if !slices.Equal(revokedIDs, want) {
		t.Errorf("audit trail revokes %v, want %v", revokedIDs, want)
	}

	f.counters(t, map[string]float64{
		`keygate_leaks_alerts_total{label="true_positive"}`:  6,
		`keygate_leaks_alerts_total{label="false_positive"}`: 6,
		`keygate_leaks_keys_revoked_total`:                   2,
		`keygate_leaks_key_fetches_total{result="ok"}`:       1,
	})
}

// TestRefused: a report that GitHub did not sign is refused 401, one too
// long 413, one that is not an array of matches 400, and none revokes
// anything.
func TestRefused(t *testing.T) {
	gh, other := newSigner(t), newSigner(t)
	f, _ := newURLFixture(t, gh)
	live, rec := f.createKey(t, apikey.LivePrefix, false)
	body := reportBody(t, match(live, "keygate_api_key"))
	otherBody := reportBody(t, match("NMIfyYncKcRALEXAMPLE", "keygate_api_key"))
	long := append(bytes.Repeat([]byte(" "), leaks.MaxBody), body...)
	for _, c := range []struct {
		name      string
		body      []byte
		keyID     string
		signature string
		want      int
		code      string
	}{
		{"unsigned", body, "", "", 401, "invalid_signature"},
		{"no signature", body, gh.id, "", 401, "invalid_signature"},
		{"no key identifier", body, "", gh.sign(t, body), 401, "invalid_signature"},
		{"signed by another key under GitHub's identifier", body, gh.id, other.sign(t, body), 401, "invalid_signature"},
		{"the signature of another body", body, gh.id, gh.sign(t, otherBody), 401, "invalid_signature"},
		{"signature not base64", body, gh.id, "not base64!", 401, "invalid_signature"},
		{"signature cut short", body, gh.id, gh.sign(t, body)[:40], 401, "invalid_signature"},
		{"a key GitHub does not list", body, other.id, other.sign(t, body), 401, "invalid_signature"},
		{"one byte over 1 MiB", long, gh.id, gh.sign(t, long), 413, "request_too_large"},
		{"not an array", []byte(`{"token":"x"}`), gh.id, gh.sign(t, []byte(`{"token":"x"}`)), 400, "invalid_request"},
		{"not JSON", []byte(`[{"token":`), gh.id, gh.sign(t, []byte(`[{"token":`)), 400, "invalid_request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, resp := f.post(t, c.body, c.keyID, c.signature)
			var e struct {
				Error struct{ Code, Type string }
			}
			if err := json.Unmarshal([]byte(resp), &e); err != nil || code != c.want || e.Error.Code != c.code {
				t.Fatalf("%d %s, want %d with code %s", code, resp, c.want, c.code)
			}
			if got := f.record(t, rec.ID); got.Revoked() {
				t.Fatal("the key was revoked")
			}
		})
	}
	noTokens(t, "logs", f.logs.String(), live)
	f.counters(t, map[string]float64{
		`keygate_leaks_verification_failures_total{reason="unsigned"}`:      3,
		`keygate_leaks_verification_failures_total{reason="unknown_key"}`:   1,
		`keygate_leaks_verification_failures_total{reason="bad_signature"}`: 4,
		`keygate_leaks_keys_revoked_total`:                                  0,
		`keygate_leaks_alerts_total{label="false_positive"}`:                0,
	})
}

// TestOnlyPost: the endpoint is POST only on the admin port's mux.
func TestOnlyPost(t *testing.T) {
	gh := newSigner(t)
	f, _ := newURLFixture(t, gh)
	mux := http.NewServeMux()
	mux.Handle("POST "+leaks.Path, f.h)
	for _, m := range []string{http.MethodGet, http.MethodPut} {
		req, _ := http.NewRequest(m, leaks.Path, nil)
		w := &statusRecorder{}
		mux.ServeHTTP(w, req)
		if w.status != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d", m, w.status)
		}
	}
}

type statusRecorder struct {
	status int
	h      http.Header
}

func (r *statusRecorder) Header() http.Header {
	if r.h == nil {
		r.h = http.Header{}
	}
	return r.h
}
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(s int)           { r.status = s }

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s:\ngot  %s\nwant %s", name, got, want)
	}
}
