package controlplane_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/emersion/go-smtp"

	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/internal/pgtest"
	"github.com/mairust/mairust/internal/proctest"
	accountsv1 "github.com/mairust/mairust/proto/mairust/accounts/v1"
	"github.com/mairust/mairust/proto/mairust/accounts/v1/accountsv1connect"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
	"github.com/mairust/mairust/proto/mairust/tenants/v1/tenantsv1connect"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.RemoveBinary()
	os.Exit(code)
}

// relay is the SMTP server the control plane's mail goes through.
type relay struct {
	mu    sync.Mutex
	bodies []string
}

func newRelay(t *testing.T) (*relay, string) {
	r := &relay{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &relaySession{r: r}, nil }))
	srv.Domain = "relay.test"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return r, l.Addr().String()
}

type relaySession struct{ r *relay }

func (s *relaySession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *relaySession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *relaySession) Data(r io.Reader) error {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		return err
	}
	s.r.mu.Lock()
	s.r.bodies = append(s.r.bodies, string(body))
	s.r.mu.Unlock()
	return nil
}
func (s *relaySession) Reset()        {}
func (s *relaySession) Logout() error { return nil }

var tokenInLink = regexp.MustCompile(`\?token=([A-Za-z0-9_-]+)`)

// token waits for a mail with a link and returns the link's token.
func (r *relay) token(t *testing.T) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r.mu.Lock()
		for _, b := range r.bodies {
			if m := tokenInLink.FindStringSubmatch(b); m != nil {
				r.mu.Unlock()
				return m[1]
			}
		}
		r.mu.Unlock()
	}
	t.Fatal("no mail with a link reached the relay")
	return ""
}

// TestControlPlaneProcessEnrollsAnAgent runs `mairust controlplane` and
// goes the console's way over its API — sign up, verify through the mailed
// link, log in, create a tenant and a domain, make an enrollment token —
// then enrolls an agent with `mairust agent enroll`, sees it listed, and
// sees the token refused a second time.
func TestControlPlaneProcessEnrollsAnAgent(t *testing.T) {
	relay, relayAddr := newRelay(t)
	dir := t.TempDir()
	listen := proctest.FreeAddr(t)
	cfgPath := filepath.Join(dir, "mairust.yaml")
	cfg := fmt.Sprintf("data_dir: %s\ncontrolplane:\n  listen: %s\n  database_url: %s\n  smtp_relay: %s\n  mail_from: noreply@cp.example.test\n  public_url: http://%s\n",
		dir, listen, pgtest.NewDatabase(t, "cpproc"), relayAddr, listen)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out proctest.Output
	cmd := exec.Command(proctest.Binary(t), "controlplane", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "http://" + listen
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/health"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control plane did not start:\n%s", out.String())
		}
	}
	ctx := context.Background()
	acc := accountsv1connect.NewAccountsServiceClient(http.DefaultClient, url)
	ten := tenantsv1connect.NewTenantsServiceClient(http.DefaultClient, url)
	ag := agentsv1connect.NewAgentsServiceClient(http.DefaultClient, url)
	const email, pw = "owner@example.test", "correct horse battery"
	if _, err := acc.SignUp(ctx, connect.NewRequest(&accountsv1.SignUpRequest{Email: email, Password: pw})); err != nil {
		t.Fatalf("sign up: %v\n%s", err, out.String())
	}
	if _, err := acc.VerifyEmail(ctx, connect.NewRequest(&accountsv1.VerifyEmailRequest{Token: relay.token(t)})); err != nil {
		t.Fatalf("verify: %v", err)
	}
	login, err := acc.LogIn(ctx, connect.NewRequest(&accountsv1.LogInRequest{Email: email, Password: pw}))
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	session := login.Msg.SessionToken
	tn, err := ten.CreateTenant(ctx, cptest.Auth(&tenantsv1.CreateTenantRequest{Name: "Example"}, session))
	if err != nil {
		t.Fatal(err)
	}
	tid := tn.Msg.Tenant.Id
	if _, err := ten.AddDomain(ctx, cptest.Auth(&tenantsv1.AddDomainRequest{TenantId: tid, Name: "example.test"}, session)); err != nil {
		t.Fatal(err)
	}
	tok, err := ag.CreateEnrollmentToken(ctx, cptest.Auth(&agentsv1.CreateEnrollmentTokenRequest{TenantId: tid}, session))
	if err != nil {
		t.Fatal(err)
	}

	enroll := func(dataDir string) (string, error) {
		agentCfg := filepath.Join(dataDir, "agent.yaml")
		if err := os.WriteFile(agentCfg, []byte("data_dir: "+dataDir+"\nsmtp:\n  hostname: mx1.example.test\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := exec.Command(proctest.Binary(t), "agent", "enroll", "--config", agentCfg, "--control-plane", url, "--token", tok.Msg.Token).CombinedOutput()
		return string(b), err
	}
	agentDir := t.TempDir()
	if msg, err := enroll(agentDir); err != nil || !strings.Contains(msg, "enrolled: agent ") {
		t.Fatalf("mairust agent enroll: %v\n%s", err, msg)
	}
	for _, f := range []string{"agent-ed25519.key", "controlplane.json"} {
		if fi, err := os.Stat(filepath.Join(agentDir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	list, err := ag.ListAgents(ctx, cptest.Auth(&agentsv1.ListAgentsRequest{TenantId: tid}, session))
	if err != nil || len(list.Msg.Agents) != 1 || list.Msg.Agents[0].Hostname != "mx1.example.test" {
		t.Fatalf("agents: %v %v", list, err)
	}
	msg, err := enroll(t.TempDir())
	if err == nil || !strings.Contains(msg, "used already") {
		t.Fatalf("the token a second time: %v\n%s", err, msg)
	}
	if !bytes.Contains([]byte(out.String()), []byte("control plane started")) {
		t.Errorf("no start line in the log:\n%s", out.String())
	}
}
