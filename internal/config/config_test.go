package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testFile = "test.yaml"

// clearEnv blanks every override variable, which counts as unset, so the
// tests do not depend on the environment they run in.
func clearEnv(t testing.TB) {
	t.Helper()
	for _, l := range defaultLeaves() {
		if e := l.field.Tag.Get("env"); e != "" {
			t.Setenv(e, "")
		}
	}
}

// s3 prefixes a file with the s3 backend, so the s3 checks apply.
func s3(body string) string { return "storage:\n  backend: s3\n" + body }

// validS3 is an s3 section that passes every check; lines 3-4 of s3(…).
const validS3 = "s3:\n  bucket: mail\n"

func TestKeyErrors(t *testing.T) {
	clearEnv(t)
	const key32 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" // 32 zero bytes
	tests := []struct {
		name string
		yaml string
		key  string
		line int // 0: the key is not in the file
	}{
		{"empty data_dir", "data_dir: \"\"\n", "data_dir", 1},
		{"log level", "log:\n  format: text\n  level: loud\n", "log.level", 3},
		{"log format", "log:\n  format: xml\n", "log.format", 2},
		{"http listen without port", "http:\n  listen: localhost\n", "http.listen", 2},
		{"http listen empty port", "http:\n  listen: \"127.0.0.1:\"\n", "http.listen", 2},
		{"max_conns 0", "database:\n  url: postgres://x\n  max_conns: 0\n", "database.max_conns", 3},
		{"max_conns 1001", "database:\n  max_conns: 1001\n", "database.max_conns", 2},
		{"smtp listen", "smtp:\n  listen: 25\n", "smtp.listen", 2},
		{"hostname empty", "smtp:\n  hostname: \"\"\n", "smtp.hostname", 2},
		{"hostname with space", "smtp:\n  hostname: mail example\n", "smtp.hostname", 2},
		{"tls_cert without tls_key", "smtp:\n  tls_cert: /etc/cert.pem\n", "smtp.tls_key", 0},
		{"tls_key without tls_cert", "smtp:\n  listen: \":25\"\n  tls_key: /etc/key.pem\n", "smtp.tls_key", 3},
		{"max_message_bytes small", "smtp:\n  max_message_bytes: 1023\n", "smtp.max_message_bytes", 2},
		{"max_message_bytes large", "smtp:\n  max_message_bytes: 1073741825\n", "smtp.max_message_bytes", 2},
		{"max_recipients 0", "smtp:\n  max_recipients: 0\n", "smtp.max_recipients", 2},
		{"max_recipients 10001", "smtp:\n  max_recipients: 10001\n", "smtp.max_recipients", 2},
		{"read_timeout", "smtp:\n  read_timeout: 500ms\n", "smtp.read_timeout", 2},
		{"write_timeout", "smtp:\n\n  write_timeout: 0s\n", "smtp.write_timeout", 3},
		{"max_connections", "smtp:\n  max_connections: 0\n", "smtp.max_connections", 2},
		{"max_connections_per_ip", "smtp:\n  max_connections_per_ip: -1\n", "smtp.max_connections_per_ip", 2},
		{"messages_per_ip_per_minute", "smtp:\n  messages_per_ip_per_minute: -1\n", "smtp.messages_per_ip_per_minute", 2},
		{"shutdown_timeout short", "smtp:\n  shutdown_timeout: 999ms\n", "smtp.shutdown_timeout", 2},
		{"shutdown_timeout long", "smtp:\n  shutdown_timeout: 61s\n", "smtp.shutdown_timeout", 2},
		{"backend", "# comment\nstorage:\n  backend: ftp\n", "storage.backend", 3},
		{"deleted_messages_days negative", "retention:\n  deleted_messages_days: -1\n", "retention.deleted_messages_days", 2},
		{"deleted_messages_days large", "retention:\n  deleted_messages_days: 36501\n", "retention.deleted_messages_days", 2},
		{"cleanup_interval short", "retention:\n  cleanup_interval: 59s\n", "retention.cleanup_interval", 2},
		{"cleanup_interval long", "retention:\n  cleanup_interval: 25h\n", "retention.cleanup_interval", 2},
		{"orphan_blob_grace", "retention:\n  orphan_blob_grace: 0s\n", "retention.orphan_blob_grace", 2},
		{"rspamd_url without scheme", "spam:\n  rspamd_url: 127.0.0.1:11333\n", "spam.rspamd_url", 2},
		{"rspamd_url other scheme", "spam:\n  timeout: 5s\n  rspamd_url: unix:///run/rspamd.sock\n", "spam.rspamd_url", 3},
		{"rspamd_url without host", "spam:\n  rspamd_url: http://\n", "spam.rspamd_url", 2},
		{"learn_url without scheme", "spam:\n  learn_url: 127.0.0.1:11334\n", "spam.learn_url", 2},
		{"spam timeout short", "spam:\n  timeout: 99ms\n", "spam.timeout", 2},
		{"spam timeout long", "spam:\n  timeout: 121s\n", "spam.timeout", 2},
		{"spam on_error", "spam:\n  on_error: drop\n", "spam.on_error", 2},
		{"retry_schedule under 1s", "outbound:\n  retry_schedule: 1m,500ms\n", "outbound.retry_schedule", 2},
		{"retry_schedule not durations", "outbound:\n  retry_schedule: soon\n", "outbound.retry_schedule", 2},
		{"alerts email", "outbound_alerts:\n  email: Admin <admin@example.com>\n", "outbound_alerts.email", 2},
		{"alerts webhook", "outbound_alerts:\n  webhook_url: chat.example.com/hook\n", "outbound_alerts.webhook_url", 2},
		{"alerts kinds", "outbound_alerts:\n  kinds:\n    - suspend\n    - soft_limit_end\n", "outbound_alerts.kinds[1]", 4},

		{"s3 bucket missing", s3(""), "s3.bucket", 0},
		{"s3 multipart 4", s3(validS3 + "  multipart_threshold_mb: 4\n"), "s3.multipart_threshold_mb", 5},
		{"s3 multipart 129", s3(validS3 + "  multipart_threshold_mb: 129\n"), "s3.multipart_threshold_mb", 5},
		{"s3 encryption", s3(validS3 + "  encryption: aes\n"), "s3.encryption", 5},
		{"s3 sse-kms without key id", s3(validS3 + "  encryption: sse-kms\n"), "s3.kms_key_id", 0},
		{"s3 client without key", s3(validS3 + "  encryption: client\n"), "s3.client_key", 0},
		{"s3 client short key", s3(validS3 + "  encryption: client\n  client_key: AAAAAAAA\n"), "s3.client_key", 6},
		{"s3 client long key", s3(validS3 + "  encryption: client\n  client_key: " + key32 + "AAAA\n"), "s3.client_key", 6},
		{"s3 client non-base64 key", s3(validS3 + "  encryption: client\n  client_key: \"not base64!\"\n"), "s3.client_key", 6},
		{"s3 endpoint without scheme", s3(validS3 + "  endpoint: minio:9000\n"), "s3.endpoint", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), testFile)
			checkKeyError(t, err, tt.key, tt.line)
		})
	}
}

