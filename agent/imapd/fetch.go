package imapd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/mairust/mairust/agent/mailstore"
)

// Messages are read from the database in chunks: many when only small
// items are fetched, few when parts of bodies are held in memory.
const (
	fetchChunk        = 1000
	fetchChunkContent = 8
)

// positions returns the 0-based positions in sel.uids named by set,
// ascending and without repeats. "*" is the last message (sequence set) or
// the highest UID (UID set); a UID range past the highest UID still names
// the last message, as RFC 9051 asks.
func (sel *selected) positions(set imap.NumSet) []int {
	n := len(sel.uids)
	var out []int
	switch set := set.(type) {
	case imap.SeqSet:
		for _, r := range set {
			lo, hi := seqBounds(r, n)
			for i := lo; i <= hi; i++ {
				out = append(out, i-1)
			}
		}
	case imap.UIDSet:
		for _, r := range set {
			lo, hi := sel.uidBounds(r)
			i := sort.Search(n, func(i int) bool { return sel.uids[i] >= lo })
			for ; i < n && sel.uids[i] <= hi; i++ {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// seqBounds resolves a sequence range against n messages to 1-based bounds
// clipped to the mailbox (lo > hi when nothing is left).
func seqBounds(r imap.SeqRange, n int) (lo, hi int) {
	l, h := resolve(r.Start, r.Stop, uint32(n))
	return max(int(l), 1), min(int(h), n)
}

// uidBounds resolves "*" in a UID range to the highest UID.
func (sel *selected) uidBounds(r imap.UIDRange) (lo, hi uint32) {
	var top uint32
	if n := len(sel.uids); n > 0 {
		top = sel.uids[n-1]
	}
	return resolve(uint32(r.Start), uint32(r.Stop), top)
}

// resolve puts star in place of "*" (0) in a range and orders its ends.
func resolve(lo, hi, star uint32) (uint32, uint32) {
	if lo == 0 {
		lo = star
	}
	if hi == 0 {
		hi = star
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi
}

// Fetch writes the asked items of the messages in set. Flags are always
// empty: they are not kept.
func (s *session) Fetch(w *imapserver.FetchWriter, set imap.NumSet, options *imap.FetchOptions) error {
	sel := s.sel
	pos := sel.positions(set)
	chunk := fetchChunk
	if len(options.BodySection) > 0 || len(options.BinarySection) > 0 {
		chunk = fetchChunkContent
	}
	for len(pos) > 0 {
		part := pos[:min(len(pos), chunk)]
		pos = pos[len(part):]
		uids := make([]uint32, len(part))
		for i, p := range part {
			uids[i] = sel.uids[p]
		}
		msgs, err := s.srv.store.ByUID(s.ctx, s.user.ID, sel.folder.ID, uids)
		if err != nil {
			return err
		}
		if err := s.fetchMessages(w, part, msgs, options); err != nil {
			return err
		}
	}
	return nil
}

// parsed is what fetchMessages reads from one message's content before
// writing it.
type parsed struct {
	envelope *imap.Envelope
	body     imap.BodyStructure
	sections [][]byte // by index of options.BodySection; nil for whole-message sections, streamed instead
	binary   [][]byte
	sizes    []uint32
	err      error
}

// fetchMessages writes msgs (ascending UIDs, a subset of those at part:
// messages deleted since the client was told are missing) in order, their
// content parsed by a few goroutines at once.
func (s *session) fetchMessages(w *imapserver.FetchWriter, part []int, msgs []mailstore.Message, options *imap.FetchOptions) error {
	results := make([]parsed, len(msgs))
	if needsContent(options) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(len(msgs), 2*runtime.GOMAXPROCS(0)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < len(msgs); i = int(next.Add(1) - 1) {
					results[i] = s.parse(msgs[i], options)
				}
			}()
		}
		wg.Wait()
	}
	j := 0
	for i, m := range msgs {
		for s.sel.uids[part[j]] != m.UID {
			j++
		}
		if results[i].err != nil {
			return results[i].err
		}
		if err := s.writeMessage(w.CreateMessage(uint32(part[j]+1)), m, &results[i], options); err != nil {
			return err
		}
	}
	return nil
}

// needsContent says whether the items asked need the message's content
// beyond whole-message sections, which are streamed.
func needsContent(o *imap.FetchOptions) bool { return o.Envelope || needsWhole(o) }

// needsWhole says whether the items asked need the whole message in
// memory: anything but an envelope (the header alone) and whole-message
// sections (streamed).
func needsWhole(o *imap.FetchOptions) bool {
	return o.BodyStructure != nil || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 ||
		slices.ContainsFunc(o.BodySection, func(b *imap.FetchItemBodySection) bool { return !wholeMessage(b) })
}

// wholeMessage is BODY[] (or BODY.PEEK[], RFC822), maybe partial.
func wholeMessage(b *imap.FetchItemBodySection) bool {
	return b.Specifier == imap.PartSpecifierNone && len(b.Part) == 0
}

// parse reads what options need from m's content: the header alone for an
// envelope, the whole message for anything else. Content the MIME parser
// chokes on (a panic) fails the FETCH rather than the agent.
func (s *session) parse(m mailstore.Message, o *imap.FetchOptions) (p parsed) {
	defer func() {
		if v := recover(); v != nil {
			s.srv.log.Error("imap: parsing a stored message failed", "message_id", m.ID, "panic", v)
			p = parsed{err: fmt.Errorf("imap: message %d cannot be parsed", m.ID)}
		}
	}()
	r, err := s.srv.blobs.Get(s.ctx, m.BlobKey)
	if err != nil {
		return parsed{err: fmt.Errorf("imap: message %d: %w", m.ID, err)}
	}
	defer r.Close()
	if !needsWhole(o) {
		return parsed{envelope: envelope(bufio.NewReader(r))}
	}
	data, err := io.ReadAll(io.LimitReader(r, m.Size+1))
	if err != nil {
		return parsed{err: fmt.Errorf("imap: message %d: %w", m.ID, err)}
	}
	return extract(data, o)
}

// envelope reads a header from r; a message without a readable header has
// an empty envelope.
func envelope(r *bufio.Reader) *imap.Envelope {
	h, err := textproto.ReadHeader(r)
	if err != nil {
		return &imap.Envelope{}
	}
	return imapserver.ExtractEnvelope(h)
}

// extract computes the content items of o from a whole message.
func extract(data []byte, o *imap.FetchOptions) (p parsed) {
	if o.Envelope {
		p.envelope = envelope(bufio.NewReader(bytes.NewReader(data)))
	}
	if o.BodyStructure != nil {
		p.body = imapserver.ExtractBodyStructure(bytes.NewReader(data))
	}
	p.sections = make([][]byte, len(o.BodySection))
	for i, b := range o.BodySection {
		p.sections[i] = imapserver.ExtractBodySection(bytes.NewReader(data), b)
	}
	for _, b := range o.BinarySection {
		p.binary = append(p.binary, imapserver.ExtractBinarySection(bytes.NewReader(data), b))
	}
	for _, b := range o.BinarySectionSize {
		p.sizes = append(p.sizes, imapserver.ExtractBinarySectionSize(bytes.NewReader(data), b))
	}
	return p
}

// writeMessage writes one message's FETCH response.
func (s *session) writeMessage(w *imapserver.FetchResponseWriter, m mailstore.Message, p *parsed, o *imap.FetchOptions) error {
	w.WriteUID(imap.UID(m.UID))
	if o.Flags {
		w.WriteFlags(nil)
	}
	if o.InternalDate {
		w.WriteInternalDate(m.ReceivedAt)
	}
	if o.RFC822Size {
		w.WriteRFC822Size(m.Size)
	}
	if o.Envelope {
		w.WriteEnvelope(p.envelope)
	}
	if o.BodyStructure != nil {
		w.WriteBodyStructure(p.body)
	}
	for i, b := range o.BodySection {
		var err error
		if p.sections != nil { // the content was read: every section is there
			err = writeLiteral(w.WriteBodySection(b, int64(len(p.sections[i]))), bytes.NewReader(p.sections[i]))
		} else {
			err = s.streamMessage(w, m, b)
		}
		if err != nil {
			return err
		}
	}
	for i, b := range o.BinarySection {
		if err := writeLiteral(w.WriteBinarySection(b, int64(len(p.binary[i]))), bytes.NewReader(p.binary[i])); err != nil {
			return err
		}
	}
	for i, b := range o.BinarySectionSize {
		w.WriteBinarySectionSize(b, p.sizes[i])
	}
	return w.Close()
}

// streamMessage writes BODY[] (or a partial range of it) straight from the
// blob store, without holding the message in memory.
func (s *session) streamMessage(w *imapserver.FetchResponseWriter, m mailstore.Message, b *imap.FetchItemBodySection) error {
	r, err := s.srv.blobs.Get(s.ctx, m.BlobKey)
	if err != nil {
		return fmt.Errorf("imap: message %d: %w", m.ID, err)
	}
	defer r.Close()
	start, size := int64(0), m.Size
	if b.Partial != nil {
		start = min(b.Partial.Offset, m.Size)
		size = min(b.Partial.Size, m.Size-start)
		if _, err := io.CopyN(io.Discard, r, start); err != nil {
			return fmt.Errorf("imap: message %d: %w", m.ID, err)
		}
	}
	return writeLiteral(w.WriteBodySection(b, size), io.LimitReader(r, size))
}

// writeLiteral copies r into a literal of the size it was opened with.
func writeLiteral(wc io.WriteCloser, r io.Reader) error {
	_, err := io.Copy(wc, r)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}
