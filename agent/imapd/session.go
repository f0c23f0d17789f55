package imapd

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/internal/clientip"
)

// delim separates levels of folder names in LIST.
const delim = '/'

// session is one connection's state.
type session struct {
	srv    *Server
	ip     string
	ctx    context.Context // ends when the connection closes
	cancel context.CancelFunc
	user   accounts.User // zero until signed in
	sel    *selected     // nil outside the selected state
}

// selected is the selected folder as this session last told the client:
// uids[i] is the UID of sequence number i+1.
type selected struct {
	folder mailstore.Folder
	uids   []uint32
	watch  *watch
	gen    uint64 // the watcher's generation the uids were read at
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{srv: s, ip: clientip.Of(c.NetConn().RemoteAddr()), ctx: ctx, cancel: cancel}, nil, nil
}

func (s *session) Close() error {
	s.Unselect()
	s.cancel()
	return nil
}

// Login checks the address and password against the mail users, at most
// imap.logins_per_ip_per_minute times a minute from one address.
func (s *session) Login(username, password string) error {
	if ok, wait := s.srv.logins.Allow(s.ip); !ok {
		logins.WithLabelValues("limited").Inc()
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: fmt.Sprintf("Too many sign-in attempts from your address; try again in %.0f seconds", wait.Seconds()+1)}
	}
	u, err := s.srv.accounts.Authenticate(s.ctx, username, password)
	switch {
	case errors.Is(err, accounts.ErrBadCredentials):
		logins.WithLabelValues("failed").Inc()
		s.event(u.TenantID, username, false)
		return imapserver.ErrAuthFailed
	case err != nil:
		return err
	}
	logins.WithLabelValues("ok").Inc()
	s.event(u.TenantID, u.Address, true)
	s.user = u
	return nil
}

// event records a sign-in for the admin log; a failure to record is logged.
func (s *session) event(tenant, actor string, ok bool) {
	if err := s.srv.accounts.RecordLogin(s.ctx, tenant, actor, ok, s.ip, "imap"); err != nil {
		s.srv.log.Warn("could not record event", "kind", "auth.login", "error", err)
	}
}

// readOnly is the answer to every command that would change mail.
func readOnly(command string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
		Text: command + " refused: this mailbox is read-only over IMAP; use the web UI or the REST API to change mail"}
}

func noFolder(name string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent,
		Text: fmt.Sprintf("You have no folder %q; LIST shows yours", name)}
}

func (s *session) Create(string, *imap.CreateOptions) error { return readOnly("CREATE") }
func (s *session) Delete(string) error                      { return readOnly("DELETE") }
func (s *session) Rename(string, string, *imap.RenameOptions) error {
	return readOnly("RENAME")
}
func (s *session) Unsubscribe(string) error { return readOnly("UNSUBSCRIBE") }
func (s *session) Append(string, imap.LiteralReader, *imap.AppendOptions) (*imap.AppendData, error) {
	return nil, readOnly("APPEND")
}
func (s *session) Store(*imapserver.FetchWriter, imap.NumSet, *imap.StoreFlags, *imap.StoreOptions) error {
	return readOnly("STORE")
}
func (s *session) Copy(imap.NumSet, string) (*imap.CopyData, error) { return nil, readOnly("COPY") }

// Move makes MOVE answer NO [CANNOT] too; without it go-imap would answer
// BAD for an unknown command.
func (s *session) Move(*imapserver.MoveWriter, imap.NumSet, string) error {
	return readOnly("MOVE")
}

// Expunge refuses EXPUNGE. CLOSE calls it too, with a writer that goes
// nowhere (the zero ExpungeWriter): CLOSE must succeed, and there is
// nothing to expunge since no message can be marked \Deleted.
func (s *session) Expunge(w *imapserver.ExpungeWriter, _ *imap.UIDSet) error {
	if *w == (imapserver.ExpungeWriter{}) {
		return nil
	}
	return readOnly("EXPUNGE")
}

// Subscribe succeeds without doing anything: every folder is subscribed.
func (s *session) Subscribe(string) error { return nil }

// List writes the user's folders that match one of patterns.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 1 && patterns[0] == "" {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	folders, err := s.srv.store.Folders(s.ctx, s.user.ID)
	if err != nil {
		return err
	}
	for _, f := range folders {
		for _, p := range patterns {
			if !imapserver.MatchList(f.Name, delim, ref, p) {
				continue
			}
			data := &imap.ListData{Attrs: attrs(f, options), Delim: delim, Mailbox: f.Name}
			if options != nil && options.ReturnStatus != nil {
				data.Status = status(f, options.ReturnStatus)
			}
			if err := w.WriteList(data); err != nil {
				return err
			}
			break
		}
	}
	return nil
}

