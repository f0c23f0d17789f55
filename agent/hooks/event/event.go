// Package event builds the message a hook sends a plugin from the stored
// bytes, giving it only what its permissions allow. It does not run plugins
// or read storage.
package event

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // Japanese and other charsets
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
)

// Limits of what Build gives. Whatever is cut is marked Truncated, but for
// header fields past MaxHeaders and MIME parts past MaxParts, which are left
// out.
const (
	MaxHeaders          = 200      // top-level header fields
	MaxHeaderValueBytes = 8 << 10  // one decoded header value
	MaxBodyBytes        = 8 << 20  // the text body, and the HTML body
	MaxAttachmentBytes  = 16 << 20 // the content of all attachments together
	MaxParts            = 200      // MIME parts looked at, multiparts included
	MaxDepth            = 16       // multipart nesting descended into
	maxFilenameBytes    = 255
)

// Build returns base with Headers, Body and Attachments taken from raw, the
// stored message, as far as p allows; whatever base had in those fields is
// dropped. Build never fails: what cannot be parsed is left out, and a
// message without a valid header block is read as plain text.
//
//   - Headers (ReadHeaders): the top-level fields in order, encoded words
//     decoded.
//   - Body: the first text/plain and the first text/html part that are not
//     attachments. Text is the text/plain part or, without one, the HTML
//     with its tags stripped. BodyPreview gives the first [sdk.PreviewBytes]
//     of Text and no HTML; BodyFull gives Text and HTML.
//   - Attachments: every other leaf part (named or marked attachment, of
//     another type, or a second text body), numbered from 1.
//     AttachmentsMetadata gives name, type and decoded size;
//     AttachmentsPreview adds the first [sdk.PreviewBytes] of text/*
//     attachments; AttachmentsFull adds the content of all.
//
// Text parts in a known charset are converted to UTF-8, and every string
// is valid UTF-8.
func Build(raw []byte, base sdk.Message, p manifest.Permissions) sdk.Message {
	m := base
	m.Headers, m.Body, m.Attachments = nil, nil, nil
	header, root, err := parse(raw)
	if p.ReadHeaders {
		m.Headers = headers(header)
	}
	if p.ReadBody == manifest.BodyNone && p.ReadAttachments == manifest.AttachmentsNone {
		return m
	}
	b := builder{p: p, budget: MaxAttachmentBytes}
	b.walk(root, err, 0)
	if p.ReadBody > manifest.BodyNone {
		m.Body = b.body()
	}
	if p.ReadAttachments > manifest.AttachmentsNone {
		m.Attachments = b.attachments
	}
	return m
}

// parse splits raw into its top-level header and the entity of its body.
// When the header block stops at a line that is not a header field (or
// raw has no header at all), the fields before it are the header and the
// rest of raw, from that line on, is a plain-text body.
func parse(raw []byte) (message.Header, *message.Entity, error) {
	end, start, ok := headerEnd(raw)
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw[:end])))
	header, bodyHeader := message.Header{Header: h}, message.Header{Header: h}
	if !ok {
		start, bodyHeader = end, message.Header{}
	}
	e, err := message.New(bodyHeader, bytes.NewReader(raw[start:]))
	return header, e, err
}

// headerEnd finds the end of the header block of raw: end is where its
// last field ends and start where the body starts. ok is false when the
// block stops at a line that is not a header field, which then starts the
// body (start == end). Lines are judged as textproto.ReadHeader does.
func headerEnd(raw []byte) (end, start int, ok bool) {
	for i := 0; i < len(raw); {
		n := bytes.IndexByte(raw[i:], '\n') + 1
		if n == 0 {
			n = len(raw) - i
		}
		line := bytes.TrimSuffix(bytes.TrimSuffix(raw[i:i+n], []byte("\n")), []byte("\r"))
		switch {
		case len(line) == 0:
			return i, i + n, true
		case line[0] == ' ' || line[0] == '\t':
			if i == 0 {
				return 0, 0, false // a continuation without a field
			}
		case !fieldLine(line):
			return i, i, false
		}
		i += n
	}
	return len(raw), len(raw), true
}

