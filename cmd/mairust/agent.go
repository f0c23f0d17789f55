package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mairust/mairust/agent"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/logging"
	"github.com/mairust/mairust/internal/pidlock"
)

// runFlags are the flags every long-running command shares.
type runFlags struct {
	config    string
	logFormat string
}

func (f *runFlags) register(fs *flag.FlagSet, defaultConfig string) {
	fs.StringVar(&f.config, "config", defaultConfig, "path of mairust.yaml (see docs/configuration.md)")
	fs.StringVar(&f.logFormat, "log-format", "", "json or text; overrides log.format")
}

// claim prepares a long-running command on dataDir: it creates the
// directory (mode perm), takes its lock (or says who holds it), and returns a
// context that ends on SIGTERM or SIGINT, the cue for a graceful shutdown.
// SIGHUP is ignored until the agent takes it for reloads, so that an early
// one cannot kill the process. release undoes it all.
func claim(dataDir string, perm os.FileMode) (ctx context.Context, release func(), err error) {
	if err := os.MkdirAll(dataDir, perm); err != nil {
		return nil, nil, fmt.Errorf("data dir: %w", err)
	}
	lock, err := pidlock.Acquire(dataDir)
	if errors.Is(err, pidlock.ErrLocked) {
		return nil, nil, fmt.Errorf("%s is in use by another mairust (%w); stop it first, or use another --data-dir", dataDir, err)
	} else if err != nil {
		return nil, nil, err
	}
	signal.Ignore(syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	return ctx, func() { stop(); lock.Release() }, nil
}

// override puts the flags over the file's values, at start and on reload.
func (f *runFlags) override(c *config.Config) {
	if f.logFormat != "" {
		c.Log.Format = f.logFormat
	}
}

// load reads the configuration and builds the logger it asks for.
func (f *runFlags) load() (config.Config, *slog.Logger, *slog.LevelVar, error) {
	cfg, err := config.Load(f.config)
	if err != nil {
		return cfg, nil, nil, err
	}
	if f.logFormat != "" {
		f.override(&cfg)
		if err := config.Validate(cfg, "--log-format", nil); err != nil {
			return cfg, nil, nil, err
		}
	}
	lv := new(slog.LevelVar)
	l, _ := logging.ParseLevel(cfg.Log.Level)
	lv.Set(l)
	return cfg, logging.New(os.Stderr, cfg.Log.Format, lv), lv, nil
}

// parseLoad parses a long-running command's args, with the configuration
// at /etc/mairust/mairust.yaml unless --config says otherwise, and loads
// it (see load).
func (f *runFlags) parseLoad(c *command, args []string) (config.Config, *slog.Logger, *slog.LevelVar, error) {
	fs := flags(c)
	f.register(fs, "/etc/mairust/mairust.yaml")
	if err := parse(fs, args); err != nil {
		return config.Config{}, nil, nil, err
	}
	return f.load()
}

func init() {
	c := &command{name: "agent", summary: "run the agent (data plane) against an external PostgreSQL (database.url); mairust agent enroll joins a control plane"}
	var rf runFlags
	c.run = func(args []string) error {
		cfg, log, lv, err := rf.parseLoad(c, args)
		if err != nil {
			return err
		}
		ctx, release, err := claim(cfg.DataDir, 0o711)
		if err != nil {
			return err
		}
		defer release()
		return agent.Run(ctx, agent.Options{Config: cfg, ConfigPath: rf.config, Override: rf.override, Log: log, Level: lv})
	}
	register(c)
}
