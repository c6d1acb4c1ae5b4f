package alerts_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/alerts"
	"github.com/keygate/keygate/internal/poll"
)

// A keygate that stops while a webhook holds an alert hands it back: the
// next keygate publishes and POSTs it again, with the same id.
func TestHandoverOnStop(t *testing.T) {
	hook := newReceiver(t, func(n int) int { return [...]int{0, 204}[min(n, 2)-1] }) // the first POST never answered
	f := prepare(t, hook)
	o := alerts.Options{LowBalance: 1000}
	f.start(t, 1, o, false)
	cross(f.kgs[0], "acme")
	poll.Until(t, 10*time.Second, "the first POST", func() bool { return len(hook.received()) == 1 })
	f.stops[0]()
	f.start(t, 1, o, false)
	f.quiet(t)
	got, _ := f.got.alerts(t)
	posts := hook.received()
	if len(got) != 2 || got[0].ID != got[1].ID || len(posts) != 2 || posts[0].id != got[0].ID || posts[1].id != got[0].ID {
		t.Fatalf("alerts %+v, POSTs %+v: want the same alert twice", got, posts)
	}
}

// A claim left by a keygate that died before publishing it is published
// by the next keygate that runs.
func TestClaimLeftIsPublished(t *testing.T) {
	hook := newReceiver(t, always(204))
	f := prepare(t, hook)
	if _, err := alerts.Open(f.ctx, alerts.Options{Store: f.st}); err != nil {
		t.Fatal(err)
	}
	kv, err := f.js.KeyValue(f.ctx, "keygate_alerts")
	if err != nil {
		t.Fatal(err)
	}
	al, _ := json.Marshal(alerts.Alert{ID: "low_balance.acme.7", Kind: alerts.KindLowBalance, AccountID: "acme", Threshold: "10.00", Value: "9.00", At: time.Now()})
	if _, err := kv.Create(f.ctx, "c.low_balance.acme.7", al); err != nil {
		t.Fatal(err)
	}
	f.start(t, 2, alerts.Options{}, false)
	f.waitAlerts(t, 1)
	f.quiet(t)
	if got, _ := f.got.alerts(t); len(got) != 1 || got[0].ID != "low_balance.acme.7" || len(hook.received()) != 1 {
		t.Fatalf("alerts %+v, %d POSTs", got, len(hook.received()))
	}
}
