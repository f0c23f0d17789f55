// Package config owns mairust.yaml: the settings structs, their defaults,
// loading with errors that name the key and line, environment overrides for
// secrets, and the comparison that tells which changes apply live.
//
// Every field carries a `doc` tag; docs/configuration.md is generated from
// them (see reference.go). Fields tagged `reload:"live"` are re-applied by
// `mairust reload`; any other change needs a restart.
package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mairust/mairust/agent/policy"
)

// Config is the whole of mairust.yaml.
type Config struct {
	DataDir   string    `yaml:"data_dir" doc:"Directory for state the agent owns: the embedded PostgreSQL (db/), local mail blobs (mail/), the generated TLS certificate and the pid file."`
	Log       Log       `yaml:"log"`
	HTTP      HTTP      `yaml:"http"`
	Database  Database  `yaml:"database"`
	SMTP      SMTP      `yaml:"smtp"`
	Storage   Storage   `yaml:"storage"`
	S3        S3        `yaml:"s3"`
	Retention Retention `yaml:"retention"`
	API       API       `yaml:"api"`
	IMAP      IMAP      `yaml:"imap"`
	Plugins   Plugins   `yaml:"plugins"`
	Jobs      Jobs      `yaml:"jobs"`
	RateLimit RateLimit `yaml:"ratelimit"`
	Spam      Spam      `yaml:"spam"`

	Submission        Submission       `yaml:"submission"`
	Outbound          Outbound         `yaml:"outbound"`
	OutboundPolicy    policy.Settings  `yaml:"outbound_policy"`
	OutboundWhitelist []policy.Profile `yaml:"outbound_whitelist" reload:"live" doc:"Whitelist profiles for legitimate bulk senders, each evaluated under its own max_rate instead of the hourly, daily and baseline limits: a list of {id, accounts: [addresses], max_rate: \"N msgs/minute|hour|day\", description, and optionally warn_threshold and suspend_threshold}."`
	Monitor           Monitor          `yaml:"monitor"`
	OutboundAlerts    OutboundAlerts   `yaml:"outbound_alerts"`
	ControlPlane      ControlPlane     `yaml:"controlplane"`
	Billing           Billing          `yaml:"billing"`
	Marketplace       Marketplace      `yaml:"marketplace"`
	Link              Link             `yaml:"link"`
}

// PolicySettings are the Outbound Policy Engine's settings: outbound_policy
// with the outbound_whitelist profiles.
func (c Config) PolicySettings() policy.Settings {
	s := c.OutboundPolicy
	s.Whitelist = c.OutboundWhitelist
	return s
}

// Log sets logging.
type Log struct {
	Level  string `yaml:"level" reload:"live" doc:"Minimum level logged: debug, info, warn or error."`
	Format string `yaml:"format" doc:"json (one JSON object a line) or text (for development)."`
}

// HTTP is the management listener: /metrics, /health, /status and the
// loopback-only reload endpoint.
type HTTP struct {
	Listen string `yaml:"listen" doc:"Address of the management HTTP listener (metrics, health, reload). Keep it on loopback or a private network."`
}

// Database points at PostgreSQL.
type Database struct {
	URL      string `yaml:"url" env:"MAIRUST_DATABASE_URL" doc:"PostgreSQL connection URL. Empty with mairust aio: the embedded PostgreSQL under data_dir/db is used."`
	MaxConns int32  `yaml:"max_conns" doc:"Largest number of pooled connections (1-1000)."`
}

