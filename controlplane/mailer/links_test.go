package mailer

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mairust/mairust/internal/config"
)

func TestAddress(t *testing.T) {
	for in, want := range map[string]string{
		"Alice@Example.COM":                    "alice@example.com",
		"  bob@example.test ":                  "bob@example.test",
		"a.b+tag@sub.example.test":             "a.b+tag@sub.example.test",
		"":                                     "",
		"alice":                                "",
		"alice@":                               "",
		"@example.test":                        "",
		"Alice <alice@example.test>":           "",
		"alice@example.test, bob@example.test": "",
		"\"a b\"@example.test":                 "",
		"alice@exa mple.test":                  "",
		"alice@example.test\r\nBcc: eve@evil.test":  "",
		strings.Repeat("a", 243) + "@example.test":  "",
		strings.Repeat("a", 64) + "@" + "x.example": strings.Repeat("a", 64) + "@x.example",
	} {
		got, err := Address(in)
		if want == "" && err == nil {
			t.Errorf("Address(%q) = %q, want an error", in, got)
		} else if want != "" && (err != nil || got != want) {
			t.Errorf("Address(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzEmail: whatever Address accepts is short, lower case, a single line
// with one @, and stays the same when checked again.
func FuzzEmail(f *testing.F) {
	for _, s := range []string{"alice@example.com", "A@B.C", "\"q\"@x.y", "a@[127.0.0.1]", "a b@c.d", "a@b@c", "(c)a@b.c", "é@ü.test", "a@b.c\n", "<a@b.c>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Address(s)
		if err != nil {
			return
		}
		if len(a) > MaxAddressLen || a != strings.ToLower(a) || strings.ContainsAny(a, "\r\n\t <>\",") || strings.Count(a, "@") != 1 {
			t.Fatalf("Address(%q) = %q", s, a)
		}
		if again, err := Address(a); err != nil || again != a {
			t.Fatalf("Address(%q) = %q, %v on a second pass", a, again, err)
		}
	})
}

func TestToken(t *testing.T) {
	tok, hash := NewToken()
	if len(tok) != 43 {
		t.Fatalf("token %q: %d characters", tok, len(tok))
	}
	got, err := TokenHash(tok)
	if err != nil || !bytes.Equal(got, hash) {
		t.Fatalf("TokenHash(token) = %x, %v; want %x", got, err, hash)
	}
	if other, _ := NewToken(); other == tok {
		t.Fatal("two tokens are equal")
	}
	for _, bad := range []string{"", tok[:42], tok + "A", strings.Repeat("!", 43)} {
		if _, err := TokenHash(bad); err == nil {
			t.Errorf("TokenHash(%q) accepted", bad)
		}
	}
}

func TestLink(t *testing.T) {
	for _, tc := range []struct {
		cfg  config.ControlPlane
		want string
	}{
		{config.ControlPlane{PublicURL: "https://cp.example.test/", Listen: "127.0.0.1:8090"}, "https://cp.example.test/console/verify?token=T"},
		{config.ControlPlane{Listen: "127.0.0.1:8090"}, "http://127.0.0.1:8090/console/verify?token=T"},
	} {
		if got := Link(tc.cfg, "/console/verify", "T"); got != tc.want {
			t.Errorf("Link = %q, want %q", got, tc.want)
		}
	}
}
