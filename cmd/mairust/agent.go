package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

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

// load reads the configuration and builds the logger it asks for.
func (f *runFlags) load() (config.Config, *slog.Logger, *slog.LevelVar, error) {
	cfg, err := config.Load(f.config)
	if err != nil {
		return cfg, nil, nil, err
	}
	if f.logFormat != "" {
		cfg.Log.Format = f.logFormat
		if err := config.Validate(cfg, "--log-format", nil); err != nil {
			return cfg, nil, nil, err
		}
	}
	lv := new(slog.LevelVar)
	l, _ := logging.ParseLevel(cfg.Log.Level)
	lv.Set(l)
	return cfg, logging.New(os.Stderr, cfg.Log.Format, lv), lv, nil
}

func init() {
	c := &command{name: "agent", summary: "run the agent (data plane) against an external PostgreSQL (database.url)"}
	var rf runFlags
	c.run = func(args []string) error {
		fs := flags(c)
		rf.register(fs, "/etc/mairust/mairust.yaml")
		if err := parse(fs, args); err != nil {
			return err
		}
		cfg, log, lv, err := rf.load()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return err
		}
		lock, err := pidlock.Acquire(cfg.DataDir)
		if err != nil {
			return err
		}
		defer lock.Release()
		return agent.Run(context.Background(), agent.Options{Config: cfg, ConfigPath: rf.config, Log: log, Level: lv})
	}
	register(c)
}
