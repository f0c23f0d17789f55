package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/store"
	marketplacev1 "github.com/mairust/mairust/proto/mairust/marketplace/v1"
)

// Bounds of a storefront search.
const (
	maxQueryLen   = 200
	maxQueryWords = 10
)

// approved returns the approved versions of the plugins of ids (all:
// nil), newest first per plugin.
func (s *Service) approved(ctx context.Context, tx pgx.Tx, ids []string) (map[string][]*marketplacev1.PluginVersion, error) {
	rows, _ := tx.Query(ctx, `SELECT plugin_id, version, min_mairust_version, permissions, worst, CASE jsonb_typeof(report->'findings') WHEN 'array' THEN jsonb_array_length(report->'findings') ELSE 0 END, reviewed_at, sha256, size
		FROM plugin_versions WHERE state = 'approved' AND ($1::text[] IS NULL OR plugin_id = ANY($1))`, ids)
	out := map[string][]*marketplacev1.PluginVersion{}
	_, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		pv := &marketplacev1.PluginVersion{}
		var (
			plugin   string
			perms    []byte
			reviewed time.Time
		)
		if err := r.Scan(&plugin, &pv.Version, &pv.MinMairustVersion, &perms, &pv.ReviewWorst, &pv.ReviewFindings, &reviewed, &pv.Sha256, &pv.Size); err != nil {
			return struct{}{}, err
		}
		pv.Permissions, pv.ApprovedAt, pv.DownloadUrl = permissionsOf(perms), timestamppb.New(reviewed), s.downloadURL(plugin, pv.Version)
		out[plugin] = append(out[plugin], pv)
		return struct{}{}, nil
	})
	for _, vs := range out {
		slices.SortFunc(vs, func(a, b *marketplacev1.PluginVersion) int { return compareVersions(b.Version, a.Version) })
	}
	return out, err
}

// compareVersions orders semantic versions (unparsable ones as text).
func compareVersions(a, b string) int {
	va, ea := manifest.ParseVersion(a)
	vb, eb := manifest.ParseVersion(b)
	if ea != nil || eb != nil {
		return strings.Compare(a, b)
	}
	return va.Compare(vb)
}

// pluginColumns are what scanPlugin reads, from plugins p and the
// developer's account a.
const pluginColumns = `p.id, p.name, p.description, a.email`

func scanPlugin(r pgx.Row) (*marketplacev1.Plugin, error) {
	p := &marketplacev1.Plugin{}
	return p, r.Scan(&p.Id, &p.Name, &p.Description, &p.Developer)
}

// ListPlugins lists the plugins with an approved version whose id, name or
// description has every word of the query, by name.
func (s *Service) ListPlugins(ctx context.Context, req *connect.Request[marketplacev1.ListPluginsRequest]) (*connect.Response[marketplacev1.ListPluginsResponse], error) {
	q := req.Msg.Query
	words := strings.Fields(strings.ToLower(q))
	if len(q) > maxQueryLen || len(words) > maxQueryWords {
		return nil, accounts.InvalidArgument("query", fmt.Errorf("at most %d words and %d bytes", maxQueryWords, maxQueryLen))
	}
	patterns := make([]string, len(words))
	for i, w := range words {
		patterns[i] = "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(w) + "%"
	}
	resp := &marketplacev1.ListPluginsResponse{}
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+pluginColumns+` FROM plugins p JOIN accounts a ON a.id = p.developer
			WHERE EXISTS (SELECT 1 FROM plugin_versions v WHERE v.plugin_id = p.id AND v.state = 'approved')
				AND NOT EXISTS (SELECT 1 FROM unnest($1::text[]) w WHERE lower(p.id || ' ' || p.name || ' ' || p.description) NOT LIKE w)
			ORDER BY lower(p.name), p.id LIMIT 500`, patterns)
		var err error
		if resp.Plugins, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*marketplacev1.Plugin, error) { return scanPlugin(r) }); err != nil {
			return err
		}
		versions, err := s.approved(ctx, tx, nil)
		for _, p := range resp.Plugins {
			if vs := versions[p.Id]; len(vs) > 0 {
				p.LatestVersion, p.Permissions = vs[0].Version, vs[0].Permissions
			}
		}
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(resp), nil
}

// GetPlugin returns a plugin's page: its description and approved
// versions, newest first. A plugin without one is not found.
func (s *Service) GetPlugin(ctx context.Context, req *connect.Request[marketplacev1.GetPluginRequest]) (*connect.Response[marketplacev1.GetPluginResponse], error) {
	resp := &marketplacev1.GetPluginResponse{}
	err := s.st.Tx(ctx, store.Scope{}, func(tx pgx.Tx) error {
		versions, err := s.approved(ctx, tx, []string{req.Msg.PluginId})
		if err != nil {
			return err
		}
		resp.Versions = versions[req.Msg.PluginId]
		if len(resp.Versions) == 0 {
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("no plugin %q in the marketplace", req.Msg.PluginId))
		}
		resp.Plugin, err = scanPlugin(tx.QueryRow(ctx, `SELECT `+pluginColumns+` FROM plugins p JOIN accounts a ON a.id = p.developer WHERE p.id = $1`, req.Msg.PluginId))
		resp.Plugin.LatestVersion, resp.Plugin.Permissions = resp.Versions[0].Version, resp.Versions[0].Permissions
		return err
	})
	if err != nil {
		return nil, accounts.Fault(err)
	}
	return connect.NewResponse(resp), nil
}

// DownloadPrefix serves the approved packages:
// <DownloadPrefix><plugin>/<version>.mairust-plugin.
const DownloadPrefix = "/marketplace/packages/"

// downloadURL is where an approved package is downloaded.
func (s *Service) downloadURL(plugin, version string) string {
	return s.baseURL + DownloadPath(plugin, version)
}

// Download serves DownloadPrefix: approved packages only, to anyone (the
// agents verify the signatures).
func (s *Service) Download() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, DownloadPrefix)
		plugin, file, ok := strings.Cut(rest, "/")
		version, isPkg := strings.CutSuffix(file, ".mairust-plugin")
		if r.Method != http.MethodGet && r.Method != http.MethodHead || !ok || !isPkg || plugin == "" || version == "" {
			s.fail(w, &httpError{http.StatusNotFound, "no such package: GET " + DownloadPrefix + "<plugin>/<version>.mairust-plugin"})
			return
		}
		var body []byte
		var sum string
		err := s.st.Tx(r.Context(), store.Scope{}, func(tx pgx.Tx) error {
			return tx.QueryRow(r.Context(), `SELECT package, sha256 FROM plugin_versions WHERE plugin_id = $1 AND version = $2 AND state = 'approved'`,
				plugin, version).Scan(&body, &sum)
		})
		if errors.Is(err, pgx.ErrNoRows) {
			s.fail(w, &httpError{http.StatusNotFound, fmt.Sprintf("no approved package %s %s", plugin, version)})
			return
		}
		if err != nil {
			s.fail(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		w.Header().Set("ETag", `"`+sum+`"`)
		w.Header().Set("Content-Disposition", `attachment; filename="`+plugin+"-"+version+`.mairust-plugin"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}
