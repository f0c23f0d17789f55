// Command mairust is the one MaiRust binary: the agent, the all-in-one, and
// the operator's tools, as subcommands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// command is one subcommand. Commands with children (bench, admin) dispatch
// on their next argument.
type command struct {
	name     string // space-separated path, e.g. "bench smtp"
	summary  string
	usage    string // arguments after the name, for the help line
	run      func(args []string) error
	children []*command
}

var root = &command{name: "mairust", summary: "the MaiRust mail platform"}

// register adds c under the path given by its name.
func register(c *command) {
	parent := root
	parts := strings.Fields(c.name)
	for _, p := range parts[:len(parts)-1] {
		parent = parent.child(p, true)
	}
	parent.children = append(parent.children, c)
}

func (c *command) child(name string, create bool) *command {
	for _, ch := range c.children {
		if ch.last() == name {
			return ch
		}
	}
	if !create {
		return nil
	}
	full := strings.TrimSpace(strings.TrimPrefix(c.name+" "+name, "mairust "))
	ch := &command{name: full}
	c.children = append(c.children, ch)
	return ch
}

func (c *command) last() string {
	f := strings.Fields(c.name)
	return f[len(f)-1]
}

// errUsage means the help was printed for a mistake in the arguments.
var errUsage = errors.New("usage")

func (c *command) help() {
	w := os.Stderr
	if c.run != nil {
		return
	}
	prefix := "mairust "
	if c == root {
		prefix = ""
	}
	fmt.Fprintf(w, "Usage: %s%s <command> [flags]\n\n", prefix, c.name)
	if c.summary != "" {
		fmt.Fprintf(w, "%s\n\n", c.summary)
	}
	fmt.Fprintln(w, "Commands:")
	sort.Slice(c.children, func(i, j int) bool { return c.children[i].name < c.children[j].name })
	for _, ch := range c.children {
		summary := ch.summary
		if summary == "" && len(ch.children) > 0 {
			summary = "(" + fmt.Sprint(len(ch.children)) + " subcommands)"
		}
		fmt.Fprintf(w, "  %-14s %s\n", ch.last(), summary)
	}
	fmt.Fprintf(w, "\nRun '%s%s <command> --help' for a command's flags.\n", prefix, c.name)
}

// dispatch finds the command named by args and runs it. A command that
// runs may have subcommands too (mairust agent, mairust agent enroll).
func dispatch(c *command, args []string) error {
	if len(args) > 0 && c.run != nil {
		if ch := c.child(args[0], false); ch != nil {
			return dispatch(ch, args[1:])
		}
	}
	if c.run != nil {
		return c.run(args)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		c.help()
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	ch := c.child(args[0], false)
	if ch == nil {
		c.help()
		return fmt.Errorf("unknown command %q", args[0])
	}
	return dispatch(ch, args[1:])
}

// flags returns a FlagSet for c whose --help names the command and its summary.
func flags(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mairust %s [flags] %s\n\n%s\n\nFlags:\n", c.name, c.usage, c.summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args with fs, taking flags before and after the positional
// arguments (mairust admin user add ADDR --data-dir D); --help is not an
// error.
func parse(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		if err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		if i := len(args) - fs.NArg() - 1; i >= 0 && args[i] == "--" {
			positional = append(positional, fs.Args()...)
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	fs.Parse(append([]string{"--"}, positional...))
	return nil
}

var errHelpShown = errors.New("help shown")

func main() {
	err := dispatch(root, os.Args[1:])
	switch {
	case err == nil, errors.Is(err, errHelpShown):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "mairust: %v\n", err)
		os.Exit(1)
	}
}
