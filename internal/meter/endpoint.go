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
// an assistant's or an eval's run, a Realtime session (in its settings).
func runsUnnamed(method, path string) bool {
	return strings.EqualFold(method, "POST") && hasAnySuffix(endpoint(path), "/batches", "/runs", "/threads/runs",
		"/realtime/sessions", "/realtime/client_secrets", "/realtime/transcription_sessions")
}

// opensSession reports whether a request opens a session that carries
// calls of its own (a WebSocket upgrade, the Realtime API): it is never
// a free read, whatever its method.
func opensSession(r Request) bool {
	return r.Upgrade || hasSuffixFold(endpoint(r.Path), "/realtime")
}

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

// named returns the model a request names, from its body and from where
// some backends read it instead: the path (`…/deployments/{model}/…`,
// Azure OpenAI's spelling, and `…/engines/{model}/…`, the legacy one,
// which LiteLLM routes on before the body) and the query (`?model=`, the
// Realtime API's). Places that name different models are refused: a
// backend could run either.
func named(path, query, body string) (string, *Deny) {
	q, ok := queryModel(query)
	if !ok {
		return "", ambiguousModel()
	}
	model := body
	for _, m := range [...]string{pathModel(path), q} {
		switch {
		case m == "":
		case model == "":
			model = m
		case m != model:
			return "", ambiguousModel()
		}
	}
	return model, nil
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

// queryModel returns the query's `model` parameter, decoded; ok is false
// when the query names a model in a way backends read differently: the
// parameter twice, an array or object form (`model[]=`, `model.x=`), an
// invalid escape, or a query with a fragment.
func queryModel(query string) (model string, ok bool) {
	if strings.IndexByte(query, '#') >= 0 {
		return "", false
	}
	seen := false
	for query != "" {
		var param string
		param, query, _ = strings.Cut(query, "&")
		name, value, _ := strings.Cut(param, "=")
		name, err := url.QueryUnescape(name)
		switch {
		case err != nil:
			return "", false
		case name == "model" && !seen:
			if model, err = url.QueryUnescape(value); err != nil {
				return "", false
			}
			seen = true
		case len(name) > len("model") && name[:5] == "model" && (name[5] == '[' || name[5] == '.') || name == "model":
			return "", false
		}
	}
	return model, true
}

func ambiguousModel() *Deny {
	return &Deny{Status: 400, Type: "invalid_request_error", Code: "ambiguous_model", Param: "model",
		Message: "The request names its model in more than one place (body, path or query) and they differ; name it once."}
}
