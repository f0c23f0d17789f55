// Package market installs on the agent the plugins its control plane
// asks for from the marketplace: it downloads each package, checks its
// digest, its marketplace signature (pinned keys and those the control
// plane sends, each until its end date), its MaiRust version and that it
// is not a downgrade, then installs it like mairust plugin install, marked
// managed. It replaces and removes only the plugins it manages.
package market

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/plugins"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/marketplace/pack"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// Installer keeps the agent's managed plugins as its control plane wants
// them. Set the fields, then Run; Want hands it what is wanted.
type Installer struct {
	Pool    *pgxpool.Pool
	Dir     string            // where plugins' files go (plugins.dir)
	BaseURL string            // the control plane's, for the downloads
	Client  *http.Client      // nil: one with a 2-minute timeout
	Pinned  []pack.TrustedKey // plugins.marketplace_keys
	Running manifest.Version  // this agent's version
	// Changed is called after plugins were installed, replaced, disabled or
	// removed (the agent reloads its hooks).
	Changed func(context.Context) error
	// AutoDisable says whether a recalled plugin is disabled at once
	// (plugins.auto_disable_recalled); nil: never.
	AutoDisable func() bool
	Log         *slog.Logger

	mu       sync.Mutex
	want     *agentsv1.Snapshot
	wake     chan struct{} // made once, by wakeCh
	wakeOnce sync.Once
}

// retryAfter is how long a failed round waits before it is tried again.
const retryAfter = time.Minute

// Want hands the marketplace part of the configuration to Run; it does
// not block.
func (in *Installer) Want(s *agentsv1.Snapshot) {
	in.mu.Lock()
	in.want = s
	in.mu.Unlock()
	select {
	case in.wakeCh() <- struct{}{}:
	default:
	}
}

func (in *Installer) wakeCh() chan struct{} {
	in.wakeOnce.Do(func() { in.wake = make(chan struct{}, 1) })
	return in.wake
}

// Run applies what is wanted until ctx ends, again after a failure.
func (in *Installer) Run(ctx context.Context) {
	wake := in.wakeCh()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-retry.C:
		}
		in.mu.Lock()
		want := in.want
		in.mu.Unlock()
		if want == nil {
			continue
		}
		if err := in.Apply(ctx, want); err != nil && ctx.Err() == nil {
			in.Log.Error("marketplace plugins not all applied; trying again", "component", "plugins", "retry_in", retryAfter.String(), "error", err)
			retry.Reset(retryAfter)
		}
	}
}

// installed is a plugin on the agent.
type installed struct {
	version manifest.Version
	enabled bool
	managed bool
}

// Apply makes the managed plugins those of want: installs, replaces,
// enables or disables, and removes. A problem with one plugin does not
// stop the others; the errors are returned together.
func (in *Installer) Apply(ctx context.Context, want *agentsv1.Snapshot) error {
	have := map[string]installed{}
	rows, err := in.Pool.Query(ctx, `SELECT id, manifest, enabled, managed_by_controlplane FROM plugins`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id, raw string
		var p installed
		if err := rows.Scan(&id, &raw, &p.enabled, &p.managed); err != nil {
			rows.Close()
			return err
		}
		if m, err := manifest.Parse(id, []byte(raw)); err == nil {
			p.version = m.Version
		}
		have[id] = p
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	trust := in.trust(want.MarketplaceKeys)
	var errs []error
	changed, err := in.applyRecalls(ctx, want, trust, have)
	if err != nil {
		errs = append(errs, err)
	}
	wanted := map[string]bool{}
	for _, w := range want.Plugins {
		wanted[w.PluginId] = true
		p, present := have[w.PluginId]
		did, err := in.one(ctx, want, w, p, present, trust)
		changed = changed || did
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin %s %s: %w", w.PluginId, w.Version, err))
		}
	}
	for id, p := range have {
		if p.managed && !wanted[id] {
			if err := plugins.Remove(ctx, in.Pool, id); err != nil {
				errs = append(errs, fmt.Errorf("remove plugin %s: %w", id, err))
				continue
			}
			in.Log.Info("plugin removed: the control plane no longer lists it", "component", "plugins", "plugin", id)
			changed = true
		}
	}
	if changed && in.Changed != nil {
		errs = append(errs, in.Changed(ctx))
	}
	return errors.Join(errs...)
}

