package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/mairust/mairust/internal/smtpload"
)

// sizeFlag is a byte count flag that accepts k and M suffixes.
type sizeFlag int

func (s *sizeFlag) String() string {
	switch n := int(*s); {
	case n != 0 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "M"
	case n != 0 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "k"
	default:
		return strconv.Itoa(n)
	}
}

func (s *sizeFlag) Set(v string) error {
	n, err := smtpload.ParseSize(v)
	*s = sizeFlag(n)
	return err
}

func init() {
	c := &command{
		name:    "bench smtp",
		summary: "send mail over SMTP as fast as the server takes it and report throughput and latency",
	}
	c.run = func(args []string) error {
		fs := flags(c)
		var o smtpload.Options
		size := sizeFlag(10 << 10)
		helo, _ := os.Hostname()
		if helo == "" {
			helo = "localhost"
		}
		fs.StringVar(&o.Addr, "addr", "127.0.0.1:25", "SMTP server `host:port`")
		fs.IntVar(&o.Conns, "conns", 50, "concurrent connections")
		fs.IntVar(&o.Messages, "messages", 10000, "messages to send in total")
		fs.Var(&size, "size", "message size in `bytes`, headers included; k and M suffixes allowed")
		fs.StringVar(&o.From, "from", "bench@localhost", "sender `address`")
		to := fs.String("to", "postmaster@localhost", "comma-separated recipient `addresses`")
		fs.BoolVar(&o.StartTLS, "starttls", false, "require STARTTLS")
		fs.StringVar(&o.Auth, "auth", "", "`user:password` to authenticate with AUTH PLAIN (submission); use with --starttls")
		fs.BoolVar(&o.InsecureSkipVerify, "insecure-skip-verify", false, "accept any server certificate")
		fs.StringVar(&o.Helo, "helo", helo, "EHLO `name`")
		fs.DurationVar(&o.Timeout, "timeout", smtpload.DefaultTimeout, "deadline for connecting and for each message")
		fs.DurationVar(&o.Duration, "duration", 0, "stop after this long (0: when all messages are sent)")
		asJSON := fs.Bool("json", false, "print the result as one JSON object")
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			fs.Usage()
			return errUsage
		}
		o.Size = int(size)
		for _, a := range strings.Split(*to, ",") {
			if a = strings.TrimSpace(a); a != "" {
				o.To = append(o.To, a)
			}
		}
		if o.Conns < 1 || o.Messages < 1 || len(o.To) == 0 {
			return errors.New("--conns and --messages must be positive and --to not empty")
		}
		o.Progress = os.Stderr

		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		res, err := smtpload.Run(ctx, o)
		stop()
		if err != nil {
			return err
		}
		if *asJSON {
			if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
				return err
			}
		} else {
			res.Print(os.Stdout)
		}
		if res.OK == 0 && res.Failed > 0 {
			return errors.New("the server accepted no message")
		}
		return nil
	}
	register(c)
}
