// Package mailparse extracts the header fields MaiRust stores with each
// message (From, To, Cc, Subject, Message-ID, Date), decoding RFC 2047
// encoded words in every charset golang.org/x/text knows, ISO-2022-JP,
// Shift_JIS and EUC-JP included.
//
// Parsing is tolerant: a malformed field degrades to its decoded raw text
// (or to the zero time for Date) instead of failing the message. Only a
// header section beyond the limits, or a read error, is an error.
package mailparse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // charsets for encoded words
	"github.com/emersion/go-message/mail"
)

// Limits on the input and on each result field.
const (
	MaxHeaderBytes    = 1 << 20 // header section, without the blank line ending it
	MaxFields         = 1000
	MaxSubjectBytes   = 998
	MaxMessageIDBytes = 998
	MaxAddressBytes   = 8 << 10 // each of From, To and Cc
)

// Errors for a header section beyond the limits.
var (
	ErrHeaderTooLarge = fmt.Errorf("mailparse: header section larger than %d bytes", MaxHeaderBytes)
	ErrTooManyFields  = fmt.Errorf("mailparse: more than %d header fields", MaxFields)
)

// Header is the decoded summary of a message header. The strings are valid
// UTF-8 without control characters (CR, LF, NUL, ...), trimmed and capped.
type Header struct {
	From      string    // e.g. 山田 太郎 <taro@example.jp>; comma-separated if several
	To        string    // like From
	Cc        string    // like From
	Subject   string    // encoded words decoded
	MessageID string    // without the angle brackets
	Date      time.Time // zero when missing or unparsable
}

// wanted are the fields read, by lower-case name.
var wanted = map[string]bool{"from": true, "to": true, "cc": true, "subject": true, "message-id": true, "date": true}

// ParseHeader reads the header section of the message in r, up to the blank
// line ending it (or the end of input), and decodes the wanted fields; the
// first occurrence of a field counts. r may be read beyond the header unless
// it is a *bufio.Reader, which is left positioned at the body.
func ParseHeader(r io.Reader) (Header, error) {
	raw, err := readHeader(bufio.NewReader(r))
	if err != nil {
		return Header{}, err
	}
	fields, err := splitFields(raw)
	if err != nil {
		return Header{}, err
	}
	var h mail.Header
	for k, v := range fields {
		h.Set(k, v)
	}
	var out Header
	out.From = addressList(&h, "From")
	out.To = addressList(&h, "To")
	out.Cc = addressList(&h, "Cc")
	subject, _ := h.Subject() // the raw text when it cannot be decoded
	out.Subject = clean(subject, MaxSubjectBytes)
	out.MessageID = clean(messageID(fields["message-id"]), MaxMessageIDBytes)
	if d, err := h.Date(); err == nil {
		out.Date = d
	}
	return out, nil
}

// readHeader returns the header section without its terminating blank line.
func readHeader(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	start := 0 // where the current line begins in buf
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > MaxHeaderBytes+2 {
			return nil, ErrHeaderTooLarge
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) > MaxHeaderBytes {
				return nil, ErrHeaderTooLarge
			}
			return buf, nil
		case err != nil:
			return nil, fmt.Errorf("mailparse: read header: %w", err)
		}
		if line := buf[start:]; len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			if start > MaxHeaderBytes {
				return nil, ErrHeaderTooLarge
			}
			return buf[:start], nil
		}
		start = len(buf)
	}
}

// splitFields unfolds the header section and returns the first value of
// each wanted field by lower-case name. Lines that are not fields (no
// colon, a bad name, a continuation with nothing to continue) are skipped.
func splitFields(raw []byte) (map[string]string, error) {
	fields := map[string]string{}
	var (
		n       int
		current string // wanted field being collected, "" for none
		value   strings.Builder
	)
	flush := func() {
		if current != "" {
			fields[current] = value.String()
			current = ""
		}
	}
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if current != "" {
				appendFolded(&value, line)
			}
			continue
		}
		flush()
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if !validName(name) {
			continue
		}
		if n++; n > MaxFields {
			return nil, ErrTooManyFields
		}
		key := strings.ToLower(string(name))
		if _, seen := fields[key]; wanted[key] && !seen {
			current = key
			value.Reset()
			appendFolded(&value, line[colon+1:])
		}
	}
	flush()
	return fields, nil
}

// appendFolded adds one physical line of a field value, joining folded
// lines with a single space.
func appendFolded(b *strings.Builder, line []byte) {
	line = bytes.Trim(line, " \t")
	if len(line) == 0 {
		return
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.Write(line)
}

// validName reports whether name is a field name: printable ASCII but colon.
func validName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

// addressList renders the named field as "Name <addr>, addr, ...", or as
// its decoded text when it does not parse as an address list.
func addressList(h *mail.Header, key string) string {
	addrs, err := h.AddressList(key)
	if err != nil || len(addrs) == 0 {
		text, _ := h.Text(key) // the raw text when it cannot be decoded
		return clean(text, MaxAddressBytes)
	}
	var b strings.Builder
	for i, a := range addrs {
		if i > 0 {
			b.WriteString(", ")
		}
		if a.Name == "" {
			b.WriteString(a.Address)
			continue
		}
		b.WriteString(displayName(a.Name))
		b.WriteString(" <")
		b.WriteString(a.Address)
		b.WriteString(">")
	}
	return clean(b.String(), MaxAddressBytes)
}

// displayName decodes encoded words left in a quoted name (a common
// non-conformance) and quotes the name when it could be misread in a list.
func displayName(name string) string {
	if strings.Contains(name, "=?") {
		dec := mime.WordDecoder{CharsetReader: message.CharsetReader}
		if s, err := dec.DecodeHeader(name); err == nil {
			name = s
		}
	}
	if !strings.ContainsAny(name, `,;:<>@"\`) {
		return name
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
}

// messageID returns the identifier inside the angle brackets of a
// Message-ID value, or the trimmed value when it has none.
func messageID(v string) string {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "<") {
		if i := strings.IndexByte(v, '>'); i > 0 {
			return v[1:i]
		}
	}
	return v
}

// clean makes s valid UTF-8 with every control character turned into a
// space, trims it and caps it at max bytes without splitting a rune.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > max {
		n := max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = strings.TrimRightFunc(s[:n], func(r rune) bool { return r == ' ' })
	}
	return s
}