// SMTP configures the receiving SMTP server.
type SMTP struct {
	Listen              string        `yaml:"listen" doc:"Address the SMTP server listens on."`
	Hostname            string        `yaml:"hostname" doc:"Name announced in the greeting and in Received headers."`
	TLSCert             string        `yaml:"tls_cert" doc:"PEM certificate file for STARTTLS. Empty: a self-signed certificate is generated under data_dir/tls."`
	TLSKey              string        `yaml:"tls_key" doc:"PEM private key file matching tls_cert."`
	MaxMessageBytes     int64         `yaml:"max_message_bytes" doc:"Largest message accepted (announced with SIZE), 1 KiB to 1 GiB."`
	MaxRecipients       int           `yaml:"max_recipients" doc:"Most RCPT TO accepted in one transaction (1-10000)."`
	ReadTimeout         time.Duration `yaml:"read_timeout" doc:"How long a client may stay silent before the session is closed."`
	WriteTimeout        time.Duration `yaml:"write_timeout" doc:"How long a reply may take to be written."`
	MaxConnections      int           `yaml:"max_connections" doc:"Most SMTP connections open at once, all clients together."`
	MaxConnectionsPerIP int           `yaml:"max_connections_per_ip" reload:"live" doc:"Most SMTP connections open at once from one client IP address."`
	MessagesPerIPMinute int           `yaml:"messages_per_ip_per_minute" reload:"live" doc:"Most messages accepted per minute from one client IP address (token bucket); 0 disables the limit."`
	ShutdownTimeout     time.Duration `yaml:"shutdown_timeout" doc:"On SIGTERM, how long running SMTP sessions may take to finish before they are closed (1s-60s)."`
}

// Storage selects where message blobs live.
type Storage struct {
	Backend string `yaml:"backend" doc:"local (files under storage.path) or s3 (the s3 section)."`
	Path    string `yaml:"path" doc:"Directory for message blobs with the local backend. Empty: data_dir/mail."`
}

// S3 configures the S3 blob backend.
type S3 struct {
	Bucket             string `yaml:"bucket" doc:"Bucket holding message blobs."`
	Region             string `yaml:"region" doc:"Region of the bucket."`
	Endpoint           string `yaml:"endpoint" doc:"Custom endpoint URL for S3-compatible servers (MinIO, versitygw, Ceph). Empty: AWS."`
	PathStyle          bool   `yaml:"path_style" doc:"Address the bucket in the path (needed by most S3-compatible servers)."`
	Prefix             string `yaml:"prefix" doc:"Key prefix for every blob, e.g. mail/."`
	AccessKeyID        string `yaml:"access_key_id" env:"MAIRUST_S3_ACCESS_KEY_ID" doc:"Access key. Empty: the AWS default credential chain."`
	SecretAccessKey    string `yaml:"secret_access_key" env:"MAIRUST_S3_SECRET_ACCESS_KEY" doc:"Secret key; prefer the environment variable."`
	MultipartThreshold int    `yaml:"multipart_threshold_mb" doc:"Blobs of at least this many MiB are uploaded with multipart upload, smaller ones with one PUT (5-128)."`
	Encryption         string `yaml:"encryption" doc:"sse-s3 (server-side, S3-managed keys), sse-kms (server-side with kms_key_id) or client (AES-256-GCM by MaiRust before upload; an advanced option: the server can no longer index or search content)."`
	KMSKeyID           string `yaml:"kms_key_id" doc:"KMS key ID or ARN; required with encryption: sse-kms."`
	ClientKey          string `yaml:"client_key" env:"MAIRUST_S3_CLIENT_KEY" doc:"Base64 of 32 random bytes, the master key for encryption: client. Losing it loses the mail."`
}

// Retention sets the deletion lifecycle.
type Retention struct {
	DeletedMessagesDays int           `yaml:"deleted_messages_days" reload:"live" doc:"Days a logically deleted message is kept before its row and (last) blob are removed physically (0-36500)."`
	CleanupInterval     time.Duration `yaml:"cleanup_interval" doc:"How often the cleanup job runs (1m-24h)."`
	OrphanBlobGrace     time.Duration `yaml:"orphan_blob_grace" reload:"live" doc:"A blob with no metadata row older than this (left by a crash between the write and the commit) is removed by the cleanup job. Must exceed the longest time between a blob write and its commit."`
}

// API configures the REST API (and, later, the webmail served beside it).
type API struct {
	Listen          string        `yaml:"listen" doc:"Address of the REST API listener (/api/v1). Put TLS in front of it (a reverse proxy) when it is reachable from outside."`
	JWTKey          string        `yaml:"jwt_key" env:"MAIRUST_API_JWT_KEY" reload:"live" doc:"Signing key of access tokens as kid:base64 (at least 32 bytes), e.g. k2:$(openssl rand -base64 32). Empty: one is generated and kept in data_dir/api-jwt.key."`
	JWTPreviousKeys string        `yaml:"jwt_previous_keys" env:"MAIRUST_API_JWT_PREVIOUS_KEYS" reload:"live" doc:"Comma-separated kid:base64 keys still accepted for verification after a rotation, until the tokens they signed expire."`
	AccessTokenTTL  time.Duration `yaml:"access_token_ttl" reload:"live" doc:"Lifetime of an access token (1m-24h)."`
	RefreshTokenTTL time.Duration `yaml:"refresh_token_ttl" reload:"live" doc:"Lifetime of a refresh token (1h-8760h)."`
}

