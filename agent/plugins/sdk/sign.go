package sdk

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"time"
)

// Headers of a signed request.
const (
	HeaderTimestamp = "X-MaiRust-Timestamp" // UTC Unix seconds, decimal
	HeaderPluginID  = "X-MaiRust-Plugin-Id"
	HeaderSignature = "X-MaiRust-Signature" // hex HMAC-SHA256, see Signature
)

// MaxSkew is how far a request's timestamp may be from the receiver's clock.
const MaxSkew = 5 * time.Minute

// Refusals of [Verify]; the returned error wraps one of them.
var (
	ErrNoSecret      = errors.New("no signing secret configured")
	ErrMissingHeader = errors.New("missing header")
	ErrContentType   = errors.New("content type is not application/json")
	ErrPluginID      = errors.New("plugin id mismatch")
	ErrBadTimestamp  = errors.New("malformed timestamp")
	ErrStale         = errors.New("stale request")
	ErrBadSignature  = errors.New("bad signature")
)

// Signature is hex(HMAC-SHA256(secret, ts + "\n" + pluginID + "\n" +
// hex(SHA-256(body)))) with ts in decimal.
func Signature(secret []byte, ts int64, pluginID string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10) + "\n" + pluginID + "\n" + hex.EncodeToString(sum[:])))
	return hex.EncodeToString(m.Sum(nil))
}

// Sign sets the signing headers and the content type of req, whose body is
// body, as of now.
func Sign(req *http.Request, pluginID string, secret []byte, body []byte, now time.Time) {
	ts := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderPluginID, pluginID)
	req.Header.Set(HeaderSignature, Signature(secret, ts, pluginID, body))
}

// Verify checks that h and body are a request signed with secret for
// pluginID within MaxSkew of now.
func Verify(h http.Header, body []byte, pluginID string, secret []byte, now time.Time) error {
	if len(secret) == 0 {
		return ErrNoSecret
	}
	for _, name := range []string{"Content-Type", HeaderTimestamp, HeaderPluginID, HeaderSignature} {
		if h.Get(name) == "" {
			return fmt.Errorf("%w %s", ErrMissingHeader, name)
		}
	}
	if mt, _, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || mt != "application/json" {
		return fmt.Errorf("%w: %q", ErrContentType, h.Get("Content-Type"))
	}
	if got := h.Get(HeaderPluginID); got != pluginID {
		return fmt.Errorf("%w: request is for %q, this is %q", ErrPluginID, got, pluginID)
	}
	tsText := h.Get(HeaderTimestamp)
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || strconv.FormatInt(ts, 10) != tsText {
		return fmt.Errorf("%w: %q", ErrBadTimestamp, tsText)
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > MaxSkew || skew < -MaxSkew {
		when := "old"
		if skew < 0 {
			when = "in the future"
		}
		return fmt.Errorf("%w: timestamp is %v %s, more than %v: the clocks of MaiRust and the plugin differ",
			ErrStale, skew.Abs().Round(time.Second), when, MaxSkew)
	}
	got, err := hex.DecodeString(h.Get(HeaderSignature))
	want, _ := hex.DecodeString(Signature(secret, ts, pluginID, body))
	if err != nil || !hmac.Equal(got, want) {
		return ErrBadSignature
	}
	return nil
}
