package manifest

import (
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		fullProcess, base, base + "[permissions]\nread_body = \"all\"\n", base + "colour = 1\n",
		base + "settings = { a = { type = \"int\", default = 1 } }\n", "id = 'a\n", "[[settings]]\n", "a.b.c = 1\n",
		"[settings.\"a.b\"]\ntype = \"int\"\n", "hooks = [[1], {a = 2}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("plugin.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "plugin.toml") {
				t.Fatalf("error without the file name: %q", err)
			}
			return
		}
		if !idRE.MatchString(m.ID) || len(m.Hooks) == 0 || m.Timeout < MinTimeout || m.Timeout > MaxTimeout {
			t.Fatalf("accepted a bad manifest: %+v", m)
		}
		switch m.Kind {
		case KindProcess, KindStdin:
			if m.Command == "" || m.URL != "" {
				t.Fatalf("kind %s with command %q url %q", m.Kind, m.Command, m.URL)
			}
		case KindHTTP:
			if m.URL == "" || m.Command != "" {
				t.Fatalf("kind http with command %q url %q", m.Command, m.URL)
			}
		default:
			t.Fatalf("kind %q", m.Kind)
		}
		_ = m.Permissions.String()
		_ = Check(m, "1.0.0")
		_, _ = m.CheckSettings(nil)
	})
}