// RateLimit sets the API's request limits.
type RateLimit struct {
	UserPerMinute    int    `yaml:"user_per_minute" reload:"live" doc:"Requests per minute for one signed-in user (or API token)."`
	AdminIPPerMinute int    `yaml:"admin_ip_per_minute" reload:"live" doc:"Requests per minute from one IP address to the admin endpoints and to login."`
	RedisURL         string `yaml:"redis_url" env:"MAIRUST_RATELIMIT_REDIS_URL" doc:"redis:// URL of a Redis shared by several agents for their counters. Empty: counters in memory."`
}

// IMAP configures the read-only IMAP server. It takes the SMTP server's
// TLS certificate (smtp.tls_cert, or the generated one).
type IMAP struct {
	Listen              string        `yaml:"listen" doc:"Address of the IMAP listener (STARTTLS). Empty: none."`
	TLSListen           string        `yaml:"tls_listen" doc:"Address of the IMAPS listener (TLS from the first byte). Empty: none."`
	PlaintextAuth       bool          `yaml:"plaintext_auth" doc:"Allow LOGIN and AUTHENTICATE before STARTTLS. Leave it false unless the listener is on loopback for testing."`
	MaxConnections      int           `yaml:"max_connections" doc:"Most IMAP connections open at once, all clients together."`
	MaxConnectionsPerIP int           `yaml:"max_connections_per_ip" reload:"live" doc:"Most IMAP connections open at once from one client IP address."`
	LoginsPerIPMinute   int           `yaml:"logins_per_ip_per_minute" reload:"live" doc:"Most LOGIN and AUTHENTICATE attempts per minute from one client IP address."`
	IdlePoll            time.Duration `yaml:"idle_poll" doc:"How often the agent looks for changes in the folders that IMAP clients have selected (IDLE and NOOP see new mail within it; 100ms-1m)."`
}

// Submission is authenticated mail submission over SMTP (users sending).
type Submission struct {
	Listen              string `yaml:"listen" doc:"Address of the submission listener with STARTTLS required before AUTH (port 587). Empty: none."`
	TLSListen           string `yaml:"tls_listen" doc:"Address of the submission listener with TLS from the first byte (port 465). Empty: none."`
	MaxConnections      int    `yaml:"max_connections" doc:"Most submission connections open at once, all clients together."`
	MaxConnectionsPerIP int    `yaml:"max_connections_per_ip" doc:"Most submission connections open at once from one client IP address."`
	LoginsPerIPMinute   int    `yaml:"logins_per_ip_per_minute" doc:"Most AUTH attempts per minute from one client IP address."`
}

// Outbound is the delivery of submitted mail to other servers.
type Outbound struct {
	Workers           int           `yaml:"workers" doc:"Delivery jobs run at once by this agent (1-256)."`
	MaxPerDestination int           `yaml:"max_per_destination" doc:"Most SMTP sessions open at once to one destination (a domain's MX, a static route or the smarthost)."`
	Lifetime          time.Duration `yaml:"lifetime" doc:"How long a message is retried after temporary failures before it bounces with 5.4.7."`
	RetrySchedule     string        `yaml:"retry_schedule" doc:"Waits after each failed attempt, comma-separated, counted from the first attempt; the last one repeats until lifetime runs out."`
	DNSServer         string        `yaml:"dns_server" doc:"host:port of the DNS server for MX lookups. Empty: the system's resolver."`
	Port              int           `yaml:"port" doc:"Port of MX hosts (25; another only for tests)."`
	Routes            []string      `yaml:"routes" doc:"Static routes, each \"domain=host:port\" (more hosts separated by commas, tried in order): mail for the domain goes there instead of to its MX."`
	Smarthost         string        `yaml:"smarthost" doc:"host:port that all mail not statically routed is relayed through. Empty: MX delivery."`
	SmarthostTLS      string        `yaml:"smarthost_tls" doc:"TLS to the smarthost: starttls (required, certificate verified), implicit (port 465 style) or none."`
	SmarthostUsername string        `yaml:"smarthost_username" doc:"AUTH PLAIN user at the smarthost. Empty: no AUTH."`
	SmarthostPassword string        `yaml:"smarthost_password" env:"MAIRUST_OUTBOUND_SMARTHOST_PASSWORD" doc:"AUTH PLAIN password at the smarthost."`
	PlainFallback     bool          `yaml:"plain_fallback" doc:"When an MX host's STARTTLS handshake fails, deliver again without TLS (opportunistic TLS, RFC 7435)."`
}

