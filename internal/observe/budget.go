package observe

import "sync/atomic"

// budget is a number of bytes that streams take from and give back, never
// more at once than its limit.
type budget struct {
	limit int64
	used  atomic.Int64
}

// take takes n bytes, if there is room for them.
func (b *budget) take(n int64) bool {
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

// give gives back n bytes taken.
func (b *budget) give(n int64) { b.used.Add(-n) }
