// Package smtputil holds what the agent's SMTP servers (receiving and
// submission) share around github.com/emersion/go-smtp.
package smtputil

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// HeloName makes a client's HELO/EHLO name safe for a Received header:
// printable ASCII without spaces, parentheses or backslashes, at most 255
// bytes; "unknown" when nothing is left.
func HeloName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || r == '(' || r == ')' || r == '\\' {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "unknown"
	}
	return s[:min(len(s), 255)]
}

// ErrorLog is go-smtp's error log written to a slog logger: a recovered
// panic at error level, the rest (clients that hang up or fail the TLS
// handshake, every day on a public port) at debug level.
type ErrorLog struct{ Log *slog.Logger }

// Printf implements smtp.Logger.
func (e ErrorLog) Printf(format string, v ...any) { e.Println(fmt.Sprintf(format, v...)) }

// Println implements smtp.Logger.
func (e ErrorLog) Println(v ...any) {
	msg := fmt.Sprint(v...)
	level := slog.LevelDebug
	if strings.HasPrefix(msg, "panic") {
		level = slog.LevelError
	}
	e.Log.Log(context.Background(), level, "smtp: "+msg)
}
