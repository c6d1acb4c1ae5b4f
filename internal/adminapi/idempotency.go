package adminapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// An Idempotency-Key makes a create or a balance change happen once: the
// first request with it claims it in the idempotency bucket (a KV
// create, which one request wins), runs, and stores its answer there;
// a repeat with the same method, path, token and body gets that answer
// again, a repeat with anything else a 409 idempotency_key_reused, and a
// repeat while the first runs waits for its answer. Answers are kept 24
// hours (the bucket's TTL) and never hold a key or token: a key created
// is answered again with "key": null.

// maxIdempotencyKey bounds an Idempotency-Key's length.
const maxIdempotencyKey = 255

// Times of the idempotency claims.
const (
	// waitFor bounds how long a repeat waits for the first's answer.
	waitFor = 30 * time.Second
	// abandoned is how old a claim without an answer is when a repeat
	// takes it over: its request ended without storing one (keygate
	// stopped, or the store failed), so its outcome is unknown.
	abandoned = 2 * time.Minute
)

// claim is an Idempotency-Key's entry.
type claim struct {
	// Request is the SHA-256 of the request's method, path, token id and
	// body.
	Request string    `json:"request"`
	Done    bool      `json:"done"`
	At      time.Time `json:"at"`
	Answer  *answer   `json:"answer,omitempty"`
}

// answer is an answer as stored, to be given again.
type answer struct {
	Status   int             `json:"status"`
	Body     json.RawMessage `json:"body"`
	Location string          `json:"location,omitempty"`
}

// result is what an operation answers: body now, and replay (body
// without secrets) to a repeat.
type result struct {
	status   int
	body     json.RawMessage
	replay   json.RawMessage // nil: body
	location string
}

func (res *result) stored() *answer {
	b := res.replay
	if b == nil {
		b = res.body
	}
	return &answer{Status: res.status, Body: b, Location: res.location}
}

// fresh is the answer to the request that ran.
func (res *result) fresh() *answer {
	return &answer{Status: res.status, Body: res.body, Location: res.location}
}

