package leaks

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stats count what the endpoint did.
type stats struct {
	truePositives, falsePositives atomic.Uint64
	revoked                       atomic.Uint64
	unsigned, unknownKey, badSig  atomic.Uint64
	errors                        atomic.Uint64
}

func (s *stats) label(l string) {
	if l == TruePositive {
		s.truePositives.Add(1)
	} else {
		s.falsePositives.Add(1)
	}
}

func (s *stats) failure(reason string) {
	switch reason {
	case "unsigned":
		s.unsigned.Add(1)
	case "unknown_key":
		s.unknownKey.Add(1)
	default:
		s.badSig.Add(1)
	}
}

// Register registers the endpoint's metrics.
func (h *Handler) Register(reg prometheus.Registerer) {
	counter := func(name, help string, labels prometheus.Labels, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v()) })
	}
	const (
		alertsHelp   = "Strings GitHub reported as found in public, in signed reports, by answer: true_positive (a keygate key) or false_positive."
		failuresHelp = "GitHub secret scanning reports refused 401, by reason: unsigned, unknown_key (not among GitHub's keys, read again at most once a minute), bad_signature."
		fetchesHelp  = "Reads of GitHub's secret scanning keys, by result."
	)
	s := &h.stats
	fetches := func(failed bool) func() uint64 {
		return func() uint64 {
			n, bad := h.o.Keys.Fetches()
			if failed {
				return bad
			}
			return n - bad
		}
	}
	reg.MustRegister(
		counter("keygate_leaks_alerts_total", alertsHelp, prometheus.Labels{"label": TruePositive}, s.truePositives.Load),
		counter("keygate_leaks_alerts_total", alertsHelp, prometheus.Labels{"label": FalsePositive}, s.falsePositives.Load),
		counter("keygate_leaks_keys_revoked_total", "Keys revoked because GitHub found them in public.", nil, s.revoked.Load),
		counter("keygate_leaks_verification_failures_total", failuresHelp, prometheus.Labels{"reason": "unsigned"}, s.unsigned.Load),
		counter("keygate_leaks_verification_failures_total", failuresHelp, prometheus.Labels{"reason": "unknown_key"}, s.unknownKey.Load),
		counter("keygate_leaks_verification_failures_total", failuresHelp, prometheus.Labels{"reason": "bad_signature"}, s.badSig.Load),
		counter("keygate_leaks_errors_total", "Reports answered 503 because the key store failed, and keys found in public whose record could not be revoked (see the log).", nil, s.errors.Load),
		counter("keygate_leaks_key_fetches_total", fetchesHelp, prometheus.Labels{"result": "ok"}, fetches(false)),
		counter("keygate_leaks_key_fetches_total", fetchesHelp, prometheus.Labels{"result": "error"}, fetches(true)),
	)
}
