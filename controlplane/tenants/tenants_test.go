package tenants_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/store"
	ipassword "github.com/mairust/mairust/internal/password"
	accountsv1 "github.com/mairust/mairust/proto/mairust/accounts/v1"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
	"github.com/mairust/mairust/proto/mairust/tenants/v1/tenantsv1connect"
)

// The console's path from sign-up to a working tenant, over gRPC (h2c).
func TestFlow(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	alice := e.person("alice@example.test")
	c := e.tenants(alice, true)

	created := ok(c.CreateTenant(ctx, connect.NewRequest(&tenantsv1.CreateTenantRequest{Name: "  Acme  "})))(t).Tenant
	if created.Name != "Acme" || created.Role != tenantsv1.Role_ROLE_OWNER {
		t.Fatalf("created %+v", created)
	}
	tid := created.Id
	d := ok(c.AddDomain(ctx, connect.NewRequest(&tenantsv1.AddDomainRequest{TenantId: tid, Name: "Example.COM."})))(t).Domain
	if d.Name != "example.com" || d.TenantId != tid {
		t.Fatalf("domain %+v", d)
	}

	records := func() map[string]*tenantsv1.DNSRecord {
		t.Helper()
		res := ok(c.GetDNSRecords(ctx, connect.NewRequest(&tenantsv1.GetDNSRecordsRequest{TenantId: tid, DomainId: d.Id})))(t)
		m := map[string]*tenantsv1.DNSRecord{}
		for _, r := range res.Records {
			m[r.Purpose] = r
		}
		return m
	}
	r := records()
	for purpose, want := range map[string][3]string{
		"mx":    {"MX", "example.com", "10 cp.example.test."},
		"spf":   {"TXT", "example.com", "v=spf1 mx -all"},
		"dmarc": {"TXT", "_dmarc.example.com", "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"},
	} {
		if got := r[purpose]; got == nil || got.Type != want[0] || got.Name != want[1] || got.Value != want[2] {
			t.Errorf("%s record %+v, want %q", purpose, got, want)
		}
	}
	if !strings.Contains(r["mx"].GetNote(), "public host") {
		t.Errorf("MX note %q", r["mx"].GetNote())
	}
	if dk := r["dkim"]; dk == nil || dk.Value != "" || !strings.Contains(dk.Note, "mairust admin dkim generate example.com") {
		t.Errorf("DKIM before any key %+v", dk)
	}
	e.Exec(t, tid, `INSERT INTO dkim_keys (tenant_id, domain, selector, txt) VALUES ($1, 'example.com', 's1', 'v=DKIM1; k=ed25519; p=AAAA')`, tid)
	if dk := records()["dkim"]; dk == nil || dk.Name != "s1._domainkey.example.com" || dk.Value != "v=DKIM1; k=ed25519; p=AAAA" || dk.Note != "" {
		t.Errorf("DKIM after an agent's report %+v", dk)
	}

	u := ok(c.AddMailUser(ctx, connect.NewRequest(&tenantsv1.AddMailUserRequest{TenantId: tid, Address: "Bob@Example.com", Password: "bob's long password", QuotaBytes: 1 << 30})))(t).User
	if u.Address != "bob@example.com" || u.QuotaBytes != 1<<30 || u.TenantId != tid {
		t.Fatalf("mail user %+v", u)
	}
	var hash string
	err := e.Store.Tx(ctx, store.Scope{TenantID: tid}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT password_hash FROM mail_users WHERE id = $1`, u.Id).Scan(&hash)
	})
	if match, cerr := ipassword.Check(hash, "bob's long password"); err != nil || cerr != nil || !match {
		t.Fatalf("stored hash %q does not check: %v %v", hash, err, cerr)
	}
	for filter, want := range map[string]int{"": 1, "EXAMPLE.com": 1, "other.example": 0} {
		users := ok(c.ListMailUsers(ctx, connect.NewRequest(&tenantsv1.ListMailUsersRequest{TenantId: tid, Domain: filter})))(t).Users
		if len(users) != want || want == 1 && !proto.Equal(users[0], u) {
			t.Errorf("ListMailUsers(%q) = %v, want %d", filter, users, want)
		}
	}

	inv := ok(c.InviteMember(ctx, connect.NewRequest(&tenantsv1.InviteMemberRequest{TenantId: tid, Email: "Carol@example.test", Role: tenantsv1.Role_ROLE_VIEWER})))(t).Member
	if inv.Email != "carol@example.test" || !inv.Invited || inv.Role != tenantsv1.Role_ROLE_VIEWER {
		t.Fatalf("invited %+v", inv)
	}
	mails := e.mail.Mails()
	if last := mails[len(mails)-1]; last.To != "carol@example.test" || !strings.Contains(last.Body, "https://cp.example.test/console/invite?token=") ||
		!strings.Contains(last.Body, "alice@example.test") || !strings.Contains(last.Body, "Acme") {
		t.Fatalf("invitation mail %+v", last)
	}
	invTok, err := e.mail.LastToken("carol@example.test")
	if err != nil {
		t.Fatal(err)
	}
	carol := e.person("carol@example.test")
	m := ok(e.accounts(carol).AcceptInvitation(ctx, connect.NewRequest(&accountsv1.AcceptInvitationRequest{Token: invTok})))(t).Membership
	if m.TenantId != tid || m.TenantName != "Acme" || m.Role != tenantsv1.Role_ROLE_VIEWER {
		t.Fatalf("membership %+v", m)
	}

	members := ok(c.ListMembers(ctx, connect.NewRequest(&tenantsv1.ListMembersRequest{TenantId: tid})))(t).Members
	if len(members) != 2 || members[0].Email != "alice@example.test" || members[0].Role != tenantsv1.Role_ROLE_OWNER ||
		members[1].Email != "carol@example.test" || members[1].Role != tenantsv1.Role_ROLE_VIEWER || members[1].Invited || members[1].AccountId == "" {
		t.Fatalf("members %v", members)
	}
	ts := ok(e.tenants(carol, false).ListTenants(ctx, connect.NewRequest(&tenantsv1.ListTenantsRequest{})))(t).Tenants
	if len(ts) != 1 || ts[0].Id != tid || ts[0].Role != tenantsv1.Role_ROLE_VIEWER {
		t.Fatalf("carol's tenants %v", ts)
	}
	me := ok(e.accounts(carol).GetMe(ctx, connect.NewRequest(&accountsv1.GetMeRequest{})))(t)
	if len(me.Memberships) != 1 || me.Memberships[0].TenantName != "Acme" {
		t.Fatalf("carol's memberships %v", me.Memberships)
	}

	// Settings round trip; the change raises the configuration version.
	settings := &tenantsv1.Settings{OutboundPolicy: &tenantsv1.OutboundPolicy{WarnThreshold: 0.6, SuspendThreshold: 0.9, MaxPerHour: 500,
		Whitelist: []*tenantsv1.WhitelistProfile{{Id: "news", Accounts: []string{"news@example.com"}, MaxRate: "5000 msgs/hour"}}}}
	ok(c.UpdateSettings(ctx, connect.NewRequest(&tenantsv1.UpdateSettingsRequest{TenantId: tid, Settings: settings})))(t)
	got := ok(e.tenants(carol, false).GetSettings(ctx, connect.NewRequest(&tenantsv1.GetSettingsRequest{TenantId: tid})))(t).Settings
	if !proto.Equal(got, settings) {
		t.Fatalf("settings %v, want %v", got, settings)
	}
	var version int
	err = e.Store.Tx(ctx, store.Scope{TenantID: tid}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT version FROM config_versions`).Scan(&version)
	})
	if err != nil || version != 3 { // domain, mail user, settings
		t.Fatalf("configuration version %d, %v", version, err)
	}
}