// checkKeyError fails unless err is a *KeyError for key at line.
func checkKeyError(t *testing.T, err error, key string, line int) {
	t.Helper()
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("error %v (%T), want a *KeyError for %s", err, err, key)
	}
	if ke.Key != key || ke.Line != line || ke.File != testFile || ke.Msg == "" {
		t.Fatalf("got %+v, want key %s at line %d of %s", *ke, key, line, testFile)
	}
	if line > 0 && !strings.HasPrefix(err.Error(), testFile+":"+strconv.Itoa(line)+": "+key+": ") {
		t.Errorf("message %q does not start with file, line and key", err)
	}
}

func TestAcceptedValues(t *testing.T) {
	clearEnv(t)
	const key32 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	tests := []struct {
		name string
		yaml string
		want func(Config) bool
	}{
		{"multipart 5", s3(validS3 + "  multipart_threshold_mb: 5\n"), func(c Config) bool { return c.S3.MultipartThreshold == 5 }},
		{"multipart 128", s3(validS3 + "  multipart_threshold_mb: 128\n"), func(c Config) bool { return c.S3.MultipartThreshold == 128 }},
		{"sse-kms with key id", s3(validS3 + "  encryption: sse-kms\n  kms_key_id: alias/mail\n"), func(c Config) bool { return c.S3.KMSKeyID == "alias/mail" }},
		{"client with key", s3(validS3 + "  encryption: client\n  client_key: " + key32 + "\n"), func(c Config) bool { return c.S3.ClientKey == key32 }},
		{"https endpoint", s3(validS3 + "  endpoint: https://s3.example.net\n  path_style: true\n"), func(c Config) bool { return c.S3.PathStyle }},
		{"http endpoint", s3(validS3 + "  endpoint: http://127.0.0.1:9000\n"), func(c Config) bool { return c.S3.Endpoint == "http://127.0.0.1:9000" }},
		{"s3 section ignored with local backend", "s3:\n  multipart_threshold_mb: 1\n  encryption: bogus\n", func(c Config) bool { return c.Storage.Backend == "local" }},
		{"limits low", "database:\n  max_conns: 1\nsmtp:\n  max_message_bytes: 1024\n  max_recipients: 1\n  shutdown_timeout: 1s\nretention:\n  deleted_messages_days: 0\n  cleanup_interval: 1m\n",
			func(c Config) bool { return c.Database.MaxConns == 1 && c.Retention.CleanupInterval == time.Minute }},
		{"limits high", "database:\n  max_conns: 1000\nsmtp:\n  max_message_bytes: 1073741824\n  max_recipients: 10000\n  shutdown_timeout: 60s\nretention:\n  deleted_messages_days: 36500\n  cleanup_interval: 24h\n",
			func(c Config) bool {
				return c.SMTP.MaxMessageBytes == 1<<30 && c.Retention.CleanupInterval == 24*time.Hour
			}},
		{"tls pair", "smtp:\n  tls_cert: c.pem\n  tls_key: k.pem\n", func(c Config) bool { return c.SMTP.TLSKey == "k.pem" }},
		{"null section keeps defaults", "smtp:\nlog: ~\n", func(c Config) bool { return reflect.DeepEqual(c, Default()) }},
		{"durations", "smtp:\n  read_timeout: 1h30m\n  write_timeout: 90s\n", func(c Config) bool {
			return c.SMTP.ReadTimeout == 90*time.Minute && c.SMTP.WriteTimeout == 90*time.Second
		}},
		{"spam", "spam:\n  rspamd_url: https://rspamd.internal:11333/\n  learn_url: http://rspamd.internal:11334\n  timeout: 100ms\n  on_error: tempfail\n  rules_file: /etc/mairust/spam.yaml\n",
			func(c Config) bool {
				return c.Spam.RspamdURL == "https://rspamd.internal:11333/" && c.Spam.LearnURL == "http://rspamd.internal:11334" && c.Spam.Timeout == 100*time.Millisecond && c.Spam.OnError == "tempfail" && c.Spam.RulesFile == "/etc/mairust/spam.yaml"
			}},
		{"outbound alerts", "outbound_alerts:\n  email: admin@example.com\n  webhook_url: https://chat.example.com/hook\n  kinds: [suspend]\noutbound:\n  retry_schedule: 1s, 2m\n",
			func(c Config) bool {
				return c.OutboundAlerts.Email == "admin@example.com" && c.OutboundAlerts.WebhookURL == "https://chat.example.com/hook" &&
					reflect.DeepEqual(c.OutboundAlerts.Kinds, []string{"suspend"}) && c.Outbound.RetrySchedule == "1s, 2m"
			}},
		{"spam timeout 2m", "spam:\n  timeout: 2m\n  on_error: accept\n", func(c Config) bool { return c.Spam.Timeout == 2*time.Minute }},
		{"trailing empty document", "log:\n  level: debug\n---\n", func(c Config) bool { return c.Log.Level == "debug" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), testFile)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c) {
				t.Errorf("unexpected result %+v", c)
			}
		})
	}
}

