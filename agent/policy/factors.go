package policy

import "math"

// Factors are the three terms of the score, each in [0,1].
type Factors struct {
	Rate    float64 `json:"rate"`
	Content float64 `json:"content"`
	History float64 `json:"history"`
}

// Counts are the figures the rate and history factors were computed from;
// message counts include the message evaluated.
type Counts struct {
	Hour              int     `json:"hour"`                // messages in the last hour
	Day               int     `json:"day"`                 // messages in the last 24 hours
	Window            int     `json:"window,omitempty"`    // messages in a profile's window
	NewRecipientsHour int     `json:"new_recipients_hour"` // distinct new recipients in the last hour
	Baseline          float64 `json:"baseline"`            // median active hour, floored
	Sent7d            int     `json:"sent_7d"`
	Bounces7d         int     `json:"bounces_7d"`
	Complaints30d     int     `json:"complaints_30d"`
	Warnings7d        int     `json:"warnings_7d"`
	Suspensions30d    int     `json:"suspensions_30d"`
}

func clamp01(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}

// ContentFactor is clamp(score/reject, 0, 1), and 0 when reject ≤ 0 (not
// scanned).
func ContentFactor(score, reject float64) float64 {
	if !(reject > 0) {
		return 0
	}
	return clamp01(score / reject)
}

// RateFactor is max(usage, spike) for an account under the global limits
// (see the package documentation).
func RateFactor(s Settings, c Counts) float64 {
	usage := math.Max(float64(c.Hour)/float64(s.MaxPerHour),
		math.Max(float64(c.Day)/float64(s.MaxPerDay), float64(c.NewRecipientsHour)/float64(s.MaxNewRecipientsPerHour)))
	base := math.Max(c.Baseline, s.BaselineFloor)
	spike := (float64(c.Hour)/base - 1) / (s.SpikeRatio - 1)
	return clamp01(math.Max(usage, clamp01(spike)))
}

// HistoryFactor is max(bounces, complaints, sanctions) (see the package
// documentation).
func HistoryFactor(c Counts) float64 {
	bounces := clamp01(float64(c.Bounces7d) / math.Max(float64(c.Sent7d), 20) / 0.10)
	complaints := clamp01(float64(c.Complaints30d) / 3)
	sanctions := clamp01(0.5*float64(c.Warnings7d) + float64(c.Suspensions30d))
	return math.Max(bounces, math.Max(complaints, sanctions))
}

// Score is the weighted sum of the factors.
func (w Weights) Score(f Factors) float64 {
	return clamp01(w.Rate*f.Rate + w.Content*f.Content + w.History*f.History)
}
