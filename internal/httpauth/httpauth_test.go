package httpauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/keygate/keygate/internal/httpauth"
)

// recorder is a Checker that keeps what it was asked and denies it.
type recorder struct{ got *authv3.CheckRequest }

var _ httpauth.Checker = (*recorder)(nil)

func (c *recorder) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	c.got = req
	return &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}}}}, nil
}

// headerValues returns every value of name in the check's header map.
func headerValues(req *authv3.CheckRequest, name string) []string {
	var out []string
	for _, h := range req.GetAttributes().GetRequest().GetHttp().GetHeaderMap().GetHeaders() {
		if h.GetKey() == name {
			out = append(out, string(h.GetRawValue()))
		}
	}
	return out
}

// TestOriginalContentLength: in nginx mode, X-Original-Content-Length
// gives the length of a body nginx did not send, which the check then
// carries as the request's content-length; it never shortens a body the
// check carries, and other modes ignore it.
func TestOriginalContentLength(t *testing.T) {
	for _, c := range []struct {
		name, mode, body string
		original         []string
		want             string // the check's content-length
	}{
		{"body not sent", "nginx", "", []string{"2097152"}, "2097152"},
		{"part of the body", "nginx", "{}", []string{"3"}, "3"},
		{"the whole body", "nginx", "{}", []string{"2"}, "2"},
		{"shorter than the body", "nginx", "{}", []string{"0"}, "2"},
		{"not a number", "nginx", "", []string{"12 "}, "0"},
		{"negative", "nginx", "", []string{"-5"}, "0"},
		{"twice", "nginx", "", []string{"2097152", "2097153"}, "0"},
		{"none", "nginx", "", nil, "0"},
		{"traefik mode", "traefik", "", []string{"2097152"}, "0"},
		{"envoy mode", "envoy", "", []string{"2097152"}, "0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			h := httpauth.New(rec, httpauth.Options{Mode: c.mode})
			req := httptest.NewRequest(http.MethodGet, "/_keygate", strings.NewReader(c.body))
			req.Header.Set("Content-Length", "0")
			if c.body != "" {
				req.Header.Set("Content-Length", "2")
			}
			req.Header.Set("X-Original-Method", "POST")
			req.Header.Set("X-Original-URI", "/v1/images/generations")
			req.Header.Set("X-Forwarded-Method", "POST")
			req.Header.Set("X-Forwarded-Uri", "/v1/images/generations")
			req.Header["X-Original-Content-Length"] = c.original
			h.ServeHTTP(httptest.NewRecorder(), req)
			if rec.got == nil {
				t.Fatal("no check was made")
			}
			if got := headerValues(rec.got, "content-length"); !slices.Equal(got, []string{c.want}) {
				t.Errorf("content-length %q, want %q", got, c.want)
			}
			if got := string(rec.got.GetAttributes().GetRequest().GetHttp().GetRawBody()); got != c.body {
				t.Errorf("body %q, want %q", got, c.body)
			}
		})
	}
}
