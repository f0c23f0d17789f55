package pack

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// TrustedKey is a public key trusted to sign packages in one role.
type TrustedKey struct {
	ID       string // the key_id its signatures carry; empty: Key.ID
	Role     Role
	Key      *PublicKey
	NotAfter time.Time // zero: no end; after it, the key's signatures are refused (rotation)
}

// Trust is what Verify accepts.
type Trust struct {
	Keys               []TrustedKey
	RequireDeveloper   bool // refuse a package without developer.sig
	RequireMarketplace bool // refuse a package without marketplace.sig
}

// Check is one signature as Verify found it.
type Check struct {
	Role      Role
	KeyID     string
	Algorithm Algorithm
	Verified  bool   // false: not checked, as no key of its role is trusted and none is required
	Note      string // why it was not checked
}

// Checked lists the signatures the last successful Verify looked at; nil
// if the package was not verified (or was signed since).
func (p *Package) Checked() []Check { return p.checked }

// Verify checks that the files match manifest.json (sizes, digests, modes,
// nothing missing or added) and the signatures: a signature present in a
// role that has trusted keys, or that Trust requires, must be made by one
// of those keys, not past its NotAfter at now. At least one signature must
// be verified.
func (p *Package) Verify(trust Trust, now time.Time) error {
	p.checked = nil
	if err := p.checkFiles(); err != nil {
		return err
	}
	var checks []Check
	verified := false
	for _, role := range []Role{Developer, Marketplace} {
		c, err := p.verifyRole(role, trust, now)
		if err != nil {
			return err
		}
		if c != nil {
			checks = append(checks, *c)
			verified = verified || c.Verified
		}
	}
	if !verified {
		if len(checks) == 0 {
			return errors.New("the package is not signed (sign it with mairust plugin sign)")
		}
		return errors.New("no signature of the package could be checked: trust the public key of its developer or of the marketplace")
	}
	p.checked = checks
	return nil
}

// verifyRole checks the role's signature; nil when it has none.
func (p *Package) verifyRole(role Role, trust Trust, now time.Time) (*Check, error) {
	name := role.FileName()
	required := trust.RequireDeveloper
	if role == Marketplace {
		required = trust.RequireMarketplace
	}
	var keys []TrustedKey
	for _, k := range trust.Keys {
		if k.Role == role && k.Key != nil {
			keys = append(keys, k)
		}
	}
	sig, _ := p.signature(role)
	switch {
	case sig == nil && required:
		return nil, fmt.Errorf("the package has no %s signature (%s), and one is required", role, name)
	case sig == nil:
		return nil, nil
	case len(keys) == 0 && required:
		return nil, fmt.Errorf("a %s signature is required, but no %s key is trusted", role, role)
	}
	c := &Check{Role: role, KeyID: sig.KeyID, Algorithm: sig.Algorithm}
	if len(keys) == 0 {
		c.Note = "no " + string(role) + " key is trusted"
		return c, nil
	}
	var key *TrustedKey
	for i, k := range keys {
		if id := k.ID; id == sig.KeyID || (id == "" && k.Key.ID == sig.KeyID) {
			key = &keys[i]
			break
		}
	}
	switch {
	case key == nil:
		return nil, fmt.Errorf("%s: signed by key %s, which is not a trusted %s key", name, sig.KeyID, role)
	case !key.NotAfter.IsZero() && now.After(key.NotAfter):
		return nil, fmt.Errorf("%s: %s key %s expired on %s (it was rotated out): get the package signed with the current key",
			name, role, sig.KeyID, key.NotAfter.UTC().Format(time.DateOnly))
	case key.Key.Algorithm() != sig.Algorithm:
		return nil, fmt.Errorf("%s: algorithm %s, but trusted key %s is %s", name, sig.Algorithm, sig.KeyID, key.Key.Algorithm())
	}
	if key.Key.Verify(signedMessage(role, p.manifestJSON, p.developerSig), sig.Signature) != nil {
		hint := "the package's manifest.json was replaced or edited after it was signed"
		if role == Marketplace {
			hint += ", or developer.sig was removed or replaced"
		}
		return nil, fmt.Errorf("%s: bad signature by key %s: %s", name, sig.KeyID, hint)
	}
	c.Verified = true
	return c, nil
}

// Unpack writes the files listed in manifest.json into dir, which it
// creates (its parent must exist; dir must not): files 0644 or 0755,
// directories 0755, never following a link. Verify must have succeeded.
// On error, dir is removed.
func (p *Package) Unpack(dir string) (err error) {
	if p.checked == nil {
		return errors.New("verify the package before unpacking it")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists already: unpack into a new directory", dir)
		}
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		return err
	}
	made := map[string]bool{}
	for _, f := range p.Manifest.Files {
		for i := range len(f.Path) {
			if d := f.Path[:i]; f.Path[i] == '/' && !made[d] {
				made[d] = true
				if err := root.Mkdir(d, 0o755); err != nil {
					return err
				}
				if err := root.Chmod(d, 0o755); err != nil {
					return err
				}
			}
		}
		mode := os.FileMode(0o644)
		if f.Mode == ModeExec {
			mode = 0o755
		}
		out, err := root.OpenFile(f.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		_, err = out.Write(p.files[f.Path].data)
		if err == nil {
			err = out.Chmod(mode) // whatever the umask
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}
