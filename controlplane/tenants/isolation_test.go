package tenants_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/mairust/mairust/controlplane/cptest"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
	"github.com/mairust/mairust/proto/mairust/tenants/v1/tenantsv1connect"
)

// view is what a tenant's members can read of it.
type view struct {
	domains  *tenantsv1.ListDomainsResponse
	users    *tenantsv1.ListMailUsersResponse
	members  *tenantsv1.ListMembersResponse
	settings *tenantsv1.GetSettingsResponse
	dns      *tenantsv1.GetDNSRecordsResponse
}

func read(t *testing.T, c tenantsv1connect.TenantsServiceClient, tid, did string) view {
	t.Helper()
	ctx := context.Background()
	return view{
		domains:  ok(c.ListDomains(ctx, connect.NewRequest(&tenantsv1.ListDomainsRequest{TenantId: tid})))(t),
		users:    ok(c.ListMailUsers(ctx, connect.NewRequest(&tenantsv1.ListMailUsersRequest{TenantId: tid})))(t),
		members:  ok(c.ListMembers(ctx, connect.NewRequest(&tenantsv1.ListMembersRequest{TenantId: tid})))(t),
		settings: ok(c.GetSettings(ctx, connect.NewRequest(&tenantsv1.GetSettingsRequest{TenantId: tid})))(t),
		dns:      ok(c.GetDNSRecords(ctx, connect.NewRequest(&tenantsv1.GetDNSRecordsRequest{TenantId: tid, DomainId: did})))(t),
	}
}

func (v view) equal(w view) bool {
	return proto.Equal(v.domains, w.domains) && proto.Equal(v.users, w.users) && proto.Equal(v.members, w.members) &&
		proto.Equal(v.settings, w.settings) && proto.Equal(v.dns, w.dns)
}

// every returns a call of each TenantsService procedure that names a
// tenant, on tenant tid with object ids did (a domain) and uid (a mail
// user). Reads are marked, for the role test.
func every(c tenantsv1connect.TenantsServiceClient, tid, did, uid string) []struct {
	name string
	read bool
	call func() error
} {
	ctx := context.Background()
	return []struct {
		name string
		read bool
		call func() error
	}{
		{"InviteMember", false, func() error {
			_, err := c.InviteMember(ctx, connect.NewRequest(&tenantsv1.InviteMemberRequest{TenantId: tid, Email: "new@example.test", Role: tenantsv1.Role_ROLE_ADMIN}))
			return err
		}},
		{"ListMembers", true, func() error {
			_, err := c.ListMembers(ctx, connect.NewRequest(&tenantsv1.ListMembersRequest{TenantId: tid}))
			return err
		}},
		{"RemoveMember", false, func() error {
			_, err := c.RemoveMember(ctx, connect.NewRequest(&tenantsv1.RemoveMemberRequest{TenantId: tid, Email: "b@example.test"}))
			return err
		}},
		{"AddDomain", false, func() error {
			_, err := c.AddDomain(ctx, connect.NewRequest(&tenantsv1.AddDomainRequest{TenantId: tid, Name: "new.example"}))
			return err
		}},
		{"ListDomains", true, func() error {
			_, err := c.ListDomains(ctx, connect.NewRequest(&tenantsv1.ListDomainsRequest{TenantId: tid}))
			return err
		}},
		{"DeleteDomain", false, func() error {
			_, err := c.DeleteDomain(ctx, connect.NewRequest(&tenantsv1.DeleteDomainRequest{TenantId: tid, DomainId: did}))
			return err
		}},
		{"GetDNSRecords", true, func() error {
			_, err := c.GetDNSRecords(ctx, connect.NewRequest(&tenantsv1.GetDNSRecordsRequest{TenantId: tid, DomainId: did}))
			return err
		}},
		{"AddMailUser", false, func() error {
			_, err := c.AddMailUser(ctx, connect.NewRequest(&tenantsv1.AddMailUserRequest{TenantId: tid, Address: "new@b.example", Password: password}))
			return err
		}},
		{"ListMailUsers", true, func() error {
			_, err := c.ListMailUsers(ctx, connect.NewRequest(&tenantsv1.ListMailUsersRequest{TenantId: tid}))
			return err
		}},
		{"DeleteMailUser", false, func() error {
			_, err := c.DeleteMailUser(ctx, connect.NewRequest(&tenantsv1.DeleteMailUserRequest{TenantId: tid, UserId: uid}))
			return err
		}},
		{"GetSettings", true, func() error {
			_, err := c.GetSettings(ctx, connect.NewRequest(&tenantsv1.GetSettingsRequest{TenantId: tid}))
			return err
		}},
		{"UpdateSettings", false, func() error {
			_, err := c.UpdateSettings(ctx, connect.NewRequest(&tenantsv1.UpdateSettingsRequest{TenantId: tid, Settings: &tenantsv1.Settings{}}))
			return err
		}},
	}
}

