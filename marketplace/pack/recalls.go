package pack

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Recall is an entry of the marketplace's recall list: a plugin version
// ("" for every version) found malicious.
type Recall struct {
	PluginID, Version, Reason string
}

// RecallText is what the marketplace signs of its recall list: a header
// with the list's version, then a line per recall, in order. Tabs and
// newlines in the fields are replaced by spaces.
func RecallText(version int64, list []Recall) []byte {
	clean := strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")
	var b strings.Builder
	fmt.Fprintf(&b, "mairust-recalls %d\n", version)
	for _, r := range list {
		fmt.Fprintf(&b, "%s\t%s\t%s\n", clean.Replace(r.PluginID), clean.Replace(r.Version), clean.Replace(r.Reason))
	}
	return []byte(b.String())
}

// SignRecalls signs a recall list with the marketplace's key (Ed25519).
func SignRecalls(s Signer, version int64, list []Recall) ([]byte, error) {
	if s.Algorithm() != Ed25519 {
		return nil, errors.New("the marketplace signs with an Ed25519 key")
	}
	return s.Sign(RecallText(version, list))
}

// VerifyRecalls checks the marketplace's signature, by the key keyID, of a
// recall list against the trusted marketplace keys, each until its end
// date.
func VerifyRecalls(trust Trust, keyID string, sig []byte, version int64, list []Recall, now time.Time) error {
	for _, k := range trust.Keys {
		if k.Role != Marketplace || k.Key == nil || (k.ID != keyID && (k.ID != "" || k.Key.ID != keyID)) {
			continue
		}
		if !k.NotAfter.IsZero() && now.After(k.NotAfter) {
			return fmt.Errorf("the recall list is signed by key %s, which expired on %s", keyID, k.NotAfter.UTC().Format(time.DateOnly))
		}
		if k.Key.Verify(RecallText(version, list), sig) != nil {
			return fmt.Errorf("the recall list %d has a bad signature by key %s", version, keyID)
		}
		return nil
	}
	return fmt.Errorf("the recall list %d is signed by key %q, which is not a trusted marketplace key", version, keyID)
}
