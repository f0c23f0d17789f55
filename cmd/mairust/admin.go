package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/database"
	"github.com/mairust/mairust/internal/embeddedpg"
	"github.com/mairust/mairust/internal/password"
)

// dbFlags say which database an admin command works on: database.url of
// --config, or the embedded PostgreSQL of a running `mairust aio`.
type dbFlags struct{ config, dataDir string }

func (f *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "mairust.yaml whose database.url to use")
	fs.StringVar(&f.dataDir, "data-dir", "", "data dir of a running mairust aio (its embedded PostgreSQL); default: data_dir of --config")
}

// open connects to the database and makes sure the schema is current.
func (f *dbFlags) open(ctx context.Context) (*pgxpool.Pool, error) {
	cfg, err := config.Load(f.config)
	if err != nil {
		return nil, err
	}
	url := cfg.Database.URL
	if f.dataDir != "" || url == "" {
		dir := f.dataDir
		if dir == "" {
			dir = cfg.DataDir
		}
		if !embeddedpg.Initialized(filepath.Join(dir, "db")) {
			return nil, fmt.Errorf("no database: %s has no embedded PostgreSQL and database.url is empty; pass --config with database.url, or --data-dir of your mairust aio", dir)
		}
		url = embeddedpg.URL(filepath.Join(dir, "db"))
	}
	pool, err := database.Open(ctx, url, 2)
	if err != nil {
		return nil, fmt.Errorf("%w (for the embedded database, mairust aio must be running)", err)
	}
	if _, err := database.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func init() {
	register(&command{name: "admin", summary: "manage domains, mail users and aliases"})
	var tenant string
	registerAdmin("admin domain add", "DOMAIN", "add a mail domain", func(fs *flag.FlagSet) {
		fs.StringVar(&tenant, "tenant", "default", "tenant that owns the new domain")
	}, func(ctx context.Context, acc *accounts.Accounts, fs *flag.FlagSet) error {
		id, err := acc.EnsureTenant(ctx, tenant)
		if err != nil {
			return err
		}
		if err := acc.CreateDomain(ctx, id, fs.Arg(0)); err != nil {
			return err
		}
		fmt.Printf("domain %s ready\n", strings.ToLower(fs.Arg(0)))
		return nil
	})
	registerAdmin("admin user add", "ADDRESS", "add a mail user (its domain must exist); the password is read from MAIRUST_PASSWORD or generated and printed", nil, func(ctx context.Context, acc *accounts.Accounts, fs *flag.FlagSet) error {
		pw, generated := os.Getenv("MAIRUST_PASSWORD"), false
		if pw == "" {
			pw, generated = password.Random(16), true
		}
		if err := acc.CreateUser(ctx, fs.Arg(0), pw, false); err != nil {
			return err
		}
		fmt.Printf("user %s created\n", strings.ToLower(fs.Arg(0)))
		if generated {
			fmt.Printf("password: %s   (shown once, stored hashed)\n", pw)
		}
		return nil
	})
}

// registerAdmin adds an admin command on the accounts taking the
// arguments named in arg (space-separated, "" for none); extra, when not
// nil, adds flags.
func registerAdmin(name, arg, summary string, extra func(*flag.FlagSet), do func(context.Context, *accounts.Accounts, *flag.FlagSet) error) {
	c := &command{name: name, summary: summary, usage: arg}
	var db dbFlags
	c.run = func(args []string) error {
		fs := flags(c)
		db.register(fs)
		if err := parseArgs(fs, args, arg, extra); err != nil {
			return err
		}
		return db.with(func(ctx context.Context, pool *pgxpool.Pool) error {
			return do(ctx, accounts.New(pool), fs)
		})
	}
	register(c)
}

// with runs fn with the database, all within a minute.
func (f *dbFlags) with(fn func(context.Context, *pgxpool.Pool) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	err = fn(ctx, pool)
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("the database did not answer within a minute")
	}
	return err
}

// registerDBCommand adds a command working on the database and the
// configuration (plugins, DKIM keys), taking arg ("" for none).
func registerDBCommand(name, arg, summary string, extra func(*flag.FlagSet), do func(context.Context, config.Config, *pgxpool.Pool, string) error) {
	c := &command{name: name, summary: summary, usage: arg}
	var db dbFlags
	c.run = func(args []string) error {
		fs := flags(c)
		db.register(fs)
		if extra != nil {
			extra(fs)
		}
		if err := parse(fs, args); err != nil {
			return err
		}
		if want := map[bool]int{true: 0, false: 1}[arg == ""]; fs.NArg() != want {
			fs.Usage()
			return errUsage
		}
		cfg, err := config.Load(db.config)
		if err != nil {
			return err
		}
		if db.dataDir != "" {
			cfg.DataDir = db.dataDir
		}
		return db.with(func(ctx context.Context, pool *pgxpool.Pool) error {
			return do(ctx, cfg, pool, fs.Arg(0))
		})
	}
	register(c)
}
