package authz

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/ratelimit"
)

// allowResponse holds every part of an allow in one allocation: the
// response, its upstream and client headers and its dynamic metadata.
type allowResponse struct {
	resp     authv3.CheckResponse
	oneof    authv3.CheckResponse_OkResponse
	ok       authv3.OkHttpResponse
	md       structpb.Struct
	mdVals   [4]structpb.Value
	mdStrs   [4]structpb.Value_StringValue
	hdrs     [2]corev3.HeaderValueOption // key id, account id
	vals     [2]corev3.HeaderValue
	upstream [4]*corev3.HeaderValueOption
	client   [5]*corev3.HeaderValueOption
}

// Shared by every allow: responses are only read once built.
var (
	okStatus   = &status.Status{}
	balanceLow = header("x-balance-low", "true")
)

// Metadata fields, in the filter's namespace.
var mdFields = [4]string{"key_id", "account_id", "scopes", "env"}

func (s *Server) allow(k *Key, acct *Account, rl *ratelimit.Result) *authv3.CheckResponse {
	a := &allowResponse{}
	a.vals[0] = corev3.HeaderValue{Key: "x-keygate-key-id", Value: k.ID}
	a.vals[1] = corev3.HeaderValue{Key: "x-keygate-account-id", Value: k.AccountID}
	for i := range a.hdrs {
		a.hdrs[i] = corev3.HeaderValueOption{Header: &a.vals[i], AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
	}
	a.upstream = [4]*corev3.HeaderValueOption{&a.hdrs[0], &a.hdrs[1], k.scopes.header, k.envHeader()}
	client := a.client[:0]
	if rl != nil {
		client = s.headers.appendRate(client, rl)
	}
	if acct != nil && acct.Balance < s.threshold(acct) {
		client = append(client, balanceLow,
			header("x-balance-remaining", money.Format(acct.Balance, acct.Currency)+" "+acct.Currency))
	}
	a.ok = authv3.OkHttpResponse{Headers: a.upstream[:], HeadersToRemove: s.remove, ResponseHeadersToAdd: client}
	a.oneof.OkResponse = &a.ok
	for i, v := range [4]string{k.ID, k.AccountID, k.scopes.joined, k.env()} {
		a.mdStrs[i].StringValue = v
		a.mdVals[i].Kind = &a.mdStrs[i]
	}
	a.md.Fields = map[string]*structpb.Value{
		mdFields[0]: &a.mdVals[0], mdFields[1]: &a.mdVals[1], mdFields[2]: &a.mdVals[2], mdFields[3]: &a.mdVals[3],
	}
	a.resp = authv3.CheckResponse{Status: okStatus, HttpResponse: &a.oneof, DynamicMetadata: &a.md}
	return &a.resp
}
