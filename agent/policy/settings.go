// Package policy is the Outbound Policy Engine: it scores every submitted
// message before it is queued and decides whether it goes out, whether the
// account is throttled, or whether the account is suspended from sending.
//
// # The score
//
//	score = w_rate·rate + w_content·content + w_history·history
//
// with the weights 0.4, 0.4 and 0.2 by default (they must sum to 1), and
// each factor in [0,1]. Every count below includes the message being
// evaluated; only messages that were let through (allowed or warned) count.
//
// rate — how close the account is to its limits and how far above its own
// habits it sends:
//
//	usage    = max(h/max_per_hour, d/max_per_day, n/max_new_recipients_per_hour)
//	baseline = max(median of the hourly message counts over the hours of the
//	               last baseline_days days (before the current clock hour) in
//	               which the account sent at least one message, baseline_floor)
//	spike    = clamp((h/baseline − 1) / (spike_ratio − 1), 0, 1)
//	rate     = max(usage, spike)   (capped at 1)
//
// where h is the messages in the last hour (sliding), d in the last 24
// hours, n the distinct new recipients in the last hour (a recipient is new
// when the account has not sent to it within the record retention). With
// the defaults (baseline_floor 10, spike_ratio 10) an account that usually
// sends 10 messages an hour reaches spike 1 at 100 in an hour, even though
// its hourly limit is 200.
//
// content — the outgoing message's spam score relative to the reject
// threshold of the scanner: clamp(spam_score/spam_reject, 0, 1); 0 when the
// message was not scanned (reject ≤ 0).
//
// history — the account's recent record:
//
//	bounces    = min(1, (bounces_7d / max(sent_7d, 20)) / 0.10)
//	complaints = min(1, complaints_30d / 3)
//	sanctions  = min(1, 0.5·warnings_7d + 1.0·suspensions_30d)
//	history    = max(bounces, complaints, sanctions)
//
// so a 10 % bounce ratio, three complaints, two warnings in a week or one
// suspension in a month each saturate it.
//
// # Decisions
//
// score < warn_threshold (0.5) allows; warn_threshold ≤ score <
// suspend_threshold (0.8) lets the message through with a warning and
// soft-limits the account for soft_limit_hours (24): its hourly cap falls to
// soft_limit_fraction (20 %) of the normal one; score ≥ suspend_threshold
// refuses the message and suspends the account. A message is also refused
// (temporarily, 450) when the account is at its hourly or daily limit or at
// its soft cap, and refused permanently (550, SuspendedText) while the
// account is suspended. Note that with the default weights no single factor
// reaches the warn threshold alone (0.4 < 0.5): a warning takes two signals,
// for instance a burst of mildly spammy mail.
//
// An admin lifts a suspension with Release; with auto_reenable_after_hours
// > 0 a suspended account returns to the soft-limited state by itself after
// that many hours.
//
// # Whitelist profiles
//
// An account listed in a profile is evaluated under the profile's max_rate
// ("5000 msgs/hour", "100 msgs/minute", "20000 msgs/day") instead of the
// hourly, daily, new-recipient and baseline terms: rate = count in the
// profile's window / its count, and the soft cap is soft_limit_fraction of
// it over the same window. A profile may set its own thresholds.
//
// # Records
//
// PostgreSQL holds the states and the records; the engine keeps in memory,
// for each account evaluated in the last 30 seconds, what its evaluations
// read, loaded in one round trip (the last 24 hours of per-message records,
// the hourly aggregates of the baseline and the week, the feedback and
// sanctions of the month, the recipients). An evaluation normally makes no
// round trip: allowed and refused messages are recorded by a background
// writer in batches, committed asynchronously (their counts made durable by
// the message's own commit), and Close writes what is left. A warning or a
// suspension (also reported through Decision.Notice), or a transition that
// time causes, is decided again with the state row locked and committed
// durably before Evaluate returns. A release made elsewhere counts at the
// next evaluation, other changes of the state within 3 seconds, and the
// records of other replicas sharing the database within 30 (see entry).
// PurgeWorker, scheduled hourly with PurgePeriodic, deletes what is past
// record_retention_days and stats_retention_days.
package policy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// SuspendedText is what a suspended account is told, after "550 " over SMTP
// and in the API's problem JSON.
const SuspendedText = "Sending from this account is temporarily suspended. Please contact your administrator."

// RateLimitedText is what an account over its hourly, daily or soft cap is
// told (with a temporary 450).
const RateLimitedText = "Sending rate limit exceeded for this account. Please try again later."

// Weights are the factors' weights in the score.
type Weights struct {
	Rate    float64 `yaml:"rate" reload:"live" doc:"Weight of the rate factor (0-1; the three weights sum to 1)."`
	Content float64 `yaml:"content" reload:"live" doc:"Weight of the content factor: the outgoing message's spam score (0-1)."`
	History float64 `yaml:"history" reload:"live" doc:"Weight of the history factor: recent bounces, complaints, warnings and suspensions (0-1)."`
}

