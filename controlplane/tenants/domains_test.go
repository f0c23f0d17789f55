package tenants

import (
	"strings"
	"testing"
)

func TestDomainName(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM":                        "example.com",
		" mail.example.com. ":                "mail.example.com",
		"xn--bcher-kva.example":              "xn--bcher-kva.example",
		"a-b.c0":                             "a-b.c0",
		strings.Repeat("a.", 126) + "a":      strings.Repeat("a.", 126) + "a", // 253 bytes
		strings.Repeat("a.", 126) + "ab":     "",                              // 254 bytes
		strings.Repeat("a", 63) + ".example": strings.Repeat("a", 63) + ".example",
		strings.Repeat("a", 64) + ".example": "",
		"":                                   "",
		".":                                  "",
		"localhost":                          "",
		"example..com":                       "",
		".example.com":                       "",
		"-a.example":                         "",
		"a-.example":                         "",
		"a_b.example":                        "",
		"a b.example":                        "",
		"bücher.example":                     "",
		"192.0.2.1":                          "",
		"example.com..":                      "",
		"*.example.com":                      "",
	} {
		got, err := domainName(in)
		if want == "" && err == nil {
			t.Errorf("domainName(%q) = %q, want an error", in, got)
		} else if want != "" && (err != nil || got != want) {
			t.Errorf("domainName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzDomainName: whatever domainName accepts is a lower-case LDH host
// name of at most 253 bytes with a dot, and stays the same when checked
// again.
func FuzzDomainName(f *testing.F) {
	for _, s := range []string{"example.com", "Example.COM.", "a.b", "xn--d1acufc.xn--p1ai", "1.2.3.4", "a..b", "-a.b", "a_b.c", "ü.de", " x.y ", strings.Repeat("a.", 127)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := domainName(s)
		if err != nil {
			return
		}
		if len(name) > maxDomainLen || !strings.Contains(name, ".") || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" ||
			strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
			t.Fatalf("domainName(%q) = %q", s, name)
		}
		if again, err := domainName(name); err != nil || again != name {
			t.Fatalf("domainName(%q) = %q, %v on a second pass", name, again, err)
		}
	})
}
