package policy

import "testing"

func TestNotice(t *testing.T) {
	s := DefaultSettings()
	s.WarnThreshold = 0.2
	w := newWorld(t, s)
	sub := Submission{Account: "Bob@Example.test", TenantID: "t1"}
	if _, ok := w.send("bob@example.test", 1, 0).Notice(sub); ok {
		t.Fatal("notice of an allowed message")
	}
	warn := w.send("bob@example.test", 1, 9) // 0.4·0.6 = 0.24
	n, ok := warn.Notice(sub)
	if !ok || n.Kind != Warn || n.Account != "bob@example.test" || n.TenantID != "t1" || n.Score != warn.Score ||
		n.Factors != warn.Factors || n.Reason != warn.Reason || !n.At.Equal(w.clk.now()) {
		t.Fatalf("warning: %+v from %+v", n, warn)
	}
	if n, ok := suspend(t, w, "eve@example.test").Notice(sub); !ok || n.Kind != Suspend {
		t.Fatalf("suspension: %+v", n)
	}
	if _, ok := w.send("eve@example.test", 1, 0).Notice(sub); ok {
		t.Fatal("notice of a refusal")
	}
}