func TestErrors(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.tenants(e.person("alice@example.test"), false)
	other := e.tenants(e.person("olga@example.test"), false)
	tid := tenant(t, c, "Acme")
	otherTid := tenant(t, other, "Other")
	did := domain(t, c, tid, "example.com")
	domain(t, other, otherTid, "other.example")

	for _, name := range []string{"", "   ", strings.Repeat("x", 101), "bad\x00name"} {
		_, err := c.CreateTenant(ctx, connect.NewRequest(&tenantsv1.CreateTenantRequest{Name: name}))
		cptest.WantCode(t, "tenant name "+name, err, connect.CodeInvalidArgument, "name: ")
	}
	addDomain := func(name string) error {
		_, err := c.AddDomain(ctx, connect.NewRequest(&tenantsv1.AddDomainRequest{TenantId: tid, Name: name}))
		return err
	}
	for _, name := range []string{"", "localhost", "a..b", "bücher.example", "192.0.2.1"} {
		cptest.WantCode(t, "domain "+name, addDomain(name), connect.CodeInvalidArgument, "name: ")
	}
	cptest.WantCode(t, "own domain again", addDomain("EXAMPLE.com"), connect.CodeAlreadyExists, "domain example.com is already in use")
	cptest.WantCode(t, "another tenant's domain", addDomain("other.example"), connect.CodeAlreadyExists, "domain other.example is already in use")

	addUser := func(addr, pw string, quota int64) error {
		_, err := c.AddMailUser(ctx, connect.NewRequest(&tenantsv1.AddMailUserRequest{TenantId: tid, Address: addr, Password: pw, QuotaBytes: quota}))
		return err
	}
	cptest.WantCode(t, "user on a foreign domain", addUser("x@other.example", password, 0), connect.CodeInvalidArgument, "address: domain other.example is not one of this tenant's domains")
	cptest.WantCode(t, "user on an unknown domain", addUser("x@nowhere.example", password, 0), connect.CodeInvalidArgument, "address: domain nowhere.example is not one of this tenant's domains")
	cptest.WantCode(t, "bad address", addUser("x", password, 0), connect.CodeInvalidArgument, "address: ")
	cptest.WantCode(t, "short password", addUser("x@example.com", "short", 0), connect.CodeInvalidArgument, "password: ")
	cptest.WantCode(t, "negative quota", addUser("x@example.com", password, -1), connect.CodeInvalidArgument, "quota_bytes: ")
	uid := mailUser(t, c, tid, "x@example.com")
	cptest.WantCode(t, "same user again", addUser("X@example.com", password, 0), connect.CodeAlreadyExists, "already exists")

	_, err := c.DeleteDomain(ctx, connect.NewRequest(&tenantsv1.DeleteDomainRequest{TenantId: tid, DomainId: did}))
	cptest.WantCode(t, "domain with users", err, connect.CodeFailedPrecondition, "delete them first")
	ok(c.DeleteMailUser(ctx, connect.NewRequest(&tenantsv1.DeleteMailUserRequest{TenantId: tid, UserId: uid})))(t)
	_, err = c.DeleteMailUser(ctx, connect.NewRequest(&tenantsv1.DeleteMailUserRequest{TenantId: tid, UserId: uid}))
	cptest.WantCode(t, "user deleted twice", err, connect.CodeNotFound, "not found")
	ok(c.DeleteDomain(ctx, connect.NewRequest(&tenantsv1.DeleteDomainRequest{TenantId: tid, DomainId: did})))(t)
	if ds := ok(c.ListDomains(ctx, connect.NewRequest(&tenantsv1.ListDomainsRequest{TenantId: tid})))(t).Domains; len(ds) != 0 {
		t.Fatalf("domains after the delete %v", ds)
	}
	for _, id := range []string{"", "1", "not-a-uuid", did} {
		_, err := c.GetDNSRecords(ctx, connect.NewRequest(&tenantsv1.GetDNSRecordsRequest{TenantId: tid, DomainId: id}))
		cptest.WantCode(t, "DNS records of domain "+id, err, connect.CodeNotFound, "not found")
		_, err = c.DeleteMailUser(ctx, connect.NewRequest(&tenantsv1.DeleteMailUserRequest{TenantId: tid, UserId: id}))
		cptest.WantCode(t, "delete user "+id, err, connect.CodeNotFound, "not found")
	}
	_, err = c.ListDomains(ctx, connect.NewRequest(&tenantsv1.ListDomainsRequest{TenantId: "not-a-uuid"}))
	cptest.WantCode(t, "tenant id not a UUID", err, connect.CodeNotFound, "not found")
	_, err = c.ListMailUsers(ctx, connect.NewRequest(&tenantsv1.ListMailUsersRequest{TenantId: tid, Domain: "bad..domain"}))
	cptest.WantCode(t, "domain filter", err, connect.CodeInvalidArgument, "domain: ")

	// Invitations.
	invite := func(c tenantsv1connect.TenantsServiceClient, addr string, role tenantsv1.Role) error {
		_, err := c.InviteMember(ctx, connect.NewRequest(&tenantsv1.InviteMemberRequest{TenantId: tid, Email: addr, Role: role}))
		return err
	}
	cptest.WantCode(t, "no role", invite(c, "dave@example.test", tenantsv1.Role_ROLE_UNSPECIFIED), connect.CodeInvalidArgument, "role: ")
	cptest.WantCode(t, "bad address", invite(c, "dave", tenantsv1.Role_ROLE_ADMIN), connect.CodeInvalidArgument, "email: ")
	cptest.WantCode(t, "a member", invite(c, "alice@example.test", tenantsv1.Role_ROLE_ADMIN), connect.CodeAlreadyExists, "already a member")
	e.mail.FailWith(errors.New("relay down"))
	cptest.WantCode(t, "mail down", invite(c, "dave@example.test", tenantsv1.Role_ROLE_ADMIN), connect.CodeUnavailable, "try again later")
	e.mail.FailWith(nil)
	if n := len(ok(c.ListMembers(ctx, connect.NewRequest(&tenantsv1.ListMembersRequest{TenantId: tid})))(t).Members); n != 1 {
		t.Fatalf("%d members and invitations after an unsent invitation", n)
	}

	accept := func(session, tok string) error {
		_, err := e.accounts(session).AcceptInvitation(ctx, connect.NewRequest(&accountsv1.AcceptInvitationRequest{Token: tok}))
		return err
	}
	dave := e.person("dave@example.test")
	if err := invite(c, "dave@example.test", tenantsv1.Role_ROLE_ADMIN); err != nil {
		t.Fatal(err)
	}
	first, _ := e.mail.LastToken("dave@example.test")
	if err := invite(c, "dave@example.test", tenantsv1.Role_ROLE_VIEWER); err != nil {
		t.Fatal(err)
	}
	second, _ := e.mail.LastToken("dave@example.test")
	cptest.WantCode(t, "replaced invitation", accept(dave, first), connect.CodeNotFound, "newer one")
	cptest.WantCode(t, "someone else's invitation", accept(e.person("erin@example.test"), second), connect.CodePermissionDenied, "another e-mail address")
	e.Exec(t, tid, `UPDATE invitations SET expires_at = now() - interval '1 second'`)
	cptest.WantCode(t, "expired invitation", accept(dave, second), connect.CodeFailedPrecondition, "expired")
	if err := invite(c, "dave@example.test", tenantsv1.Role_ROLE_ADMIN); err != nil {
		t.Fatal(err)
	}
	third, _ := e.mail.LastToken("dave@example.test")
	if err := accept(dave, third); err != nil {
		t.Fatal(err)
	}
	cptest.WantCode(t, "accepted twice", accept(dave, third), connect.CodeFailedPrecondition, "already been accepted")

	// Removing members.
	remove := func(c tenantsv1connect.TenantsServiceClient, addr string) error {
		_, err := c.RemoveMember(ctx, connect.NewRequest(&tenantsv1.RemoveMemberRequest{TenantId: tid, Email: addr}))
		return err
	}
	asDave := e.tenants(dave, false)
	cptest.WantCode(t, "admin invites an owner", invite(asDave, "frank@example.test", tenantsv1.Role_ROLE_OWNER), connect.CodePermissionDenied, "only an owner")
	cptest.WantCode(t, "admin removes the owner", remove(asDave, "alice@example.test"), connect.CodePermissionDenied, "only an owner")
	cptest.WantCode(t, "last owner", remove(c, "alice@example.test"), connect.CodeFailedPrecondition, "last owner")
	cptest.WantCode(t, "stranger", remove(c, "nobody@example.test"), connect.CodeNotFound, "neither a member")
	cptest.WantCode(t, "bad address", remove(c, "nobody"), connect.CodeInvalidArgument, "email: ")
	if err := invite(asDave, "gina@example.test", tenantsv1.Role_ROLE_VIEWER); err != nil {
		t.Fatal(err)
	}
	if err := remove(asDave, "gina@example.test"); err != nil {
		t.Fatalf("withdrawing an invitation: %v", err)
	}
	if err := remove(c, "dave@example.test"); err != nil {
		t.Fatal(err)
	}
	members := ok(c.ListMembers(ctx, connect.NewRequest(&tenantsv1.ListMembersRequest{TenantId: tid})))(t).Members
	if len(members) != 1 || members[0].Email != "alice@example.test" {
		t.Fatalf("members after the removals %v", members)
	}
	_, err = asDave.ListDomains(ctx, connect.NewRequest(&tenantsv1.ListDomainsRequest{TenantId: tid}))
	cptest.WantCode(t, "removed member", err, connect.CodeNotFound, "not found")

	// A second owner may be removed, not the last one.
	if err := invite(c, "dave@example.test", tenantsv1.Role_ROLE_OWNER); err != nil {
		t.Fatal(err)
	}
	tok, _ := e.mail.LastToken("dave@example.test")
	if err := accept(dave, tok); err != nil {
		t.Fatal(err)
	}
	if err := remove(asDave, "alice@example.test"); err != nil {
		t.Fatalf("an owner removing another owner: %v", err)
	}
	cptest.WantCode(t, "last owner removing itself", remove(asDave, "dave@example.test"), connect.CodeFailedPrecondition, "last owner")
}

