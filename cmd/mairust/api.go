package main

import (
	"os"

	"github.com/mairust/mairust/agent/api"
)

func init() {
	register(&command{name: "api", summary: "describe the agent's REST API"})
	c := &command{name: "api openapi", summary: "print the REST API's OpenAPI 3.1 document (docs/openapi.json)"}
	c.run = func(args []string) error {
		if err := parse(flags(c), args); err != nil {
			return err
		}
		_, err := os.Stdout.Write(api.OpenAPI())
		return err
	}
	register(c)
}
