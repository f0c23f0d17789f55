package link

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Kind is a kind of object the control plane may manage.
type Kind string

// The kinds the control plane manages, by table.
const (
	KindDomain   Kind = "domains"
	KindMailUser Kind = "mail_users"
)

// ErrManaged is returned by CheckLocal for an object the control plane
// manages.
var ErrManaged = errors.New("managed by the control plane: change it in the console, from where it is pushed to this agent")

// Querier runs a query: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CheckLocal returns an error wrapping ErrManaged when the domain or mail
// user id is managed by the control plane, which makes it read-only for
// the agent's local administration; nil for a local object, or one that
// does not exist.
func CheckLocal(ctx context.Context, q Querier, kind Kind, id int64) error {
	if kind != KindDomain && kind != KindMailUser {
		return fmt.Errorf("link: %q is not a kind the control plane manages", kind)
	}
	var managed bool
	err := q.QueryRow(ctx, `SELECT managed_by_controlplane FROM `+string(kind)+` WHERE id = $1`, id).Scan(&managed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("link: is %s %d managed by the control plane: %w", kind, id, err)
	case managed:
		name := map[Kind]string{KindDomain: "domain", KindMailUser: "mail user"}[kind]
		return fmt.Errorf("%s %d is %w", name, id, ErrManaged)
	}
	return nil
}
