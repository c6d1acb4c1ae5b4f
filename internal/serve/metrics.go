package serve

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/cache"
)

// metrics are the serve-level metrics: NATS connection and events.
type metrics struct {
	connected  prometheus.Gauge
	reconnects prometheus.Counter
	events     *prometheus.CounterVec
}

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
	}
	m.connected.Set(1)
	reg.MustRegister(m.connected, m.reconnects, m.events)
	return m
}

func (m *metrics) natsState(connected bool) {
	if connected {
		m.connected.Set(1)
		m.reconnects.Inc()
		return
	}
	m.connected.Set(0)
}

func (m *metrics) event(kind string) { m.events.WithLabelValues(kind).Inc() }

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
	)
}
