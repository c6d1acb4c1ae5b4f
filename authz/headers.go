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

// rateHeaders are the rate-limit headers, in the order they are added:
// section 2's trio, then OpenAI's for requests and for tokens, whose
// resets are durations ("17s").
var rateHeaders = [...]string{
	"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
	"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
	"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
}

// Where each group of rateHeaders starts.
const (
	requestHeaders = 0
	tokenHeaders   = 6
)

// inSeconds reports whether header i is a duration in seconds.
func inSeconds(i int) bool { return i == 5 || i == 8 }

// bigNumbers holds, inside one pooled allow response, the rate-limit
// headers whose values the cache does not keep; their strings point into
// digits and live as long as the response.
type bigNumbers struct {
	opts   [len(rateHeaders)]corev3.HeaderValueOption
	vals   [len(rateHeaders)]corev3.HeaderValue
	digits [len(rateHeaders)][21]byte // the longest int64, and "s"
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
		if inSeconds(i) {
			d = append(d, 's')
		}
		big.vals[i].Value = unsafe.String(&d[0], len(d))
		return &big.opts[i]
	}
	p := &c.numbers[i][n]
	if h := p.Load(); h != nil {
		return h
	}
	v := strconv.FormatInt(n, 10)
	if inSeconds(i) {
		v += "s"
	}
	h := header(rateHeaders[i], v)
	p.Store(h)
	return h
}

// appendRate appends the headers of a request limit's result r: section
// 2's and OpenAI's -requests.
func (c *headerCache) appendRate(dst []*corev3.HeaderValueOption, r *ratelimit.Result, big *bigNumbers) []*corev3.HeaderValueOption {
	reset := ceilSeconds(int64(r.Reset))
	for _, at := range [...]int{requestHeaders, requestHeaders + 3} {
		dst = append(dst, c.number(at, r.Limit, big), c.number(at+1, r.Remaining, big), c.number(at+2, reset, big))
	}
	return dst
}

// appendTokens appends the headers of a token limit's result r.
func (c *headerCache) appendTokens(dst []*corev3.HeaderValueOption, r *ratelimit.Result, big *bigNumbers) []*corev3.HeaderValueOption {
	return append(dst, c.number(tokenHeaders, r.Limit, big), c.number(tokenHeaders+1, r.Remaining, big),
		c.number(tokenHeaders+2, ceilSeconds(int64(r.Reset)), big))
}

// ceilSeconds rounds nanoseconds up to whole seconds.
func ceilSeconds(ns int64) int64 {
	const s = 1e9
	return (ns + s - 1) / s
}
