package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error has a message
// (and a key when it is a *KeyError), and that what it accepts is valid.
func FuzzParse(f *testing.F) {
	clearEnv(f)
	for _, seed := range []string{
		"",
		"~\n",
		Example(),
		"log:\n  level: debug\nsmtp:\n  listen: \":2525\"\n  read_timeout: 1m\n",
		s3(validS3 + "  encryption: client\n  client_key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"),
		s3(validS3 + "  multipart_threshold_mb: 129\n"),
		"smtp:\n  max_recipients: abc\n",
		"smtp:\n  read_timeout: 5 parsecs\n",
		"smtp:\n  listen: \":25\"\n  listen: \":26\"\n",
		"smtpd:\n  x: 1\n",
		"log: [1, 2\n",
		"a: &x [*x]\n",
		"log: &l\n  level: info\nhttp: *l\n",
		"- 1\n- 2\n",
		"log:\n  level: info\n---\nlog: {}\n",
		"\t- bad indent\n",
		"database:\n  max_conns: 1e3\n",
		"smtp:\n  max_message_bytes: !!binary AAAA\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("error without a message: %#v", err)
			}
			var ke *KeyError
			if errors.As(err, &ke) && (ke.Key == "" || ke.Msg == "" || ke.Line < 0) {
				t.Fatalf("incomplete KeyError: %+v", *ke)
			}
			return
		}
		if err := Validate(c, "fuzz.yaml", nil); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
	})
}
