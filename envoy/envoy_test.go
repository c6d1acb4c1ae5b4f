package envoy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/config"
)

// The typed configs envoy.yaml uses. Naming the types links their packages
// in, which registers them for protojson's Any resolution.
var (
	_ = (*extauthzv3.ExtAuthz)(nil)
	_ = (*extprocv3.ExternalProcessor)(nil)
	_ = (*earlyv3.HeaderMutation)(nil)
	_ = (*celv3.ExpressionFilter)(nil)
	_ = (*routerv3.Router)(nil)
	_ = (*hcmv3.HttpConnectionManager)(nil)
	_ = (*streamv3.StdoutAccessLog)(nil)
	_ = (*upstreamhttpv3.HttpProtocolOptions)(nil)
)

const (
	extAuthzName = "envoy.filters.http.ext_authz"
	extProcName  = "envoy.filters.http.ext_proc"
)

// yamlToJSON converts YAML to JSON, keeping map keys as strings.
func yamlToJSON(t *testing.T, in []byte) []byte {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(in, &v); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("yaml -> json: %v", err)
	}
	return out
}

// load parses an Envoy bootstrap YAML the way Envoy does (unknown fields are
// errors) and validates it, including every typed config behind an Any.
func load(t *testing.T, in []byte) (*bootstrapv3.Bootstrap, error) {
	t.Helper()
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(yamlToJSON(t, in), &b); err != nil {
		return nil, fmt.Errorf("unmarshal: %w", err)
	}
	if err := validateDeep(b.ProtoReflect()); err != nil {
		return nil, err
	}
	if err := keygatePolicy(&b); err != nil {
		return nil, err
	}
	return &b, nil
}

// keygatePolicy holds the rules that protoc-gen-validate does not know but
// keygate's deployment depends on: every ext_authz filter is fail-closed,
// has a positive timeout of at most one second, and sends a body larger
// than it buffers in part (not a 413) within what the listener buffers;
// every ext_proc filter only observes (never delays a byte, never fails a
// request).
func keygatePolicy(b *bootstrapv3.Bootstrap) error {
	n := 0
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					var ea extauthzv3.ExtAuthz
					var ep extprocv3.ExternalProcessor
					switch {
					case hf.GetTypedConfig().UnmarshalTo(&ea) == nil:
						n++
						if err := extAuthzPolicy(l.GetName(), &ea, l.GetPerConnectionBufferLimitBytes()); err != nil {
							return err
						}
					case hf.GetTypedConfig().UnmarshalTo(&ep) == nil:
						if err := extProcPolicy(l.GetName(), &ep); err != nil {
							return err
						}
					}
				}
			}
		}
	}
	if n == 0 {
		return errors.New("no ext_authz filter")
	}
	return nil
}

func extAuthzPolicy(listener string, ea *extauthzv3.ExtAuthz, buffer *wrapperspb.UInt32Value) error {
	if ea.GetFailureModeAllow() {
		return fmt.Errorf("listener %s: ext_authz failure_mode_allow must be false", listener)
	}
	to := ea.GetGrpcService().GetTimeout()
	if to == nil || !to.IsValid() || to.AsDuration() <= 0 || to.AsDuration() > time.Second {
		return fmt.Errorf("listener %s: ext_authz timeout %v must be in (0, 1s]", listener, to.AsDuration())
	}
	if wb := ea.GetWithRequestBody(); wb != nil {
		if !wb.GetAllowPartialMessage() {
			return fmt.Errorf("listener %s: ext_authz with_request_body.allow_partial_message must be true, or a body over max_request_bytes is refused 413", listener)
		}
		limit := uint32(1 << 20) // Envoy's default
		if buffer != nil {
			limit = buffer.GetValue()
		}
		if wb.GetMaxRequestBytes() > limit {
			return fmt.Errorf("listener %s: ext_authz max_request_bytes %d is more than per_connection_buffer_limit_bytes %d: bodies in between are refused 413",
				listener, wb.GetMaxRequestBytes(), limit)
		}
	}
	return nil
}

