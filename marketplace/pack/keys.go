package pack

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
)

// Algorithm is a signature algorithm.
type Algorithm string

// Signature algorithms. Marketplace signatures are Ed25519 only.
const (
	Ed25519      Algorithm = "ed25519"
	RSAPSSSHA256 Algorithm = "rsa-pss-sha256"
)

// RSA key sizes: generated, and accepted.
const (
	RSABits    = 2048
	minRSABits = 2048
	maxRSABits = 8192
)

// Signer signs for a package: a PrivateKey, or a key held elsewhere (an
// HSM, a cloud KMS) behind the same three methods.
type Signer interface {
	KeyID() string
	Algorithm() Algorithm
	Sign(msg []byte) ([]byte, error) // Ed25519 over msg, or RSA-PSS over SHA-256(msg)
}

// PrivateKey is a signing key read from or written to PKCS#8 PEM.
type PrivateKey struct {
	ID  string // the key id written in signatures; KeyID of the public key unless set otherwise
	alg Algorithm
	key crypto.Signer
}

// PublicKey is a verification key read from or written to PKIX PEM.
type PublicKey struct {
	ID  string // KeyID of the key
	alg Algorithm
	key crypto.PublicKey
}

// GenerateKey makes a key of type "ed25519" or "rsa" (2048 bits).
func GenerateKey(typ string) (*PrivateKey, error) {
	var k crypto.Signer
	var err error
	switch typ {
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, RSABits)
	default:
		return nil, fmt.Errorf("key type %q: use ed25519 or rsa", typ)
	}
	if err != nil {
		return nil, err
	}
	return newPrivateKey(k)
}

func newPrivateKey(k crypto.Signer) (*PrivateKey, error) {
	pub, err := newPublicKey(k.Public())
	if err != nil {
		return nil, err
	}
	return &PrivateKey{ID: pub.ID, alg: pub.alg, key: k}, nil
}

func newPublicKey(k crypto.PublicKey) (*PublicKey, error) {
	var alg Algorithm
	switch k := k.(type) {
	case ed25519.PublicKey:
		alg = Ed25519
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits: use %d to %d bits", n, minRSABits, maxRSABits)
		}
		alg = RSAPSSSHA256
	default:
		return nil, fmt.Errorf("%T keys are not supported: use ed25519 or rsa", k)
	}
	id, err := KeyID(k)
	if err != nil {
		return nil, err
	}
	return &PublicKey{ID: id, alg: alg, key: k}, nil
}

// KeyID is the first 16 hex digits of the SHA-256 of pub's PKIX DER.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8]), nil
}

var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)

func checkKeyID(id string) error {
	if !keyIDRE.MatchString(id) {
		return fmt.Errorf("key id %q: use 1 to 64 of A-Z, a-z, 0-9, '.', '_', ':', '-'", id)
	}
	return nil
}

// ParsePrivateKey reads a PKCS#8 PEM private key (Ed25519 or RSA).
func ParsePrivateKey(data []byte) (*PrivateKey, error) {
	block, _ := pem.Decode(data)
	switch {
	case block == nil:
		return nil, errors.New("no PEM data: expected a PKCS#8 private key (-----BEGIN PRIVATE KEY-----)")
	case block.Type == "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("encrypted private keys are not supported: decrypt it (openssl pkcs8 -topk8 -nocrypt)")
	case block.Type == "PUBLIC KEY":
		return nil, errors.New("this is a public key: signing needs the private key (the .key file)")
	case block.Type != "PRIVATE KEY":
		return nil, fmt.Errorf("PEM block %q: expected a PKCS#8 private key (convert it: openssl pkcs8 -topk8 -nocrypt)", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return newPrivateKey(k)
	case *rsa.PrivateKey:
		return newPrivateKey(k)
	default:
		return nil, fmt.Errorf("%T keys are not supported: use ed25519 or rsa", k)
	}
}

// ParsePublicKey reads a PKIX PEM public key (Ed25519 or RSA).
func ParsePublicKey(data []byte) (*PublicKey, error) {
	block, _ := pem.Decode(data)
	switch {
	case block == nil:
		return nil, errors.New("no PEM data: expected a public key (-----BEGIN PUBLIC KEY-----)")
	case block.Type == "PRIVATE KEY":
		return nil, errors.New("this is a private key: give the public key (the .pub file)")
	case block.Type != "PUBLIC KEY":
		return nil, fmt.Errorf("PEM block %q: expected a PKIX public key (-----BEGIN PUBLIC KEY-----)", block.Type)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return newPublicKey(k)
}

// KeyID is the id written in the key's signatures.
func (k *PrivateKey) KeyID() string { return k.ID }

// Algorithm is the algorithm of the key's signatures.
func (k *PrivateKey) Algorithm() Algorithm { return k.alg }

// Sign signs msg: Ed25519, or RSA-PSS (salt as long as the hash) over SHA-256.
func (k *PrivateKey) Sign(msg []byte) ([]byte, error) {
	if k.alg == RSAPSSSHA256 {
		sum := sha256.Sum256(msg)
		return k.key.Sign(rand.Reader, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	}
	return k.key.Sign(rand.Reader, msg, crypto.Hash(0))
}

// Public is the key's public half (with its computed id).
func (k *PrivateKey) Public() *PublicKey {
	pub, _ := newPublicKey(k.key.Public())
	return pub
}

// MarshalPEM returns the key as PKCS#8 PEM.
func (k *PrivateKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Algorithm is the algorithm of the signatures the key verifies.
func (k *PublicKey) Algorithm() Algorithm { return k.alg }

// MarshalPEM returns the key as PKIX PEM.
func (k *PublicKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// Verify checks a signature of msg made by Sign.
func (k *PublicKey) Verify(msg, sig []byte) error {
	bad := errors.New("signature does not match")
	switch key := k.key.(type) {
	case ed25519.PublicKey:
		if !ed25519.Verify(key, msg, sig) {
			return bad
		}
	case *rsa.PublicKey:
		sum := sha256.Sum256(msg)
		if rsa.VerifyPSS(key, crypto.SHA256, sum[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) != nil {
			return bad
		}
	default:
		return bad
	}
	return nil
}
