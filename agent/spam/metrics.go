package spam

import "github.com/prometheus/client_golang/prometheus"

var (
	scansTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "spam", Name: "scans_total",
		Help: "Messages scanned, by the action of the verdict (no_action, greylist, add_header, rewrite_subject, soft_reject, reject).",
	}, []string{"action"})
	scanSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "mairust", Subsystem: "spam", Name: "scan_seconds",
		Help:    "Time to scan one message: the rules and, when configured, rspamd.",
		Buckets: prometheus.ExponentialBucketsRange(.0002, 10, 28), // 1.5 apart: fine enough for percentiles

	})
	errorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "spam", Name: "rspamd_errors_total",
		Help: "Failed rspamd scans, by reason (timeout, connect, status, reply).",
	}, []string{"reason"})
	unscannedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mairust", Subsystem: "spam", Name: "unscanned_total",
		Help: "Messages delivered without rspamd's verdict because rspamd failed (spam.on_error: accept).",
	})
)

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{scansTotal, scanSeconds, errorsTotal, unscannedTotal}
}
