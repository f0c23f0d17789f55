package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/mairust/mairust/agent/accounts"
)

func init() {
	register(&command{name: "admin alias", summary: "aliases: more addresses that deliver to a user, who may also send from them"})
	registerAdmin("admin alias add", "ALIAS USER", "make ALIAS deliver to USER (an address or id), who may also send from it; ALIAS must be in a domain of USER's tenant", nil,
		func(ctx context.Context, acc *accounts.Accounts, fs *flag.FlagSet) error {
			alias, user := fs.Arg(0), fs.Arg(1)
			tenant, domain, err := aliasTenant(ctx, acc, alias)
			if err != nil {
				return err
			}
			al, err := acc.AddAlias(ctx, tenant, alias, user)
			var invalid *accounts.InvalidError
			if errors.As(err, &invalid) && invalid.Field == "user" {
				return fmt.Errorf("%s: no such user in the tenant of %s; add the user first (mairust admin user add ADDRESS) or name one of that tenant", user, domain)
			}
			if err != nil {
				return err
			}
			fmt.Printf("alias %s delivers to %s\n", al.Address, al.User)
			return nil
		})
	var domain string
	registerAdmin("admin alias list", "", "list the aliases and the users they deliver to",
		func(fs *flag.FlagSet) {
			fs.StringVar(&domain, "domain", "", "list only the aliases in this domain")
		},
		func(ctx context.Context, acc *accounts.Accounts, _ *flag.FlagSet) error {
			var tenants []string
			var err error
			if domain == "" {
				tenants, err = acc.TenantIDs(ctx)
			} else {
				var t string
				t, err = domainTenant(ctx, acc, domain)
				tenants = []string{t}
			}
			if err != nil {
				return err
			}
			n := 0
			for _, t := range tenants {
				list, err := acc.ListAliases(ctx, t, accounts.AliasFilter{Domain: domain})
				if err != nil {
					return err
				}
				for _, al := range list {
					fmt.Printf("%s -> %s\n", al.Address, al.User)
				}
				n += len(list)
			}
			if n == 0 {
				fmt.Println("no aliases yet: mairust admin alias add ALIAS USER")
			}
			return nil
		})
	registerAdmin("admin alias remove", "ALIAS", "remove an alias (its user and the user's mail stay)", nil,
		func(ctx context.Context, acc *accounts.Accounts, fs *flag.FlagSet) error {
			tenant, domain, err := aliasTenant(ctx, acc, fs.Arg(0))
			if err != nil {
				return err
			}
			list, err := acc.ListAliases(ctx, tenant, accounts.AliasFilter{Address: fs.Arg(0)})
			if err != nil {
				return err
			}
			if len(list) == 0 {
				return fmt.Errorf("%s is not an alias; see the aliases with: mairust admin alias list --domain %s", fs.Arg(0), domain)
			}
			al, err := acc.DeleteAlias(ctx, tenant, list[0].ID)
			if err != nil {
				return err
			}
			fmt.Printf("alias %s removed (it delivered to %s)\n", al.Address, al.User)
			return nil
		})
}

// aliasTenant returns the tenant and the domain of the address alias.
func aliasTenant(ctx context.Context, acc *accounts.Accounts, alias string) (tenant, domain string, err error) {
	addr, err := accounts.Normalize(alias)
	if err != nil {
		return "", "", err
	}
	_, domain, _ = strings.Cut(addr, "@")
	tenant, err = domainTenant(ctx, acc, domain)
	return tenant, domain, err
}

// domainTenant returns the tenant of domain, or an error saying to add it.
func domainTenant(ctx context.Context, acc *accounts.Accounts, domain string) (string, error) {
	t, err := acc.DomainTenant(ctx, domain)
	if errors.Is(err, accounts.ErrNotFound) {
		return "", fmt.Errorf("domain %s is not served here; add it first: mairust admin domain add %s", domain, domain)
	}
	return t, err
}