// fieldLine reports whether line starts a header field: a colon after a
// name of printable ASCII (spaces and tabs around it allowed).
func fieldLine(line []byte) bool {
	name, _, found := bytes.Cut(line, []byte(":"))
	if !found {
		return false
	}
	for _, c := range bytes.Trim(name, " \t") {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// headers lists h's fields in order with their values decoded.
func headers(h message.Header) []sdk.Header {
	var out []sdk.Header
	fields := h.Fields()
	for fields.Next() && len(out) < MaxHeaders {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		v, _ = cut(strings.ToValidUTF8(v, "\uFFFD"), MaxHeaderValueBytes)
		out = append(out, sdk.Header{Name: fields.Key(), Value: v})
	}
	return out
}

// builder collects the bodies and attachments of a message as it walks its
// MIME tree.
type builder struct {
	p                manifest.Permissions
	parts            int
	hasText, hasHTML bool
	text, html       string
	textCut, htmlCut bool
	attachments      []sdk.Attachment
	budget           int64 // left of MaxAttachmentBytes
}

// walk visits e and the parts in it, depth first, in order; newErr is the
// error message.New gave for e. It reports false once MaxParts is reached.
func (b *builder) walk(e *message.Entity, newErr error, depth int) bool {
	if b.parts++; b.parts > MaxParts {
		return false
	}
	mt, params := mediaType(e.Header)
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < MaxDepth {
		if mr := e.MultipartReader(); mr != nil {
			for {
				part, err := mr.NextPart()
				if part == nil {
					return true // the end, or a broken multipart: keep what was read
				}
				if !b.walk(part, err, depth+1) {
					return false
				}
			}
		}
	}
	b.leaf(e, mt, params, newErr)
	return true
}

// mediaType is e's media type, lower case, and its parameters: text/plain
// when there is no Content-Type, the type alone when the parameters are
// malformed, application/octet-stream when the type is.
func mediaType(h message.Header) (string, map[string]string) {
	mt, params, err := h.ContentType()
	if err == nil {
		return mt, params
	}
	if t, _, err := mime.ParseMediaType(h.Get("Content-Type")); err == mime.ErrInvalidMediaParameter && t != "" {
		return t, nil
	}
	return "application/octet-stream", nil
}

// leaf files a part that is not a multipart as a body or an attachment,
// reading as much of it as the permissions allow.
func (b *builder) leaf(e *message.Entity, mt string, params map[string]string, newErr error) {
	disp, _, _ := strings.Cut(e.Header.Get("Content-Disposition"), ";")
	name, _ := (&mail.AttachmentHeader{Header: e.Header}).Filename()
	inline := !strings.EqualFold(strings.TrimSpace(disp), "attachment") && name == ""
	switch {
	case inline && mt == "text/plain" && !b.hasText:
		b.hasText = true
		if b.p.ReadBody > manifest.BodyNone {
			limit := MaxBodyBytes
			if b.p.ReadBody == manifest.BodyPreview {
				limit = sdk.PreviewBytes
			}
			b.text, b.textCut = readText(e.Body, limit)
		}
	case inline && mt == "text/html" && !b.hasHTML:
		b.hasHTML = true
		if b.p.ReadBody > manifest.BodyNone {
			b.html, b.htmlCut = readText(e.Body, MaxBodyBytes)
		}
	case b.p.ReadAttachments > manifest.AttachmentsNone:
		b.attachment(e, mt, params, name, newErr)
	}
}

// attachment lists e, with its content as far as the permissions allow.
func (b *builder) attachment(e *message.Entity, mt string, params map[string]string, name string, newErr error) {
	text := strings.HasPrefix(mt, "text/")
	a := sdk.Attachment{Index: len(b.attachments) + 1, Filename: cleanName(name), ContentType: contentType(mt, params, newErr)}
	var limit int64 = -1 // no content
	switch {
	case b.p.ReadAttachments == manifest.AttachmentsFull:
		limit = b.budget
	case b.p.ReadAttachments == manifest.AttachmentsPreview && text:
		limit = sdk.PreviewBytes
	}
	var content []byte
	if limit > 0 {
		content, _ = io.ReadAll(io.LimitReader(e.Body, limit))
	}
	rest, _ := io.Copy(io.Discard, e.Body) // a broken encoding ends the part
	a.Size = int64(len(content)) + rest
	if limit >= 0 && rest > 0 {
		a.Truncated = true
		if text {
			content = trimPartialRune(content)
		}
	}
	if len(content) > 0 {
		a.Content = content
	}
	if b.p.ReadAttachments == manifest.AttachmentsFull {
		b.budget -= int64(len(content))
	}
	b.attachments = append(b.attachments, a)
}

// body is what the permissions allow of the text and HTML bodies found.
func (b *builder) body() *sdk.Body {
	text, truncated := b.text, b.textCut
	if !b.hasText && b.hasHTML {
		text, truncated = htmlText(b.html), b.htmlCut
	}
	limit := MaxBodyBytes
	if b.p.ReadBody == manifest.BodyPreview {
		limit = sdk.PreviewBytes
	}
	text, cutText := cut(text, limit)
	body := &sdk.Body{Text: text, Truncated: truncated || cutText}
	if b.p.ReadBody == manifest.BodyFull {
		body.HTML = b.html
		body.Truncated = body.Truncated || b.htmlCut
	}
	return body
}

// contentType is mt with, for text, the charset the content is in: UTF-8
// when go-message converted it.
func contentType(mt string, params map[string]string, newErr error) string {
	p := map[string]string{}
	if cs := params["charset"]; cs != "" && strings.HasPrefix(mt, "text/") {
		p["charset"] = cs
		if !message.IsUnknownCharset(newErr) {
			p["charset"] = "utf-8"
		}
	}
	if ct := mime.FormatMediaType(mt, p); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

// cleanName is a file name as declared, valid UTF-8 without control
// characters, at most maxFilenameBytes.
func cleanName(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, "\uFFFD"))
	name, _ = cut(strings.TrimSpace(name), maxFilenameBytes)
	return name
}

// readText reads at most limit bytes of r as UTF-8 text, invalid bytes
// replaced, and reports whether there was more.
func readText(r io.Reader, limit int) (string, bool) {
	b, _ := io.ReadAll(io.LimitReader(r, int64(limit)+1)) // keep what a broken part gave
	more := len(b) > limit
	if more {
		b = trimPartialRune(b[:limit])
	}
	s, cutAgain := cut(strings.ToValidUTF8(string(b), "\uFFFD"), limit)
	return s, more || cutAgain
}

// cut shortens the valid UTF-8 string s to at most n bytes on a character
// boundary, and reports whether it did.
func cut(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

// trimPartialRune drops an incomplete UTF-8 sequence from the end of b.
func trimPartialRune(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}