// one applies one wanted installation; did says whether it changed
// anything.
func (in *Installer) one(ctx context.Context, want *agentsv1.Snapshot, w *agentsv1.PluginInstallation, have installed, present bool, trust pack.Trust) (did bool, err error) {
	v, err := manifest.ParseVersion(w.Version)
	if err != nil {
		return false, err
	}
	if reason := recalled(want.Recalls, w.PluginId, w.Version); reason != "" {
		return false, fmt.Errorf("not installed: the marketplace recalled it (%s)", reason)
	}
	switch {
	case present && !have.managed:
		return false, fmt.Errorf("installed locally: remove it (mairust plugin remove %s) so that the control plane can manage it", w.PluginId)
	case present && v.Compare(have.version) == 0:
		if have.enabled == w.Enabled {
			return false, nil
		}
		return true, plugins.SetEnabled(ctx, in.Pool, w.PluginId, w.Enabled)
	case present && v.Compare(have.version) < 0 && !w.AllowDowngrade:
		return false, fmt.Errorf("refusing to go back from %s: install it again with allow_downgrade to force it", have.version)
	}
	dir, err := in.fetch(ctx, w, trust)
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	if present {
		if err := plugins.Remove(ctx, in.Pool, w.PluginId); err != nil {
			return false, err
		}
	}
	if _, err := plugins.Install(ctx, in.Pool, dir, in.Dir, plugins.Options{Disabled: !w.Enabled}); err != nil {
		return present, err
	}
	if _, err := in.Pool.Exec(ctx, `UPDATE plugins SET managed_by_controlplane = true WHERE id = $1`, w.PluginId); err != nil {
		return true, err
	}
	in.Log.Info("plugin installed from the marketplace", "component", "plugins", "plugin", w.PluginId, "version", w.Version, "enabled", w.Enabled)
	return true, nil
}

// fetch downloads and checks the package of w and unpacks it into a new
// directory.
func (in *Installer) fetch(ctx context.Context, w *agentsv1.PluginInstallation, trust pack.Trust) (string, error) {
	client := in.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(in.BaseURL, "/")+w.DownloadPath, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: %s", req.URL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, pack.DefaultLimits.MaxTotalBytes+1))
	if err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != w.Sha256 {
		return "", errors.New("the download does not match the SHA-256 the control plane gave: refused")
	}
	p, err := pack.Open(bytes.NewReader(body), pack.Limits{})
	if err != nil {
		return "", err
	}
	if err := p.Verify(trust, time.Now()); err != nil {
		return "", err
	}
	if err := pack.CheckCompatible(p.Manifest, in.Running); err != nil {
		return "", err
	}
	if p.Manifest.ID != w.PluginId || p.Manifest.Version != w.Version {
		return "", fmt.Errorf("the package is %s %s", p.Manifest.ID, p.Manifest.Version)
	}
	dir, err := os.MkdirTemp("", "mairust-plugin-")
	if err != nil {
		return "", err
	}
	target := dir + "/" + w.PluginId
	if err := p.Unpack(target); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return target, nil
}

// trust is the pinned keys and those the control plane sent, for the
// marketplace's signature, which is required.
func (in *Installer) trust(sent []*agentsv1.MarketplaceKey) pack.Trust {
	t := pack.Trust{Keys: append([]pack.TrustedKey(nil), in.Pinned...), RequireMarketplace: true}
	for _, k := range sent {
		pub, err := pack.ParsePublicKey([]byte(k.PublicKeyPem))
		if err != nil {
			in.Log.Warn("a marketplace key from the control plane is not usable", "component", "plugins", "key_id", k.KeyId, "error", err)
			continue
		}
		tk := pack.TrustedKey{ID: k.KeyId, Role: pack.Marketplace, Key: pub}
		if k.NotAfter != nil {
			tk.NotAfter = k.NotAfter.AsTime()
		}
		t.Keys = append(t.Keys, tk)
	}
	return t
}
