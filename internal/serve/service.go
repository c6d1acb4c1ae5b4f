package serve

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/keygate/keygate/authz"
)

// checkService is Envoy's ext_authz service as keygate serves it: the same
// service and method as authv3.Authorization_ServiceDesc, whose Check
// decodes each request into a pooled authz.Request (the codec's Decoder)
// rather than into a CheckRequest with its messages, maps and strings.
var checkService = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: (*authv3.AuthorizationServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Check",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			r := authz.GetRequest()
			defer authz.PutRequest(r)
			if err := dec(r); err != nil {
				return nil, err
			}
			return srv.(*authz.Server).Decide(ctx, r), nil
		},
	}},
	Streams:  []grpc.StreamDesc{},
	Metadata: authv3.Authorization_ServiceDesc.Metadata,
}
