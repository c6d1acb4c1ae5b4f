package meter

import "strings"

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

// runsUnnamed reports whether a request starts work on a model that a
// body may leave unnamed: an assistant's or an eval's run, a Realtime
// session (its top-level model, if any, is the one that runs).
func runsUnnamed(method, path string) bool {
	return strings.EqualFold(method, "POST") && hasAnySuffix(endpoint(path), "/runs", "/realtime/sessions")
}

// runsElsewhere reports whether a request starts work on a model named
// where keygate does not read: a batch's file, a Realtime call's or
// client secret's session settings (whatever a top-level model says).
func runsElsewhere(method, path string) bool {
	return strings.EqualFold(method, "POST") && hasAnySuffix(endpoint(path), "/batches",
		"/realtime/client_secrets", "/realtime/transcription_sessions", "/realtime/calls")
}

// opensSession reports whether a request opens a session that carries
// calls of its own (a WebSocket upgrade, the Realtime API): it is never
// a free read, whatever its method.
func opensSession(r Request) bool { return r.Upgrade || realtime(r.Path) }

// realtime reports whether path is the Realtime API's connection, whose
// session runs the model its query names.
func realtime(path string) bool { return hasSuffixFold(endpoint(path), "/realtime") }

// endpoint is path without one trailing slash.
func endpoint(path string) string {
	if len(path) > 1 && path[len(path)-1] == '/' {
		return path[:len(path)-1]
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

// hasSuffixFold is strings.HasSuffix in any case (the path's reading
// leaves it ASCII).
func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}
