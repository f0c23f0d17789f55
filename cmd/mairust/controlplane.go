package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mairust/mairust/controlplane"
)

func init() {
	c := &command{name: "controlplane", summary: "run the multi-tenant control plane (console API, agent enrollment and config push) on controlplane.listen"}
	var rf runFlags
	c.run = func(args []string) error {
		cfg, log, _, err := rf.parseLoad(c, args)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return controlplane.Run(ctx, cfg, log, nil)
	}
	register(c)
}
