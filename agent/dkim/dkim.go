// Package dkim owns the DKIM keys of the domains the agent sends mail for
// (issue 6) and signs outgoing mail with them.
//
// Keys are generated per domain and selector, RSA-2048 by default (the most
// widely accepted) or Ed25519 (RFC 8463), and kept in the dkim_keys table.
// A domain has at most one active key, the one Signer signs with; Rotate
// makes a new active key and keeps the previous one retired, with its DNS
// record still to be published, until PruneRetired removes it after a grace
// period, so that mail signed just before the rotation still verifies.
//
// The private key must be usable to sign, so it cannot be hashed: it is
// sealed at rest with AES-256-GCM under a key-encryption key derived (HKDF-
// SHA256) from a secret the caller gives New, typically read from a file in
// the data directory with LoadOrCreateSecret. The domain, selector and
// algorithm are bound to the ciphertext as additional data, so a sealed key
// copied to another row does not open. Whoever has the database but not the
// secret cannot sign as the domain.
//
// TXTRecord and ZoneFileLine give what to publish in DNS.
package dkim

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Algorithm is a DKIM key type, as in the k= tag of the DNS record.
type Algorithm string

const (
	// RSA is RSA-2048 with rsa-sha256, the default.
	RSA Algorithm = "rsa"
	// Ed25519 is ed25519-sha256 (RFC 8463). Not every verifier supports it.
	Ed25519 Algorithm = "ed25519"
)

// rsaBits is the size of generated RSA keys.
const rsaBits = 2048

// ParseAlgorithm reads an algorithm name; "" means RSA.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "rsa":
		return RSA, nil
	case "ed25519":
		return Ed25519, nil
	}
	return "", fmt.Errorf("dkim: unknown algorithm %q (want rsa or ed25519)", s)
}

var (
	// ErrNoKey is returned when a domain has no active key; the caller may
	// send the mail unsigned with a warning.
	ErrNoKey = errors.New("dkim: domain has no active DKIM key")
	// ErrActiveKey is returned by Generate when the domain already has an
	// active key; Rotate replaces it.
	ErrActiveKey = errors.New("dkim: domain already has an active DKIM key (rotate it instead)")
	// ErrSelectorUsed is returned when the domain already has a key, active
	// or retired, under that selector.
	ErrSelectorUsed = errors.New("dkim: selector already used for this domain")
	// ErrUnknownDomain is returned when the domain is not one the agent
	// hosts.
	ErrUnknownDomain = errors.New("dkim: unknown domain")
	// ErrDecrypt is returned when a stored private key does not open: the
	// key-encryption secret is not the one it was sealed with, or the row
	// was altered.
	ErrDecrypt = errors.New("dkim: cannot decrypt private key (wrong key-encryption secret, or the stored key was altered)")
)

// Key is one stored DKIM key, without its private half.
type Key struct {
	ID        int64
	Domain    string
	Selector  string
	Algorithm Algorithm
	// PublicKey is what p= publishes: DER SubjectPublicKeyInfo for RSA, the
	// raw 32 bytes for Ed25519.
	PublicKey []byte
	CreatedAt time.Time
	Active    bool
	// RetiredAt is when Rotate replaced the key; zero while active.
	RetiredAt time.Time
}

// Store keeps DKIM keys in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	aead cipher.AEAD
}

// minSecret is the shortest key-encryption secret New accepts.
const minSecret = 16

// New returns a store on pool whose private keys are sealed under a key
// derived from secret (at least 16 bytes; LoadOrCreateSecret makes 32
// random ones).
func New(pool *pgxpool.Pool, secret []byte) (*Store, error) {
	if len(secret) < minSecret {
		return nil, fmt.Errorf("dkim: key-encryption secret too short: %d bytes, want at least %d", len(secret), minSecret)
	}
	kek, err := hkdf.Key(sha256.New, secret, nil, "mairust dkim private key encryption v1", 32)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return &Store{pool: pool, aead: aead}, nil
}

// SecretFile is where, under data_dir, the secret that seals the private
// keys is kept; back it up with the database.
const SecretFile = "dkim.key"

// Open opens the keys with the sealing secret under dataDir, made on first
// use.
func Open(pool *pgxpool.Pool, dataDir string) (*Store, error) {
	secret, err := LoadOrCreateSecret(filepath.Join(dataDir, SecretFile))
	if err != nil {
		return nil, err
	}
	return New(pool, secret)
}