// THE cross-tenant test: an account sees and changes nothing of a tenant
// it is not a member of, whether it names that tenant or its objects
// under its own tenant.
func TestCrossTenant(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	aSession := e.person("a@example.test")
	a := e.tenants(aSession, false)
	b := e.tenants(e.person("b@example.test"), true)
	ta, tb := tenant(t, a, "A"), tenant(t, b, "B")
	// A is also a viewer of B's second tenant C: its own membership rows
	// there are visible to it, and must not leak into A's lists either.
	tc := tenant(t, b, "C")
	e.join(b, tc, "a@example.test", aSession, tenantsv1.Role_ROLE_VIEWER)
	da, db := domain(t, a, ta, "a.example"), domain(t, b, tb, "b.example")
	ua, ub := mailUser(t, a, ta, "user@a.example"), mailUser(t, b, tb, "user@b.example")
	ok(b.InviteMember(ctx, connect.NewRequest(&tenantsv1.InviteMemberRequest{TenantId: tb, Email: "pending@example.test", Role: tenantsv1.Role_ROLE_VIEWER})))(t)
	ok(b.UpdateSettings(ctx, connect.NewRequest(&tenantsv1.UpdateSettingsRequest{TenantId: tb,
		Settings: &tenantsv1.Settings{OutboundPolicy: &tenantsv1.OutboundPolicy{MaxPerHour: 50}}})))(t)
	e.Exec(t, tb, `INSERT INTO dkim_keys (tenant_id, domain, selector, txt) VALUES ($1, 'b.example', 'sb', 'v=DKIM1; p=BBBB')`, tb)
	before := read(t, b, tb, db)
	beforeA := read(t, a, ta, da)

	for _, tc := range every(a, tb, db, ub) {
		cptest.WantCode(t, tc.name+" on B's tenant", tc.call(), connect.CodeNotFound, "not found")
	}
	// B's object ids under A's own tenant.
	for _, tc := range every(a, ta, db, ub) {
		switch tc.name {
		case "DeleteDomain", "GetDNSRecords", "DeleteMailUser":
			cptest.WantCode(t, tc.name+" of B's object under A", tc.call(), connect.CodeNotFound, "not found")
		}
	}
	_, err := a.AddDomain(ctx, connect.NewRequest(&tenantsv1.AddDomainRequest{TenantId: ta, Name: "b.example"}))
	cptest.WantCode(t, "B's domain into A", err, connect.CodeAlreadyExists, "already in use")
	_, err = a.AddMailUser(ctx, connect.NewRequest(&tenantsv1.AddMailUserRequest{TenantId: ta, Address: "x@b.example", Password: password}))
	cptest.WantCode(t, "user on B's domain in A", err, connect.CodeInvalidArgument, "not one of this tenant's domains")
	if us := ok(a.ListMailUsers(ctx, connect.NewRequest(&tenantsv1.ListMailUsersRequest{TenantId: ta, Domain: "b.example"})))(t).Users; len(us) != 0 {
		t.Fatalf("A lists B's users by domain: %v", us)
	}

	if after := read(t, b, tb, db); !after.equal(before) {
		t.Fatalf("B's tenant changed:\nbefore %+v\nafter  %+v", before, after)
	}
	if afterA := read(t, a, ta, da); !afterA.equal(beforeA) {
		t.Fatalf("A's tenant changed:\nbefore %+v\nafter  %+v", beforeA, afterA)
	}
	// A's lists show A's rows only.
	if ts := ok(a.ListTenants(ctx, connect.NewRequest(&tenantsv1.ListTenantsRequest{})))(t).Tenants; len(ts) != 2 || ts[0].Id != ta || ts[1].Id != tc ||
		ts[0].Role != tenantsv1.Role_ROLE_OWNER || ts[1].Role != tenantsv1.Role_ROLE_VIEWER {
		t.Fatalf("A's tenants %v", ts)
	}
	if ds := beforeA.domains.Domains; len(ds) != 1 || ds[0].Id != da {
		t.Fatalf("A's domains %v", ds)
	}
	if us := beforeA.users.Users; len(us) != 1 || us[0].Id != ua {
		t.Fatalf("A's users %v", us)
	}
	if ms := beforeA.members.Members; len(ms) != 1 || ms[0].Email != "a@example.test" {
		t.Fatalf("A's members %v", ms)
	}
	for _, r := range beforeA.dns.Records {
		if r.Value == "v=DKIM1; p=BBBB" {
			t.Fatalf("A sees B's DKIM key: %v", r)
		}
	}
	if len(before.users.Users) != 1 || len(before.members.Members) != 2 || before.settings.Settings.GetOutboundPolicy().GetMaxPerHour() != 50 {
		t.Fatalf("B's own view is wrong: %+v", before)
	}
}

