package mailstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Errors of the owner-scoped reads: another user's message or folder is
// reported exactly like one that does not exist.
var (
	ErrNotFound = errors.New("no such message")
	ErrNoFolder = errors.New("no such folder")
)

// Folder is one of a user's folders with the number of messages in it and
// its IMAP numbers.
type Folder struct {
	ID          int64
	Name        string
	Special     string // inbox, junk, sent, trash, or "" for a folder of the user's own
	Total       int64  // messages not deleted
	UIDValidity uint32
	UIDNext     uint32 // the UID the next message in the folder gets
}

// folderColumns are the columns scanFolder reads, for folders f.
const folderColumns = `f.id, f.name, coalesce(f.special, ''), f.total, f.uid_validity, f.uid_next`

func scanFolder(row pgx.CollectableRow) (Folder, error) {
	var f Folder
	err := row.Scan(&f.ID, &f.Name, &f.Special, &f.Total, &f.UIDValidity, &f.UIDNext)
	return f, err
}

// Message is a stored message's metadata row.
type Message struct {
	ID         int64
	UID        uint32 // IMAP UID in Folder
	Folder     string
	BlobKey    string
	Size       int64
	MailFrom   string // the envelope sender
	RcptTo     string // the envelope recipient this copy went to
	From       string
	To         string
	Cc         string
	Subject    string
	MessageID  string
	Date       time.Time // zero when the message has no valid Date
	ReceivedAt time.Time
	Spam       SpamVerdict
}

// SpamVerdict is what the spam scan said when the message was delivered.
type SpamVerdict struct {
	Scanned bool               // false: delivered unscanned (scanner down)
	Score   *float64           // nil when not scanned
	Action  string             // rspamd's name: "no action", "add header", ...
	Symbols map[string]float64 // rule name to its score
}