// Profile is a whitelist profile for a legitimate bulk sender.
type Profile struct {
	ID          string   `yaml:"id"`
	Accounts    []string `yaml:"accounts"`
	MaxRate     string   `yaml:"max_rate"` // "N msgs/minute|hour|day"
	Description string   `yaml:"description"`
	// Optional thresholds replacing the global ones for these accounts.
	WarnThreshold    *float64 `yaml:"warn_threshold"`
	SuspendThreshold *float64 `yaml:"suspend_threshold"`
}

// Settings configure the engine: the outbound_policy section of
// mairust.yaml, and its top-level outbound_whitelist list. Keys in errors
// are named after the yaml tags.
type Settings struct {
	Weights                 Weights   `yaml:"weights"`
	WarnThreshold           float64   `yaml:"warn_threshold" reload:"live" doc:"Score from which a message is let through with a warning and the account is soft-limited."`
	SuspendThreshold        float64   `yaml:"suspend_threshold" reload:"live" doc:"Score from which the message is refused and the account suspended from sending."`
	MaxPerHour              int       `yaml:"max_per_hour" reload:"live" doc:"Messages an account may send in any hour; beyond it 450 (and the rate factor is 1)."`
	MaxPerDay               int       `yaml:"max_per_day" reload:"live" doc:"Messages an account may send in any 24 hours; beyond it 450."`
	MaxNewRecipientsPerHour int       `yaml:"max_new_recipients_per_hour" reload:"live" doc:"Distinct recipients the account never wrote to before that count as the rate factor's full usage in an hour."`
	BaselineDays            int       `yaml:"baseline_days" reload:"live" doc:"Days of the account's own sending that make its baseline (median hourly volume)."`
	BaselineFloor           float64   `yaml:"baseline_floor" reload:"live" doc:"Lowest baseline, in messages an hour, so that a quiet account may still send a few."`
	SpikeRatio              float64   `yaml:"spike_ratio" reload:"live" doc:"Hourly volume, as a multiple of the baseline, at which the spike term of the rate factor reaches 1."`
	SoftLimitFraction       float64   `yaml:"soft_limit_fraction" reload:"live" doc:"Share of the hourly cap a warned (soft-limited) account keeps."`
	SoftLimitHours          int       `yaml:"soft_limit_hours" reload:"live" doc:"How long a warning's soft limit lasts."`
	AutoReenableAfterHours  int       `yaml:"auto_reenable_after_hours" reload:"live" doc:"Hours after which a suspended account returns to the soft-limited state by itself; 0: never (an admin releases it)."`
	RecordRetentionDays     int       `yaml:"record_retention_days" reload:"live" doc:"Days the per-message outbound records are kept (shorter for GDPR)."`
	StatsRetentionDays      int       `yaml:"stats_retention_days" reload:"live" doc:"Days the hourly and daily outbound statistics are kept."`
	Whitelist               []Profile `yaml:"-"` // outbound_whitelist, a top-level list
}

// SettingError is a problem with one setting.
type SettingError struct {
	Key string // e.g. outbound_policy.max_per_hour, outbound_whitelist[0].max_rate
	Msg string
}

func (e *SettingError) Error() string { return e.Key + ": " + e.Msg }

// DefaultSettings are the documented defaults.
func DefaultSettings() Settings {
	return Settings{
		Weights:                 Weights{Rate: 0.4, Content: 0.4, History: 0.2},
		WarnThreshold:           0.5,
		SuspendThreshold:        0.8,
		MaxPerHour:              200,
		MaxPerDay:               1000,
		MaxNewRecipientsPerHour: 100,
		BaselineDays:            7,
		BaselineFloor:           10,
		SpikeRatio:              10,
		SoftLimitFraction:       0.2,
		SoftLimitHours:          24,
		AutoReenableAfterHours:  0,
		RecordRetentionDays:     30,
		StatsRetentionDays:      180,
	}
}

// Rate is a parsed max_rate: Count messages per Window.
type Rate struct {
	Count  int
	Window time.Duration
}

// ParseRate parses "N msgs/minute", "N msgs/hour" or "N msgs/day" strictly:
// one space, a positive decimal count without sign, and one of the units.
func ParseRate(s string) (Rate, error) {
	num, unit, ok := strings.Cut(s, " ")
	if !ok {
		return Rate{}, fmt.Errorf("%q is not of the form \"N msgs/hour\" (also msgs/minute, msgs/day)", s)
	}
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return Rate{}, fmt.Errorf("%q: count %q is not a positive whole number", s, num)
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return Rate{}, fmt.Errorf("%q: count %q is too large", s, num)
	}
	if n <= 0 {
		return Rate{}, fmt.Errorf("%q: count must be at least 1", s)
	}
	var w time.Duration
	switch unit {
	case "msgs/minute":
		w = time.Minute
	case "msgs/hour":
		w = time.Hour
	case "msgs/day":
		w = 24 * time.Hour
	default:
		return Rate{}, fmt.Errorf("%q: unit %q must be msgs/minute, msgs/hour or msgs/day", s, unit)
	}
	return Rate{Count: n, Window: w}, nil
}

