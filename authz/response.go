package authz

import (
	"encoding/json"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// Error codes and types of the deny body, OpenAI-compatible.
const (
	CodeMissingKey        = "missing_api_key"
	CodeInvalidKey        = "invalid_api_key"
	CodeExpiredKey        = "expired_api_key"
	CodeInsufficientScope = "insufficient_permissions"
	CodeInvalidPath       = "invalid_path"
	CodeNoBalance         = "insufficient_balance"
	CodeRateLimited       = "rate_limit_exceeded"
	CodeUnavailable       = "auth_unavailable"
	CodeOK                = "ok" // the metrics label of an allow
)

// Codes lists every result code: the labels of keygate_checks_total.
var Codes = []string{CodeOK, CodeMissingKey, CodeInvalidKey, CodeExpiredKey, CodeInvalidPath, CodeInsufficientScope,
	CodeIPNotAllowed, CodeNoBalance, CodeRateLimited, CodeUnavailable}

// denial describes one row of the decision table.
type denial struct {
	http     int
	code     string
	errType  string
	grpcCode codes.Code
	// wwwAuth is the RFC 6750 error for www-authenticate; "" for none.
	wwwAuth string
}

var (
	denyMissing     = denial{401, CodeMissingKey, "invalid_request_error", codes.Unauthenticated, ""}
	denyInvalid     = denial{401, CodeInvalidKey, "invalid_request_error", codes.Unauthenticated, "invalid_token"}
	denyExpired     = denial{401, CodeExpiredKey, "invalid_request_error", codes.Unauthenticated, "invalid_token"}
	denyPath        = denial{400, CodeInvalidPath, "invalid_request_error", codes.InvalidArgument, ""}
	denyScope       = denial{403, CodeInsufficientScope, "permission_error", codes.PermissionDenied, ""}
	denyBalance     = denial{402, CodeNoBalance, "insufficient_quota", codes.PermissionDenied, ""}
	denyRateLimit   = denial{429, CodeRateLimited, "rate_limit_error", codes.ResourceExhausted, ""}
	denyUnavailable = denial{503, CodeUnavailable, "server_error", codes.Unavailable, ""}
)

// errorBody is the JSON deny body.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    string  `json:"code"`
	} `json:"error"`
}

// response builds the CheckResponse for d with message and extra headers.
func (d denial) response(message string, extra ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	return d.build(message, "", false, extra)
}

// responseParam is response with the body's param set.
func (d denial) responseParam(message, param string) *authv3.CheckResponse {
	return d.build(message, param, false, nil)
}

// responseRetry is response for a denial that may pass a moment later:
// it tells clients to retry in a second, whatever its status.
func (d denial) responseRetry(message string) *authv3.CheckResponse {
	return d.build(message, "", true, []*corev3.HeaderValueOption{header("x-should-retry", "true"), header("retry-after", "1")})
}

func (d denial) build(message, param string, retry bool, extra []*corev3.HeaderValueOption) *authv3.CheckResponse {
	var b errorBody
	b.Error.Message, b.Error.Type, b.Error.Code = message, d.errType, d.code
	if param != "" {
		b.Error.Param = &param
	}
	body, _ := json.Marshal(b)
	headers := []*corev3.HeaderValueOption{header("content-type", "application/json")}
	if d.http == 401 {
		headers = append(headers, header("www-authenticate", d.challenge()))
	}
	if !retry && d.http >= 400 && d.http < 500 && d.http != 429 {
		headers = append(headers, header("x-should-retry", "false"))
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(d.grpcCode), Message: d.code},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.http)},
			Headers: append(headers, extra...),
			Body:    string(body),
		}},
	}
}

func (d denial) challenge() string {
	if d.wwwAuth == "" {
		return `Bearer realm="keygate"`
	}
	return `Bearer realm="keygate", error="` + d.wwwAuth + `"`
}

// header returns a header that replaces any of the same name.
func header(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// seconds rounds up to whole seconds for header values.
func seconds(ns int64) string { return strconv.FormatInt(ceilSeconds(ns), 10) }
