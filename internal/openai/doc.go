// Package openai reads the fields keygate meters from OpenAI-format
// request bodies and responses: what a request may cost (ParseRequest)
// and what a response says it cost (ParseUsage for a JSON body, Stream for
// a server-sent event stream). Its functions are pure: no I/O, no prices.
//
// The request parser is endpoint-agnostic; the endpoints use these fields:
//
//	/v1/chat/completions  model, messages, max_completion_tokens (or the
//	                      older max_tokens), n, stream,
//	                      stream_options.include_usage (a usage chunk last)
//	/v1/completions       model, prompt, max_tokens, n, stream,
//	                      stream_options.include_usage
//	/v1/embeddings        model, input; no output tokens
//	/v1/responses         model, input, instructions, max_output_tokens,
//	                      stream; no n (usage is in response.completed,
//	                      response.incomplete and response.failed events)
//
// A request body is read in one pass that validates all of it as RFC 8259
// JSON with a top-level object, nesting at most 64 deep. Because keygate
// meters what the backend will execute, a body that another reader could
// read differently is refused rather than guessed at: a duplicate member
// name at the top level or in stream_options (compared after unescaping),
// invalid UTF-8 or an unpaired surrogate escape in any string, a metered
// member of the wrong type (null counts as absent), and any top-level name
// that a case-insensitive reader such as Go's encoding/json matches to a
// metered name ("Model", "MAX_TOKENS", "ſtream" with a long s) without
// being it.
//
// PromptBytes counts the JSON bytes of messages, prompt, input,
// instructions and system only. Other members that a backend turns into
// input tokens (tools, functions, response_format, prediction, suffix) and
// context named by reference (previous_response_id, conversation) are not
// in it.
//
// Counts (max tokens, n, token usage) are JSON numbers written as digits
// only, at most 1e12. MaxOutput is the largest output cap present, since
// backends differ on which one they obey when a body has several. N is
// reported as sent, 0 included; an estimate should take at least one
// completion.
package openai
