package deliver

import "time"

// DefaultLifetime is how long a message is retried before it bounces.
const DefaultLifetime = 5 * 24 * time.Hour

// Schedule is the delay after each failed attempt: after attempt n the
// next try waits Schedule[n-1]; beyond the list, the last entry repeats.
type Schedule []time.Duration

// DefaultSchedule retries after 1m, 5m, 15m, 30m, 1h, 2h, then every 4
// hours: offsets from the first try of 1m, 6m, 21m, 51m, 1h51m, 3h51m,
// 7h51m, 11h51m, ...
var DefaultSchedule = Schedule{
	time.Minute,
	5 * time.Minute,
	15 * time.Minute,
	30 * time.Minute,
	time.Hour,
	2 * time.Hour,
	4 * time.Hour,
}

// Next returns when to try again after attempt (1-based: the number
// of attempts made so far) for a message first tried at firstTried. The
// time is computed from firstTried alone, so it does not drift with
// worker latency. When the next try would fall at or after firstTried +
// lifetime (DefaultLifetime when lifetime <= 0), it returns that deadline
// and expired = true: give up and bounce.
func (s Schedule) Next(attempt int, firstTried time.Time, lifetime time.Duration) (time.Time, bool) {
	if len(s) == 0 {
		s = DefaultSchedule
	}
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	if attempt < 1 {
		attempt = 1
	}
	deadline := firstTried.Add(lifetime)
	var off time.Duration
	for i := 0; i < attempt; i++ {
		d := s[min(i, len(s)-1)]
		off += d
		if off >= lifetime {
			return deadline, true
		}
	}
	return firstTried.Add(off), false
}
