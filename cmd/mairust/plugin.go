package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/hooks/pluginlog"
	"github.com/mairust/mairust/agent/plugins"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/version"
	"github.com/mairust/mairust/marketplace/pack"
)

func init() {
	register(&command{name: "plugin", summary: "install and manage plugins (mairust reload applies the changes to a running agent), and make, sign and check plugin packages"})
	registerPackageCommands()
	var auto, disabled bool
	var set settingFlags
	registerDBCommand("plugin install", "DIR", "install the plugin in DIR (its plugin.toml), enabled unless --disabled",
		func(fs *flag.FlagSet) {
			fs.BoolVar(&auto, "auto-add-permissions", false, "add the permissions the requested ones depend on instead of refusing")
			fs.BoolVar(&disabled, "disabled", false, "install without enabling")
			fs.Var(&set, "set", "a setting of the plugin as name=value (repeatable)")
		},
		func(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, arg string) error {
			files, _, _ := cfg.PluginPaths()
			p, err := plugins.Install(ctx, pool, arg, files, plugins.Options{AutoAddPermissions: auto, Disabled: disabled, Settings: set.values})
			if err != nil {
				return err
			}
			m := p.Manifest
			fmt.Printf("installed %s %s (%s, %s) in %s\n", m.ID, m.Version, m.Name, m.Kind, m.Dir)
			fmt.Printf("permissions: %s\n", m.Permissions)
			for _, a := range p.AddedPermissions {
				fmt.Printf("added permission: %s\n", a)
			}
			fmt.Printf("network: %s\n", m.Network)
			if m.Kind == "http" {
				fmt.Printf("signing secret (give it to the plugin; shown once): %x\n", p.Secret)
			}
			if !p.Enabled {
				fmt.Printf("disabled: enable it with mairust plugin enable %s\n", m.ID)
			}
			fmt.Println("run mairust reload (or send SIGHUP) so that a running agent loads it")
			return nil
		})
	registerDBCommand("plugin list", "", "list the installed plugins", nil,
		func(ctx context.Context, _ config.Config, pool *pgxpool.Pool, _ string) error {
			list, err := plugins.List(ctx, pool)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVERSION\tKIND\tENABLED\tHOOKS\tPERMISSIONS")
			for _, p := range list {
				m := p.Manifest
				hooks := make([]string, len(m.Hooks))
				for i, h := range m.Hooks {
					hooks[i] = string(h)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", m.ID, m.Version, m.Kind, p.Enabled, strings.Join(hooks, ","), m.Permissions)
			}
			return tw.Flush()
		})
	for _, on := range []bool{true, false} {
		name, verb := "plugin enable", "enable"
		if !on {
			name, verb = "plugin disable", "disable"
		}
		registerDBCommand(name, "ID", verb+" an installed plugin", nil,
			func(ctx context.Context, _ config.Config, pool *pgxpool.Pool, id string) error {
				if err := plugins.SetEnabled(ctx, pool, id, on); err != nil {
					return err
				}
				fmt.Printf("plugin %s %sd; run mairust reload so that a running agent applies it\n", id, verb)
				return nil
			})
	}
	registerDBCommand("plugin remove", "ID", "remove an installed plugin and its files", nil,
		func(ctx context.Context, _ config.Config, pool *pgxpool.Pool, id string) error {
			if err := plugins.Remove(ctx, pool, id); err != nil {
				return err
			}
			fmt.Printf("plugin %s removed; run mairust reload so that a running agent drops it\n", id)
			return nil
		})
	var lines int
	registerDBCommand("plugin logs", "ID", "print the end of a plugin's log (what it wrote to stderr)",
		func(fs *flag.FlagSet) { fs.IntVar(&lines, "lines", 100, "how many lines") },
		func(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, id string) error {
			if _, err := plugins.Get(ctx, pool, id); err != nil {
				return err
			}
			_, _, logs := cfg.PluginPaths()
			out, err := pluginlog.Tail(logs, id, lines)
			if err != nil {
				return err
			}
			if len(out) == 0 {
				fmt.Println("(the plugin has not logged anything yet)")
			}
			for _, l := range out {
				fmt.Println(l)
			}
			return nil
		})
}

// settingFlags collects --set name=value.
type settingFlags struct{ values map[string]any }

func (s *settingFlags) String() string { return "" }

func (s *settingFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("--set %q: want name=value", v)
	}
	if s.values == nil {
		s.values = map[string]any{}
	}
	s.values[name] = value
	return nil
}

