// Package sdk is what a MaiRust plugin is written with: the event a hook
// sends, the result a plugin answers, request signing for HTTP plugins, and
// helpers for stdin and HTTP plugins.
//
// The agent imports this package too, so the types here are the wire
// contract: an [Event] goes to the plugin as JSON, a [Result] comes back as
// JSON. Process (go-plugin gRPC) plugins are served by a sibling package.
package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
)

// EventVersion is the version of the [Event] format this package speaks.
const EventVersion = 1

// HookPostReceive is the hook run after a message is stored.
const HookPostReceive = "post_receive"

// PreviewBytes is how much of an attachment a plugin with preview access sees.
const PreviewBytes = 4096

// Size limits of the wire.
const (
	MaxEventBytes  = 32 << 20  // an encoded Event
	MaxResultBytes = 256 << 10 // an encoded Result
)

// Limits of a [Result], checked by [Result.Validate].
const (
	MaxTags           = 32
	MaxTagBytes       = 64
	MaxMoveToBytes    = 255
	MaxMetadataKeys   = 32
	MaxMetaKeyBytes   = 64
	MaxMetaValueBytes = 1024
	MaxLogBytes       = 4 << 10
)

// Event is what a hook sends to a plugin.
type Event struct {
	Version  int            `json:"version"`   // EventVersion
	Hook     string         `json:"hook"`      // e.g. HookPostReceive
	PluginID string         `json:"plugin_id"` // the plugin this event is for
	EventID  string         `json:"event_id"`  // unique per delivery; the same on retries
	Attempt  int            `json:"attempt"`   // 1 on the first try
	Message  Message        `json:"message"`
	Settings map[string]any `json:"settings,omitempty"` // the plugin's settings
}

// Message is the stored message an event is about. Headers, Body and
// attachment content are present only when the plugin may read them.
type Message struct {
	ID          int64        `json:"id"`
	User        string       `json:"user"` // the recipient address
	Folder      string       `json:"folder"`
	MailFrom    string       `json:"mail_from"`
	RcptTo      string       `json:"rcpt_to"`
	Size        int64        `json:"size"`
	ReceivedAt  time.Time    `json:"received_at"`
	Headers     []Header     `json:"headers,omitempty"`
	Body        *Body        `json:"body,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Header is one header field with its value decoded.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Body is the text of a message.
type Body struct {
	Text      string `json:"text,omitempty"`
	HTML      string `json:"html,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// Attachment describes one attachment. Content is set only with preview
// access (at most the first PreviewBytes, Truncated if there is more) or
// full access.
type Attachment struct {
	Index       int    `json:"index"`
	Filename    string `json:"filename,omitempty"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	Content     []byte `json:"content,omitempty"` // base64 in JSON
	Truncated   bool   `json:"truncated,omitempty"`
}

// Result is what a plugin answers. The zero Result changes nothing.
type Result struct {
	Tags     []string          `json:"tags,omitempty"`     // tags to add to the message
	MoveTo   string            `json:"move_to,omitempty"`  // folder to move the message to
	Metadata map[string]string `json:"metadata,omitempty"` // stored with the message
	Log      string            `json:"log,omitempty"`      // written to the plugin's log
}

// ErrInvalidResult wraps every refusal of [DecodeResult] but a size one.
var ErrInvalidResult = errors.New("invalid plugin result")

// ErrResultTooLarge is returned by [DecodeResult] for a result over its limit.
var ErrResultTooLarge = errors.New("plugin result too large")

// Validate checks r against the limits. The error names the field.
func (r Result) Validate() error {
	if len(r.Tags) > MaxTags {
		return fmt.Errorf("tags: %d tags, more than %d", len(r.Tags), MaxTags)
	}
	for i, t := range r.Tags {
		if err := checkName(t, MaxTagBytes); err != nil {
			return fmt.Errorf("tags[%d]: %w", i, err)
		}
	}
	if len(r.MoveTo) > MaxMoveToBytes {
		return fmt.Errorf("move_to: longer than %d bytes", MaxMoveToBytes)
	}
	if !printable(r.MoveTo) {
		return errors.New("move_to: not printable UTF-8")
	}
	if len(r.Metadata) > MaxMetadataKeys {
		return fmt.Errorf("metadata: %d keys, more than %d", len(r.Metadata), MaxMetadataKeys)
	}
	keys := make([]string, 0, len(r.Metadata))
	for k := range r.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same error for the same result
	for _, k := range keys {
		if err := checkName(k, MaxMetaKeyBytes); err != nil {
			return fmt.Errorf("metadata key %q: %w", k, err)
		}
		v := r.Metadata[k]
		if len(v) > MaxMetaValueBytes {
			return fmt.Errorf("metadata[%q]: longer than %d bytes", k, MaxMetaValueBytes)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("metadata[%q]: not valid UTF-8", k)
		}
	}
	if len(r.Log) > MaxLogBytes {
		return fmt.Errorf("log: longer than %d bytes", MaxLogBytes)
	}
	return nil
}

// checkName checks a tag or metadata key: not empty, at most max bytes,
// printable UTF-8.
func checkName(s string, max int) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > max:
		return fmt.Errorf("longer than %d bytes", max)
	case !printable(s):
		return errors.New("not printable UTF-8")
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control or other
// non-printable characters (the ASCII space is allowed).
func printable(s string) bool {
	for _, c := range s {
		if c == utf8.RuneError || !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

// DecodeResult reads a plugin's answer from r: one JSON object, at most max
// bytes (MaxResultBytes if max <= 0), no unknown fields, nothing after it,
// and within the limits of [Result.Validate].
func DecodeResult(r io.Reader, max int64) (Result, error) {
	if max <= 0 {
		max = MaxResultBytes
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return Result{}, fmt.Errorf("reading plugin result: %w", err)
	}
	if int64(len(data)) > max {
		return Result{}, fmt.Errorf("%w: more than %d bytes", ErrResultTooLarge, max)
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Result{}, fmt.Errorf("%w: not a JSON object", ErrInvalidResult)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var res Result
	if err := dec.Decode(&res); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalidResult, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Result{}, fmt.Errorf("%w: data after the JSON object", ErrInvalidResult)
	}
	if err := res.Validate(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalidResult, err)
	}
	return res, nil
}
