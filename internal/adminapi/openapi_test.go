package adminapi_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	vconfig "github.com/pb33f/libopenapi-validator/config"

	"github.com/keygate/keygate/internal/adminapi"
)

// specPath is the API's description.
const specPath = "../../docs/openapi.yaml"

// contract validates requests and answers against the OpenAPI file and
// notes which statuses of which operations were seen.
type contract struct {
	t    *testing.T
	v    validator.Validator
	doc  libopenapi.Document
	seen map[string]bool // "METHOD /path/{id} status"
}

func newContract(t *testing.T) *contract {
	t.Helper()
	spec, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		t.Fatalf("%s: %v", specPath, err)
	}
	v, errs := validator.NewValidator(doc, vconfig.WithFormatAssertions(), vconfig.WithStrictMode())
	if len(errs) > 0 {
		t.Fatalf("%s: %v", specPath, errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s is not valid OpenAPI: %s (%s)", specPath, e.Message, e.Reason)
		}
		t.FailNow()
	}
	return &contract{t: t, v: v, doc: doc, seen: map[string]bool{}}
}

// check sends r through f and checks it and its answer against the file:
// the request unless it is meant to be refused (valid false), the answer
// always (an undeclared status fails). It returns the answer.
func (c *contract) check(f *fixture, r req, valid bool, want int) resp {
	c.t.Helper()
	if valid {
		vr := f.build(r)
		if ok, errs := c.v.ValidateHttpRequestSync(vr); !ok {
			for _, e := range errs {
				c.t.Errorf("%s %s: request does not follow %s: %s (%s)", r.method, r.path, specPath, e.Message, e.Reason)
			}
		}
	}
	res := f.do(r)
	if res.StatusCode != want {
		c.t.Errorf("%s %s: %d %s, want %d", r.method, r.path, res.StatusCode, res.body, want)
	}
	vr := f.build(r)
	res.Body = io.NopCloser(bytes.NewReader(res.body))
	if ok, errs := c.v.ValidateHttpResponse(vr, res.Response); !ok {
		for _, e := range errs {
			c.t.Errorf("%s %s: answer %d does not follow %s: %s (%s) %s", r.method, r.path, res.StatusCode, specPath, e.Message, e.Reason, res.body)
		}
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		c.t.Errorf("%s %s: content-type %q", r.method, r.path, ct)
	}
	c.seen[operation(r)+" "+statusClass(res.StatusCode)] = true
	return res
}

// operation names r's operation by method and path template.
func operation(r req) string {
	p, _, _ := strings.Cut(r.path, "?")
	parts := strings.Split(p, "/")
	if len(parts) > 3 {
		parts[3] = "{id}"
	}
	return r.method + " " + strings.Join(parts, "/")
}

// statusClass is how the file may declare status s: 5XX for a 5xx.
func statusClass(s int) string {
	if s >= 500 {
		return "5XX"
	}
	return fmt.Sprint(s)
}

