// Package pricing says what a call costs: a table of per-model prices per
// token, flat prices per route, and the rule for calls nothing prices.
// Amounts are integer nanos of a minor unit (money.NanosPerMinor), so a
// cost is exact and never rounded (docs/pricing.md).
package pricing

import (
	"errors"
	"math"
	"math/bits"
)

// Price is a model's price in one currency, in nanos of a minor unit per
// token.
type Price struct {
	Input       int64 // per input token that is not cached
	CachedInput int64 // per cached input token; at most Input
	Output      int64 // per output token
	// MaxOutput is the output tokens held for a request that names no
	// cap (max_tokens, max_completion_tokens, max_output_tokens).
	MaxOutput int64
}

// Usage is what a call used, as the backend reports it. CachedInput is
// part of Input, as OpenAI's prompt_tokens includes cached_tokens.
type Usage struct {
	Input, CachedInput, Output int64
}

var (
	// ErrOverflow: the cost does not fit an int64 of nanos. A caller
	// refuses the call; it never wraps.
	ErrOverflow = errors.New("pricing: cost out of range")
	// ErrNegative: a token count is negative.
	ErrNegative = errors.New("pricing: negative token count")
	// ErrRefused: the charge refuses the call, so it has no cost.
	ErrRefused = errors.New("pricing: the call is refused")
)

// Cost is what usage u costs at p, in nanos: uncached input tokens at
// Input, cached ones at CachedInput (CachedInput held to 0..Input),
// output tokens at Output.
func (p Price) Cost(u Usage) (int64, error) {
	if u.Input < 0 || u.Output < 0 {
		return 0, ErrNegative
	}
	cached := min(max(u.CachedInput, 0), u.Input)
	var s sum
	s.add(u.Input-cached, p.Input)
	s.add(cached, p.CachedInput)
	s.add(u.Output, p.Output)
	return s.result()
}

// Estimate is what a call of inputTokens and outputTokens can cost at
// most: every input token at Input, which is no less than CachedInput.
func (p Price) Estimate(inputTokens, outputTokens int64) (int64, error) {
	if inputTokens < 0 || outputTokens < 0 {
		return 0, ErrNegative
	}
	var s sum
	s.add(inputTokens, p.Input)
	s.add(outputTokens, p.Output)
	return s.result()
}

// sum adds products of non-negative int64s, remembering any overflow.
type sum struct {
	v        int64
	overflow bool
}

// add adds tokens × price; both are at least 0.
func (s *sum) add(tokens, price int64) {
	hi, lo := bits.Mul64(uint64(tokens), uint64(price))
	if hi != 0 || lo > math.MaxInt64 || int64(lo) > math.MaxInt64-s.v {
		s.overflow = true
		return
	}
	s.v += int64(lo)
}

// addNanos adds n ≥ 0.
func (s *sum) addNanos(n int64) { s.add(n, 1) }

func (s *sum) result() (int64, error) {
	if s.overflow {
		return 0, ErrOverflow
	}
	return s.v, nil
}
