package main

import (
	"fmt"
	"runtime/debug"
)

func init() {
	c := &command{name: "version", summary: "print the version of this binary"}
	c.run = func(args []string) error {
		if err := parse(flags(c), args); err != nil {
			return err
		}
		v := "(devel)"
		if bi, ok := debug.ReadBuildInfo(); ok {
			v = bi.Main.Version
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					v += " " + s.Value
				}
			}
		}
		fmt.Println("mairust", v)
		return nil
	}
	register(c)
}
