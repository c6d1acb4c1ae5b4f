package meter

import (
	"net/url"
	"strings"
)

// Endpoint kinds whose bodies keygate reads, by the path's end.
type kind uint8

const (
	other kind = iota
	chat
	completions
	embeddings
	responses
)

// kindOf matches the path's end in any ASCII case and with or without a
// trailing slash, as Express, Koa and most routers do by default: every
// spelling that reaches a handler whose body keygate reads is read.
func kindOf(method, path string) kind {
	if !strings.EqualFold(method, "POST") {
		return other
	}
	path = endpoint(path)
	switch {
	case hasSuffixFold(path, "/chat/completions"):
		return chat
	case hasSuffixFold(path, "/completions"):
		return completions
	case hasSuffixFold(path, "/embeddings"):
		return embeddings
	case hasSuffixFold(path, "/responses"):
		return responses
	}
	return other
}

// expectsModel reports whether the endpoint at path names a model in a
// body keygate does not read (a multipart form).
func expectsModel(path string) bool {
	return hasAnySuffix(endpoint(path), "/audio/transcriptions", "/audio/translations", "/audio/speech",
		"/images/generations", "/images/edits", "/images/variations")
}

// runsUnnamed reports whether a request starts work on a model that its
// body may name elsewhere than at its top level: a batch (in its file),
// an assistant's or an eval's run, a Realtime session or call (in its
// settings).
func runsUnnamed(method, path string) bool {
	return strings.EqualFold(method, "POST") && hasAnySuffix(endpoint(path), "/batches", "/runs", "/threads/runs",
		"/realtime/sessions", "/realtime/client_secrets", "/realtime/transcription_sessions", "/realtime/calls")
}

// opensSession reports whether a request opens a session that carries
// calls of its own (a WebSocket upgrade, the Realtime API): it is never
// a free read, whatever its method.
func opensSession(r Request) bool { return r.Upgrade || realtime(r.Path) }

// realtime reports whether path is the Realtime API's connection, whose
// session runs the model its query names.
func realtime(path string) bool { return hasSuffixFold(endpoint(path), "/realtime") }

// endpoint is path without its query and one trailing slash.
func endpoint(path string) string {
	path, _, _ = strings.Cut(path, "?")
	if len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	return path
}

func hasAnySuffix(path string, ends ...string) bool {
	for _, end := range ends {
		if hasSuffixFold(path, end) {
			return true
		}
	}
	return false
}

// hasSuffixFold is strings.HasSuffix in any ASCII case (and only ASCII:
// the path's reading refuses letters that fold to ASCII ones).
func hasSuffixFold(s, suffix string) bool {
	if len(s) < len(suffix) {
		return false
	}
	s = s[len(s)-len(suffix):]
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != lower(suffix[i]) {
			return false
		}
	}
	return true
}

func equalFold(s, t string) bool { return len(s) == len(t) && hasSuffixFold(s, t) }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// names are the models a request names, each once: in its body, and
// where some backends read it instead: the path (`…/deployments/{model}/…`,
// Azure OpenAI's spelling, and `…/engines/{model}/…`, the legacy one,
// which LiteLLM routes on before the body) and the query (`?model=`, and
// Azure's `?deployment=`, the Realtime API's). A backend may run any of
// them: each must be in the key's list, and the dearest is held.
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

// allowed refuses the request unless the key may call every model it
// names (and it names one, for a key with a list).
func (ns *names) allowed(k Key) *Deny {
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
		if (equalFold(seg, "deployments") || equalFold(seg, "engines")) && rest != "" {
			m, _, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
			return m
		}
	}
	return ""
}

// queryModels returns the query's `model` and `deployment` parameters,
// decoded; ok is false when the query names a model in a way backends
// read differently: a parameter twice, an array or object form
// (`model[]=`, `model.x=`), an invalid escape, or a query with a fragment.
func queryModels(query string) (model, deployment string, ok bool) {
	if strings.IndexByte(query, '#') >= 0 {
		return "", "", false
	}
	var seen [2]bool
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
				v, err := url.QueryUnescape(value)
				if err != nil {
					return "", "", false
				}
				if seen[i] = true; i == 0 {
					model = v
				} else {
					deployment = v
				}
			case name == p || strings.HasPrefix(name, p) && (name[len(p)] == '[' || name[len(p)] == '.'):
				return "", "", false
			}
		}
	}
	return model, deployment, true
}

func ambiguousModel() *Deny {
	return &Deny{Status: 400, Type: "invalid_request_error", Code: "ambiguous_model", Param: "model",
		Message: "The request's query names a model in a way backends read differently (a parameter twice, an array, an escape); name it once."}
}
