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

// Folder is one of a user's folders with the number of messages in it.
type Folder struct {
	Name    string
	Special string // inbox, junk, sent, trash, or "" for a folder of the user's own
	Total   int64
}

// Message is a stored message's metadata row.
type Message struct {
	ID         int64
	Folder     string
	BlobKey    string
	Size       int64
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
// message counts (deleted messages not counted), in one query.
func (s *Store) Folders(ctx context.Context, userID int64) ([]Folder, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT f.name, coalesce(f.special, ''),
			(SELECT count(*) FROM messages m WHERE m.folder_id = f.id AND m.deleted_at IS NULL)
		FROM folders f WHERE f.user_id = $1
		ORDER BY array_position(ARRAY['inbox', 'sent', 'junk', 'trash'], f.special) NULLS LAST, f.name`, userID)
	if err != nil {
		return nil, fmt.Errorf("mailstore: folders: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Folder, error) {
		var f Folder
		err := row.Scan(&f.Name, &f.Special, &f.Total)
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("mailstore: folders: %w", err)
	}
	return list, nil
}

// messageColumns are the columns scanMessage reads, for messages m joined
// with their folder f.
const messageColumns = `m.id, f.name, m.blob_key, m.size, m.from_addr, m.to_addrs, m.cc_addrs,
	m.subject, m.message_id, m.date, m.received_at, m.scanned, m.spam_score, m.spam_action, m.spam_symbols`

// scanMessage reads a row of messageColumns followed by the columns extra
// points to.
func scanMessage(extra ...any) pgx.RowToFunc[Message] {
	return func(row pgx.CollectableRow) (Message, error) {
		var m Message
		var date *time.Time
		err := row.Scan(append([]any{&m.ID, &m.Folder, &m.BlobKey, &m.Size, &m.From, &m.To, &m.Cc, &m.Subject, &m.MessageID, &date, &m.ReceivedAt,
			&m.Spam.Scanned, &m.Spam.Score, &m.Spam.Action, &m.Spam.Symbols}, extra...)...)
		if date != nil {
			m.Date = *date
		}
		return m, err
	}
}

// List returns up to limit of the user's messages in the named folder,
// newest (highest id) first, with ids below afterID (0: from the newest).
// more reports whether another page follows. Paging by id stays stable
// while messages arrive or go: each page resumes below the last id seen.
//
// It walks the messages_folder index backwards and reads limit+1 rows. The
// folder is bounded by two row comparisons rather than "folder_id = f.id
// AND id < $3" on purpose: with an equality the planner may take a
// backward scan of the primary key filtered by folder, which reads every
// newer message of every user (an empty folder reads the whole table);
// ordered by (folder_id, id) without an equality, only messages_folder
// gives the order without a sort.
func (s *Store) List(ctx context.Context, userID int64, folder string, limit int, afterID int64) (msgs []Message, more bool, err error) {
	if afterID <= 0 {
		afterID = 1<<63 - 1
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+messageColumns+`
		FROM folders f
		CROSS JOIN LATERAL (
			SELECT * FROM messages m
			WHERE (m.folder_id, m.id) > (f.id, 0) AND (m.folder_id, m.id) < (f.id, $3)
				AND m.user_id = f.user_id AND m.deleted_at IS NULL
			ORDER BY m.folder_id DESC, m.id DESC LIMIT $4) m
		WHERE f.user_id = $1 AND f.name = $2
		ORDER BY m.id DESC`, userID, FolderName(folder), afterID, limit+1)
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
		// old locks the row, so that wasJunk is the folder this move leaves.
		var wasJunk, isJunk bool
		rows, err := tx.Query(ctx, `
			WITH f AS (SELECT id, name, special FROM folders WHERE user_id = $1 AND name = $3),
			old AS (
				SELECT m.id, cur.special FROM messages m JOIN folders cur ON cur.id = m.folder_id
				WHERE m.id = $2 AND m.user_id = $1 AND m.deleted_at IS NULL
				FOR UPDATE OF m),
			m AS (
				UPDATE messages m SET folder_id = f.id FROM f, old
				WHERE m.id = old.id
				RETURNING m.*)
			SELECT `+messageColumns+`, old.special IS NOT DISTINCT FROM 'junk', f.special IS NOT DISTINCT FROM 'junk'
			FROM m, f, old`, userID, id, FolderName(folder))
		if err != nil {
			return err
		}
		m, err = pgx.CollectExactlyOneRow(rows, scanMessage(&wasJunk, &isJunk))
		if errors.Is(err, pgx.ErrNoRows) {
			if err := s.folderExists(ctx, userID, folder); err != nil {
				return err
			}
			return ErrNotFound
		}
		if err != nil || wasJunk == isJunk || s.junkMove == nil {
			return err
		}
		return s.junkMove(ctx, tx, userID, m, isJunk)
	})
	switch {
	case errors.Is(err, ErrNoFolder), errors.Is(err, ErrNotFound):
		return Message{}, err
	case err != nil:
		return Message{}, fmt.Errorf("mailstore: move: %w", err)
	}
	return m, nil
}
