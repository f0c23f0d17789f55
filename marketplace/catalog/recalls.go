package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/marketplace/pack"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	marketplacev1 "github.com/mairust/mairust/proto/mairust/marketplace/v1"
)

// maxRecallVersions bounds the versions one recall names.
const maxRecallVersions = 100

// ReadRecalls returns the recalls in force as the agents get them: one
// entry per recalled version ("" for every version), oldest recall first.
func ReadRecalls(ctx context.Context, tx pgx.Tx) ([]*agentsv1.Recall, error) {
	rows, _ := tx.Query(ctx, `SELECT plugin_id, versions, reason FROM recalls WHERE withdrawn_at IS NULL ORDER BY id`)
	var out []*agentsv1.Recall
	var (
		plugin, reason string
		versions       []string
	)
	_, err := pgx.ForEachRow(rows, []any{&plugin, &versions, &reason}, func() error {
		if len(versions) == 0 {
			versions = []string{""}
		}
		for _, v := range versions {
			out = append(out, &agentsv1.Recall{PluginId: plugin, Version: v, Reason: reason})
		}
		return nil
	})
	return out, err
}

// PackRecalls converts recalls for pack's signature functions.
func PackRecalls(list []*agentsv1.Recall) []pack.Recall {
	out := make([]pack.Recall, len(list))
	for i, r := range list {
		out[i] = pack.Recall{PluginID: r.PluginId, Version: r.Version, Reason: r.Reason}
	}
	return out
}

// resign raises the recall list's version, signs it, and tells every
// agent.
func (s *Service) resign(ctx context.Context, tx pgx.Tx) (int64, error) {
	var version int64
	if err := tx.QueryRow(ctx, `UPDATE recall_list SET version = version + 1 RETURNING version`).Scan(&version); err != nil {
		return 0, err
	}
	list, err := ReadRecalls(ctx, tx)
	if err != nil {
		return 0, err
	}
	sig, err := pack.SignRecalls(s.signer, version, PackRecalls(list))
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `UPDATE recall_list SET signature = $1, key_id = $2`, sig, s.signer.KeyID()); err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, `SELECT configs_changed()`)
	return version, err
}

// reviewerWithKey runs fn for a reviewer, when the marketplace can sign.
func (s *Service) reviewerWithKey(ctx context.Context, fn func(tx pgx.Tx, c caller) error) error {
	if s.signer == nil {
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("the marketplace has no signing key (marketplace.signing_key_file or MAIRUST_MARKETPLACE_KEY): recalls cannot be signed"))
	}
	return s.asReviewer(ctx, fn)
}

