package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mairust/mairust/agent/policy"
)

// MaxFileBytes bounds the size of a configuration file.
const MaxFileBytes = 1 << 20

// KeyError is a problem with one key of the file.
type KeyError struct {
	File string
	Key  string // dotted path, e.g. smtp.listen
	Line int    // 0 when the key is not in the file (a default or environment value)
	Msg  string
}

func (e *KeyError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Key, e.Msg)
}

// Load reads the file at path (an empty path gives the defaults), applies
// environment overrides and validates the result.
func Load(path string) (Config, error) {
	if path == "" {
		cfg := Default()
		applyEnv(&cfg)
		return cfg, Validate(cfg, "(defaults)", nil)
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w (create it, or pass --config with the right path)", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return Config{}, fmt.Errorf("config: %s is larger than %d bytes", path, MaxFileBytes)
	}
	return Parse(data, path)
}

// Parse decodes YAML over the defaults, applies environment overrides and
// validates. name is used in error messages.
func Parse(data []byte, name string) (Config, error) {
	cfg := Default()
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	// A second document would otherwise be ignored without a word.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil && len(extra.Content) > 0 && extra.Content[0].Tag != "!!null":
		return Config{}, &KeyError{File: name, Key: "(top level)", Line: extra.Content[0].Line, Msg: "only one YAML document is allowed (remove the --- separator)"}
	case err != nil && !errors.Is(err, io.EOF):
		return Config{}, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	lines := map[string]int{}
	if len(root.Content) > 0 {
		doc := root.Content[0]
		if doc.Kind != yaml.MappingNode && !(doc.Kind == yaml.ScalarNode && doc.Tag == "!!null") {
			return Config{}, &KeyError{File: name, Key: "(top level)", Line: doc.Line, Msg: "must be a mapping of keys to values"}
		}
		if err := decodeStrict(doc, reflect.ValueOf(&cfg).Elem(), "", name, lines); err != nil {
			return Config{}, err
		}
	}
	applyEnv(&cfg)
	return cfg, Validate(cfg, name, lines)
}

// decodeStrict walks a mapping node into a struct, refusing unknown keys and
// recording the line of each key.
func decodeStrict(n *yaml.Node, v reflect.Value, prefix, name string, lines map[string]int) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return &KeyError{File: name, Key: strings.TrimSuffix(prefix, "."), Line: n.Line, Msg: "must be a mapping"}
	}
	fields := map[string]int{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if n := yamlName(t.Field(i)); n != "-" {
			fields[n] = i
		}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := prefix + k.Value
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			key = prefix + "(empty or complex key)"
		}
		idx, ok := fields[k.Value]
		if !ok {
			return &KeyError{File: name, Key: key, Line: k.Line, Msg: "unknown key (see docs/configuration.md for the valid keys)"}
		}
		if seen[k.Value] {
			return &KeyError{File: name, Key: key, Line: k.Line, Msg: "key given twice"}
		}
		seen[k.Value] = true
		lines[key] = k.Line
		fv := v.Field(idx)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Time{}) {
			if err := decodeStrict(val, fv, key+".", name, lines); err != nil {
				return err
			}
			continue
		}
		if fv.Kind() == reflect.Slice {
			if err := decodeList(val, fv, key, name, lines); err != nil {
				return err
			}
			continue
		}
		if err := decodeScalar(val, fv, key, name); err != nil {
			return err
		}
	}
	return nil
}

// maxListItems bounds the items of a list in the file.
const maxListItems = 1000

// decodeList decodes a sequence into a slice of scalars or of mappings
// (each decoded strictly; the keys of item i are key[i].name).
func decodeList(n *yaml.Node, v reflect.Value, key, name string, lines map[string]int) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		v.Set(reflect.Zero(v.Type()))
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return &KeyError{File: name, Key: key, Line: n.Line, Msg: "must be a list"}
	}
	if len(n.Content) > maxListItems {
		return &KeyError{File: name, Key: key, Line: n.Line, Msg: fmt.Sprintf("has %d items; at most %d", len(n.Content), maxListItems)}
	}
	list := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ik := fmt.Sprintf("%s[%d]", key, i)
		lines[ik] = item.Line
		var err error
		if list.Index(i).Kind() == reflect.Struct {
			err = decodeStrict(item, list.Index(i), ik+".", name, lines)
		} else {
			err = decodeScalar(item, list.Index(i), ik, name)
		}
		if err != nil {
			return err
		}
	}
	v.Set(list)
	return nil
}

