package imapd

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // bodies and encoded words in other charsets
	"github.com/emersion/go-message/textproto"

	"github.com/mairust/mairust/agent/mailstore"
)

// searchChunk is how many messages' metadata one query reads during SEARCH.
const searchChunk = 2000

// maxSearchText bounds the decoded text of one message that BODY and TEXT
// look through.
const maxSearchText = 4 << 20

// Search finds the messages matching criteria: dates, sizes, Subject, From,
// To and Cc from the stored metadata; other header fields and BODY/TEXT
// from the content, read only for messages the rest of the criteria leave.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, _ *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel
	var seqs imap.SeqSet
	var uids imap.UIDSet
	data := &imap.SearchData{}
	for start := 0; start < len(sel.uids); start += searchChunk {
		chunk := sel.uids[start:min(len(sel.uids), start+searchChunk)]
		msgs, err := s.srv.store.ByUID(s.ctx, s.user.ID, sel.folder.ID, chunk)
		if err != nil {
			return nil, err
		}
		j := 0
		for _, m := range msgs {
			for chunk[j] != m.UID {
				j++
			}
			seq := uint32(start + j + 1)
			c := &candidate{s: s, seq: seq, m: m}
			ok := c.match(criteria)
			if c.err != nil {
				return nil, c.err
			}
			if !ok {
				continue
			}
			num := seq
			if kind == imapserver.NumKindUID {
				num = m.UID
			}
			if data.Count == 0 {
				data.Min = num
			}
			data.Max = num
			data.Count++
			seqs.AddNum(seq)
			uids.AddNum(imap.UID(m.UID))
		}
	}
	data.All = seqs
	if kind == imapserver.NumKindUID {
		data.All = uids
	}
	return data, nil
}

// candidate is one message being matched; its content is read at most once,
// when a criterion needs it.
type candidate struct {
	s      *session
	seq    uint32
	m      mailstore.Message
	header *textproto.Header
	text   string
	read   bool
	err    error
}

// match reports whether the message meets every criterion.
func (c *candidate) match(k *imap.SearchCriteria) bool {
	for _, set := range k.SeqNum {
		if !c.s.sel.hasSeq(set, c.seq) {
			return false
		}
	}
	for _, set := range k.UID {
		if !c.s.sel.hasUID(set, c.m.UID) {
			return false
		}
	}
	if !inDays(c.m.ReceivedAt, k.Since, k.Before) {
		return false
	}
	if (!k.SentSince.IsZero() || !k.SentBefore.IsZero()) && (c.m.Date.IsZero() || !inDays(c.m.Date, k.SentSince, k.SentBefore)) {
		return false
	}
	// No message carries a flag: every flag is absent.
	if len(k.Flag) > 0 {
		return false
	}
	if k.Larger != 0 && c.m.Size <= k.Larger || k.Smaller != 0 && c.m.Size >= k.Smaller {
		return false
	}
	for _, h := range k.Header {
		if !c.hasHeader(h.Key, h.Value) {
			return false
		}
	}
	for _, b := range k.Body {
		if !c.load() || !contains(c.text, b) {
			return false
		}
	}
	for _, t := range k.Text {
		if !c.load() || !contains(c.text, t) && !c.headerContains("", t) {
			return false
		}
	}
	for i := range k.Not {
		if c.match(&k.Not[i]) {
			return false
		}
	}
	for _, or := range k.Or {
		if !c.match(&or[0]) && !c.match(&or[1]) {
			return false
		}
	}
	return true
}

// hasHeader matches a header criterion: the stored, decoded Subject, From,
// To and Cc, or any other field from the content. An empty value matches
// any message that has the field.
func (c *candidate) hasHeader(key, value string) bool {
	var stored string
	switch strings.ToLower(key) {
	case "subject":
		stored = c.m.Subject
	case "from":
		stored = c.m.From
	case "to":
		stored = c.m.To
	case "cc":
		stored = c.m.Cc
	default:
		return c.load() && c.headerContains(key, value)
	}
	if value == "" && stored == "" {
		return c.load() && c.headerContains(key, value)
	}
	return contains(stored, value)
}

// headerContains looks for value in the decoded values of the field key,
// or of every field when key is "".
func (c *candidate) headerContains(key, value string) bool {
	if c.header == nil {
		return false
	}
	fields := c.header.Fields()
	for fields.Next() {
		if key != "" && !strings.EqualFold(fields.Key(), key) {
			continue
		}
		if value == "" {
			return true
		}
		v, err := wordDecoder.DecodeHeader(fields.Value())
		if err != nil {
			v = fields.Value()
		}
		if contains(v, value) {
			return true
		}
	}
	return false
}

var wordDecoder = mime.WordDecoder{CharsetReader: message.CharsetReader}

// load reads the message's header and the decoded text of its text parts
// (at most maxSearchText bytes). It returns false when the content cannot
// be read; the error ends the search.
func (c *candidate) load() bool {
	if c.read {
		return c.err == nil
	}
	c.read = true
	r, err := c.s.srv.blobs.Get(c.s.ctx, c.m.BlobKey)
	if err != nil {
		c.err = err
		return false
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, c.m.Size+1))
	if err != nil {
		c.err = err
		return false
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(data)))
	if err == nil {
		c.header = &h
	}
	c.text = bodyText(data)
	return true
}

// bodyText returns the decoded text of a message's text/* parts; a message
// go-message cannot read is searched as raw bytes.
func bodyText(data []byte) string {
	e, err := message.Read(bytes.NewReader(data))
	if e == nil || err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return string(data)
	}
	var b strings.Builder
	walk := func(path []int, part *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return nil
		}
		mt, _, _ := part.Header.ContentType()
		if mt != "" && !strings.HasPrefix(mt, "text/") {
			return nil
		}
		io.Copy(&b, io.LimitReader(part.Body, int64(maxSearchText-b.Len())))
		return nil
	}
	if e.Walk(walk) != nil {
		return string(data)
	}
	return b.String()
}

// contains is the case-insensitive substring match SEARCH asks for.
func contains(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

// inDays reports whether t's date (UTC) is on or after since and before
// before; zero bounds are open. SEARCH compares dates, not times.
func inDays(t, since, before time.Time) bool {
	day := func(t time.Time) time.Time {
		y, m, d := t.UTC().Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	}
	if !since.IsZero() && day(t).Before(day(since)) {
		return false
	}
	if !before.IsZero() && !day(t).Before(day(before)) {
		return false
	}
	return true
}

// hasSeq reports whether sequence number seq is in set ("*" is the last).
func (sel *selected) hasSeq(set imap.SeqSet, seq uint32) bool {
	for _, r := range set {
		if lo, hi := seqBounds(r, len(sel.uids)); int(seq) >= lo && int(seq) <= hi {
			return true
		}
	}
	return false
}

// hasUID reports whether uid is in set ("*" is the highest UID).
func (sel *selected) hasUID(set imap.UIDSet, uid uint32) bool {
	for _, r := range set {
		if lo, hi := sel.uidBounds(r); uid >= lo && uid <= hi {
			return true
		}
	}
	return false
}
