package main

import (
	"fmt"

	"github.com/mairust/mairust/internal/version"
)

func init() {
	c := &command{name: "version", summary: "print the version of this binary"}
	c.run = func(args []string) error {
		if err := parse(flags(c), args); err != nil {
			return err
		}
		fmt.Println("mairust", version.String())
		return nil
	}
	register(c)
}
