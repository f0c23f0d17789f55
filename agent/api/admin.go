package api

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/link"
)

// Listing bounds of the admin endpoints.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
	maxLogOffset     = 1_000_000
)

// adminOnly wraps h so that it runs only for an administrator. The admin
// flag is read from the database, not from the access token, so that a
// demoted or disabled administrator loses access at once.
func (s *Server) adminOnly(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return s.authed(s.rate.clientIP(func(w http.ResponseWriter, r *http.Request) error {
		u, err := s.currentUser(w, r)
		if err != nil {
			return err
		}
		if !u.Admin {
			return problem(http.StatusForbidden, "", "%s is not an administrator", u.Address)
		}
		p := caller(r)
		p.User = u
		return h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}))
}

// currentUser reads the caller from the database, so that a disabled or
// deleted account is refused at once whatever its token says.
func (s *Server) currentUser(w http.ResponseWriter, r *http.Request) (accounts.User, error) {
	u, err := s.accounts.UserByID(r.Context(), caller(r).ID)
	if errors.Is(err, accounts.ErrBadCredentials) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mairust"`)
		return u, problem(http.StatusUnauthorized, "Authorization", "the account is disabled or deleted")
	}
	return u, err
}

// adminError answers an error of the accounts administration functions;
// field names the input that identifies the object (id, name, address,
// domain).
func adminError(err error, field string) error {
	var invalid *accounts.InvalidError
	switch {
	case errors.As(err, &invalid):
		return problem(http.StatusBadRequest, invalid.Field, "%s", invalid.Reason)
	case errors.Is(err, accounts.ErrNotFound):
		return problem(http.StatusNotFound, field, "%v", err)
	case errors.Is(err, accounts.ErrExists), errors.Is(err, accounts.ErrDomainInUse):
		return problem(http.StatusConflict, field, "%v", err)
	}
	return err
}

// queryInt reads the query parameter name as an integer in [lo, hi], or
// def when it is absent.
func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, problem(http.StatusBadRequest, name, "%s must be a whole number from %d to %d", name, lo, hi)
	}
	return n, nil
}

// listLimit reads the limit parameter of a listing.
func listLimit(r *http.Request) (int, error) {
	n, err := queryInt(r, "limit", defaultListLimit, 1, maxListLimit)
	return int(n), err
}

// keyset reads the parameters of a listing by id: after (the last id of
// the previous page) and limit.
func keyset(r *http.Request) (after int64, limit int, err error) {
	if after, err = queryInt(r, "after", 0, 0, math.MaxInt64); err != nil {
		return 0, 0, err
	}
	limit, err = listLimit(r)
	return after, limit, err
}

// trimPage cuts a listing fetched with limit+1 rows to at most limit and
// reports whether there are more.
func trimPage[T any](list []T, limit int) ([]T, bool) {
	if len(list) > limit {
		return list[:limit], true
	}
	return list, false
}

// domainPage, userPage, aliasPage and logPage are pages of the admin
// listings.
type (
	domainPage struct {
		Domains []accounts.Domain `json:"domains"`
		HasMore bool              `json:"has_more"`
	}
	userPage struct {
		HasMore bool                `json:"has_more"`
		Users   []accounts.MailUser `json:"users"`
	}
	aliasPage struct {
		Aliases []accounts.Alias `json:"aliases"`
		HasMore bool             `json:"has_more"`
	}
	logPage struct {
		Events  []logEvent `json:"events"`
		HasMore bool       `json:"has_more"`
	}
)

// pathID reads the id in the request's path.
func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, problem(http.StatusBadRequest, "id", "id must be a positive whole number")
	}
	return id, nil
}

// adminEvent records a change made by the calling administrator.
func (s *Server) adminEvent(r *http.Request, kind string, detail map[string]any) {
	p := caller(r)
	s.event(r, p.TenantID, kind, p.Address, detail)
}

func (s *Server) listDomains(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := keyset(r)
	if err != nil {
		return err
	}
	list, err := s.accounts.ListDomains(r.Context(), caller(r).TenantID, after, limit+1)
	if err != nil {
		return err
	}
	page := domainPage{}
	page.Domains, page.HasMore = trimPage(list, limit)
	writeJSON(w, http.StatusOK, page)
	return nil
}