func TestSyntaxAndTypeErrors(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		name string
		yaml string
		key  string
		line int
		msg  string // part of the message
	}{
		{"unknown top-level key", "log:\n  level: info\nsmpt:\n  listen: \":25\"\n", "smpt", 3, "unknown key"},
		{"unknown nested key", "smtp:\n  listen: \":25\"\n  max_size: 10\n", "smtp.max_size", 3, "unknown key"},
		{"empty key", "smtp:\n  \"\": 1\n", "smtp.(empty or complex key)", 2, "unknown key"},
		{"duplicate key", "smtp:\n  listen: \":25\"\n  hostname: a\n  listen: \":26\"\n", "smtp.listen", 4, "twice"},
		{"duplicate section", "log:\n  level: info\nlog:\n  format: text\n", "log", 3, "twice"},
		{"integer abc", "smtp:\n  max_recipients: abc\n", "smtp.max_recipients", 2, `"abc" is not a valid integer`},
		{"integer float", "smtp:\n  max_recipients: 1.5\n", "smtp.max_recipients", 2, `"1.5" is not a valid integer`},
		{"integer overflow", "database:\n  max_conns: 99999999999\n", "database.max_conns", 2, "not a valid integer"},
		{"duration parsecs", "retention:\n  cleanup_interval: 5 parsecs\n", "retention.cleanup_interval", 2, `"5 parsecs" is not a valid duration`},
		{"duration without unit", "smtp:\n  read_timeout: 30\n", "smtp.read_timeout", 2, "not a valid duration"},
		{"boolean", "s3:\n  path_style: sometimes\n", "s3.path_style", 2, "not a valid boolean"},
		{"list for a string", "smtp:\n  listen:\n    - \":25\"\n", "smtp.listen", 3, "not a mapping or list"},
		{"scalar for a section", "smtp: 25\n", "smtp", 1, "must be a mapping"},
		{"top level list", "- a\n- b\n", "(top level)", 1, "mapping"},
		{"second document", "log:\n  level: info\n---\nlog:\n  level: debug\n", "(top level)", 4, "one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), testFile)
			checkKeyError(t, err, tt.key, tt.line)
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not contain %q", err, tt.msg)
			}
		})
	}

	// Malformed YAML is not a KeyError but still names the file and line.
	_, err := Parse([]byte("log:\n  level: info\n bad: [\n"), testFile)
	var ke *KeyError
	if err == nil || errors.As(err, &ke) || !strings.HasPrefix(err.Error(), testFile+": line ") {
		t.Errorf("syntax error: got %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	clearEnv(t)
	file := "database:\n  url: postgres://file/db\ns3:\n  access_key_id: FILEKEY\n"
	t.Setenv("MAIRUST_DATABASE_URL", "postgres://env/db")
	t.Setenv("MAIRUST_S3_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("MAIRUST_SPAM_PASSWORD", "rspamd-secret")
	c, err := Parse([]byte(file+"spam:\n  password: in-the-file\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spam.Password != "rspamd-secret" {
		t.Errorf("spam.password = %q, want the environment's", c.Spam.Password)
	}
	if c.Database.URL != "postgres://env/db" || c.S3.SecretAccessKey != "envsecret" {
		t.Errorf("environment not applied: %+v %+v", c.Database, c.S3)
	}
	if c.S3.AccessKeyID != "FILEKEY" {
		t.Errorf("empty MAIRUST_S3_ACCESS_KEY_ID replaced the file value: %q", c.S3.AccessKeyID)
	}

	// The client key may come from the environment alone.
	t.Setenv("MAIRUST_S3_CLIENT_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	if _, err := Parse([]byte(s3(validS3+"  encryption: client\n")), testFile); err != nil {
		t.Errorf("client key from the environment: %v", err)
	}
	t.Setenv("MAIRUST_S3_CLIENT_KEY", "short")
	_, err = Parse([]byte(s3(validS3+"  encryption: client\n")), testFile)
	checkKeyError(t, err, "s3.client_key", 0)

	// Load without a file applies the environment too.
	c, err = Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.URL != "postgres://env/db" {
		t.Errorf("Load(\"\"): database.url = %q", c.Database.URL)
	}
}

func TestEmptyFileGivesDefaults(t *testing.T) {
	clearEnv(t)
	for _, in := range []string{"", "\n", "# nothing\n", "---\n", "~\n", "null\n"} {
		c, err := Parse([]byte(in), testFile)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("%q: got %+v, want the defaults", in, c)
		}
	}
	c, err := Load("")
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Errorf("Load(\"\") = %+v, %v", c, err)
	}
}

func TestLoadFile(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	c, err := Load(write("ok.yaml", "smtp:\n  hostname: mx.example.net\n"))
	if err != nil || c.SMTP.Hostname != "mx.example.net" {
		t.Errorf("Load: %+v, %v", c.SMTP, err)
	}

	p := write("bad.yaml", "smtp:\n  hostname: mx.example.net\n  max_recipients: 0\n")
	_, err = Load(p)
	var ke *KeyError
	if !errors.As(err, &ke) || ke.File != p || ke.Line != 3 || ke.Key != "smtp.max_recipients" {
		t.Errorf("Load of an invalid file: %v", err)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("missing file: %v", err)
	}

	// A file of exactly MaxFileBytes is read; one byte more is refused.
	pad := "# " + strings.Repeat("x", MaxFileBytes-3) + "\n"
	if _, err := Load(write("max.yaml", pad)); err != nil {
		t.Errorf("file of MaxFileBytes: %v", err)
	}
	if _, err := Load(write("big.yaml", pad+"\n")); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("file of MaxFileBytes+1: %v", err)
	}
}

