package manifest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPermissions(t *testing.T) {
	tests := []struct {
		name    string
		p       Permissions
		missing []string
		added   []string
		after   Permissions
	}{
		{"none", Permissions{}, nil, nil, Permissions{}},
		{"write_tags", Permissions{WriteTags: true},
			[]string{"write_tags needs read_headers"},
			[]string{"read_headers"},
			Permissions{WriteTags: true, ReadHeaders: true}},
		{"move_message", Permissions{MoveMessage: true},
			[]string{"move_message needs read_headers", "move_message needs read_body = preview or full"},
			[]string{"read_headers", "read_body = preview"},
			Permissions{MoveMessage: true, ReadHeaders: true, ReadBody: BodyPreview}},
		{"move_message with full body", Permissions{MoveMessage: true, WriteTags: true, ReadBody: BodyFull},
			[]string{"write_tags needs read_headers", "move_message needs read_headers"},
			[]string{"read_headers"},
			Permissions{MoveMessage: true, WriteTags: true, ReadHeaders: true, ReadBody: BodyFull}},
		{"satisfied", Permissions{MoveMessage: true, ReadHeaders: true, ReadBody: BodyPreview}, nil, nil,
			Permissions{MoveMessage: true, ReadHeaders: true, ReadBody: BodyPreview}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Missing(); !reflect.DeepEqual(got, tt.missing) {
				t.Errorf("Missing() = %q, want %q", got, tt.missing)
			}
			p := tt.p
			if got := p.AddMissing(); !reflect.DeepEqual(got, tt.added) {
				t.Errorf("AddMissing() = %q, want %q", got, tt.added)
			}
			if p != tt.after {
				t.Errorf("after AddMissing: %+v, want %+v", p, tt.after)
			}
			if m := p.Missing(); m != nil {
				t.Errorf("still missing %q", m)
			}
		})
	}
}

func TestLevels(t *testing.T) {
	if !(BodyNone < BodyPreview && BodyPreview < BodyFull) {
		t.Error("body levels out of order")
	}
	if !(AttachmentsNone < AttachmentsMetadata && AttachmentsMetadata < AttachmentsPreview && AttachmentsPreview < AttachmentsFull) {
		t.Error("attachment levels out of order")
	}
	p := Permissions{ReadHeaders: true, ReadBody: BodyFull, ReadAttachments: AttachmentsMetadata, WriteTags: true, WriteMetadata: true}
	if got, want := p.String(), "read_headers, read_body = full, read_attachments = metadata, write_tags, write_metadata"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := BodyLevel(7).String(); got != "invalid" {
		t.Errorf("BodyLevel(7) = %q", got)
	}
}

func TestVersion(t *testing.T) {
	for _, s := range []string{"0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha", "1.0.0-0.3.7", "1.0.0-x-y.7.z--",
		"1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85", "1.0.0+001", "18446744073709551615.0.0"} {
		v, err := ParseVersion(s)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", s, err)
		} else if v.String() != s {
			t.Errorf("ParseVersion(%q).String() = %q", s, v)
		}
	}
	for _, s := range []string{"", "1", "1.2", "1.2.3.4", "v1.2.3", "01.2.3", "1.02.3", "1.2.03", "1.2.3-", "1.2.3+",
		"1.2.3-01", "1.2.3-a..b", "1.2.3-a_b", "1.2.3+a+b", "-1.2.3", "1.2.x", " 1.2.3", "18446744073709551616.0.0"} {
		if _, err := ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%q) accepted", s)
		}
	}
	// Ordered oldest first, from semver.org.
	order := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
		"1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "1.10.0", "2.0.0"}
	for i, a := range order {
		for j, b := range order {
			va, _ := ParseVersion(a)
			vb, _ := ParseVersion(b)
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := va.Compare(vb); got != want {
				t.Errorf("%s.Compare(%s) = %d, want %d", a, b, got, want)
			}
		}
	}
	a, _ := ParseVersion("1.0.0+a")
	b, _ := ParseVersion("1.0.0+b")
	if a.Compare(b) != 0 {
		t.Error("build metadata must not count")
	}
}

func TestSettingsSchema(t *testing.T) {
	m, err := Parse("plugin.toml", []byte(fullProcess))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		values map[string]any
		want   map[string]any
		errs   []string
	}{
		{"defaults", map[string]any{"api_key": "k"},
			map[string]any{"api_key": "k", "threshold": 5.0, "max_size": int64(1048576), "verbose": false, "cache_ttl": time.Hour}, nil},
		{"converted", map[string]any{"api_key": "k", "threshold": 7, "max_size": 2048.0, "verbose": true, "cache_ttl": "90s"},
			map[string]any{"api_key": "k", "threshold": 7.0, "max_size": int64(2048), "verbose": true, "cache_ttl": 90 * time.Second}, nil},
		{"json and go types", map[string]any{"api_key": "k", "threshold": json.Number("0.5"), "max_size": json.Number("10"), "cache_ttl": time.Minute},
			map[string]any{"api_key": "k", "threshold": 0.5, "max_size": int64(10), "verbose": false, "cache_ttl": time.Minute}, nil},
		{"nil is unset", map[string]any{"api_key": "k", "verbose": nil},
			map[string]any{"api_key": "k", "threshold": 5.0, "max_size": int64(1048576), "verbose": false, "cache_ttl": time.Hour}, nil},
		{"required missing", map[string]any{}, nil, []string{"settings.api_key: required, and has no default"}},
		{"unknown and wrong types", map[string]any{"api_key": 5, "apikey": "k", "max_size": 1.5, "verbose": "yes", "cache_ttl": "soon"}, nil, []string{
			"settings.apikey: unknown setting (plugin spam-tagger has api_key, cache_ttl, max_size, threshold, verbose)",
			"settings.api_key: must be a string, not an integer",
			`settings.cache_ttl: "soon" is not a duration (write e.g. "30s" or "1h")`,
			"settings.max_size: must be an int, not a number with a fraction",
			"settings.verbose: \"yes\" is not true or false",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.CheckSettings(tt.values)
			if tt.errs != nil {
				if err == nil || err.Error() != strings.Join(tt.errs, "\n") {
					t.Errorf("got error\n%v\nwant\n%s", err, strings.Join(tt.errs, "\n"))
				}
				for _, e := range allErrors(err) {
					if !strings.HasPrefix(e.Key, "settings.") {
						t.Errorf("error %q has key %q", e, e.Key)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}

	noSettings, err := Parse("plugin.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noSettings.CheckSettings(map[string]any{"x": 1}); err == nil || !strings.Contains(err.Error(), "has no settings") {
		t.Errorf("got %v", err)
	}
}