// Jobs configures the background jobs (River on PostgreSQL).
type Jobs struct {
	RescueAfter time.Duration `yaml:"rescue_after" doc:"A job still marked running this long after it started (its agent died) is run again by another agent or after a restart (1s-24h). Keep it above the longest job; the default job timeout is 1m or this, whichever is shorter."`
}

// Plugins configures the hooks' plugins: where their files live, how their
// jobs retry and when their circuit breakers open.
type Plugins struct {
	Dir                   string        `yaml:"dir" doc:"Where installed plugins' files are kept, one directory each, owned by the agent's user. Empty: data_dir/plugin-files."`
	WorkDir               string        `yaml:"work_dir" doc:"Plugins' working directories, one each (0700, owned by run_as when the agent runs as root). Empty: data_dir/plugins."`
	LogDir                string        `yaml:"log_dir" doc:"Where each plugin's stderr goes (<id>.log, rotated by size). Empty: data_dir/logs/plugins."`
	RunAs                 string        `yaml:"run_as" doc:"System user (and its group) plugin processes run as when the agent runs as root; created by mairust plugin install when missing."`
	Workers               int           `yaml:"workers" doc:"Hook jobs run at once by this agent (1-256); a plugin call mostly waits, so more than the cores."`
	Nice                  int           `yaml:"nice" doc:"Nice value plugin processes start with (0-19): above 0 they yield the CPU to receiving mail, and catch up when it is idle."`
	MergeLogs             bool          `yaml:"merge_logs" doc:"Also write each line a plugin logs into the agent's log, with plugin_id."`
	AllowUnlimitedNetwork bool          `yaml:"allow_unlimited_network" doc:"Let plugins that declare network = unlimited run (an admin decision); otherwise they are refused."`
	Retries               int           `yaml:"retries" reload:"live" doc:"Retries of a failed post_receive job before it is marked permanent-failed (0-10)."`
	RetryBackoff          string        `yaml:"retry_backoff" reload:"live" doc:"Waits before each retry, comma-separated; the last one repeats (e.g. 30s,2m,10m)."`
	BreakerFailures       int           `yaml:"breaker_consecutive_failures" reload:"live" doc:"Consecutive failures that open a plugin's circuit breaker."`
	BreakerFailureRate    float64       `yaml:"breaker_failure_rate" reload:"live" doc:"Share of failed calls in breaker_window (with at least breaker_min_calls) that opens the breaker (0.01-1)."`
	BreakerWindow         time.Duration `yaml:"breaker_window" reload:"live" doc:"Window of the failure rate."`
	BreakerMinCalls       int           `yaml:"breaker_min_calls" reload:"live" doc:"Calls in the window before the failure rate counts."`
	BreakerCoolDown       time.Duration `yaml:"breaker_cool_down" reload:"live" doc:"How long an open breaker skips the plugin before one trial call goes through."`
	AutoDisableRecalled   bool          `yaml:"auto_disable_recalled" reload:"live" doc:"Disable at once an installed plugin the marketplace recalls (found dangerous); off: the admin pages and the log show the alert, an administrator decides."`
	MarketplaceKeys       []TrustedKey  `yaml:"marketplace_keys" doc:"Marketplace public keys this agent trusts besides those its control plane sends: a list of {public_key_file (PEM), not_after (RFC 3339; empty: no end)}. A package installed from the marketplace must carry a valid signature by one of them."`
}

