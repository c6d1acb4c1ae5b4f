package serve

import (
	"github.com/keygate/keygate/internal/funds"
	"github.com/keygate/keygate/internal/settle"

	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/fleetclock"
	"github.com/keygate/keygate/internal/presence"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/store"
)

// metrics are the serve-level metrics: NATS connection and events.
type metrics struct {
	connected  prometheus.Gauge
	reconnects prometheus.Counter
	events     *prometheus.CounterVec
	lag        prometheus.Histogram
	catchUp    prometheus.Gauge
	// grpcErrors counts calls answered with a gRPC error instead of a
	// decision: requests that do not decode, unknown methods.
	grpcErrors *prometheus.CounterVec
	leases     prometheus.Histogram
}

// leaseSeconds observes a rate-limit lease's latency.
func (m *metrics) leaseSeconds(d time.Duration) { m.leases.Observe(d.Seconds()) }

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_nats_connected", Help: "1 while connected to NATS.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_nats_reconnects_total", Help: "NATS reconnections.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_events_applied_total", Help: "Store changes applied to the cache, by kind.",
		}, []string{"kind"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "keygate_event_lag_seconds", Help: "Time from a store write to its arrival here.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30},
		}),
		catchUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keygate_catchup_duration_seconds", Help: "How long the last catch-up after a NATS reconnect took.",
		}),
		grpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_grpc_errors_total", Help: "gRPC calls answered with an error instead of a decision, by reason.",
		}, []string{"reason"}),
		leases: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "keygate_ratelimit_lease_seconds", Help: "Time to write a rate-limit lease, conflicts included.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}),
	}
	m.connected.Set(1)
	for _, r := range []string{reasonUndecodable, reasonUnknownMethod} {
		m.grpcErrors.WithLabelValues(r)
	}
	reg.MustRegister(m.connected, m.reconnects, m.events, m.lag, m.catchUp, m.grpcErrors, m.leases)
	return m
}

// Reasons of keygate_grpc_errors_total.
const (
	reasonUndecodable   = "undecodable"
	reasonUnknownMethod = "unknown_method"
)

func (m *metrics) grpcError(reason string) { m.grpcErrors.WithLabelValues(reason).Inc() }

func (m *metrics) natsState(connected bool) {
	if connected {
		m.connected.Set(1)
		m.reconnects.Inc()
		return
	}
	m.connected.Set(0)
}

func (m *metrics) event(kind string) { m.events.WithLabelValues(kind).Inc() }

func (m *metrics) seen(written time.Time) { m.lag.Observe(time.Since(written).Seconds()) }

// registerEntries exposes how many entries a cache table holds.
func registerEntries(reg prometheus.Registerer, table string, length func() (int64, int64)) {
	gauge := func(kind string, pick func(p, n int64) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_cache_entries", Help: "Entries held in the cache, by table and kind.",
			ConstLabels: prometheus.Labels{"table": table, "kind": kind},
		}, func() float64 { return float64(pick(length())) })
	}
	reg.MustRegister(
		gauge("positive", func(p, _ int64) int64 { return p }),
		gauge("negative", func(_, n int64) int64 { return n }),
	)
}

// registerCache exposes a cache table's counters.
func registerCache(reg prometheus.Registerer, table string, s *cache.Stats) {
	counter := func(name, help string, v func() uint64, labels prometheus.Labels) prometheus.Collector {
		labels["table"] = table
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v()) })
	}
	reg.MustRegister(
		counter("keygate_cache_requests_total", "Cache lookups by result.", s.Hits.Load, prometheus.Labels{"result": "hit"}),
		counter("keygate_cache_requests_total", "Cache lookups by result.", s.NegativeHits.Load, prometheus.Labels{"result": "negative_hit"}),
		counter("keygate_cache_requests_total", "Cache lookups by result.", s.Misses.Load, prometheus.Labels{"result": "miss"}),
		counter("keygate_store_lookups_total", "Key store reads on cache misses.", s.Loads.Load, prometheus.Labels{}),
		counter("keygate_store_errors_total", "Key store reads that failed.", s.LoadErrors.Load, prometheus.Labels{}),
		counter("keygate_store_lookups_spared_total", "Cache misses answered as missing by the key filter, without a store read.", s.Filtered.Load, prometheus.Labels{}),
	)
}

