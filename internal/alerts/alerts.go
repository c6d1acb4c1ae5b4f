// Package alerts reports, once per crossing and once per fleet, an
// account's balance falling below its low-balance threshold, a key's
// spend budget reaching 80 % and 100 % in its period, and a key left
// unused for a configured time: as JSON on the NATS subject
// keygate.alerts.<kind>, and as signed POSTs to webhooks.
//
// Every keygate detects, off the check path: balances from the account
// changes its watcher applies, budgets from the settlements it writes,
// unused keys in an hourly scan that one keygate claims. An alert exists
// once its claim is created in the alerts bucket (a KV create: of any
// number of keygates making the same claim, one succeeds). Claims are
// delivered by a durable consumer that every keygate reads, so each goes
// to one keygate, which publishes it, posts it to the webhooks and then
// acknowledges it; one that is not acknowledged in time (its keygate
// died) goes to another. docs/alerts.md states the guarantees.
package alerts

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/store"
	"github.com/keygate/keygate/internal/tick"
)

// Kinds of alert; each is published on SubjectPrefix + kind.
const (
	KindLowBalance = "low_balance"
	KindBudget     = "budget"
	KindUnusedKey  = "unused_key"
)

// Kinds lists every kind.
var Kinds = []string{KindLowBalance, KindBudget, KindUnusedKey}

// SubjectPrefix is the NATS subject of alerts, before their kind.
const SubjectPrefix = "keygate.alerts."

// Alert is what is published and posted, as JSON. Amounts are decimals in
// major units of Currency; it names accounts and keys by id only.
type Alert struct {
	// ID names the crossing: the same on every delivery of the alert.
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	AccountID string `json:"account_id,omitempty"`
	KeyID     string `json:"key_id,omitempty"`
	// BudgetID names a spend budget: its key's id, or for a rotated key
	// its predecessor's.
	BudgetID string `json:"budget_id,omitempty"`
	// Percent of the budget reached: 80 or 100.
	Percent int64 `json:"percent,omitempty"`
	// Threshold and Value: the low-balance threshold and the balance; the
	// amount at Percent of the budget and what was spent in the period;
	// unused_after and how long the key has gone unused (Go durations).
	Threshold string `json:"threshold"`
	Value     string `json:"value"`
	// Limit is the budget's amount per period.
	Limit    string `json:"limit,omitempty"`
	Currency string `json:"currency,omitempty"`
	// Period and PeriodEnd bound the budget's period.
	Period    *time.Time `json:"period,omitempty"`
	PeriodEnd *time.Time `json:"period_end,omitempty"`
	// LastUsedAt is an unused key's last use (absent: never used).
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// At is when the crossing was found.
	At time.Time `json:"at"`
}

// Options configure Alerts; zero timings take the defaults.
type Options struct {
	Store    *store.Store
	Bucket   string // the alerts bucket; keygate_alerts if empty
	Replicas int
	// LowBalance is the low-balance threshold of accounts without their
	// own, in minor units of a currency with 2 decimals (a hundredth of
	// it for currencies without); 0: such accounts are not watched.
	LowBalance int64
	// UnusedAfter is how long a key goes unused before it is reported;
	// 0: never.
	UnusedAfter time.Duration
	Webhooks    []Webhook

	FlushEvery  time.Duration // how often spend is added to the fleet's counters: 1s
	ScanEvery   time.Duration // how often unused keys are looked for: 1h
	AckWait     time.Duration // how long a keygate may hold an alert without word before another takes it: 30s
	Retry       time.Duration // a webhook's first retry after a failure, doubling after each: 5s
	Attempts    int           // POSTs of an alert to a webhook at most: 8
	PostTimeout time.Duration // one POST's wait for an answer: 10s
	Queue       int           // webhook deliveries kept at once, the oldest dropped beyond: 1000
	Now         func() time.Time
	Log         *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Bucket == "" {
		o.Bucket = "keygate_alerts"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&o.FlushEvery, time.Second}, {&o.ScanEvery, time.Hour}, {&o.AckWait, 30 * time.Second},
		{&o.Retry, 5 * time.Second}, {&o.PostTimeout, 10 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if o.Attempts <= 0 {
		o.Attempts = 8
	}
	if o.Queue <= 0 {
		o.Queue = 1000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Alerts finds crossings and delivers alerts.
type Alerts struct {
	o     Options
	kv    *bucket
	js    jetstream.JetStream
	nc    *nats.Conn
	bal   *balances
	spend *spending
	send  *sender
	jobs  *jobs
	stats Stats
}

// Open binds to the alerts bucket, creating it if missing. Account and
// Settled may be called from then on; Run delivers.
func Open(ctx context.Context, o Options) (*Alerts, error) {
	o = o.withDefaults()
	js := o.Store.JetStream()
	kv, err := openBucket(ctx, js, o.Bucket, o.Replicas)
	if err != nil {
		return nil, err
	}
	a := &Alerts{o: o, kv: kv, js: js, nc: js.Conn()}
	a.stats.init()
	a.bal = newBalances(a)
	a.spend = newSpending(a)
	a.send = newSender(o, &a.stats)
	a.jobs = newJobs()
	return a, nil
}

// Stats returns the counters.
func (a *Alerts) Stats() *Stats { return &a.stats }

// Run delivers alerts and looks for crossings until ctx ends; it returns
// once the spend settled here is counted (for a second at most) and the
// alerts it was delivering are handed back, for another keygate to
// deliver.
func (a *Alerts) Run(ctx context.Context) {
	a.send.start(ctx)
	go a.bal.run(ctx)
	go tick.Every(ctx, a.o.FlushEvery, func() { a.spend.flush(ctx) })
	go tick.Every(ctx, a.o.AckWait/3, a.jobs.progress)
	if a.o.UnusedAfter > 0 {
		go tick.Every(ctx, a.o.ScanEvery/scanLooks, func() {
			if err := a.scanUnused(ctx); err != nil && ctx.Err() == nil {
				a.failed("scanning for unused keys", err)
			}
		})
	}
	stop := a.consume(ctx)
	<-ctx.Done()
	stop()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	a.spend.flush(fctx)
	cancel()
	a.send.wait()
}

// claim creates the claim of al, which lives ttl: the alert exists once
// it is created, whoever created it.
func (a *Alerts) claim(ctx context.Context, al *Alert, ttl time.Duration) error {
	err := a.kv.create(ctx, claimPrefix+al.ID, al, ttl)
	if err != nil && err != errConflict {
		return fmt.Errorf("claim %s: %w", al.ID, err)
	}
	return nil
}

// failed counts and logs a store operation that failed.
func (a *Alerts) failed(what string, err error) {
	a.stats.Errors.Add(1)
	a.o.Log.Warn("alerts: "+what, "err", err)
}
