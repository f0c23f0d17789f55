package spam

import (
	"bytes"
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"
)

// field is one header field of a raw message.
type field struct {
	name       string
	colon      int // offset just past the colon
	start, end int // the whole field in the message, final line break included
}

// headerFields splits the header section of msg (RFC 5322 2.2) into fields
// and returns them with the offset of the body. Lines that are neither a
// field nor a continuation are skipped.
func headerFields(msg []byte) ([]field, int) {
	var fs []field
	for i := 0; i < len(msg); {
		next := len(msg)
		if eol := bytes.IndexByte(msg[i:], '\n'); eol >= 0 {
			next = i + eol + 1
		}
		line := msg[i:next]
		switch c := bytes.IndexByte(line, ':'); {
		case len(bytes.TrimRight(line, "\r\n")) == 0:
			return fs, next
		case (line[0] == ' ' || line[0] == '\t') && len(fs) > 0 && fs[len(fs)-1].end == i:
			fs[len(fs)-1].end = next
		case c > 0 && line[0] != ' ' && line[0] != '\t':
			fs = append(fs, field{name: string(bytes.TrimRight(line[:c], " \t")), colon: i + c + 1, start: i, end: next})
		}
		i = next
	}
	return fs, len(msg)
}

// value returns the field's unfolded value with RFC 2047 encoded words
// decoded (the raw text when they cannot be).
func (f field) value(msg []byte) string {
	raw := strings.TrimSpace(strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(string(msg[f.colon:f.end])))
	dec := mime.WordDecoder{CharsetReader: charset.Reader}
	if s, err := dec.DecodeHeader(raw); err == nil {
		return s
	}
	return raw
}