func TestDiff(t *testing.T) {
	old := Default()
	if ch := Diff(old, old); len(ch.Live)+len(ch.Restart) != 0 || ch.String() != "no changes" {
		t.Errorf("Diff of equal configs: %+v %q", ch, ch)
	}

	live := old
	live.Log.Level = "debug"
	live.Retention.OrphanBlobGrace = 2 * time.Hour
	ch := Diff(old, live)
	if !slices.Equal(ch.Live, []string{"log.level", "retention.orphan_blob_grace"}) || len(ch.Restart) != 0 {
		t.Errorf("live changes: %+v", ch)
	}
	if !strings.HasPrefix(ch.String(), "applied ") || strings.Contains(ch.String(), "restart") {
		t.Errorf("live changes: %q", ch)
	}

	both := live
	both.SMTP.Listen = ":2525"
	both.SMTP.MaxConnectionsPerIP = 5
	both.S3.PathStyle = true
	both.Retention.CleanupInterval = time.Minute
	ch = Diff(old, both)
	if !slices.Equal(ch.Live, []string{"log.level", "smtp.max_connections_per_ip", "retention.orphan_blob_grace"}) {
		t.Errorf("live: %v", ch.Live)
	}
	if !slices.Equal(ch.Restart, []string{"smtp.listen", "s3.path_style", "retention.cleanup_interval"}) {
		t.Errorf("restart: %v", ch.Restart)
	}
	if !strings.Contains(ch.String(), "restart needed for [smtp.listen s3.path_style retention.cleanup_interval]") {
		t.Errorf("String: %q", ch)
	}

	// Every field tagged live is reported as live, and only those.
	for _, l := range defaultLeaves() {
		c := Default()
		v := reflect.ValueOf(&c).Elem()
		for _, part := range strings.Split(l.key, ".") {
			v = fieldByYAML(v, part)
		}
		switch v.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Float64:
			v.SetFloat(v.Float() / 2)
		case reflect.Slice:
			v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
		default:
			v.SetInt(v.Int() + 1)
		}
		ch := Diff(Default(), c)
		want := Changes{Restart: []string{l.key}}
		if l.live() {
			want = Changes{Live: []string{l.key}}
		}
		if !reflect.DeepEqual(ch, want) {
			t.Errorf("%s: got %+v, want %+v", l.key, ch, want)
		}
	}
}

