package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/internal/config"
)

// keyring signs access tokens with the current key and verifies them with
// the current or a previous one, chosen by the kid header.
type keyring struct {
	current config.JWTKey
	byID    map[string][]byte
}

func newKeyring(current string, previous string) (*keyring, error) {
	cur, err := config.ParseJWTKeys(current)
	if err != nil {
		return nil, fmt.Errorf("api.jwt_key: %w", err)
	}
	k := &keyring{current: cur[0], byID: map[string][]byte{cur[0].ID: cur[0].Secret}}
	if previous != "" {
		prev, err := config.ParseJWTKeys(previous)
		if err != nil {
			return nil, fmt.Errorf("api.jwt_previous_keys: %w", err)
		}
		for _, p := range prev {
			k.byID[p.ID] = p.Secret
		}
	}
	return k, nil
}

// issuer names the agent in the tokens it signs.
const issuer = "mairust-agent"

// claims are an access token's claims.
type claims struct {
	jwt.RegisteredClaims
	Tenant  string `json:"tid"`
	Address string `json:"adr"`
	Admin   bool   `json:"adm,omitempty"`
}

// sign returns an access token for u valid for ttl.
func (k *keyring) sign(u accounts.User, now time.Time, ttl time.Duration) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   strconv.FormatInt(u.ID, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Tenant: u.TenantID, Address: u.Address, Admin: u.Admin,
	})
	t.Header["kid"] = k.current.ID
	return t.SignedString(k.current.Secret)
}

// verify checks an access token's signature, algorithm, issuer and expiry.
func (k *keyring) verify(token string, now time.Time) (*claims, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		secret, ok := k.byID[kid]
		if !ok {
			return nil, fmt.Errorf("unknown key %q", kid)
		}
		return secret, nil
	}, jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(issuer), jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Opaque tokens (refresh and API tokens) are random; only their SHA-256 is
// stored, so a database leak reveals none. The prefix tells them apart.
const (
	refreshPrefix  = "mrr_"
	apiTokenPrefix = "mrt_"
)

// newOpaque returns a fresh token with prefix and the hash to store.
func newOpaque(prefix string) (token string, hash []byte) {
	b := make([]byte, 32)
	rand.Read(b)
	token = prefix + base64.RawURLEncoding.EncodeToString(b)
	return token, hashOpaque(token)
}

func hashOpaque(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// generateJWTKey makes a new kid:base64 signing key.
func generateJWTKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return "k" + strconv.FormatInt(time.Now().Unix(), 36) + ":" + base64.StdEncoding.EncodeToString(b)
}