// FolderName returns the stored name for name: INBOX is matched without
// regard to case (RFC 3501 section 5.1), every other name exactly.
func FolderName(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

// Folders returns the user's folders, special ones first, with their
// message counts (deleted messages not counted; kept by triggers).
func (s *Store) Folders(ctx context.Context, userID int64) ([]Folder, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+folderColumns+` FROM folders f WHERE f.user_id = $1
		ORDER BY array_position(ARRAY['inbox', 'sent', 'junk', 'trash'], f.special) NULLS LAST, f.name`, userID)
	if err != nil {
		return nil, fmt.Errorf("mailstore: folders: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanFolder)
	if err != nil {
		return nil, fmt.Errorf("mailstore: folders: %w", err)
	}
	return list, nil
}

// messageColumns are the columns scanMessage reads, for messages m joined
// with their folder f.
const messageColumns = `m.id, m.uid, f.name, m.blob_key, m.size, m.mail_from, m.rcpt_to, m.from_addr, m.to_addrs, m.cc_addrs,
	m.subject, m.message_id, m.date, m.received_at, m.scanned, m.spam_score, m.spam_action, m.spam_symbols`

// scanMessage reads a row of messageColumns followed by the columns extra
// points to.
func scanMessage(extra ...any) pgx.RowToFunc[Message] {
	return func(row pgx.CollectableRow) (Message, error) {
		var m Message
		var date *time.Time
		err := row.Scan(append([]any{&m.ID, &m.UID, &m.Folder, &m.BlobKey, &m.Size, &m.MailFrom, &m.RcptTo, &m.From, &m.To, &m.Cc, &m.Subject, &m.MessageID, &date, &m.ReceivedAt,
			&m.Spam.Scanned, &m.Spam.Score, &m.Spam.Action, &m.Spam.Symbols}, extra...)...)
		if date != nil {
			m.Date = *date
		}
		return m, err
	}
}

// List returns up to limit of the user's messages in the named folder,
// newest (highest UID: the last to arrive in the folder) first, with UIDs
// below beforeUID (0: from the newest). more reports whether another page
// follows. Paging by UID stays stable while messages arrive or go: each
// page resumes below the last UID seen.
//
// It walks the messages_folder_uid index backwards and reads limit+1 rows.
// The folder is bounded by two row comparisons rather than "folder_id =
// f.id AND uid < $3" on purpose: with an equality the planner may read the
// folder's index forwards and sort; ordered by (folder_id, uid) without an
// equality, only the index gives the order without a sort.
func (s *Store) List(ctx context.Context, userID int64, folder string, limit int, beforeUID uint32) (msgs []Message, more bool, err error) {
	before := int64(beforeUID)
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+messageColumns+`
		FROM folders f
		CROSS JOIN LATERAL (
			SELECT * FROM messages m
			WHERE (m.folder_id, m.uid) > (f.id, 0) AND (m.folder_id, m.uid) < (f.id, $3)
				AND m.user_id = f.user_id AND m.deleted_at IS NULL
			ORDER BY m.folder_id DESC, m.uid DESC LIMIT $4) m
		WHERE f.user_id = $1 AND f.name = $2
		ORDER BY m.uid DESC`, userID, FolderName(folder), before, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("mailstore: list: %w", err)
	}
	msgs, err = pgx.CollectRows(rows, scanMessage())
	if err != nil {
		return nil, false, fmt.Errorf("mailstore: list: %w", err)
	}
	if len(msgs) == 0 {
		return nil, false, s.folderExists(ctx, userID, folder)
	}
	if len(msgs) > limit {
		return msgs[:limit], true, nil
	}
	return msgs, false, nil
}

// folderExists returns ErrNoFolder unless the user has the named folder.
func (s *Store) folderExists(ctx context.Context, userID int64, folder string) error {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM folders WHERE user_id = $1 AND name = $2)`, userID, FolderName(folder)).Scan(&ok)
	switch {
	case err != nil:
		return fmt.Errorf("mailstore: folder: %w", err)
	case !ok:
		return ErrNoFolder
	}
	return nil
}

// Get returns the user's message id unless it is deleted; ErrNotFound
// otherwise.
func (s *Store) Get(ctx context.Context, userID, id int64) (Message, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+messageColumns+` FROM messages m JOIN folders f ON f.id = m.folder_id
		WHERE m.id = $1 AND m.user_id = $2 AND m.deleted_at IS NULL`, id, userID)
	if err != nil {
		return Message{}, fmt.Errorf("mailstore: get: %w", err)
	}
	m, err := pgx.CollectExactlyOneRow(rows, scanMessage())
	if errors.Is(err, pgx.ErrNoRows) {
		return Message{}, ErrNotFound
	}
	if err != nil {
		return Message{}, fmt.Errorf("mailstore: get: %w", err)
	}
	return m, nil
}

// JunkMoveHook is called by Move, inside its transaction, when a message of
// user goes into the Junk folder from another (spam true) or out of Junk
// into another (spam false). Its error rolls the move back.
type JunkMoveHook func(ctx context.Context, tx pgx.Tx, user int64, m Message, spam bool) error

// OnJunkMove sets the hook Move calls; set it before the store is used.
func (s *Store) OnJunkMove(hook JunkMoveHook) { s.junkMove = hook }

// Move puts the user's message id into the user's named folder and returns
// it: ErrNoFolder when the user has no such folder, ErrNotFound when the
// message is not the user's or is deleted. It runs in one transaction with
// the hook set by OnJunkMove.
func (s *Store) Move(ctx context.Context, userID, id int64, folder string) (Message, error) {
	var m Message
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		m, err = s.MoveTx(ctx, tx, userID, id, folder)
		return err
	})
	switch {
	case errors.Is(err, ErrNoFolder), errors.Is(err, ErrNotFound):
		return Message{}, err
	case err != nil:
		return Message{}, fmt.Errorf("mailstore: move: %w", err)
	}
	return m, nil
}

// MoveTx is Move inside the caller's transaction.
func (s *Store) MoveTx(ctx context.Context, tx pgx.Tx, userID, id int64, folder string) (Message, error) {
	// old locks the row, so that wasJunk is the folder this move leaves.
	// It reads messages alone: a move of the same message committed while
	// this one waited for the lock is then seen (with a join, the re-check
	// would drop the row and report it missing).
	var wasJunk, isJunk bool
	rows, err := tx.Query(ctx, `
		WITH f AS (SELECT id, name, special FROM folders WHERE user_id = $1 AND name = $3),
		old AS (
			SELECT m.id, m.folder_id FROM messages m
			WHERE m.id = $2 AND m.user_id = $1 AND m.deleted_at IS NULL
			FOR UPDATE),
		cur AS (SELECT c.special FROM folders c, old WHERE c.id = old.folder_id),
		m AS (
			UPDATE messages m SET folder_id = f.id FROM f, old
			WHERE m.id = old.id
			RETURNING m.*)
		SELECT `+messageColumns+`, (SELECT special FROM cur) IS NOT DISTINCT FROM 'junk', f.special IS NOT DISTINCT FROM 'junk'
		FROM m, f, old`, userID, id, FolderName(folder))
	if err != nil {
		return Message{}, err
	}
	m, err := pgx.CollectExactlyOneRow(rows, scanMessage(&wasJunk, &isJunk))
	if errors.Is(err, pgx.ErrNoRows) {
		if err := s.folderExists(ctx, userID, folder); err != nil {
			return Message{}, err
		}
		return Message{}, ErrNotFound
	}
	if err != nil || wasJunk == isJunk || s.junkMove == nil {
		return m, err
	}
	return m, s.junkMove(ctx, tx, userID, m, isJunk)
}

// Owned is a message with its owner.
type Owned struct {
	Message
	UserID  int64
	Address string
}

// WithOwners returns those of the messages ids that are not deleted,
// whoever owns them, with their owners: for the agent's own jobs, never
// for a user's request. A message gone is left out.
func (s *Store) WithOwners(ctx context.Context, ids []int64) (map[int64]Owned, error) {
	// The ids are looked up first, by the primary key: with the deleted_at
	// filter beside them the planner may AND in the partial index of the
	// live messages, which grows with the mailbox.
	rows, err := s.pool.Query(ctx, `
		WITH m AS MATERIALIZED (SELECT * FROM messages WHERE id = ANY($1))
		SELECT `+messageColumns+`, u.id, u.address
		FROM m JOIN folders f ON f.id = m.folder_id JOIN mail_users u ON u.id = m.user_id
		WHERE m.deleted_at IS NULL`, ids)
	if err != nil {
		return nil, fmt.Errorf("mailstore: get: %w", err)
	}
	defer rows.Close()
	found := make(map[int64]Owned, len(ids))
	for rows.Next() {
		var o Owned
		if o.Message, err = scanMessage(&o.UserID, &o.Address)(rows); err != nil {
			return nil, fmt.Errorf("mailstore: get: %w", err)
		}
		found[o.ID] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mailstore: get: %w", err)
	}
	return found, nil
}