// decodeScalar decodes one scalar (or, for a pointer, null) into fv.
func decodeScalar(val *yaml.Node, fv reflect.Value, key, name string) error {
	scalar := val
	if scalar.Kind == yaml.AliasNode {
		scalar = scalar.Alias
	}
	if scalar.Kind != yaml.ScalarNode {
		return &KeyError{File: name, Key: key, Line: val.Line, Msg: "must be a single " + typeName(fv.Type()) + ", not a mapping or list"}
	}
	// yaml.v3 would truncate 1.5 to 1 for an integer field.
	isInt := fv.Kind() >= reflect.Int && fv.Kind() <= reflect.Int64
	if err := val.Decode(fv.Addr().Interface()); err != nil || (isInt && scalar.ShortTag() == "!!float") {
		return &KeyError{File: name, Key: key, Line: val.Line, Msg: fmt.Sprintf("%q is not a valid %s", scalar.Value, typeName(fv.Type()))}
	}
	return nil
}

func yamlName(f reflect.StructField) string {
	return strings.Split(f.Tag.Get("yaml"), ",")[0]
}

// typeName names the type of a key with an example, for error messages.
func typeName(t reflect.Type) string {
	switch k := kindName(t); k {
	case "duration":
		return "duration (e.g. 30s, 5m, 1h)"
	case "boolean":
		return "boolean (true or false)"
	default:
		return k
	}
}

// applyEnv overrides fields tagged `env:"NAME"` from the environment. An
// empty variable (e.g. from an unset shell variable in a unit file) counts as
// unset, so that it never wipes out the value in the file.
func applyEnv(cfg *Config) {
	walkFields(reflect.ValueOf(cfg).Elem(), "", func(key string, f reflect.StructField, v reflect.Value) {
		if env := f.Tag.Get("env"); env != "" {
			if s := os.Getenv(env); s != "" && v.Kind() == reflect.String {
				v.SetString(s)
			}
		}
	})
}

// walkFields calls fn for every leaf field with its dotted key.
func walkFields(v reflect.Value, prefix string, fn func(key string, f reflect.StructField, v reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if yamlName(f) == "-" {
			continue
		}
		key := prefix + yamlName(f)
		if f.Type.Kind() == reflect.Struct {
			walkFields(v.Field(i), key+".", fn)
			continue
		}
		fn(key, f, v.Field(i))
	}
}