// TrustedKey is a pinned public key, valid until NotAfter (rotation).
type TrustedKey struct {
	PublicKeyFile string `yaml:"public_key_file"`
	NotAfter      string `yaml:"not_after"`
}

// Spam configures the scan of incoming mail: the built-in rules, then
// rspamd when rspamd_url is set.
type Spam struct {
	RspamdURL string        `yaml:"rspamd_url" reload:"live" doc:"Base URL of rspamd, e.g. http://127.0.0.1:11333 (the normal worker). Empty: only the built-in rules scan mail."`
	LearnURL  string        `yaml:"learn_url" reload:"live" doc:"Base URL of rspamd's controller, e.g. http://127.0.0.1:11334: a message moved into Junk through the API is learned as spam there, one moved out of Junk as ham. Empty: no learning."`
	Password  string        `yaml:"password" env:"MAIRUST_SPAM_PASSWORD" reload:"live" doc:"Password sent to rspamd (the controller's password; needed when rspamd_url is the controller, which also takes learning)."`
	Timeout   time.Duration `yaml:"timeout" reload:"live" doc:"Longest wait for rspamd's answer during DATA (100ms-2m); past it on_error applies."`
	OnError   string        `yaml:"on_error" reload:"live" doc:"When rspamd is down, slow or answers garbage: accept (deliver the message marked unscanned) or tempfail (answer 451 so that the sender retries)."`
	RulesFile string        `yaml:"rules_file" reload:"live" doc:"YAML file of the built-in rules (see the Spam filtering section of the README). Empty: the default rule set (GTUBE, missing Date, missing Message-ID). Re-read by mairust reload."`
}

// Monitor is the monitor service that outbound-policy warnings and
// suspensions are reported to.
type Monitor struct {
	Enabled bool          `yaml:"enabled" reload:"live" doc:"POST a JSON notification of each outbound-policy warning and suspension to url: per account at most one in 10 minutes and 24 a day, at most one a second in all; beyond, they are dropped and counted. Sending mail never waits for it."`
	URL     string        `yaml:"url" reload:"live" doc:"http:// or https:// URL of a monitor service's JSON notification endpoint. Empty: the monitor service of the control plane this agent is enrolled into (mairust agent enroll), called with the agent's credential."`
	Token   string        `yaml:"token" env:"MAIRUST_MONITOR_TOKEN" reload:"live" doc:"Bearer token sent with each notification; prefer the environment variable."`
	Timeout time.Duration `yaml:"timeout" reload:"live" doc:"Longest wait for the monitor's answer to one notification (100ms-1m); past it the notification counts as failed."`
}

// OutboundAlerts tells the administrator of the Outbound Policy Engine's
// transitions, by mail and by webhook.
type OutboundAlerts struct {
	Email         string   `yaml:"email" reload:"live" doc:"Address that gets a message for each transition in kinds, e.g. the administrator's. Empty: none."`
	WebhookURL    string   `yaml:"webhook_url" reload:"live" doc:"http:// or https:// URL each transition in kinds is POSTed to as JSON (a chat's incoming webhook, say); retried for about an hour. Empty: none."`
	WebhookSecret string   `yaml:"webhook_secret" env:"MAIRUST_OUTBOUND_ALERTS_WEBHOOK_SECRET" reload:"live" doc:"Signs each POST as HTTP plugins' requests are (X-MaiRust-Timestamp, X-MaiRust-Plugin-Id: outbound-alerts, X-MaiRust-Signature; the Go SDK's Verify checks them). Empty: unsigned."`
	Kinds         []string `yaml:"kinds" reload:"live" doc:"Transitions alerted, of warn (soft-limited), suspend, release (by an administrator) and auto_reenable."`
}

