package config_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
)

// env is a getenv backed by a map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeYAML writes body to a file in a fresh temporary directory.
func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keygate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultValidates(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	f := c.Keys.Format()
	if !reflect.DeepEqual(f, apikey.DefaultFormat()) {
		t.Errorf("default key format = %+v, want %+v", f, apikey.DefaultFormat())
	}
	if c.NATS.URL != "" {
		t.Errorf("default nats.url = %q, want empty (embedded server)", c.NATS.URL)
	}
	rl, err := c.RateLimit()
	if err != nil || rl == nil || rl.String() != "600/1m0s" {
		t.Errorf("default rate limit = %v, %v; want 600/1m", rl, err)
	}
	if v, err := c.LowBalance(); err != nil || v != 0 {
		t.Errorf("default low balance = %d, %v; want 0", v, err)
	}
	// Loading nothing is the default.
	got, err := config.Load("", nil)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("Load(\"\", nil) = %+v, %v; want the defaults", got, err)
	}
}

func TestLoadOverridesDefaults(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(*config.Config)
	}{
		{
			name: "empty file",
			yaml: "",
			want: func(*config.Config) {},
		},
		{
			name: "comments only",
			yaml: "# nothing here\n",
			want: func(*config.Config) {},
		},
		{
			name: "checksum off and durations",
			yaml: `
keys:
  checksum: false
cache:
  negative_ttl: 5s
  max_staleness: 90s
shutdown_grace: 1m30s
`,
			want: func(c *config.Config) {
				c.Keys.Checksum = false
				c.Cache.NegativeTTL = config.Duration(5 * time.Second)
				c.Cache.MaxStaleness = config.Duration(90 * time.Second)
				c.ShutdownGrace = config.Duration(90 * time.Second)
			},
		},
		{
			name: "nested fields keep their siblings' defaults",
			yaml: `
nats:
  url: nats://a:4222,nats://b:4222
  replicas: 3
keys:
  live_prefix: acme_live_
  length: 40
`,
			want: func(c *config.Config) {
				c.NATS.URL = "nats://a:4222,nats://b:4222"
				c.NATS.Replicas = 3
				c.Keys.LivePrefix = "acme_live_"
				c.Keys.Length = 40
			},
		},
		{
			name: "lists replace the default lists",
			yaml: `
credentials:
  - header: x-api-key
routes:
  - {method: GET, path_prefix: /v1/models, scope: models:read}
default_scope: api
default_rate_limit: none
low_balance_threshold: "10.50"
`,
			want: func(c *config.Config) {
				c.Credentials = []config.Credential{{Header: "x-api-key"}}
				c.Routes = []config.Route{{Method: "GET", PathPrefix: "/v1/models", Scope: "models:read"}}
				c.DefaultScope = "api"
				c.DefaultRateLimit = "none"
				c.LowBalanceThreshold = "10.50"
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Load(writeYAML(t, tc.yaml), env(nil))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := config.Default()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Load =\n%+v\nwant\n%+v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestLoadChecksumOffAcceptsImportedKeys(t *testing.T) {
	c, err := config.Load(writeYAML(t, "keys:\n  checksum: false\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	imported := "ghub_sk_live_" + strings.Repeat("a", 32)
	if err := c.Keys.Format().Check(imported); err != nil {
		t.Fatalf("checksum: false rejects an imported key: %v", err)
	}
	if err := config.Default().Keys.Format().Check(imported); err == nil {
		t.Fatal("the default format accepts a key without checksum")
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata/load-errors")

// TestLoadErrorsGolden: every file in testdata/load-errors is refused
// with the messages in its .golden file: what keygate serve prints, from
// Load or else from Validate. Each names the field as the file writes it.
func TestLoadErrorsGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/load-errors/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			c, err := config.Load(file, nil)
			if err == nil {
				err = c.Validate()
			}
			if err == nil {
				t.Fatal("loaded and validated, want an error")
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./internal/config -run LoadErrorsGolden -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("error:\n%s\nwant (%s):\n%s", got, golden, want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "nope.yaml")
		if _, err := config.Load(p, nil); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
			t.Fatalf("Load(missing) = %v, want an error naming the file", err)
		}
	})
}

// TestLoadErrorsNameEveryOption: fields where any option of Config wants
// something else are refused with an error naming that option (or, for a
// section, the unknown field in it).
func TestLoadErrorsNameEveryOption(t *testing.T) {
	for _, opt := range optionPaths(reflect.TypeFor[config.Config](), "") {
		if strings.Contains(opt, "[]") {
			continue // list items: covered by the golden files
		}
		parts := strings.Split(opt, ".")
		doc := ""
		for i, p := range parts {
			doc += strings.Repeat("  ", i) + p + ":"
			if i < len(parts)-1 {
				doc += "\n"
			}
		}
		doc += " {wrong: kind}\n"
		t.Run(opt, func(t *testing.T) {
			p := writeYAML(t, doc)
			_, err := config.Load(p, nil)
			want := fmt.Sprintf("config %s: %s", p, opt)
			if err == nil || !strings.HasPrefix(err.Error(), want+": want ") && !strings.HasPrefix(err.Error(), want+".wrong: unknown field") {
				t.Errorf("Load(%q) = %v, want an error naming %s", doc, err, opt)
			}
		})
	}
}

// TestLoadKeepsYAMLMeaning: what the checks let through decodes as yaml
// decodes it: empty values keep the defaults, whole numbers may be
// written as 1e6, anchors and merges work.
func TestLoadKeepsYAMLMeaning(t *testing.T) {
	got, err := config.Load(writeYAML(t, `
grpc_addr:
cache: &cache
  max_keys: 1e6
  max_accounts: 0x10
  negative_ttl: ~
nats:
  replicas: 3.0
  keys_bucket: &bucket k1
  accounts_bucket: a1
keys:
  checksum: yes
fleet:
  sync_interval: 1s
routes:
  - &chat {method: POST, path_prefix: /v1/chat/completions, scope: chat:send}
  - <<: *chat
    path_prefix: /v1/completions
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Cache.MaxKeys, want.Cache.MaxAccounts = 1_000_000, 16
	want.NATS.Replicas, want.NATS.KeysBucket, want.NATS.AccountsBucket = 3, "k1", "a1"
	want.Fleet.SyncInterval = config.Duration(time.Second)
	want.Routes = []config.Route{
		{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"},
		{Method: "POST", PathPrefix: "/v1/completions", Scope: "chat:send"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
	}
}

func TestEnvOverridesFile(t *testing.T) {
	file := writeYAML(t, `
grpc_addr: 127.0.0.1:7000
log_level: warn
nats:
  url: nats://from-file:4222
  replicas: 3
cache:
  max_staleness: 1m
`)
	tests := []struct {
		name    string
		env     map[string]string
		want    func(*config.Config)
		wantErr string
	}{
		{
			name: "no environment: the file",
			want: func(*config.Config) {},
		},
		{
			name: "empty variables do not override",
			env:  map[string]string{"KEYGATE_GRPC_ADDR": "", "KEYGATE_NATS_URL": ""},
			want: func(*config.Config) {},
		},
		{
			name: "variables win over the file and the defaults",
			env: map[string]string{
				"KEYGATE_GRPC_ADDR":                  "127.0.0.1:8000",
				"KEYGATE_ADMIN_ADDR":                 "0.0.0.0:9999",
				"KEYGATE_LOG_LEVEL":                  "debug",
				"KEYGATE_NATS_URL":                   "tls://from-env:4222",
				"KEYGATE_NATS_REPLICAS":              "5",
				"KEYGATE_NATS_PASSWORD":              "pw",
				"KEYGATE_MAX_STALENESS":              "10m",
				"KEYGATE_SHUTDOWN_GRACE":             "3s",
				"KEYGATE_DEFAULT_RATE_LIMIT":         "10/1s",
				"KEYGATE_LOW_BALANCE_THRESHOLD":      "5",
				"KEYGATE_DATA_DIR":                   "/var/lib/keygate",
				"KEYGATE_LEAKS_GITHUB_ENABLED":       "true",
				"KEYGATE_LEAKS_GITHUB_KEYS_FILE":     "/etc/keygate/github-keys.json",
				"KEYGATE_LEAKS_GITHUB_TOKEN":         "ghp_example",
				"KEYGATE_CLIENT_IP_XFF_TRUSTED_HOPS": "2",
				"UNRELATED":                          "x",
			},
			want: func(c *config.Config) {
				c.GRPCAddr = "127.0.0.1:8000"
				c.AdminAddr = "0.0.0.0:9999"
				c.LogLevel = "debug"
				c.NATS.URL = "tls://from-env:4222"
				c.NATS.Replicas = 5
				c.NATS.Password = "pw"
				c.Cache.MaxStaleness = config.Duration(10 * time.Minute)
				c.ShutdownGrace = config.Duration(3 * time.Second)
				c.DefaultRateLimit = "10/1s"
				c.LowBalanceThreshold = "5"
				c.NATS.DataDir = "/var/lib/keygate"
				c.Leaks.GitHub.Enabled = true
				c.Leaks.GitHub.KeysFile = "/etc/keygate/github-keys.json"
				c.Leaks.GitHub.Token = "ghp_example"
				c.ClientIP.XFFTrustedHops = 2
			},
		},
		{
			name:    "bad duration names the variable",
			env:     map[string]string{"KEYGATE_MAX_STALENESS": "soon"},
			wantErr: "KEYGATE_MAX_STALENESS",
		},
		{
			name:    "bad number names the variable",
			env:     map[string]string{"KEYGATE_NATS_REPLICAS": "three"},
			wantErr: "KEYGATE_NATS_REPLICAS",
		},
		{
			name:    "a webhook secret without a webhook names the variable",
			env:     map[string]string{"KEYGATE_ALERTS_WEBHOOK_SECRET": "s3cr3t-0123456789abcdef0123456789abcdef"},
			wantErr: "KEYGATE_ALERTS_WEBHOOK_SECRET: sets the secret of the only webhook, and alerts.webhooks has 0",
		},
		{
			name: "the admin API's token file from the environment",
			env:  map[string]string{"KEYGATE_API_ADDR": "127.0.0.1:9300", "KEYGATE_API_TOKEN_FILE": "/etc/keygate/api-token/token"},
			want: func(c *config.Config) {
				c.APIAddr = "127.0.0.1:9300"
				c.APITokenFile = "/etc/keygate/api-token/token"
			},
		},
		{
			name: "alerts from the environment",
			env:  map[string]string{"KEYGATE_ALERTS_ENABLED": "false", "KEYGATE_ALERTS_UNUSED_AFTER": "48h"},
			want: func(c *config.Config) {
				c.Alerts.Enabled = false
				c.Alerts.UnusedAfter = config.Duration(48 * time.Hour)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.Load(file, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load = %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := config.Default()
			want.GRPCAddr = "127.0.0.1:7000"
			want.LogLevel = "warn"
			want.NATS.URL = "nats://from-file:4222"
			want.NATS.Replicas = 3
			want.Cache.MaxStaleness = config.Duration(time.Minute)
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Load =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// TestEnvErrors: a bad KEYGATE_* variable is refused with a message naming
// it; several are all reported, in the order of their names.
func TestEnvErrors(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"KEYGATE_NATS_REPLICAS": "three"}, `KEYGATE_NATS_REPLICAS: "three" is not a whole number`},
		{map[string]string{"KEYGATE_NATS_REPLICAS": "2.0"}, `KEYGATE_NATS_REPLICAS: "2.0" is not a whole number`},
		{map[string]string{"KEYGATE_MAX_STALENESS": "soon"}, `KEYGATE_MAX_STALENESS: "soon" is not a Go duration like 30s`},
		{map[string]string{"KEYGATE_FLEET_LEASE_TIMEOUT": "5"}, `KEYGATE_FLEET_LEASE_TIMEOUT: "5" is not a Go duration like 30s`},
		{map[string]string{"KEYGATE_PPROF": "yes"}, `KEYGATE_PPROF: "yes" is not true or false`},
		{map[string]string{"KEYGATE_CLIENT_IP_XFF_TRUSTED_HOPS": "one"}, `KEYGATE_CLIENT_IP_XFF_TRUSTED_HOPS: "one" is not a whole number`},
		{map[string]string{"KEYGATE_SHUTDOWN_GRACE": "1 minute", "KEYGATE_GRPC_REFLECTION": "on", "KEYGATE_NATS_REPLICAS": "x", "KEYGATE_FLEET_SYNC_INTERVAL": "fast"},
			"KEYGATE_FLEET_SYNC_INTERVAL: \"fast\" is not a Go duration like 30s\n" +
				"KEYGATE_GRPC_REFLECTION: \"on\" is not true or false\n" +
				"KEYGATE_NATS_REPLICAS: \"x\" is not a whole number\n" +
				"KEYGATE_SHUTDOWN_GRACE: \"1 minute\" is not a Go duration like 30s"},
	}
	for _, tc := range tests {
		_, err := config.Load("", env(tc.env))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Load with %v = %v, want\n%s", tc.env, err, tc.want)
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		field  string // as written in YAML; the error must start a line with "field:"
		modify func(*config.Config)
	}{
		{"grpc_addr", func(c *config.Config) { c.GRPCAddr = "nope" }},
		{"grpc_addr", func(c *config.Config) { c.GRPCAddr = "" }},
		{"admin_addr", func(c *config.Config) { c.AdminAddr = "localhost" }},
		{"http_addr", func(c *config.Config) { c.HTTPAddr = "9192" }},
		{"http_mode", func(c *config.Config) { c.HTTPMode = "caddy" }},
		{"fleet.sync_interval", func(c *config.Config) { c.Fleet.SyncInterval = 0 }},
		{"client_ip.xff_trusted_hops", func(c *config.Config) { c.ClientIP.XFFTrustedHops = -1 }},
		{"client_ip.xff_trusted_hops", func(c *config.Config) { c.ClientIP.XFFTrustedHops = 17 }},
		{"fleet.usage_flush_interval", func(c *config.Config) { c.Fleet.UsageFlushInterval = config.Duration(time.Hour) }},
		{"nats.usage_bucket", func(c *config.Config) { c.NATS.UsageBucket = c.NATS.KeysBucket }},
		{"http_mode", func(c *config.Config) { c.HTTPMode = "" }},
		{"log_level", func(c *config.Config) { c.LogLevel = "loud" }},
		{"shutdown_grace", func(c *config.Config) { c.ShutdownGrace = config.Duration(-time.Second) }},
		{"shutdown_delay", func(c *config.Config) { c.ShutdownDelay = config.Duration(-time.Second) }},
		{"tls", func(c *config.Config) { c.TLS.CertFile = "/etc/tls.crt" }},
		{"tls", func(c *config.Config) { c.TLS.KeyFile = "/etc/tls.key" }},
		{"tls.client_ca_file", func(c *config.Config) { c.TLS.ClientCAFile = "/etc/ca.crt" }},
		{"nats.url", func(c *config.Config) { c.NATS.URL = "http://x" }},
		{"nats.url", func(c *config.Config) { c.NATS.URL = "nats://" }},
		{"nats.url", func(c *config.Config) { c.NATS.URL = "nats://a:4222,b:4222" }},
		{"nats.listen", func(c *config.Config) { c.NATS.Listen = "4222" }},
		{"nats.data_dir", func(c *config.Config) { c.NATS.DataDir = "" }},
		{"nats", func(c *config.Config) { c.NATS.CertFile = "/etc/nats.crt" }},
		{"nats.replicas", func(c *config.Config) { c.NATS.Replicas = 9 }},
		{"nats.replicas", func(c *config.Config) { c.NATS.Replicas = 0 }},
		{"nats.keys_bucket", func(c *config.Config) { c.NATS.KeysBucket = "keys.v1" }},
		{"nats.accounts_bucket", func(c *config.Config) { c.NATS.AccountsBucket = "" }},
		{"nats.accounts_bucket", func(c *config.Config) { c.NATS.AccountsBucket = c.NATS.KeysBucket }},
		{"keys.length", func(c *config.Config) { c.Keys.Length = 20 }},
		{"keys.live_prefix", func(c *config.Config) { c.Keys.LivePrefix = "sk live" }},
		{"keys.test_prefix", func(c *config.Config) { c.Keys.TestPrefix = c.Keys.LivePrefix }},
		{"keys.extra_prefixes[1]", func(c *config.Config) { c.Keys.ExtraPrefixes = []string{"ok_", "not ok"} }},
		{"cache.max_keys", func(c *config.Config) { c.Cache.MaxKeys = 0 }},
		{"cache.max_negative", func(c *config.Config) { c.Cache.MaxNegative = -1 }},
		{"cache.negative_ttl", func(c *config.Config) { c.Cache.NegativeTTL = 0 }},
		{"cache.max_staleness", func(c *config.Config) { c.Cache.MaxStaleness = config.Duration(-time.Minute) }},
		{"credentials", func(c *config.Config) { c.Credentials = nil }},
		{"credentials[1].header", func(c *config.Config) { c.Credentials[1].Header = "X-Api-Key" }},
		{"credentials[0].scheme", func(c *config.Config) { c.Credentials[0].Scheme = "Bearer token" }},
		{"routes[0].path_prefix", func(c *config.Config) {
			c.Routes = []config.Route{{Method: "POST", PathPrefix: "v1", Scope: "chat:send"}}
		}},
		{"routes[1].method", func(c *config.Config) {
			c.Routes = []config.Route{{PathPrefix: "/", Scope: "a"}, {Method: "post", PathPrefix: "/v1", Scope: "b"}}
		}},
		{"routes[0].scope", func(c *config.Config) { c.Routes = []config.Route{{PathPrefix: "/v1"}} }},
		{"routes[0].method", func(c *config.Config) {
			c.Routes, c.DefaultScope = []config.Route{{Method: "HEAD", PathPrefix: "/v1", Scope: "a"}}, "none"
		}},
		{"default_scope", func(c *config.Config) { c.Routes = []config.Route{{Method: "GET", PathPrefix: "/v1", Scope: "a"}} }},
		{"default_rate_limit", func(c *config.Config) { c.DefaultRateLimit = "10/x" }},
		{"default_rate_limit", func(c *config.Config) { c.DefaultRateLimit = "0/1m" }},
		{"default_rate_limit", func(c *config.Config) { c.DefaultRateLimit = "600" }},
		{"low_balance_threshold", func(c *config.Config) { c.LowBalanceThreshold = "-1" }},
		{"low_balance_threshold", func(c *config.Config) { c.LowBalanceThreshold = "ten" }},
		{"leaks.github.keys_url", func(c *config.Config) {
			c.Leaks.GitHub.KeysURL = "http://api.github.com/meta/public_keys/secret_scanning"
		}},
		{"leaks.github.keys_url", func(c *config.Config) { c.Leaks.GitHub.KeysURL = "" }},
		{"leaks.github.keys_url", func(c *config.Config) { c.Leaks.GitHub.KeysURL = "https://user:pw@mirror.example/keys" }},
		{"leaks.github.token", func(c *config.Config) { c.Leaks.GitHub.Token = "ghp_x y" }},
		{"nats.alerts_bucket", func(c *config.Config) { c.NATS.AlertsBucket = c.NATS.UsageBucket }},
		{"alerts.unused_after", func(c *config.Config) { c.Alerts.UnusedAfter = config.Duration(time.Minute) }},
		{"alerts.unused_after", func(c *config.Config) { c.Alerts.UnusedAfter = config.Duration(400 * 24 * time.Hour) }},
		{"alerts.webhooks[0].url", func(c *config.Config) {
			c.Alerts.Webhooks = []config.Webhook{{URL: "ftp://x/y", Secret: webhookSecret}}
		}},
		{"alerts.webhooks[0].url", func(c *config.Config) { c.Alerts.Webhooks = []config.Webhook{{URL: "/hook", Secret: webhookSecret}} }},
		{"alerts.webhooks[1].secret", func(c *config.Config) {
			c.Alerts.Webhooks = []config.Webhook{{URL: "https://a/h", Secret: webhookSecret}, {URL: "https://b/h", Secret: "short"}}
		}},
		{"alerts.webhooks", func(c *config.Config) {
			c.Alerts.Webhooks = make([]config.Webhook, 17)
			for i := range c.Alerts.Webhooks {
				c.Alerts.Webhooks[i] = config.Webhook{URL: "https://a/h", Secret: webhookSecret}
			}
		}},
		{"api_addr", func(c *config.Config) { c.APIAddr = "9300" }},
		{"api_tls.cert_file", func(c *config.Config) { c.APIAddr = "0.0.0.0:9300" }},
		{"api_tls.cert_file", func(c *config.Config) { c.APIAddr = ":9300" }},
		{"api_tls.cert_file", func(c *config.Config) { c.APIAddr = "api.internal:9300" }},
		{"api_tls", func(c *config.Config) { c.APIAddr, c.APITLS.CertFile = "127.0.0.1:9300", "/etc/api.crt" }},
		{"nats.idempotency_bucket", func(c *config.Config) { c.NATS.IdempotencyBucket = c.NATS.TokensBucket }},
		{"api_token_file", func(c *config.Config) { c.APITokenFile = "/etc/keygate/api-token/token" }},
		{"api_token_scopes", func(c *config.Config) {
			c.APIAddr, c.APITokenFile, c.APITokenScopes = "127.0.0.1:9300", "/etc/keygate/api-token/token", nil
		}},
		{"api_token_scopes[1]", func(c *config.Config) { c.APITokenScopes = []string{"read", "admin"} }},
	}
	for _, tc := range tests {
		c := config.Default()
		tc.modify(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: Validate() = nil, want an error", tc.field)
			continue
		}
		named := false
		for _, line := range strings.Split(err.Error(), "\n") {
			if strings.HasPrefix(line, tc.field+": ") {
				named = true
			}
		}
		if !named {
			t.Errorf("%s: error %q does not name the field", tc.field, err)
		}
	}
}

const webhookSecret = "whsec-0123456789abcdef0123456789abcdef"

// The webhook secret comes from the environment for the only webhook;
// errors about webhooks never show a secret, nor a password in a URL.
func TestWebhookSecrets(t *testing.T) {
	file := writeYAML(t, "alerts:\n  webhooks:\n    - url: https://hooks.example.com/keygate\n")
	got, err := config.Load(file, env(map[string]string{"KEYGATE_ALERTS_WEBHOOK_SECRET": webhookSecret}))
	if err != nil || got.Validate() != nil || got.Alerts.Webhooks[0].Secret != webhookSecret {
		t.Fatalf("Load = %+v, %v; want the secret from KEYGATE_ALERTS_WEBHOOK_SECRET", got.Alerts, err)
	}
	c := config.Default()
	c.Alerts.Webhooks = []config.Webhook{{URL: "https://keygate:pa55word@hooks.example.com/h", Secret: "tiny s3cr3t"}}
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "alerts.webhooks[0].url: ") || !strings.Contains(err.Error(), "alerts.webhooks[0].secret: ") {
		t.Fatalf("Validate = %v, want errors naming the url and the secret", err)
	}
	if strings.Contains(err.Error(), "pa55word") || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("error %q shows a secret", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := config.Default()
	c.GRPCAddr = "nope"
	c.LogLevel = "loud"
	c.Cache.MaxKeys = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	for _, f := range []string{"grpc_addr: ", "log_level: ", "cache.max_keys: "} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not report %s", err, f)
		}
	}
}

func TestValidateNeverPrintsNATSPasswords(t *testing.T) {
	for _, u := range []string{
		"http://keygate:s3cr3tpw@nats:4222",            // wrong scheme
		"nats://keygate:s3cr3tpw@nats:notaport",        // not a URL at all
		"nats://keygate:s3cr3tpw%zz@nats:4222",         // bad escape
		"keygate:s3cr3tpw@nats:4222",                   // no scheme
		"nats:keygate:s3cr3tpw@nats",                   // opaque
		"nats://ok:4222, http://keygate:s3cr3tpw@nats", // in a seed list
		"nats://keygate:s3cr3tpw@",                     // no host
		"http://s3cr3tpw@nats:4222",                    // a token
	} {
		c := config.Default()
		c.NATS.URL = u
		err := c.Validate()
		if err == nil {
			t.Errorf("Validate(nats.url %q) = nil, want an error", u)
			continue
		}
		if !strings.Contains(err.Error(), "nats.url: ") {
			t.Errorf("error %q does not name nats.url", err)
		}
		if strings.Contains(err.Error(), "s3cr3tpw") {
			t.Errorf("error %q shows the password", err)
		}
	}
}

// full.yaml is the documented example: it must load, validate, set every
// option, and mean what it says.
func TestFullExample(t *testing.T) {
	const path = "testdata/full.yaml"
	got, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("%s does not validate: %v", path, err)
	}
	want := config.Config{
		GRPCAddr:       "127.0.0.1:9191",
		GRPCReflection: true,
		AdminAddr:      "0.0.0.0:9090",
		HTTPAddr:       "",
		HTTPMode:       "nginx",
		LogLevel:       "info",
		ShutdownDelay:  config.Duration(15 * time.Second),
		ShutdownGrace:  config.Duration(10 * time.Second),
		TLS: config.TLS{
			CertFile:     "/etc/keygate/tls/tls.crt",
			KeyFile:      "/etc/keygate/tls/tls.key",
			ClientCAFile: "/etc/keygate/tls/ca.crt",
		},
		NATS: config.NATS{
			URL:               "nats://nats-0.nats:4222,nats://nats-1.nats:4222,nats://nats-2.nats:4222",
			CredsFile:         "/etc/keygate/nats/keygate.creds",
			CAFile:            "/etc/keygate/nats-tls/ca.crt",
			CertFile:          "/etc/keygate/nats-tls/tls.crt",
			KeyFile:           "/etc/keygate/nats-tls/tls.key",
			Listen:            "127.0.0.1:4222",
			DataDir:           "./keygate-data",
			TokenDir:          "/var/lib/keygate",
			KeysBucket:        "keygate_keys",
			AccountsBucket:    "keygate_accounts",
			LimitsBucket:      "keygate_limits",
			UsageBucket:       "keygate_usage",
			FilterBucket:      "keygate_filter",
			TokensBucket:      "keygate_admin_tokens",
			IdempotencyBucket: "keygate_idempotency",
			AlertsBucket:      "keygate_alerts",
			Replicas:          3,
		},
		Keys: config.Keys{
			LivePrefix:    "ghub_sk_live_",
			TestPrefix:    "ghub_sk_test_",
			ExtraPrefixes: []string{"ghub_sk_prev_"},
			Length:        45,
			Checksum:      true,
		},
		Cache: config.Cache{
			MaxKeys:      200000,
			MaxAccounts:  20000,
			MaxNegative:  50000,
			NegativeTTL:  config.Duration(10 * time.Second),
			MaxStaleness: config.Duration(2 * time.Minute),
		},
		Credentials: []config.Credential{
			{Header: "authorization", Scheme: "Bearer"},
			{Header: "x-api-key"},
			{Header: "api-key"},
		},
		Routes: []config.Route{
			{Method: "POST", PathPrefix: "/v1/chat/completions", Scope: "chat:send"},
			{Method: "POST", PathPrefix: "/v1/completions", Scope: "chat:send"},
			{Method: "POST", PathPrefix: "/v1/embeddings", Scope: "embeddings:create"},
			{Method: "GET", PathPrefix: "/v1/models", Scope: "models:read"},
			{Method: "*", PathPrefix: "/v1/files", Scope: "files:write"},
			{Method: "POST", PathPrefix: "/v1/images/generations", Scope: "images:create",
				Price: map[string]string{"USD": "0.04", "MXN": "0.80"}},
		},
		DefaultScope:        "*",
		DefaultRateLimit:    "600/1m",
		LowBalanceThreshold: "50.00",
		Fleet: config.Fleet{
			SyncInterval:       config.Duration(500 * time.Millisecond),
			LeaseTimeout:       config.Duration(100 * time.Millisecond),
			OutageAfter:        config.Duration(3 * time.Second),
			UsageFlushInterval: config.Duration(10 * time.Second),
		},
		APITLS:         config.APITLS{CertFile: "/etc/keygate/api-tls/tls.crt", KeyFile: "/etc/keygate/api-tls/tls.key"},
		APITokenScopes: []string{"read"},
		Pricing: config.Pricing{
			Models: []config.ModelPrice{
				{Match: "gpt-4o-mini*", TokenPrice: config.TokenPrice{Currency: "USD", Input: "0.15", CachedInput: "0.075", Output: "0.60", MaxOutput: 16384}},
				{Match: "gpt-4o*", TokenPrice: config.TokenPrice{Currency: "USD", Input: "2.50", CachedInput: "1.25", Output: "10.00", MaxOutput: 16384}},
				{Match: "gpt-4o-mini*", TokenPrice: config.TokenPrice{Currency: "MXN", Input: "3.00", CachedInput: "1.50", Output: "12.00", MaxOutput: 16384}},
				{Match: "text-embedding-3-small", TokenPrice: config.TokenPrice{Currency: "USD", Input: "0.02", Output: "0", MaxOutput: 1}},
			},
			UnpricedModels:     "default",
			Default:            []config.TokenPrice{{Currency: "USD", Input: "5.00", CachedInput: "2.50", Output: "20.00", MaxOutput: 4096}},
			UnpricedEndpoints:  "refuse",
			InputBytesPerToken: 1,
			HoldTTL:            config.Duration(time.Hour),
		},
		Leaks: config.Leaks{GitHub: config.GitHubLeaks{
			Enabled:  true,
			KeysURL:  "https://api.github.com/meta/public_keys/secret_scanning",
			KeysFile: "",
			Token:    "",
		}},
		Alerts: config.Alerts{
			Enabled:     true,
			UnusedAfter: config.Duration(30 * 24 * time.Hour),
			Webhooks:    []config.Webhook{{URL: "https://hooks.example.com/keygate", Secret: "change-me-to-32-or-more-random-characters"}},
		},
		ClientIP: config.ClientIP{XFFTrustedHops: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s loads as\n%+v\nwant\n%+v", path, got, want)
	}
	if v, err := got.LowBalance(); err != nil || v != 5000 {
		t.Errorf("low_balance_threshold = %d, %v; want 5000 centavos", v, err)
	}
	if err := got.Keys.Format().Check("ghub_sk_prev_" + strings.Repeat("A", 32)); err == nil {
		t.Errorf("an extra prefix key without checksum is accepted with checksum: true")
	}

	// Every option of Config is written out in the file, and every
	// top-level option is explained by a comment.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	collectKeys(doc.Content[0], "", present)
	var missing []string
	for _, k := range optionPaths(reflect.TypeFor[config.Config](), "") {
		if !present[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s does not show these options: %s", path, strings.Join(missing, ", "))
	}
	top := doc.Content[0]
	for i := 0; i < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if k.HeadComment == "" && k.LineComment == "" && v.LineComment == "" {
			t.Errorf("%s: option %s has no comment", path, k.Value)
		}
	}
}

// optionPaths lists the YAML paths of every option in struct type t, with
// "[]" for list elements.
func optionPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			out = append(out, optionPaths(f.Type, prefix)...)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		p := prefix + name
		out = append(out, p)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			p += "[]"
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, optionPaths(ft, p+".")...)
		}
	}
	sort.Strings(out)
	return out
}

// collectKeys records the paths of every mapping key under n, written as
// optionPaths writes them.
func collectKeys(n *yaml.Node, path string, into map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			into[p] = true
			collectKeys(n.Content[i+1], p, into)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			collectKeys(c, path+"[]", into)
		}
	}
}

// FuzzLoad: no file makes Load or Validate panic, and every error Load
// reports is a line naming the file.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	seeds = append(seeds, "testdata/full.yaml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	p := filepath.Join(f.TempDir(), "keygate.yaml")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(p, nil)
		if err == nil {
			_ = c.Validate()
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, "config "+p+": ") {
				t.Errorf("error line %q does not name the file", line)
			}
		}
	})
}
