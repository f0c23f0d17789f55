package pack

import (
	"fmt"
	"os"
	"time"
)

// TrustedKeyFile reads a PEM public key file as a trusted marketplace key
// valid until notAfter (RFC 3339; empty: no end).
func TrustedKeyFile(path, notAfter string) (TrustedKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return TrustedKey{}, err
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return TrustedKey{}, fmt.Errorf("%s: %w", path, err)
	}
	tk := TrustedKey{Role: Marketplace, Key: pub}
	if notAfter != "" {
		if tk.NotAfter, err = time.Parse(time.RFC3339, notAfter); err != nil {
			return TrustedKey{}, fmt.Errorf("not_after %q: %w", notAfter, err)
		}
	}
	return tk, nil
}
