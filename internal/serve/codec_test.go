package serve_test

import (
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// TestConcurrentAllowsKeepTheirOwnValues sends allows for several keys at
// once: the server recycles each allow once marshalled, so a response that
// were reused too early would carry another key's identity (and -race
// would see the reuse).
func TestConcurrentAllowsKeepTheirOwnValues(t *testing.T) {
	ns := natstest.Run(t)
	e := start(t, testConfig(t, ns.ClientURL()))
	st := openStore(t, e, ns)
	keys := make([]string, 4)
	recs := make([]*store.Key, len(keys))
	for i := range keys {
		account := string(rune('a'+i)) + "-corp"
		setBalance(t, e.ctx, st, account, 1e6)
		keys[i], recs[i] = createKey(t, e.ctx, st, account)
		waitCode(t, e, keys[i], 200)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range 200 {
				i := (g + n) % len(keys)
				req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
					Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/models", Headers: map[string]string{"authorization": "Bearer " + keys[i]}},
				}}}
				resp, err := e.client.Check(e.ctx, req)
				// A 503 (a lease that did not come within its timeout on
				// a loaded machine) is sent again, as clients do.
				for try := 0; err == nil && resp.GetDeniedResponse().GetStatus().GetCode() == 503 && try < 20; try++ {
					resp, err = e.client.Check(e.ctx, req)
				}
				if err != nil {
					t.Error(err)
					return
				}
				md := resp.GetDynamicMetadata().GetFields()
				hs := resp.GetOkResponse().GetHeaders()
				if len(hs) < 2 || hs[0].GetHeader().GetValue() != recs[i].ID || hs[1].GetHeader().GetValue() != recs[i].AccountID ||
					md["key_id"].GetStringValue() != recs[i].ID || md["account_id"].GetStringValue() != recs[i].AccountID {
					t.Errorf("check for %s answered %v", recs[i].ID, resp)
					return
				}
			}
		})
	}
	wg.Wait()
}