func (ans *answer) write(w http.ResponseWriter, replayed bool) {
	if ans.Location != "" {
		w.Header().Set("Location", ans.Location)
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeRaw(w, ans.Status, ans.Body)
}

func writeRaw(w http.ResponseWriter, status int, body json.RawMessage) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// idempotencyKey is the request's Idempotency-Key: "" without one.
func idempotencyKey(r *http.Request) (string, *apiError) {
	vs := r.Header.Values("Idempotency-Key")
	if len(vs) == 0 {
		return "", nil
	}
	k := vs[0]
	ok := len(vs) == 1 && k != "" && len(k) <= maxIdempotencyKey
	for i := 0; ok && i < len(k); i++ {
		ok = k[i] >= 0x20 && k[i] < 0x7f
	}
	if !ok {
		return "", badRequest("invalid_idempotency_key", "Idempotency-Key", "Idempotency-Key: give one, of 1 to %d printable ASCII characters", maxIdempotencyKey)
	}
	return k, nil
}

// once runs op at most once for the request's Idempotency-Key, and
// writes its answer; without a key it runs op.
func (a *api) once(w http.ResponseWriter, r *http.Request, tokenID string, body []byte, op func() (*result, error)) {
	key, e := idempotencyKey(r)
	if e != nil {
		writeError(w, e)
		return
	}
	if key == "" {
		res, err := op()
		if err != nil {
			writeError(w, fromError(err))
			return
		}
		res.fresh().write(w, false)
		return
	}
	entry, request := idempotencyEntry(tokenID, key, r, body)
	ans, replayed, err := a.claimAndRun(r.Context(), entry, request, op)
	if err != nil {
		writeError(w, fromError(err))
		return
	}
	ans.write(w, replayed)
}

// idempotencyEntry is the entry of an Idempotency-Key of a token, and
// the hash of the request.
func idempotencyEntry(tokenID, key string, r *http.Request, body []byte) (entry, request string) {
	e := sha256.Sum256([]byte(tokenID + "\n" + key))
	h := sha256.New()
	for _, s := range []string{r.Method, r.URL.Path, tokenID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(body)
	return "k." + hex.EncodeToString(e[:]), hex.EncodeToString(h.Sum(nil))
}

// claimAndRun claims entry for request and runs op, or gives the answer
// of the request that claimed it, waiting for it if need be.
func (a *api) claimAndRun(ctx context.Context, entry, request string, op func() (*result, error)) (*answer, bool, error) {
	pending, _ := json.Marshal(claim{Request: request, At: a.now().UTC()})
	rev, err := a.idem.Create(ctx, entry, pending)
	for errors.Is(err, jetstream.ErrKeyExists) {
		var c claim
		var ans *answer
		if ans, c, rev, err = a.awaitAnswer(ctx, entry, request); ans != nil || err != nil {
			return ans, ans != nil, err
		}
		// Abandoned: take it over, unless another repeat did first.
		c.At = a.now().UTC()
		b, _ := json.Marshal(c)
		if rev, err = a.idem.Update(ctx, entry, b, rev); errors.Is(err, jetstream.ErrKeyExists) || isMismatch(err) {
			err = jetstream.ErrKeyExists
		}
	}
	if err != nil {
		return nil, false, err
	}
	res, err := op()
	var ans *answer
	switch {
	case err == nil:
		ans = res.stored()
	default:
		e := fromError(err)
		if e.status >= 500 {
			// The outcome is unknown: the claim stays unanswered, and
			// a repeat takes it over once it is abandoned.
			return nil, false, err
		}
		b, _ := json.Marshal(struct {
			Error *apiError `json:"error"`
		}{e})
		ans = &answer{Status: e.status, Body: b}
	}
	done, _ := json.Marshal(claim{Request: request, Done: true, At: a.now().UTC(), Answer: ans})
	if _, uerr := a.idem.Update(ctx, entry, done, rev); uerr != nil {
		a.log.Warn("storing the answer of an Idempotency-Key; a repeat takes the key over once it is abandoned", "err", uerr)
	}
	if err == nil {
		return res.fresh(), false, nil
	}
	return ans, false, nil
}

func isMismatch(err error) bool { return errors.Is(err, jetstream.ErrKeyRevisionMismatch) }

// awaitAnswer reads entry until it holds the answer to request, or is
// abandoned (then it returns no answer and the claim at its revision).
// Another request's claim is a 409.
func (a *api) awaitAnswer(ctx context.Context, entry, request string) (*answer, claim, uint64, error) {
	wctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	w, err := a.idem.Watch(wctx, entry)
	if err != nil {
		return nil, claim{}, 0, err
	}
	defer w.Stop() //nolint:errcheck // nothing to do about a failed unsubscribe
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, claim{}, 0, ctx.Err()
			}
			return nil, claim{}, 0, inProgress()
		}
		if e == nil || e.Operation() != jetstream.KeyValuePut {
			continue // the end of the backlog, or an entry deleted: what follows says
		}
		var c claim
		if json.Unmarshal(e.Value(), &c) != nil {
			return nil, claim{}, 0, errors.New("idempotency entry " + entry + " is not readable")
		}
		switch {
		case c.Request != request:
			return nil, claim{}, 0, errorf(http.StatusConflict, typeInvalid, "idempotency_key_reused", "Idempotency-Key",
				"this Idempotency-Key was used with another request (method, path or body) in the last 24 hours; use a new key for a new request")
		case c.Done && c.Answer != nil:
			return c.Answer, c, e.Revision(), nil
		case a.now().Sub(c.At) >= abandoned:
			return nil, c, e.Revision(), nil
		}
	}
}

func inProgress() *apiError {
	e := errorf(http.StatusConflict, typeInvalid, "idempotency_key_in_progress", "Idempotency-Key",
		"a request with this Idempotency-Key is still running; retry to get its answer")
	e.retryAfter = time.Second
	return e
}
