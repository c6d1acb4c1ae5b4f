package adminapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/adminapi"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/store"
)

// BenchmarkListKeys100k lists 100,000 keys through the API page by page,
// at the default page size and at the largest, and reports how long a
// whole listing takes (target: under 10 s), how long the index takes to
// read the bucket, and the index's memory per key.
func BenchmarkListKeys100k(b *testing.B) {
	const n = 100_000
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	begin := time.Now()
	f := newFixtureWith(b, adminapi.Options{}, func(js jetstream.JetStream) { bulkKeys(b, js, n) })
	var page struct{ Data []json.RawMessage }
	f.ok(req{method: "GET", path: "/v1/keys?limit=1", token: "read"}, http.StatusOK, &page) // the index has read the bucket
	started := time.Since(begin)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	for range b.N {
		for _, limit := range []int{100, 1000} {
			start := time.Now()
			got, pages := 0, 0
			cursor := ""
			for {
				var p struct {
					Data       []json.RawMessage
					NextCursor *string `json:"next_cursor"`
				}
				q := fmt.Sprintf("/v1/keys?limit=%d", limit)
				if cursor != "" {
					q += "&cursor=" + cursor
				}
				f.ok(req{method: "GET", path: q, token: "read"}, http.StatusOK, &p)
				got, pages = got+len(p.Data), pages+1
				if p.NextCursor == nil {
					break
				}
				cursor = *p.NextCursor
			}
			if got != n {
				b.Fatalf("listed %d keys, want %d", got, n)
			}
			b.ReportMetric(time.Since(start).Seconds(), fmt.Sprintf("s/list_limit%d", limit))
			b.ReportMetric(float64(time.Since(start).Microseconds())/float64(pages), fmt.Sprintf("us/page_limit%d", limit))
		}
	}
	b.ReportMetric(started.Seconds(), "s/seed_and_index")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap_B/key")
}

// bulkKeys writes n key records and their id index entries straight into
// the keys bucket, as an import would, and a use for every tenth key.
func bulkKeys(b testing.TB, js jetstream.JetStream, n int) {
	format := apikey.DefaultFormat()
	now := time.Now().UTC()
	for i := range n {
		plain, _ := format.Mint(apikey.LivePrefix)
		id := fmt.Sprintf("key_bulk%012d", i)
		hash := apikey.Hash(plain)
		rec, _ := json.Marshal(&store.Key{ID: id, Hash: hash, AccountID: fmt.Sprintf("acct%d", i%500), Env: store.EnvLive,
			Scopes: []string{"chat:send", "models:read"}, Masked: format.Mask(plain), CreatedAt: now})
		idx, _ := json.Marshal(map[string]string{"hash": hash})
		for subj, v := range map[string][]byte{"$KV.keygate_keys." + store.HashEntry(hash): rec, "$KV.keygate_keys.id." + id: idx} {
			if _, err := js.PublishAsync(subj, v); err != nil {
				b.Fatal(err)
			}
		}
		if i%10 == 0 {
			u, _ := json.Marshal(&store.Usage{KeyID: id, LastUsedAt: &now, Days: map[string]map[string]int64{now.Format(store.DayFormat): {"ok": 3}}})
			if _, err := js.PublishAsync("$KV.keygate_usage."+id, u); err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("bulk key creation did not finish")
	}
}
