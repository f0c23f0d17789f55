package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/dkim"
)

// TestAdminDKIM generates, rotates and lists a domain's DKIM keys through
// the command line against a real database, and reads the DNS records.
func TestAdminDKIM(t *testing.T) {
	cfg, dataDir, _ := dbConfig(t, "dkimcli")
	out, code := run(t, "admin", "dkim", "generate", "--config", cfg, "--selector", "s1", "example.test")
	if code != 0 || !strings.Contains(out, "s1._domainkey.example.test") || !strings.Contains(out, "v=DKIM1; k=rsa; p=") {
		t.Fatalf("generate: exit %d\n%s", code, out)
	}
	if out, code := run(t, "admin", "dkim", "generate", "--config", cfg, "example.test"); code == 0 {
		t.Fatalf("a second generate succeeded:\n%s", out)
	}
	out, code = run(t, "admin", "dkim", "rotate", "--config", cfg, "--selector", "s2", "--alg", "ed25519", "example.test")
	if code != 0 || !strings.Contains(out, "k=ed25519") {
		t.Fatalf("rotate: exit %d\n%s", code, out)
	}
	out, code = run(t, "admin", "dkim", "list", "--config", cfg)
	if code != 0 || !strings.Contains(out, "selector s1  rsa  retired") || !strings.Contains(out, "selector s2  ed25519  active") {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	if out, code := run(t, "admin", "dkim", "generate", "--config", cfg, "nowhere.test"); code == 0 {
		t.Fatalf("a key for a domain the agent does not host:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, dkim.SecretFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("sealing secret: %v, %v", fi, err)
	}
}

// dbConfig writes a mairust.yaml over a fresh database with alice for
// commands that work on the database.
func dbConfig(t *testing.T, prefix string) (cfg, dataDir string, pool *pgxpool.Pool) {
	t.Helper()
	pool = accountstest.NewDatabase(t, prefix, "alice@example.test")
	dataDir = t.TempDir()
	cfg = filepath.Join(dataDir, "mairust.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "data_dir: %s\ndatabase:\n  url: %s\n", dataDir, pool.Config().ConnString()), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, dataDir, pool
}
