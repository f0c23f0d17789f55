package smtpd

import "github.com/prometheus/client_golang/prometheus"

var (
	sessionsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "smtp", Name: "sessions_total",
		Help: "SMTP connections accepted.",
	})
	sessionsActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "mairust", Subsystem: "smtp", Name: "sessions_active",
		Help: "SMTP connections open now.",
	})
	connectionsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "smtp", Name: "connections_refused_total",
		Help: "Connections refused before the greeting, by reason.",
	}, []string{"reason"})
	messagesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "smtp", Name: "messages_total",
		Help: "Messages (accepted) and refused commands (rejected), by reason.",
	}, []string{"result", "reason"})
	bytesReceived = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "smtp", Name: "received_bytes_total",
		Help: "Bytes of accepted messages.",
	})
	ackSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "mairust", Subsystem: "smtp", Name: "store_seconds",
		Help:    "Time from the end of DATA to the 250 reply: blob durable and metadata committed.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
)

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{sessionsTotal, sessionsActive, connectionsRefused, messagesTotal, bytesReceived, ackSeconds}
}

func rejected(reason string) { messagesTotal.WithLabelValues("rejected", reason).Inc() }
