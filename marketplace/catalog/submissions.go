package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/marketplace/pack"
	"github.com/mairust/mairust/marketplace/review"
	marketplacev1 "github.com/mairust/mairust/proto/mairust/marketplace/v1"
)

// states maps a version's state to the API's.
var states = map[string]marketplacev1.VersionState{"pending": marketplacev1.VersionState_VERSION_STATE_PENDING,
	"approved": marketplacev1.VersionState_VERSION_STATE_APPROVED, "rejected": marketplacev1.VersionState_VERSION_STATE_REJECTED}

// submissionColumns are what scanSubmission reads, from plugin_versions v
// joined with plugins p and the developer's account a.
const submissionColumns = `v.plugin_id, v.version, v.state, a.email, v.submitted_at, v.report, v.review_note, v.reviewed_at, v.permissions, v.min_mairust_version`

const submissionFrom = ` FROM plugin_versions v JOIN plugins p ON p.id = v.plugin_id JOIN accounts a ON a.id = p.developer `

// scanSubmission reads a submission and its developer's account id.
func scanSubmission(r pgx.Row) (*marketplacev1.Submission, error) {
	var (
		sub       marketplacev1.Submission
		state     string
		submitted time.Time
		reviewed  *time.Time
		report    review.Report
	)
	if err := r.Scan(&sub.PluginId, &sub.Version, &state, &sub.Developer, &submitted, &report, &sub.ReviewNote, &reviewed, &sub.Permissions, &sub.MinMairustVersion); err != nil {
		return nil, err
	}
	sub.State, sub.SubmittedAt = states[state], timestamppb.New(submitted)
	if reviewed != nil {
		sub.ReviewedAt = timestamppb.New(*reviewed)
	}
	for _, f := range report.Findings {
		sub.Findings = append(sub.Findings, &marketplacev1.Finding{Severity: string(f.Severity), Code: f.Code, Path: f.Path, Message: f.Message})
	}
	return &sub, nil
}

// ListSubmissions lists the caller's submissions, newest first, or for a
// reviewer asking for them, those pending, oldest first.
func (s *Service) ListSubmissions(ctx context.Context, req *connect.Request[marketplacev1.ListSubmissionsRequest]) (*connect.Response[marketplacev1.ListSubmissionsResponse], error) {
	resp := &marketplacev1.ListSubmissionsResponse{}
	err := s.asAccount(ctx, func(tx pgx.Tx, c caller) error {
		q, args := `SELECT `+submissionColumns+submissionFrom+`WHERE p.developer = $1 ORDER BY v.submitted_at DESC LIMIT 500`, []any{c.id}
		if req.Msg.Pending {
			if !c.reviewer {
				return errNotReviewer
			}
			q, args = `SELECT `+submissionColumns+submissionFrom+`WHERE v.state = 'pending' ORDER BY v.submitted_at LIMIT 500`, nil
		}
		rows, _ := tx.Query(ctx, q, args...)
		var err error
		resp.Submissions, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*marketplacev1.Submission, error) { return scanSubmission(r) })
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(resp), nil
}

// errNotReviewer refuses a reviewer's call to anyone else.
var errNotReviewer = connect.NewError(connect.CodePermissionDenied, errors.New("only the marketplace's reviewers (marketplace.reviewers) may do this"))

// asReviewer runs fn for a reviewer; anyone else gets errNotReviewer.
func (s *Service) asReviewer(ctx context.Context, fn func(tx pgx.Tx, c caller) error) error {
	return s.asAccount(ctx, func(tx pgx.Tx, c caller) error {
		if !c.reviewer {
			return errNotReviewer
		}
		return fn(tx, c)
	})
}

// findSubmission returns a submission for its developer or a reviewer;
// anyone else gets NotFound.
func (s *Service) findSubmission(ctx context.Context, tx pgx.Tx, c caller, plugin, version string, lock bool) (*marketplacev1.Submission, error) {
	q := `SELECT ` + submissionColumns + submissionFrom + `WHERE v.plugin_id = $1 AND v.version = $2 AND (p.developer = $3 OR $4)`
	if lock {
		q += ` FOR UPDATE OF v`
	}
	sub, err := scanSubmission(tx.QueryRow(ctx, q, plugin, version, c.id, c.reviewer))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no submission %s %s of yours", plugin, version))
	}
	return sub, err
}

