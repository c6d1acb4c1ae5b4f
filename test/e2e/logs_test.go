package e2e

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// keyRequests send key in every place a client may put it: the credential
// headers, the spellings nginx drops (underscores, dots), a header line
// too long for nginx's buffers, and HTTP Basic's user name.
func keyRequests(key string) map[string]string {
	req := func(call, headers string) string {
		return "GET /v1/models HTTP/1.1\r\nHost: api.example\r\nX-E2E-Call: " + call + "\r\n" + headers + "Connection: close\r\n\r\n"
	}
	return map[string]string{
		"authorization": req("log-authorization", "Authorization: Bearer "+key+"\r\n"),
		"x-api-key":     req("log-x-api-key", "X-Api-Key: "+key+"\r\n"),
		"api-key":       req("log-api-key", "Api-Key: "+key+"\r\n"),
		"underscore":    req("log-underscore", "X_Api_Key: "+key+"\r\nAuthorization: Bearer "+key+"\r\n"),
		"dot":           req("log-dot", "X.Api.Key: "+key+"\r\n"),
		"too long":      req("log-too-long", "X-Api-Key: "+key+strings.Repeat("a", 9000)+"\r\n"),
		"basic":         req("log-basic", "Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte(key+":"))+"\r\n"),
	}
}

// TestNginxLogsNoKey: at the level keygate.conf ships with, no key reaches
// any of nginx's logs, however the client sends it, even with nginx.conf's
// own error log at debug. The levels proxy/nginx/README.md says print keys
// (debug and info, in keygate.conf's error log) do, and the others do not.
func TestNginxLogsNoKey(t *testing.T) {
	nginxBinary(t)
	kg := startKeygate(t, "nginx")
	be := startBackend(t)
	kg.setAccount(t, "acme", 100000, nil)
	key, _ := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"models:read"}})
	for _, c := range []struct {
		level string
		logs  string // the logs with the key in them
	}{
		{"debug", "[error.log]"},
		{"info", "[error.log]"},
		{"notice", "[]"},
		{"warn", "[]"},
		{shippedLevel, "[]"},
	} {
		t.Run(c.level, func(t *testing.T) {
			ng := startNginxLogging(t, kg.inst.HTTPAddr.String(), be.addr(), c.level)
			for name, req := range keyRequests(key) {
				status := rawRequest(t, ng, req)
				if want := map[string]int{"dot": 401, "too long": 400, "basic": 401}[name]; want != 0 && status != want || want == 0 && status != 200 {
					t.Errorf("%s: status %d", name, status)
				}
			}
			ng.stop(t) // every log line written
			if got := fmt.Sprint(ng.keyLogged(t, key)); got != c.logs {
				t.Errorf("the key is in %s, want %s", got, c.logs)
			}
			if n := len(ng.accessLog(t)); n != len(keyRequests(key)) {
				t.Errorf("%d requests in the access log, want %d", n, len(keyRequests(key)))
			}
		})
	}
}
