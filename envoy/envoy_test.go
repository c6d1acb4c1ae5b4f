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
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"
)

// The typed configs envoy.yaml uses. Naming the types links their packages
// in, which registers them for protojson's Any resolution.
var (
	_ = (*extauthzv3.ExtAuthz)(nil)
	_ = (*routerv3.Router)(nil)
	_ = (*hcmv3.HttpConnectionManager)(nil)
	_ = (*streamv3.StdoutAccessLog)(nil)
	_ = (*upstreamhttpv3.HttpProtocolOptions)(nil)
)

const extAuthzName = "envoy.filters.http.ext_authz"

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
// keygate's deployment depends on: every ext_authz filter is fail-closed and
// has a positive timeout of at most one second.
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
					if hf.GetTypedConfig().UnmarshalTo(&ea) != nil {
						continue
					}
					n++
					if ea.GetFailureModeAllow() {
						return fmt.Errorf("listener %s: ext_authz failure_mode_allow must be false", l.GetName())
					}
					to := ea.GetGrpcService().GetTimeout()
					if to == nil || !to.IsValid() || to.AsDuration() <= 0 || to.AsDuration() > time.Second {
						return fmt.Errorf("listener %s: ext_authz timeout %v must be in (0, 1s]", l.GetName(), to.AsDuration())
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
	hcm      *hcmv3.HttpConnectionManager
	extAuthz *extauthzv3.ExtAuthz
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
	if len(hf) < 2 || hf[0].GetName() != extAuthzName || hf[len(hf)-1].GetName() != "envoy.filters.http.router" {
		t.Fatalf("http filters must start with ext_authz and end with the router, got %v", hf)
	}
	p.extAuthz = unpack(t, hf[0].GetTypedConfig(), &extauthzv3.ExtAuthz{})
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
	if ea.GetWithRequestBody() != nil {
		t.Error("with_request_body must be off: keygate decides on headers")
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
		{"negative cluster timeout", "connect_timeout: 0.25s", "connect_timeout: -1s"},
		{"empty stat_prefix inside typed_config", "stat_prefix: ingress_http", `stat_prefix: ""`},
		{"bad enum", "transport_api_version: V3", "transport_api_version: V9"},
		{"unknown typed_config type", "extensions.filters.http.router.v3.Router", "extensions.filters.http.router.v3.Rooter"},
		{"negative ext_authz timeout", "        timeout: 0.25s", "        timeout: -0.25s"},
		{"fail open", "failure_mode_allow: false", "failure_mode_allow: true"},
		{"port out of range", "port_value: 9191", "port_value: 91910"},
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