type createDomainRequest struct {
	Name string `json:"name"`
}

func (s *Server) createDomain(w http.ResponseWriter, r *http.Request) error {
	var req createDomainRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	d, err := s.accounts.AddDomain(r.Context(), caller(r).TenantID, req.Name)
	if err != nil {
		return adminError(err, "name")
	}
	s.adminEvent(r, "admin.domain.create", map[string]any{"id": d.ID, "name": d.Name})
	writeJSON(w, http.StatusCreated, d)
	return nil
}

type updateDomainRequest struct {
	Disabled *bool `json:"disabled"`
}

// updateDomain enables or disables a domain; administrators cannot
// disable the domain of their own address, which would lock them out.
// local refuses, with 409, a change to a domain or user that the control
// plane manages (this agent is enrolled): it is changed in the console.
func (s *Server) local(r *http.Request, kind link.Kind, id int64) error {
	err := link.CheckLocal(r.Context(), s.pool, kind, id)
	if errors.Is(err, link.ErrManaged) {
		return problem(http.StatusConflict, "id", "%v", err)
	}
	return err
}

func (s *Server) updateDomain(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.local(r, link.KindDomain, id); err != nil {
		return err
	}
	var req updateDomainRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Disabled == nil {
		return problem(http.StatusBadRequest, "disabled", "disabled is required: true or false")
	}
	if *req.Disabled {
		var own bool
		if err := s.pool.QueryRow(r.Context(), `SELECT EXISTS (SELECT 1 FROM mail_users WHERE id = $1 AND domain_id = $2)`, caller(r).ID, id).Scan(&own); err != nil {
			return err
		}
		if own {
			return problem(http.StatusConflict, "disabled", "you cannot disable the domain of your own address; ask an administrator of another domain")
		}
	}
	d, err := s.accounts.UpdateDomain(r.Context(), caller(r).TenantID, id, *req.Disabled)
	if err != nil {
		return adminError(err, "id")
	}
	s.adminEvent(r, "admin.domain.update", map[string]any{"id": d.ID, "name": d.Name, "disabled": d.Disabled})
	writeJSON(w, http.StatusOK, d)
	return nil
}

// deleteDomain deletes a domain without users; one with users is refused
// (409) until they are deleted.
func (s *Server) deleteDomain(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.local(r, link.KindDomain, id); err != nil {
		return err
	}
	d, err := s.accounts.DeleteDomain(r.Context(), caller(r).TenantID, id)
	if err != nil {
		return adminError(err, "id")
	}
	s.adminEvent(r, "admin.domain.delete", map[string]any{"id": d.ID, "name": d.Name})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := keyset(r)
	if err != nil {
		return err
	}
	list, err := s.accounts.ListUsers(r.Context(), caller(r).TenantID, r.URL.Query().Get("domain"), after, limit+1)
	if err != nil {
		return adminError(err, "domain")
	}
	page := userPage{}
	page.Users, page.HasMore = trimPage(list, limit)
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	var req accounts.NewUser
	if err := decode(w, r, &req); err != nil {
		return err
	}
	u, err := s.accounts.AddUser(r.Context(), caller(r).TenantID, req)
	if err != nil {
		return adminError(err, "address")
	}
	s.adminEvent(r, "admin.user.create", map[string]any{"id": u.ID, "address": u.Address, "admin": u.Admin, "quota_bytes": u.QuotaBytes})
	writeJSON(w, http.StatusCreated, u)
	return nil
}

