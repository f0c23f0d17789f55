package sdk

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

var (
	testNow    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	testSecret = []byte("s3cret")
	testBody   = []byte(`{"version":1}`)
)

func signed(t *testing.T, at time.Time) http.Header {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://plugin.test/", nil)
	if err != nil {
		t.Fatal(err)
	}
	Sign(req, "spamtag", testSecret, testBody, at)
	return req.Header
}

func TestSignature(t *testing.T) {
	// The scheme, spelled out independently.
	sum := sha256.Sum256(testBody)
	m := hmac.New(sha256.New, testSecret)
	m.Write([]byte("1748779200\nspamtag\n" + hex.EncodeToString(sum[:])))
	want := hex.EncodeToString(m.Sum(nil))
	if got := Signature(testSecret, testNow.Unix(), "spamtag", testBody); got != want {
		t.Errorf("Signature = %s, want %s", got, want)
	}

	h := signed(t, testNow)
	if h.Get(HeaderTimestamp) != "1748779200" || h.Get(HeaderPluginID) != "spamtag" ||
		h.Get(HeaderSignature) != want || h.Get("Content-Type") != "application/json" {
		t.Errorf("headers: %v", h)
	}
}

func TestVerify(t *testing.T) {
	if err := Verify(signed(t, testNow), testBody, "spamtag", testSecret, testNow); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	h := signed(t, testNow)
	h.Set("Content-Type", "application/json; charset=utf-8")
	if err := Verify(h, testBody, "spamtag", testSecret, testNow); err != nil {
		t.Errorf("with charset: %v", err)
	}
	h = signed(t, testNow)
	h.Set(HeaderSignature, strings.ToUpper(h.Get(HeaderSignature)))
	if err := Verify(h, testBody, "spamtag", testSecret, testNow); err != nil {
		t.Errorf("upper-case hex: %v", err)
	}
	// Exactly at the edge, either way, is still fine.
	for _, d := range []time.Duration{MaxSkew, -MaxSkew} {
		if err := Verify(signed(t, testNow.Add(d)), testBody, "spamtag", testSecret, testNow); err != nil {
			t.Errorf("signed %v from now: %v", d, err)
		}
	}
}

func TestVerifyRefusals(t *testing.T) {
	edit := func(f func(http.Header)) http.Header {
		h := signed(t, testNow)
		f(h)
		return h
	}
	cases := []struct {
		name   string
		h      http.Header
		body   []byte
		secret []byte
		now    time.Time
		want   error
		msg    string
	}{
		{name: "old", h: signed(t, testNow.Add(-MaxSkew-time.Second)), want: ErrStale, msg: "5m1s old, more than 5m0s: the clocks of MaiRust and the plugin differ"},
		{name: "future", h: signed(t, testNow.Add(MaxSkew+time.Second)), want: ErrStale, msg: "5m1s in the future"},
		{name: "old by a fraction", h: signed(t, testNow), now: testNow.Add(MaxSkew + time.Millisecond), want: ErrStale},
		{name: "future by a fraction", h: signed(t, testNow), now: testNow.Add(-MaxSkew - time.Millisecond), want: ErrStale},
		{name: "wrong id", h: edit(func(h http.Header) { h.Set(HeaderPluginID, "other") }), want: ErrPluginID, msg: `"other"`},
		{name: "wrong secret", h: signed(t, testNow), secret: []byte("guess"), want: ErrBadSignature},
		{name: "no secret", h: signed(t, testNow), secret: []byte{}, want: ErrNoSecret},
		{name: "tampered body", h: signed(t, testNow), body: []byte(`{"version":2}`), want: ErrBadSignature},
		{name: "tampered timestamp", h: edit(func(h http.Header) { h.Set(HeaderTimestamp, "1748779201") }), want: ErrBadSignature},
		{name: "not hex", h: edit(func(h http.Header) { h.Set(HeaderSignature, "zz") }), want: ErrBadSignature},
		{name: "short signature", h: edit(func(h http.Header) { h.Set(HeaderSignature, h.Get(HeaderSignature)[:10]) }), want: ErrBadSignature},
		{name: "bad timestamp", h: edit(func(h http.Header) { h.Set(HeaderTimestamp, "+1748779200") }), want: ErrBadTimestamp},
		{name: "float timestamp", h: edit(func(h http.Header) { h.Set(HeaderTimestamp, "1748779200.0") }), want: ErrBadTimestamp},
		{name: "huge timestamp", h: edit(func(h http.Header) { h.Set(HeaderTimestamp, "9223372036854775807") }), want: ErrStale},
		{name: "no timestamp", h: edit(func(h http.Header) { h.Del(HeaderTimestamp) }), want: ErrMissingHeader, msg: HeaderTimestamp},
		{name: "no id", h: edit(func(h http.Header) { h.Del(HeaderPluginID) }), want: ErrMissingHeader, msg: HeaderPluginID},
		{name: "no signature", h: edit(func(h http.Header) { h.Del(HeaderSignature) }), want: ErrMissingHeader, msg: HeaderSignature},
		{name: "no content type", h: edit(func(h http.Header) { h.Del("Content-Type") }), want: ErrMissingHeader, msg: "Content-Type"},
		{name: "text content type", h: edit(func(h http.Header) { h.Set("Content-Type", "text/plain") }), want: ErrContentType},
		{name: "bad content type", h: edit(func(h http.Header) { h.Set("Content-Type", "application/json;;") }), want: ErrContentType},
		{name: "no headers", h: http.Header{}, want: ErrMissingHeader},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body, secret, now := testBody, testSecret, testNow
			if c.body != nil {
				body = c.body
			}
			if c.secret != nil {
				secret = c.secret
			}
			if !c.now.IsZero() {
				now = c.now
			}
			err := Verify(c.h, body, "spamtag", secret, now)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%q lacks %q", err, c.msg)
			}
		})
	}
}
