package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/mairust/mairust/agent/hooks"
	"github.com/mairust/mairust/agent/plugins"
)

// PluginAdmin is what the admin endpoints need of the agent's plugins.
type PluginAdmin interface {
	Statuses(ctx context.Context) ([]hooks.PluginStatus, error)
	ResetBreaker(id string)
	SetEnabled(ctx context.Context, id string, on bool) error
	Logs(id string, lines int) ([]string, error)
}

// SetPlugins gives the API the agent's plugins; set it before serving.
func (s *Server) SetPlugins(p PluginAdmin) { s.plugins = p }

// pluginList is the agent's installed plugins.
type pluginList struct {
	Plugins []hooks.PluginStatus `json:"plugins"`
}

func (s *Server) listPlugins(w http.ResponseWriter, r *http.Request) error {
	if s.plugins == nil {
		return problem(http.StatusNotFound, "plugins", "this agent runs no plugins")
	}
	list, err := s.plugins.Statuses(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pluginList{Plugins: list})
	return nil
}

// pluginChange turns a plugin on or off.
type pluginChange struct {
	Enabled *bool `json:"enabled"`
}

func (s *Server) updatePlugin(w http.ResponseWriter, r *http.Request) error {
	var req pluginChange
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Enabled == nil {
		return problem(http.StatusBadRequest, "enabled", "enabled is required (true or false)")
	}
	id := r.PathValue("plugin")
	if err := s.pluginAction(r, id, func() error { return s.plugins.SetEnabled(r.Context(), id, *req.Enabled) }); err != nil {
		return err
	}
	s.adminEvent(r, "admin.plugin.update", map[string]any{"plugin_id": id, "enabled": *req.Enabled})
	return s.writePlugin(w, r, id)
}

// resetBreaker closes a plugin's circuit breaker: an admin re-enables a
// plugin the breaker took out.
func (s *Server) resetBreaker(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("plugin")
	if err := s.pluginAction(r, id, func() error { s.plugins.ResetBreaker(id); return nil }); err != nil {
		return err
	}
	s.adminEvent(r, "admin.plugin.breaker_reset", map[string]any{"plugin_id": id})
	return s.writePlugin(w, r, id)
}

// pluginAction runs do on an installed plugin; 404 for any other id.
func (s *Server) pluginAction(r *http.Request, id string, do func() error) error {
	if s.plugins == nil {
		return problem(http.StatusNotFound, "plugin", "this agent runs no plugins")
	}
	list, err := s.plugins.Statuses(r.Context())
	if err != nil {
		return err
	}
	for _, p := range list {
		if p.ID == id {
			err := do()
			if errors.Is(err, plugins.ErrNotInstalled) {
				return problem(http.StatusNotFound, "plugin", "no plugin %q is installed", id)
			}
			return err
		}
	}
	return problem(http.StatusNotFound, "plugin", "no plugin %q is installed; GET /api/v1/admin/plugins lists them", id)
}

// writePlugin answers with one plugin's state.
func (s *Server) writePlugin(w http.ResponseWriter, r *http.Request, id string) error {
	list, err := s.plugins.Statuses(r.Context())
	if err != nil {
		return err
	}
	for _, p := range list {
		if p.ID == id {
			writeJSON(w, http.StatusOK, p)
			return nil
		}
	}
	return problem(http.StatusNotFound, "plugin", "no plugin %q is installed", id)
}

// pluginLogs is the end of a plugin's log.
type pluginLogs struct {
	Lines []string `json:"lines"`
}

func (s *Server) pluginLogs(w http.ResponseWriter, r *http.Request) error {
	n, err := queryInt(r, "lines", 100, 1, 1000)
	if err != nil {
		return err
	}
	id := r.PathValue("plugin")
	var lines []string
	if err := s.pluginAction(r, id, func() error {
		var err error
		lines, err = s.plugins.Logs(id, int(n))
		return err
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pluginLogs{Lines: nonNilLines(lines)})
	return nil
}

func nonNilLines(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
