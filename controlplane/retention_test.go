package controlplane

import (
	"crypto/rand"
	"log/slog"
	"testing"

	"github.com/mairust/mairust/controlplane/cptest"
)

// TestPurge: reports and notices older than their retention go, in every
// tenant, and newer ones stay.
func TestPurge(t *testing.T) {
	e := cptest.New(t, "cpretention")
	ctx := t.Context()
	for _, tenant := range []string{"a", "b"} {
		var tid, aid string
		if err := e.Owner.QueryRow(ctx, `INSERT INTO tenants (name) VALUES ($1) RETURNING id`, tenant).Scan(&tid); err != nil {
			t.Fatal(err)
		}
		if err := e.Owner.QueryRow(ctx, `INSERT INTO agents (tenant_id, public_key, hostname, version) VALUES ($1, $2, 'mx', 'v') RETURNING id`,
			tid, key()).Scan(&aid); err != nil {
			t.Fatal(err)
		}
		for seq, age := range []string{"31 days", "29 days"} {
			if _, err := e.Owner.Exec(ctx, `INSERT INTO agent_reports (tenant_id, agent_id, sequence, at, received_at) VALUES ($1, $2, $3, now(), now() - $4::interval)`,
				tid, aid, seq, age); err != nil {
				t.Fatal(err)
			}
		}
		for _, age := range []string{"91 days", "89 days"} {
			if _, err := e.Owner.Exec(ctx, `INSERT INTO notices (tenant_id, agent_id, account, kind, score, at, received_at) VALUES ($1, $2, 'u@x.test', 'warn', 0.7, now() - $3::interval, now() - $3::interval)`,
				tid, aid, age); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, age := range []string{"31 days", "29 days"} {
		if _, err := e.Owner.Exec(ctx, `INSERT INTO stripe_events (id, type, received_at) VALUES ('evt_' || $1, 'invoice.paid', now() - $2::interval)`, age, age); err != nil {
			t.Fatal(err)
		}
	}
	purge(ctx, e.Store, e.Config, slog.New(slog.DiscardHandler))
	for _, c := range []struct {
		table, newest string
		want          int
	}{{"agent_reports", "30 days", 2}, {"notices", "90 days", 2}, {"stripe_events", "30 days", 1}} {
		var left, newer int
		if err := e.Owner.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE received_at > now() - $1::interval) FROM `+c.table, c.newest).Scan(&left, &newer); err != nil {
			t.Fatal(err)
		}
		if left != c.want || newer != c.want {
			t.Errorf("%s: %d rows left, %d of them newer than %s; want the %d newer ones only", c.table, left, newer, c.newest, c.want)
		}
	}
}

// key is a random 32-byte public key.
func key() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}
