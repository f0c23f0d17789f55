package spam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// maxReplyBytes bounds what is read of an rspamd reply.
const maxReplyBytes = 4 << 20

// Client talks to rspamd's HTTP protocol: /checkv2 on the normal worker (or
// the controller) and /learnspam, /learnham on the controller.
type Client struct {
	url      string // base URL, without a trailing slash
	password string
	timeout  time.Duration
	http     *http.Client
}

// NewClient returns a client for the rspamd at url (e.g.
// http://127.0.0.1:11333); password is sent when not empty; every request
// ends after timeout.
func NewClient(url, password string, timeout time.Duration) *Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Minute,
	}
	return &Client{url: strings.TrimRight(url, "/"), password: password, timeout: timeout, http: &http.Client{Transport: tr}}
}

// Error is a failed exchange with rspamd; Reason is the metric label:
// timeout, connect, status or reply.
type Error struct {
	Reason string
	Status int // the HTTP status with Reason status
	Err    error
}

// ErrAlreadyLearned is returned (wrapped) by Learn when rspamd has learned
// the message before; nothing changed.
var ErrAlreadyLearned = errors.New("spam: already learned")

// ErrTooShort is returned (wrapped) by Learn when rspamd answers 204: the
// message has too few tokens for its Bayes classifier.
var ErrTooShort = errors.New("spam: too few words to learn")

func (e *Error) Error() string { return "rspamd: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// checkReply is the part of rspamd's /checkv2 answer MaiRust uses.
type checkReply struct {
	Action  string  `json:"action"`
	Score   float64 `json:"score"`
	Subject string  `json:"subject"`
	Symbols map[string]struct {
		Score float64 `json:"score"`
	} `json:"symbols"`
	Messages struct {
		SMTP string `json:"smtp_message"`
	} `json:"messages"`
}

// Check scans msg with its envelope.
func (c *Client) Check(ctx context.Context, env Envelope, msg []byte) (Verdict, error) {
	h := http.Header{}
	set := func(k, v string) {
		if v != "" {
			h.Set(k, headerText(v))
		}
	}
	set("IP", env.IP)
	set("Helo", env.Helo)
	set("From", env.MailFrom)
	set("User", env.User)
	set("Queue-Id", env.QueueID)
	for _, r := range env.Rcpts {
		h.Add("Rcpt", headerText(r))
	}
	body, err := c.post(ctx, "/checkv2", h, msg)
	if err != nil {
		return Verdict{}, err
	}
	var r checkReply
	if err := json.Unmarshal(body, &r); err != nil {
		return Verdict{}, &Error{Reason: "reply", Err: fmt.Errorf("/checkv2: %w", err)}
	}
	a, ok := parseAction(r.Action)
	if !ok {
		return Verdict{}, &Error{Reason: "reply", Err: fmt.Errorf("/checkv2: unknown action %q", r.Action)}
	}
	v := Verdict{Action: a, Score: r.Score, Symbols: make(map[string]float64, len(r.Symbols)), Message: headerText(r.Messages.SMTP), Subject: r.Subject, Scanned: true}
	for name, s := range r.Symbols {
		v.Symbols[name] = s.Score
	}
	return v, nil
}

// Learn teaches rspamd's Bayes classifier that msg is spam (or ham). It
// needs the controller's URL and, unless the agent's address is trusted
// there, its password. A message learned before gives ErrAlreadyLearned,
// one too short to learn ErrTooShort.
func (c *Client) Learn(ctx context.Context, spam bool, msg []byte) error {
	path := "/learnham"
	if spam {
		path = "/learnspam"
	}
	_, err := c.post(ctx, path, http.Header{}, msg)
	var re *Error
	switch {
	case errors.As(err, &re) && (re.Status == http.StatusAlreadyReported || strings.Contains(re.Err.Error(), "already learned")):
		return fmt.Errorf("%w: %w", ErrAlreadyLearned, err)
	case errors.As(err, &re) && re.Status == http.StatusNoContent:
		return fmt.Errorf("%w: %w", ErrTooShort, err)
	}
	return err
}

// post sends msg to path and returns the body of a 200 answer.
func (c *Client) post(ctx context.Context, path string, h http.Header, msg []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+path, bytes.NewReader(msg))
	if err != nil {
		return nil, &Error{Reason: "connect", Err: err}
	}
	req.Header = h
	if c.password != "" {
		req.Header.Set("Password", c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &Error{Reason: "timeout", Err: fmt.Errorf("%s: no answer within %v", path, c.timeout)}
		}
		return nil, &Error{Reason: "connect", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, &Error{Reason: "timeout", Err: fmt.Errorf("%s: no complete answer within %v", path, c.timeout)}
		}
		return nil, &Error{Reason: "reply", Err: fmt.Errorf("%s: %w", path, err)}
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(body[:min(len(body), 200)]))
		}
		return nil, &Error{"status", resp.StatusCode, fmt.Errorf("%s: %s: %s", path, resp.Status, e.Error)}
	}
	return body, nil
}
