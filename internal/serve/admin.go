package serve

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keygate/keygate/internal/leaks"
)

// adminHandler serves /metrics, /healthz (the process can go on by itself:
// see Live) and /readyz (checks are answered from a reachable, current
// store).
func (inst *Instance) adminHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := inst.Live(); err != nil {
			http.Error(w, "not live: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if inst.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	if inst.settler != nil {
		mux.Handle("POST /v1/settle", inst.settler.Handler(inst.cfg.SettleToken))
	}
	if inst.leaks != nil {
		mux.Handle("POST "+leaks.Path, inst.leaks)
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !inst.Ready() {
			http.Error(w, "not ready: key store unreachable or catching up", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
