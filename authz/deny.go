package authz

import authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

// Messages of the denials that carry no per-request detail; their
// responses are built once.
const (
	msgMissing     = "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY' or in the x-api-key header."
	msgMalformed   = "Incorrect API key provided: it is not a keygate API key. Check for typos or copy the key again."
	msgUnknown     = "Incorrect API key provided. Check the key, or create a new one."
	msgRevoked     = "This API key has been revoked. Create a new key to continue."
	msgConflict    = "Two different API keys were sent in one request; send only one."
	msgTooLong     = "The credential header is too long to be an API key."
	msgBadScheme   = "The Authorization header must use the Bearer scheme: 'Authorization: Bearer YOUR_KEY'."
	msgUnavailable = "Authentication is temporarily unavailable; retry shortly."
	// msgBudgetUnavailable: the rate-limit budget could not be leased in
	// time and this keygate holds none of it (docs/fleet.md).
	msgBudgetUnavailable = "The rate-limit budget of this API key cannot be checked right now; retry in a second."
)

func staticDenials() map[string]*authv3.CheckResponse {
	m := map[string]*authv3.CheckResponse{msgMissing: denyMissing.response(msgMissing)}
	for _, msg := range []string{msgMalformed, msgUnknown, msgRevoked, msgConflict, msgTooLong, msgBadScheme} {
		m[msg] = denyInvalid.response(msg)
	}
	for _, msg := range []string{msgUnavailable, msgBudgetUnavailable} {
		m[msg] = denyUnavailable.response(msg, header("retry-after", "1"))
	}
	m[msgNoAddress] = denyIP.response(msgNoAddress)
	return m
}

func (s *Server) denyCredential(st credStatus) (*authv3.CheckResponse, string) {
	switch st {
	case credMissing:
		return s.static[msgMissing], CodeMissingKey
	case credConflict:
		return s.static[msgConflict], CodeInvalidKey
	case credTooLong:
		return s.static[msgTooLong], CodeInvalidKey
	}
	return s.static[msgBadScheme], CodeInvalidKey
}
