package adminapi

import (
	"errors"
	"net"
	"net/http"
	"strings"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/store"
)

// bearer is the token in the request's Authorization header ("Bearer
// <token>", the scheme in any case), or "".
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return "", len(h) > 1
	}
	scheme, token, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true
	}
	return strings.TrimSpace(token), true
}

// authenticate returns the request's admin token, or the answer: 401
// without one, 401 for a bad one (429 once its address has failed too
// often), 503 when the store cannot tell.
func (a *api) authenticate(r *http.Request) (*store.Token, *apiError) {
	secret, given := bearer(r)
	if !given {
		e := errorf(http.StatusUnauthorized, typeInvalid, "missing_admin_token", "",
			"send an admin token as Authorization: Bearer kga_...; keygate tokens create makes one")
		return nil, e
	}
	tok, err := a.admin.Authenticate(r.Context(), secret)
	switch {
	case err == nil:
		return tok, nil
	case admin.TouchFailed(err):
		a.log.Warn("recording an admin token's last use", "token_id", tok.ID, "err", err)
		return tok, nil
	case !errors.Is(err, admin.ErrBadToken):
		return nil, fromError(err)
	}
	if wait := a.lockout.fail(r.RemoteAddr); wait > 0 {
		e := errorf(http.StatusTooManyRequests, typeRateLimit, "too_many_failed_attempts", "",
			"too many requests from this address with a bad admin token; a valid token is still accepted")
		e.retryAfter = wait
		return nil, e
	}
	return nil, errorf(http.StatusUnauthorized, typeInvalid, "invalid_admin_token", "",
		"the admin token is malformed, unknown or revoked")
}

// permit answers 403 unless tok's scopes allow what needs scope.
func permit(tok *store.Token, need string) *apiError {
	if admin.Allows(tok.Scopes, need) {
		return nil
	}
	what := map[string]string{admin.ScopeKeys: "key changes", admin.ScopeBalances: "balance changes"}[need]
	return errorf(http.StatusForbidden, typePermission, "insufficient_scope", "",
		"admin token %s has scopes %s, which do not allow %s: it needs scope %s", tok.ID, strings.Join(tok.Scopes, ","), what, need)
}

// actor is who makes a change through the API: the token, named, from
// the client's address.
func actor(tok *store.Token, r *http.Request) admin.Actor {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return admin.Actor{Kind: admin.ActorToken, ID: tok.ID, User: tok.Name, Host: host}
}
