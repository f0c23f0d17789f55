package mailstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Folder returns the user's named folder; ErrNoFolder when there is none.
func (s *Store) Folder(ctx context.Context, userID int64, name string) (Folder, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+folderColumns+` FROM folders f WHERE f.user_id = $1 AND f.name = $2`, userID, FolderName(name))
	if err != nil {
		return Folder{}, fmt.Errorf("mailstore: folder: %w", err)
	}
	f, err := pgx.CollectExactlyOneRow(rows, scanFolder)
	if errors.Is(err, pgx.ErrNoRows) {
		return Folder{}, ErrNoFolder
	}
	if err != nil {
		return Folder{}, fmt.Errorf("mailstore: folder: %w", err)
	}
	return f, nil
}

// SpecialFolder returns the id of the user's folder with the special use
// special (inbox, sent, junk or trash); ErrNoFolder when there is none.
func (s *Store) SpecialFolder(ctx context.Context, userID int64, special string) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT id FROM folders WHERE user_id = $1 AND special = $2`, userID, special).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNoFolder
	}
	if err != nil {
		return 0, fmt.Errorf("mailstore: folder: %w", err)
	}
	return id, nil
}

// FolderStates returns the folders with the given ids that still exist,
// by id: one query for any number of watched folders.
func (s *Store) FolderStates(ctx context.Context, ids []int64) (map[int64]Folder, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+folderColumns+` FROM folders f WHERE f.id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("mailstore: folder states: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanFolder)
	if err != nil {
		return nil, fmt.Errorf("mailstore: folder states: %w", err)
	}
	states := make(map[int64]Folder, len(list))
	for _, f := range list {
		states[f.ID] = f
	}
	return states, nil
}

// UIDs returns the UIDs of the messages in the user's folder that are not
// deleted, ascending: the folder's IMAP sequence.
func (s *Store) UIDs(ctx context.Context, userID, folderID int64) ([]uint32, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT uid FROM messages
		WHERE folder_id = $2 AND user_id = $1 AND deleted_at IS NULL
		ORDER BY uid`, userID, folderID)
	if err != nil {
		return nil, fmt.Errorf("mailstore: uids: %w", err)
	}
	uids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	if err != nil {
		return nil, fmt.Errorf("mailstore: uids: %w", err)
	}
	return uids, nil
}

// ByUID returns the messages with the given UIDs in the user's folder that
// are not deleted, ascending by UID; UIDs of no such message are left out.
func (s *Store) ByUID(ctx context.Context, userID, folderID int64, uids []uint32) ([]Message, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+messageColumns+` FROM messages m JOIN folders f ON f.id = m.folder_id
		WHERE m.folder_id = $2 AND m.user_id = $1 AND m.uid = ANY($3) AND m.deleted_at IS NULL
		ORDER BY m.uid`, userID, folderID, uids)
	if err != nil {
		return nil, fmt.Errorf("mailstore: by uid: %w", err)
	}
	msgs, err := pgx.CollectRows(rows, scanMessage())
	if err != nil {
		return nil, fmt.Errorf("mailstore: by uid: %w", err)
	}
	return msgs, nil
}
