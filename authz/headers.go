package authz

import (
	"strconv"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/keygate/keygate/internal/ratelimit"
)

// headerCache shares rate-limit headers between responses: a response
// only reads them once built, and the numbers repeat.
type headerCache struct {
	numbers [len(rateHeaders)][maxCachedNumber + 1]atomic.Pointer[corev3.HeaderValueOption]
}

// maxCachedNumber bounds the numeric header values kept, so that the cache
// stays small whatever the limits.
const maxCachedNumber = 10_000

// rateHeaders are the rate-limit headers, in the order rate adds them.
var rateHeaders = [...]string{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}

// number returns rate-limit header i with value n.
func (c *headerCache) number(i int, n int64) *corev3.HeaderValueOption {
	if n < 0 || n > maxCachedNumber {
		return header(rateHeaders[i], strconv.FormatInt(n, 10))
	}
	p := &c.numbers[i][n]
	if h := p.Load(); h != nil {
		return h
	}
	h := header(rateHeaders[i], strconv.FormatInt(n, 10))
	p.Store(h)
	return h
}

// appendRate appends the three x-ratelimit-* headers for r to dst.
func (c *headerCache) appendRate(dst []*corev3.HeaderValueOption, r *ratelimit.Result) []*corev3.HeaderValueOption {
	return append(dst, c.number(0, r.Limit), c.number(1, r.Remaining), c.number(2, ceilSeconds(int64(r.Reset))))
}

// ceilSeconds rounds nanoseconds up to whole seconds.
func ceilSeconds(ns int64) int64 {
	const s = 1e9
	return (ns + s - 1) / s
}