// marketplaceKeyEnv holds the marketplace's private key (PEM) for
// mairust plugin sign --as marketplace, so that it stays out of files and
// databases.
const marketplaceKeyEnv = "MAIRUST_MARKETPLACE_KEY"

// registerTool adds a command that needs no database, taking the
// arguments named in arg (space-separated, "" for none).
func registerTool(name, arg, summary string, extra func(*flag.FlagSet), do func(args []string) error) {
	c := &command{name: name, summary: summary, usage: arg}
	c.run = func(args []string) error {
		fs := flags(c)
		if err := parseArgs(fs, args, arg, extra); err != nil {
			return err
		}
		return do(fs.Args())
	}
	register(c)
}

// parseArgs adds extra's flags (when not nil) to fs, parses args, and
// checks that as many arguments remain as arg names.
func parseArgs(fs *flag.FlagSet, args []string, arg string, extra func(*flag.FlagSet)) error {
	if extra != nil {
		extra(fs)
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != len(strings.Fields(arg)) {
		fs.Usage()
		return errUsage
	}
	return nil
}

// registerPackageCommands adds keygen, pack, sign, verify and inspect.
func registerPackageCommands() {
	var keyType, prefix string
	registerTool("plugin keygen", "", "make a key pair to sign plugin packages with: PREFIX.key (private) and PREFIX.pub (public)",
		func(fs *flag.FlagSet) {
			fs.StringVar(&keyType, "type", "ed25519", "ed25519, or rsa (2048 bits; developer keys only: marketplace keys are ed25519)")
			fs.StringVar(&prefix, "out", "", "write PREFIX.key and PREFIX.pub (required)")
		},
		func([]string) error {
			if prefix == "" {
				return errors.New("--out PREFIX is required (the keys are written to PREFIX.key and PREFIX.pub)")
			}
			return keygen(keyType, prefix)
		})

	var out, keyFile, keyID string
	registerTool("plugin pack", "DIR", "make a "+pack.Ext+" package of the plugin in DIR (plugin.toml, README.md, icon.png and its files), signed as developer with --key",
		func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "the package file to write (default: <id>-<version>"+pack.Ext+")")
			fs.StringVar(&keyFile, "key", "", "sign as developer with this private key (PKCS#8 PEM, from mairust plugin keygen)")
			fs.StringVar(&keyID, "key-id", "", "the key id to write in the signature (default: derived from the key)")
		},
		func(args []string) error {
			p, err := pack.Build(args[0])
			if err != nil {
				return err
			}
			if keyFile != "" {
				k, err := loadPrivateKey(keyFile, keyID)
				if err != nil {
					return err
				}
				if err := p.Sign(pack.Developer, k); err != nil {
					return err
				}
			}
			if out == "" {
				out = p.Manifest.ID + "-" + p.Manifest.Version + pack.Ext
			}
			if err := writeAtomic(out, p.Write); err != nil {
				return err
			}
			fmt.Printf("packed %s %s: %d files in %s\n", p.Manifest.ID, p.Manifest.Version, len(p.Manifest.Files), out)
			if p.Developer != nil {
				fmt.Printf("signed as developer by key %s (%s)\n", p.Developer.KeyID, p.Developer.Algorithm)
			}
			for _, w := range p.Warnings() {
				fmt.Printf("warning: %s\n", w)
			}
			return nil
		})

	var signKey, signAs, signKeyID string
	registerTool("plugin sign", "FILE", "sign a package as developer or marketplace, replacing that signature (the file is rewritten in place)",
		func(fs *flag.FlagSet) {
			fs.StringVar(&signKey, "key", "", "the private key (PKCS#8 PEM); for --as marketplace it may come from $"+marketplaceKeyEnv+" instead")
			fs.StringVar(&signAs, "as", "developer", "developer or marketplace")
			fs.StringVar(&signKeyID, "key-id", "", "the key id to write in the signature (default: derived from the key)")
		},
		func(args []string) error {
			return signPackage(args[0], pack.Role(signAs), signKey, signKeyID)
		})

	var trust trustFlag
	var requireDev, requireMP bool
	registerTool("plugin verify", "FILE", "check a package: its files against manifest.json and its signatures against trusted public keys",
		func(fs *flag.FlagSet) {
			fs.Var(&trust, "trust", "public key files to trust, comma-separated or repeated; prefix one with developer: or marketplace: to trust it in that role only (default: both)")
			fs.BoolVar(&requireDev, "require-developer", false, "refuse a package without a developer signature")
			fs.BoolVar(&requireMP, "require-marketplace", false, "refuse a package without a marketplace signature (as agents do)")
		},
		func(args []string) error {
			if len(trust.keys) == 0 {
				return errors.New("--trust PUBFILE is required: the public key of the plugin's developer or of the marketplace")
			}
			return verifyPackage(args[0], pack.Trust{Keys: trust.keys, RequireDeveloper: requireDev, RequireMarketplace: requireMP})
		})

	registerTool("plugin inspect", "FILE", "show what a package holds: the plugin, its permissions, files and signatures (not verified: see plugin verify)", nil,
		func(args []string) error { return inspectPackage(args[0]) })
}

