// Package config holds keygate's configuration: one struct with defaults,
// loaded from a YAML file and KEYGATE_* environment variables, and checked
// by Validate with errors that name the field.
package config

import (
	"errors"
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/store"
)

// Config is the whole configuration of keygate serve.
type Config struct {
	GRPCAddr string `yaml:"grpc_addr"`
	// GRPCReflection serves gRPC server reflection on grpc_addr, so that
	// grpcurl and the like need no proto files.
	GRPCReflection bool   `yaml:"grpc_reflection"`
	AdminAddr      string `yaml:"admin_addr"`
	HTTPAddr       string `yaml:"http_addr"`
	// HTTPMode names the proxy in front of the HTTP authorization mode,
	// and so where the original method and path are read: "envoy" (the
	// request line), "nginx" (X-Original-Method, X-Original-URI) or
	// "traefik" (X-Forwarded-Method, X-Forwarded-Uri).
	HTTPMode string `yaml:"http_mode"`
	LogLevel string `yaml:"log_level"`
	// Pprof serves /debug/pprof/ on the admin port.
	Pprof bool `yaml:"pprof"`
	// ShutdownDelay is how long keygate keeps answering checks after
	// SIGTERM, reporting not ready, before it stops accepting: the proxy
	// beside it is still sending checks while it drains.
	ShutdownDelay Duration `yaml:"shutdown_delay"`
	// ShutdownGrace bounds the drain of checks in flight after that.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	TLS           TLS      `yaml:"tls"`
	NATS          NATS     `yaml:"nats"`
	Keys          Keys     `yaml:"keys"`
	Cache         Cache    `yaml:"cache"`
	// Credentials are where keys are read from, in order.
	Credentials []Credential `yaml:"credentials"`
	// Routes map method + path prefix to the scope a key needs.
	Routes []Route `yaml:"routes"`
	// DefaultScope is the scope a key needs on a path no route names:
	// a scope, "*", or "none" for any valid key. It must be set when
	// Routes are; without routes, "" is "none".
	DefaultScope string `yaml:"default_scope"`
	// DefaultRateLimit applies to keys without their own ("600/1m"); "none"
	// means unlimited.
	DefaultRateLimit string `yaml:"default_rate_limit"`
	// LowBalanceThreshold, in major units, for accounts without their own.
	LowBalanceThreshold string `yaml:"low_balance_threshold"`
	// Fleet tunes how keygates sharing a NATS share per-key state.
	Fleet Fleet `yaml:"fleet"`
	// SettleToken, if set, enables the settle API on the admin port for
	// callers that send it as a bearer token (at least 32 characters).
	SettleToken string `yaml:"settle_token"`
	// APIAddr, if set, serves the admin API (keys, balances, usage) for
	// admin tokens. Off loopback it needs APITLS.
	APIAddr string `yaml:"api_addr"`
	// APITLS is the admin API's TLS.
	APITLS APITLS `yaml:"api_tls"`
	// APITokenFile, if set, holds an admin token (made by keygate tokens
	// new) whose record keygate serve stores, with APITokenScopes, when
	// it starts, unless one exists; it needs APIAddr.
	APITokenFile string `yaml:"api_token_file"`
	// APITokenScopes are the scopes of APITokenFile's token when keygate
	// stores its record; a stored record keeps its own.
	APITokenScopes []string `yaml:"api_token_scopes"`
	// Pricing says what calls cost; without prices nothing is metered.
	Pricing Pricing `yaml:"pricing"`
	// Leaks revokes keys reported as found in public.
	Leaks Leaks `yaml:"leaks"`
	// Alerts report low balances, spend budgets and unused keys on NATS
	// and to webhooks (docs/alerts.md).
	Alerts Alerts `yaml:"alerts"`
	// ClientIP says where the client's address is read, for keys with
	// allow_ips.
	ClientIP ClientIP `yaml:"client_ip"`
}

// ClientIP says how the client's address is found (docs/client-ip.md).
type ClientIP struct {
	// XFFTrustedHops is the number of trusted proxies in front of the
	// proxy that asks keygate: 0 reads the address of the connection the
	// proxy accepted, N the Nth address from the right of the
	// X-Forwarded-For it received (before it appended that address), as
	// Envoy's xff_num_trusted_hops with use_remote_address: true.
	XFFTrustedHops int `yaml:"xff_trusted_hops"`
}

// Leaks are the reports of keys found in public that keygate answers by
// revoking the keys.
type Leaks struct {
	GitHub GitHubLeaks `yaml:"github"`
}

