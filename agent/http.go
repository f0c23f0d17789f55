package agent

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes serves the management endpoints: metrics, health, status, reload
// and the Go profiler (http.listen is loopback by default).
func (a *Agent) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", a.health)
	mux.HandleFunc("GET /status", a.status)
	mux.HandleFunc("POST /reload", a.reload)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	return mux
}

// health answers 200 when the database answers, 503 otherwise.
func (a *Agent) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := a.pool.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "database": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *Agent) status(w http.ResponseWriter, r *http.Request) {
	cfg := a.cfg.Load()
	st := a.pool.Stat()
	writeJSON(w, http.StatusOK, map[string]any{
		"uptime_seconds": int(time.Since(a.startedAt).Seconds()),
		"smtp_listen":    cfg.SMTP.Listen,
		"storage":        cfg.Storage.Backend,
		"log_level":      cfg.Log.Level,
		"db_pool":        map[string]int32{"total": st.TotalConns(), "idle": st.IdleConns(), "in_use": st.AcquiredConns()},
		"plugins":        a.hooks.Health(),
	})
}

// reload is for `mairust reload`; only loopback clients may call it.
func (a *Agent) reload(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "reload is accepted from loopback only"})
		return
	}
	ch, err := a.Reload()
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
