package api

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/mairust/mairust/agent/hooks"
	"github.com/mairust/mairust/agent/hooks/breaker"
	"github.com/mairust/mairust/agent/plugins"
)

// fakePlugins is one installed plugin, "tagger", with an open breaker.
type fakePlugins struct {
	enabled bool
	state   breaker.State
}

func (f *fakePlugins) Statuses(context.Context) ([]hooks.PluginStatus, error) {
	return []hooks.PluginStatus{{ID: "tagger", Name: "Tagger", Version: "1.0.0", Kind: "stdin", Enabled: f.enabled, Breaker: breaker.Status{ID: "tagger", State: f.state}}}, nil
}

func (f *fakePlugins) ResetBreaker(string) { f.state = breaker.Closed }

func (f *fakePlugins) Logs(_ string, n int) ([]string, error) {
	return []string{"line 1", "line 2", "line 3"}[3-min(n, 3):], nil
}

func (f *fakePlugins) SetEnabled(_ context.Context, id string, on bool) error {
	if id != "tagger" {
		return fmt.Errorf("plugin %q: %w", id, plugins.ErrNotInstalled)
	}
	f.enabled = on
	return nil
}

func TestPluginEndpoints(t *testing.T) {
	e := newEnv(t)
	admin, user := e.login("carol@admin.test").AccessToken, e.login("alice@example.test").AccessToken
	var list pluginList
	if resp := e.call("GET", "/api/v1/admin/plugins", admin, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("without plugins: %d", resp.StatusCode)
	}
	fp := &fakePlugins{enabled: true, state: breaker.Open}
	e.srv.SetPlugins(fp)
	if resp := e.call("GET", "/api/v1/admin/plugins", user, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a user lists plugins: %d", resp.StatusCode)
	}
	if resp := e.call("GET", "/api/v1/admin/plugins", admin, nil, &list); resp.StatusCode != 200 || len(list.Plugins) != 1 || list.Plugins[0].Breaker.State != breaker.Open {
		t.Fatalf("list: %d %+v", resp.StatusCode, list)
	}
	var st hooks.PluginStatus
	if resp := e.call("POST", "/api/v1/admin/plugins/tagger/breaker/reset", admin, nil, &st); resp.StatusCode != 200 || st.Breaker.State != breaker.Closed {
		t.Fatalf("reset: %d %+v", resp.StatusCode, st)
	}
	var p Problem
	if resp := e.call("PATCH", "/api/v1/admin/plugins/tagger", admin, map[string]any{}, &p); resp.StatusCode != 400 || p.Field != "enabled" {
		t.Fatalf("PATCH without enabled: %d %+v", resp.StatusCode, p)
	}
	if resp := e.call("PATCH", "/api/v1/admin/plugins/tagger", admin, map[string]any{"enabled": false}, &st); resp.StatusCode != 200 || st.Enabled || fp.enabled {
		t.Fatalf("disable: %d %+v", resp.StatusCode, st)
	}
	if resp := e.call("POST", "/api/v1/admin/plugins/nope/breaker/reset", admin, nil, &p); resp.StatusCode != 404 || p.Field != "plugin" {
		t.Fatalf("unknown plugin: %d %+v", resp.StatusCode, p)
	}
	var logs pluginLogs
	if resp := e.call("GET", "/api/v1/admin/plugins/tagger/logs?lines=2", admin, nil, &logs); resp.StatusCode != 200 || fmt.Sprint(logs.Lines) != "[line 2 line 3]" {
		t.Fatalf("logs: %d %+v", resp.StatusCode, logs)
	}
	if resp := e.call("GET", "/api/v1/admin/plugins/tagger/logs?lines=0", admin, nil, &p); resp.StatusCode != 400 || p.Field != "lines" {
		t.Fatalf("lines=0: %d %+v", resp.StatusCode, p)
	}
	var kinds []string
	if err := e.pool.QueryRow(t.Context(), `SELECT array_agg(kind ORDER BY id) FROM events WHERE kind LIKE 'admin.plugin.%'`).Scan(&kinds); err != nil || fmt.Sprint(kinds) != "[admin.plugin.breaker_reset admin.plugin.update]" {
		t.Fatalf("admin events %v, %v", kinds, err)
	}
}
