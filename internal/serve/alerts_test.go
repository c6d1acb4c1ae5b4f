package serve_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/alerts"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/store"
)

const webhookSecret = "whsec-0123456789abcdef0123456789abcdef"

// One metered request settled at 0.20 MXN, the whole of its key's daily
// budget, takes its account from 100.00 to 99.80 MXN, below the default
// low-balance threshold of 99.90: keygate publishes the budget's 80 %
// and 100 % and the low balance on NATS, and POSTs each, signed, to the
// webhook.
func TestAlertsEndToEnd(t *testing.T) {
	var mu sync.Mutex
	var posts [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if alerts.Verify(webhookSecret, r.Header.Get(alerts.HeaderTimestamp), r.Header.Get(alerts.HeaderSignature), body, time.Now(), 5*time.Minute) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		posts = append(posts, body)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	ns := natstest.Run(t)
	cfg := meteredConfig(t, ns.ClientURL())
	cfg.LowBalanceThreshold = "99.90"
	cfg.Alerts.Webhooks = []config.Webhook{{URL: hook.URL, Secret: webhookSecret}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := start(t, cfg)
	st := openStore(t, e, ns)
	nc, _ := natstest.Connect(t, ns)
	sub, err := nc.SubscribeSync(alerts.SubjectPrefix + ">")
	if err != nil {
		t.Fatal(err)
	}
	key, k := createKey(t, e.ctx, st, "acme")
	editKey(t, e.ctx, st, k.ID, func(k *store.Key) {
		k.V, k.Budget = 2, &store.Budget{Amount: 20, Period: store.Day}
	})
	setBalance(t, e.ctx, st, "acme", 10_000)
	waitCode(t, e, key, 200)

	resp, err := e.client.Check(e.ctx, chat(key, `{"model":"gpt-4o","messages":[],"max_tokens":1}`))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("a metered chat: %v, %v", resp, err)
	}
	res := header(resp.GetOkResponse().GetHeaders(), "x-keygate-reservation-id")
	settleHTTP(t, e, `{"reservation_id":"`+res+`","status":200,"usage":{"prompt_tokens":200,"completion_tokens":0}}`)

	got := map[string]alerts.Alert{}
	for len(got) < 3 {
		m, err := sub.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("alerts %v: %v\n%s", got, err, e.logs.String())
		}
		var al alerts.Alert
		if err := json.Unmarshal(m.Data, &al); err != nil {
			t.Fatal(err)
		}
		name := al.Kind
		if al.Kind == alerts.KindBudget {
			name += map[int64]string{80: "80", 100: "100"}[al.Percent]
		}
		if _, twice := got[name]; twice {
			t.Fatalf("%s twice: %s", name, m.Data)
		}
		got[name] = al
	}
	if al := got["low_balance"]; al.AccountID != "acme" || al.Threshold != "99.90" || al.Value != "99.80" || al.Currency != "MXN" {
		t.Errorf("low balance alert %+v", al)
	}
	if al := got["budget80"]; al.KeyID != k.ID || al.BudgetID != k.ID || al.Threshold != "0.16" || al.Value != "0.20" || al.Limit != "0.20" {
		t.Errorf("80%% alert %+v", al)
	}
	if al := got["budget100"]; al.Threshold != "0.20" || al.Value != "0.20" {
		t.Errorf("100%% alert %+v", al)
	}
	poll.Until(t, 20*time.Second, "three POSTs", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(posts) == 3
	})
	// keygate counts a delivery once the POST's answer is back: a moment
	// after the receiver has it.
	poll.Until(t, 20*time.Second, "three deliveries counted", func() bool {
		return strings.Contains(e.metrics(t), "keygate_alert_webhook_deliveries_total 3\n")
	})
	metrics := e.metrics(t)
	for _, want := range []string{`keygate_alerts_published_total{kind="budget"} 2`, `keygate_alerts_published_total{kind="low_balance"} 1`,
		"keygate_alert_webhook_deliveries_total 3\n", "keygate_alert_webhook_drops_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	e.noKeysLogged(t, key)
}