// LoadOrCreateSecret reads the key-encryption secret from path, creating it
// (32 random bytes, mode 0600) when it does not exist.
func LoadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < minSecret {
			return nil, fmt.Errorf("dkim: secret file %s holds %d bytes, want at least %d", path, len(b), minSecret)
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	b = make([]byte, 32)
	rand.Read(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		// Another process made it first; use theirs.
		return LoadOrCreateSecret(path)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return b, nil
}

// aad binds a sealed key to its row.
func aad(domain, selector string, alg Algorithm) []byte {
	return []byte("dkim\x00" + domain + "\x00" + selector + "\x00" + string(alg))
}

// sealVersion is the first byte of a sealed key: format 1 is
// version || 12-byte nonce || AES-256-GCM(PKCS#8 DER).
const sealVersion = 1

func (s *Store) seal(plain, ad []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	out := append([]byte{sealVersion}, nonce...)
	return s.aead.Seal(out, nonce, plain, ad)
}

func (s *Store) open(sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return nil, ErrDecrypt
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}

// normalize lower-cases and checks a domain or selector: dot-separated DNS
// labels of letters, digits and hyphens.
func normalize(what, s string) (string, error) {
	s = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
	if s == "" || len(s) > 253 {
		return "", fmt.Errorf("dkim: invalid %s %q", what, s)
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("dkim: invalid %s %q", what, s)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("dkim: invalid %s %q", what, s)
			}
		}
	}
	return s, nil
}

// newKeyPair generates a key and returns its PKCS#8 private and p= public
// encodings.
func newKeyPair(alg Algorithm) (priv, pub []byte, err error) {
	switch alg {
	case RSA:
		k, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			return nil, nil, fmt.Errorf("dkim: %w", err)
		}
		priv, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, nil, fmt.Errorf("dkim: %w", err)
		}
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return nil, nil, fmt.Errorf("dkim: %w", err)
		}
		return priv, pub, nil
	case Ed25519:
		pk, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("dkim: %w", err)
		}
		priv, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, nil, fmt.Errorf("dkim: %w", err)
		}
		return priv, []byte(pk), nil
	}
	return nil, nil, fmt.Errorf("dkim: unknown algorithm %q (want rsa or ed25519)", alg)
}

// Generate makes the domain's first active key. It fails with ErrActiveKey
// when the domain already has one.
func (s *Store) Generate(ctx context.Context, domain, selector string, alg Algorithm) (Key, error) {
	return s.create(ctx, domain, selector, alg, false)
}

// Rotate makes a new active key for the domain under a new selector and
// retires the previous active key, if any. The retired key stays listed, and
// its DNS record should stay published, until PruneRetired removes it after
// the grace period, so mail already signed with it still verifies.
func (s *Store) Rotate(ctx context.Context, domain, selector string, alg Algorithm) (Key, error) {
	return s.create(ctx, domain, selector, alg, true)
}

func (s *Store) create(ctx context.Context, domain, selector string, alg Algorithm, rotate bool) (Key, error) {
	domain, err := normalize("domain", domain)
	if err != nil {
		return Key{}, err
	}
	selector, err = normalize("selector", selector)
	if err != nil {
		return Key{}, err
	}
	if alg == "" {
		alg = RSA
	}
	priv, pub, err := newKeyPair(alg)
	if err != nil {
		return Key{}, err
	}
	sealed := s.seal(priv, aad(domain, selector, alg))
	clear(priv)
	k := Key{Domain: domain, Selector: selector, Algorithm: alg, PublicKey: pub, Active: true}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Serialize key changes per domain so that two rotations do not
		// both retire the same key.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "mairust dkim "+domain); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS(SELECT 1 FROM domains WHERE name=$1)", domain).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("%w %q", ErrUnknownDomain, domain)
		}
		if err := tx.QueryRow(ctx, "SELECT EXISTS(SELECT 1 FROM dkim_keys WHERE domain=$1 AND selector=$2)", domain, selector).Scan(&exists); err != nil {
			return err
		}
		if exists {
			return fmt.Errorf("%w: %s for %s", ErrSelectorUsed, selector, domain)
		}
		if rotate {
			if _, err := tx.Exec(ctx, "UPDATE dkim_keys SET active=false, retired_at=now() WHERE domain=$1 AND active", domain); err != nil {
				return err
			}
		}
		err := tx.QueryRow(ctx, `INSERT INTO dkim_keys(domain, selector, algorithm, private_key, public_key)
			VALUES($1, $2, $3, $4, $5) RETURNING id, created_at`,
			domain, selector, string(alg), sealed, pub).Scan(&k.ID, &k.CreatedAt)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "dkim_keys_one_active" {
			return fmt.Errorf("%w: %s", ErrActiveKey, domain)
		}
		return err
	})
	if err != nil {
		if errors.Is(err, ErrActiveKey) || errors.Is(err, ErrSelectorUsed) || errors.Is(err, ErrUnknownDomain) {
			return Key{}, err
		}
		return Key{}, fmt.Errorf("dkim: store key for %s: %w", domain, err)
	}
	return k, nil
}