// uncovered lists the declared statuses of operations not seen.
func (c *contract) uncovered() []string {
	m, err := c.doc.BuildV3Model()
	if err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for p, item := range m.Model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			for code := range op.Responses.Codes.FromOldest() {
				k := strings.ToUpper(method) + " " + p + " " + code
				if !c.seen[k] {
					out = append(out, k)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestOpenAPIContract exercises every operation of docs/openapi.yaml with
// every status it declares, validating each request and answer against
// it with libopenapi-validator; a status the file does not declare
// fails.
func TestOpenAPIContract(t *testing.T) {
	c := newContract(t)
	f := newFixture(t, adminapi.Options{})
	k := f.createKey("acme")
	revoked := f.createKey("acme")
	f.ok(req{method: "POST", path: "/v1/keys/" + revoked.ID + "/revoke", token: "keys"}, http.StatusOK, nil)
	rotated := f.createKey("acme")
	f.ok(req{method: "POST", path: "/v1/keys/" + rotated.ID + "/rotate", token: "keys"}, http.StatusCreated, nil)
	f.ok(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":10000}`}, http.StatusOK, nil)
	f.ok(req{method: "PUT", path: "/v1/accounts/full/balance", token: "balances", body: `{"balance":1152921504606846000}`}, http.StatusOK, nil)
	const bad = "kga_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	type tc struct {
		r     req
		valid bool
		want  int
	}
	var cases []tc
	ok := func(r req, want int) { cases = append(cases, tc{r, true, want}) }
	refused := func(r req, want int) { cases = append(cases, tc{r, false, want}) }
	kp := "/v1/keys/" + k.ID

	// GET /v1/keys
	ok(req{method: "GET", path: "/v1/keys?account=acme&status=active,expired&limit=2", token: "read"}, 200)
	refused(req{method: "GET", path: "/v1/keys?limit=0", token: "read"}, 400)
	refused(req{method: "GET", path: "/v1/keys"}, 401)
	// POST /v1/keys
	ok(req{method: "POST", path: "/v1/keys", token: "keys", header: map[string]string{"Idempotency-Key": "create-1"},
		body: `{"account_id":"acme","name":"web","env":"test","scopes":["chat:send"],"rate_limit":{"requests":600,"window":"1m"},` +
			`"models":["gpt-4o*"],"token_limit":{"tokens":100000,"window":"1m"},"budget":{"amount":5000,"period":"1mo"},"expires_at":"2100-01-01T00:00:00Z",` +
			`"allow_ips":["10.0.0.0/8","2001:db8::/32","203.0.113.7"]}`}, 201)
	ok(req{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","rate_limit":"none"}`}, 201)
	refused(req{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","scopes":["a b"]}`}, 400)
	refused(req{method: "POST", path: "/v1/keys", token: "keys", body: `{"account_id":"acme","allow_ips":["10.0.0.1/8"]}`}, 400)
	refused(req{method: "POST", path: "/v1/keys", body: `{"account_id":"acme"}`}, 401)
	ok(req{method: "POST", path: "/v1/keys", token: "read", body: `{"account_id":"acme"}`}, 403)
	ok(req{method: "POST", path: "/v1/keys", token: "keys", header: map[string]string{"Idempotency-Key": "create-1"},
		body: `{"account_id":"other"}`}, 409)
	// GET /v1/keys/{id}
	ok(req{method: "GET", path: kp, token: "balances"}, 200)
	refused(req{method: "GET", path: kp}, 401)
	ok(req{method: "GET", path: "/v1/keys/key_missing", token: "read"}, 404)
	// PATCH /v1/keys/{id}
	ok(req{method: "PATCH", path: kp, token: "keys", body: `{"name":"renamed","models":null,"rate_limit":"default","expires_at":null}`}, 200)
	refused(req{method: "PATCH", path: kp, token: "keys", body: `{"scopes":[]}`}, 400)
	refused(req{method: "PATCH", path: kp, body: `{"name":"x"}`}, 401)
	ok(req{method: "PATCH", path: kp, token: "balances", body: `{"name":"x"}`}, 403)
	ok(req{method: "PATCH", path: "/v1/keys/key_missing", token: "keys", body: `{"name":"x"}`}, 404)
	ok(req{method: "PATCH", path: "/v1/keys/" + revoked.ID, token: "keys", body: `{"name":"x"}`}, 409)
	// POST /v1/keys/{id}/rotate
	ok(req{method: "POST", path: kp + "/rotate", token: "keys", body: `{"grace":"1h"}`,
		header: map[string]string{"Idempotency-Key": "rotate-1"}}, 201)
	refused(req{method: "POST", path: kp + "/rotate", token: "keys", body: `{"grace":"soon"}`}, 400)
	refused(req{method: "POST", path: kp + "/rotate"}, 401)
	ok(req{method: "POST", path: kp + "/rotate", token: "read"}, 403)
	ok(req{method: "POST", path: "/v1/keys/key_missing/rotate", token: "keys"}, 404)
	ok(req{method: "POST", path: "/v1/keys/" + rotated.ID + "/rotate", token: "keys"}, 409)
	// POST /v1/keys/{id}/revoke
	ok(req{method: "POST", path: "/v1/keys/" + revoked.ID + "/revoke", token: "keys"}, 200)
	refused(req{method: "POST", path: kp + "/revoke", token: "keys", body: `{"now":true}`}, 400)
	refused(req{method: "POST", path: kp + "/revoke"}, 401)
	ok(req{method: "POST", path: kp + "/revoke", token: "balances"}, 403)
	ok(req{method: "POST", path: "/v1/keys/key_missing/revoke", token: "keys"}, 404)
	// GET /v1/keys/{id}/usage
	ok(req{method: "GET", path: kp + "/usage?days=3", token: "read"}, 200)
	refused(req{method: "GET", path: kp + "/usage?days=0", token: "read"}, 400)
	refused(req{method: "GET", path: kp + "/usage"}, 401)
	ok(req{method: "GET", path: "/v1/keys/key_missing/usage", token: "read"}, 404)
	// GET /v1/accounts/{id}/balance
	ok(req{method: "GET", path: "/v1/accounts/acme/balance", token: "read"}, 200)
	refused(req{method: "GET", path: "/v1/accounts/a.b/balance", token: "read"}, 400)
	refused(req{method: "GET", path: "/v1/accounts/acme/balance"}, 401)
	ok(req{method: "GET", path: "/v1/accounts/nobody/balance", token: "read"}, 404)
	// PUT /v1/accounts/{id}/balance
	ok(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":20000,"low_balance_threshold":500}`,
		header: map[string]string{"Idempotency-Key": "set-1"}}, 200)
	refused(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":"20.00"}`}, 400)
	refused(req{method: "PUT", path: "/v1/accounts/acme/balance", body: `{"balance":1}`}, 401)
	ok(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "keys", body: `{"balance":1}`}, 403)
	ok(req{method: "PUT", path: "/v1/accounts/acme/balance", token: "balances", body: `{"balance":1,"currency":"USD"}`}, 409)
	// POST /v1/accounts/{id}/balance/credits
	ok(req{method: "POST", path: "/v1/accounts/acme/balance/credits", token: "balances", body: `{"amount":-250}`,
		header: map[string]string{"Idempotency-Key": "credit-1"}}, 200)
	refused(req{method: "POST", path: "/v1/accounts/acme/balance/credits", token: "balances", body: `{"amount":1.5}`}, 400)
	refused(req{method: "POST", path: "/v1/accounts/acme/balance/credits", body: `{"amount":1}`}, 401)
	ok(req{method: "POST", path: "/v1/accounts/acme/balance/credits", token: "read", body: `{"amount":1}`}, 403)
	ok(req{method: "POST", path: "/v1/accounts/nobody/balance/credits", token: "balances", body: `{"amount":1}`}, 404)
	ok(req{method: "POST", path: "/v1/accounts/full/balance/credits", token: "balances", body: `{"amount":9000}`}, 409)
	// GET /v1/accounts/{id}/usage
	ok(req{method: "GET", path: "/v1/accounts/acme/usage?days=90", token: "read"}, 200)
	refused(req{method: "GET", path: "/v1/accounts/acme/usage?days=91", token: "read"}, 400)
	refused(req{method: "GET", path: "/v1/accounts/acme/usage"}, 401)
	ok(req{method: "GET", path: "/v1/accounts/nobody/usage", token: "read"}, 404)

	for _, tc := range cases {
		c.check(f, tc.r, tc.valid, tc.want)
	}

	// 429: once this address has sent bad tokens 10 times, every
	// operation answers a bad token 429.
	for range adminapi.DefaultPolicy.Failures {
		c.check(f, req{method: "GET", path: "/v1/keys", token: bad}, false, 401)
	}
	ops := []req{
		{method: "GET", path: "/v1/keys"}, {method: "POST", path: "/v1/keys", body: `{"account_id":"acme"}`},
		{method: "GET", path: kp}, {method: "PATCH", path: kp, body: `{"name":"x"}`},
		{method: "POST", path: kp + "/rotate"}, {method: "POST", path: kp + "/revoke"}, {method: "GET", path: kp + "/usage"},
		{method: "GET", path: "/v1/accounts/acme/balance"}, {method: "PUT", path: "/v1/accounts/acme/balance", body: `{"balance":1}`},
		{method: "POST", path: "/v1/accounts/acme/balance/credits", body: `{"amount":1}`}, {method: "GET", path: "/v1/accounts/acme/usage"},
	}
	for _, r := range ops {
		r.token = bad
		if res := c.check(f, r, false, 429); res.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 429 without retry-after", r.method, r.path)
		}
	}

	// 5XX: with the store's connection gone, every operation answers 503.
	f.nc.Close()
	for _, r := range ops {
		r.token = map[bool]string{true: "read", false: "balances"}[r.method == "GET"]
		if strings.Contains(r.path, "/v1/keys") && r.method != "GET" {
			r.token = "keys"
		}
		if res := c.check(f, r, true, 503); res.Header.Get("Retry-After") != "1" {
			t.Errorf("%s %s: 503 without retry-after: 1", r.method, r.path)
		}
	}

	if missing := c.uncovered(); len(missing) > 0 {
		t.Errorf("declared but not exercised:\n  %s", strings.Join(missing, "\n  "))
	}
}
