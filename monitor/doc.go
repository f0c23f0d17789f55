// Package monitor is the monitor service the control plane serves when the
// operator enables it (controlplane.monitor_enabled): it takes the agents'
// outbound-policy warnings and suspensions (MonitorService.Notify, agent
// credential only, into the agent's own tenant), drops duplicates and
// notices over the rate limits, stores the rest in the table notices, lists
// them to the tenant's members (ListNotices), and alerts the tenant's
// owners and admins by mail and, when the tenant has one, by a signed
// webhook.
//
// The per-account limits (10 minutes apart, 24 in 24 hours) are checked in
// the database, in the transaction that inserts the notice, under an
// advisory lock on the account, so they hold across control-plane
// replicas; the global limit (GlobalPerSecond) is a token bucket in each
// process, so n replicas take up to n times as many. Alerts never hold up
// Notify: they are rows of monitor_alerts, written with the notice and sent
// by Run, retried with backoff, on any replica.
//
// It owns the tables notices, monitor_webhooks and monitor_alerts, and
// reads memberships and accounts for the recipients; it touches nothing
// else.
package monitor
