package policy

import (
	"testing"
	"time"
)

// TestDayWindowSlides checks the 24-hour count, read from the hourly
// aggregates and the records of its first, partial hour, at minute
// precision: also for a profile counted per day.
func TestDayWindowSlides(t *testing.T) {
	s := DefaultSettings()
	s.Whitelist = []Profile{{ID: "daily", Accounts: []string{"p@example.test"}, MaxRate: "100 msgs/day"}}
	w := newWorld(t, s) // 10:00
	for _, step := range []time.Duration{20 * time.Minute, 20 * time.Minute, 30 * time.Minute, 0} {
		w.clk.add(step) // 10:20, 10:40, 11:10, 11:10
		w.send("a@example.test", 1, 0)
		w.send("p@example.test", 1, 0)
	}
	for _, c := range []struct {
		step time.Duration
		day  int
	}{
		{23*time.Hour + 5*time.Minute, 5}, // 10:15 the next day: the four, and this one
		{10 * time.Minute, 5},             // 10:25: three of them, 10:15, this one
		{10 * time.Minute, 6},             // 10:35: 10:40, 11:10 twice, 10:15, 10:25, this one
		{10 * time.Minute, 6},             // 10:45: 11:10 twice, and four today
		{30 * time.Minute, 5},             // 11:15: four today, this one
	} {
		w.clk.add(c.step)
		a, p := w.send("a@example.test", 1, 0), w.send("p@example.test", 1, 0)
		if a.Counts.Day != c.day || p.Counts.Window != c.day {
			t.Fatalf("%s: day %d, profile window %d; want %d", w.clk.now().Format("15:04"), a.Counts.Day, p.Counts.Window, c.day)
		}
	}
}