// fieldByYAML returns the field of struct v named name in YAML.
func fieldByYAML(v reflect.Value, name string) reflect.Value {
	for i := 0; i < v.NumField(); i++ {
		if yamlName(v.Type().Field(i)) == name {
			return v.Field(i)
		}
	}
	panic("no field " + name)
}

func TestEveryKeyDocumented(t *testing.T) {
	ls := defaultLeaves()
	if len(ls) < 30 {
		t.Fatalf("only %d keys found", len(ls))
	}
	for _, l := range ls {
		if strings.TrimSpace(l.field.Tag.Get("doc")) == "" {
			t.Errorf("%s (%s) has no doc tag", l.key, l.field.Name)
		}
		if r := l.field.Tag.Get("reload"); r != "" && r != "live" {
			t.Errorf("%s: reload tag %q, want live or none", l.key, r)
		}
		if l.field.Tag.Get("env") != "" && l.field.Type.Kind() != reflect.String {
			t.Errorf("%s: env override on a %s field is not applied", l.key, l.field.Type)
		}
		if !strings.Contains(Reference(), "| `"+l.key+"` |") {
			t.Errorf("%s missing from the reference", l.key)
		}
	}
}

func TestReferenceUpToDate(t *testing.T) {
	const path = "../../docs/configuration.md"
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; generate it with: go run ./cmd/mairust config reference > docs/configuration.md", err)
	}
	if want := Reference(); string(got) != want {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(want, "\n")
		i := 0
		for i < len(gl) && i < len(wl) && gl[i] == wl[i] {
			i++
		}
		t.Errorf("docs/configuration.md is out of date (first difference at line %d); regenerate it with:\n\tgo run ./cmd/mairust config reference > docs/configuration.md", i+1)
	}
}

