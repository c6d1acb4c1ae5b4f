package adminapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/adminapi"
)

// TestRotateRacesAChange: a key narrowed while it is being rotated never
// gets a successor looser than itself. Of a PATCH and a rotation sent
// together, a rotation that comes second either makes the successor with
// the PATCH's scopes or is refused (409 key_changed) when the PATCH came
// between its read of the key and its compare-and-set.
func TestRotateRacesAChange(t *testing.T) {
	f := newFixture(t, adminapi.Options{})
	refused := 0
	for i := range 150 {
		k := f.createKey("acme")
		var wg sync.WaitGroup
		var patchRes, rotRes resp
		wg.Go(func() {
			patchRes = f.do(req{method: "PATCH", path: "/v1/keys/" + k.ID, token: "keys", body: `{"scopes":["models:read"]}`})
		})
		wg.Go(func() {
			rotRes = f.do(req{method: "POST", path: "/v1/keys/" + k.ID + "/rotate", token: "keys", body: `{"grace":"1h"}`})
		})
		wg.Wait()
		if patchRes.StatusCode != http.StatusOK {
			t.Fatalf("try %d: PATCH: %d %s", i, patchRes.StatusCode, patchRes.body)
		}
		var rot, old keyOut
		switch {
		case rotRes.StatusCode == http.StatusConflict && strings.Contains(string(rotRes.body), `"key_changed"`):
			refused++
			continue
		case rotRes.StatusCode != http.StatusCreated || json.Unmarshal(rotRes.body, &rot) != nil:
			t.Fatalf("try %d: rotate: %d %s", i, rotRes.StatusCode, rotRes.body)
		}
		f.ok(req{method: "GET", path: "/v1/keys/" + k.ID, token: "read"}, http.StatusOK, &old)
		if !slices.Equal(rot.Scopes, old.Scopes) && !slices.Equal(rot.Scopes, []string{"*"}) {
			t.Fatalf("try %d: successor scopes %v, key's %v", i, rot.Scopes, old.Scopes)
		}
		var patched keyOut
		if json.Unmarshal(patchRes.body, &patched) == nil && patched.SuccessorID == "" && !slices.Equal(rot.Scopes, old.Scopes) {
			t.Fatalf("try %d: the PATCH to %v was written before the rotation (its answer names no successor), yet the successor has %v",
				i, old.Scopes, rot.Scopes)
		}
	}
	t.Logf("rotations refused as the key changed under them: %d of 150", refused)
}
