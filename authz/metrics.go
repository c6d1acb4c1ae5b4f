package authz

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count decisions. A nil *Metrics counts nothing.
type Metrics struct {
	checks  map[string]prometheus.Counter
	latency prometheus.Histogram
}

// NewMetrics registers the decision metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_checks_total",
		Help: "Authorization checks by result code (ok or the deny error code).",
	}, []string{"code"})
	m := &Metrics{
		checks: map[string]prometheus.Counter{},
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "keygate_check_duration_seconds",
			Help:    "Time to decide one check, in keygate.",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1},
		}),
	}
	for _, c := range Codes {
		m.checks[c] = vec.WithLabelValues(c)
	}
	reg.MustRegister(vec, m.latency)
	return m
}

func (m *Metrics) observe(code string, d time.Duration) {
	if m == nil {
		return
	}
	if c, ok := m.checks[code]; ok {
		c.Inc()
	}
	m.latency.Observe(d.Seconds())
}
