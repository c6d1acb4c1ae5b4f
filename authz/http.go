package authz

import (
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// HTTPHandler answers the same decision over plain HTTP, for Envoy's
// ext_authz http_service, nginx auth_request and Traefik forwardAuth: 200
// with the identity and rate-limit headers on allow, the deny's status,
// headers and JSON body otherwise. The original method and path are read
// from X-Original-Method/X-Original-URI (nginx), X-Forwarded-Method/
// X-Forwarded-Uri (Traefik), or the request itself (Envoy); the proxy must
// set those headers, overwriting any a client sent.
func (s *Server) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, _ := s.Check(r.Context(), httpCheckRequest(r))
		defer Release(resp)
		if ok := resp.GetOkResponse(); ok != nil {
			writeHeaders(w, ok.GetHeaders())
			writeHeaders(w, ok.GetResponseHeadersToAdd())
			// Envoy's http_service removes these from the upstream request.
			w.Header().Set("x-envoy-auth-headers-to-remove", strings.Join(ok.GetHeadersToRemove(), ","))
			w.WriteHeader(http.StatusOK)
			return
		}
		d := resp.GetDeniedResponse()
		writeHeaders(w, d.GetHeaders())
		w.WriteHeader(int(d.GetStatus().GetCode()))
		_, _ = w.Write([]byte(d.GetBody()))
	})
}

// httpCheckRequest describes an HTTP authorization request as Envoy's
// Check would: every header value as a raw header_map entry, so repeated
// credential headers are seen.
func httpCheckRequest(r *http.Request) *authv3.CheckRequest {
	method := firstOf(r.Header.Get("X-Original-Method"), r.Header.Get("X-Forwarded-Method"), r.Method)
	path := firstOf(r.Header.Get("X-Original-URI"), r.Header.Get("X-Forwarded-Uri"), r.URL.RequestURI())
	hm := &corev3.HeaderMap{}
	for name, values := range r.Header {
		for _, v := range values {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: strings.ToLower(name), RawValue: []byte(v)})
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, HeaderMap: hm},
	}}}
}

func writeHeaders(w http.ResponseWriter, hs []*corev3.HeaderValueOption) {
	for _, h := range hs {
		w.Header().Set(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
