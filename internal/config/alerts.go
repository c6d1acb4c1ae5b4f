package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Bounds of the alerts' options.
const (
	maxWebhooks     = 16
	minWebhookKey   = 32
	minUnusedAfter  = time.Hour
	maxUnusedAfter  = 366 * 24 * time.Hour
	webhookKeyRange = "at least 32 printable ASCII characters without spaces"
)

func (a Alerts) validate(add adder) {
	if d := a.UnusedAfter.D(); d != 0 && (d < minUnusedAfter || d > maxUnusedAfter) {
		add("alerts.unused_after", "%s is not 0 (off) or from %s to %s", d, minUnusedAfter, maxUnusedAfter)
	}
	if len(a.Webhooks) > maxWebhooks {
		add("alerts.webhooks", "%d webhooks; at most %d", len(a.Webhooks), maxWebhooks)
	}
	for i, w := range a.Webhooks {
		field := fmt.Sprintf("alerts.webhooks[%d]", i)
		if err := checkWebhookURL(w.URL); err != nil {
			add(field+".url", "%v", err)
		}
		if len(w.Secret) < minWebhookKey || strings.ContainsFunc(w.Secret, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			add(field+".secret", "must be %s (or KEYGATE_ALERTS_WEBHOOK_SECRET for the only webhook)", webhookKeyRange)
		}
	}
}

// checkWebhookURL checks a webhook's URL; its error never shows
// credentials.
func checkWebhookURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q is not an https:// or http:// URL", redact(s))
	case u.User != nil:
		return fmt.Errorf("%q carries credentials: receivers check the signature instead", redact(s))
	case u.Fragment != "":
		return fmt.Errorf("%q has a fragment, which is never sent", redact(s))
	}
	return nil
}