// attrs are a folder's LIST attributes: no children, its special use, and
// subscribed (every folder is) when asked.
func attrs(f mailstore.Folder, options *imap.ListOptions) []imap.MailboxAttr {
	a := []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}
	switch f.Special {
	case "junk":
		a = append(a, imap.MailboxAttrJunk)
	case "sent":
		a = append(a, imap.MailboxAttrSent)
	case "trash":
		a = append(a, imap.MailboxAttrTrash)
	}
	if options != nil && (options.SelectSubscribed || options.ReturnSubscribed) {
		a = append(a, imap.MailboxAttrSubscribed)
	}
	return a
}

// Status answers STATUS from the folder's counters. No message carries
// \Seen (flags are not kept), so all are unseen.
func (s *session) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	f, err := s.srv.store.Folder(s.ctx, s.user.ID, mailbox)
	if errors.Is(err, mailstore.ErrNoFolder) {
		return nil, noFolder(mailbox)
	}
	if err != nil {
		return nil, err
	}
	return status(f, options), nil
}

func status(f mailstore.Folder, options *imap.StatusOptions) *imap.StatusData {
	data := &imap.StatusData{Mailbox: f.Name}
	total := uint32(f.Total)
	var zero uint32
	if options.NumMessages {
		data.NumMessages = &total
	}
	if options.NumUnseen {
		data.NumUnseen = &total
	}
	if options.NumRecent {
		data.NumRecent = &zero
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(f.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = f.UIDValidity
	}
	return data
}

// Select opens a folder. SELECT and EXAMINE alike give a read-only view.
func (s *session) Select(mailbox string, _ *imap.SelectOptions) (*imap.SelectData, error) {
	s.Unselect()
	f, err := s.srv.store.Folder(s.ctx, s.user.ID, mailbox)
	if errors.Is(err, mailstore.ErrNoFolder) {
		return nil, noFolder(mailbox)
	}
	if err != nil {
		return nil, err
	}
	// Watch first: a change after the generation read here is seen by the
	// next poll even when the UIDs below already include it.
	w := s.srv.watch.add(f.ID)
	gen := w.generation()
	uids, err := s.srv.store.UIDs(s.ctx, s.user.ID, f.ID)
	if err != nil {
		w.close()
		return nil, err
	}
	if n := len(uids); n > 0 && uids[n-1] >= f.UIDNext {
		f.UIDNext = uids[n-1] + 1
	}
	s.sel = &selected{folder: f, uids: uids, watch: w, gen: gen}
	return &imap.SelectData{
		Flags:          []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft},
		PermanentFlags: []imap.Flag{},
		NumMessages:    uint32(len(uids)),
		UIDNext:        imap.UID(f.UIDNext),
		UIDValidity:    f.UIDValidity,
	}, nil
}

func (s *session) Unselect() error {
	if s.sel != nil {
		s.sel.watch.close()
		s.sel = nil
	}
	return nil
}

// Poll tells the client what changed in the selected folder since it was
// last told.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	return s.update(w, allowExpunge)
}

// Idle reports changes as the watcher sees them until the client ends IDLE.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.sel == nil {
		<-stop
		return nil
	}
	for {
		if err := s.update(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-s.sel.watch.changed():
		}
	}
}

// update re-reads the folder's UIDs when the watcher saw it change and
// writes EXPUNGE for messages gone (when allowed) and EXISTS for the count.
// When expunges may not be sent, the gone messages keep their sequence
// numbers until a later poll.
func (s *session) update(w *imapserver.UpdateWriter, allowExpunge bool) error {
	sel := s.sel
	gen := sel.watch.generation()
	if gen == sel.gen {
		return nil
	}
	uids, err := s.srv.store.UIDs(s.ctx, s.user.ID, sel.folder.ID)
	if err != nil {
		return err
	}
	gone := missing(sel.uids, uids)
	if len(gone) > 0 && !allowExpunge {
		// Only the new messages now; the rest at the next poll.
		var last uint32
		if n := len(sel.uids); n > 0 {
			last = sel.uids[n-1]
		}
		i := len(uids)
		for i > 0 && uids[i-1] > last {
			i--
		}
		if i == len(uids) {
			return nil
		}
		sel.uids = append(sel.uids, uids[i:]...)
		return w.WriteNumMessages(uint32(len(sel.uids)))
	}
	// From the highest sequence number down, so that each number sent is
	// still right when the client reads it.
	for i := len(gone) - 1; i >= 0; i-- {
		if err := w.WriteExpunge(gone[i] + 1); err != nil {
			return err
		}
	}
	shown := len(sel.uids) - len(gone)
	sel.uids, sel.gen = uids, gen
	if len(uids) != shown {
		return w.WriteNumMessages(uint32(len(uids)))
	}
	return nil
}

// missing returns the indexes in old (ascending) of the UIDs that are not in
// cur; both are sorted.
func missing(old, cur []uint32) []uint32 {
	var gone []uint32
	j := 0
	for i, u := range old {
		for j < len(cur) && cur[j] < u {
			j++
		}
		if j == len(cur) || cur[j] != u {
			gone = append(gone, uint32(i))
		}
	}
	return gone
}