func TestReferenceFormat(t *testing.T) {
	ref := Reference()
	for _, want := range []string{
		"| `smtp.read_timeout` | duration | `5m` | restart |  |",
		"| `log.level` | string | `info` | live |  |",
		"| `database.url` | string | *(empty)* | restart | `MAIRUST_DATABASE_URL` |",
		"| `s3.path_style` | boolean | `false` | restart |",
		"| `retention.cleanup_interval` | duration | `1h` |",
		"## Top level",
		"## `retention`",
	} {
		if !strings.Contains(ref, want) {
			t.Errorf("reference lacks %q", want)
		}
	}
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 90 * time.Minute: "1h30m", time.Minute: "1m", 30 * time.Second: "30s",
		90 * time.Second: "1m30s", 1500 * time.Millisecond: "1.5s", 0: "0s", 25*time.Hour + time.Second: "25h0m1s",
	} {
		if got := formatValue(reflect.ValueOf(d)); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestExampleParsesToDefaults(t *testing.T) {
	clearEnv(t)
	ex := Example()
	c, err := Parse([]byte(ex), "example")
	if err != nil {
		t.Fatalf("example does not parse: %v\n%s", err, ex)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("example gives %+v, want the defaults", c)
	}
	for _, l := range defaultLeaves() {
		name := l.key[strings.LastIndexByte(l.key, '.')+1:]
		if !strings.Contains(ex, name+": ") {
			t.Errorf("example lacks %s", l.key)
		}
	}
	for _, line := range strings.Split(ex, "\n") {
		if len(line) > 80 {
			t.Errorf("line longer than 80: %q", line)
		}
	}
}

// The outbound policy and its whitelist: a list of mappings, each checked
// strictly, errors naming the item's key, its line and the profile.
func TestOutboundPolicy(t *testing.T) {
	clearEnv(t)
	const good = `outbound_policy:
  weights:
    rate: 0.5
    content: 0.3
    history: 0.2
  max_per_hour: 300
outbound_whitelist:
  - id: newsletter
    accounts: ["news@company.test"]
    max_rate: "5000 msgs/hour"
    description: Official newsletter
  - id: alerts
    accounts: [alerts@company.test, ops@company.test]
    max_rate: 100 msgs/minute
    suspend_threshold: 0.95
`
	c, err := Parse([]byte(good), testFile)
	if err != nil {
		t.Fatal(err)
	}
	s := c.PolicySettings()
	if s.Weights.Rate != 0.5 || s.MaxPerHour != 300 || s.MaxPerDay != 1000 || len(s.Whitelist) != 2 ||
		s.Whitelist[0].MaxRate != "5000 msgs/hour" || len(s.Whitelist[1].Accounts) != 2 ||
		s.Whitelist[1].SuspendThreshold == nil || *s.Whitelist[1].SuspendThreshold != 0.95 || s.Whitelist[1].WarnThreshold != nil {
		t.Fatalf("settings %+v", s)
	}
	for _, tt := range []struct {
		name, yaml, key string
		line            int
		msg             string
	}{
		{"bad max_rate", "outbound_whitelist:\n  - id: news\n    accounts: [n@c.test]\n    max_rate: 5000 msgs/hr\n",
			"outbound_whitelist[0].max_rate", 4, `profile "news": "5000 msgs/hr": unit "msgs/hr"`},
		{"missing max_rate", "outbound_whitelist:\n  - id: a\n    accounts: [a@c.test]\n    max_rate: 1 msgs/day\n  - id: b\n    accounts: [b@c.test]\n",
			"outbound_whitelist[1].max_rate", 0, `profile "b": "" is not of the form`},
		{"unknown key in a profile", "outbound_whitelist:\n  - id: a\n    rate: 5\n", "outbound_whitelist[0].rate", 3, "unknown key"},
		{"not a list", "outbound_whitelist: newsletter\n", "outbound_whitelist", 1, "must be a list"},
		{"item not a mapping", "outbound_whitelist:\n  - newsletter\n", "outbound_whitelist[0]", 2, "must be a mapping"},
		{"accounts not a list", "outbound_whitelist:\n  - id: a\n    accounts: a@c.test\n", "outbound_whitelist[0].accounts", 3, "must be a list"},
		{"weights", "outbound_policy:\n  weights:\n    rate: 0.9\n", "outbound_policy.weights", 2, "must be 1"},
		{"threshold", "outbound_policy:\n  suspend_threshold: 0.3\n", "outbound_policy.suspend_threshold", 2, "must be above warn_threshold"},
	} {
		_, err := Parse([]byte(tt.yaml), testFile)
		var ke *KeyError
		if !errors.As(err, &ke) || ke.Key != tt.key || ke.Line != tt.line || !strings.Contains(ke.Msg, tt.msg) {
			t.Errorf("%s: %v; want %s at line %d: …%s…", tt.name, err, tt.key, tt.line, tt.msg)
		}
	}
	long := "outbound_whitelist:\n" + strings.Repeat("  - id: x\n", maxListItems+1)
	if _, err := Parse([]byte(long), testFile); err == nil || !strings.Contains(err.Error(), "at most 1000") {
		t.Errorf("a list of %d items: %v", maxListItems+1, err)
	}
}
