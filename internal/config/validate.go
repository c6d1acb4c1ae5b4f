package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/clientip"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/store"
)

var (
	bucketName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	headerName = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)
	prefixText = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	methodName = regexp.MustCompile(`^(\*|[A-Z]+)?$`)
	schemeText = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)
)

// minKeyBody is the fewest characters after the prefix: enough entropy and
// room for the checksum and the masked form.
const minKeyBody = 16

// Validate checks every field and returns all problems, each naming its
// field as it is written in the YAML file.
func (c *Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	checkAddr(add, "grpc_addr", c.GRPCAddr, true)
	checkAddr(add, "admin_addr", c.AdminAddr, true)
	checkAddr(add, "http_addr", c.HTTPAddr, false)
	checkAddr(add, "api_addr", c.APIAddr, false)
	c.validateAPITLS(add)
	c.validateAPIToken(add)
	switch c.HTTPMode {
	case "envoy", "nginx", "traefik":
	default:
		add("http_mode", "%q is not envoy, nginx or traefik", c.HTTPMode)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if c.ShutdownDelay < 0 {
		add("shutdown_delay", "must not be negative")
	}
	if c.ShutdownGrace < 0 {
		add("shutdown_grace", "must not be negative")
	}
	c.TLS.validate(add)
	c.NATS.validate(add)
	c.Keys.validate(add)
	c.Cache.validate(add)
	c.Fleet.validate(add)
	c.validateRequests(add)
	c.validatePricing(add)
	c.Alerts.validate(add)
	if h := c.ClientIP.XFFTrustedHops; h < 0 || h > clientip.MaxHops {
		add("client_ip.xff_trusted_hops", "%d is not from 0 to %d", h, clientip.MaxHops)
	}
	if t := c.SettleToken; t != "" && (len(t) < 32 || strings.ContainsFunc(t, notPrintable)) {
		add("settle_token", "must be at least 32 printable ASCII characters without spaces")
	}
	c.Leaks.GitHub.validate(add)
	return errors.Join(errs...)
}

// notPrintable is true of spaces, control characters and non-ASCII.
func notPrintable(r rune) bool { return r <= ' ' || r >= 0x7f }

func (g GitHubLeaks) validate(add adder) {
	if g.KeysFile == "" {
		if u, err := url.Parse(g.KeysURL); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			add("leaks.github.keys_url", "%q is not an https:// URL without credentials (or set leaks.github.keys_file)", redact(g.KeysURL))
		}
	}
	if strings.ContainsFunc(g.Token, notPrintable) {
		add("leaks.github.token", "must be printable ASCII characters without spaces")
	}
}

type adder func(field, format string, args ...any)

func checkAddr(add adder, field, addr string, required bool) {
	if addr == "" {
		if required {
			add(field, "must be set, like 127.0.0.1:9191")
		}
		return
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		add(field, "%q is not host:port", addr)
	}
}

func (t TLS) validate(add adder) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		add("tls", "cert_file and key_file go together")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		add("tls.client_ca_file", "mTLS needs tls.cert_file and tls.key_file too")
	}
}

// validateAPITLS requires TLS for an admin API off loopback: its bearer
// tokens change keys and balances.
func (c *Config) validateAPITLS(add adder) {
	t := c.APITLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		add("api_tls", "cert_file and key_file go together")
	}
	if c.APIAddr != "" && t.CertFile == "" && !Loopback(c.APIAddr) {
		add("api_tls.cert_file", "must be set (with api_tls.key_file): api_addr %q is not a loopback address, and the admin API takes bearer tokens only over TLS off loopback", c.APIAddr)
	}
}

