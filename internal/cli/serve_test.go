package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/cli"
)

func TestServeCheckConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "routes:\n  - {method: POST, path_prefix: /v1/chat/completions, scope: chat:send}\ndefault_scope: \"*\"\n")
	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"defaults", []string{"serve", "--check-config"}, nil, 0, ""},
		{"file", []string{"serve", "--config", good, "--check-config"}, nil, 0, ""},
		{"bad flag value", []string{"serve", "--grpc-addr", "nope", "--check-config"}, nil, 2, "grpc_addr"},
		{"bad env", []string{"serve", "--check-config"}, map[string]string{"KEYGATE_DEFAULT_RATE_LIMIT": "10/x"}, 2, "default_rate_limit"},
		{"bad file field", []string{"serve", "--config", write("bad.yaml", "cache:\n  max_keys: 0\n"), "--check-config"}, nil, 2, "cache.max_keys"},
		{"routes without default_scope", []string{"serve", "--config", write("routes.yaml", "routes:\n  - {method: GET, path_prefix: /v1/models, scope: models:read}\n"), "--check-config"}, nil, 2, "default_scope"},
		{"unknown file field", []string{"serve", "--config", write("typo.yaml", "grpc_adr: x\n"), "--check-config"}, nil, 2, "grpc_adr"},
		{"missing file", []string{"serve", "--config", filepath.Join(dir, "none.yaml"), "--check-config"}, nil, 2, "none.yaml"},
		{"unknown flag", []string{"serve", "--bogus"}, nil, 2, "bogus"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut strings.Builder
			env := c.env
			err := cli.Run(t.Context(), c.args, cli.IO{Out: &out, Err: &errOut, Getenv: func(k string) string { return env[k] }})
			if got := cli.ExitCode(err); got != c.code {
				t.Fatalf("exit %d (%v), want %d", got, err, c.code)
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not name %s", err, c.want)
			}
		})
	}
}
