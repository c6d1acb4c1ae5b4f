package authz

import (
	"fmt"
	"net/netip"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/clientip"
)

// CodeIPNotAllowed is the error code of a key used from outside its
// allow_ips.
const CodeIPNotAllowed = "ip_not_allowed"

var denyIP = denial{403, CodeIPNotAllowed, "permission_error", codes.PermissionDenied, ""}

// msgNoAddress answers a key with allow_ips when the request's address is
// unknown: the proxy did not send it as docs/client-ip.md says.
const msgNoAddress = "This API key can be used only from allowed IP addresses, and the address this request comes from is unknown. Contact the API provider."

// denyAddress answers a request made with a key limited to ips: nil if
// the client's address is in one of them, else the deny, which names the
// address keygate saw (never the key).
func (s *Server) denyAddress(ips []netip.Prefix, r *Request) *authv3.CheckResponse {
	a, ok := clientip.Of(r.peer, r.xff(), s.hops)
	if !ok {
		return s.static[msgNoAddress]
	}
	for _, p := range ips {
		if p.Contains(a) {
			return nil
		}
	}
	return denyIP.response(fmt.Sprintf("This API key cannot be used from %s: the address is not in the key's IP allowlist.", a))
}
