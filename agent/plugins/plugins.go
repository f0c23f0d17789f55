// Package plugins installs plugins from a local directory and keeps their
// rows in PostgreSQL: install, list, enable, disable and remove, behind
// `mairust plugin` and the admin API. It does not run plugins (package
// hooks does); marketplace packages come later.
package plugins

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/internal/version"
)

// ErrNotInstalled is returned for an id no plugin has.
var ErrNotInstalled = errors.New("no such plugin installed")

// Installed is one installed plugin.
type Installed struct {
	Manifest         *manifest.Manifest // with added permissions applied and SHA256 set from the install
	Enabled          bool
	Settings         map[string]any
	AddedPermissions []string // what --auto-add-permissions added
	Secret           []byte   // signs HTTP requests to the plugin
	InstalledAt      time.Time
}

// ID is the plugin's id.
func (p Installed) ID() string { return p.Manifest.ID }

// Options change an install.
type Options struct {
	AutoAddPermissions bool           // add missing permission dependencies instead of refusing
	Settings           map[string]any // values for the plugin's settings schema
	Disabled           bool           // install without enabling
}

// Install checks the plugin in src (its plugin.toml, permissions and
// settings), copies src to dir/<id> (owned by the installer, readable by
// the plugin's user, who cannot change it), and records it. It returns the plugin
// and what was added to its permissions. Installing an id that is there
// already is refused: remove it first.
func Install(ctx context.Context, pool *pgxpool.Pool, src, dir string, o Options) (Installed, error) {
	m, err := manifest.Load(src)
	if err != nil {
		return Installed{}, err
	}
	p := Installed{Manifest: m, Enabled: !o.Disabled}
	if missing := m.Permissions.Missing(); len(missing) > 0 && o.AutoAddPermissions {
		p.AddedPermissions = m.Permissions.AddMissing()
	}
	if err := manifest.Check(m, version.Number); err != nil {
		return Installed{}, err
	}
	if p.Settings, err = m.CheckSettings(o.Settings); err != nil {
		return Installed{}, err
	}
	raw, err := os.ReadFile(filepath.Join(src, manifest.FileName))
	if err != nil {
		return Installed{}, err
	}
	target := filepath.Join(dir, m.ID)
	if _, err := os.Stat(target); err == nil {
		return Installed{}, fmt.Errorf("%s already exists: remove plugin %s first (mairust plugin remove %s)", target, m.ID, m.ID)
	}
	if err := copyTree(src, target); err != nil {
		os.RemoveAll(target)
		return Installed{}, err
	}
	if m.Command != "" && m.SHA256 == "" {
		if m.SHA256, err = manifest.FileSHA256(filepath.Join(target, m.Command)); err != nil {
			os.RemoveAll(target)
			return Installed{}, err
		}
	}
	m.Dir = target
	p.Secret = make([]byte, 32)
	rand.Read(p.Secret)
	err = pool.QueryRow(ctx, `
		INSERT INTO plugins(id, dir, manifest, command_sha256, secret, enabled, settings, added_permissions)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8) RETURNING installed_at`,
		m.ID, target, string(raw), m.SHA256, hex.EncodeToString(p.Secret), p.Enabled, p.Settings, nonNil(p.AddedPermissions)).Scan(&p.InstalledAt)
	if err != nil {
		os.RemoveAll(target)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return Installed{}, fmt.Errorf("plugin %s is installed already: remove it first (mairust plugin remove %s)", m.ID, m.ID)
		}
		return Installed{}, fmt.Errorf("plugins: record %s: %w", m.ID, err)
	}
	return p, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// List returns every installed plugin, by id.
func List(ctx context.Context, pool *pgxpool.Pool) ([]Installed, error) {
	return query(ctx, pool, `WHERE true`)
}

// Enabled returns the enabled plugins, by id.
func Enabled(ctx context.Context, pool *pgxpool.Pool) ([]Installed, error) {
	return query(ctx, pool, `WHERE enabled`)
}

// Get returns one plugin; ErrNotInstalled when there is none.
func Get(ctx context.Context, pool *pgxpool.Pool, id string) (Installed, error) {
	list, err := query(ctx, pool, `WHERE id = $1`, id)
	if err != nil {
		return Installed{}, err
	}
	if len(list) == 0 {
		return Installed{}, fmt.Errorf("plugin %q: %w", id, ErrNotInstalled)
	}
	return list[0], nil
}

// query reads plugin rows and their manifests as installed.
func query(ctx context.Context, pool *pgxpool.Pool, where string, args ...any) ([]Installed, error) {
	rows, err := pool.Query(ctx, `
		SELECT id, dir, manifest, command_sha256, secret, enabled, settings, added_permissions, installed_at
		FROM plugins `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("plugins: list: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Installed, error) {
		var p Installed
		var id, dir, raw, sum, secret string
		if err := row.Scan(&id, &dir, &raw, &sum, &secret, &p.Enabled, &p.Settings, &p.AddedPermissions, &p.InstalledAt); err != nil {
			return p, err
		}
		m, err := manifest.Parse(filepath.Join(dir, manifest.FileName), []byte(raw))
		if err != nil {
			return p, fmt.Errorf("plugins: the recorded manifest of %s: %w", id, err)
		}
		if len(p.AddedPermissions) > 0 {
			m.Permissions.AddMissing()
		}
		m.Dir, m.SHA256 = dir, sum
		p.Manifest = m
		if p.Secret, err = hex.DecodeString(secret); err != nil {
			return p, fmt.Errorf("plugins: the secret of %s: %w", id, err)
		}
		return p, nil
	})
}

// SetEnabled enables or disables a plugin.
func SetEnabled(ctx context.Context, pool *pgxpool.Pool, id string, on bool) error {
	tag, err := pool.Exec(ctx, `UPDATE plugins SET enabled = $2, updated_at = now() WHERE id = $1`, id, on)
	if err != nil {
		return fmt.Errorf("plugins: enable %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("plugin %q: %w", id, ErrNotInstalled)
	}
	return nil
}

// Remove forgets a plugin and deletes its directory. Jobs of it still
// queued fail as "not installed" and are dropped.
func Remove(ctx context.Context, pool *pgxpool.Pool, id string) error {
	var dir string
	err := pool.QueryRow(ctx, `DELETE FROM plugins WHERE id = $1 RETURNING dir`, id).Scan(&dir)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("plugin %q: %w", id, ErrNotInstalled)
	}
	if err != nil {
		return fmt.Errorf("plugins: remove %s: %w", id, err)
	}
	return os.RemoveAll(dir)
}

// copyTree copies the regular files and directories of src to dst (0755
// directories, files keeping their exec bits, nothing writable but by the
// owner), refusing symbolic links and other special files.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := copyFile(path, to, d); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: only regular files and directories can be installed (no links or devices)", strings.TrimPrefix(path, src+"/"))
		}
		return nil
	})
}

func copyFile(from, to string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, info.Mode().Perm()&0o755|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
