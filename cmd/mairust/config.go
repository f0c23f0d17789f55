package main

import (
	"fmt"
	"os"

	"github.com/mairust/mairust/internal/config"
)

func init() {
	register(&command{name: "config", summary: "inspect and check mairust.yaml"})

	ref := &command{name: "config reference", summary: "print the configuration reference (docs/configuration.md) as Markdown"}
	ref.run = func(args []string) error {
		if err := parseNoArgs(ref, args); err != nil {
			return err
		}
		fmt.Print(config.Reference())
		return nil
	}
	register(ref)

	ex := &command{name: "config example", summary: "print a commented mairust.yaml with every key at its default"}
	ex.run = func(args []string) error {
		if err := parseNoArgs(ex, args); err != nil {
			return err
		}
		fmt.Print(config.Example())
		return nil
	}
	register(ex)

	check := &command{name: "config check", usage: "--config FILE", summary: "load and validate a configuration file; exit status 1 when it is invalid"}
	check.run = func(args []string) error {
		fs := flags(check)
		path := fs.String("config", "", "configuration `file` to check (required)")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *path == "" || fs.NArg() > 0 {
			fmt.Fprintln(fs.Output(), "config check needs --config FILE and no other arguments")
			fs.Usage()
			return errUsage
		}
		if _, err := config.Load(*path); err != nil {
			return err
		}
		fmt.Println("ok")
		return nil
	}
	register(check)
}

// parseNoArgs parses the flags of a command that takes no arguments.
func parseNoArgs(c *command, args []string) error {
	fs := flags(c)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mairust %s takes no arguments\n", c.name)
		fs.Usage()
		return errUsage
	}
	return nil
}