// updateUser changes a user; a new password also ends the user's sessions
// (refresh tokens). Administrators cannot disable or demote themselves, so
// that a tenant is not left without one by mistake.
func (s *Server) updateUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.local(r, link.KindMailUser, id); err != nil {
		return err
	}
	var c accounts.UserChange
	if err := decode(w, r, &c); err != nil {
		return err
	}
	switch {
	case c == (accounts.UserChange{}):
		return problem(http.StatusBadRequest, "", "send at least one of password, disabled, admin, quota_bytes")
	case id == caller(r).ID && c.Disabled != nil && *c.Disabled:
		return problem(http.StatusConflict, "disabled", "you cannot disable yourself; ask another administrator")
	case id == caller(r).ID && c.Admin != nil && !*c.Admin:
		return problem(http.StatusConflict, "admin", "you cannot remove your own admin flag; ask another administrator")
	}
	u, err := s.accounts.UpdateUser(r.Context(), caller(r).TenantID, id, c)
	if err != nil {
		return adminError(err, "id")
	}
	detail := map[string]any{"id": u.ID, "address": u.Address}
	if c.Password != nil {
		detail["password"] = "changed"
	}
	if c.Disabled != nil {
		detail["disabled"] = u.Disabled
	}
	if c.Admin != nil {
		detail["admin"] = u.Admin
	}
	if c.QuotaBytes != nil {
		detail["quota_bytes"] = u.QuotaBytes
	}
	s.adminEvent(r, "admin.user.update", detail)
	if c.Password != nil {
		if _, err := s.pool.Exec(r.Context(), `UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL`, u.ID); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// deleteUser deletes a user with all its mail; administrators cannot
// delete themselves.
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.local(r, link.KindMailUser, id); err != nil {
		return err
	}
	if id == caller(r).ID {
		return problem(http.StatusConflict, "id", "you cannot delete yourself; ask another administrator")
	}
	u, err := s.accounts.DeleteUser(r.Context(), caller(r).TenantID, id)
	if err != nil {
		return adminError(err, "id")
	}
	s.adminEvent(r, "admin.user.delete", map[string]any{"id": u.ID, "address": u.Address})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listAliases lists the tenant's aliases. Of its filters only the domain
// can be one the tenant lacks (404, as for users); a user it lacks is bad
// input (400, as when adding an alias).
func (s *Server) listAliases(w http.ResponseWriter, r *http.Request) error {
	after, limit, err := keyset(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	list, err := s.accounts.ListAliases(r.Context(), caller(r).TenantID, accounts.AliasFilter{
		Domain: q.Get("domain"), User: q.Get("user"), Address: q.Get("address"), After: after, Limit: limit + 1,
	})
	if err != nil {
		return adminError(err, "domain")
	}
	page := aliasPage{}
	page.Aliases, page.HasMore = trimPage(list, limit)
	writeJSON(w, http.StatusOK, page)
	return nil
}

// createAliasRequest is an alias to add: its address, in one of the
// tenant's domains, and the user it delivers to, by address or id.
type createAliasRequest struct {
	Address string `json:"address"`
	User    string `json:"user"`
}

func (s *Server) createAlias(w http.ResponseWriter, r *http.Request) error {
	var req createAliasRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	al, err := s.accounts.AddAlias(r.Context(), caller(r).TenantID, req.Address, req.User)
	if err != nil {
		return adminError(err, "address")
	}
	s.adminEvent(r, "admin.alias.create", map[string]any{"id": al.ID, "address": al.Address, "user": al.User})
	writeJSON(w, http.StatusCreated, al)
	return nil
}

func (s *Server) deleteAlias(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	al, err := s.accounts.DeleteAlias(r.Context(), caller(r).TenantID, id)
	if err != nil {
		return adminError(err, "id")
	}
	s.adminEvent(r, "admin.alias.delete", map[string]any{"id": al.ID, "address": al.Address, "user": al.User})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// logEvent is one entry of the admin log.
type logEvent struct {
	ID     int64          `json:"id"`
	At     time.Time      `json:"at"`
	Kind   string         `json:"kind"`
	Actor  string         `json:"actor"`
	Detail map[string]any `json:"detail"`
}

// logs lists the events of the administrator's tenant, newest first, by
// offset; has_more comes from fetching one more than asked, not from a
// count of the table.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	limit, err := listLimit(r)
	if err != nil {
		return err
	}
	offset, err := queryInt(r, "offset", 0, 0, maxLogOffset)
	if err != nil {
		return err
	}
	rows, _ := s.pool.Query(r.Context(), `
		SELECT id, at, kind, actor, detail FROM events WHERE tenant_id = $1
		ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3`, caller(r).TenantID, limit+1, offset)
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (logEvent, error) {
		var e logEvent
		err := row.Scan(&e.ID, &e.At, &e.Kind, &e.Actor, &e.Detail)
		return e, err
	})
	if err != nil {
		return err
	}
	page := logPage{}
	page.Events, page.HasMore = trimPage(list, limit)
	writeJSON(w, http.StatusOK, page)
	return nil
}