// registerFleet exposes the per-key state's traffic to NATS (writes,
// refused ones included, and reads of the limits and usage buckets), what
// the limiter did, the clock's offset and the keygates counted.
func registerFleet(reg prometheus.Registerer, limits *ratelimit.KVStore, st *store.Store, rl *ratelimit.Stats,
	clock *fleetclock.Clock, peers *presence.Presence) {
	counter := func(name, help, bucket string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"bucket": bucket}},
			func() float64 { return float64(v()) })
	}
	reg.MustRegister(
		counter("keygate_fleet_writes_total", "Writes of per-key state to NATS KV, by bucket.", "limits", func() uint64 { w, _ := limits.Stats(); return w }),
		counter("keygate_fleet_writes_total", "Writes of per-key state to NATS KV, by bucket.", "usage", func() uint64 { w, _ := st.UsageStats(); return w }),
		counter("keygate_fleet_reads_total", "Reads of per-key state from NATS KV, by bucket.", "limits", func() uint64 { _, r := limits.Stats(); return r }),
		counter("keygate_fleet_reads_total", "Reads of per-key state from NATS KV, by bucket.", "usage", func() uint64 { _, r := st.UsageStats(); return r }),
		total("keygate_ratelimit_leases_total", "Rate-limit leases written.", &rl.Leases),
		total("keygate_ratelimit_lease_timeouts_total", "Leases a check gave up waiting for (the check was denied 503).", &rl.Timeouts),
		total("keygate_ratelimit_lease_failures_total", "Leases that failed for another reason.", &rl.Failures),
		total("keygate_ratelimit_outage_units_total", "Units allowed under the outage rule, beyond what was leased.", &rl.OutageUnits),
		total("keygate_ratelimit_handed_back_units_total", "Leased units handed back to their budgets unused.", &rl.HandedBack),
		total("keygate_ratelimit_settlements_total", "Takes settled with their real use.", &rl.Settled),
		total("keygate_ratelimit_charged_units_total", "Units charged to budgets after the fact (outage rule, settlements beyond a take).", &rl.Charged),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_clock_offset_seconds",
			Help: "What is added to this keygate's clock to read the NATS server's, which rate-limit windows follow."},
			func() float64 { return clock.Offset().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_fleet_keygates",
			Help: "Keygates sharing the rate-limit budgets, this one included, as last heard."},
			func() float64 { return float64(peers.Count()) }),
	)
}

// total is a counter that reads v.
func total(name, help string, v *atomic.Uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
}

// registerMoney registers the counters of holds and settlements.
func registerMoney(reg prometheus.Registerer, f *funds.Stats, s *settle.Stats) {
	reg.MustRegister(
		total("keygate_funds_leases_total", "Writes of this keygate's hold of an account's funds.", &f.Leases),
		total("keygate_funds_debits_total", "Settlements debited from balances.", &f.Debits),
		total("keygate_funds_outage_nanos_total", "Nanos of minor units held under the outage rule, beyond what was leased.", &f.OutageNanos),
		total("keygate_funds_handed_back_nanos_total", "Nanos of minor units of leases handed back unused.", &f.HandedBack),
		total("keygate_reservations_total", "Metered requests reserved.", &s.Reservations),
		total("keygate_settlements_total", "Settlements written, of every status.", &s.Settled),
		total("keygate_settlements_expired_total", "Reservations settled at their estimate when their TTL passed.", &s.Expired),
		total("keygate_settlements_forwarded_total", "Settlements sent to the keygate that holds them.", &s.Forwarded),
		total("keygate_settlements_inherited_total", "Settlements of reservations whose keygate was gone.", &s.Inherited),
		total("keygate_settlement_failures_total", "Settlements that could not be written (retried).", &s.Failures),
	)
}
