package alerts_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/alerts"
	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/settle"
)

// day is the start of a UTC day.
var day = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

// settled tells a of a settlement costing minor hundredths of a minor
// unit by key key_b, whose budget is 10.00 MXN a day, in the day starting
// at start.
func settled(a *alerts.Alerts, start time.Time, hundredths int64) {
	r := &settle.Reservation{Account: "acme", Key: "key_b", Currency: "MXN",
		Spend: &settle.Take{Budget: "spend.key_b", Window: start.UnixNano(), Limit: 1000 * money.NanosPerMinor, Len: 24 * time.Hour, Calendar: ratelimit.Day}}
	a.Settled(r, &settle.Settlement{Account: "acme", Key: "key_b", Currency: "MXN", Cost: hundredths * money.NanosPerMinor / 100})
}

// A budget's 80 % and 100 % are one alert each, wherever its
// settlements were written; the next period re-arms both.
func TestBudgetOncePerThreshold(t *testing.T) {
	hook := newReceiver(t, always(200))
	f := newFleet(t, 3, alerts.Options{FlushEvery: 5 * time.Millisecond}, hook, false)
	steps := []struct {
		kg         int
		hundredths int64 // of a minor unit: 100,000 is the whole budget
		want       []int64
	}{
		{0, 30_000, nil},
		{1, 30_000, nil},
		{2, 25_000, []int64{80}},
		{0, 10_000, []int64{80}},
		{1, 10_000, []int64{80, 100}},
		{2, 50_000, []int64{80, 100}},
	}
	for i, s := range steps {
		settled(f.kgs[s.kg], day, s.hundredths)
		f.quiet(t)
		got, _ := f.got.alerts(t)
		if len(got) != len(s.want) {
			t.Fatalf("step %d: alerts %+v, want percents %v", i, got, s.want)
		}
		for j, al := range got {
			if al.Percent != s.want[j] {
				t.Fatalf("step %d: alerts %+v, want percents %v", i, got, s.want)
			}
		}
	}
	got, _ := f.got.alerts(t)
	first := got[0]
	if first.Kind != alerts.KindBudget || first.AccountID != "acme" || first.KeyID != "key_b" || first.BudgetID != "key_b" ||
		first.Threshold != "8.00" || first.Value != "8.50" || first.Limit != "10.00" || first.Currency != "MXN" ||
		!first.Period.Equal(day) || !first.PeriodEnd.Equal(day.Add(24*time.Hour)) {
		t.Fatalf("the 80%% alert: %+v", first)
	}
	if got[1].Threshold != "10.00" || got[1].Value != "10.50" {
		t.Fatalf("the 100%% alert: %+v", got[1])
	}
	if len(hook.received()) != 2 || hook.bad.Load() != 0 {
		t.Fatalf("%d POSTs (%d bad), want 2", len(hook.received()), hook.bad.Load())
	}

	// The next day: 100 settlements at once across the keygates, 1 %
	// each, reach 80 % and 100 % once each.
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() { settled(f.kgs[i%3], day.Add(24*time.Hour), 1000) })
	}
	wg.Wait()
	f.quiet(t)
	got, _ = f.got.alerts(t)
	if len(got) != 4 || got[2].Period.Equal(day) || got[3].Period.Equal(day) {
		t.Fatalf("alerts %+v, want two of the next day", got)
	}
	want := fmt.Sprintf("budget.key_b.%d.", day.Add(24*time.Hour).UnixNano())
	if got[2].ID == got[3].ID || got[2].ID[:len(want)] != want || got[3].ID[:len(want)] != want {
		t.Fatalf("alert ids %q and %q", got[2].ID, got[3].ID)
	}
}
