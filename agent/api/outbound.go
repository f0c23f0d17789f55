package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/outbound/queue"
	"github.com/mairust/mairust/agent/policy"
)

// OutboundAdmin is what the outbound endpoints need of the agent: the
// accounts' sending states (the policy engine) and the delivery log (the
// outbound queue).
type OutboundAdmin interface {
	Status(ctx context.Context, account string) (policy.Status, error)
	// Release returns policy.ErrNotSuspended for an account not suspended.
	Release(ctx context.Context, account, by, why string) error
	Log(ctx context.Context, tenantID string, userID int64, limit, offset int) ([]queue.LogEntry, error)
}

// errNotSending answers the sending endpoints of an agent without SetSending.
var errNotSending = problem(http.StatusNotFound, "", "this agent does not send mail")

// maxWhyBytes bounds the reason given for a release.
const maxWhyBytes = 500

// outboundStatus is an account's sending state.
type outboundStatus struct {
	Account     string       `json:"account"`
	State       policy.State `json:"state"` // allowed, soft_limited or suspended
	Reason      string       `json:"reason"`
	By          string       `json:"by"`           // who changed the state last: policy, system or an administrator
	SoftUntil   *time.Time   `json:"soft_until"`   // when soft_limited
	SuspendedAt *time.Time   `json:"suspended_at"` // when suspended
}

// releaseRequest says why a suspension is lifted.
type releaseRequest struct {
	Why string `json:"why"`
}

// delivery is one delivery attempt to one recipient.
type delivery struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	QueueID   int64     `json:"queue_id"`
	UserID    int64     `json:"user_id,omitempty"`
	Recipient string    `json:"recipient"`
	Status    string    `json:"status"` // delivered, deferred or failed
	Code      int       `json:"code"`
	Enhanced  string    `json:"enhanced"`
	Text      string    `json:"text"`
	Host      string    `json:"host"`
	TLS       bool      `json:"tls"`
}

// deliveryPage is a page of the delivery log, newest first.
type deliveryPage struct {
	Deliveries []delivery `json:"deliveries"`
	HasMore    bool       `json:"has_more"`
}

// myOutboundStatus answers the caller's own sending state.
func (s *Server) myOutboundStatus(w http.ResponseWriter, r *http.Request) error {
	return s.writeOutboundStatus(w, r, caller(r).Address)
}

// accountStatus answers the sending state of an account of the
// administrator's tenant.
func (s *Server) accountStatus(w http.ResponseWriter, r *http.Request) error {
	account, err := s.tenantAccount(r)
	if err != nil {
		return err
	}
	return s.writeOutboundStatus(w, r, account)
}

// releaseAccount lifts the suspension of an account of the administrator's
// tenant; who and why go to the policy's history and the admin log.
func (s *Server) releaseAccount(w http.ResponseWriter, r *http.Request) error {
	var req releaseRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	why := strings.TrimSpace(req.Why)
	if why == "" || len(why) > maxWhyBytes {
		return problem(http.StatusBadRequest, "why", "why is required: say why the account may send again (at most %d bytes)", maxWhyBytes)
	}
	account, err := s.tenantAccount(r)
	if err != nil {
		return err
	}
	err = s.outbound.Release(r.Context(), account, caller(r).Address, why)
	if errors.Is(err, policy.ErrNotSuspended) {
		return problem(http.StatusConflict, "account", "%s is not suspended", account)
	}
	if err != nil {
		return err
	}
	s.adminEvent(r, "admin.outbound.release", map[string]any{"account": account, "why": why})
	return s.writeOutboundStatus(w, r, account)
}

// tenantAccount reads the account in the path: a mail user of the
// administrator's tenant. Any other answers 404, as if it did not exist.
func (s *Server) tenantAccount(r *http.Request) (string, error) {
	if s.outbound == nil {
		return "", errNotSending
	}
	account, err := accounts.Normalize(r.PathValue("account"))
	if err != nil {
		return "", problem(http.StatusBadRequest, "account", "%v", err)
	}
	var ours bool
	if err := s.pool.QueryRow(r.Context(), `SELECT EXISTS (SELECT 1 FROM mail_users WHERE address = $1 AND tenant_id = $2)`,
		account, caller(r).TenantID).Scan(&ours); err != nil {
		return "", err
	}
	if !ours {
		return "", problem(http.StatusNotFound, "account", "no mail user %s in your tenant", account)
	}
	return account, nil
}

func (s *Server) writeOutboundStatus(w http.ResponseWriter, r *http.Request, account string) error {
	if s.outbound == nil {
		return errNotSending
	}
	st, err := s.outbound.Status(r.Context(), account)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, outboundStatus{Account: st.Account, State: st.State, Reason: st.Reason, By: st.By,
		SoftUntil: nonZero(st.SoftUntil), SuspendedAt: nonZero(st.SuspendedAt)})
	return nil
}

// nonZero is t, or nil when t is zero.
func nonZero(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// myDeliveries answers the delivery log of the caller's mail.
func (s *Server) myDeliveries(w http.ResponseWriter, r *http.Request) error {
	return s.deliveries(w, r, caller(r).ID)
}

// tenantDeliveries answers the delivery log of the administrator's tenant.
func (s *Server) tenantDeliveries(w http.ResponseWriter, r *http.Request) error {
	return s.deliveries(w, r, 0)
}

// deliveries answers a page of the caller's tenant's delivery log, only
// userID's mail unless it is 0; has_more comes from fetching one more.
func (s *Server) deliveries(w http.ResponseWriter, r *http.Request, userID int64) error {
	if s.outbound == nil {
		return errNotSending
	}
	limit, err := queryInt(r, "limit", defaultListLimit, 1, queue.MaxLogPage-1)
	if err != nil {
		return err
	}
	offset, err := queryInt(r, "offset", 0, 0, maxLogOffset)
	if err != nil {
		return err
	}
	list, err := s.outbound.Log(r.Context(), caller(r).TenantID, userID, int(limit)+1, int(offset))
	if err != nil {
		return err
	}
	page := deliveryPage{Deliveries: make([]delivery, 0, len(list))}
	list, page.HasMore = trimPage(list, int(limit))
	for _, e := range list {
		page.Deliveries = append(page.Deliveries, delivery(e))
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}
