package submission

import "github.com/prometheus/client_golang/prometheus"

var (
	sessionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "submission", Name: "sessions_total",
		Help: "Submission connections accepted, by listener: starttls (587) or implicit_tls (465).",
	}, []string{"listener"})
	sessionsActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "mairust", Subsystem: "submission", Name: "sessions_active",
		Help: "Submission connections open now.",
	})
	connectionsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "submission", Name: "connections_refused_total",
		Help: "Submission connections refused before the greeting, by reason.",
	}, []string{"reason"})
	authTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "submission", Name: "auth_total",
		Help: "AUTH attempts by mechanism and result: ok, failed, limited, error.",
	}, []string{"mechanism", "result"})
	commandsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "submission", Name: "commands_refused_total",
		Help: "MAIL, RCPT and DATA refused before the message reached the submitter, by reason.",
	}, []string{"reason"})
	submissionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "submission", Name: "submissions_total",
		Help: "Messages handed to the submitter, by result: accepted, rejected (5xx), deferred (4xx), failed (451 on an error).",
	}, []string{"result"})
)

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{sessionsTotal, sessionsActive, connectionsRefused, authTotal, commandsRefused, submissionsTotal}
}
