package authz

import (
	"strconv"
	"sync/atomic"
	"unsafe"

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

// bigNumbers holds, inside one pooled allow response, the rate-limit
// headers whose values the cache does not keep; their strings point into
// digits and live as long as the response.
type bigNumbers struct {
	opts   [len(rateHeaders)]corev3.HeaderValueOption
	vals   [len(rateHeaders)]corev3.HeaderValue
	digits [len(rateHeaders)][20]byte // the longest int64
}

func (b *bigNumbers) init() {
	for i := range b.opts {
		b.vals[i].Key = rateHeaders[i]
		b.opts[i] = corev3.HeaderValueOption{Header: &b.vals[i], AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
}

// number returns rate-limit header i with value n, from the cache or
// written into big.
func (c *headerCache) number(i int, n int64, big *bigNumbers) *corev3.HeaderValueOption {
	if n < 0 || n > maxCachedNumber {
		d := strconv.AppendInt(big.digits[i][:0], n, 10)
		big.vals[i].Value = unsafe.String(&d[0], len(d))
		return &big.opts[i]
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
func (c *headerCache) appendRate(dst []*corev3.HeaderValueOption, r *ratelimit.Result, big *bigNumbers) []*corev3.HeaderValueOption {
	return append(dst, c.number(0, r.Limit, big), c.number(1, r.Remaining, big), c.number(2, ceilSeconds(int64(r.Reset)), big))
}

// ceilSeconds rounds nanoseconds up to whole seconds.
func ceilSeconds(ns int64) int64 {
	const s = 1e9
	return (ns + s - 1) / s
}
