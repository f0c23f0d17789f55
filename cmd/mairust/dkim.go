package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/dkim"
	"github.com/mairust/mairust/internal/config"
)

// printKey shows a key and the DNS record to publish for it.
func printKey(k dkim.Key) {
	state := "active"
	if !k.Active {
		state = "retired " + k.RetiredAt.Format("2006-01-02")
	}
	name, value := dkim.TXTRecord(k)
	fmt.Printf("%s  selector %s  %s  %s\n  TXT %s\n  %s\n  zone file: %s\n", k.Domain, k.Selector, k.Algorithm, state, name, value, dkim.ZoneFileLine(k))
}

func init() {
	register(&command{name: "admin dkim", summary: "DKIM keys of the mail domains (outgoing mail is signed with the active one)"})
	for _, rotate := range []bool{false, true} {
		var selector, alg string
		name, summary := "admin dkim generate", "create the first DKIM key of DOMAIN and print the DNS TXT record to publish"
		if rotate {
			name, summary = "admin dkim rotate", "replace DOMAIN's active DKIM key by a new one (the old one stays published until pruned)"
		}
		registerDBCommand(name, "DOMAIN", summary,
			func(fs *flag.FlagSet) {
				fs.StringVar(&selector, "selector", "", "selector of the new key (default: mairust + the date, e.g. mairust20261128)")
				fs.StringVar(&alg, "alg", "rsa", "rsa (2048 bits, accepted everywhere) or ed25519")
			},
			func(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, domain string) error {
				a, err := dkim.ParseAlgorithm(alg)
				if err != nil {
					return err
				}
				store, err := dkim.Open(pool, cfg.DataDir)
				if err != nil {
					return err
				}
				sel := selector
				if sel == "" {
					sel = "mairust" + time.Now().Format("20060102")
				}
				create := store.Generate
				if rotate {
					create = store.Rotate
				}
				k, err := create(ctx, domain, sel, a)
				if err != nil {
					return err
				}
				printKey(k)
				fmt.Println("publish the TXT record in DNS; mail is signed with this key from now on")
				return nil
			})
	}
	registerDBCommand("admin dkim list", "", "list the DKIM keys and the DNS records to publish",
		nil,
		func(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, _ string) error {
			store, err := dkim.Open(pool, cfg.DataDir)
			if err != nil {
				return err
			}
			keys, err := store.List(ctx, "")
			if err != nil {
				return err
			}
			if len(keys) == 0 {
				fmt.Println("no DKIM keys yet: mairust admin dkim generate DOMAIN")
			}
			for _, k := range keys {
				printKey(k)
			}
			return nil
		})
}
