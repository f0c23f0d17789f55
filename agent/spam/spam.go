// Package spam decides what becomes of an incoming message: the built-in
// rules (a YAML file of header, body, envelope and size checks) and, when it
// is configured, rspamd over HTTP. It returns a verdict and can mark a
// message with it; it never answers SMTP, stores or drops anything itself.
package spam

import (
	"fmt"
	"mime"
	"slices"
	"strings"
)

// Action is what to do with a message, named as rspamd names it.
type Action string

// The actions, in increasing severity (the order of rspamd's thresholds).
const (
	NoAction       Action = "no action"
	Greylist       Action = "greylist"
	AddHeader      Action = "add header"
	RewriteSubject Action = "rewrite subject"
	SoftReject     Action = "soft reject"
	Reject         Action = "reject"
)

var actions = []Action{NoAction, Greylist, AddHeader, RewriteSubject, SoftReject, Reject}

// parseAction accepts an action as rspamd writes it ("add header") or as a
// YAML key ("add_header").
func parseAction(s string) (Action, bool) {
	a := Action(strings.ReplaceAll(s, "_", " "))
	return a, slices.Contains(actions, a)
}

func (a Action) severity() int { return slices.Index(actions, a) }

// Junk reports whether the message is delivered to the Junk folder.
func (a Action) Junk() bool { return a == AddHeader || a == RewriteSubject }

// Refuses reports whether the message is refused (permanently or for now).
func (a Action) Refuses() bool { return a == Greylist || a == SoftReject || a == Reject }

// label is the action as a metric label, e.g. add_header.
func (a Action) label() string { return strings.ReplaceAll(string(a), " ", "_") }

// Envelope is the SMTP transaction around a message, as rspamd wants it.
type Envelope struct {
	IP       string   // client address
	Helo     string   // EHLO/HELO name
	MailFrom string   // "" for the null sender
	Rcpts    []string // accepted recipients
	User     string   // authenticated user; "" for mail from outside
	QueueID  string   // the SMTP session id, for rspamd's log
}

// Verdict is the outcome of a scan.
type Verdict struct {
	Action  Action
	Score   float64
	Symbols map[string]float64 // rspamd symbol or rule name to its score
	Message string             // reply text for a refused message
	Subject string             // the new Subject with RewriteSubject
	Scanned bool               // false when rspamd failed and the message passed without it
}

// merge combines the rules' verdict v with rspamd's r: the scores and
// symbols add up, and the more severe action wins with its reply text and
// subject.
func (v Verdict) merge(r Verdict) Verdict {
	out := r
	if v.Action.severity() > r.Action.severity() {
		out = v
	}
	out.Score = v.Score + r.Score
	out.Symbols = make(map[string]float64, len(v.Symbols)+len(r.Symbols))
	for _, m := range []map[string]float64{v.Symbols, r.Symbols} {
		for k, s := range m {
			out.Symbols[k] += s
		}
	}
	out.Scanned = v.Scanned && r.Scanned
	return out
}

// Mark returns msg as it is delivered under v. X-Spam-* fields that came
// with the message are removed, so that a sender cannot vouch for its own
// mail; for the Junk actions our X-Spam-Score and X-Spam-Status go in front,
// and with RewriteSubject the new Subject replaces the old one (or is added).
func (v Verdict) Mark(msg []byte) []byte {
	fields, _ := headerFields(msg)
	rewrite := v.Action == RewriteSubject && v.Subject != ""
	var drop []field // fields left out, in order
	hasSubject := false
	for _, f := range fields {
		isSubject := strings.EqualFold(f.name, "Subject")
		if len(f.name) >= 7 && strings.EqualFold(f.name[:7], "X-Spam-") || (rewrite && isSubject && !hasSubject) {
			drop = append(drop, f)
		}
		hasSubject = hasSubject || isSubject
	}
	if !v.Action.Junk() && len(drop) == 0 {
		return msg
	}
	var b strings.Builder
	if v.Action.Junk() {
		fmt.Fprintf(&b, "X-Spam-Score: %.2f\r\n", v.Score)
		b.WriteString(fold(fmt.Sprintf("X-Spam-Status: Yes, score=%.2f action=%s tests=%s", v.Score, v.Action.label(), strings.Join(sortedKeys(v.Symbols), ", "))))
	}
	subject := ""
	if rewrite {
		subject = "Subject: " + mime.QEncoding.Encode("utf-8", headerText(v.Subject)) + "\r\n"
		if !hasSubject {
			b.WriteString(subject)
		}
	}
	out := make([]byte, 0, b.Len()+len(msg)+len(subject))
	out = append(out, b.String()...)
	last := 0
	for _, f := range drop {
		out = append(out, msg[last:f.start]...)
		if rewrite && strings.EqualFold(f.name, "Subject") {
			out = append(out, subject...)
		}
		last = f.end
	}
	return append(out, msg[last:]...)
}

// fold returns the header field line, folded at spaces so that lines stay
// short where the words allow (RFC 5322 2.2.3), with the final CRLF.
func fold(line string) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Split(line, " ") {
		switch {
		case i == 0:
		case n+1+len(w) > 76:
			b.WriteString("\r\n\t")
			n = 1
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	b.WriteString("\r\n")
	return b.String()
}

// headerText keeps printable characters only, so that text from a scanner
// cannot break a header field.
func headerText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, headerText(k))
	}
	slices.Sort(keys)
	return keys
}