// GetSubmission returns a submission with its review (its developer or a
// reviewer).
func (s *Service) GetSubmission(ctx context.Context, req *connect.Request[marketplacev1.GetSubmissionRequest]) (*connect.Response[marketplacev1.GetSubmissionResponse], error) {
	var sub *marketplacev1.Submission
	err := s.asAccount(ctx, func(tx pgx.Tx, c caller) (err error) {
		sub, err = s.findSubmission(ctx, tx, c, req.Msg.PluginId, req.Msg.Version, false)
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(&marketplacev1.GetSubmissionResponse{Submission: sub}), nil
}

// maxNoteLen bounds a reviewer's note.
const maxNoteLen = 4000

// ReviewSubmission approves a pending submission, countersigning its
// package with the marketplace's key, or rejects it with a note (a
// reviewer).
func (s *Service) ReviewSubmission(ctx context.Context, req *connect.Request[marketplacev1.ReviewSubmissionRequest]) (*connect.Response[marketplacev1.ReviewSubmissionResponse], error) {
	m := req.Msg
	switch {
	case !m.Approve && m.Note == "":
		return nil, accounts.InvalidArgument("note", errors.New("say why the submission is rejected: the developer reads it"))
	case len(m.Note) > maxNoteLen:
		return nil, accounts.InvalidArgument("note", fmt.Errorf("at most %d bytes", maxNoteLen))
	case m.Approve && s.signer == nil:
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the marketplace has no signing key (marketplace.signing_key_file or MAIRUST_MARKETPLACE_KEY): nothing can be approved"))
	}
	var sub *marketplacev1.Submission
	err := s.asReviewer(ctx, func(tx pgx.Tx, c caller) error {
		var err error
		if sub, err = s.findSubmission(ctx, tx, c, m.PluginId, m.Version, true); err != nil {
			return err
		}
		if sub.State != marketplacev1.VersionState_VERSION_STATE_PENDING {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%s %s was reviewed already", m.PluginId, m.Version))
		}
		if m.Approve {
			err = s.approve(ctx, tx, c, m)
		} else {
			_, err = tx.Exec(ctx, `UPDATE plugin_versions SET state = 'rejected', reviewed_by = $3, reviewed_at = now(), review_note = $4
				WHERE plugin_id = $1 AND version = $2`, m.PluginId, m.Version, c.id, m.Note)
		}
		if err != nil {
			return err
		}
		sub, err = s.findSubmission(ctx, tx, c, m.PluginId, m.Version, false)
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	s.log.Info("plugin reviewed", "plugin", m.PluginId, "version", m.Version, "approved", m.Approve)
	return connect.NewResponse(&marketplacev1.ReviewSubmissionResponse{Submission: sub}), nil
}

// approve countersigns the submitted package with the marketplace's key
// (over its manifest and developer signature), stores it approved, and
// makes its name and README the plugin's.
func (s *Service) approve(ctx context.Context, tx pgx.Tx, c caller, m *marketplacev1.ReviewSubmissionRequest) error {
	var body []byte
	if err := tx.QueryRow(ctx, `SELECT package FROM plugin_versions WHERE plugin_id = $1 AND version = $2`, m.PluginId, m.Version).Scan(&body); err != nil {
		return err
	}
	p, err := pack.Open(bytes.NewReader(body), pack.Limits{MaxTotalBytes: s.cfg.MaxPackageBytes})
	if err != nil {
		return fmt.Errorf("the stored package of %s %s: %w", m.PluginId, m.Version, err)
	}
	if err := p.Sign(pack.Marketplace, s.signer); err != nil {
		return err
	}
	var signed bytes.Buffer
	if err := p.Write(&signed); err != nil {
		return err
	}
	sum := sha256.Sum256(signed.Bytes())
	if _, err := tx.Exec(ctx, `UPDATE plugin_versions SET state = 'approved', reviewed_by = $3, reviewed_at = now(), review_note = $4,
		package = $5, sha256 = $6, size = $7 WHERE plugin_id = $1 AND version = $2`,
		m.PluginId, m.Version, c.id, m.Note, signed.Bytes(), hex.EncodeToString(sum[:]), signed.Len()); err != nil {
		return err
	}
	readme, _ := p.ReadFile(pack.ReadmeName)
	_, err = tx.Exec(ctx, `UPDATE plugins SET name = $2, description = $3 WHERE id = $1`, m.PluginId, p.Plugin.Name, string(readme))
	return err
}

// permissionsOf decodes a stored list of permissions in words.
func permissionsOf(b []byte) []string {
	var out []string
	json.Unmarshal(b, &out)
	return out
}