func TestSettingsValidation(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.tenants(e.person("alice@example.test"), false)
	tid := tenant(t, c, "Acme")
	update := func(p *tenantsv1.OutboundPolicy) error {
		_, err := c.UpdateSettings(ctx, connect.NewRequest(&tenantsv1.UpdateSettingsRequest{TenantId: tid, Settings: &tenantsv1.Settings{OutboundPolicy: p}}))
		return err
	}
	profile := func(id, rate string) *tenantsv1.WhitelistProfile {
		return &tenantsv1.WhitelistProfile{Id: id, Accounts: []string{id + "@example.com"}, MaxRate: rate}
	}
	for _, tc := range []struct {
		name string
		p    *tenantsv1.OutboundPolicy
		text string
	}{
		{"weight above 1", &tenantsv1.OutboundPolicy{WeightRate: 1.5}, "settings.outbound_policy.weight_rate: "},
		{"weights not summing to 1", &tenantsv1.OutboundPolicy{WeightRate: 0.6}, "settings.outbound_policy.weights: "},
		{"negative threshold", &tenantsv1.OutboundPolicy{WarnThreshold: -0.1}, "settings.outbound_policy.warn_threshold: "},
		{"threshold above 1", &tenantsv1.OutboundPolicy{SuspendThreshold: 1.2}, "settings.outbound_policy.suspend_threshold: "},
		{"warn not below suspend", &tenantsv1.OutboundPolicy{WarnThreshold: 0.9, SuspendThreshold: 0.7}, "settings.outbound_policy.suspend_threshold: "},
		{"max_per_hour", &tenantsv1.OutboundPolicy{MaxPerHour: -1}, "settings.outbound_policy.max_per_hour: "},
		{"duplicate profile", &tenantsv1.OutboundPolicy{Whitelist: []*tenantsv1.WhitelistProfile{profile("a", "1 msgs/day"), {Id: "a", Accounts: []string{"z@example.com"}, MaxRate: "1 msgs/day"}}},
			"settings.outbound_policy.whitelist[1].id: "},
		{"max_rate", &tenantsv1.OutboundPolicy{Whitelist: []*tenantsv1.WhitelistProfile{profile("a", "fast")}}, "settings.outbound_policy.whitelist[0].max_rate: "},
		{"max_rate unit", &tenantsv1.OutboundPolicy{Whitelist: []*tenantsv1.WhitelistProfile{profile("a", "10 msgs/week")}}, "settings.outbound_policy.whitelist[0].max_rate: "},
	} {
		cptest.WantCode(t, tc.name, update(tc.p), connect.CodeInvalidArgument, tc.text)
	}
	got := ok(c.GetSettings(ctx, connect.NewRequest(&tenantsv1.GetSettingsRequest{TenantId: tid})))(t).Settings
	if !proto.Equal(got, &tenantsv1.Settings{}) {
		t.Fatalf("refused settings were kept: %v", got)
	}
	good := &tenantsv1.OutboundPolicy{WeightRate: 0.5, WeightContent: 0.3, WeightHistory: 0.2, MaxPerDay: 2000, AutoReenableAfterHours: 24,
		Whitelist: []*tenantsv1.WhitelistProfile{profile("a", "100 msgs/minute"), profile("b", "20000 msgs/day")}}
	if err := update(good); err != nil {
		t.Fatal(err)
	}
	if err := update(nil); err != nil { // no outbound policy: the agents' defaults
		t.Fatal(err)
	}
}
