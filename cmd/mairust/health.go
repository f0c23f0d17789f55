package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// health is the container's health check (HEALTHCHECK in
// deploy/docker/Dockerfile): the image has no curl.
func init() {
	c := &command{name: "health", summary: "GET http://ADDR/health (the management listener, http.listen) and exit 0 on 200, 1 otherwise; for container health checks"}
	c.run = func(args []string) error {
		fs := flags(c)
		addr := fs.String("addr", "127.0.0.1:8025", "host:port of the management HTTP listener (http.listen) or of the control plane (controlplane.listen)")
		timeout := fs.Duration("timeout", 5*time.Second, "longest wait for the answer")
		if err := parse(fs, args); err != nil {
			return err
		}
		client := &http.Client{Timeout: *timeout}
		resp, err := client.Get("http://" + *addr + "/health")
		if err != nil {
			return fmt.Errorf("health: %w", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		fmt.Printf("%s %s\n", resp.Status, strings.TrimSpace(string(body)))
		if resp.StatusCode != http.StatusOK {
			return errors.New("health: unhealthy: " + resp.Status)
		}
		return nil
	}
	register(c)
}