func extProcPolicy(listener string, ep *extprocv3.ExternalProcessor) error {
	pm := ep.GetProcessingMode()
	switch {
	case !ep.GetObservabilityMode():
		return fmt.Errorf("listener %s: ext_proc must run in observability_mode: keygate only observes, and must never delay a byte", listener)
	case !ep.GetFailureModeAllow():
		return fmt.Errorf("listener %s: ext_proc failure_mode_allow must be true: observation must never fail a request", listener)
	case pm.GetRequestBodyMode() != extprocv3.ProcessingMode_NONE || pm.GetResponseBodyMode() != extprocv3.ProcessingMode_STREAMED:
		return fmt.Errorf("listener %s: ext_proc must send no request body and the response body STREAMED", listener)
	}
	return nil
}

type validatorAll interface{ ValidateAll() error }

// validateDeep runs the protoc-gen-validate rules of m (ValidateAll) and of
// every message packed in an Any anywhere below it; ValidateAll alone does
// not look inside Any.
func validateDeep(m protoreflect.Message) error {
	var errs []error
	if v, ok := m.Interface().(validatorAll); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Descriptor().FullName(), err))
		}
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("any %s: %w", a.GetTypeUrl(), err)
		}
		return validateDeep(inner.ProtoReflect())
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
			return true
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if err := validateDeep(l.Get(i).Message()); err != nil {
					errs = append(errs, err)
				}
			}
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					if err := validateDeep(mv.Message()); err != nil {
						errs = append(errs, err)
					}
				}
				return true
			})
		default:
			if err := validateDeep(v.Message()); err != nil {
				errs = append(errs, err)
			}
		}
		return true
	})
	return errors.Join(errs...)
}

func readConfig(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unpack[T proto.Message](t *testing.T, a *anypb.Any, m T) T {
	t.Helper()
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
	}
	return m
}

// parts pulls out the pieces of envoy.yaml the assertions look at.
type parts struct {
	listener *listenerv3.Listener
	hcm      *hcmv3.HttpConnectionManager
	extAuthz *extauthzv3.ExtAuthz
	extProc  *extprocv3.ExternalProcessor
	routes   map[string]*routev3.Route
	clusters map[string]*clusterv3.Cluster
}

func split(t *testing.T, b *bootstrapv3.Bootstrap) parts {
	t.Helper()
	p := parts{routes: map[string]*routev3.Route{}, clusters: map[string]*clusterv3.Cluster{}}
	ls := b.GetStaticResources().GetListeners()
	if len(ls) != 1 {
		t.Fatalf("want 1 listener, got %d", len(ls))
	}
	p.listener = ls[0]
	sa := ls[0].GetAddress().GetSocketAddress()
	if sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != 8080 {
		t.Errorf("listener on %s:%d, want 0.0.0.0:8080", sa.GetAddress(), sa.GetPortValue())
	}
	fs := ls[0].GetFilterChains()[0].GetFilters()
	if len(fs) != 1 || fs[0].GetName() != "envoy.filters.network.http_connection_manager" {
		t.Fatalf("want exactly the HTTP connection manager network filter, got %v", fs)
	}
	p.hcm = unpack(t, fs[0].GetTypedConfig(), &hcmv3.HttpConnectionManager{})
	hf := p.hcm.GetHttpFilters()
	if len(hf) != 3 || hf[0].GetName() != extAuthzName || hf[1].GetName() != extProcName || hf[2].GetName() != "envoy.filters.http.router" {
		t.Fatalf("http filters must be ext_authz, ext_proc and the router, got %v", hf)
	}
	p.extAuthz = unpack(t, hf[0].GetTypedConfig(), &extauthzv3.ExtAuthz{})
	p.extProc = unpack(t, hf[1].GetTypedConfig(), &extprocv3.ExternalProcessor{})
	for _, vh := range p.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			p.routes[r.GetName()] = r
		}
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		p.clusters[c.GetName()] = c
	}
	return p
}

