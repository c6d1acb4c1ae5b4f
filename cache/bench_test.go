package cache_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/keygate/keygate/cache"
)

// warmTable returns a table holding 10,000 entries, and their ids.
func warmTable(b *testing.B) (*cache.Table[rec], []string) {
	tbl := newTable(b, func(_ context.Context, id string) (rec, uint64, error) { return rec{"active"}, 1, nil })
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
		_, _ = tbl.Get(context.Background(), ids[i])
	}
	tbl.Wait()
	b.ReportAllocs()
	return tbl, ids
}

// BenchmarkGetHit reads cached entries, 10,000 ids in turn.
func BenchmarkGetHit(b *testing.B) {
	tbl, ids := warmTable(b)
	i := 0
	for b.Loop() {
		_, _ = tbl.Get(context.Background(), ids[i%len(ids)])
		i++
	}
}

// BenchmarkApply applies changes to cached entries, as the change stream
// does.
func BenchmarkApply(b *testing.B) {
	tbl, ids := warmTable(b)
	rev := uint64(1)
	for b.Loop() {
		rev++
		tbl.Apply(ids[rev%uint64(len(ids))], entry("revoked", rev))
	}
}
