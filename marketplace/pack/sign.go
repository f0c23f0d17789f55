package pack

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
)

// Role is who signs: the plugin's developer, or the marketplace that
// reviewed it.
type Role string

// Signing roles.
const (
	Developer   Role = "developer"
	Marketplace Role = "marketplace"
)

// FileName is the signature file of the role in a package.
func (r Role) FileName() string {
	if r == Marketplace {
		return MarketplaceSigName
	}
	return DeveloperSigName
}

// Signature is the content of developer.sig or marketplace.sig.
type Signature struct {
	KeyID     string    `json:"key_id"`
	Algorithm Algorithm `json:"algorithm"`
	Signature []byte    `json:"signature"` // base64 in the file
}

// Marshal returns the canonical bytes of s, as stored in the package.
func (s Signature) Marshal() ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseSignature decodes a signature file strictly (name is used in errors).
func ParseSignature(name string, data []byte) (*Signature, error) {
	if len(data) > MaxSignatureBytes {
		return nil, fmt.Errorf("%s is larger than %d KiB", name, MaxSignatureBytes>>10)
	}
	var s Signature
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: data after the JSON object", name)
	}
	if err := checkKeyID(s.KeyID); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if s.Algorithm != Ed25519 && s.Algorithm != RSAPSSSHA256 {
		return nil, fmt.Errorf("%s: algorithm %q (want %s or %s)", name, s.Algorithm, Ed25519, RSAPSSSHA256)
	}
	if name == MarketplaceSigName && s.Algorithm != Ed25519 {
		return nil, fmt.Errorf("%s: algorithm %q; marketplace signatures are %s", name, s.Algorithm, Ed25519)
	}
	if len(s.Signature) == 0 || len(s.Signature) > maxRSABits/8 {
		return nil, fmt.Errorf("%s: no signature, or one that is too long", name)
	}
	if canon, err := s.Marshal(); err != nil || !bytes.Equal(canon, data) {
		return nil, fmt.Errorf("%s is not in canonical form; sign the package again", name)
	}
	return &s, nil
}

// signedMessage is what a role signs: the manifest.json bytes for the
// developer; SHA-256(manifest.json) followed by the developer.sig bytes
// (none when absent) for the marketplace.
func signedMessage(role Role, manifestJSON, developerSig []byte) []byte {
	if role == Developer {
		return manifestJSON
	}
	sum := sha256.Sum256(manifestJSON)
	return append(sum[:], developerSig...)
}

// Sign adds or replaces the role's signature. It refuses a package whose
// files do not match its manifest.json, and a marketplace key that is not
// Ed25519. A new developer signature drops the marketplace one, which
// covered the old.
func (p *Package) Sign(role Role, s Signer) error {
	if role != Developer && role != Marketplace {
		return fmt.Errorf("role %q: use developer or marketplace", role)
	}
	if role == Marketplace && s.Algorithm() != Ed25519 {
		return fmt.Errorf("marketplace signatures are %s; this key is %s", Ed25519, s.Algorithm())
	}
	if err := checkKeyID(s.KeyID()); err != nil {
		return err
	}
	if err := p.checkFiles(); err != nil {
		return fmt.Errorf("not signing: %w", err)
	}
	raw, err := s.Sign(signedMessage(role, p.manifestJSON, p.developerSig))
	if err != nil {
		return fmt.Errorf("sign as %s: %w", role, err)
	}
	sig := Signature{KeyID: s.KeyID(), Algorithm: s.Algorithm(), Signature: raw}
	data, err := sig.Marshal()
	if err != nil {
		return err
	}
	if role == Developer {
		p.Developer, p.developerSig = &sig, data
		p.Marketplace, p.marketplaceSig = nil, nil
	} else {
		p.Marketplace, p.marketplaceSig = &sig, data
	}
	p.checked = nil
	return nil
}

// signature returns the role's signature and its file bytes; nil if absent.
func (p *Package) signature(role Role) (*Signature, []byte) {
	if role == Marketplace {
		return p.Marketplace, p.marketplaceSig
	}
	return p.Developer, p.developerSig
}