// A viewer reads everything of its tenant and writes nothing; an admin
// writes.
func TestRoles(t *testing.T) {
	e := start(t)
	owner := e.tenants(e.person("b@example.test"), false)
	tid := tenant(t, owner, "B")
	did := domain(t, owner, tid, "b.example")
	uid := mailUser(t, owner, tid, "user@b.example")
	viewer := e.person("viewer@example.test")
	e.join(owner, tid, "viewer@example.test", viewer, tenantsv1.Role_ROLE_VIEWER)
	before := read(t, owner, tid, did)
	for _, tc := range every(e.tenants(viewer, true), tid, did, uid) {
		err := tc.call()
		if tc.read && err != nil {
			t.Errorf("viewer %s: %v", tc.name, err)
		}
		if !tc.read {
			cptest.WantCode(t, "viewer "+tc.name, err, connect.CodePermissionDenied, "needs the admin role")
		}
	}
	if after := read(t, owner, tid, did); !after.equal(before) {
		t.Fatalf("a viewer changed the tenant:\nbefore %+v\nafter  %+v", before, after)
	}

	admin := e.person("admin@example.test")
	e.join(owner, tid, "admin@example.test", admin, tenantsv1.Role_ROLE_ADMIN)
	ctx := context.Background()
	asAdmin := e.tenants(admin, false)
	ok(asAdmin.AddDomain(ctx, connect.NewRequest(&tenantsv1.AddDomainRequest{TenantId: tid, Name: "c.example"})))(t)
	ok(asAdmin.DeleteMailUser(ctx, connect.NewRequest(&tenantsv1.DeleteMailUserRequest{TenantId: tid, UserId: uid})))(t)
	ok(asAdmin.UpdateSettings(ctx, connect.NewRequest(&tenantsv1.UpdateSettingsRequest{TenantId: tid, Settings: &tenantsv1.Settings{}})))(t)
	ok(asAdmin.RemoveMember(ctx, connect.NewRequest(&tenantsv1.RemoveMemberRequest{TenantId: tid, Email: "viewer@example.test"})))(t)
}
