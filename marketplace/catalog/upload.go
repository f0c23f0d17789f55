package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/store"
	"github.com/mairust/mairust/marketplace/pack"
	"github.com/mairust/mairust/marketplace/review"
	marketplacev1 "github.com/mairust/mairust/proto/mairust/marketplace/v1"
)

// UploadPath takes a developer's package: POST the .mairust-plugin file
// as the body, with the console session as the bearer token.
const UploadPath = "/marketplace/upload"

// httpError is an answer to an upload or download: status and message.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fail answers err: an *httpError as it says, anything else as a 500.
func (s *Service) fail(w http.ResponseWriter, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		s.log.Error("marketplace request failed", "error", err)
		he = &httpError{http.StatusInternalServerError, "the marketplace could not do this now: try again later"}
	}
	writeJSON(w, he.status, map[string]string{"error": he.msg})
}

// UploadResult is the answer to an upload: the submission and its review.
type UploadResult struct {
	PluginID string           `json:"plugin_id"`
	Version  string           `json:"version"`
	State    string           `json:"state"`
	Findings []review.Finding `json:"findings"`
	Warnings []string         `json:"warnings,omitempty"`
}

// Upload serves UploadPath: the package is read within the limits, its
// files checked against its manifest, reviewed, and stored pending a
// reviewer's decision.
func (s *Service) Upload() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			s.fail(w, &httpError{http.StatusMethodNotAllowed, "POST the .mairust-plugin file here"})
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		p, err := s.keys.Parse(tok)
		if !ok || err != nil || p.Kind != auth.KindSession {
			s.fail(w, &httpError{http.StatusUnauthorized, "log in to the console and send its session token (Authorization: Bearer)"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxPackageBytes))
		if err != nil {
			s.fail(w, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the package is larger than %d MiB (marketplace.max_package_bytes) or was cut off", s.cfg.MaxPackageBytes>>20)})
			return
		}
		res, err := s.submit(r.Context(), p.AccountID, body)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, res)
	})
}

// submit checks, reviews and stores a package from account.
func (s *Service) submit(ctx context.Context, account string, body []byte) (UploadResult, error) {
	p, err := pack.Open(bytes.NewReader(body), pack.Limits{MaxTotalBytes: s.cfg.MaxPackageBytes})
	if err != nil {
		return UploadResult{}, &httpError{http.StatusBadRequest, "not a valid package: " + err.Error()}
	}
	if err := p.CheckFiles(); err != nil {
		return UploadResult{}, &httpError{http.StatusBadRequest, "the package does not match its manifest: " + err.Error()}
	}
	if p.Marketplace != nil {
		return UploadResult{}, &httpError{http.StatusBadRequest, "the package carries a marketplace signature already: upload it as packed (mairust plugin pack), the marketplace countersigns what it approves"}
	}
	files := make([]review.File, 0, len(p.Manifest.Files))
	for _, f := range p.Manifest.Files {
		data, _ := p.ReadFile(f.Path)
		mode, _ := strconv.ParseUint(f.Mode, 8, 32)
		files = append(files, review.File{Path: f.Path, Mode: fs.FileMode(mode), Data: data})
	}
	report := review.Analyze(p.Plugin, files, s.vulns)
	reportJSON, err := json.Marshal(report)
	if err != nil {
		return UploadResult{}, err
	}
	readme, _ := p.ReadFile(pack.ReadmeName)
	m := p.Manifest
	sum := sha256.Sum256(body)
	err = s.st.Tx(ctx, store.Scope{AccountID: account}, func(tx pgx.Tx) error {
		var owner string
		err := tx.QueryRow(ctx, `INSERT INTO plugins (id, developer, name, description) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO UPDATE SET id = excluded.id RETURNING developer`, m.ID, account, p.Plugin.Name, string(readme)).Scan(&owner)
		if err != nil {
			return err
		}
		if owner != account {
			return &httpError{http.StatusForbidden, fmt.Sprintf("the plugin id %q belongs to another developer: choose another id in plugin.toml", m.ID)}
		}
		tag, err := tx.Exec(ctx, `INSERT INTO plugin_versions (plugin_id, version, min_mairust_version, package, sha256, size, permissions, report, worst)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
			m.ID, m.Version, m.MinMairustVersion, body, hex.EncodeToString(sum[:]), len(body), pack.DescribePermissions(p.Plugin.Permissions), reportJSON, string(report.Worst()))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return &httpError{http.StatusConflict, fmt.Sprintf("%s %s was submitted already: raise the version in plugin.toml and pack again", m.ID, m.Version)}
		}
		return nil
	})
	if err != nil {
		return UploadResult{}, err
	}
	s.log.Info("plugin submitted", "plugin", m.ID, "version", m.Version, "account_id", account, "worst", report.Worst(), "findings", len(report.Findings))
	return UploadResult{PluginID: m.ID, Version: m.Version, State: "pending", Findings: report.Findings, Warnings: p.Warnings()}, nil
}

// Publish submits a package as account and approves it at once, as a
// reviewer would: for the operator's own plugins (the all-in-one's
// examples). It reports false when that version was there already, which
// it leaves as it is.
func (s *Service) Publish(ctx context.Context, account string, body []byte) (bool, error) {
	if s.signer == nil {
		return false, errors.New("the marketplace has no signing key: nothing can be published")
	}
	res, err := s.submit(ctx, account, body)
	var he *httpError
	if errors.As(err, &he) && he.status == http.StatusConflict {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	req := &marketplacev1.ReviewSubmissionRequest{PluginId: res.PluginID, Version: res.Version, Approve: true, Note: "published by the operator"}
	return true, s.st.Tx(ctx, store.Scope{AccountID: account}, func(tx pgx.Tx) error { return s.approve(ctx, tx, caller{id: account}, req) })
}