func keygen(typ, prefix string) error {
	k, err := pack.GenerateKey(typ)
	if err != nil {
		return err
	}
	priv, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	pub, err := k.Public().MarshalPEM()
	if err != nil {
		return err
	}
	keyPath, pubPath := prefix+".key", prefix+".pub"
	if err := writeNew(keyPath, priv, 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pub, 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	fmt.Printf("key id: %s (%s)\n", k.ID, k.Algorithm())
	fmt.Printf("private key: %s (keep it secret)\npublic key: %s (give it to those who verify your packages)\n", keyPath, pubPath)
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists already: choose another --out, or remove it", path)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// writeAtomic writes path through a temporary file in its directory and
// a rename, so that readers see the old file or the new one.
func writeAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	w := bufio.NewWriter(f)
	err = write(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func loadPrivateKey(path, id string) (*pack.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := pack.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if id != "" {
		k.ID = id
	}
	return k, nil
}

func openPackage(path string) (*pack.Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := pack.Open(bufio.NewReader(f), pack.Limits{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func signPackage(path string, role pack.Role, keyFile, keyID string) error {
	if role != pack.Developer && role != pack.Marketplace {
		return fmt.Errorf("--as %q: use developer or marketplace", role)
	}
	var k *pack.PrivateKey
	var err error
	switch env := os.Getenv(marketplaceKeyEnv); {
	case keyFile != "":
		k, err = loadPrivateKey(keyFile, keyID)
	case role == pack.Marketplace && env != "":
		if k, err = pack.ParsePrivateKey([]byte(env)); err != nil {
			err = fmt.Errorf("$%s: %w", marketplaceKeyEnv, err)
		} else if keyID != "" {
			k.ID = keyID
		}
	case role == pack.Marketplace:
		err = fmt.Errorf("--key is required (or the key's PEM in $%s)", marketplaceKeyEnv)
	default:
		err = errors.New("--key is required: the developer's private key (mairust plugin keygen makes one)")
	}
	if err != nil {
		return err
	}
	p, err := openPackage(path)
	if err != nil {
		return err
	}
	hadMarketplace := p.Marketplace != nil
	if err := p.Sign(role, k); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := writeAtomic(path, p.Write); err != nil {
		return err
	}
	fmt.Printf("signed %s %s as %s by key %s (%s) in %s\n", p.Manifest.ID, p.Manifest.Version, role, k.ID, k.Algorithm(), path)
	if role == pack.Developer && hadMarketplace {
		fmt.Println("note: the marketplace signature was removed, as it covered the previous developer signature")
	}
	return nil
}

// trustFlag collects --trust [developer:|marketplace:]PUBFILE,...
type trustFlag struct{ keys []pack.TrustedKey }

func (t *trustFlag) String() string { return "" }

func (t *trustFlag) Set(v string) error {
	for item := range strings.SplitSeq(v, ",") {
		roles := []pack.Role{pack.Developer, pack.Marketplace}
		path := item
		for _, r := range roles {
			if rest, ok := strings.CutPrefix(item, string(r)+":"); ok {
				roles, path = []pack.Role{r}, rest
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		k, err := pack.ParsePublicKey(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, r := range roles {
			t.keys = append(t.keys, pack.TrustedKey{Role: r, Key: k})
		}
	}
	return nil
}

func verifyPackage(path string, trust pack.Trust) error {
	p, err := openPackage(path)
	if err != nil {
		return err
	}
	if err := p.Verify(trust, time.Now()); err != nil {
		return fmt.Errorf("%s refused: %w", path, err)
	}
	fmt.Printf("files: %d checked against %s (size, SHA-256, mode); none missing, none added\n", len(p.Manifest.Files), pack.ManifestName)
	for _, c := range p.Checked() {
		if c.Verified {
			fmt.Printf("%s: valid, by trusted %s key %s (%s)\n", c.Role.FileName(), c.Role, c.KeyID, c.Algorithm)
		} else {
			fmt.Printf("%s: not checked (%s)\n", c.Role.FileName(), c.Note)
		}
	}
	if err := checkCompatible(p); err != nil {
		fmt.Printf("warning: %v\n", err)
	}
	fmt.Printf("verified: %s %s\n", p.Manifest.ID, p.Manifest.Version)
	return nil
}

// checkCompatible checks the package against this binary's version.
func checkCompatible(p *pack.Package) error {
	running, err := manifest.ParseVersion(version.Number)
	if err != nil {
		return err
	}
	return pack.CheckCompatible(p.Manifest, running)
}

func inspectPackage(path string) error {
	p, err := openPackage(path)
	if err != nil {
		return err
	}
	m, pl := p.Manifest, p.Plugin
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\nname:\t%s\nversion:\t%s\n", m.ID, pl.Name, m.Version)
	minVersion := m.MinMairustVersion
	if minVersion == "" {
		minVersion = "(none)"
	}
	compat := "compatible with this mairust " + version.Number
	if err := checkCompatible(p); err != nil {
		compat = err.Error()
	}
	fmt.Fprintf(tw, "min_mairust_version:\t%s (%s)\n", minVersion, compat)
	hooks := make([]string, len(pl.Hooks))
	for i, h := range pl.Hooks {
		hooks[i] = string(h)
	}
	fmt.Fprintf(tw, "kind:\t%s\nhooks:\t%s\nnetwork:\t%s\n", pl.Kind, strings.Join(hooks, ", "), pl.Network)
	tw.Flush()
	fmt.Println("permissions: the plugin may")
	for _, w := range pack.DescribePermissions(pl.Permissions) {
		fmt.Printf("  - %s\n", w)
	}
	for _, missing := range pl.Permissions.Missing() {
		fmt.Printf("  ! %s (install with --auto-add-permissions to grant it)\n", missing)
	}
	var total int64
	width := 1
	for _, f := range m.Files {
		total += f.Size
		width = max(width, len(fmt.Sprint(f.Size)))
	}
	fmt.Printf("files (%d, %d bytes):\n", len(m.Files), total)
	for _, f := range m.Files {
		fmt.Printf("  %s  %*d  %s\n", f.Mode, width, f.Size, f.Path)
	}
	fmt.Println("signatures (not verified here: use mairust plugin verify --trust):")
	for _, s := range []struct {
		name string
		sig  *pack.Signature
	}{{pack.DeveloperSigName, p.Developer}, {pack.MarketplaceSigName, p.Marketplace}} {
		if s.sig == nil {
			fmt.Printf("  %-16s none\n", s.name)
		} else {
			fmt.Printf("  %-16s key %s (%s)\n", s.name, s.sig.KeyID, s.sig.Algorithm)
		}
	}
	for _, w := range p.Warnings() {
		fmt.Printf("warning: %s\n", w)
	}
	return nil
}