// Validate checks every value; the first problem is returned as a *KeyError
// carrying the line of the key when it came from the file.
func Validate(c Config, name string, lines map[string]int) error {
	fail := func(key, format string, args ...any) error {
		return &KeyError{File: name, Key: key, Line: lines[key], Msg: fmt.Sprintf(format, args...)}
	}
	type check struct {
		key string
		bad bool
		msg string
	}
	checks := []check{
		{"data_dir", c.DataDir == "", "must not be empty"},
		{"log.level", !oneOf(c.Log.Level, "debug", "info", "warn", "error"), "must be debug, info, warn or error"},
		{"log.format", !oneOf(c.Log.Format, "json", "text"), "must be json or text"},
		{"http.listen", !validAddr(c.HTTP.Listen), "must be host:port"},
		{"database.max_conns", c.Database.MaxConns < 1 || c.Database.MaxConns > 1000, "must be between 1 and 1000"},
		{"smtp.listen", !validAddr(c.SMTP.Listen), "must be host:port"},
		{"smtp.hostname", c.SMTP.Hostname == "" || strings.ContainsAny(c.SMTP.Hostname, " \t\r\n"), "must be a host name without spaces"},
		{"smtp.tls_key", (c.SMTP.TLSCert == "") != (c.SMTP.TLSKey == ""), "tls_cert and tls_key must be set together"},
		{"smtp.max_message_bytes", c.SMTP.MaxMessageBytes < 1<<10 || c.SMTP.MaxMessageBytes > 1<<30, "must be between 1024 and 1073741824"},
		{"smtp.max_recipients", c.SMTP.MaxRecipients < 1 || c.SMTP.MaxRecipients > 10000, "must be between 1 and 10000"},
		{"smtp.read_timeout", c.SMTP.ReadTimeout < time.Second, "must be at least 1s"},
		{"smtp.write_timeout", c.SMTP.WriteTimeout < time.Second, "must be at least 1s"},
		{"smtp.max_connections", c.SMTP.MaxConnections < 1, "must be at least 1"},
		{"smtp.max_connections_per_ip", c.SMTP.MaxConnectionsPerIP < 1, "must be at least 1"},
		{"smtp.messages_per_ip_per_minute", c.SMTP.MessagesPerIPMinute < 0, "must be 0 (no limit) or more"},
		{"smtp.shutdown_timeout", c.SMTP.ShutdownTimeout < time.Second || c.SMTP.ShutdownTimeout > time.Minute, "must be between 1s and 60s"},
		{"storage.backend", !oneOf(c.Storage.Backend, "local", "s3"), "must be local or s3"},
		{"retention.deleted_messages_days", c.Retention.DeletedMessagesDays < 0 || c.Retention.DeletedMessagesDays > 36500, "must be between 0 and 36500"},
		{"retention.cleanup_interval", c.Retention.CleanupInterval < time.Minute || c.Retention.CleanupInterval > 24*time.Hour, "must be between 1m and 24h"},
		{"retention.orphan_blob_grace", c.Retention.OrphanBlobGrace < time.Second, "must be at least 1s"},
		{"api.listen", !validAddr(c.API.Listen), "must be host:port"},
		{"api.jwt_key", c.API.JWTKey != "" && !validJWTKeys(c.API.JWTKey), "must be kid:base64 of at least 32 bytes (e.g. k1:$(openssl rand -base64 32))"},
		{"api.jwt_previous_keys", c.API.JWTPreviousKeys != "" && !validJWTKeys(c.API.JWTPreviousKeys), "must be comma-separated kid:base64 keys of at least 32 bytes"},
		{"api.access_token_ttl", c.API.AccessTokenTTL < time.Minute || c.API.AccessTokenTTL > 24*time.Hour, "must be between 1m and 24h"},
		{"api.refresh_token_ttl", c.API.RefreshTokenTTL < time.Hour || c.API.RefreshTokenTTL > 8760*time.Hour, "must be between 1h and 8760h"},
		{"imap.listen", c.IMAP.Listen != "" && !validAddr(c.IMAP.Listen), "must be host:port, or empty for no IMAP listener"},
		{"imap.tls_listen", c.IMAP.TLSListen != "" && !validAddr(c.IMAP.TLSListen), "must be host:port, or empty for no IMAPS listener"},
		{"imap.max_connections", c.IMAP.MaxConnections < 1, "must be at least 1"},
		{"imap.max_connections_per_ip", c.IMAP.MaxConnectionsPerIP < 1, "must be at least 1"},
		{"imap.logins_per_ip_per_minute", c.IMAP.LoginsPerIPMinute < 1, "must be at least 1"},
		{"submission.listen", c.Submission.Listen != "" && !validAddr(c.Submission.Listen), "must be host:port, or empty for no submission listener"},
		{"submission.tls_listen", c.Submission.TLSListen != "" && !validAddr(c.Submission.TLSListen), "must be host:port, or empty for no listener"},
		{"submission.max_connections", c.Submission.MaxConnections < 1, "must be at least 1"},
		{"submission.max_connections_per_ip", c.Submission.MaxConnectionsPerIP < 1, "must be at least 1"},
		{"submission.logins_per_ip_per_minute", c.Submission.LoginsPerIPMinute < 1, "must be at least 1"},
		{"outbound.workers", c.Outbound.Workers < 1 || c.Outbound.Workers > 256, "must be between 1 and 256"},
		{"outbound.max_per_destination", c.Outbound.MaxPerDestination < 1, "must be at least 1"},
		{"outbound.lifetime", c.Outbound.Lifetime < time.Minute, "must be at least 1m"},
		{"outbound.retry_schedule", !validBackoff(c.Outbound.RetrySchedule), "must be durations of at least 1s, comma-separated, e.g. 1m,5m,15m,30m,1h,2h,4h"},
		{"outbound.dns_server", c.Outbound.DNSServer != "" && !validAddr(c.Outbound.DNSServer), "must be host:port, or empty for the system's resolver"},
		{"outbound.port", c.Outbound.Port < 1 || c.Outbound.Port > 65535, "must be a port number"},
		{"outbound.smarthost", c.Outbound.Smarthost != "" && !validAddr(c.Outbound.Smarthost), "must be host:port, or empty for MX delivery"},
		{"outbound.smarthost_tls", !oneOf(c.Outbound.SmarthostTLS, "starttls", "implicit", "none"), "must be starttls, implicit or none"},
		{"imap.idle_poll", c.IMAP.IdlePoll < 100*time.Millisecond || c.IMAP.IdlePoll > time.Minute, "must be between 100ms and 1m"},
		{"jobs.rescue_after", c.Jobs.RescueAfter < time.Second || c.Jobs.RescueAfter > 24*time.Hour, "must be between 1s and 24h"},
		{"plugins.run_as", c.Plugins.RunAs == "" || strings.ContainsAny(c.Plugins.RunAs, " \t:/"), "must be a system user name"},
		{"plugins.workers", c.Plugins.Workers < 1 || c.Plugins.Workers > 256, "must be between 1 and 256"},
		{"plugins.nice", c.Plugins.Nice < 0 || c.Plugins.Nice > 19, "must be between 0 and 19"},
		{"plugins.retries", c.Plugins.Retries < 0 || c.Plugins.Retries > 10, "must be between 0 and 10"},
		{"plugins.retry_backoff", !validBackoff(c.Plugins.RetryBackoff), "must be durations of at least 1s, comma-separated, e.g. 30s,2m,10m"},
		{"plugins.breaker_consecutive_failures", c.Plugins.BreakerFailures < 1, "must be at least 1"},
		{"plugins.breaker_failure_rate", c.Plugins.BreakerFailureRate < 0.01 || c.Plugins.BreakerFailureRate > 1, "must be between 0.01 and 1"},
		{"plugins.breaker_window", c.Plugins.BreakerWindow < 10*time.Second, "must be at least 10s"},
		{"plugins.breaker_min_calls", c.Plugins.BreakerMinCalls < 1, "must be at least 1"},
		{"plugins.breaker_cool_down", c.Plugins.BreakerCoolDown < time.Second, "must be at least 1s"},
		{"ratelimit.user_per_minute", c.RateLimit.UserPerMinute < 1 || c.RateLimit.UserPerMinute > 10000000, "must be between 1 and 10000000"},
		{"ratelimit.admin_ip_per_minute", c.RateLimit.AdminIPPerMinute < 1 || c.RateLimit.AdminIPPerMinute > 10000000, "must be between 1 and 10000000"},
		{"ratelimit.redis_url", c.RateLimit.RedisURL != "" && !strings.HasPrefix(c.RateLimit.RedisURL, "redis://") && !strings.HasPrefix(c.RateLimit.RedisURL, "rediss://"), "must be a redis:// or rediss:// URL"},
		{"spam.rspamd_url", c.Spam.RspamdURL != "" && !validHTTPURL(c.Spam.RspamdURL), "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:11333"},
		{"spam.learn_url", c.Spam.LearnURL != "" && !validHTTPURL(c.Spam.LearnURL), "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:11334"},
		{"spam.timeout", c.Spam.Timeout < 100*time.Millisecond || c.Spam.Timeout > 2*time.Minute, "must be between 100ms and 2m"},
		{"spam.on_error", !oneOf(c.Spam.OnError, "accept", "tempfail"), "must be accept or tempfail"},
		{"monitor.url", c.Monitor.URL != "" && !validHTTPURL(c.Monitor.URL), "must be an http:// or https:// URL with a host, or empty for the control plane's monitor service"},
		{"monitor.timeout", c.Monitor.Timeout < 100*time.Millisecond || c.Monitor.Timeout > time.Minute, "must be between 100ms and 1m"},
		{"outbound_alerts.email", c.OutboundAlerts.Email != "" && !validAddress(c.OutboundAlerts.Email), "must be a mail address, user@domain"},
		{"controlplane.listen", !validAddr(c.ControlPlane.Listen), "must be host:port"},
		{"controlplane.database_url", c.ControlPlane.DatabaseURL != "" && !strings.HasPrefix(c.ControlPlane.DatabaseURL, "postgres://") && !strings.HasPrefix(c.ControlPlane.DatabaseURL, "postgresql://"), "must be a postgres:// URL"},
		{"controlplane.app_database_url", c.ControlPlane.AppDatabaseURL != "" && !strings.HasPrefix(c.ControlPlane.AppDatabaseURL, "postgres://") && !strings.HasPrefix(c.ControlPlane.AppDatabaseURL, "postgresql://"), "must be a postgres:// URL"},
		{"controlplane.public_url", c.ControlPlane.PublicURL != "" && !validHTTPURL(c.ControlPlane.PublicURL), "must be an http:// or https:// URL with a host"},
		{"controlplane.jwt_key", c.ControlPlane.JWTKey != "" && !validJWTKeys(c.ControlPlane.JWTKey), "must be kid:base64 of at least 32 bytes"},
		{"controlplane.session_ttl", c.ControlPlane.SessionTTL < 5*time.Minute || c.ControlPlane.SessionTTL > 720*time.Hour, "must be between 5m and 720h"},
		{"controlplane.agent_credential_ttl", c.ControlPlane.AgentCredentialTTL < time.Minute || c.ControlPlane.AgentCredentialTTL > 24*time.Hour, "must be between 1m and 24h"},
		{"controlplane.heartbeat_interval", c.ControlPlane.HeartbeatInterval < time.Second || c.ControlPlane.HeartbeatInterval > 10*time.Minute, "must be between 1s and 10m"},
		{"controlplane.agent_down_after", c.ControlPlane.AgentDownAfter < 2*c.ControlPlane.HeartbeatInterval, "must be at least twice controlplane.heartbeat_interval"},
		{"controlplane.monitor_global_per_second", c.ControlPlane.MonitorPerSecond < 0 || c.ControlPlane.MonitorPerSecond > 100000, "must be between 0 (the default, 50) and 100000"},
		{"link.report_interval", c.Link.ReportInterval < time.Second || c.Link.ReportInterval > time.Hour, "must be between 1s and 1h"},
		{"link.outbox_limit", c.Link.OutboxLimit < 100 || c.Link.OutboxLimit > 1000000, "must be between 100 and 1000000"},
		{"controlplane.smtp_relay", !validAddr(c.ControlPlane.SMTPRelay), "must be host:port"},
		{"controlplane.mail_from", !validAddress(c.ControlPlane.MailFrom), "must be a mail address, user@domain"},
		{"controlplane.public_calls_per_minute", c.ControlPlane.PublicPerMinute < 1 || c.ControlPlane.PublicPerMinute > 100000, "must be between 1 and 100000"},
		{"controlplane.report_retention", c.ControlPlane.ReportRetention < 24*time.Hour || c.ControlPlane.ReportRetention > 8760*time.Hour, "must be between 24h and 8760h"},
		{"controlplane.notice_retention", c.ControlPlane.NoticeRetention < 24*time.Hour || c.ControlPlane.NoticeRetention > 8760*time.Hour, "must be between 24h and 8760h"},
		{"controlplane.max_request_bytes", c.ControlPlane.MaxRequestBytes < 1<<10 || c.ControlPlane.MaxRequestBytes > 64<<20, "must be between 1024 and 67108864"},
		{"outbound_alerts.webhook_url", c.OutboundAlerts.WebhookURL != "" && !validHTTPURL(c.OutboundAlerts.WebhookURL), "must be an http:// or https:// URL with a host"},
	}
	if c.Storage.Backend == "s3" {
		key, keyErr := base64.StdEncoding.DecodeString(c.S3.ClientKey)
		checks = append(checks,
			check{"s3.bucket", c.S3.Bucket == "", "must be set with storage.backend: s3"},
			check{"s3.multipart_threshold_mb", c.S3.MultipartThreshold < 5 || c.S3.MultipartThreshold > 128, "must be between 5 and 128 (MiB)"},
			check{"s3.encryption", !oneOf(c.S3.Encryption, "sse-s3", "sse-kms", "client"), "must be sse-s3, sse-kms or client"},
			check{"s3.kms_key_id", c.S3.Encryption == "sse-kms" && c.S3.KMSKeyID == "", "must be set with encryption: sse-kms"},
			check{"s3.client_key", c.S3.Encryption == "client" && (keyErr != nil || len(key) != 32), "must be the base64 of 32 random bytes with encryption: client (e.g. openssl rand -base64 32; or set MAIRUST_S3_CLIENT_KEY)"},
			check{"s3.endpoint", c.S3.Endpoint != "" && !strings.HasPrefix(c.S3.Endpoint, "http://") && !strings.HasPrefix(c.S3.Endpoint, "https://"), "must be an http:// or https:// URL"},
		)
	}
	for _, ch := range checks {
		if ch.bad {
			return fail(ch.key, "%s", ch.msg)
		}
	}
	for i, k := range c.OutboundAlerts.Kinds {
		if !oneOf(k, AlertKinds...) {
			return fail(fmt.Sprintf("outbound_alerts.kinds[%d]", i), "%q is not one of %s", k, strings.Join(AlertKinds, ", "))
		}
	}
	for i, r := range c.Outbound.Routes {
		if _, _, err := ParseRoute(r); err != nil {
			return fail(fmt.Sprintf("outbound.routes[%d]", i), "%v", err)
		}
	}
	if err := validateBilling(c.Billing, fail); err != nil {
		return err
	}
	if c.Marketplace.MaxPackageBytes < 1<<20 || c.Marketplace.MaxPackageBytes > 1<<30 {
		return fail("marketplace.max_package_bytes", "must be between 1048576 and 1073741824")
	}
	for _, list := range []struct {
		key  string
		keys []TrustedKey
	}{{"plugins.marketplace_keys", c.Plugins.MarketplaceKeys}, {"marketplace.previous_keys", c.Marketplace.PreviousKeys}} {
		for i, k := range list.keys {
			key := fmt.Sprintf("%s[%d]", list.key, i)
			if k.PublicKeyFile == "" {
				return fail(key+".public_key_file", "must be the path of a PEM public key (mairust plugin keygen writes one)")
			}
			if _, err := time.Parse(time.RFC3339, k.NotAfter); k.NotAfter != "" && err != nil {
				return fail(key+".not_after", "%q is not an RFC 3339 time, e.g. 2027-06-30T00:00:00Z", k.NotAfter)
			}
		}
	}
	for i, r := range c.Marketplace.Reviewers {
		if !validAddress(r) {
			return fail(fmt.Sprintf("marketplace.reviewers[%d]", i), "%q is not a mail address, user@domain", r)
		}
	}
	var se *policy.SettingError
	if err := c.PolicySettings().Validate(); errors.As(err, &se) {
		return fail(se.Key, "%s", se.Msg)
	} else if err != nil {
		return err
	}
	return nil
}