func TestEnvoyConfigValid(t *testing.T) {
	b, err := load(t, readConfig(t))
	if err != nil {
		t.Fatalf("envoy.yaml does not validate: %v", err)
	}
	p := split(t, b)

	ea := p.extAuthz
	if ea.GetFailureModeAllow() {
		t.Error("ext_authz must be fail-closed (failure_mode_allow: false)")
	}
	if ea.GetTransportApiVersion().String() != "V3" {
		t.Errorf("transport_api_version = %v, want V3", ea.GetTransportApiVersion())
	}
	wb := ea.GetWithRequestBody()
	if wb.GetMaxRequestBytes() != 1<<20 || !wb.GetAllowPartialMessage() || !wb.GetPackAsBytes() {
		t.Errorf("with_request_body = %v, want the first 1 MiB as bytes, larger bodies in part", wb)
	}
	if got := p.listener.GetPerConnectionBufferLimitBytes().GetValue(); got < wb.GetMaxRequestBytes() {
		t.Errorf("per_connection_buffer_limit_bytes %d is less than max_request_bytes %d: bodies in between would be refused 413", got, wb.GetMaxRequestBytes())
	}
	if !ea.GetEncodeRawHeaders() {
		t.Error("encode_raw_headers must be true: header bytes that are not UTF-8 must not fail the check")
	}
	if !ea.GetIncludePeerCertificate() {
		t.Error("include_peer_certificate must be true")
	}
	gs := ea.GetGrpcService()
	if got := gs.GetEnvoyGrpc().GetClusterName(); got != "keygate" {
		t.Errorf("ext_authz cluster = %q, want keygate", got)
	}
	if got := gs.GetTimeout().AsDuration(); got != 250*time.Millisecond {
		t.Errorf("ext_authz timeout = %v, want 250ms", got)
	}
	if code := ea.GetStatusOnError().GetCode(); code != 0 && code < 500 {
		t.Errorf("status_on_error %v: an auth outage should not look like a client error", code)
	}
}

func TestEnvoyRouteScopes(t *testing.T) {
	b, err := load(t, readConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	p := split(t, b)

	// methods are those the route matches, of methodsTried; "" for any.
	want := map[string]struct{ prefix, methods, scope string }{
		"chat_completions": {"/v1/chat/completions", "POST", "chat:send"},
		"embeddings":       {"/v1/embeddings", "", "embeddings:create"},
		"models":           {"/v1/models", "GET HEAD", "models:read"}, // a HEAD needs what a GET needs
	}
	for name, w := range want {
		r := p.routes[name]
		if r == nil {
			t.Errorf("route %s missing", name)
			continue
		}
		if got := r.GetMatch().GetPrefix(); got != w.prefix {
			t.Errorf("route %s prefix = %q, want %q", name, got, w.prefix)
		}
		if cs := r.GetMatch().GetCaseSensitive(); cs == nil || cs.GetValue() {
			t.Errorf("route %s must match in any case (case_sensitive: false), or /V1/... skips its scope", name)
		}
		if got := methods(t, r); got != w.methods {
			t.Errorf("route %s matches methods %q, want %q", name, got, w.methods)
		}
		if got := r.GetRoute().GetCluster(); got != "backend" {
			t.Errorf("route %s goes to %q, want backend", name, got)
		}
		a := r.GetTypedPerFilterConfig()[extAuthzName]
		if a == nil {
			t.Errorf("route %s has no ext_authz per-route config", name)
			continue
		}
		pr := unpack(t, a, &extauthzv3.ExtAuthzPerRoute{})
		if got := pr.GetCheckSettings().GetContextExtensions()["keygate.scope"]; got != w.scope {
			t.Errorf("route %s keygate.scope = %q, want %q", name, got, w.scope)
		}
	}

	hz := p.routes["healthz"]
	if hz == nil {
		t.Fatal("healthz route missing")
	}
	if hz.GetMatch().GetPath() != "/healthz" {
		t.Errorf("healthz must match the exact path, got %v", hz.GetMatch())
	}
	if !unpack(t, hz.GetTypedPerFilterConfig()[extAuthzName], &extauthzv3.ExtAuthzPerRoute{}).GetDisabled() {
		t.Error("healthz must have ext_authz disabled")
	}

	def := p.routes["default"]
	if def == nil || def.GetMatch().GetPrefix() != "/" {
		t.Fatal("catch-all route missing")
	}
	if a := def.GetTypedPerFilterConfig()[extAuthzName]; a != nil {
		if unpack(t, a, &extauthzv3.ExtAuthzPerRoute{}).GetDisabled() {
			t.Error("catch-all route must not disable ext_authz")
		}
	}
}

// methodsTried are the methods a route's :method match is tried with.
var methodsTried = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "GETX", "XGET"}

