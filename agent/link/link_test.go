package link_test

import (
	"crypto/ed25519"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/mairust/mairust/agent/link"
	"github.com/mairust/mairust/controlplane/agents/agentstest"
	"github.com/mairust/mairust/controlplane/cptest"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
)

// counting counts the RenewCredential calls it carries.
type counting struct {
	renewals atomic.Int32
}

func (c *counting) Do(r *http.Request) (*http.Response, error) {
	if r.URL.Path == agentsv1connect.AgentsServiceRenewCredentialProcedure {
		c.renewals.Add(1)
	}
	return http.DefaultClient.Do(r)
}

func heartbeat(t *testing.T, s *link.Source) error {
	t.Helper()
	_, err := s.Client().Heartbeat(t.Context(), connect.NewRequest(&agentsv1.HeartbeatRequest{Version: "1.0"}))
	return err
}

func TestEnrollHeartbeatRenew(t *testing.T) {
	e := agentstest.Start(t, time.Hour)
	tn := e.Tenant(t, "a.example")
	hc := &counting{}
	l := link.Link{DataDir: t.TempDir(), HTTPClient: hc}

	id, err := l.Enroll(t.Context(), e.URL, e.EnrollmentToken(t, tn), "mx1.example", "1.0")
	if err != nil {
		t.Fatal(err)
	}
	if id.TenantID != tn.ID || id.AgentID == "" || id.Credential.Token == "" || id.ControlPlaneURL != e.URL {
		t.Fatalf("identity %+v", id)
	}
	for _, f := range []string{link.KeyFile, link.IdentityFile} {
		fi, err := os.Stat(filepath.Join(l.DataDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want mode 0600", f, fi.Mode(), err)
		}
	}
	if kept, err := l.Identity(); err != nil || kept != id {
		t.Fatalf("kept identity %+v, %v; want %+v", kept, err, id)
	}
	key, err := l.Key()
	if err != nil {
		t.Fatal(err)
	}
	var bound int
	if err := e.Owner.QueryRow(t.Context(), `SELECT count(*) FROM agents WHERE id = $1 AND public_key = $2`, id.AgentID,
		[]byte(key.Public().(ed25519.PublicKey))).Scan(&bound); err != nil || bound != 1 {
		t.Fatalf("the agent's key is not the one bound: %d, %v", bound, err)
	}
	if _, err := l.Enroll(t.Context(), e.URL, e.EnrollmentToken(t, tn), "mx1.example", "1.0"); err == nil || !strings.Contains(err.Error(), "enrolled already") {
		t.Fatalf("enrolling twice: %v", err)
	}

	// The enrollment's credential serves; a heartbeat's replaces it.
	id.Credential.ExpiresAt = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := l.Source(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := heartbeat(t, s); err != nil {
		t.Fatal(err)
	}
	if got := s.Credential().ExpiresAt; got.Equal(id.Credential.ExpiresAt) {
		t.Fatal("the heartbeat's credential was not taken")
	}
	if n := hc.renewals.Load(); n != 0 {
		t.Fatalf("%d renewals with a valid credential", n)
	}

	// Without a credential, or with a refused one, it renews by its key.
	for _, cred := range []link.Credential{{}, {Token: "refused", ExpiresAt: id.Credential.ExpiresAt}} {
		hc.renewals.Store(0)
		s, err := l.Source(link.Identity{AgentID: id.AgentID, TenantID: id.TenantID, ControlPlaneURL: id.ControlPlaneURL, Credential: cred})
		if err != nil {
			t.Fatal(err)
		}
		err = heartbeat(t, s)
		if cred.Token != "" {
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("heartbeat with a bad credential: %v", err)
			}
			err = heartbeat(t, s)
		}
		if err != nil || hc.renewals.Load() != 1 {
			t.Fatalf("credential %q: heartbeat %v after %d renewals, want 1", cred.Token, err, hc.renewals.Load())
		}
	}

	// Its config stream carries the credential too.
	stream, err := s.Client().WatchConfig(t.Context(), connect.NewRequest(&agentsv1.WatchConfigRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() || stream.Msg().GetSnapshot() == nil {
		t.Fatalf("config stream: %v, %v", stream.Msg(), stream.Err())
	}

	// A revoked agent's renewal is refused.
	if _, err := e.Client.RevokeAgent(t.Context(), cptest.Auth(&agentsv1.RevokeAgentRequest{TenantId: tn.ID, AgentId: id.AgentID}, tn.Session)); err != nil {
		t.Fatal(err)
	}
	id.Credential = link.Credential{}
	if s, err = l.Source(id); err != nil {
		t.Fatal(err)
	}
	if err := heartbeat(t, s); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a revoked agent's heartbeat: %v", err)
	}
}

// A key file that is not a key is reported, not replaced.
func TestBadKeyFile(t *testing.T) {
	l := link.Link{DataDir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(l.DataDir, link.KeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Key(); err == nil || !strings.Contains(err.Error(), "not a PEM private key") {
		t.Fatalf("reading a bad key: %v", err)
	}
}