const keyColumns = "id, domain, selector, algorithm, public_key, created_at, active, retired_at"

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	var alg string
	var retired *time.Time
	if err := row.Scan(&k.ID, &k.Domain, &k.Selector, &alg, &k.PublicKey, &k.CreatedAt, &k.Active, &retired); err != nil {
		return Key{}, err
	}
	k.Algorithm = Algorithm(alg)
	if retired != nil {
		k.RetiredAt = *retired
	}
	return k, nil
}

// List returns the domain's keys, active and retired, newest first; every
// one of them should be published in DNS. domain "" lists all domains.
func (s *Store) List(ctx context.Context, domain string) ([]Key, error) {
	q := "SELECT " + keyColumns + " FROM dkim_keys"
	var args []any
	if domain != "" {
		d, err := normalize("domain", domain)
		if err != nil {
			return nil, err
		}
		q += " WHERE domain=$1"
		args = append(args, d)
	}
	rows, err := s.pool.Query(ctx, q+" ORDER BY domain, created_at DESC, id DESC", args...)
	if err != nil {
		return nil, fmt.Errorf("dkim: list keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("dkim: list keys: %w", err)
	}
	return keys, nil
}

// Active returns the domain's active key, or ErrNoKey.
func (s *Store) Active(ctx context.Context, domain string) (Key, error) {
	d, err := normalize("domain", domain)
	if err != nil {
		return Key{}, err
	}
	k, err := scanKey(s.pool.QueryRow(ctx, "SELECT "+keyColumns+" FROM dkim_keys WHERE domain=$1 AND active", d))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("%w: %s", ErrNoKey, d)
	}
	if err != nil {
		return Key{}, fmt.Errorf("dkim: active key of %s: %w", d, err)
	}
	return k, nil
}

// PruneRetired deletes the keys retired before cutoff (now minus the grace
// period, for instance a week: longer than mail may sit in queues) and
// returns them, so their DNS records can be removed too.
func (s *Store) PruneRetired(ctx context.Context, cutoff time.Time) ([]Key, error) {
	rows, err := s.pool.Query(ctx, "DELETE FROM dkim_keys WHERE NOT active AND retired_at < $1 RETURNING "+keyColumns, cutoff)
	if err != nil {
		return nil, fmt.Errorf("dkim: prune keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("dkim: prune keys: %w", err)
	}
	return keys, nil
}

// privateKey loads and opens the private half of key id.
func (s *Store) privateKey(ctx context.Context, k Key) (crypto.Signer, error) {
	var sealed []byte
	if err := s.pool.QueryRow(ctx, "SELECT private_key FROM dkim_keys WHERE id=$1", k.ID).Scan(&sealed); err != nil {
		return nil, fmt.Errorf("dkim: load private key of %s (selector %s): %w", k.Domain, k.Selector, err)
	}
	der, err := s.open(sealed, aad(k.Domain, k.Selector, k.Algorithm))
	if err != nil {
		return nil, fmt.Errorf("%w: %s selector %s", err, k.Domain, k.Selector)
	}
	defer clear(der)
	p, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("dkim: parse private key of %s (selector %s): %w", k.Domain, k.Selector, err)
	}
	switch p := p.(type) {
	case *rsa.PrivateKey:
		if k.Algorithm == RSA {
			return p, nil
		}
	case ed25519.PrivateKey:
		if k.Algorithm == Ed25519 {
			return p, nil
		}
	}
	return nil, fmt.Errorf("dkim: private key of %s (selector %s) is %T, not %s", k.Domain, k.Selector, p, k.Algorithm)
}

// TXTRecord returns the DNS name and TXT value that publish k, e.g.
// "sel._domainkey.example.com" and "v=DKIM1; k=rsa; p=MIIB…". The value is
// unsplit; a zone file needs it cut into strings of at most 255 bytes, which
// TXTStrings and ZoneFileLine do.
func TXTRecord(k Key) (name, value string) {
	return k.Selector + "._domainkey." + k.Domain,
		"v=DKIM1; k=" + string(k.Algorithm) + "; p=" + base64.StdEncoding.EncodeToString(k.PublicKey)
}

// TXTStrings cuts a TXT value into the at most 255-byte character strings
// one DNS TXT record is made of.
func TXTStrings(value string) []string {
	var out []string
	for len(value) > 255 {
		out = append(out, value[:255])
		value = value[255:]
	}
	return append(out, value)
}

// ZoneFileLine returns k's record as one zone-file line, e.g.
//
//	sel._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; p=…" "…" )
func ZoneFileLine(k Key) string {
	name, value := TXTRecord(k)
	var b strings.Builder
	b.WriteString(name + ". IN TXT (")
	for _, s := range TXTStrings(value) {
		b.WriteString(` "` + s + `"`)
	}
	b.WriteString(" )")
	return b.String()
}