// validateBilling checks billing.*: the plans always (the control plane
// shows them), Stripe's settings when billing is on.
func validateBilling(b Billing, fail func(key, format string, args ...any) error) error {
	ids := map[string]bool{}
	for i, p := range b.Plans {
		key := fmt.Sprintf("billing.plans[%d]", i)
		switch {
		case p.ID == "" || strings.ContainsAny(p.ID, " \t\r\n/"):
			return fail(key+".id", "must be a short name without spaces, e.g. pro")
		case ids[p.ID]:
			return fail(key+".id", "plan %q is given twice", p.ID)
		case p.Domains < 0 || p.MailUsers < 0 || p.Agents < 0 || p.MonthlyMessages < 0:
			return fail(key, "plan %q: limits must be 0 (none) or more", p.ID)
		case b.StripeSecretKey != "" && p.ID != b.DefaultPlan && p.PriceID == "":
			return fail(key+".price_id", "plan %q needs the Stripe price of its subscription (price_...)", p.ID)
		}
		ids[p.ID] = true
	}
	checks := []struct {
		key string
		bad bool
		msg string
	}{
		{"billing.default_plan", !ids[b.DefaultPlan], "must be the id of one of billing.plans"},
		{"billing.webhook_tolerance", b.WebhookTolerance < time.Minute || b.WebhookTolerance > time.Hour, "must be between 1m and 1h"},
		{"billing.sync_interval", b.SyncInterval < time.Second || b.SyncInterval > time.Hour, "must be between 1s and 1h"},
		{"billing.grace_period", b.GracePeriod < 0 || b.GracePeriod > 2160*time.Hour, "must be between 0 and 2160h"},
		{"billing.stripe_api_url", b.StripeAPIURL != "" && !validHTTPURL(b.StripeAPIURL), "must be an http:// or https:// URL with a host"},
		{"billing.stripe_webhook_secret", b.StripeSecretKey != "" && b.WebhookSecret == "", "must be set with stripe_secret_key: the signing secret (whsec_...) of the webhook endpoint (or MAIRUST_STRIPE_WEBHOOK_SECRET)"},
		{"billing.messages_meter", b.StripeSecretKey != "" && b.MessagesMeter == "", "must be the event_name of a Stripe billing meter"},
		{"billing.storage_meter", b.StripeSecretKey != "" && b.StorageMeter == "", "must be the event_name of a Stripe billing meter"},
	}
	for _, ch := range checks {
		if ch.bad {
			return fail(ch.key, "%s", ch.msg)
		}
	}
	return nil
}

