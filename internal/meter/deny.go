package meter

import (
	"errors"
	"fmt"
	"strings"

	"github.com/keygate/keygate/internal/openai"
	"github.com/keygate/keygate/internal/pricing"
)

// readable refuses a body keygate cannot read as its backend would: not
// sent, cut short, encoded or not JSON.
func readable(r Request) *Deny {
	switch {
	case r.Ambiguous:
		return &Deny{Status: 400, Type: "invalid_request_error", Code: "ambiguous_request",
			Message: "The request carries two different values of a header keygate reads to meter it (Content-Type, Content-Encoding, Content-Length, Transfer-Encoding or Upgrade); send one."}
	case !r.HasBody || r.Partial:
		return tooLarge("The request body is larger than keygate reads for this API key's limits; send a smaller request.")
	case r.Encoding != "" && !strings.EqualFold(r.Encoding, "identity"):
		return &Deny{Status: 415, Type: "invalid_request_error", Code: "unsupported_content_encoding",
			Message: "Send the request body without Content-Encoding: keygate reads it to apply this API key's limits."}
	case r.ContentType != "" && !isJSON(r.ContentType):
		return &Deny{Status: 415, Type: "invalid_request_error", Code: "unsupported_media_type",
			Message: "Send the request body as application/json."}
	}
	return nil
}

func tooLarge(msg string) *Deny {
	return &Deny{Status: 413, Type: "invalid_request_error", Code: "request_too_large", Message: msg}
}

// unreadable refuses a body the parser refused.
func unreadable(err error) *Deny {
	var e *openai.Error
	if !errors.As(err, &e) {
		return &Deny{Status: 400, Type: "invalid_request_error", Code: "invalid_json", Message: "The request body is not valid JSON."}
	}
	return &Deny{Status: 400, Type: "invalid_request_error", Code: e.Code, Param: e.Param, Message: e.Message}
}

// allowed refuses a model outside the key's list, as OpenAI refuses a
// project key a model it has no access to.
func allowed(k Key, model string) *Deny {
	if len(k.Models) == 0 {
		return nil
	}
	for i := range k.Models {
		if k.Models[i].Match(model) {
			return nil
		}
	}
	if model == "" {
		return &Deny{Status: 400, Type: "invalid_request_error", Code: "missing_model", Param: "model",
			Message: "This API key may call only some models; name the model in the request body."}
	}
	return &Deny{Status: 403, Type: "invalid_request_error", Code: "model_not_found", Param: "model",
		Message: fmt.Sprintf("This API key does not have access to model `%s`.", clip(model))}
}

// unreadableModel refuses, for a key limited to some models, a request
// whose model keygate cannot check.
func unreadableModel(why string) *Deny {
	return &Deny{Status: 400, Type: "invalid_request_error", Code: "unreadable_model", Param: "model",
		Message: "This API key may call only some models, and " + why}
}

// maxTokens bounds the output tokens one request may hold.
const maxTokens = 1_000_000_000_000

// outputTokens is n choices of perChoice tokens each; ok is false above
// maxTokens.
func outputTokens(n, perChoice int64) (tokens int64, ok bool) {
	n = max(n, 1)
	if perChoice > maxTokens/n {
		return 0, false
	}
	return n * perChoice, true
}

func tooManyTokens() *Deny {
	return &Deny{Status: 400, Type: "invalid_request_error", Code: "integer_above_max_value", Param: "n",
		Message: "The request asks for more output tokens than keygate can count: n times the output cap is above 1,000,000,000,000. Lower n or the output cap."}
}

// refused refuses what the prices do not cover.
func refused(c pricing.Charge, model string) *Deny {
	switch c.Outcome {
	case pricing.RefuseModel:
		return &Deny{Status: 400, Type: "invalid_request_error", Code: "model_not_priced", Param: "model",
			Message: fmt.Sprintf("Model `%s` has no price for this account, so it cannot be called with a key that consumes balance.", clip(model))}
	case pricing.RefuseEndpoint:
		return &Deny{Status: 403, Type: "permission_error", Code: "endpoint_not_priced",
			Message: "This endpoint has no price for this account, so it cannot be called with a key that consumes balance."}
	}
	return nil
}

// inputTokens bounds a prompt of n bytes in tokens.
func inputTokens(t *pricing.Table, n int64) int64 {
	if t == nil {
		return n
	}
	return t.InputTokens(n)
}

// outputCap is the output tokens held per choice: the request's cap,
// else its price's default, else DefaultMaxOutput.
func outputCap(requested int64, c pricing.Charge) int64 {
	switch {
	case requested > 0:
		return requested
	case c.Tokens && c.Price.MaxOutput > 0:
		return c.Price.MaxOutput
	}
	return DefaultMaxOutput
}

// clip keeps at most 64 printable ASCII bytes of a client-chosen name
// for a message.
func clip(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && i < 64; i++ {
		if c := s[i]; c >= ' ' && c < 0x7f && c != '`' {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
