package alerts

import (
	"fmt"
	"mime"
	"strings"
	"time"
)

// message is the alert mail of e to the address to.
func (a *Alerter) message(e Event, to string) []byte {
	subject := map[string]string{
		"warn":          "Sending soft-limited",
		"suspend":       "Sending suspended",
		"release":       "Sending released",
		"auto_reenable": "Sending re-enabled",
	}[e.Kind]
	var b strings.Builder
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", "MaiRust <postmaster@"+a.hostname+">")
	h("To", "<"+to+">")
	h("Subject", mime.QEncoding.Encode("utf-8", "[MaiRust] "+subject+": "+e.Account))
	h("Date", time.Now().Format(time.RFC1123Z))
	h("Message-ID", fmt.Sprintf("<alert-%d.%d@%s>", e.ID, time.Now().UnixNano(), a.hostname))
	h("Auto-Submitted", "auto-generated")
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "8bit")
	b.WriteString("\r\n")
	line := func(s string) { b.WriteString(s + "\r\n") }
	line(e.Text)
	line("")
	line("Account:  " + e.Account)
	line("Change:   " + e.From + " -> " + e.To + " (" + e.Kind + ")")
	line("By:       " + e.Actor)
	line("Why:      " + e.Reason)
	if e.Score != nil {
		line(fmt.Sprintf("Score:    %.2f", *e.Score))
	}
	line("At:       " + e.At.UTC().Format(time.RFC3339))
	line("Agent:    " + a.hostname)
	line("")
	switch e.To {
	case "suspended":
		line("Every message the account submits is refused with 550 until it is released.")
		line("Check the account (a stolen password?), then release it on the admin page")
		line("(Outbound card) or with:")
		line("  mairust admin outbound release " + e.Account + " --why \"password reset\"")
	case "soft_limited":
		line("The account may still send, under a lower hourly cap, until the soft limit ends.")
		line("  mairust admin outbound status " + e.Account)
	}
	return []byte(b.String())
}
