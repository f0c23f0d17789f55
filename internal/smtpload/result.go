package smtpload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// Result is the outcome of a run.
type Result struct {
	Addr     string
	Conns    int
	Size     int // bytes per message
	Messages int // messages requested

	OK       int       // messages accepted with 250 after the final dot
	Failed   int       // messages that failed at some stage
	Failures []Failure // the failed messages grouped by cause, most frequent first
	Bytes    int64     // bytes of the accepted messages
	Elapsed  time.Duration
	Latency  Latency // of the accepted messages, MAIL FROM to the final 250
	Stopped  string  // "" after all messages, else "duration" or "interrupted"
}

// Failure counts the messages that failed at one stage with one reply (or
// network error).
type Failure struct {
	Stage string `json:"stage"` // connect, MAIL, RCPT, DATA or "end of data"
	Code  int    `json:"code"`  // SMTP reply code; 0 for a network or TLS error
	Text  string `json:"text"`  // reply text or error
	Count int    `json:"count"`
}

func (f Failure) String() string {
	if f.Code == 0 {
		return fmt.Sprintf("%s (%s)", f.Text, f.Stage)
	}
	return fmt.Sprintf("%d %s (%s)", f.Code, f.Text, f.Stage)
}

// classify names the cause of err at stage, leaving out what differs from
// one connection to the next (such as local ports) so that alike errors
// group together.
func classify(stage string, err error) Failure {
	f := Failure{Stage: stage, Text: err.Error()}
	var te *textproto.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &te):
		f.Code, f.Text = te.Code, strings.ReplaceAll(te.Msg, "\n", " ")
	case errors.As(err, &oe) && oe.Err != nil:
		f.Text = oe.Op + ": " + oe.Err.Error()
	}
	return f
}

func sortFailures(fs []Failure) {
	slices.SortFunc(fs, func(a, b Failure) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.String(), b.String())
	})
}

// Latency summarizes acknowledgement latencies.
type Latency struct {
	P50, P95, P99, Max time.Duration
}

// summarize sorts lats and takes its percentiles.
func summarize(lats []time.Duration) Latency {
	slices.Sort(lats)
	return Latency{
		P50: percentile(lats, 50),
		P95: percentile(lats, 95),
		P99: percentile(lats, 99),
		Max: percentile(lats, 100),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted: the
// smallest value that at least p% of the values do not exceed. It is zero
// for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Rate returns the accepted messages per second.
func (r Result) Rate() float64 {
	return perSecond(float64(r.OK), r.Elapsed)
}

// MBps returns the accepted megabytes (10^6 bytes) per second.
func (r Result) MBps() float64 {
	return perSecond(float64(r.Bytes)/1e6, r.Elapsed)
}

func perSecond(v float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return v / d.Seconds()
}

// Print writes r for people to read.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, "smtp bench %s: %d messages of %d bytes over %d connections\n",
		r.Addr, r.Messages, r.Size, r.Conns)
	if r.Stopped != "" {
		fmt.Fprintf(w, "stopped early (%s) after %d messages\n", r.Stopped, r.OK+r.Failed)
	}
	fmt.Fprintf(w, "  ok       %d\n", r.OK)
	fmt.Fprintf(w, "  failed   %d\n", r.Failed)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "    %8d  %s\n", f.Count, f)
	}
	fmt.Fprintf(w, "  elapsed  %.3fs\n", r.Elapsed.Seconds())
	fmt.Fprintf(w, "  rate     %.1f msg/s, %.2f MB/s\n", r.Rate(), r.MBps())
	fmt.Fprintf(w, "  latency  p50 %s  p95 %s  p99 %s  max %s\n",
		ms(r.Latency.P50), ms(r.Latency.P95), ms(r.Latency.P99), ms(r.Latency.Max))
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2fms", millis(d))
}

func millis(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// MarshalJSON writes r as one object with elapsed time in seconds,
// latencies in milliseconds and the derived rates.
func (r Result) MarshalJSON() ([]byte, error) {
	failures := r.Failures
	if failures == nil {
		failures = []Failure{}
	}
	return json.Marshal(struct {
		Addr              string             `json:"addr"`
		Conns             int                `json:"conns"`
		Size              int                `json:"size"`
		Messages          int                `json:"messages"`
		OK                int                `json:"ok"`
		Failed            int                `json:"failed"`
		Failures          []Failure          `json:"failures"`
		Bytes             int64              `json:"bytes"`
		ElapsedSeconds    float64            `json:"elapsed_seconds"`
		MessagesPerSecond float64            `json:"messages_per_second"`
		MBPerSecond       float64            `json:"mb_per_second"`
		LatencyMS         map[string]float64 `json:"latency_ms"`
		Stopped           string             `json:"stopped,omitempty"`
	}{
		r.Addr, r.Conns, r.Size, r.Messages, r.OK, r.Failed, failures, r.Bytes,
		r.Elapsed.Seconds(), r.Rate(), r.MBps(),
		map[string]float64{
			"p50": millis(r.Latency.P50),
			"p95": millis(r.Latency.P95),
			"p99": millis(r.Latency.P99),
			"max": millis(r.Latency.Max),
		},
		r.Stopped,
	})
}