// GitHubKeysURL serves the public keys GitHub signs its secret scanning
// reports with.
const GitHubKeysURL = "https://api.github.com/meta/public_keys/secret_scanning"

// GitHubLeaks is GitHub's secret scanning partner endpoint on the admin
// port (POST /v1/github/secret-scanning), off unless Enabled.
type GitHubLeaks struct {
	Enabled bool `yaml:"enabled"`
	// KeysURL serves the public keys GitHub signs its reports with.
	KeysURL string `yaml:"keys_url"`
	// KeysFile, if set, holds those keys instead of KeysURL, in the JSON
	// KeysURL serves.
	KeysFile string `yaml:"keys_file"`
	// Token, if set, is sent to KeysURL as a bearer token: GitHub limits
	// requests without one to 60 an hour per address.
	Token string `yaml:"token"`
}

// Alerts configure the alerts: once per crossing, once per fleet.
type Alerts struct {
	// Enabled turns alerts on.
	Enabled bool `yaml:"enabled"`
	// UnusedAfter is how long a key goes unused before it is reported,
	// once until it is used again; 0: never.
	UnusedAfter Duration `yaml:"unused_after"`
	// Webhooks receive every alert as a signed POST.
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is a URL that receives alerts, and the secret their signature
// is made with.
type Webhook struct {
	URL    string `yaml:"url"`
	Secret string `yaml:"secret"`
}

// Fleet tunes the per-key state keygates share through NATS: rate-limit
// budgets and key use.
type Fleet struct {
	// SyncInterval is how often a keygate announces itself to the
	// others, which count the keygates sharing the budgets.
	SyncInterval Duration `yaml:"sync_interval"`
	// LeaseTimeout bounds a check's wait for a rate-limit lease; a check
	// that holds nothing of the budget is then denied 503.
	LeaseTimeout Duration `yaml:"lease_timeout"`
	// OutageAfter is how long leases fail before the outage rule applies
	// (at once while NATS is unreachable).
	OutageAfter Duration `yaml:"outage_after"`
	// UsageFlushInterval is how long a key may count nothing before a
	// keygate writes what it holds of its use (last used, counts by
	// outcome) and drops it from memory; a key in use is written once a
	// minute, checked every second (at most every interval).
	UsageFlushInterval Duration `yaml:"usage_flush_interval"`
}

// TLS configures the gRPC listener. ClientCAFile turns on mTLS.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// APITLS turns on TLS on the admin API's listener.
type APITLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// NATS says where the key store is. Without URL keygate embeds a server.
type NATS struct {
	URL       string `yaml:"url"`
	CredsFile string `yaml:"creds_file"`
	NKeyFile  string `yaml:"nkey_file"`
	User      string `yaml:"user"`
	Password  string `yaml:"password"`
	Token     string `yaml:"token"`
	CAFile    string `yaml:"ca_file"`
	CertFile  string `yaml:"cert_file"`
	KeyFile   string `yaml:"key_file"`
	Listen    string `yaml:"listen"`
	DataDir   string `yaml:"data_dir"`
	// TokenDir holds the embedded server's token files, one per port; ""
	// is $XDG_CONFIG_HOME/keygate (else ~/.config/keygate).
	TokenDir       string `yaml:"token_dir"`
	KeysBucket     string `yaml:"keys_bucket"`
	AccountsBucket string `yaml:"accounts_bucket"`
	LimitsBucket   string `yaml:"limits_bucket"`
	UsageBucket    string `yaml:"usage_bucket"`
	FilterBucket   string `yaml:"filter_bucket"`
	AlertsBucket   string `yaml:"alerts_bucket"`
	// TokensBucket holds the admin API's tokens, IdempotencyBucket its
	// Idempotency-Key results (24 hours).
	TokensBucket      string `yaml:"tokens_bucket"`
	IdempotencyBucket string `yaml:"idempotency_bucket"`
	Replicas          int    `yaml:"replicas"`
}

// Keys is the accepted key format.
type Keys struct {
	LivePrefix    string   `yaml:"live_prefix"`
	TestPrefix    string   `yaml:"test_prefix"`
	ExtraPrefixes []string `yaml:"extra_prefixes"`
	Length        int      `yaml:"length"`
	Checksum      bool     `yaml:"checksum"`
}

// Cache bounds the in-memory cache.
type Cache struct {
	MaxKeys      int64    `yaml:"max_keys"`
	MaxAccounts  int64    `yaml:"max_accounts"`
	MaxNegative  int64    `yaml:"max_negative"`
	NegativeTTL  Duration `yaml:"negative_ttl"`
	MaxStaleness Duration `yaml:"max_staleness"`
}

// Credential is a header that may carry a key, with an optional auth
// scheme ("Bearer") in front of it.
type Credential struct {
	Header string `yaml:"header"`
	Scheme string `yaml:"scheme"`
}

// Route requires Scope for requests whose method is Method ("" or "*" for
// any) and whose path starts with PathPrefix.
type Route struct {
	Method     string `yaml:"method"`
	PathPrefix string `yaml:"path_prefix"`
	Scope      string `yaml:"scope"`
	// Price is a flat price per request in major units, by currency
	// ({USD: "0.04", MXN: "0.80"}); an account in a currency the route
	// has no price in is refused on it.
	Price map[string]string `yaml:"price"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		GRPCAddr:       "127.0.0.1:9191",
		GRPCReflection: true,
		AdminAddr:      "127.0.0.1:9090",
		HTTPMode:       "envoy",
		LogLevel:       "info",
		ShutdownDelay:  Duration(5 * time.Second),
		ShutdownGrace:  Duration(10 * time.Second),
		NATS: NATS{
			Listen:            "127.0.0.1:4222",
			DataDir:           "./keygate-data",
			KeysBucket:        store.DefaultOptions().KeysBucket,
			AccountsBucket:    store.DefaultOptions().AccountsBucket,
			LimitsBucket:      store.DefaultOptions().LimitsBucket,
			UsageBucket:       store.DefaultOptions().UsageBucket,
			FilterBucket:      store.DefaultOptions().FilterBucket,
			TokensBucket:      store.DefaultOptions().TokensBucket,
			IdempotencyBucket: store.DefaultOptions().IdempotencyBucket,
			AlertsBucket:      "keygate_alerts",
			Replicas:          1,
		},
		Keys: Keys{
			LivePrefix: apikey.LivePrefix,
			TestPrefix: apikey.TestPrefix,
			Length:     apikey.DefaultLength,
			Checksum:   true,
		},
		Cache: Cache{
			MaxKeys:      100_000,
			MaxAccounts:  10_000,
			MaxNegative:  10_000,
			NegativeTTL:  Duration(30 * time.Second),
			MaxStaleness: Duration(5 * time.Minute),
		},
		Credentials: []Credential{
			{Header: "authorization", Scheme: "Bearer"},
			{Header: "x-api-key"},
		},
		DefaultRateLimit:    "600/1m",
		LowBalanceThreshold: "0",
		APITokenScopes:      []string{store.TokenScopeRead},
		Fleet: Fleet{
			SyncInterval:       Duration(500 * time.Millisecond),
			LeaseTimeout:       Duration(100 * time.Millisecond),
			OutageAfter:        Duration(3 * time.Second),
			UsageFlushInterval: Duration(10 * time.Second),
		},
		Pricing: defaultPricing(),
		Leaks:   Leaks{GitHub: GitHubLeaks{KeysURL: GitHubKeysURL}},
		Alerts:  Alerts{Enabled: true, UnusedAfter: Duration(30 * 24 * time.Hour)},
	}
}

// Load returns the defaults, overlaid by the YAML file at path (if path is
// not empty) and then by KEYGATE_* variables read with getenv.
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		errs := decodeYAML(b, &c)
		for i, err := range errs {
			errs[i] = fmt.Errorf("config %s: %w", path, err)
		}
		if len(errs) > 0 {
			return c, errors.Join(errs...)
		}
	}
	if err := c.applyEnv(getenv); err != nil {
		return c, err
	}
	return c, nil
}

// Format is the key format the configuration accepts and mints.
func (k Keys) Format() apikey.Format {
	prefixes := append([]string{k.LivePrefix, k.TestPrefix}, k.ExtraPrefixes...)
	return apikey.Format{Prefixes: prefixes, Length: k.Length, Checksum: k.Checksum}
}

// Prefix is the prefix of newly minted keys for env.
func (k Keys) Prefix(env string) string {
	if env == store.EnvTest {
		return k.TestPrefix
	}
	return k.LivePrefix
}

// StoreOptions are the bucket settings.
func (n NATS) StoreOptions() store.Options {
	return store.Options{KeysBucket: n.KeysBucket, AccountsBucket: n.AccountsBucket,
		LimitsBucket: n.LimitsBucket, UsageBucket: n.UsageBucket, FilterBucket: n.FilterBucket,
		TokensBucket: n.TokensBucket, IdempotencyBucket: n.IdempotencyBucket, Replicas: n.Replicas}
}

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || d.UnmarshalText([]byte(n.Value)) != nil {
		return fmt.Errorf("%s is not a Go duration like 30s", quote(n.Value))
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