// ControlPlane configures `mairust controlplane`: the multi-tenant service
// agents enroll into (it keeps its own database).
type ControlPlane struct {
	Listen             string        `yaml:"listen" doc:"Address of the control plane's HTTP listener (Connect, gRPC and gRPC-Web, and the console). Put TLS in front of it when it is reachable from outside."`
	DatabaseURL        string        `yaml:"database_url" env:"MAIRUST_CONTROLPLANE_DATABASE_URL" doc:"PostgreSQL URL of the control plane's own database, as the role that owns its tables (it applies the schema). Not the agent's database."`
	AppDatabaseURL     string        `yaml:"app_database_url" env:"MAIRUST_CONTROLPLANE_APP_DATABASE_URL" doc:"PostgreSQL URL the control plane serves requests through, as the role mairust_cp that the schema creates (give it a password with ALTER ROLE): not the tables' owner, so that row-level security keeps tenants apart. Empty: database_url with the user mairust_cp and no password (trust or peer authentication)."`
	PublicURL          string        `yaml:"public_url" doc:"The URL people and agents reach the control plane at, for links in mails and the console. Empty: http://listen (an unspecified host replaced by this machine's name)."`
	JWTKey             string        `yaml:"jwt_key" env:"MAIRUST_CONTROLPLANE_JWT_KEY" doc:"Signing key of sessions and agent credentials as kid:base64 (at least 32 bytes). Empty: one is generated and kept in data_dir/controlplane-jwt.key."`
	SessionTTL         time.Duration `yaml:"session_ttl" doc:"Lifetime of a console session (5m-720h)."`
	AgentCredentialTTL time.Duration `yaml:"agent_credential_ttl" doc:"Lifetime of an agent credential (1m-24h); agents renew it with each heartbeat."`
	HeartbeatInterval  time.Duration `yaml:"heartbeat_interval" doc:"How often agents are asked to send a heartbeat (1s-10m)."`
	AgentDownAfter     time.Duration `yaml:"agent_down_after" doc:"An agent without a heartbeat for this long (plus up to 10% jitter) is marked down; at least 2 heartbeat intervals."`
	MaxRequestBytes    int           `yaml:"max_request_bytes" doc:"Largest request message taken (1 KiB-64 MiB)."`
	PublicPerMinute    int           `yaml:"public_calls_per_minute" doc:"Sign-up, e-mail verification and log-in calls taken per client IP address and minute (bursts of as many), per replica; log-ins are also limited to 10 at once and 5 a minute per account. Behind a reverse proxy every client has the proxy's address: raise it there."`
	MonitorEnabled     bool          `yaml:"monitor_enabled" doc:"Serve the monitor service: it takes the agents' outbound warnings and suspensions, rate-limits and stores them, lists them in the console and alerts the tenant's owners and admins. Off by default: its calls answer Unimplemented."`
	MonitorPerSecond   int           `yaml:"monitor_global_per_second" doc:"Notices the monitor service takes per second in all, per control-plane replica (0: 50)."`
	MonitorHookPrivate bool          `yaml:"monitor_webhook_allow_private" doc:"Lets tenants' monitor webhooks reach loopback and private addresses (and link-local, unspecified and multicast ones), refused by default as tenants are not trusted; for self-hosted set-ups whose receiver is on the internal network."`
	ReportRetention    time.Duration `yaml:"report_retention" doc:"Agents' reports (counters) are deleted this long after they arrive (24h-8760h); usage records are kept for billing."`
	NoticeRetention    time.Duration `yaml:"notice_retention" doc:"The monitor service's notices are deleted this long after they arrive (24h-8760h)."`
	SMTPRelay          string        `yaml:"smtp_relay" doc:"host:port of the SMTP server the control plane's mail (verification links, invitations, alerts) goes through, without authentication: by default an agent on this machine."`
	MailFrom           string        `yaml:"mail_from" doc:"Sender address of the control plane's mail."`
}

