package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // Japanese and other charsets for bodies
	"github.com/emersion/go-message/mail"
	"github.com/microcosm-cc/bluemonday"

	"github.com/mairust/mairust/agent/mailstore"
)

type folderJSON struct {
	Name    string `json:"name"`
	Special string `json:"special,omitempty"`
	Total   int64  `json:"total"`
}

// folderList is the caller's folders.
type folderList struct {
	Folders []folderJSON `json:"folders"`
}

func (s *Server) listFolders(w http.ResponseWriter, r *http.Request) error {
	folders, err := s.store.Folders(r.Context(), caller(r).ID)
	if err != nil {
		return err
	}
	list := make([]folderJSON, len(folders))
	for i, f := range folders {
		list[i] = folderJSON{Name: f.Name, Special: f.Special, Total: f.Total}
	}
	writeJSON(w, http.StatusOK, folderList{list})
	return nil
}

// messageJSON is a message as listed.
type messageJSON struct {
	ID         int64      `json:"id"`
	Folder     string     `json:"folder"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	Cc         string     `json:"cc"`
	Subject    string     `json:"subject"`
	Date       *time.Time `json:"date"` // null when the message has no valid Date
	ReceivedAt time.Time  `json:"received_at"`
	Size       int64      `json:"size"`
	Spam       spamJSON   `json:"spam"`
}

// spamJSON is the spam verdict given at delivery.
type spamJSON struct {
	Scanned bool               `json:"scanned"`
	Score   *float64           `json:"score"` // null when not scanned
	Action  string             `json:"action,omitempty"`
	Symbols map[string]float64 `json:"symbols,omitempty"`
}

func summary(m mailstore.Message) messageJSON {
	j := messageJSON{ID: m.ID, Folder: m.Folder, From: m.From, To: m.To, Cc: m.Cc, Subject: m.Subject, ReceivedAt: m.ReceivedAt, Size: m.Size,
		Spam: spamJSON{Scanned: m.Spam.Scanned, Score: m.Spam.Score, Action: m.Spam.Action, Symbols: m.Spam.Symbols}}
	if !m.Date.IsZero() {
		j.Date = &m.Date
	}
	return j
}

// Page sizes of GET /api/v1/messages.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

type messagePage struct {
	Messages   []messageJSON `json:"messages"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

// listMessages pages through a folder newest first. There is no offset:
// the cursor resumes below the last UID seen, so a page never repeats or
// skips a message when mail arrives or is deleted between requests.
func (s *Server) listMessages(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for _, name := range slices.Sorted(maps.Keys(q)) {
		switch name {
		case "folder", "limit", "cursor":
		case "offset":
			return problem(http.StatusBadRequest, "offset", "offset is not supported; pass the previous page's next_cursor as cursor")
		default:
			return problem(http.StatusBadRequest, name, "unknown parameter %q; use folder, limit and cursor", name)
		}
	}
	folder := mailstore.FolderName(q.Get("folder"))
	if folder == "" {
		folder = "INBOX"
	}
	limit, err := queryInt(r, "limit", defaultPageSize, 1, maxPageSize)
	if err != nil {
		return err
	}
	user := caller(r).ID
	var after uint32
	if c := q.Get("cursor"); c != "" {
		var ok bool
		if after, ok = s.keys.Load().readCursor(c, user, folder); !ok {
			return problem(http.StatusBadRequest, "cursor", "the cursor is not one this server issued for this folder; start again without it")
		}
	}
	msgs, more, err := s.store.List(r.Context(), user, folder, int(limit), after)
	if errors.Is(err, mailstore.ErrNoFolder) {
		return problem(http.StatusNotFound, "folder", "you have no folder %q; GET /api/v1/folders lists yours", folder)
	}
	if err != nil {
		return err
	}
	page := messagePage{Messages: make([]messageJSON, len(msgs))}
	for i, m := range msgs {
		page.Messages[i] = summary(m)
	}
	if more {
		page.NextCursor = s.keys.Load().cursor(msgs[len(msgs)-1].UID, user, folder)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// A cursor is base64url of a version byte, the last UID of the page (8
// bytes, big-endian) and the first cursorMACSize bytes of an HMAC-SHA256
// over version, UID, user id and folder name, so a client can neither
// forge one nor use it for another user or folder. The MAC key is derived
// from the access-token signing secret (api.jwt_key, or the key kept in
// data_dir/api-jwt.key), not from a per-process random key: cursors stay
// valid across restarts, and after a key rotation for as long as the old
// key is listed in api.jwt_previous_keys.
const (
	cursorVersion = 2 // 1 held a message id: refused since pages go by UID
	cursorMACSize = 16
	cursorSize    = 1 + 8 + cursorMACSize
)

// cursorMAC authenticates a cursor's version and UID for user and folder
// with the key derived from secret.
func cursorMAC(secret []byte, uid uint32, user int64, folder string) []byte {
	derive := hmac.New(sha256.New, secret)
	derive.Write([]byte("mairust api list cursor"))
	mac := hmac.New(sha256.New, derive.Sum(nil))
	var b [17]byte
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:], uint64(uid))
	binary.BigEndian.PutUint64(b[9:], uint64(user))
	mac.Write(b[:])
	mac.Write([]byte(folder))
	return mac.Sum(nil)[:cursorMACSize]
}

// cursor returns the cursor resuming below uid, signed with the current key.
func (k *keyring) cursor(uid uint32, user int64, folder string) string {
	b := make([]byte, 0, cursorSize)
	b = append(b, cursorVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(uid))
	b = append(b, cursorMAC(k.current.Secret, uid, user, folder)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// readCursor returns the UID in c when a key of the ring made c for user
// and folder.
func (k *keyring) readCursor(c string, user int64, folder string) (uint32, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) != cursorSize || b[0] != cursorVersion {
		return 0, false
	}
	n := binary.BigEndian.Uint64(b[1:9])
	if n == 0 || n > math.MaxUint32 {
		return 0, false
	}
	uid := uint32(n)
	for _, secret := range k.byID {
		if hmac.Equal(b[9:], cursorMAC(secret, uid, user, folder)) {
			return uid, true
		}
	}
	return 0, false
}

// ownMessage returns the caller's message named by the path's id.
func (s *Server) ownMessage(r *http.Request) (mailstore.Message, error) {
	id, err := pathID(r)
	if err != nil {
		return mailstore.Message{}, err
	}
	m, err := s.store.Get(r.Context(), caller(r).ID, id)
	if errors.Is(err, mailstore.ErrNotFound) {
		return m, noMessage(id)
	}
	return m, err
}

func noMessage(id int64) error {
	return problem(http.StatusNotFound, "id", "you have no message %d", id)
}

// openMessage returns the caller's message and its stored bytes; close them.
func (s *Server) openMessage(r *http.Request) (mailstore.Message, io.ReadCloser, error) {
	m, err := s.ownMessage(r)
	if err != nil {
		return m, nil, err
	}
	body, err := s.blobs.Get(r.Context(), m.BlobKey)
	if err != nil {
		return m, nil, fmt.Errorf("message %d: %w", m.ID, err)
	}
	return m, body, nil
}

func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	err = s.store.Delete(r.Context(), caller(r).ID, id)
	if errors.Is(err, mailstore.ErrNotFound) {
		return noMessage(id)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type moveRequest struct {
	Folder string `json:"folder"`
}

func (s *Server) moveMessage(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var req moveRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Folder == "" {
		return problem(http.StatusBadRequest, "folder", "folder is required: the name of one of your folders")
	}
	m, err := s.store.Move(r.Context(), caller(r).ID, id, req.Folder)
	switch {
	case errors.Is(err, mailstore.ErrNoFolder):
		return problem(http.StatusNotFound, "folder", "you have no folder %q; GET /api/v1/folders lists yours", req.Folder)
	case errors.Is(err, mailstore.ErrNotFound):
		return noMessage(id)
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, summary(m))
	return nil
}

// rawMessage streams the stored message as it was received.
func (s *Server) rawMessage(w http.ResponseWriter, r *http.Request) error {
	m, body, err := s.openMessage(r)
	if err != nil {
		return err
	}
	defer body.Close()
	h := w.Header()
	h.Set("Content-Type", "message/rfc822")
	h.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	h.Set("Content-Disposition", contentDisposition(fmt.Sprintf("message-%d.eml", m.ID)))
	downloadHeaders(h)
	if _, err := io.Copy(w, body); err != nil {
		s.log.Warn("raw message cut short", "message", m.ID, "error", err)
	}
	return nil
}

// downloadHeaders keep a browser from sniffing or running what it is sent.
func downloadHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
}

// Limits of the message view and of attachment downloads. A message with
// more MIME parts (multiparts included) or deeper multipart nesting is
// refused with 422; it can still be fetched raw. The text body, the HTML
// body (before sanitizing) and the header list are cut at their caps, and
// the view then says "truncated": true.
const (
	maxMIMEParts    = 200
	maxMIMEDepth    = 16
	maxBodyText     = 1 << 20
	maxHeaderFields = 200
)

// newHTMLPolicy sanitizes HTML bodies: bluemonday's UGC policy (no script,
// style, form, iframe or event handler; rel=nofollow on links). An <img>
// keeps its src when it is a cid: reference to a part of the same message
// (matched by content_id in the attachment list) and, only with remote set,
// when it is an absolute http(s) URL; any other src (scheme-relative,
// relative, or remote without remote set) is emptied, so opening a message
// neither tells its sender it was read nor makes the browser call this
// server until the reader asks for the images.
func newHTMLPolicy(remote bool) *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.AllowURLSchemes("cid")
	p.RewriteSrc(func(u *url.URL) {
		keep := u.Scheme == "cid" || (remote && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "")
		if !keep {
			*u = url.URL{}
		}
	})
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.RequireNoReferrerOnFullyQualifiedLinks(true)
	return p
}

// htmlPolicies are the policies without and with remote images.
var htmlPolicies = [2]*bluemonday.Policy{newHTMLPolicy(false), newHTMLPolicy(true)}

// headerField is a top-level header field: its name in canonical form
// (Mime-Version), its value unfolded with encoded words decoded.
type headerField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type attachmentJSON struct {
	Index       int    `json:"index"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	ContentID   string `json:"content_id,omitempty"`
	Size        int64  `json:"size"`
}

type messageView struct {
	messageJSON
	MessageID   string           `json:"message_id"`
	Headers     []headerField    `json:"headers"`
	Text        string           `json:"text"`
	HTML        string           `json:"html"`
	Truncated   bool             `json:"truncated,omitempty"`
	Attachments []attachmentJSON `json:"attachments"`
}

// getMessage answers a message's headers, bodies and attachment list.
func (s *Server) getMessage(w http.ResponseWriter, r *http.Request) error {
	images := r.URL.Query().Get("images")
	if images != "" && images != "remote" {
		return problem(http.StatusBadRequest, "images", "images must be remote (to keep remote image addresses) or absent")
	}
	policy := htmlPolicies[0]
	if images == "remote" {
		policy = htmlPolicies[1]
	}
	m, body, err := s.openMessage(r)
	if err != nil {
		return err
	}
	defer body.Close()
	v := messageView{messageJSON: summary(m), MessageID: m.MessageID, Headers: []headerField{}, Attachments: []attachmentJSON{}}
	err = walkMessage(m.ID, body, func(h message.Header) {
		fields := h.Fields()
		for fields.Next() {
			if len(v.Headers) == maxHeaderFields {
				v.Truncated = true
				break
			}
			value, err := fields.Text()
			if err != nil {
				value = fields.Value()
			}
			v.Headers = append(v.Headers, headerField{Name: fields.Key(), Value: value})
		}
	}, func(p part) error {
		switch p.role {
		case textBody, htmlBody:
			b, err := io.ReadAll(io.LimitReader(p.entity.Body, maxBodyText+1))
			if err != nil {
				return err
			}
			if len(b) > maxBodyText {
				b = cutUTF8(b, maxBodyText)
				v.Truncated = true
			}
			if p.role == textBody {
				v.Text = string(b)
			} else {
				v.HTML = string(policy.SanitizeBytes(b))
			}
		default:
			n, err := io.Copy(io.Discard, p.entity.Body)
			if err != nil {
				return err
			}
			v.Attachments = append(v.Attachments, attachmentJSON{Index: p.index, Filename: p.filename(), ContentType: p.contentType(), ContentID: p.contentID(), Size: n})
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// errServed stops the walk once the wanted attachment has been sent.
var errServed = errors.New("attachment served")

// getAttachment streams one attachment, decoded, as a download.
func (s *Server) getAttachment(w http.ResponseWriter, r *http.Request) error {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 {
		return problem(http.StatusBadRequest, "n", "the attachment index must be a whole number from 0")
	}
	m, body, err := s.openMessage(r)
	if err != nil {
		return err
	}
	defer body.Close()
	err = walkMessage(m.ID, body, nil, func(p part) error {
		if p.role != attachment || p.index != n {
			return nil
		}
		h := w.Header()
		h.Set("Content-Type", p.contentType())
		h.Set("Content-Disposition", contentDisposition(p.filename()))
		downloadHeaders(h)
		if _, err := io.Copy(w, p.entity.Body); err != nil {
			s.log.Warn("attachment cut short", "message", m.ID, "attachment", n, "error", err)
		}
		return errServed
	})
	if errors.Is(err, errServed) {
		return nil
	}
	if err != nil {
		return err
	}
	return problem(http.StatusNotFound, "n", "message %d has no attachment %d", m.ID, n)
}

// partRole is what the API makes of a MIME leaf.
type partRole int

const (
	attachment partRole = iota
	textBody
	htmlBody
)

// part is one leaf of a message's MIME tree. The first text/plain and the
// first text/html leaf that are neither marked attachment nor named are the
// bodies; every other leaf (message/rfc822 included, not descended into) is
// an attachment, numbered from 0 in the order of the message.
type part struct {
	entity    *message.Entity
	mediaType string
	params    map[string]string
	converted bool   // the body was converted from its declared charset to UTF-8
	name      string // the file name the part declares, if any
	role      partRole
	index     int // among the attachments
}

// filename is the part's file name, made safe to offer for saving.
func (p part) filename() string {
	return safeFilename(p.name, fmt.Sprintf("attachment-%d", p.index))
}

// contentType is the part's media type, with the charset the decoded body
// is in for text.
func (p part) contentType() string {
	params := map[string]string{}
	if cs := p.params["charset"]; cs != "" && strings.HasPrefix(p.mediaType, "text/") {
		params["charset"] = cs
		if p.converted {
			params["charset"] = "utf-8"
		}
	}
	if ct := mime.FormatMediaType(p.mediaType, params); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

// contentID is the part's Content-ID without angle brackets.
func (p part) contentID() string {
	return strings.Trim(strings.TrimSpace(p.entity.Header.Get("Content-ID")), "<>")
}

// walkMessage parses the message in r within the MIME limits, calls head
// (when not nil) with the top-level header and leaf with each leaf part in
// order; leaf must read a part's body before returning, if at all. A
// message beyond the limits or that is not MIME is a 422 problem; errors
// of r or of the callbacks are returned as they are.
func walkMessage(id int64, r io.Reader, head func(message.Header), leaf func(part) error) error {
	src := &readErr{r: r}
	root, err := message.Read(src)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return unreadable(id, src, err)
	}
	rootConverted := !message.IsUnknownCharset(err)
	if head != nil {
		head(root.Header)
	}
	var text, html bool
	parts, attachments := 0, 0
	err = root.Walk(func(path []int, e *message.Entity, partErr error) error {
		if parts++; parts > maxMIMEParts || len(path) > maxMIMEDepth {
			return problem(http.StatusUnprocessableEntity, "id", "message %d has more than %d MIME parts or is nested deeper than %d; fetch it from /api/v1/messages/%d/raw",
				id, maxMIMEParts, maxMIMEDepth, id)
		}
		mt, params, ctErr := e.Header.ContentType()
		if strings.HasPrefix(mt, "multipart/") {
			return nil // go-message descends into it, as Walk does
		}
		switch {
		case mt == "":
			mt = "text/plain" // RFC 2045 section 5.2
		case ctErr != nil:
			mt = "application/octet-stream"
		}
		p := part{entity: e, mediaType: mt, params: params, converted: !message.IsUnknownCharset(partErr) && (path != nil || rootConverted)}
		disp, _, _ := e.Header.ContentDisposition()
		ah := mail.AttachmentHeader{Header: e.Header}
		p.name, _ = ah.Filename()
		plain := disp != "attachment" && p.name == ""
		switch {
		case plain && mt == "text/plain" && !text:
			p.role, text = textBody, true
		case plain && mt == "text/html" && !html:
			p.role, html = htmlBody, true
		default:
			p.role, p.index = attachment, attachments
			attachments++
		}
		return leaf(p)
	})
	var prob *Problem
	if err == nil || errors.As(err, &prob) || errors.Is(err, errServed) {
		return err
	}
	return unreadable(id, src, err)
}

// unreadable reports a failed parse: the reader's own error when it failed,
// else a 422 saying the message is not valid MIME.
func unreadable(id int64, src *readErr, err error) error {
	if src.err != nil {
		return src.err
	}
	return problem(http.StatusUnprocessableEntity, "id", "message %d is not valid MIME (%v); fetch it from /api/v1/messages/%d/raw", id, err, id)
}

// readErr remembers the error of the reader it wraps, telling a broken
// store apart from a broken message.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// cutUTF8 shortens b to at most n bytes without splitting a character.
func cutUTF8(b []byte, n int) []byte {
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return b[:n]
}

// maxFilename bounds a download's file name, in bytes.
const maxFilename = 200

// safeFilename keeps the last path element of name without control
// characters or leading dots, capped at maxFilename; fallback if nothing
// is left.
func safeFilename(name, fallback string) string {
	name = name[strings.LastIndexAny(name, `/\`)+1:]
	name = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, ""))
	name = strings.TrimLeft(strings.TrimSpace(name), ".")
	if len(name) > maxFilename {
		name = string(cutUTF8([]byte(name), maxFilename))
	}
	if name == "" {
		return fallback
	}
	return name
}

// contentDisposition offers name for saving (RFC 6266): an ASCII-only
// filename for old clients and the exact name as filename* (RFC 8187).
func contentDisposition(name string) string {
	var ascii, ext bytes.Buffer
	for _, r := range name {
		if r < 0x80 && r != '"' && r != '\\' {
			ascii.WriteRune(r)
		} else {
			ascii.WriteByte('_')
		}
	}
	for _, c := range []byte(name) {
		if isAttrChar(c) {
			ext.WriteByte(c)
		} else {
			fmt.Fprintf(&ext, "%%%02X", c)
		}
	}
	return fmt.Sprintf(`attachment; filename="%s"; filename*=UTF-8''%s`, ascii.String(), ext.String())
}

// isAttrChar reports whether c may stand unencoded in an RFC 8187 value.
func isAttrChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}
