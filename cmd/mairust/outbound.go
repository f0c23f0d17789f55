package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/policy"
	"github.com/mairust/mairust/internal/config"
)

func init() {
	register(&command{name: "admin outbound", summary: "sending state of accounts under the Outbound Policy Engine"})
	registerDBCommand("admin outbound status", "ACCOUNT", "show whether ACCOUNT may send (allowed, soft-limited or suspended) and why", nil,
		func(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, account string) error {
			e, err := policy.New(pool, cfg.PolicySettings(), nil)
			if err != nil {
				return err
			}
			st, err := e.Status(ctx, account)
			if err != nil {
				return err
			}
			fmt.Printf("%s: %s", st.Account, st.State)
			switch st.State {
			case policy.SoftLimited:
				fmt.Printf(" until %s", st.SoftUntil.Format("2006-01-02 15:04 MST"))
			case policy.Suspended:
				fmt.Printf(" since %s", st.SuspendedAt.Format("2006-01-02 15:04 MST"))
			}
			if st.Reason != "" {
				fmt.Printf(" (%s, by %s)", st.Reason, st.By)
			}
			fmt.Println()
			return nil
		})
	var why string
	registerDBCommand("admin outbound release", "ACCOUNT", "lift ACCOUNT's suspension from sending (logged with who and why)",
		func(fs *flag.FlagSet) {
			fs.StringVar(&why, "why", "", "why the suspension is lifted (required; it is logged)")
		},
		func(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, account string) error {
			if why == "" {
				return errors.New("--why is required: say why the account may send again (it is logged)")
			}
			e, err := policy.New(pool, cfg.PolicySettings(), nil)
			if err != nil {
				return err
			}
			by := "cli:" + os.Getenv("USER")
			if err := e.Release(ctx, account, by, why); errors.Is(err, policy.ErrNotSuspended) {
				return fmt.Errorf("%s is not suspended (mairust admin outbound status %s)", account, account)
			} else if err != nil {
				return err
			}
			fmt.Printf("%s may send again (released by %s: %s)\n", account, by, why)
			return nil
		})
}
