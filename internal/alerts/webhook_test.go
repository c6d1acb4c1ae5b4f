package alerts_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/alerts"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

// cross makes account id cross below its threshold at keygate a.
func cross(a *alerts.Alerts, id string) {
	a.Account(id, 1, &store.Account{ID: id, Balance: 5000, Currency: "MXN"})
	a.Account(id, 2, &store.Account{ID: id, Balance: 10, Currency: "MXN"})
}

// A receiver that fails twice and then answers gets the alert three
// times, the same body and id, and it counts as delivered once; one that
// refuses it (4xx) is not asked again.
func TestWebhookRetries(t *testing.T) {
	hook := newReceiver(t, func(n int) int { return [...]int{500, 503, 204, 400}[min(n, 4)-1] })
	f := newFleet(t, 1, alerts.Options{LowBalance: 1000, Retry: time.Millisecond}, hook, false)
	a := f.kgs[0]
	cross(a, "acme")
	f.quiet(t)
	posts := hook.received()
	if len(posts) != 3 || posts[0].id != posts[2].id || string(posts[0].body) != string(posts[2].body) || hook.bad.Load() != 0 {
		t.Fatalf("POSTs %+v (%d bad), want the same alert three times", posts, hook.bad.Load())
	}
	if s := a.Stats(); s.Delivered.Load() != 1 || s.Retried.Load() != 2 || s.Failed.Load() != 0 || f.got.count() != 1 {
		t.Fatalf("delivered %d, retried %d, failed %d, published %d", s.Delivered.Load(), s.Retried.Load(), s.Failed.Load(), f.got.count())
	}
	cross(a, "globex")
	f.quiet(t)
	if s := a.Stats(); len(hook.received()) != 4 || s.Failed.Load() != 1 || s.Retried.Load() != 2 {
		t.Fatalf("a 400: %d POSTs, failed %d, retried %d", len(hook.received()), s.Failed.Load(), s.Retried.Load())
	}
}

// A receiver that never answers holds up nothing: every alert is
// published on NATS at once, and the webhook deliveries kept are bounded,
// the oldest dropped.
func TestWebhookNeverAnswers(t *testing.T) {
	const n, queue = 6, 2
	hook := newReceiver(t, always(0))
	f := newFleet(t, 1, alerts.Options{LowBalance: 1000, Queue: queue, PostTimeout: time.Minute}, hook, false)
	a := f.kgs[0]
	for i := range n {
		cross(a, fmt.Sprintf("acct%d", i))
	}
	f.waitAlerts(t, n)
	poll.Until(t, 10*time.Second, "the oldest deliveries dropped", func() bool { return a.Stats().Dropped.Load() == n-queue })
	if s := a.Stats(); s.Delivered.Load() != 0 || s.Failed.Load() != 0 || len(hook.received()) > n {
		t.Fatalf("delivered %d, failed %d, %d POSTs", s.Delivered.Load(), s.Failed.Load(), len(hook.received()))
	}
}

// Verify accepts what Sign made with the same secret, body and a recent
// timestamp, and nothing else.
func TestSignature(t *testing.T) {
	now := time.Unix(1_795_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"id":"low_balance.acme.7","kind":"low_balance"}`)
	sig := alerts.Sign(secret, ts, body)
	if len(sig) != len("sha256=")+64 || sig[:7] != "sha256=" {
		t.Fatalf("signature %q", sig)
	}
	for _, tc := range []struct {
		name            string
		secret, ts, sig string
		body            string
		at              time.Time
		ok              bool
	}{
		{"as signed", secret, ts, sig, string(body), now, true},
		{"4 minutes later", secret, ts, sig, string(body), now.Add(4 * time.Minute), true},
		{"replayed 6 minutes later", secret, ts, sig, string(body), now.Add(6 * time.Minute), false},
		{"from the future", secret, ts, sig, string(body), now.Add(-6 * time.Minute), false},
		{"another timestamp", secret, strconv.FormatInt(now.Unix()+1, 10), sig, string(body), now, false},
		{"another body", secret, ts, sig, string(body) + " ", now, false},
		{"another secret", secret + "x", ts, sig, string(body), now, false},
		{"no timestamp", secret, "", sig, string(body), now, false},
		{"upper-case hex", secret, ts, "sha256=" + strings.ToUpper(sig[7:]), string(body), now, false},
	} {
		err := alerts.Verify(tc.secret, tc.ts, tc.sig, []byte(tc.body), tc.at, 5*time.Minute)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Verify = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