// methods returns the methods of methodsTried that r's :method matchers
// match, space-separated, or "" when r has none. Envoy matches a method in
// any case the client writes it, so each is tried in lower case too, and
// must match the same.
func methods(t *testing.T, r *routev3.Route) string {
	t.Helper()
	var ms []*matcherv3.StringMatcher
	for _, h := range r.GetMatch().GetHeaders() {
		if h.GetName() == ":method" {
			ms = append(ms, h.GetStringMatch())
		}
	}
	if len(ms) == 0 {
		return ""
	}
	var out []string
	for _, m := range methodsTried {
		upper, lower := true, true
		for _, sm := range ms {
			upper = upper && stringMatch(t, sm, m)
			lower = lower && stringMatch(t, sm, strings.ToLower(m))
		}
		if upper != lower {
			t.Errorf("route %s matches %s and %s differently", r.GetName(), m, strings.ToLower(m))
		}
		if upper {
			out = append(out, m)
		}
	}
	return strings.Join(out, " ")
}

// stringMatch reports whether Envoy's StringMatcher m matches s: an exact
// or a safe_regex match (RE2, which Go's regexp implements, on the whole
// string).
func stringMatch(t *testing.T, m *matcherv3.StringMatcher, s string) bool {
	t.Helper()
	switch {
	case m.GetSafeRegex() != nil:
		re, err := regexp.Compile("^(?:" + m.GetSafeRegex().GetRegex() + ")$")
		if err != nil {
			t.Fatalf("safe_regex %q: %v", m.GetSafeRegex().GetRegex(), err)
		}
		return re.MatchString(s)
	case m.GetExact() != "":
		if m.GetIgnoreCase() {
			return strings.EqualFold(m.GetExact(), s)
		}
		return m.GetExact() == s
	}
	t.Fatalf("unexpected string matcher %v", m)
	return false
}

func TestEnvoyClusters(t *testing.T) {
	b, err := load(t, readConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	p := split(t, b)

	port := func(c *clusterv3.Cluster) (string, uint32) {
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		return sa.GetAddress(), sa.GetPortValue()
	}
	kg := p.clusters["keygate"]
	if kg == nil {
		t.Fatal("keygate cluster missing")
	}
	if a, pv := port(kg); a != "127.0.0.1" || pv != 9191 {
		t.Errorf("keygate cluster at %s:%d, want 127.0.0.1:9191", a, pv)
	}
	po := kg.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if po == nil {
		t.Fatal("keygate cluster has no HttpProtocolOptions")
	}
	if unpack(t, po, &upstreamhttpv3.HttpProtocolOptions{}).GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Error("keygate cluster must speak HTTP/2 (gRPC)")
	}
	be := p.clusters["backend"]
	if be == nil {
		t.Fatal("backend cluster missing")
	}
	if a, pv := port(be); a != "127.0.0.1" || pv != 8000 {
		t.Errorf("backend cluster at %s:%d, want 127.0.0.1:8000", a, pv)
	}
}

func TestEnvoyAccessLog(t *testing.T) {
	raw := readConfig(t)
	b, err := load(t, raw)
	if err != nil {
		t.Fatal(err)
	}
	p := split(t, b)
	als := p.hcm.GetAccessLog()
	if len(als) == 0 {
		t.Fatal("no access log")
	}
	sl := unpack(t, als[0].GetTypedConfig(), &streamv3.StdoutAccessLog{})
	jf := sl.GetLogFormat().GetJsonFormat()
	if jf == nil {
		t.Fatal("access log must be JSON")
	}
	fields := jf.AsMap()
	for k, v := range map[string]string{
		"key_id":     "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:key_id)%",
		"account_id": "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:account_id)%",
	} {
		if fields[k] != v {
			t.Errorf("access log %s = %v, want %s", k, fields[k], v)
		}
	}
	// Only these request headers are logged: never a credential, whatever
	// keygate's `credentials` name.
	logged := map[string]bool{":METHOD": true, ":PATH": true, "X-ENVOY-ORIGINAL-PATH": true, "X-REQUEST-ID": true, "USER-AGENT": true}
	req := regexp.MustCompile(`%REQ(?:_WITHOUT_QUERY)?\(([^)]*)\)`)
	for k, v := range fields {
		s := strings.ToUpper(fmt.Sprint(v))
		for _, m := range req.FindAllStringSubmatch(s, -1) {
			for _, h := range strings.Split(m[1], "?") {
				if !logged[h] {
					t.Errorf("access log field %s logs the request header %s: only %v may be", k, h, logged)
				}
			}
		}
	}
}

