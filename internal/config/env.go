package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// applyEnv overlays KEYGATE_* variables on c. It reports every bad
// variable, by name, in the order of their names.
func (c *Config) applyEnv(getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	strs := map[string]*string{
		"KEYGATE_GRPC_ADDR":              &c.GRPCAddr,
		"KEYGATE_ADMIN_ADDR":             &c.AdminAddr,
		"KEYGATE_HTTP_ADDR":              &c.HTTPAddr,
		"KEYGATE_HTTP_MODE":              &c.HTTPMode,
		"KEYGATE_LOG_LEVEL":              &c.LogLevel,
		"KEYGATE_TLS_CERT_FILE":          &c.TLS.CertFile,
		"KEYGATE_TLS_KEY_FILE":           &c.TLS.KeyFile,
		"KEYGATE_TLS_CLIENT_CA_FILE":     &c.TLS.ClientCAFile,
		"KEYGATE_NATS_URL":               &c.NATS.URL,
		"KEYGATE_NATS_CREDS_FILE":        &c.NATS.CredsFile,
		"KEYGATE_NATS_NKEY_FILE":         &c.NATS.NKeyFile,
		"KEYGATE_NATS_USER":              &c.NATS.User,
		"KEYGATE_NATS_PASSWORD":          &c.NATS.Password,
		"KEYGATE_NATS_TOKEN":             &c.NATS.Token,
		"KEYGATE_NATS_CA_FILE":           &c.NATS.CAFile,
		"KEYGATE_NATS_CERT_FILE":         &c.NATS.CertFile,
		"KEYGATE_NATS_KEY_FILE":          &c.NATS.KeyFile,
		"KEYGATE_NATS_LISTEN":            &c.NATS.Listen,
		"KEYGATE_DATA_DIR":               &c.NATS.DataDir,
		"KEYGATE_NATS_TOKEN_DIR":         &c.NATS.TokenDir,
		"KEYGATE_DEFAULT_SCOPE":          &c.DefaultScope,
		"KEYGATE_DEFAULT_RATE_LIMIT":     &c.DefaultRateLimit,
		"KEYGATE_LOW_BALANCE_THRESHOLD":  &c.LowBalanceThreshold,
		"KEYGATE_SETTLE_TOKEN":           &c.SettleToken,
		"KEYGATE_LEAKS_GITHUB_KEYS_URL":  &c.Leaks.GitHub.KeysURL,
		"KEYGATE_LEAKS_GITHUB_KEYS_FILE": &c.Leaks.GitHub.KeysFile,
		"KEYGATE_LEAKS_GITHUB_TOKEN":     &c.Leaks.GitHub.Token,
		"KEYGATE_API_ADDR":               &c.APIAddr,
		"KEYGATE_API_TLS_CERT_FILE":      &c.APITLS.CertFile,
		"KEYGATE_API_TLS_KEY_FILE":       &c.APITLS.KeyFile,
		"KEYGATE_API_TOKEN_FILE":         &c.APITokenFile,
	}
	for name, p := range strs {
		if v := getenv(name); v != "" {
			*p = v
		}
	}
	durs := map[string]*Duration{
		"KEYGATE_SHUTDOWN_DELAY":             &c.ShutdownDelay,
		"KEYGATE_SHUTDOWN_GRACE":             &c.ShutdownGrace,
		"KEYGATE_MAX_STALENESS":              &c.Cache.MaxStaleness,
		"KEYGATE_FLEET_SYNC_INTERVAL":        &c.Fleet.SyncInterval,
		"KEYGATE_FLEET_LEASE_TIMEOUT":        &c.Fleet.LeaseTimeout,
		"KEYGATE_FLEET_OUTAGE_AFTER":         &c.Fleet.OutageAfter,
		"KEYGATE_FLEET_USAGE_FLUSH_INTERVAL": &c.Fleet.UsageFlushInterval,
		"KEYGATE_ALERTS_UNUSED_AFTER":        &c.Alerts.UnusedAfter,
	}
	bad := map[string]error{}
	for name, p := range durs {
		if v := getenv(name); v != "" {
			if err := p.UnmarshalText([]byte(v)); err != nil {
				bad[name] = fmt.Errorf("%s: %s is not a Go duration like 30s", name, quote(v))
			}
		}
	}
	bools := map[string]*bool{
		"KEYGATE_PPROF":                &c.Pprof,
		"KEYGATE_GRPC_REFLECTION":      &c.GRPCReflection,
		"KEYGATE_LEAKS_GITHUB_ENABLED": &c.Leaks.GitHub.Enabled,
		"KEYGATE_ALERTS_ENABLED":       &c.Alerts.Enabled,
	}
	for name, p := range bools {
		switch v := getenv(name); v {
		case "":
		case "true", "1":
			*p = true
		case "false", "0":
			*p = false
		default:
			bad[name] = fmt.Errorf("%s: %s is not true or false", name, quote(v))
		}
	}
	ints := map[string]*int{
		"KEYGATE_NATS_REPLICAS":              &c.NATS.Replicas,
		"KEYGATE_CLIENT_IP_XFF_TRUSTED_HOPS": &c.ClientIP.XFFTrustedHops,
	}
	for name, p := range ints {
		if v := getenv(name); v != "" {
			if n, err := strconv.Atoi(v); err != nil {
				bad[name] = fmt.Errorf("%s: %s is not a whole number", name, quote(v))
			} else {
				*p = n
			}
		}
	}
	if v := getenv("KEYGATE_ALERTS_WEBHOOK_SECRET"); v != "" {
		if n := len(c.Alerts.Webhooks); n != 1 {
			bad["KEYGATE_ALERTS_WEBHOOK_SECRET"] = fmt.Errorf("KEYGATE_ALERTS_WEBHOOK_SECRET: sets the secret of the only webhook, and alerts.webhooks has %d", n)
		} else {
			c.Alerts.Webhooks[0].Secret = v
		}
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(bad)) {
		errs = append(errs, bad[name])
	}
	return errors.Join(errs...)
}