// Billing configures the control plane's billing through Stripe. Without
// stripe_secret_key it is off: no customers, no limits, nothing depends on
// it (self-hosted).
type Billing struct {
	StripeSecretKey  string        `yaml:"stripe_secret_key" env:"MAIRUST_STRIPE_SECRET_KEY" doc:"Stripe secret key (sk_live_... or sk_test_...). Empty: billing is off."`
	WebhookSecret    string        `yaml:"stripe_webhook_secret" env:"MAIRUST_STRIPE_WEBHOOK_SECRET" doc:"Signing secret (whsec_...) of the webhook endpoint <public_url>/billing/stripe/webhook in Stripe's dashboard; required with stripe_secret_key."`
	StripeAPIURL     string        `yaml:"stripe_api_url" doc:"Base URL of Stripe's API. Empty: Stripe's own; set it to a stripe-mock for tests."`
	WebhookTolerance time.Duration `yaml:"webhook_tolerance" doc:"Oldest webhook signature timestamp taken (1m-1h); older events are refused as replays."`
	SyncInterval     time.Duration `yaml:"sync_interval" doc:"How often the control plane creates missing Stripe customers, restricts tenants past their grace period and sends usage to Stripe's meters (1s-1h)."`
	GracePeriod      time.Duration `yaml:"grace_period" doc:"How long a tenant whose payment failed stays past_due, with full service, before it is restricted (no new outbound mail; inbound mail keeps arriving) (0-2160h)."`
	DefaultPlan      string        `yaml:"default_plan" doc:"The plan (an id of plans) of a tenant without a subscription."`
	Plans            []Plan        `yaml:"plans" doc:"The plans: a list of {id, name, price_id (the Stripe price of its subscription; empty for a free plan), domains, mail_users, agents, monthly_messages (each 0: no limit)}."`
	MessagesMeter    string        `yaml:"messages_meter" doc:"event_name of the Stripe billing meter that counts messages processed (in + out)."`
	StorageMeter     string        `yaml:"storage_meter" doc:"event_name of the Stripe billing meter of storage, in millionths of a GB-month (an hour of 1 GB sends 1370; price it per 1,000,000 units)."`
}

// Marketplace configures the control plane's plugin marketplace.
type Marketplace struct {
	Reviewers       []string     `yaml:"reviewers" doc:"Console accounts (e-mail addresses) that review submitted plugins: they see the review reports and approve or reject."`
	SigningKeyFile  string       `yaml:"signing_key_file" env:"MAIRUST_MARKETPLACE_KEY_FILE" doc:"PEM file of the marketplace's Ed25519 private key (mairust plugin keygen --type ed25519), kept out of the database; approved packages are countersigned with it. Empty: MAIRUST_MARKETPLACE_KEY holds the PEM itself; neither: nothing can be approved."`
	MaxPackageBytes int64        `yaml:"max_package_bytes" doc:"Largest package taken by POST /marketplace/upload (1 MiB-1 GiB)."`
	PreviousKeys    []TrustedKey `yaml:"previous_keys" doc:"Public keys the marketplace signed with before a rotation, sent to the agents with their end date so that packages they signed stay installable until then: a list of {public_key_file, not_after (RFC 3339)}."`
}

// Plan is a billing plan and its limits (0: none).
type Plan struct {
	ID              string `yaml:"id"`
	Name            string `yaml:"name"`
	PriceID         string `yaml:"price_id"`
	Domains         int    `yaml:"domains"`
	MailUsers       int    `yaml:"mail_users"`
	Agents          int    `yaml:"agents"`
	MonthlyMessages int64  `yaml:"monthly_messages"`
}

// Link configures an enrolled agent's link to its control plane
// (mairust agent enroll).
type Link struct {
	ReportInterval time.Duration `yaml:"report_interval" doc:"How often the agent reports its counters (messages in and out, spam, bytes) to the control plane (1s-1h)."`
	OutboxLimit    int           `yaml:"outbox_limit" doc:"Reports kept while the control plane is unreachable (100-1000000); beyond, the oldest are dropped and counted."`
}

// AlertKinds are the transitions outbound_alerts.kinds may name.
var AlertKinds = []string{"warn", "suspend", "release", "auto_reenable"}

