package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// sinkSession takes every message and throws it away, counting it.
type sinkSession struct{ n *atomic.Int64 }

func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.n.Add(1)
	return nil
}
func (sinkSession) Reset()        {}
func (sinkSession) Logout() error { return nil }

func init() {
	c := &command{
		name:    "bench sink",
		summary: "an SMTP server that accepts and discards every message (a destination for outbound benchmarks); prints messages/s",
	}
	c.run = func(args []string) error {
		fs := flags(c)
		addr := fs.String("listen", "127.0.0.1:2700", "`host:port` to listen on")
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			fs.Usage()
			return errUsage
		}
		var n atomic.Int64
		srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return sinkSession{&n}, nil }))
		srv.Domain = "sink.localhost"
		srv.MaxMessageBytes = 64 << 20
		l, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("--listen %s: %w", *addr, err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		go func() {
			<-ctx.Done()
			srv.Close()
		}()
		fmt.Fprintf(os.Stderr, "bench sink: accepting mail on %s; Ctrl-C stops\n", l.Addr())
		go func() {
			var last int64
			for t := time.NewTicker(time.Second); ctx.Err() == nil; <-t.C {
				if cur := n.Load(); cur != last {
					fmt.Fprintf(os.Stderr, "received %d  %d msg/s\n", cur, cur-last)
					last = cur
				}
			}
		}()
		if err := srv.Serve(l); err != nil && ctx.Err() == nil {
			return err
		}
		fmt.Printf("received %d messages\n", n.Load())
		return nil
	}
	register(c)
}
