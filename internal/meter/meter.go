// Package meter decides, before a request passes, what it holds: whether
// the key may call the model its body names, and the estimate of its
// tokens and cost, from the few fields of the body keygate reads. It is
// one pure function of the key's restrictions, the request and the
// prices (Decide).
package meter

import (
	"strings"

	"github.com/keygate/keygate/internal/glob"
	"github.com/keygate/keygate/internal/openai"
	"github.com/keygate/keygate/internal/pricing"
)

// Key is what of a key's record metering reads.
type Key struct {
	// Models, if set, are the only models the key may call.
	Models []glob.Pattern
	// Tokens: the key has a token limit. Spend: a spend budget.
	Tokens, Spend bool
	// Money: the request pays from the account's balance (a live key,
	// with prices configured).
	Money bool
}

// restricted reports whether anything about k needs metering.
func (k Key) restricted() bool { return len(k.Models) > 0 || k.Tokens || k.Spend || k.Money }

// Request is what metering reads of a request.
type Request struct {
	Method, Path string // the path as routed (canonical)
	// Route is the configured route the path reaches, by its index in
	// the configuration (-1: none).
	Route int
	// Body is the body the proxy sent; HasBody whether it sent one, and
	// Partial whether it cut it short.
	Body             []byte
	HasBody, Partial bool
	// NoBody: the request itself has no body (no Content-Length above 0,
	// no Transfer-Encoding).
	NoBody      bool
	ContentType string
	Encoding    string // Content-Encoding
	// Ambiguous: the request carries two different Content-Type or
	// Content-Encoding headers.
	Ambiguous bool
	Currency  string // the account's
}

// Plan is what Decide says of a request.
type Plan struct {
	// Deny, if set, refuses the request.
	Deny *Deny
	// Model is the model the body names.
	Model string
	// Metered: the request holds an estimate, settled from its response.
	Metered bool
	// Its estimate: tokens in and out, and their cost in nanos.
	InputTokens, OutputTokens int64
	Estimate                  int64
	Charge                    pricing.Charge
}

// Deny is an OpenAI-style refusal.
type Deny struct {
	Status     int
	Type, Code string
	Param      string // the body member at fault, if any
	Message    string
}

// DefaultMaxOutput is the output tokens a request that names no cap
// holds when no price names one.
const DefaultMaxOutput = 4096

// Decide says what r, made with key k, holds under prices t (nil: no
// prices).
func Decide(k Key, r Request, t *pricing.Table) Plan {
	if !k.restricted() {
		return Plan{}
	}
	kind := kindOf(r.Method, r.Path)
	if kind == other {
		return decideOther(k, r, t)
	}
	if d := readable(r); d != nil {
		return Plan{Deny: d}
	}
	req, err := openai.ParseRequest(r.Body)
	if err != nil {
		return Plan{Deny: unreadable(err)}
	}
	if d := allowed(k, req.Model); d != nil {
		return Plan{Deny: d}
	}
	if !k.Tokens && !k.Spend && !k.Money {
		return Plan{Model: req.Model}
	}
	// The whole body bounds the prompt: tools, schemas and names count
	// as input too.
	p := Plan{Model: req.Model, Metered: true, InputTokens: inputTokens(t, int64(len(r.Body)))}
	if k.Money || k.Spend {
		p.Charge = t.Rule(pricing.Call{Method: r.Method, NoBody: r.NoBody, Route: r.Route, Parsed: true, Model: req.Model, Currency: r.Currency})
		if d := refused(p.Charge, req.Model); d != nil {
			return Plan{Deny: d}
		}
	}
	if kind != embeddings {
		p.OutputTokens = max(req.N, 1) * outputCap(req.MaxOutput, p.Charge)
	}
	if p.Charge.Outcome == pricing.Metered {
		est, err := p.Charge.Estimate(p.InputTokens, p.OutputTokens)
		if err != nil {
			return Plan{Deny: tooLarge("The request could cost more than keygate can count; lower its output cap.")}
		}
		p.Estimate = est
	}
	return p
}

// decideOther meters a request to an endpoint whose body keygate does not
// read: by its route's flat price, or not at all.
func decideOther(k Key, r Request, t *pricing.Table) Plan {
	if d := otherModel(k, r); d != nil {
		return Plan{Deny: d}
	}
	if !k.Money && !k.Spend {
		return Plan{}
	}
	c := t.Rule(pricing.Call{Method: r.Method, NoBody: r.NoBody, Route: r.Route, Currency: r.Currency})
	if d := refused(c, ""); d != nil {
		return Plan{Deny: d}
	}
	if c.Outcome != pricing.Metered || c.Flat == 0 {
		return Plan{}
	}
	return Plan{Metered: true, Charge: c, Estimate: c.Flat}
}

// otherModel checks the model a body keygate does not meter may name,
// for a key limited to some models: a JSON body is read whole; one that
// keygate cannot read (cut short, not sent) is refused, and so is a body
// in another form where the endpoint takes a model (a multipart upload to
// audio or images).
func otherModel(k Key, r Request) *Deny {
	switch {
	case len(k.Models) == 0 || r.NoBody && !r.HasBody:
		return nil
	case !isJSON(r.ContentType) && r.ContentType != "":
		if expectsModel(r.Path) {
			return &Deny{Status: 400, Type: "invalid_request_error", Code: "unreadable_model", Param: "model",
				Message: "This API key may call only some models, and keygate cannot read the model of this request's body; send it as JSON."}
		}
		return nil
	case !r.HasBody || r.Partial:
		return tooLarge("The request body is larger than keygate reads for an API key limited to some models; send a smaller request.")
	}
	req, err := openai.ParseRequest(r.Body)
	if err != nil {
		return unreadable(err)
	}
	if req.Model == "" {
		return nil
	}
	return allowed(k, req.Model)
}

// Endpoint kinds whose bodies keygate reads, by the path's end.
type kind uint8

const (
	other kind = iota
	chat
	completions
	embeddings
	responses
)

func kindOf(method, path string) kind {
	if !strings.EqualFold(method, "POST") {
		return other
	}
	path, _, _ = strings.Cut(path, "?")
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return chat
	case strings.HasSuffix(path, "/completions"):
		return completions
	case strings.HasSuffix(path, "/embeddings"):
		return embeddings
	case strings.HasSuffix(path, "/responses"):
		return responses
	}
	return other
}

// expectsModel reports whether the endpoint at path names a model in a
// body keygate does not read (a multipart form).
func expectsModel(path string) bool {
	path, _, _ = strings.Cut(path, "?")
	for _, end := range [...]string{"/audio/transcriptions", "/audio/translations", "/audio/speech", "/images/generations", "/images/edits", "/images/variations"} {
		if strings.HasSuffix(path, end) {
			return true
		}
	}
	return false
}

func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
