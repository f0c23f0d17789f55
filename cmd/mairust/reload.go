package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mairust/mairust/internal/config"
)

func init() {
	c := &command{name: "reload", summary: "make the running agent re-read its configuration, and say which changes need a restart"}
	var configPath, addr string
	c.run = func(args []string) error {
		fs := flags(c)
		fs.StringVar(&configPath, "config", "/etc/mairust/mairust.yaml", "path of the agent's mairust.yaml (its http.listen is where the agent is asked)")
		fs.StringVar(&addr, "addr", "", "management address of the agent (host:port); overrides the one in --config")
		if err := parse(fs, args); err != nil {
			return err
		}
		if addr == "" {
			cfg, err := config.Load(configPath)
			if err != nil {
				return err
			}
			addr = cfg.HTTP.Listen
		}
		client := &http.Client{Timeout: 30 * time.Second}
		resp, err := client.Post("http://"+addr+"/reload", "application/json", nil)
		if err != nil {
			return fmt.Errorf("cannot reach the agent at %s: %w (is it running? is http.listen right?)", addr, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			var e struct{ Error string }
			json.Unmarshal(body, &e)
			return fmt.Errorf("reload refused, the agent keeps its configuration: %s", e.Error)
		}
		var ch config.Changes
		if err := json.Unmarshal(body, &ch); err != nil {
			return fmt.Errorf("unexpected answer from %s: %w", addr, err)
		}
		fmt.Println(ch.String())
		return nil
	}
	register(c)
}
