// Package server is the control plane's HTTP server: the Connect services
// (Connect, gRPC and gRPC-Web on one listener, HTTP/1.1 and cleartext
// HTTP/2), gRPC health and reflection, authentication in middleware,
// request size limits, a timeout on unary calls only (streams live as long
// as their client), JSON logs and Prometheus metrics. The services
// themselves live in their own packages and are handed to New.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/internal/config"
)

// unaryTimeout bounds one unary call.
const unaryTimeout = 30 * time.Second

// Service is one Connect service: its handler's path prefix (from the
// generated New…Handler) and the procedures callable without a token.
type Service struct {
	Name    string // the fully qualified service name, for health and reflection
	Path    string
	Handler http.Handler
	Public  []string // full procedure paths, e.g. /mairust.accounts.v1.AccountsService/LogIn
}

// Options returns the handler options every service is built with.
func Options(cfg config.ControlPlane, reg prometheus.Registerer, log *slog.Logger) []connect.HandlerOption {
	m := newMetrics(reg)
	return []connect.HandlerOption{
		connect.WithReadMaxBytes(cfg.MaxRequestBytes),
		connect.WithInterceptors(&observer{m: m, log: log.With("component", "controlplane")}),
	}
}

// New returns the control plane's handler: the services behind
// authentication, gRPC health and reflection, /metrics and /health.
func New(services []Service, keys *auth.Keys, check auth.Checker, gather prometheus.Gatherer) http.Handler {
	public := map[string]bool{}
	names := []string{grpchealth.HealthV1ServiceName}
	api := http.NewServeMux()
	for _, s := range services {
		api.Handle(s.Path, s.Handler)
		names = append(names, s.Name)
		for _, p := range s.Public {
			public[p] = true
		}
	}
	health := grpchealth.NewStaticChecker(names...)
	p, h := grpchealth.NewHandler(health)
	api.Handle(p, h)
	reflector := grpcreflect.NewStaticReflector(names...)
	for _, mk := range []func(*grpcreflect.Reflector, ...connect.HandlerOption) (string, http.Handler){grpcreflect.NewHandlerV1, grpcreflect.NewHandlerV1Alpha} {
		p, h := mk(reflector)
		api.Handle(p, h)
		public[p+"ServerReflectionInfo"] = true
	}
	public["/grpc.health.v1.Health/Check"] = true
	public["/grpc.health.v1.Health/Watch"] = true

	mux := http.NewServeMux()
	mux.Handle("/", auth.Middleware(keys, public, check, api))
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	return mux
}

// HTTPServer returns the server for h: HTTP/1.1 and cleartext HTTP/2 (for
// gRPC), a bound on reading headers and none on writing (streams).
func HTTPServer(h http.Handler) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
}

type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "mairust", Subsystem: "controlplane", Name: "calls_total",
			Help: "Calls by procedure and Connect code (ok for success)."}, []string{"procedure", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "mairust", Subsystem: "controlplane", Name: "call_seconds",
			Help: "Duration of unary calls by procedure.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"procedure"}),
	}
	reg.MustRegister(m.calls, m.duration)
	return m
}

// observer logs and counts calls and bounds unary ones.
type observer struct {
	m   *metrics
	log *slog.Logger
}

func code(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

func (o *observer) done(ctx context.Context, procedure string, start time.Time, err error) {
	o.m.calls.WithLabelValues(procedure, code(err)).Inc()
	if err == nil {
		return
	}
	level := slog.LevelInfo // the caller's mistake
	if c := connect.CodeOf(err); c == connect.CodeInternal || c == connect.CodeUnknown || c == connect.CodeUnavailable || c == connect.CodeDataLoss {
		level = slog.LevelError
	}
	var p auth.Principal
	if pp, ok := auth.From(ctx); ok {
		p = pp
	}
	o.log.Log(ctx, level, "call failed", "procedure", procedure, "code", code(err), "error", err.Error(),
		"account_id", p.AccountID, "agent_id", p.AgentID, "duration_ms", time.Since(start).Milliseconds())
}

func (o *observer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(ctx, unaryTimeout)
		defer cancel()
		resp, err := next(ctx, req)
		if err != nil && errors.Is(err, context.DeadlineExceeded) && connect.CodeOf(err) == connect.CodeUnknown {
			err = connect.NewError(connect.CodeDeadlineExceeded, err)
		}
		o.m.duration.WithLabelValues(req.Spec().Procedure).Observe(time.Since(start).Seconds())
		o.done(ctx, req.Spec().Procedure, start, err)
		return resp, err
	}
}

func (o *observer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o *observer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		o.done(ctx, conn.Spec().Procedure, start, err)
		return err
	}
}
