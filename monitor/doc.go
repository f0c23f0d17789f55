// Package monitor will hold the monitor service: it takes agents'
// outbound-abuse notifications, rate-limits and deduplicates them, and alerts.
package monitor