// RecallPlugin recalls a plugin or some of its versions: the signed list
// reaches every agent through its configuration at once, and the admins of
// the tenants that installed it are mailed (a reviewer).
func (s *Service) RecallPlugin(ctx context.Context, req *connect.Request[marketplacev1.RecallPluginRequest]) (*connect.Response[marketplacev1.RecallPluginResponse], error) {
	m := req.Msg
	switch {
	case strings.TrimSpace(m.Reason) == "" || len(m.Reason) > maxNoteLen:
		return nil, accounts.InvalidArgument("reason", fmt.Errorf("say why, in 1 to %d bytes: the agents' administrators read it", maxNoteLen))
	case len(m.Versions) > maxRecallVersions:
		return nil, accounts.InvalidArgument("versions", fmt.Errorf("at most %d; none recalls every version", maxRecallVersions))
	}
	resp := &marketplacev1.RecallPluginResponse{}
	var admins []string
	err := s.reviewerWithKey(ctx, func(tx pgx.Tx, c caller) error {
		var known bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM plugins WHERE id = $1)`, m.PluginId).Scan(&known); err != nil {
			return err
		}
		if !known {
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("no plugin %q in the marketplace", m.PluginId))
		}
		versions := append([]string{}, slices.Compact(slices.Sorted(slices.Values(m.Versions)))...) // never NULL
		var at time.Time
		r := &marketplacev1.RecallEntry{PluginId: m.PluginId, Versions: versions, Reason: m.Reason}
		if err := tx.QueryRow(ctx, `INSERT INTO recalls (plugin_id, versions, reason, created_by) VALUES ($1, $2, $3, $4) RETURNING id, created_at`,
			m.PluginId, versions, m.Reason, c.id).Scan(&r.Id, &at); err != nil {
			return err
		}
		r.RecalledAt = timestamppb.New(at)
		resp.Recall = r
		var err error
		if resp.RecallVersion, err = s.resign(ctx, tx); err != nil {
			return err
		}
		admins, err = installersAdmins(ctx, tx, m.PluginId, versions)
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	s.log.Warn("plugin recalled", "plugin", m.PluginId, "versions", m.Versions, "recall_version", resp.RecallVersion, "reason", m.Reason)
	s.mailRecall(ctx, admins, resp.Recall)
	return connect.NewResponse(resp), nil
}

// installersAdmins returns the addresses of the owners and admins of the
// tenants that installed plugin (one of versions; none: any).
func installersAdmins(ctx context.Context, tx pgx.Tx, plugin string, versions []string) ([]string, error) {
	rows, _ := tx.Query(ctx, `SELECT DISTINCT a.email FROM installers_admins($1, $2) a ORDER BY 1`, plugin, versions)
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// mailRecall tells the admins of the tenants that installed a recalled
// plugin; failures are logged.
func (s *Service) mailRecall(ctx context.Context, to []string, r *marketplacev1.RecallEntry) {
	if s.mail == nil {
		return
	}
	versions := "every version"
	if len(r.Versions) > 0 {
		versions = "version " + strings.Join(r.Versions, ", ")
	}
	subject := "MaiRust security alert: plugin " + r.PluginId + " recalled"
	body := fmt.Sprintf("The plugin %s (%s), installed on your agents, was found to be dangerous and is recalled:\n\n%s\n\nDisable or remove it. Agents with plugins.auto_disable_recalled on have disabled it already.\n", r.PluginId, versions, r.Reason)
	for _, addr := range to {
		if err := s.mail.Send(ctx, addr, subject, body); err != nil {
			s.log.Error("recall mail not sent", "to", addr, "error", err)
		}
	}
}

// WithdrawRecall takes a recall back; the agents get the new list (a
// reviewer).
func (s *Service) WithdrawRecall(ctx context.Context, req *connect.Request[marketplacev1.WithdrawRecallRequest]) (*connect.Response[marketplacev1.WithdrawRecallResponse], error) {
	resp := &marketplacev1.WithdrawRecallResponse{}
	err := s.reviewerWithKey(ctx, func(tx pgx.Tx, c caller) error {
		tag, err := tx.Exec(ctx, `UPDATE recalls SET withdrawn_at = now(), withdrawn_by = $2 WHERE id = $1 AND withdrawn_at IS NULL`, req.Msg.Id, c.id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("no recall %d in force", req.Msg.Id))
		}
		resp.RecallVersion, err = s.resign(ctx, tx)
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	s.log.Warn("recall withdrawn", "recall", req.Msg.Id, "recall_version", resp.RecallVersion)
	return connect.NewResponse(resp), nil
}

// ListRecalls lists the recalls in force (anyone).
func (s *Service) ListRecalls(ctx context.Context, _ *connect.Request[marketplacev1.ListRecallsRequest]) (*connect.Response[marketplacev1.ListRecallsResponse], error) {
	resp := &marketplacev1.ListRecallsResponse{}
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT version FROM recall_list`).Scan(&resp.RecallVersion); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT id, plugin_id, versions, reason, created_at FROM recalls WHERE withdrawn_at IS NULL ORDER BY id`)
		var err error
		resp.Recalls, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*marketplacev1.RecallEntry, error) {
			e := &marketplacev1.RecallEntry{}
			var at time.Time
			err := r.Scan(&e.Id, &e.PluginId, &e.Versions, &e.Reason, &at)
			e.RecalledAt = timestamppb.New(at)
			return e, err
		})
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(resp), nil
}
