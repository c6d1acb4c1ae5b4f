package observe

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Register exposes the counters on reg.
func (s *Server) Register(reg prometheus.Registerer) {
	const settledHelp = "Metered requests settled from their observed responses, by outcome: usage, estimate (no usage read), failed (no charge)."
	settled := func(outcome string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_observe_settlements_total", Help: settledHelp,
			ConstLabels: prometheus.Labels{"outcome": outcome}}, func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_observe_streams_total",
			Help: "External processing streams Envoy opened: one per request through the ext_proc filter."},
			func() float64 { return float64(s.stats.Streams.Load()) }),
		settled("usage", &s.stats.Usage),
		settled("estimate", &s.stats.Estimate),
		settled("failed", &s.stats.Failed),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_observe_errors_total",
			Help: "Settlements from responses that failed or timed out (the settler retries those it could start), streams that broke, and reservation headers that could not be read."},
			func() float64 { return float64(s.stats.Errors.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_observe_buffered_bytes",
			Help: "Bytes of JSON response bodies kept to read their usage, across all streams (at most 64 MiB; a body that finds no room settles at its estimate)."},
			func() float64 { return float64(s.Buffered()) }),
	)
}
