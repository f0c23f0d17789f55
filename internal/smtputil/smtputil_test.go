package smtputil

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestHeloName(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.com":        "mail.example.com",
		"[192.0.2.1]":             "[192.0.2.1]",
		"evil (x)\r\nX-Bad: y\\z": "evilxX-Bad:yz",
		"メール.example":             ".example",
		"":                        "unknown",
		" ()":                     "unknown",
		strings.Repeat("a", 300):  strings.Repeat("a", 255),
	} {
		if got := HeloName(in); got != want {
			t.Errorf("HeloName(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzHeloName(f *testing.F) {
	f.Add("mail.example.com")
	f.Add("a (b)\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		got := HeloName(s)
		if got == "" || len(got) > 255 || strings.ContainsAny(got, " ()\\\r\n\t") {
			t.Fatalf("HeloName(%q) = %q", s, got)
		}
		for _, r := range got {
			if r < 0x21 || r > 0x7e {
				t.Fatalf("HeloName(%q) = %q has %q", s, got, r)
			}
		}
	})
}

func TestErrorLog(t *testing.T) {
	var buf bytes.Buffer
	l := ErrorLog{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Printf("accept error: %v", "too many files")
	l.Println("panic serving", "x")
	out := buf.String()
	if !strings.Contains(out, `level=DEBUG msg="smtp: accept error: too many files"`) ||
		!strings.Contains(out, `level=ERROR msg="smtp: panic servingx"`) {
		t.Errorf("log:\n%s", out)
	}
}