// validateAPIToken checks the admin token given in a file and its scopes
// (read, keys, balances, as keygate tokens create takes them).
func (c *Config) validateAPIToken(add adder) {
	if c.APITokenFile != "" && c.APIAddr == "" {
		add("api_token_file", "needs api_addr: the token is for the admin API")
	}
	if c.APITokenFile != "" && len(c.APITokenScopes) == 0 {
		add("api_token_scopes", "must list read, keys or balances")
	}
	for i, sc := range c.APITokenScopes {
		if !store.ValidTokenScope(sc) {
			add(fmt.Sprintf("api_token_scopes[%d]", i), "%q is not read, keys or balances", sc)
		}
	}
}

// Loopback reports whether addr's host is a loopback address or
// localhost; an empty host (every interface) is not.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (n NATS) validate(add adder) {
	if n.URL != "" {
		if err := CheckNATSURL(n.URL); err != nil {
			add("nats.url", "%v", err)
		}
	} else {
		checkAddr(add, "nats.listen", n.Listen, true)
		if n.DataDir == "" {
			add("nats.data_dir", "must be set when keygate runs its own NATS server")
		}
	}
	if (n.CertFile == "") != (n.KeyFile == "") {
		add("nats", "cert_file and key_file go together")
	}
	seen := map[string]string{}
	for _, f := range [][2]string{{"nats.keys_bucket", n.KeysBucket}, {"nats.accounts_bucket", n.AccountsBucket},
		{"nats.limits_bucket", n.LimitsBucket}, {"nats.usage_bucket", n.UsageBucket}, {"nats.filter_bucket", n.FilterBucket},
		{"nats.alerts_bucket", n.AlertsBucket},
		{"nats.tokens_bucket", n.TokensBucket}, {"nats.idempotency_bucket", n.IdempotencyBucket}} {
		if !bucketName.MatchString(f[1]) {
			add(f[0], "%q must be letters, digits, '_' or '-'", f[1])
		} else if other, dup := seen[f[1]]; dup {
			add(f[0], "must differ from %s", other)
		}
		seen[f[1]] = f[0]
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		add("nats.replicas", "%d is not from 1 to 5", n.Replicas)
	}
}

// CheckNATSURL checks a NATS URL or comma-separated seed list; its error
// never shows credentials.
func CheckNATSURL(s string) error {
	for _, u := range strings.Split(s, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Host == "" || !validScheme(p.Scheme) {
			return fmt.Errorf("%q is not a nats://, tls://, ws:// or wss:// URL", redact(u))
		}
	}
	return nil
}

func validScheme(s string) bool {
	return s == "nats" || s == "tls" || s == "ws" || s == "wss"
}

// RedactURLs is a NATS URL or seed list without credentials, to print.
func RedactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, u := range parts {
		parts[i] = redact(u)
	}
	return strings.Join(parts, ",")
}

// redact drops any user:password (or token) from a URL before it is
// printed: everything up to the last '@', after the scheme. It works on
// text, as the URLs it is given may not parse.
func redact(u string) string {
	u = strings.TrimSpace(u)
	at := strings.LastIndex(u, "@")
	if at < 0 {
		return u
	}
	scheme := ""
	if i := strings.Index(u[:at], "://"); i > 0 && schemeText.MatchString(u[:i]) {
		scheme = u[:i+3]
	}
	return scheme + "redacted@" + u[at+1:]
}

func (k Keys) validate(add adder) {
	for i, p := range append([]string{k.LivePrefix, k.TestPrefix}, k.ExtraPrefixes...) {
		field := [...]string{"keys.live_prefix", "keys.test_prefix"}[min(i, 1)]
		if i > 1 {
			field = fmt.Sprintf("keys.extra_prefixes[%d]", i-2)
		}
		if !prefixText.MatchString(p) {
			add(field, "%q must be letters, digits, '_' or '-'", p)
		} else if k.Length-len(p) < minKeyBody {
			add("keys.length", "%d leaves fewer than %d characters after prefix %q", k.Length, minKeyBody, p)
		}
	}
	if k.LivePrefix == k.TestPrefix {
		add("keys.test_prefix", "must differ from keys.live_prefix")
	}
}

