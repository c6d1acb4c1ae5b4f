package authz

import (
	"sync"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/ratelimit"
)

// allowResponse holds every part of an allow in one allocation: the
// response, its upstream and client headers and its dynamic metadata,
// wired together once. Only the values change from one allow to the next.
type allowResponse struct {
	resp     authv3.CheckResponse
	oneof    authv3.CheckResponse_OkResponse
	ok       authv3.OkHttpResponse
	md       structpb.Struct
	mdVals   [len(mdFields)]structpb.Value
	mdStrs   [len(mdFields)]structpb.Value_StringValue
	hdrs     [3]corev3.HeaderValueOption // key id, account id, reservation id
	vals     [3]corev3.HeaderValue
	upstream [5]*corev3.HeaderValueOption
	client   [12]*corev3.HeaderValueOption
	big      bigNumbers // rate headers whose values the shared cache does not keep
	released bool       // in the pool
}

// Shared by every allow: responses are only read once built.
var (
	okStatus   = &status.Status{}
	balanceLow = header("x-balance-low", "true")
)

// Metadata fields, in the filter's namespace.
var mdFields = [...]string{"key_id", "account_id", "scopes", "env", "reservation_id"}

// allows recycles allow responses that were handed back with Release.
var allows = sync.Pool{New: func() any { return newAllowResponse() }}

func newAllowResponse() *allowResponse {
	a := &allowResponse{}
	a.vals[0].Key, a.vals[1].Key, a.vals[2].Key = "x-keygate-key-id", "x-keygate-account-id", ReservationHeader
	for i := range a.hdrs {
		a.hdrs[i] = corev3.HeaderValueOption{Header: &a.vals[i], AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	a.md.Fields = make(map[string]*structpb.Value, len(mdFields))
	for i, name := range mdFields {
		a.mdVals[i].Kind = &a.mdStrs[i]
		a.md.Fields[name] = &a.mdVals[i]
	}
	a.big.init()
	a.oneof.OkResponse = &a.ok
	a.resp = authv3.CheckResponse{Status: okStatus, HttpResponse: &a.oneof, DynamicMetadata: &a.md}
	return a
}

// Release hands back a response from Check once the caller is done with
// it (for the gRPC server: once marshalled), so that the next allow can
// reuse it. Denials are shared and not recycled; releasing one, or a
// response twice, is a no-op. Neither resp nor anything reached from it
// may be used afterwards.
func Release(resp *authv3.CheckResponse) {
	if !isAllowResponse(resp) {
		return
	}
	a := (*allowResponse)(unsafe.Pointer(resp))
	if !a.released {
		a.released = true
		allows.Put(a)
	}
}

// isAllowResponse reports whether resp is the first field of an
// allowResponse: its oneof is the one that follows it in the same struct
// (a copy of resp, or a response built elsewhere, points elsewhere).
func isAllowResponse(resp *authv3.CheckResponse) bool {
	if resp == nil || resp.Status != okStatus {
		return false
	}
	ok, isOK := resp.HttpResponse.(*authv3.CheckResponse_OkResponse)
	return isOK && uintptr(unsafe.Pointer(ok)) == uintptr(unsafe.Pointer(resp))+unsafe.Offsetof(allowResponse{}.oneof)
}

func (s *Server) allow(k *Key, acct *Account, rl *ratelimit.Result, h *holding, resID string) *authv3.CheckResponse {
	a := allows.Get().(*allowResponse)
	a.released = false
	a.vals[0].Value, a.vals[1].Value = k.ID, k.AccountID
	a.upstream = [5]*corev3.HeaderValueOption{&a.hdrs[0], &a.hdrs[1], k.policy.scopesHeader, k.policy.envHeader}
	upstream, remove := a.upstream[:4], s.removeAll
	if resID != "" {
		a.vals[2].Value = resID
		upstream, remove = append(upstream, &a.hdrs[2]), s.remove
	}
	client := a.client[:0]
	if rl != nil {
		client = s.headers.appendRate(client, rl, &a.big)
	}
	if h.tokens != nil {
		client = s.headers.appendTokens(client, h.tokens, &a.big)
	}
	if acct != nil {
		if avail := s.available(acct); avail.Minor < s.threshold(acct) {
			client = append(client, balanceLow, header("x-balance-remaining", money.FormatExact(avail, acct.Currency)+" "+acct.Currency))
		}
	}
	a.ok = authv3.OkHttpResponse{Headers: upstream, HeadersToRemove: remove, ResponseHeadersToAdd: client}
	for i, v := range [...]string{k.ID, k.AccountID, k.policy.joined, k.policy.env, resID} {
		a.mdStrs[i].StringValue = v
	}
	return &a.resp
}

// ReservationHeader carries a metered request's reservation id to the
// backend, for its settlement; keygate's value replaces any the client
// sent.
const ReservationHeader = "x-keygate-reservation-id"

// available is the account's balance less what keygates hold of it for
// requests in flight (their leases, as last read).
func (s *Server) available(acct *Account) money.Exact {
	e, err := acct.Exact().AddNanos(-acct.Held())
	if err != nil {
		return acct.Exact()
	}
	return e
}
