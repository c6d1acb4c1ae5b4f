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
	Method, Path string // the path as routed (canonical), without its query
	Query        string // the target's query, after its "?"
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
	// Upgrade: the request asks to switch protocols (a WebSocket).
	Upgrade  bool
	Currency string // the account's
}

// Plan is what Decide says of a request.
type Plan struct {
	// Deny, if set, refuses the request.
	Deny *Deny
	// Model is the model the request names; several, comma-separated,
	// when it names more than one (the charge is then the highest of
	// their prices).
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
	ns, d := named(r, req.Model)
	if d == nil {
		d = ns.allowedAll(k)
	}
	if d != nil {
		return Plan{Deny: d}
	}
	if !k.Tokens && !k.Spend && !k.Money {
		return Plan{Model: ns.label()}
	}
	// The whole body bounds the prompt: tools, schemas and names count
	// as input too.
	p := Plan{Model: ns.label(), Metered: true, InputTokens: inputTokens(t, int64(len(r.Body)))}
	if k.Money || k.Spend {
		if p.Charge, d = ns.charge(t, pricing.Call{Method: r.Method, NoBody: r.NoBody, Route: r.Route, Parsed: true, Currency: r.Currency}); d != nil {
			return Plan{Deny: d}
		}
	}
	if kind != embeddings {
		out, ok := outputTokens(req.N, outputCap(req.MaxOutput, p.Charge))
		if !ok {
			return Plan{Deny: tooManyTokens()}
		}
		p.OutputTokens = out
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
	c := t.Rule(pricing.Call{Method: r.Method, NoBody: r.NoBody && !opensSession(r), Route: r.Route, Currency: r.Currency})
	if d := refused(c, ""); d != nil {
		return Plan{Deny: d}
	}
	if c.Outcome != pricing.Metered || c.Flat == 0 {
		return Plan{}
	}
	return Plan{Metered: true, Charge: c, Estimate: c.Flat}
}

// otherModel checks the model of a request keygate does not meter, for
// a key limited to some models: named in a JSON body (read whole), the
// path or the query. A body keygate cannot read is refused (cut short,
// not sent, or in another form where the endpoint takes a model: a
// multipart upload to audio or images), and so is a request that starts
// work on a model it does not name where keygate reads it, or a WebSocket
// other than the Realtime API's, whose messages name their own models.
func otherModel(k Key, r Request) *Deny {
	if len(k.Models) == 0 {
		return nil
	}
	body := ""
	switch {
	case r.NoBody && !r.HasBody:
	case !isJSON(r.ContentType) && r.ContentType != "":
		if expectsModel(r.Path) {
			return unreadableModel("keygate cannot read the model of this request's body; send it as JSON.")
		}
	case !r.HasBody || r.Partial:
		return tooLarge("The request body is larger than keygate reads for an API key limited to some models; send a smaller request.")
	default:
		req, err := openai.ParseRequest(r.Body)
		if err != nil {
			return unreadable(err)
		}
		body = req.Model
	}
	ns, d := named(r, body)
	switch {
	case d != nil:
		return d
	case runsElsewhere(r.Method, r.Path):
		return unreadableModel("keygate cannot see which model this request runs: it is named in a file or in a session's settings.")
	case r.Upgrade && !realtime(r.Path):
		return unreadableModel("keygate cannot see which models this session runs once it is open.")
	case body == "" && runsUnnamed(r.Method, r.Path), ns.n == 0 && opensSession(r):
		return unreadableModel("keygate cannot see which model this request runs; name it with `model` in the request body (or the query, for the Realtime API).")
	case ns.n == 0:
		return nil
	}
	return ns.allowedAll(k)
}

func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
