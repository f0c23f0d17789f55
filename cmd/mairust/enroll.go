package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mairust/mairust/agent/link"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/version"
)

func init() {
	c := &command{name: "agent enroll", summary: "enroll this agent into a control plane with a one-time token from its console (makes the agent's key pair in data_dir)"}
	c.run = func(args []string) error {
		fs := flags(c)
		cfgPath := fs.String("config", "/etc/mairust/mairust.yaml", "path of mairust.yaml (its data_dir keeps the agent's key and enrollment)")
		cp := fs.String("control-plane", "", "URL of the control plane, e.g. https://cp.example.com")
		token := fs.String("token", "", "one-time enrollment token (mre_...) created in the console; or MAIRUST_ENROLL_TOKEN")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *token == "" {
			*token = os.Getenv("MAIRUST_ENROLL_TOKEN")
		}
		if *cp == "" || *token == "" {
			fs.Usage()
			return errors.Join(errUsage, errors.New("--control-plane and --token are required"))
		}
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fmt.Printf("enrolling into %s ...\n", *cp)
		id, err := link.Link{DataDir: cfg.DataDir}.Enroll(ctx, *cp, *token, cfg.SMTP.Hostname, version.String())
		if err != nil {
			return err
		}
		fmt.Printf("enrolled: agent %s of tenant %s; credential valid until %s\n", id.AgentID, id.TenantID, id.Credential.ExpiresAt.Format(time.RFC3339))
		return nil
	}
	register(c)
}
