package smtpload

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxLine is the length of a filler line without its CRLF (RFC 5322
// recommends at most 78).
const maxLine = 76

// ParseSize parses a positive byte count with an optional k (1024) or
// M (1024*1024) suffix, e.g. "512", "10k", "1M".
func ParseSize(s string) (int, error) {
	mult := 1
	num := s
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, num = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, num = 1<<20, s[:len(s)-1]
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 || n > (1<<31-1)/mult {
		return 0, fmt.Errorf("invalid size %q: want a positive number of bytes, optionally with a k or M suffix", s)
	}
	return n * mult, nil
}

// builder makes the test messages of one run. Every message has the same
// header length (the message number is zero-padded), so one body fits all.
type builder struct {
	from, to string // header values
	domain   string // for Message-ID
	run      string // random id of the run, for Message-ID
	width    int    // digits of the message number
	body     []byte
}

func newBuilder(from string, to []string, messages, size int) (*builder, error) {
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	b := &builder{
		from:  from,
		to:    strings.Join(to, ",\r\n "),
		run:   hex.EncodeToString(id[:]),
		width: len(strconv.Itoa(messages)),
	}
	b.domain = "localhost"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i < len(from)-1 {
		b.domain = from[i+1:]
	}
	hdr := len(b.header(1, time.Now()))
	if size < hdr+2 {
		return nil, fmt.Errorf("size %d is too small: the headers alone take %d bytes", size, hdr+2)
	}
	b.body = filler(size - hdr)
	return b, nil
}

// header returns the header of message n, including the blank line that
// ends it.
func (b *builder) header(n int, now time.Time) []byte {
	return fmt.Appendf(nil, "Date: %s\r\n"+
		"From: %s\r\n"+
		"To: %s\r\n"+
		"Subject: mairust bench message %0*d\r\n"+
		"Message-ID: <%s.%0*d@%s>\r\n"+
		"MIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n"+
		"\r\n",
		now.Format(time.RFC1123Z), b.from, b.to,
		b.width, n, b.run, b.width, n, b.domain)
}

// filler returns n (at least 2) bytes of CRLF-terminated lines of at most
// maxLine characters.
func filler(n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	lines := (n + maxLine + 1) / (maxLine + 2)
	chars := n - 2*lines
	out := make([]byte, 0, n)
	for range lines {
		k := min(chars, maxLine)
		chars -= k
		for i := range k {
			out = append(out, alphabet[i%len(alphabet)])
		}
		out = append(out, '\r', '\n')
	}
	return out
}
