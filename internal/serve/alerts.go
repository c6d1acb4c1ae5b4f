package serve

import (
	"context"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/internal/alerts"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/store"
)

// openAlerts opens the alerts bucket, unless alerts are off: from then
// on, account changes and settlements are followed for crossings.
func (inst *Instance) openAlerts(ctx context.Context, cfg config.Config, st *store.Store, reg prometheus.Registerer) error {
	if !cfg.Alerts.Enabled {
		return nil
	}
	low, _ := cfg.LowBalance() // validated
	o := alerts.Options{Store: st, Bucket: cfg.NATS.AlertsBucket, Replicas: cfg.NATS.Replicas, LowBalance: low,
		UnusedAfter: cfg.Alerts.UnusedAfter.D(), Log: inst.log}
	for _, w := range cfg.Alerts.Webhooks {
		o.Webhooks = append(o.Webhooks, alerts.Webhook{URL: w.URL, Secret: w.Secret})
	}
	a, err := alerts.Open(ctx, o)
	if err != nil {
		return err
	}
	inst.alerts = a
	registerAlerts(reg, a.Stats())
	return nil
}

// runAlerts delivers alerts and looks for crossings until keygate stops.
func (inst *Instance) runAlerts() {
	if inst.alerts == nil {
		return
	}
	ctx, cancel := context.WithCancel(inst.bg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		inst.alerts.Run(ctx)
	}()
	inst.stopAlerts = func(wait context.Context) {
		cancel()
		select {
		case <-done:
		case <-wait.Done():
		}
	}
}

func registerAlerts(reg prometheus.Registerer, s *alerts.Stats) {
	for _, kind := range append(slices.Clone(alerts.Kinds), "other") {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_alerts_published_total",
			Help: "Alerts this keygate published on NATS, by kind (other: of a kind it does not know).", ConstLabels: prometheus.Labels{"kind": kind}},
			func() float64 { return float64(s.Published(kind)) }))
	}
	reg.MustRegister(
		total("keygate_alert_webhook_deliveries_total", "Alerts POSTed to a webhook that answered 2xx.", &s.Delivered),
		total("keygate_alert_webhook_retries_total", "POSTs of alerts to webhooks that failed and are tried again.", &s.Retried),
		total("keygate_alert_webhook_failures_total", "Alerts a webhook never took: every attempt failed, or it answered a status no retry changes.", &s.Failed),
		total("keygate_alert_webhook_drops_total", "Webhook deliveries dropped, the oldest first, while the queue was full.", &s.Dropped),
		total("keygate_alert_changes_lost_total", "Account changes not examined for low balance because too many waited (the account's next change is).", &s.Lost),
		total("keygate_alert_errors_total", "Operations on the alerts bucket that failed.", &s.Errors),
	)
}
