package cache_test

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkGetHit reads cached entries, 10,000 ids in turn.
func BenchmarkGetHit(b *testing.B) {
	tbl := newTable(b, func(_ context.Context, id string) (rec, uint64, error) { return rec{"active"}, 1, nil })
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
		_, _ = tbl.Get(context.Background(), ids[i])
	}
	tbl.Wait()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = tbl.Get(context.Background(), ids[i%len(ids)])
		i++
	}
}

// BenchmarkApply applies changes to cached entries, as the change stream
// does.
func BenchmarkApply(b *testing.B) {
	tbl := newTable(b, func(_ context.Context, id string) (rec, uint64, error) { return rec{"active"}, 1, nil })
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
		_, _ = tbl.Get(context.Background(), ids[i])
	}
	tbl.Wait()
	b.ReportAllocs()
	rev := uint64(1)
	for b.Loop() {
		rev++
		tbl.Apply(ids[rev%uint64(len(ids))], entry("revoked", rev))
	}
}