func (c Cache) validate(add adder) {
	if c.MaxKeys < 1 {
		add("cache.max_keys", "must be at least 1")
	}
	if c.MaxAccounts < 1 {
		add("cache.max_accounts", "must be at least 1")
	}
	if c.MaxNegative < 1 {
		add("cache.max_negative", "must be at least 1")
	}
	if c.NegativeTTL <= 0 {
		add("cache.negative_ttl", "must be a positive duration")
	}
	if c.MaxStaleness <= 0 {
		add("cache.max_staleness", "must be a positive duration")
	}
}

func (f Fleet) validate(add adder) {
	for _, d := range []struct {
		field    string
		v        Duration
		min, max time.Duration
	}{
		{"fleet.sync_interval", f.SyncInterval, 10 * time.Millisecond, time.Minute},
		{"fleet.lease_timeout", f.LeaseTimeout, time.Millisecond, 10 * time.Second},
		{"fleet.outage_after", f.OutageAfter, 0, 10 * time.Minute},
		{"fleet.usage_flush_interval", f.UsageFlushInterval, 100 * time.Millisecond, 30 * time.Second},
	} {
		if d.v.D() < d.min || d.v.D() > d.max {
			add(d.field, "%s is not from %s to %s", d.v.D(), d.min, d.max)
		}
	}
}

func (c *Config) validateRequests(add adder) {
	if len(c.Credentials) == 0 {
		add("credentials", "needs at least one header")
	}
	seen := map[string]bool{}
	for i, cr := range c.Credentials {
		if seen[cr.Header] {
			add(fmt.Sprintf("credentials[%d].header", i), "%q is listed twice", cr.Header)
		}
		seen[cr.Header] = true
		if !headerName.MatchString(cr.Header) {
			add(fmt.Sprintf("credentials[%d].header", i), "%q must be a lowercase header name", cr.Header)
		}
		if strings.ContainsAny(cr.Scheme, " \t") {
			add(fmt.Sprintf("credentials[%d].scheme", i), "%q must be one word, like Bearer", cr.Scheme)
		}
	}
	if len(c.Routes) > 0 && c.DefaultScope == "" {
		add("default_scope", "must be set when routes are: the scope a key needs on a path no route names (a scope, * for keys that hold every scope, or none for any valid key)")
	}
	for i, r := range c.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		if !methodName.MatchString(r.Method) {
			add(field+".method", "%q must be an uppercase method like POST, or *", r.Method)
		}
		if r.Method == "HEAD" {
			add(field+".method", "HEAD needs what GET needs: route GET instead")
		}
		if !strings.HasPrefix(r.PathPrefix, "/") {
			add(field+".path_prefix", "%q must start with /", r.PathPrefix)
		}
		if r.Scope == "" {
			add(field+".scope", "must be set")
		}
	}
	if _, err := c.RateLimit(); err != nil {
		add("default_rate_limit", "%v (or none)", err)
	}
	if v, err := c.LowBalance(); err != nil || v < 0 {
		add("low_balance_threshold", "%q must be a non-negative amount like 10.00", c.LowBalanceThreshold)
	}
}

// UnroutedScope is the scope a key needs on a path no route names; ""
// needs none.
func (c *Config) UnroutedScope() string {
	if c.DefaultScope == "none" {
		return ""
	}
	return c.DefaultScope
}

// RateLimit is the parsed default rate limit; nil means unlimited.
func (c *Config) RateLimit() (*store.RateLimit, error) {
	if c.DefaultRateLimit == "none" || c.DefaultRateLimit == "" {
		return nil, nil
	}
	return store.ParseRateLimit(c.DefaultRateLimit)
}

// LowBalance is the default low-balance threshold in minor units (2
// decimals).
func (c *Config) LowBalance() (int64, error) {
	return money.Parse(c.LowBalanceThreshold, money.DefaultCurrency)
}
