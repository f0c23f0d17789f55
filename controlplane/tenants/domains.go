package tenants

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/access"
	"github.com/mairust/mairust/controlplane/accounts"
	tenantsv1 "github.com/mairust/mairust/proto/mairust/tenants/v1"
)

// maxDomainLen is the longest domain name, in bytes, without the final dot.
const maxDomainLen = 253

// domainName checks a host name as people type it and returns it in
// lower case without a trailing dot: LDH labels (RFC 1123) of 1 to 63
// bytes, at least two of them, and a top-level label that is not all
// digits (not an IP address). International names go in their xn-- form.
func domainName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
	bad := func(why string) (string, error) { return "", fmt.Errorf("%q is not a domain name: %s", s, why) }
	if name == "" {
		return bad("give a name such as example.com")
	}
	if len(name) > maxDomainLen {
		return bad(fmt.Sprintf("longer than %d bytes", maxDomainLen))
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return bad("give the whole name, with a dot, e.g. example.com")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return bad("each dot-separated label must have 1 to 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad("a label cannot start or end with '-'")
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				if c >= 0x80 {
					return bad("write an international name in its xn-- (IDNA) form")
				}
				return bad(fmt.Sprintf("%q is not allowed: only letters, digits and '-'", c))
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return bad("it looks like an IP address")
	}
	return name, nil
}

// domain is a row of domains.
type domain struct {
	id, tenant, name string
	created          time.Time
}

func (d domain) proto() *tenantsv1.Domain {
	return &tenantsv1.Domain{Id: d.id, TenantId: d.tenant, Name: d.name, CreatedAt: ts(d.created)}
}

const domainColumns = `id, tenant_id, name, created_at`

func scanDomain(r pgx.Row) (domain, error) {
	var d domain
	err := r.Scan(&d.id, &d.tenant, &d.name, &d.created)
	return d, err
}

// findDomain reads one of the tenant's domains by id; lock takes it FOR
// UPDATE.
func findDomain(ctx context.Context, tx pgx.Tx, id string, lock bool) (domain, error) {
	if !access.IsUUID(id) {
		return domain{}, notFound("domain", id)
	}
	q := `SELECT ` + domainColumns + ` FROM domains WHERE id = $1`
	if lock {
		q += ` FOR UPDATE`
	}
	d, err := scanDomain(tx.QueryRow(ctx, q, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, notFound("domain", id)
	}
	return d, err
}

// AddDomain adds a domain no tenant has yet.
func (s *Service) AddDomain(ctx context.Context, req *connect.Request[tenantsv1.AddDomainRequest]) (*connect.Response[tenantsv1.AddDomainResponse], error) {
	name, err := domainName(req.Msg.Name)
	if err != nil {
		return nil, accounts.InvalidArgument("name", err)
	}
	var d domain
	err = s.in(ctx, req.Msg.TenantId, admin, func(tx pgx.Tx, _ string) error {
		if err := s.allow(ctx, tx, req.Msg.TenantId, access.Domains); err != nil {
			return err
		}
		d, err = scanDomain(tx.QueryRow(ctx, `INSERT INTO domains (tenant_id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING `+domainColumns,
			req.Msg.TenantId, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("domain %s is already in use: if it is yours, delete it from the other tenant first", name))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tenantsv1.AddDomainResponse{Domain: d.proto()}), nil
}

// ListDomains lists the tenant's domains, oldest first.
func (s *Service) ListDomains(ctx context.Context, req *connect.Request[tenantsv1.ListDomainsRequest]) (*connect.Response[tenantsv1.ListDomainsResponse], error) {
	res := &tenantsv1.ListDomainsResponse{}
	err := s.in(ctx, req.Msg.TenantId, viewer, func(tx pgx.Tx, _ string) error {
		rows, err := tx.Query(ctx, `SELECT `+domainColumns+` FROM domains ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		res.Domains, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tenantsv1.Domain, error) {
			d, err := scanDomain(r)
			return d.proto(), err
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}

// DeleteDomain removes a domain that has no mail users. The domain's row
// is locked first, so that no user can be added to it meanwhile.
func (s *Service) DeleteDomain(ctx context.Context, req *connect.Request[tenantsv1.DeleteDomainRequest]) (*connect.Response[tenantsv1.DeleteDomainResponse], error) {
	err := s.in(ctx, req.Msg.TenantId, admin, func(tx pgx.Tx, _ string) error {
		d, err := findDomain(ctx, tx, req.Msg.DomainId, true)
		if err != nil {
			return err
		}
		var users int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM mail_users WHERE domain_id = $1`, d.id).Scan(&users); err != nil {
			return err
		}
		if users > 0 {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("domain %s has %d mail users: delete them first", d.name, users))
		}
		_, err = tx.Exec(ctx, `DELETE FROM domains WHERE id = $1`, d.id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&tenantsv1.DeleteDomainResponse{}), nil
}

// mxHost is the host mail for the tenants' domains goes to: for now the
// control plane's own host.
func (s *Service) mxHost() string {
	if u, err := url.Parse(s.cfg.URL()); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return "localhost"
}

// GetDNSRecords returns the MX, SPF, DKIM and DMARC records to publish
// for one of the tenant's domains.
func (s *Service) GetDNSRecords(ctx context.Context, req *connect.Request[tenantsv1.GetDNSRecordsRequest]) (*connect.Response[tenantsv1.GetDNSRecordsResponse], error) {
	res := &tenantsv1.GetDNSRecordsResponse{}
	err := s.in(ctx, req.Msg.TenantId, viewer, func(tx pgx.Tx, _ string) error {
		d, err := findDomain(ctx, tx, req.Msg.DomainId, false)
		if err != nil {
			return err
		}
		res.Records = append(res.Records,
			&tenantsv1.DNSRecord{Type: "MX", Name: d.name, Value: "10 " + s.mxHost() + ".", Purpose: "mx",
				Note: "for now the MX host is the control plane's public host (controlplane.public_url); point it at the agent that receives this domain's mail if that is another machine"},
			&tenantsv1.DNSRecord{Type: "TXT", Name: d.name, Value: "v=spf1 mx -all", Purpose: "spf"})
		rows, err := tx.Query(ctx, `SELECT selector, txt FROM dkim_keys WHERE domain = $1 ORDER BY reported_at, selector`, d.name)
		if err != nil {
			return err
		}
		dkim, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tenantsv1.DNSRecord, error) {
			var selector, txt string
			err := r.Scan(&selector, &txt)
			return &tenantsv1.DNSRecord{Type: "TXT", Name: selector + "._domainkey." + d.name, Value: txt, Purpose: "dkim"}, err
		})
		if err != nil {
			return err
		}
		if len(dkim) == 0 {
			dkim = append(dkim, &tenantsv1.DNSRecord{Type: "TXT", Name: "<selector>._domainkey." + d.name, Purpose: "dkim",
				Note: "no agent has reported a DKIM key for this domain yet: run mairust admin dkim generate " + d.name + " on an agent"})
		}
		res.Records = append(res.Records, dkim...)
		res.Records = append(res.Records, &tenantsv1.DNSRecord{Type: "TXT", Name: "_dmarc." + d.name,
			Value: "v=DMARC1; p=quarantine; rua=mailto:postmaster@" + d.name, Purpose: "dmarc"})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(res), nil
}
