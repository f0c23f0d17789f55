package monitor

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/mailer"
	monitorv1 "github.com/mairust/mairust/proto/mairust/monitor/v1"
)

// Bounds of a notice.
const (
	maxFactors   = 8
	maxFactorLen = 64   // bytes of a factor's name
	maxReasonLen = 1000 // bytes
	maxAge       = 7 * 24 * time.Hour
	maxAhead     = 5 * time.Minute
)

// notice is a checked notice, in the form it is stored in.
type notice struct {
	account string // lower case
	kind    string // "warn" or "suspend"
	score   float64
	factors map[string]float64
	reason  string
	at      time.Time // to the microsecond, as PostgreSQL keeps it
}

// kinds are the stored names of the proto's kinds.
var kinds = map[monitorv1.NoticeKind]string{
	monitorv1.NoticeKind_NOTICE_KIND_WARN:    "warn",
	monitorv1.NoticeKind_NOTICE_KIND_SUSPEND: "suspend",
}

// unit reports whether f is in [0, 1] (NaN is not).
func unit(f float64) bool { return f >= 0 && f <= 1 }

// parseNotice checks a reported notice as of now; its id, tenant and
// agent are ignored (the caller's credential gives them). An error names
// the field.
func parseNotice(m *monitorv1.Notice, now time.Time) (notice, error) {
	if m == nil {
		return notice{}, accounts.InvalidArgument("notice", errors.New("missing: send the warning or suspension to report"))
	}
	account, err := mailer.Address(m.Account)
	if err != nil {
		return notice{}, accounts.InvalidArgument("notice.account", err)
	}
	kind, ok := kinds[m.Kind]
	if !ok {
		return notice{}, accounts.InvalidArgument("notice.kind", fmt.Errorf("%v: give NOTICE_KIND_WARN or NOTICE_KIND_SUSPEND", m.Kind))
	}
	if !unit(m.Score) {
		return notice{}, accounts.InvalidArgument("notice.score", fmt.Errorf("%v is not in [0, 1]", m.Score))
	}
	if len(m.Factors) > maxFactors {
		return notice{}, accounts.InvalidArgument("notice.factors", fmt.Errorf("%d factors: send at most %d", len(m.Factors), maxFactors))
	}
	for name, v := range m.Factors {
		if name == "" || len(name) > maxFactorLen || strings.ContainsRune(name, 0) {
			return notice{}, accounts.InvalidArgument("notice.factors", fmt.Errorf("factor name %q: give 1 to %d bytes, no NUL", name, maxFactorLen))
		}
		if !unit(v) {
			return notice{}, accounts.InvalidArgument("notice.factors", fmt.Errorf("%s = %v is not in [0, 1]", name, v))
		}
	}
	if len(m.Reason) > maxReasonLen {
		return notice{}, accounts.InvalidArgument("notice.reason", fmt.Errorf("%d bytes: send at most %d", len(m.Reason), maxReasonLen))
	}
	if strings.ContainsRune(m.Reason, 0) {
		return notice{}, accounts.InvalidArgument("notice.reason", errors.New("contains a NUL character"))
	}
	if m.At == nil || m.At.CheckValid() != nil {
		return notice{}, accounts.InvalidArgument("notice.at", errors.New("missing or invalid: give the time of the decision"))
	}
	at := m.At.AsTime().Truncate(time.Microsecond)
	if at.Before(now.Add(-maxAge)) || at.After(now.Add(maxAhead)) {
		return notice{}, accounts.InvalidArgument("notice.at", fmt.Errorf("%s is not within the last 7 days nor at most 5 minutes ahead of the control plane's clock (%s): check the agent's clock",
			at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
	}
	return notice{account: account, kind: kind, score: m.Score, factors: m.Factors, reason: m.Reason, at: at}, nil
}

// noticeColumns are the columns scanNotice reads, in its order.
const noticeColumns = `id, tenant_id, coalesce(agent_id::text, ''), account, kind, score, factors, reason, at`

// scanNotice reads a row of noticeColumns.
func scanNotice(row pgx.Row) (*monitorv1.Notice, error) {
	n := &monitorv1.Notice{}
	var kind string
	var at time.Time
	if err := row.Scan(&n.Id, &n.TenantId, &n.AgentId, &n.Account, &kind, &n.Score, &n.Factors, &n.Reason, &at); err != nil {
		return nil, err
	}
	for k, name := range kinds {
		if name == kind {
			n.Kind = k
		}
	}
	n.At = timestamppb.New(at)
	return n, nil
}

// factorList writes factors as "name value" pairs in name order.
func factorList(f map[string]float64) string {
	names := make([]string, 0, len(f))
	for name := range f {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %.2f", name, f[name])
	}
	return strings.Join(parts, ", ")
}
