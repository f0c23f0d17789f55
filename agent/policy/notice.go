package policy

import "time"

// Notice tells the monitor service of a warning or a suspension.
type Notice struct {
	Kind     Action    `json:"kind"` // Warn or Suspend
	Account  string    `json:"account"`
	TenantID string    `json:"tenant_id"`
	Score    float64   `json:"score"`
	Factors  Factors   `json:"factors"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Notice returns the notice of d, made for s, and whether there is one:
// only warnings and suspensions make one.
func (d Decision) Notice(s Submission) (Notice, bool) {
	if d.Action != Warn && d.Action != Suspend {
		return Notice{}, false
	}
	return Notice{Kind: d.Action, Account: normalize(s.Account), TenantID: s.TenantID, Score: d.Score,
		Factors: d.Factors, Reason: d.Reason, At: d.At}, true
}
