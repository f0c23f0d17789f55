package mailer

import (
	"context"
	"fmt"
	"regexp"
	"sync"
)

// Mail is one message a Recorder took.
type Mail struct {
	To, Subject, Body string
}

// Recorder is a Mailer that keeps mail instead of sending it, for tests.
type Recorder struct {
	mu    sync.Mutex
	mails []Mail
	fail  error
}

// FailWith makes Send return err (nil: record again).
func (r *Recorder) FailWith(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

// Send records the mail, or fails as FailWith said.
func (r *Recorder) Send(_ context.Context, to, subject, body string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.mails = append(r.mails, Mail{To: to, Subject: subject, Body: body})
	return nil
}

// Mails returns what was sent so far.
func (r *Recorder) Mails() []Mail {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Mail(nil), r.mails...)
}

var tokenInLink = regexp.MustCompile(`\?token=([A-Za-z0-9_-]+)`)

// LastToken returns the token of the link in the last mail sent to to.
func (r *Recorder) LastToken(to string) (string, error) {
	mails := r.Mails()
	for i := len(mails) - 1; i >= 0; i-- {
		if mails[i].To != to {
			continue
		}
		if m := tokenInLink.FindStringSubmatch(mails[i].Body); m != nil {
			return m[1], nil
		}
		return "", fmt.Errorf("the last mail to %s has no link: %q", to, mails[i].Body)
	}
	return "", fmt.Errorf("no mail was sent to %s", to)
}
