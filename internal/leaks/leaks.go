// Package leaks revokes keys found in public. It serves GitHub's secret
// scanning partner endpoint: GitHub posts the strings matching keygate's
// key pattern that it finds in public repositories, gists, issues and
// packages; a report signed with one of GitHub's keys revokes every
// keygate key it names, and is answered with which strings were keygate
// keys.
package leaks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/store"
)

// Path is where the admin port serves the endpoint (POST).
const Path = "/v1/github/secret-scanning"

// The headers that sign a report.
const (
	HeaderKeyID     = "Github-Public-Key-Identifier"
	HeaderSignature = "Github-Public-Key-Signature"
)

// MaxBody bounds a report; a longer one is refused 413.
const MaxBody = 1 << 20

// answerTimeout bounds the store work of one report. GitHub waits 30 s
// for partners that answer with labels.
const answerTimeout = 25 * time.Second

// Options are what a Handler needs.
type Options struct {
	Store  *store.Store
	Format apikey.Format // the keys keygate accepts
	Keys   *Keys         // GitHub's keys
	Log    *slog.Logger
	Now    func() time.Time // nil: time.Now
	// Trail, if set, gets a key.revoke_leaked record for each key revoked.
	Trail *audit.Log
}

// Handler serves the endpoint.
type Handler struct {
	o     Options
	stats stats
}

var _ http.Handler = (*Handler)(nil)

// New returns the endpoint's handler.
func New(o Options) *Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{o: o}
}

// ServeHTTP answers a report: 401 unless it is signed by GitHub, 413 if
// it is longer than MaxBody, 400 if it is not a JSON array of matches,
// 503 if the store could not answer (nothing is left half done: a report
// sent again revokes what is left and answers the same), else 200 and a
// label for each string.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, sig := r.Header.Get(HeaderKeyID), r.Header.Get(HeaderSignature)
	if id == "" || sig == "" {
		h.refuse(w, ErrUnsigned)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooLong *http.MaxBytesError
	switch {
	case errors.As(err, &tooLong):
		apiError(w, http.StatusRequestEntityTooLarge, "request_too_large", "A report is at most 1 MiB.")
		return
	case err != nil:
		apiError(w, http.StatusBadRequest, "invalid_request", "The body could not be read.")
		return
	}
	if err := h.o.Keys.Verify(r.Context(), id, sig, body); err != nil {
		h.refuse(w, err)
		return
	}
	var matches []Match
	if err := json.Unmarshal(body, &matches); err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", `The body must be a JSON array of {"token", "type", "url", "source"}.`)
		return
	}
	// The revocations finish even if GitHub hangs up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), answerTimeout)
	defer cancel()
	labels, err := h.answer(ctx, matches)
	if err != nil {
		h.stats.errors.Add(1)
		h.o.Log.Error("answering a GitHub secret scanning report", "err", err)
		apiError(w, http.StatusServiceUnavailable, "store_unavailable", "The key store could not be read or written; send the report again.")
		return
	}
	w.Header().Set("content-type", "application/json")
	b, _ := json.Marshal(labels)
	_, _ = w.Write(append(b, '\n'))
}

// refuse answers 401 for a report that is not signed by GitHub.
func (h *Handler) refuse(w http.ResponseWriter, err error) {
	reason := "bad_signature"
	switch err {
	case ErrUnsigned:
		reason = "unsigned"
	case ErrUnknownKey:
		reason = "unknown_key"
	}
	h.stats.failure(reason)
	h.o.Log.Warn("refused a GitHub secret scanning report", "reason", reason)
	apiError(w, http.StatusUnauthorized, "invalid_signature", err.Error()+".")
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]map[string]any{"error": {"message": msg, "type": "invalid_request_error", "param": nil, "code": code}})
	_, _ = w.Write(append(b, '\n'))
}
