package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/admin"
)

// apiError is an error answer: its status and the body every error of the
// API has, {"error":{"message":"...","type":"...","param":...,"code":"..."}}.
type apiError struct {
	status     int
	retryAfter time.Duration // with 429 and 503
	Message    string        `json:"message"`
	Type       string        `json:"type"`
	Param      *string       `json:"param"`
	Code       string        `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

// Error types, as OpenAI names them.
const (
	typeInvalid    = "invalid_request_error"
	typePermission = "permission_error"
	typeRateLimit  = "rate_limit_error"
	typeServer     = "server_error"
)

func errorf(status int, typ, code, param, format string, args ...any) *apiError {
	e := &apiError{status: status, Type: typ, Code: code, Message: fmt.Sprintf(format, args...)}
	if param != "" {
		e.Param = &param
	}
	return e
}

// badRequest refuses a value of param.
func badRequest(code, param, format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, typeInvalid, code, param, format, args...)
}

// apiHints end the admin package's refusals for API clients.
var apiHints = map[string]string{
	admin.CodeKeyNotActive:      "; create a new key with POST /v1/keys",
	admin.CodeKeyAlreadyRotated: `; send "force": true to make another successor`,
}

// fromError is err as the API answers it: the admin package's refusals
// by their kind, a store that cannot be reached 503, anything else 500.
func fromError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if e, ok := admin.AsError(err); ok {
		switch e.Kind {
		case admin.Invalid:
			return badRequest(e.Code, e.Field, "%s", e.Error())
		case admin.NotFound:
			return errorf(http.StatusNotFound, typeInvalid, e.Code, "", "%s", e.Msg)
		case admin.Conflict:
			return errorf(http.StatusConflict, typeInvalid, e.Code, "", "%s%s", e.Msg, apiHints[e.Code])
		}
	}
	if unavailable(err) {
		e := errorf(http.StatusServiceUnavailable, typeServer, "store_unavailable", "", "the key store (NATS) cannot be reached; retry shortly")
		e.retryAfter = time.Second
		return e
	}
	return errorf(http.StatusInternalServerError, typeServer, "internal_error", "", "keygate failed to answer; its log says why")
}

// unavailable reports whether err says that NATS could not be reached or
// did not answer in time.
func unavailable(err error) bool {
	for _, e := range []error{context.DeadlineExceeded, nats.ErrTimeout, nats.ErrNoResponders, nats.ErrConnectionClosed,
		nats.ErrDisconnected, nats.ErrConnectionDraining, nats.ErrConnectionReconnecting, jetstream.ErrNoStreamResponse,
		jetstream.ErrJetStreamNotEnabled, jetstream.ErrNoHeartbeat} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// writeError writes e.
func writeError(w http.ResponseWriter, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((e.retryAfter+time.Second-1)/time.Second), 10))
	}
	writeJSON(w, e.status, struct {
		Error *apiError `json:"error"`
	}{e})
}

// writeJSON writes v as the JSON body of a status answer.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"keygate failed to write its answer","type":"server_error","param":null,"code":"internal_error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
