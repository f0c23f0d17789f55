package main

import (
	"context"
	"strings"
	"testing"
)

// TestAdminOutboundRelease lifts a suspension from the command line and
// finds the transition logged.
func TestAdminOutboundRelease(t *testing.T) {
	cfg, _, pool := dbConfig(t, "outboundcli")
	if _, err := pool.Exec(context.Background(), `INSERT INTO outbound_accounts(account, state, suspended_at, reason, changed_by)
		VALUES ('alice@example.test', 'suspended', now(), 'score 0.86', 'policy')`); err != nil {
		t.Fatal(err)
	}
	if out, code := run(t, "admin", "outbound", "status", "--config", cfg, "alice@example.test"); code != 0 || !strings.Contains(out, "alice@example.test: suspended since") || !strings.Contains(out, "score 0.86") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	if out, code := run(t, "admin", "outbound", "release", "--config", cfg, "alice@example.test"); code == 0 || !strings.Contains(out, "--why is required") {
		t.Fatalf("release without --why: exit %d\n%s", code, out)
	}
	if out, code := run(t, "admin", "outbound", "release", "--config", cfg, "--why", "password reset", "alice@example.test"); code != 0 || !strings.Contains(out, "may send again") {
		t.Fatalf("release: exit %d\n%s", code, out)
	}
	if out, code := run(t, "admin", "outbound", "status", "--config", cfg, "alice@example.test"); code != 0 || !strings.Contains(out, "alice@example.test: allowed") {
		t.Fatalf("status after release: exit %d\n%s", code, out)
	}
	if out, code := run(t, "admin", "outbound", "release", "--config", cfg, "--why", "again", "alice@example.test"); code == 0 || !strings.Contains(out, "is not suspended") {
		t.Fatalf("second release: exit %d\n%s", code, out)
	}
	var kind, reason string
	if err := pool.QueryRow(context.Background(), `SELECT kind, reason FROM outbound_events WHERE account = 'alice@example.test' ORDER BY id DESC LIMIT 1`).Scan(&kind, &reason); err != nil || kind != "release" || reason != "password reset" {
		t.Fatalf("logged transition %q %q, %v", kind, reason, err)
	}
}
