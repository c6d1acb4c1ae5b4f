// Package observe settles metered requests from their responses as Envoy
// streams them. It serves Envoy's external processing service
// (envoy.service.ext_proc.v3.ExternalProcessor) to an ext_proc filter in
// observability mode: Envoy sends each request's headers and its
// response's headers, body chunks and trailers, never waits for an answer,
// and keygate settles the request's reservation once, from the usage the
// response reports. The backend changes nothing and no byte is delayed.
//
// # The protocol as keygate speaks it
//
// In observability mode Envoy ignores every ProcessingResponse, and the
// server may close the stream to say it needs no more messages. keygate
// sends none, and closes the stream as soon as the outcome is known:
//
//   - at the request headers, when they carry no reservation id
//     (authz.ReservationHeader): the request is not metered, and Envoy
//     then sends nothing more of it;
//   - at the response headers, when the status is 400 or more, or the
//     response has no body;
//   - at the first body byte of a body keygate does not read (neither
//     text/event-stream nor JSON, or compressed other than a gzip JSON
//     body);
//   - when a JSON body passes MaxBody;
//   - at the response's end: a body chunk with end_of_stream, or the
//     trailers.
//
// A stream that ends otherwise (Envoy resets it when the client goes
// away, after the filter's deferred_close_timeout) settles with what it
// showed. A message marked with observability_mode false (a filter
// configured without it) is answered with an empty response that lets
// the request continue unchanged, so such a filter still works; it only
// waits for keygate at each message.
//
// Settlement never runs on the stream: each runs in a goroutine of its
// own with a timeout (Options.Timeout), at most Options.Parallel at once.
// Failures are counted (Stats.Errors); a settlement that could not be
// written is retried by the settler, and a reservation never settled
// settles at its estimate when its hold's TTL passes.
//
// # Outcome rules (Outcome)
//
// In order, the first that holds:
//
//  1. no response headers arrived (the client or the backend went away
//     first): failed, no charge;
//  2. status 400 or more: failed, no charge;
//  3. the body reported usage (a JSON body's "usage", or the last usage
//     of a text/event-stream, as package openai reads them): settled from
//     that usage;
//  4. the stream ended before any body byte and before the response's end
//     (the client went away): failed, no charge;
//  5. otherwise (a stream without a usage event, a stream cut after some
//     output, a JSON body over MaxBody, a body keygate does not read or
//     cannot parse, an empty body): neither, which the settler charges at
//     the estimate.
//
// Per stream keygate keeps at most MaxBody bytes of a JSON body (and all
// streams together at most MaxBuffered; a body that finds no room settles
// at the estimate, as one over MaxBody does), and of an
// event stream one event's data (at most openai.MaxEvent); a chunk of an
// event stream costs a pass over its bytes and no allocation.
package observe
