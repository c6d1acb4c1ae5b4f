package settle

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keygate/keygate/internal/exactjson"
	"github.com/keygate/keygate/internal/openai"
	"github.com/keygate/keygate/internal/pricing"
)

// The settle API, for proxies that cannot observe responses (nginx,
// Traefik): the backend, or whatever reads its responses, sends
//
//	{"reservation_id": "res_...", "status": 200, "usage": {...}}
//
// with the usage as the response carried it (OpenAI's prompt_tokens and
// completion_tokens, or the Responses API's input_tokens and
// output_tokens). A status of 400 or more charges nothing; no usage
// charges the estimate. The answer is the settlement, the first one if
// the reservation was settled before. Over HTTP it needs the settle token;
// over NATS, whatever the NATS account allows.

// maxSettleBody bounds a settle request.
const maxSettleBody = 64 << 10

// apiRequest is a settle API request.
type apiRequest struct {
	ID     string `json:"reservation_id"`
	Status int    `json:"status"`
}

// parse reads a settle API request.
func parse(b []byte) (string, Outcome, error) {
	var req apiRequest
	if err := json.Unmarshal(b, &req); err != nil || req.ID == "" {
		return "", Outcome{}, errors.New(`the body must be JSON with "reservation_id"`)
	}
	if err := exactjson.Check(b); err != nil {
		return "", Outcome{}, err
	}
	o := Outcome{Failed: req.Status >= 400}
	if u, err := openai.ParseUsage(b); err == nil && u.Found {
		o.HasUsage, o.Usage = true, pricing.Usage{Input: u.Input, CachedInput: u.CachedInput, Output: u.Output}
	}
	o, err := o.checked()
	return req.ID, o, err
}

// checked is o as a settlement sent to keygate is taken: from the settle
// API (parse) or forwarded to the keygate that holds the reservation
// (answer). A usage with a count below 0, or more cached input than
// input, is none: it settles at the estimate. An expiry is refused: only
// the holder decides it.
func (o Outcome) checked() (Outcome, error) {
	if o.Expired {
		return Outcome{}, errors.New("an expiry is not sent: the keygate that holds the reservation settles it at its TTL")
	}
	if u := o.Usage; o.HasUsage && (u.Input < 0 || u.Output < 0 || u.CachedInput < 0 || u.CachedInput > u.Input) {
		o.HasUsage, o.Usage = false, pricing.Usage{}
	}
	return o, nil
}

// Handler serves the settle API over HTTP, to callers that send token as
// a bearer token (the scheme in any case). The tokens are compared by
// their SHA-256 sums, in constant time, so that neither the comparison's
// time nor its length tells anything of the token.
func (s *Settler) Handler(token string) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" {
			apiError(w, http.StatusNotFound, "settle_api_disabled", "The settle API is off: set settle_token (KEYGATE_SETTLE_TOKEN).")
			return
		}
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		sum := sha256.Sum256([]byte(got))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			apiError(w, http.StatusUnauthorized, "invalid_settle_token", "Send the settle token as 'Authorization: Bearer TOKEN'.")
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, maxSettleBody+1))
		if err != nil || len(b) > maxSettleBody {
			apiError(w, http.StatusRequestEntityTooLarge, "request_too_large", "A settle request is at most 64 KiB.")
			return
		}
		id, o, err := parse(b)
		if err != nil {
			apiError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		st, err := s.Settle(ctx, id, o)
		switch {
		case errors.Is(err, ErrUnknown):
			apiError(w, http.StatusNotFound, "unknown_reservation", "No reservation has this id, or it expired long ago.")
		case err != nil:
			s.o.Log.Warn("settle API", "reservation", id, "err", err)
			apiError(w, http.StatusServiceUnavailable, "settle_unavailable", "The settlement could not be written; retry.")
		default:
			w.Header().Set("content-type", "application/json")
			_ = json.NewEncoder(w).Encode(st)
		}
	})
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]map[string]any{"error": {"message": msg, "type": "invalid_request_error", "param": nil, "code": code}})
	_, _ = w.Write(append(b, '\n'))
}

// servePublic answers settle API requests on SettleSubject(holds), one
// keygate of the queue group each.
func (s *Settler) servePublic(ctx context.Context) (*nats.Subscription, error) {
	return s.nc.QueueSubscribe(SettleSubject(s.holds), "keygate", func(m *nats.Msg) {
		go func() {
			var rep reply
			if id, o, err := parse(m.Data); err != nil {
				rep.Error = err.Error()
			} else if st, err := s.Settle(ctx, id, o); err != nil {
				rep.Error, rep.Unknown = err.Error(), errors.Is(err, ErrUnknown)
			} else {
				rep.Settlement = st
			}
			b, _ := json.Marshal(rep)
			_ = m.Respond(b)
		}()
	})
}