// TestEnvoyBrokenCopiesFail makes sure the validation above has teeth.
func TestEnvoyBrokenCopiesFail(t *testing.T) {
	good := string(readConfig(t))
	cases := []struct{ name, old, new string }{
		{"unknown field", "failure_mode_allow: false", "failure_mode_allow: false\n                      fail_open_please: true"},
		{"negative cluster timeout", "connect_timeout: 1s", "connect_timeout: -1s"},
		{"empty stat_prefix inside typed_config", "stat_prefix: ingress_http", `stat_prefix: ""`},
		{"bad enum", "transport_api_version: V3", "transport_api_version: V9"},
		{"unknown typed_config type", "extensions.filters.http.router.v3.Router", "extensions.filters.http.router.v3.Rooter"},
		{"negative ext_authz timeout", "        timeout: 0.25s", "        timeout: -0.25s"},
		{"fail open", "failure_mode_allow: false", "failure_mode_allow: true"},
		{"port out of range", "port_value: 8000", "port_value: 80000"},
		{"ext_proc that waits for keygate", "observability_mode: true", "observability_mode: false"},
		{"ext_proc that fails requests", "failure_mode_allow: true", "failure_mode_allow: false"},
		{"ext_proc that buffers the request", "request_body_mode: NONE", "request_body_mode: BUFFERED"},
		{"uploads over the check's buffer refused", "allow_partial_message: true", "allow_partial_message: false"},
		{"check's buffer over the listener's", "per_connection_buffer_limit_bytes: 1048576", "per_connection_buffer_limit_bytes: 65536"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if strings.Count(good, c.old) != 1 {
				t.Fatalf("%q must occur exactly once in envoy.yaml", c.old)
			}
			broken := strings.Replace(good, c.old, c.new, 1)
			if _, err := load(t, []byte(broken)); err == nil {
				t.Fatal("broken config validated")
			} else {
				t.Logf("rejected as expected: %.200v", err)
			}
		})
	}
}