// JWTKey is one access-token signing key.
type JWTKey struct {
	ID     string
	Secret []byte
}

// ParseJWTKeys reads comma-separated kid:base64 keys.
func ParseJWTKeys(s string) ([]JWTKey, error) {
	var keys []JWTKey
	for _, part := range strings.Split(s, ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(part), ":")
		secret, err := base64.StdEncoding.DecodeString(b64)
		if !ok || id == "" || err != nil || len(secret) < 32 {
			return nil, fmt.Errorf("%q is not kid:base64 of at least 32 bytes", id)
		}
		keys = append(keys, JWTKey{ID: id, Secret: secret})
	}
	return keys, nil
}

func validJWTKeys(s string) bool {
	_, err := ParseJWTKeys(s)
	return err == nil
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}

func validHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// validAddress reports whether a is a bare mail address, user@domain.
func validAddress(a string) bool {
	m, err := mail.ParseAddress(a)
	return err == nil && m.Address == a && m.Name == "" && strings.Count(a, "@") == 1
}

func validAddr(a string) bool {
	_, port, err := net.SplitHostPort(a)
	return err == nil && port != ""
}

// ParseBackoff reads plugins.retry_backoff and outbound.retry_schedule:
// comma-separated durations of at least 1s.
func ParseBackoff(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, part := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		if d < time.Second {
			return nil, fmt.Errorf("%s is under 1s", d)
		}
		out = append(out, d)
	}
	return out, nil
}

func validBackoff(s string) bool {
	_, err := ParseBackoff(s)
	return err == nil
}

// ParseRoute parses an outbound.routes entry, "domain=host:port" with more
// host:port separated by commas.
func ParseRoute(s string) (domain string, hosts []string, err error) {
	domain, list, ok := strings.Cut(s, "=")
	domain = strings.ToLower(strings.TrimSpace(domain))
	if !ok || domain == "" || strings.ContainsAny(domain, " @") {
		return "", nil, fmt.Errorf("%q is not domain=host:port", s)
	}
	for _, h := range strings.Split(list, ",") {
		h = strings.TrimSpace(h)
		if !validAddr(h) {
			return "", nil, fmt.Errorf("%q: %q is not host:port", s, h)
		}
		hosts = append(hosts, h)
	}
	return domain, hosts, nil
}
