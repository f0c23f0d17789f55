package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/hooks/pluginlog"
	"github.com/mairust/mairust/agent/plugins"
	"github.com/mairust/mairust/internal/config"
)

func init() {
	register(&command{name: "plugin", summary: "install and manage plugins (mairust reload applies the changes to a running agent)"})
	var auto, disabled bool
	var set settingFlags
	registerDBCommand("plugin install", "DIR", "install the plugin in DIR (its plugin.toml), enabled unless --disabled",
		func(fs *flag.FlagSet) {
			fs.BoolVar(&auto, "auto-add-permissions", false, "add the permissions the requested ones depend on instead of refusing")
			fs.BoolVar(&disabled, "disabled", false, "install without enabling")
			fs.Var(&set, "set", "a setting of the plugin as name=value (repeatable)")
		},
		func(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, arg string) error {
			files, _, _ := cfg.PluginPaths()
			p, err := plugins.Install(ctx, pool, arg, files, plugins.Options{AutoAddPermissions: auto, Disabled: disabled, Settings: set.values})
			if err != nil {
				return err
			}
			m := p.Manifest
			fmt.Printf("installed %s %s (%s, %s) in %s\n", m.ID, m.Version, m.Name, m.Kind, m.Dir)
			fmt.Printf("permissions: %s\n", m.Permissions)
			for _, a := range p.AddedPermissions {
				fmt.Printf("added permission: %s\n", a)
			}
			fmt.Printf("network: %s\n", m.Network)
			if m.Kind == "http" {
				fmt.Printf("signing secret (give it to the plugin; shown once): %x\n", p.Secret)
			}
			if !p.Enabled {
				fmt.Printf("disabled: enable it with mairust plugin enable %s\n", m.ID)
			}
			fmt.Println("run mairust reload (or send SIGHUP) so that a running agent loads it")
			return nil
		})
	registerDBCommand("plugin list", "", "list the installed plugins", nil,
		func(ctx context.Context, _ config.Config, pool *pgxpool.Pool, _ string) error {
			list, err := plugins.List(ctx, pool)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVERSION\tKIND\tENABLED\tHOOKS\tPERMISSIONS")
			for _, p := range list {
				m := p.Manifest
				hooks := make([]string, len(m.Hooks))
				for i, h := range m.Hooks {
					hooks[i] = string(h)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", m.ID, m.Version, m.Kind, p.Enabled, strings.Join(hooks, ","), m.Permissions)
			}
			return tw.Flush()
		})
	for _, on := range []bool{true, false} {
		name, verb := "plugin enable", "enable"
		if !on {
			name, verb = "plugin disable", "disable"
		}
		registerDBCommand(name, "ID", verb+" an installed plugin", nil,
			func(ctx context.Context, _ config.Config, pool *pgxpool.Pool, id string) error {
				if err := plugins.SetEnabled(ctx, pool, id, on); err != nil {
					return err
				}
				fmt.Printf("plugin %s %sd; run mairust reload so that a running agent applies it\n", id, verb)
				return nil
			})
	}
	registerDBCommand("plugin remove", "ID", "remove an installed plugin and its files", nil,
		func(ctx context.Context, _ config.Config, pool *pgxpool.Pool, id string) error {
			if err := plugins.Remove(ctx, pool, id); err != nil {
				return err
			}
			fmt.Printf("plugin %s removed; run mairust reload so that a running agent drops it\n", id)
			return nil
		})
	var lines int
	registerDBCommand("plugin logs", "ID", "print the end of a plugin's log (what it wrote to stderr)",
		func(fs *flag.FlagSet) { fs.IntVar(&lines, "lines", 100, "how many lines") },
		func(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, id string) error {
			if _, err := plugins.Get(ctx, pool, id); err != nil {
				return err
			}
			_, _, logs := cfg.PluginPaths()
			out, err := pluginlog.Tail(logs, id, lines)
			if err != nil {
				return err
			}
			if len(out) == 0 {
				fmt.Println("(the plugin has not logged anything yet)")
			}
			for _, l := range out {
				fmt.Println(l)
			}
			return nil
		})
}

// settingFlags collects --set name=value.
type settingFlags struct{ values map[string]any }

func (s *settingFlags) String() string { return "" }

func (s *settingFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("--set %q: want name=value", v)
	}
	if s.values == nil {
		s.values = map[string]any{}
	}
	s.values[name] = value
	return nil
}
