package meter

import (
	"net/url"
	"strings"

	"github.com/keygate/keygate/internal/pricing"
)

// names are the models a request names, each once: in its body, and
// where some backends read it instead: the path (`…/deployments/{name}/…`,
// Azure OpenAI's, and `…/engines/{name}/…`, the legacy API's, which
// LiteLLM routes on before the body) and the query (`model` and
// `deployment`, the Realtime API's and Azure's). A backend may run any of
// them: each must be in the key's list and priced, and the request is
// held and settled at the highest of their prices, field by field.
type names struct {
	list [4]string
	n    int
}

func (ns *names) add(m string) {
	if m == "" {
		return
	}
	for _, have := range ns.list[:ns.n] {
		if have == m {
			return
		}
	}
	ns.list[ns.n] = m
	ns.n++
}

// allowedAll refuses the request unless the key may call every model it
// names (and it names one, for a key with a list).
func (ns *names) allowedAll(k Key) *Deny {
	if ns.n == 0 {
		return allowed(k, "")
	}
	for _, m := range ns.list[:ns.n] {
		if d := allowed(k, m); d != nil {
			return d
		}
	}
	return nil
}

// label is the names, for the reservation and the ledger.
func (ns *names) label() string {
	if ns.n <= 1 {
		return ns.list[0]
	}
	return strings.Join(ns.list[:ns.n], ",")
}

// charge is how call is charged for every model named: each must be
// priced, and each price is the highest among them, so that whatever
// model runs, and whatever its usage, costs no more than the charge.
func (ns *names) charge(t *pricing.Table, call pricing.Call) (pricing.Charge, *Deny) {
	var c pricing.Charge
	for i := range max(ns.n, 1) {
		call.Model = ns.list[i]
		ci := t.Rule(call)
		if d := refused(ci, call.Model); d != nil {
			return c, d
		}
		if i == 0 {
			c = ci
			continue
		}
		c.Price = pricing.Price{Input: max(c.Price.Input, ci.Price.Input), CachedInput: max(c.Price.CachedInput, ci.Price.CachedInput),
			Output: max(c.Price.Output, ci.Price.Output), MaxOutput: max(c.Price.MaxOutput, ci.Price.MaxOutput)}
	}
	return c, nil
}

// named returns the models r names, body being its body's; a query that
// names one in a way backends read differently is refused.
func named(r Request, body string) (names, *Deny) {
	var ns names
	ns.add(body)
	ns.add(pathModel(r.Path))
	q, d, ok := queryModels(r.Query)
	if !ok {
		return ns, ambiguousModel()
	}
	ns.add(q)
	ns.add(d)
	return ns, nil
}

// pathModel returns the segment after a `deployments` or `engines`
// segment, if there is one.
func pathModel(path string) string {
	for rest := path; rest != ""; {
		var seg string
		seg, rest, _ = strings.Cut(strings.TrimPrefix(rest, "/"), "/")
		if (strings.EqualFold(seg, "deployments") || strings.EqualFold(seg, "engines")) && rest != "" {
			m, _, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
			return m
		}
	}
	return ""
}

// queryModels returns the query's `model` and `deployment` parameters,
// decoded; ok is false when the query names a model in a way backends
// read differently: a parameter twice or in another case (`Model=`), an
// array or object form (`model[]=`, `model.x=`), an invalid escape, or a
// query with a fragment.
func queryModels(query string) (model, deployment string, ok bool) {
	if strings.IndexByte(query, '#') >= 0 {
		return "", "", false
	}
	var seen [2]bool
	var values [2]string
	for query != "" {
		var param string
		param, query, _ = strings.Cut(query, "&")
		name, value, _ := strings.Cut(param, "=")
		name, err := url.QueryUnescape(name)
		if err != nil {
			return "", "", false
		}
		for i, p := range [...]string{"model", "deployment"} {
			switch {
			case name == p && !seen[i]:
				if values[i], err = url.QueryUnescape(value); err != nil {
					return "", "", false
				}
				seen[i] = true
			case strings.EqualFold(name, p) || len(name) > len(p) && strings.EqualFold(name[:len(p)], p) && (name[len(p)] == '[' || name[len(p)] == '.'):
				return "", "", false
			}
		}
	}
	return values[0], values[1], true
}

func ambiguousModel() *Deny {
	return &Deny{Status: 400, Type: "invalid_request_error", Code: "ambiguous_model", Param: "model",
		Message: "The request's query names a model in a way backends read differently (a parameter twice, an array, an escape); name it once."}
}