// Default returns the settings used for every key the file leaves out.
func Default() Config {
	return Config{
		DataDir:  "/var/lib/mairust",
		Log:      Log{Level: "info", Format: "json"},
		HTTP:     HTTP{Listen: "127.0.0.1:8025"},
		Database: Database{MaxConns: 40},
		SMTP: SMTP{
			Listen:              ":25",
			Hostname:            "localhost",
			MaxMessageBytes:     50 << 20,
			MaxRecipients:       100,
			ReadTimeout:         5 * time.Minute,
			WriteTimeout:        time.Minute,
			MaxConnections:      1000,
			MaxConnectionsPerIP: 100,
			MessagesPerIPMinute: 0,
			ShutdownTimeout:     30 * time.Second,
		},
		Storage: Storage{Backend: "local"},
		S3: S3{
			Region:             "us-east-1",
			MultipartThreshold: 8,
			Encryption:         "sse-s3",
		},
		Retention: Retention{
			DeletedMessagesDays: 30,
			CleanupInterval:     time.Hour,
			OrphanBlobGrace:     time.Hour,
		},
		API:  API{Listen: "127.0.0.1:8080", AccessTokenTTL: 15 * time.Minute, RefreshTokenTTL: 30 * 24 * time.Hour},
		Jobs: Jobs{RescueAfter: time.Hour},
		Plugins: Plugins{
			RunAs:              "mairust-plugin",
			MergeLogs:          true,
			Workers:            16,
			Nice:               10,
			Retries:            3,
			RetryBackoff:       "30s,2m,10m",
			BreakerFailures:    10,
			BreakerFailureRate: 0.8,
			BreakerWindow:      5 * time.Minute,
			BreakerMinCalls:    20,
			BreakerCoolDown:    time.Minute,
		},
		IMAP: IMAP{
			Listen:              ":143",
			TLSListen:           ":993",
			MaxConnections:      1000,
			MaxConnectionsPerIP: 50,
			LoginsPerIPMinute:   30,
			IdlePoll:            time.Second,
		},
		Submission: Submission{
			Listen:              ":587",
			TLSListen:           ":465",
			MaxConnections:      1000,
			MaxConnectionsPerIP: 50,
			LoginsPerIPMinute:   30,
		},
		Outbound: Outbound{
			Workers:           16,
			MaxPerDestination: 5,
			Lifetime:          120 * time.Hour,
			RetrySchedule:     "1m,5m,15m,30m,1h,2h,4h",
			Port:              25,
			SmarthostTLS:      "starttls",
			PlainFallback:     true,
		},
		RateLimit: RateLimit{UserPerMinute: 60, AdminIPPerMinute: 30},
		Spam:      Spam{Timeout: 10 * time.Second, OnError: "accept"},

		OutboundPolicy: policy.DefaultSettings(),
		Monitor:        Monitor{Timeout: 5 * time.Second},
		OutboundAlerts: OutboundAlerts{Kinds: AlertKinds},
		Link:           Link{ReportInterval: time.Minute, OutboxLimit: 10000},
		ControlPlane: ControlPlane{Listen: "127.0.0.1:8090", SessionTTL: 24 * time.Hour,
			AgentCredentialTTL: time.Hour, HeartbeatInterval: 30 * time.Second, AgentDownAfter: 90 * time.Second, MaxRequestBytes: 4 << 20, PublicPerMinute: 20,
			ReportRetention: 30 * 24 * time.Hour, NoticeRetention: 90 * 24 * time.Hour,
			SMTPRelay: "127.0.0.1:25", MailFrom: "noreply@localhost"},
		Marketplace: Marketplace{MaxPackageBytes: 64 << 20},
		Billing: Billing{WebhookTolerance: 5 * time.Minute, SyncInterval: 10 * time.Second, GracePeriod: 7 * 24 * time.Hour, DefaultPlan: "free",
			Plans: []Plan{
				{ID: "free", Name: "Free", Domains: 1, MailUsers: 5, Agents: 1, MonthlyMessages: 10000},
				{ID: "pro", Name: "Pro", Domains: 10, MailUsers: 100, Agents: 5, MonthlyMessages: 1000000},
				{ID: "business", Name: "Business"},
			},
			MessagesMeter: "mairust_messages", StorageMeter: "mairust_storage_gb_months"},
	}
}

// PluginPaths returns plugins.dir, plugins.work_dir and plugins.log_dir,
// each defaulting to a folder under data_dir.
func (c Config) PluginPaths() (files, work, logs string) {
	or := func(v, def string) string {
		if v != "" {
			return v
		}
		return filepath.Join(c.DataDir, def)
	}
	return or(c.Plugins.Dir, "plugin-files"), or(c.Plugins.WorkDir, "plugins"), or(c.Plugins.LogDir, filepath.Join("logs", "plugins"))
}

// URL is where people and agents reach the control plane: public_url, or
// http://listen with an unspecified host (0.0.0.0, ::) replaced by this
// machine's name.
func (c ControlPlane) URL() string {
	if c.PublicURL != "" {
		return strings.TrimSuffix(c.PublicURL, "/")
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return "http://" + c.Listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, err = os.Hostname(); err != nil {
			host = "localhost"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}