// The Helm chart renders its Envoy ConfigMap from a copy of envoy.yaml
// (Helm cannot read files outside the chart) and substitutes the two ports.
func TestHelmChartCopyInSync(t *testing.T) {
	good := readConfig(t)
	chart, err := os.ReadFile(filepath.Join("..", "k8s", "keygate", "files", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(good, chart) {
		t.Fatal("k8s/keygate/files/envoy.yaml differs from envoy/envoy.yaml: cp envoy/envoy.yaml k8s/keygate/files/envoy.yaml")
	}
	for _, s := range []string{"port_value: 8080", "port_value: 8000"} {
		if n := strings.Count(string(good), s); n != 1 {
			t.Errorf("%q occurs %d times; the chart templates it and needs exactly one", s, n)
		}
	}
}

func loadYAMLDocs(t *testing.T, name string) []map[string]any {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// dig walks maps and lists: keys are map keys, ints are list indexes.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not a map", path)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: not a list of > %d", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func byKind(t *testing.T, docs []map[string]any, kind string) map[string]any {
	t.Helper()
	for _, d := range docs {
		if d["kind"] == kind {
			return d
		}
	}
	t.Fatalf("no %s document", kind)
	return nil
}

func TestIstioSnippet(t *testing.T) {
	docs := loadYAMLDocs(t, "istio.yaml")
	cm := byKind(t, docs, "ConfigMap")
	var mesh map[string]any
	if err := yaml.Unmarshal([]byte(dig(t, cm, "data", "mesh").(string)), &mesh); err != nil {
		t.Fatalf("mesh config: %v", err)
	}
	prov := dig(t, mesh, "extensionProviders", 0).(map[string]any)
	if prov["name"] != "keygate" {
		t.Errorf("provider name = %v, want keygate", prov["name"])
	}
	g := dig(t, prov, "envoyExtAuthzGrpc")
	if p := dig(t, g, "port"); p != 9191 {
		t.Errorf("provider port = %v, want 9191", p)
	}
	if to := dig(t, g, "timeout"); to != "0.25s" {
		t.Errorf("provider timeout = %v, want 0.25s", to)
	}
	if fo := dig(t, g, "failOpen"); fo != false {
		t.Errorf("provider failOpen = %v, want false", fo)
	}
	if b := dig(t, g, "includeRequestBodyInCheck"); dig(t, b, "maxRequestBytes") != 1048576 || dig(t, b, "allowPartialMessage") != true || dig(t, b, "packAsBytes") != true {
		t.Errorf("provider includeRequestBodyInCheck = %v, want the first 1 MiB as bytes, larger bodies in part", b)
	}
	ap := byKind(t, docs, "AuthorizationPolicy")
	if ap["apiVersion"] != "security.istio.io/v1" {
		t.Errorf("AuthorizationPolicy apiVersion = %v", ap["apiVersion"])
	}
	if a := dig(t, ap, "spec", "action"); a != "CUSTOM" {
		t.Errorf("action = %v, want CUSTOM", a)
	}
	if n := dig(t, ap, "spec", "provider", "name"); n != "keygate" {
		t.Errorf("provider = %v, want keygate", n)
	}
}

func TestEnvoyGatewaySnippet(t *testing.T) {
	docs := loadYAMLDocs(t, "envoy-gateway.yaml")
	sp := byKind(t, docs, "SecurityPolicy")
	if sp["apiVersion"] != "gateway.envoyproxy.io/v1alpha1" {
		t.Errorf("SecurityPolicy apiVersion = %v", sp["apiVersion"])
	}
	ext := dig(t, sp, "spec", "extAuth")
	if fo := dig(t, ext, "failOpen"); fo != false {
		t.Errorf("extAuth.failOpen = %v, want false", fo)
	}
	if b := dig(t, ext, "bodyToExtAuth"); b != nil {
		t.Errorf("extAuth.bodyToExtAuth = %v: it cannot send a body in part, and would refuse uploads over it", b)
	}
	ref := dig(t, ext, "grpc", "backendRefs", 0)
	if p := dig(t, ref, "port"); p != 9191 {
		t.Errorf("grpc backendRef port = %v, want 9191", p)
	}
	if n := dig(t, ref, "name"); n != "keygate" {
		t.Errorf("grpc backendRef name = %v, want keygate", n)
	}
	svc := byKind(t, docs, "Service")
	if p := dig(t, svc, "spec", "ports", 0, "port"); p != 9191 {
		t.Errorf("keygate Service port = %v, want 9191", p)
	}
}

// TestEnvoyExtProc: keygate observes each response through ext_proc, in
// observability mode, and sees only the headers it reads.
func TestEnvoyExtProc(t *testing.T) {
	b, err := load(t, readConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	p := split(t, b)
	ep := p.extProc
	if !ep.GetObservabilityMode() || !ep.GetFailureModeAllow() {
		t.Errorf("ext_proc observability_mode %v, failure_mode_allow %v; want both true", ep.GetObservabilityMode(), ep.GetFailureModeAllow())
	}
	want := &extprocv3.ProcessingMode{
		RequestHeaderMode: extprocv3.ProcessingMode_SEND, ResponseHeaderMode: extprocv3.ProcessingMode_SEND,
		RequestBodyMode: extprocv3.ProcessingMode_NONE, ResponseBodyMode: extprocv3.ProcessingMode_STREAMED,
		RequestTrailerMode: extprocv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocv3.ProcessingMode_SEND,
	}
	if !proto.Equal(ep.GetProcessingMode(), want) {
		t.Errorf("processing_mode = %v, want %v", ep.GetProcessingMode(), want)
	}
	if to := ep.GetMessageTimeout(); to == nil || to.AsDuration() <= 0 {
		t.Errorf("message_timeout = %v, want one set", to)
	}
	var forwarded []string
	for _, m := range ep.GetForwardRules().GetAllowedHeaders().GetPatterns() {
		forwarded = append(forwarded, m.GetExact())
	}
	if got := strings.Join(forwarded, " "); got != "x-keygate-reservation-id :status content-type content-encoding" {
		t.Errorf("ext_proc forwards %q: only the headers keygate reads, never a credential", got)
	}
	// Its own cluster: the same keygate over HTTP/2, so that responses in
	// flight never take ext_authz's share of the keygate cluster.
	name := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	obs, kg := p.clusters[name], p.clusters["keygate"]
	if name == "keygate" || obs == nil {
		t.Fatalf("ext_proc cluster %q: want a cluster of its own", name)
	}
	if !proto.Equal(obs.GetLoadAssignment().GetEndpoints()[0], kg.GetLoadAssignment().GetEndpoints()[0]) ||
		!proto.Equal(obs.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"],
			kg.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]) {
		t.Errorf("cluster %s must reach keygate as the keygate cluster does (same address, HTTP/2)", name)
	}
	if th := obs.GetCircuitBreakers().GetThresholds(); len(th) != 1 || th[0].GetMaxRequests().GetValue() < 10000 {
		t.Errorf("cluster %s circuit breakers %v: one stream per request in flight needs far more than Envoy's default 1024", name, th)
	}
	// Where ext_authz is off (probes), so is ext_proc.
	hz := p.routes["healthz"].GetTypedPerFilterConfig()[extProcName]
	if hz == nil || !unpack(t, hz, &extprocv3.ExtProcPerRoute{}).GetDisabled() {
		t.Error("healthz must have ext_proc disabled")
	}
}

// TestEnvoyReservationHeaderStripped: a client cannot name a reservation,
// nor override the method keygate decides on; the headers are removed
// before any filter, and only keygate's check sets the reservation again.
func TestEnvoyReservationHeaderStripped(t *testing.T) {
	b, err := load(t, readConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	p := split(t, b)
	ext := p.hcm.GetEarlyHeaderMutationExtensions()
	if len(ext) != 1 {
		t.Fatalf("early_header_mutation_extensions: %v", ext)
	}
	var removed []string
	for _, m := range unpack(t, ext[0].GetTypedConfig(), &earlyv3.HeaderMutation{}).GetMutations() {
		removed = append(removed, m.GetRemove())
	}
	want := []string{"x-keygate-reservation-id", "x-http-method-override", "x-http-method", "x-method-override"}
	if !slices.Equal(removed, want) {
		t.Errorf("early header mutations remove %v, want %v", removed, want)
	}
}

// TestEnvoyClientAddress: Envoy appends its downstream peer to
// X-Forwarded-For and counts as many trusted hops as keygate does by
// default, with no other way of finding the client; ext_authz sends every
// header, X-Forwarded-For included, so the check carries what keygate's
// rule reads (docs/client-ip.md).
func TestEnvoyClientAddress(t *testing.T) {
	b, err := load(t, readConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	p := split(t, b)
	h := p.hcm
	if !h.GetUseRemoteAddress().GetValue() {
		t.Error("use_remote_address must be true: Envoy is the edge, and appends its peer to X-Forwarded-For")
	}
	if h.GetSkipXffAppend() {
		t.Error("skip_xff_append must be false: keygate's trusted hops end with the peer Envoy appends")
	}
	if got, want := int(h.GetXffNumTrustedHops()), config.Default().ClientIP.XFFTrustedHops; got != want {
		t.Errorf("xff_num_trusted_hops %d, keygate's client_ip.xff_trusted_hops %d by default: they must agree", got, want)
	}
	if ext := h.GetOriginalIpDetectionExtensions(); len(ext) != 0 {
		t.Errorf("original_ip_detection_extensions %v: Envoy would find the client another way than keygate", ext)
	}
	sent := func(l *matcherv3.ListStringMatcher) bool {
		for _, m := range l.GetPatterns() {
			if stringMatch(t, m, "x-forwarded-for") {
				return true
			}
		}
		return false
	}
	if ah := p.extAuthz.GetAllowedHeaders(); ah != nil && !sent(ah) {
		t.Error("ext_authz allowed_headers leaves out x-forwarded-for")
	}
	if sent(p.extAuthz.GetDisallowedHeaders()) {
		t.Error("ext_authz disallowed_headers holds x-forwarded-for")
	}
}

// localReply is one of Envoy's own replies, as a local reply mapper's
// filter sees it.
type localReply struct {
	code    uint32
	details string
	flags   []string
}

// TestEnvoyLocalReplies: Envoy's own error replies carry OpenAI's JSON
// error body; keygate's answers pass as keygate wrote them.
func TestEnvoyLocalReplies(t *testing.T) {
	b, err := load(t, readConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	mappers := split(t, b).hcm.GetLocalReplyConfig().GetMappers()
	if split(t, b).hcm.GetLocalReplyConfig().GetBodyFormat() != nil {
		t.Fatal("a body_format for every local reply would rewrite keygate's denials")
	}
	for _, c := range []struct {
		name  string
		reply localReply
		code  string // "" for unchanged
	}{
		{"keygate unreachable", localReply{503, "ext_authz_error", []string{"UAEX"}}, "auth_unavailable"},
		{"keygate's 401", localReply{401, "ext_authz_denied", []string{"UAEX"}}, ""},
		{"keygate's 413", localReply{413, "ext_authz_denied", []string{"UAEX"}}, ""},
		{"keygate's 503", localReply{503, "ext_authz_denied", []string{"UAEX"}}, ""},
		{"Envoy's buffer limit", localReply{413, "request_payload_too_large", nil}, "request_too_large"},
		{"no healthy upstream", localReply{503, "no_healthy_upstream", []string{"UH"}}, "backend_unavailable"},
		{"upstream refused", localReply{503, "upstream_reset_before_response_started{connection_failure}", []string{"UF"}}, "backend_unavailable"},
		{"upstream timeout", localReply{504, "upstream_response_timeout", []string{"UT"}}, "backend_timeout"},
		{"another 5xx", localReply{502, "upstream_reset_after_response_started", []string{"UR"}}, "proxy_error"},
		{"a 400 of the codec", localReply{400, "http1.codec_error", []string{"DPE"}}, "invalid_request"},
	} {
		m := firstMatch(t, mappers, c.reply)
		switch {
		case m == nil && c.code == "":
		case m == nil:
			t.Errorf("%s: no mapper matches", c.name)
		case c.code == "":
			if m.GetBodyFormatOverride() != nil || m.GetBody() != nil || m.GetStatusCode() != nil {
				t.Errorf("%s: rewritten by %v", c.name, m)
			}
		default:
			if m.GetStatusCode() != nil {
				t.Errorf("%s: status rewritten to %v", c.name, m.GetStatusCode())
			}
			checkErrorBody(t, c.name, m.GetBodyFormatOverride(), c.code)
		}
	}
}

// firstMatch is the first of mappers whose filter matches r, as Envoy
// picks it; it knows the filters envoy.yaml uses.
func firstMatch(t *testing.T, mappers []*hcmv3.ResponseMapper, r localReply) *hcmv3.ResponseMapper {
	t.Helper()
	for _, m := range mappers {
		if filterMatches(t, m.GetFilter(), r) {
			return m
		}
	}
	return nil
}

var celDetails = regexp.MustCompile(`^response\.code_details == '([^']*)'$`)

func filterMatches(t *testing.T, f *accesslogv3.AccessLogFilter, r localReply) bool {
	t.Helper()
	switch {
	case f.GetStatusCodeFilter() != nil:
		c := f.GetStatusCodeFilter().GetComparison()
		v := c.GetValue().GetDefaultValue()
		switch c.GetOp() {
		case accesslogv3.ComparisonFilter_EQ:
			return r.code == v
		case accesslogv3.ComparisonFilter_GE:
			return r.code >= v
		}
	case f.GetResponseFlagFilter() != nil:
		for _, want := range f.GetResponseFlagFilter().GetFlags() {
			for _, got := range r.flags {
				if want == got {
					return true
				}
			}
		}
		return false
	case f.GetExtensionFilter() != nil:
		expr := unpack(t, f.GetExtensionFilter().GetTypedConfig(), &celv3.ExpressionFilter{}).GetExpression()
		m := celDetails.FindStringSubmatch(expr)
		if m == nil {
			t.Fatalf("CEL filter %q: the test reads only response.code_details == '...'", expr)
		}
		return r.details == m[1]
	}
	t.Fatalf("unexpected local reply filter %v", f)
	return false
}

// checkErrorBody checks that f writes OpenAI's error object, with code,
// as application/json.
func checkErrorBody(t *testing.T, name string, f *corev3.SubstitutionFormatString, code string) {
	t.Helper()
	if f.GetContentType() != "application/json" {
		t.Errorf("%s: content type %q", name, f.GetContentType())
	}
	body := f.GetTextFormatSource().GetInlineString()
	if strings.Contains(body, "%") {
		t.Errorf("%s: body %s has a command operator; it must be constant JSON", name, body)
	}
	var e struct {
		Error map[string]any `json:"error"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%s: body %s: %v", name, body, err)
	}
	param, hasParam := e.Error["param"]
	msg, _ := e.Error["message"].(string)
	typ, _ := e.Error["type"].(string)
	if len(e.Error) != 4 || msg == "" || typ == "" || !hasParam || param != nil || e.Error["code"] != code {
		t.Errorf("%s: body %s, want {message, type, param: null, code: %q}", name, body, code)
	}
}
