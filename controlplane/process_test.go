package controlplane_test

import (
	"bytes"
	"context"
	"crypto/tls"
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
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/internal/pgtest"
	"github.com/mairust/mairust/internal/proctest"
	accountsv1 "github.com/mairust/mairust/proto/mairust/accounts/v1"
	"github.com/mairust/mairust/proto/mairust/accounts/v1/accountsv1connect"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
	monitorv1 "github.com/mairust/mairust/proto/mairust/monitor/v1"
	"github.com/mairust/mairust/proto/mairust/monitor/v1/monitorv1connect"
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
	mu     sync.Mutex
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

// cp is a `mairust controlplane` process with an owner's console session
// on a tenant that has the domain example.test.
type cp struct {
	url, cfgPath, session, tenant string
	db                            string // its database's URL, as the owner
	cmd                           *exec.Cmd
	out                           *proctest.Output
}

// startControlPlane runs the control plane, with extra appended to its
// configuration file, and goes the console's way over its API: sign up,
// verify through the mailed link, log in, create a tenant and its domain.
func startControlPlane(t *testing.T, extra string) *cp {
	t.Helper()
	relay, relayAddr := newRelay(t)
	dir := t.TempDir()
	listen := proctest.FreeAddr(t)
	c := &cp{url: "http://" + listen, cfgPath: filepath.Join(dir, "mairust.yaml"), out: &proctest.Output{}, db: pgtest.NewDatabase(t, "cpproc")}
	cfg := fmt.Sprintf("data_dir: %s\ncontrolplane:\n  listen: %s\n  database_url: %s\n  smtp_relay: %s\n  mail_from: noreply@cp.example.test\n  public_url: http://%s\n  heartbeat_interval: 1s\n  agent_down_after: 5s\n  monitor_enabled: true\n",
		dir, listen, c.db, relayAddr, listen)
	if err := os.WriteFile(c.cfgPath, []byte(cfg+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(t)
	ctx := context.Background()
	acc := accountsv1connect.NewAccountsServiceClient(http.DefaultClient, c.url)
	const email, pw = "owner@example.test", "correct horse battery"
	if _, err := acc.SignUp(ctx, connect.NewRequest(&accountsv1.SignUpRequest{Email: email, Password: pw})); err != nil {
		t.Fatalf("sign up: %v\n%s", err, c.out.String())
	}
	if _, err := acc.VerifyEmail(ctx, connect.NewRequest(&accountsv1.VerifyEmailRequest{Token: relay.token(t)})); err != nil {
		t.Fatalf("verify: %v", err)
	}
	login, err := acc.LogIn(ctx, connect.NewRequest(&accountsv1.LogInRequest{Email: email, Password: pw}))
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	c.session = login.Msg.SessionToken
	tn, err := c.tenants().CreateTenant(ctx, cptest.Auth(&tenantsv1.CreateTenantRequest{Name: "Example"}, c.session))
	if err != nil {
		t.Fatal(err)
	}
	c.tenant = tn.Msg.Tenant.Id
	if _, err := c.tenants().AddDomain(ctx, cptest.Auth(&tenantsv1.AddDomainRequest{TenantId: c.tenant, Name: "example.test"}, c.session)); err != nil {
		t.Fatal(err)
	}
	return c
}

// start runs the process and waits for /health.
func (c *cp) start(t *testing.T) {
	t.Helper()
	c.cmd = exec.Command(proctest.Binary(t), "controlplane", "--config", c.cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := c.cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(c.url + "/health"); err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control plane did not start:\n%s", c.out.String())
		}
	}
}

func (c *cp) tenants() tenantsv1connect.TenantsServiceClient {
	return tenantsv1connect.NewTenantsServiceClient(http.DefaultClient, c.url)
}

func (c *cp) agents() agentsv1connect.AgentsServiceClient {
	return agentsv1connect.NewAgentsServiceClient(http.DefaultClient, c.url)
}

// token makes an enrollment token of the tenant.
func (c *cp) token(t *testing.T) string {
	t.Helper()
	tok, err := c.agents().CreateEnrollmentToken(context.Background(), cptest.Auth(&agentsv1.CreateEnrollmentTokenRequest{TenantId: c.tenant}, c.session))
	if err != nil {
		t.Fatal(err)
	}
	return tok.Msg.Token
}

// enroll runs `mairust agent enroll` for an agent configured by agentCfg.
func (c *cp) enroll(t *testing.T, agentCfg, token string) (string, error) {
	b, err := exec.Command(proctest.Binary(t), "agent", "enroll", "--config", agentCfg, "--control-plane", c.url, "--token", token).CombinedOutput()
	return string(b), err
}

// TestControlPlaneProcessEnrollsAnAgent runs `mairust controlplane`, makes
// an enrollment token through its API, enrolls an agent with `mairust
// agent enroll`, sees it listed, and sees the token refused a second time.
func TestControlPlaneProcessEnrollsAnAgent(t *testing.T) {
	c := startControlPlane(t, "")
	ctx := context.Background()
	session, tid, out := c.session, c.tenant, c.out
	ag := c.agents()
	token := c.token(t)
	enroll := func(dataDir string) (string, error) {
		agentCfg := filepath.Join(dataDir, "agent.yaml")
		if err := os.WriteFile(agentCfg, []byte("data_dir: "+dataDir+"\nsmtp:\n  hostname: mx1.example.test\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return c.enroll(t, agentCfg, token)
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

// TestAgentFollowsControlPlane: an agent enrolled into the control plane
// (both separate processes) gets a mail user added in the console, takes
// mail for it over SMTP and reports the count; it keeps taking mail while
// the control plane is down, and once it is back picks up the next change
// and delivers the reports it kept.
func TestAgentFollowsControlPlane(t *testing.T) {
	c := startControlPlane(t, "")
	ctx := context.Background()
	// A warning after two messages in the hour, told to the control
	// plane's monitor service (no monitor.url).
	a := startAgent(t, c, `outbound_policy:
  weights: {rate: 1, content: 0, history: 0}
  max_per_hour: 4
  soft_limit_fraction: 1
monitor:
  enabled: true
`)
	agentCfg, log := a.cfgPath, a.log
	count := func(q string, args ...any) int { t.Helper(); return a.count(t, q, args...) }
	const inbox = `SELECT count(*) FROM messages m JOIN mail_users u ON u.id = m.user_id WHERE u.address = $1`
	addUser := func(address string) { t.Helper(); a.addUser(t, address) }
	deliver := func(to string) { t.Helper(); a.deliver(t, to) }

	addUser("bob@example.test")
	deliver("bob@example.test")
	// The agent's DKIM key, made now, reaches the console's DNS records
	// with the next heartbeat.
	if out, err := exec.Command(proctest.Binary(t), "admin", "dkim", "generate", "--config", agentCfg, "example.test").CombinedOutput(); err != nil {
		t.Fatalf("dkim generate: %v\n%s", err, out)
	}
	if n := count(inbox, "bob@example.test"); n != 1 {
		t.Fatalf("bob has %d messages", n)
	}
	waitUntil(t, "the agent's ack and heartbeat", func() bool {
		list, err := c.agents().ListAgents(ctx, cptest.Auth(&agentsv1.ListAgentsRequest{TenantId: c.tenant}, c.session))
		if err != nil || len(list.Msg.Agents) != 1 {
			t.Fatalf("agents: %v %v", list, err)
		}
		a := list.Msg.Agents[0]
		return a.ConfigVersion >= 2 && a.Status == agentsv1.AgentStatus_AGENT_STATUS_UP && len(a.Health) > 0
	})

	cpdb, err := pgx.Connect(ctx, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer cpdb.Close(ctx)
	reported := func(want int) func() bool {
		return func() bool {
			var n int
			if err := cpdb.QueryRow(ctx, `SELECT coalesce(sum(messages_in), 0) FROM agent_reports`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n == want
		}
	}
	waitUntil(t, "the report of 1 message in", reported(1))
	waitUntil(t, "the DKIM record in the console", func() bool {
		domains, err := c.tenants().ListDomains(ctx, cptest.Auth(&tenantsv1.ListDomainsRequest{TenantId: c.tenant}, c.session))
		if err != nil || len(domains.Msg.Domains) != 1 {
			t.Fatalf("domains: %v %v", domains, err)
		}
		recs, err := c.tenants().GetDNSRecords(ctx, cptest.Auth(&tenantsv1.GetDNSRecordsRequest{TenantId: c.tenant, DomainId: domains.Msg.Domains[0].Id}, c.session))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs.Msg.Records {
			if r.Purpose == "dkim" && strings.HasPrefix(r.Value, "v=DKIM1; k=") && r.Note == "" && strings.HasSuffix(r.Name, "._domainkey.example.test") {
				return true
			}
		}
		return false
	})

	// The control plane goes away: mail keeps flowing.
	c.cmd.Process.Kill()
	c.cmd.Wait()
	deliver("bob@example.test")
	if n := count(inbox, "bob@example.test"); n != 2 {
		t.Fatalf("with the control plane down bob has %d messages", n)
	}
	// Back: the agent reconnects and takes the next change.
	c.start(t)
	addUser("carol@example.test")
	deliver("carol@example.test")
	waitUntil(t, "the reports of 3 messages in, none counted twice", reported(3))

	// bob (his password pushed as a hash) sends until warned; the warning
	// reaches the control plane's monitor service with the agent's
	// credential.
	for i := range 2 {
		if err := a.submit("bob@example.test", "carol@example.test", fmt.Sprint(i)); err != nil {
			t.Fatalf("submission %d: %v\n%s", i, err, log.String())
		}
	}
	mon := monitorv1connect.NewMonitorServiceClient(http.DefaultClient, c.url)
	waitUntil(t, "bob's warning at the monitor service\n"+log.String(), func() bool {
		list, err := mon.ListNotices(ctx, cptest.Auth(&monitorv1.ListNoticesRequest{TenantId: c.tenant}, c.session))
		if err != nil {
			t.Fatal(err)
		}
		return len(list.Msg.Notices) == 1 && list.Msg.Notices[0].Account == "bob@example.test" &&
			list.Msg.Notices[0].Kind == monitorv1.NoticeKind_NOTICE_KIND_WARN
	})
}

// agentProc is an agent process enrolled into a control plane, with its
// own database.
type agentProc struct {
	c                                    *cp
	cfgPath, smtpAddr, subAddr, httpAddr string
	db                                   *pgx.Conn
	log                                  *proctest.Output
	cmd                                  *exec.Cmd
}

// startAgent enrolls an agent into c (extra appended to its configuration
// file), runs it until the test ends and waits for its /health.
func startAgent(t *testing.T, c *cp, extra string) *agentProc {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	agentDB := pgtest.NewDatabase(t, "cpagent")
	a := &agentProc{c: c, cfgPath: filepath.Join(dir, "agent.yaml"), smtpAddr: proctest.FreeAddr(t), subAddr: proctest.FreeAddr(t), httpAddr: proctest.FreeAddr(t), log: &proctest.Output{}}
	cfg := fmt.Sprintf(`data_dir: %s
database:
  url: %s
smtp:
  listen: %s
  hostname: mx1.example.test
http:
  listen: %s
api:
  listen: %s
imap:
  listen: ""
  tls_listen: ""
submission:
  listen: %s
  tls_listen: ""
link:
  report_interval: 1s
`, dir, agentDB, a.smtpAddr, a.httpAddr, proctest.FreeAddr(t), a.subAddr)
	if err := os.WriteFile(a.cfgPath, []byte(cfg+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.enroll(t, a.cfgPath, c.token(t)); err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	a.start(t)
	db, err := pgx.Connect(t.Context(), agentDB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	a.db = db
	return a
}

// start runs the agent until stop or the test's end, and waits for its
// /health.
func (a *agentProc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(proctest.Binary(t), "agent", "--config", a.cfgPath)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.cmd = cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitUntil(t, "the agent's /health\n"+a.log.String(), func() bool {
		resp, err := http.Get("http://" + a.httpAddr + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
}

// stop ends the agent (SIGTERM) and waits for it.
func (a *agentProc) stop() {
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.cmd.Wait()
}

// count runs a count query on the agent's database.
func (a *agentProc) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := a.db.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// addUser adds a mail user (password "a long password") in the console
// and waits until the agent has it.
func (a *agentProc) addUser(t *testing.T, address string) {
	t.Helper()
	start := time.Now()
	_, err := a.c.tenants().AddMailUser(context.Background(), cptest.Auth(&tenantsv1.AddMailUserRequest{TenantId: a.c.tenant, Address: address, Password: "a long password"}, a.c.session))
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, address+" on the agent\n"+a.log.String(), func() bool {
		return a.count(t, `SELECT count(*) FROM mail_users WHERE address = $1`, address) == 1
	})
	t.Logf("%s reached the agent %v after it was added", address, time.Since(start).Round(time.Millisecond))
}

// deliver sends a message to the agent's SMTP listener, as another
// server would, and fails the test unless it is accepted.
func (a *agentProc) deliver(t *testing.T, to string) {
	t.Helper()
	msg := "From: sender@remote.test\r\nTo: " + to + "\r\nSubject: hello\r\nMessage-ID: <" + fmt.Sprint(time.Now().UnixNano()) + "@remote.test>\r\n\r\nhello\r\n"
	sc, err := smtp.DialStartTLS(a.smtpAddr, &tls.Config{InsecureSkipVerify: true}) // the agent's generated certificate
	if err == nil {
		defer sc.Close()
		err = sc.SendMail("sender@remote.test", []string{to}, strings.NewReader(msg))
	}
	if err != nil {
		t.Fatalf("mail to %s: %v\n%s", to, err, a.log.String())
	}
}

// submit sends a message from a mail user (password "a long password")
// through the agent's submission listener.
func (a *agentProc) submit(from, to, subject string) error {
	sc, err := smtp.DialStartTLS(a.subAddr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer sc.Close()
	if err := sc.Auth(sasl.NewPlainClient("", from, "a long password")); err != nil {
		return fmt.Errorf("AUTH as %s: %w", from, err)
	}
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nhi\r\n", from, to, subject)
	return sc.SendMail(from, []string{to}, strings.NewReader(msg))
}

// waitUntil polls cond for up to a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within a minute: %s", what)
		}
	}
}
