package mailer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/mairust/mairust/internal/config"
)

// MaxAddressLen is the longest address taken, in bytes (RFC 5321's path
// limit less the angle brackets).
const MaxAddressLen = 254

// Address checks that s is a bare mail address (user@domain, no display
// name or comment) of at most MaxAddressLen bytes and returns it in lower
// case, the form accounts and invitations are kept in.
func Address(s string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(s))
	if a == "" {
		return "", errors.New("empty: give a mail address, user@domain")
	}
	if len(a) > MaxAddressLen {
		return "", fmt.Errorf("longer than %d bytes", MaxAddressLen)
	}
	p, err := mail.ParseAddress(a)
	if err != nil || p.Name != "" || p.Address != a || strings.ContainsAny(a, " \t\r\n\"") {
		return "", fmt.Errorf("%q is not a mail address of the form user@domain", s)
	}
	return a, nil
}

// tokenBytes is the length of a token before encoding.
const tokenBytes = 32

// NewToken returns a one-time token for a link (32 random bytes,
// base64url) and the SHA-256 hash to store in its place.
func NewToken() (token string, hash []byte) {
	b := make([]byte, tokenBytes)
	rand.Read(b)
	token = base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	return token, h[:]
}

// TokenHash returns the stored hash of a token made by NewToken, or an
// error when token cannot be one.
func TokenHash(token string) ([]byte, error) {
	if b, err := base64.RawURLEncoding.DecodeString(token); err != nil || len(b) != tokenBytes {
		return nil, errors.New("not a token from our mail: copy the whole link")
	}
	h := sha256.Sum256([]byte(token))
	return h[:], nil
}

// Link returns the console URL path?token=token under the control
// plane's URL (controlplane.public_url, or its listener).
func Link(cfg config.ControlPlane, path, token string) string {
	return cfg.URL() + path + "?token=" + token
}
