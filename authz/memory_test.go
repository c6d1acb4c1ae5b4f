package authz_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/store"
)

// BenchmarkMemory1MKeys fills the key cache with 1,000,000 keys (over
// 10,000 accounts, as fills from a store would) and reports the heap and
// resident memory it costs per cached key, the caches' fixed size at the
// default configuration included.
func BenchmarkMemory1MKeys(b *testing.B) {
	const n, accounts = 1_000_000, 10_000
	for range b.N {
		heap0, rss0 := memory()
		keys, err := cache.New(cache.Options{MaxEntries: n, MaxNegative: 100_000, NegativeTTL: time.Minute},
			func(_ context.Context, hash string) (*authz.Key, uint64, error) {
				i, _ := strconv.Atoi(hash[:7])
				return authz.NewKey(storeKey(i, accounts)), 1, nil
			})
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			if _, err := keys.Get(context.Background(), fmt.Sprintf("%07d", i)+apikey.Hash(strconv.Itoa(i))[7:]); err != nil {
				b.Fatal(err)
			}
			if i%10_000 == 0 {
				keys.Wait() // let the cache's buffers drain, as they do between real requests
			}
		}
		keys.Wait()
		cached, _ := keys.Len()
		heap1, rss1 := memory()
		b.ReportMetric(float64(cached), "keys")
		b.ReportMetric(float64(heap1-heap0)/float64(cached), "heap-B/key")
		b.ReportMetric(float64(rss1-rss0)/float64(cached), "rss-B/key")
		b.ReportMetric(0, "ns/op")
		runtime.KeepAlive(keys)
		keys.Close()
	}
}

// storeKey is a realistic key record: a 24-character id, one of a few
// scope lists, an optional rate limit.
func storeKey(i, accounts int) *store.Key {
	id, _ := apikey.NewID()
	k := &store.Key{ID: id, Hash: apikey.Hash(id), AccountID: fmt.Sprintf("acct_%05d", i%accounts), Env: store.EnvLive,
		Scopes: [][]string{{"*"}, {"chat:send", "models:read"}, {"embeddings:create"}}[i%3], CreatedAt: time.Now()}
	if i%2 == 0 {
		k.RateLimit = &store.RateLimit{Requests: 600, Window: store.Duration(time.Minute)}
	}
	return k
}

// memory returns the live heap after a collection, and the resident set
// once freed memory is returned to the system.
func memory() (heap, rss int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	return int64(m.HeapAlloc), rss
}