func (r Rate) String() string {
	u := map[time.Duration]string{time.Minute: "minute", time.Hour: "hour", 24 * time.Hour: "day"}[r.Window]
	return fmt.Sprintf("%d msgs/%s", r.Count, u)
}

// Validate checks every setting and returns all the problems found, each
// naming its key.
func (s Settings) Validate() error {
	_, err := s.compile()
	return err
}

type profile struct {
	Profile
	rate          Rate
	warn, suspend float64
}

type compiled struct {
	Settings
	byAccount map[string]*profile
}

func (s Settings) compile() (*compiled, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &SettingError{Key: "outbound_policy." + key, Msg: fmt.Sprintf(format, args...)})
	}
	frac := func(key string, v float64) {
		if math.IsNaN(v) || v < 0 || v > 1 {
			bad(key, "must be between 0 and 1 (got %v)", v)
		}
	}
	frac("weights.rate", s.Weights.Rate)
	frac("weights.content", s.Weights.Content)
	frac("weights.history", s.Weights.History)
	if sum := s.Weights.Rate + s.Weights.Content + s.Weights.History; math.Abs(sum-1) > 1e-9 {
		bad("weights", "rate + content + history must be 1 (got %v)", sum)
	}
	thresholds := func(report func(key, format string, args ...any), warn, suspend float64) {
		if !(warn > 0 && warn <= 1) {
			report("warn_threshold", "must be above 0 and at most 1 (got %v)", warn)
		}
		if !(suspend > 0 && suspend <= 1) {
			report("suspend_threshold", "must be above 0 and at most 1 (got %v)", suspend)
		} else if suspend <= warn {
			report("suspend_threshold", "must be above warn_threshold %v (got %v)", warn, suspend)
		}
	}
	thresholds(bad, s.WarnThreshold, s.SuspendThreshold)
	positive := func(key string, v int) {
		if v <= 0 {
			bad(key, "must be at least 1 (got %d)", v)
		}
	}
	positive("max_per_hour", s.MaxPerHour)
	positive("max_per_day", s.MaxPerDay)
	positive("max_new_recipients_per_hour", s.MaxNewRecipientsPerHour)
	positive("baseline_days", s.BaselineDays)
	positive("soft_limit_hours", s.SoftLimitHours)
	positive("record_retention_days", s.RecordRetentionDays)
	positive("stats_retention_days", s.StatsRetentionDays)
	if !(s.BaselineFloor >= 1) {
		bad("baseline_floor", "must be at least 1 (got %v)", s.BaselineFloor)
	}
	if !(s.SpikeRatio > 1) {
		bad("spike_ratio", "must be above 1 (got %v)", s.SpikeRatio)
	}
	if !(s.SoftLimitFraction > 0 && s.SoftLimitFraction <= 1) {
		bad("soft_limit_fraction", "must be above 0 and at most 1 (got %v)", s.SoftLimitFraction)
	}
	if s.AutoReenableAfterHours < 0 {
		bad("auto_reenable_after_hours", "must be 0 (never) or more (got %d)", s.AutoReenableAfterHours)
	}
	c := &compiled{Settings: s, byAccount: map[string]*profile{}}
	seen := map[string]bool{}
	for i, p := range s.Whitelist {
		key := fmt.Sprintf("outbound_whitelist[%d]", i)
		badProfile := func(field, format string, args ...any) {
			name := fmt.Sprintf("profile %q: ", p.ID)
			if p.ID == "" {
				name = fmt.Sprintf("profile #%d: ", i+1)
			}
			errs = append(errs, &SettingError{Key: key + "." + field, Msg: name + fmt.Sprintf(format, args...)})
		}
		if p.ID == "" {
			badProfile("id", "is empty")
		} else if seen[p.ID] {
			badProfile("id", "is used by another profile")
		}
		seen[p.ID] = true
		pf := &profile{Profile: p, warn: s.WarnThreshold, suspend: s.SuspendThreshold}
		r, err := ParseRate(p.MaxRate)
		if err != nil {
			badProfile("max_rate", "%v", err)
		}
		pf.rate = r
		if p.WarnThreshold != nil {
			pf.warn = *p.WarnThreshold
		}
		if p.SuspendThreshold != nil {
			pf.suspend = *p.SuspendThreshold
		}
		if p.WarnThreshold != nil || p.SuspendThreshold != nil {
			thresholds(badProfile, pf.warn, pf.suspend)
		}
		if len(p.Accounts) == 0 {
			badProfile("accounts", "is empty")
		}
		for _, a := range p.Accounts {
			k := normalize(a)
			if k == "" || !strings.Contains(k, "@") {
				badProfile("accounts", "%q is not an address", a)
				continue
			}
			if other, dup := c.byAccount[k]; dup {
				badProfile("accounts", "%q is already in profile %q", a, other.ID)
				continue
			}
			c.byAccount[k] = pf
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func normalize(a string) string { return strings.ToLower(strings.TrimSpace(a)) }
