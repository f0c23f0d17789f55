package mailstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Delete marks a message deleted (logical delete): it disappears from every
// listing at once and is removed physically by Purge after the retention
// period. userID scopes the delete to the owner: ErrNotFound when the
// message is not the user's or is already deleted.
func (s *Store) Delete(ctx context.Context, userID, messageID int64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE messages SET deleted_at = now() WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL`, messageID, userID)
	if err != nil {
		return fmt.Errorf("mailstore: delete: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("mailstore: delete message %d: %w", messageID, ErrNotFound)
	}
	return nil
}

// PurgeResult counts what one cleanup run removed.
type PurgeResult struct {
	Messages, Blobs, Orphans int
}

// purgeBatch bounds the rows one statement removes.
const purgeBatch = 1000

// Purge removes, for good, messages deleted before deletedBefore, then every
// blob no message references any more, then blob objects that have no row
// and were written before orphanBefore (left by a crash between a blob write
// and its commit).
func (s *Store) Purge(ctx context.Context, deletedBefore, orphanBefore time.Time, log *slog.Logger) (PurgeResult, error) {
	var res PurgeResult
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM messages WHERE id IN (
			SELECT id FROM messages WHERE deleted_at < $1 LIMIT $2)`, deletedBefore, purgeBatch)
		if err != nil {
			return res, fmt.Errorf("mailstore: purge messages: %w", err)
		}
		res.Messages += int(tag.RowsAffected())
		if tag.RowsAffected() < purgeBatch {
			break
		}
	}
	for {
		n, err := s.collectBlobs(ctx)
		res.Blobs += n
		if err != nil {
			return res, err
		}
		if n < purgeBatch {
			break
		}
	}
	n, err := s.sweepOrphans(ctx, orphanBefore)
	res.Orphans = n
	if err != nil {
		return res, err
	}
	if res != (PurgeResult{}) {
		log.Info("cleanup removed deleted mail", "messages", res.Messages, "blobs", res.Blobs, "orphan_blobs", res.Orphans)
	}
	return res, nil
}

// collectBlobs deletes unreferenced blobs in three steps: mark their rows
// deleting (so a delivery of the same content backs off), delete the
// objects, delete the rows.
func (s *Store) collectBlobs(ctx context.Context) (int, error) {
	rows, err := s.pool.Query(ctx, `
		UPDATE blobs SET deleting = true WHERE key IN (
			SELECT b.key FROM blobs b
			WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_key = b.key)
			LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING key`, purgeBatch)
	if err != nil {
		return 0, fmt.Errorf("mailstore: mark blobs: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("mailstore: mark blobs: %w", err)
	}
	// Blobs marked by an earlier run that stopped half-way are finished too.
	rows, err = s.pool.Query(ctx, `SELECT key FROM blobs WHERE deleting AND NOT (key = ANY($1)) LIMIT $2`, keys, purgeBatch)
	if err != nil {
		return 0, fmt.Errorf("mailstore: mark blobs: %w", err)
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("mailstore: mark blobs: %w", err)
	}
	keys = append(keys, stale...)
	done := keys[:0]
	var errs []error
	for _, k := range keys {
		if err := s.blobs.Delete(ctx, k); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, k)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM blobs WHERE key = ANY($1) AND deleting`, done); err != nil {
		errs = append(errs, fmt.Errorf("mailstore: delete blob rows: %w", err))
	}
	return len(done), errors.Join(errs...)
}

// sweepOrphans removes stored objects that have no blob row and were
// written before before.
func (s *Store) sweepOrphans(ctx context.Context, before time.Time) (int, error) {
	var candidates []string
	err := s.blobs.Walk(ctx, func(key string, written time.Time) error {
		if written.Before(before) {
			candidates = append(candidates, key)
		}
		return nil
	})
	if err != nil || len(candidates) == 0 {
		return 0, err
	}
	n := 0
	for len(candidates) > 0 {
		chunk := candidates[:min(len(candidates), purgeBatch)]
		candidates = candidates[len(chunk):]
		rows, err := s.pool.Query(ctx, `SELECT k FROM unnest($1::text[]) k WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE key = k)`, chunk)
		if err != nil {
			return n, fmt.Errorf("mailstore: sweep orphans: %w", err)
		}
		orphans, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return n, fmt.Errorf("mailstore: sweep orphans: %w", err)
		}
		for _, k := range orphans {
			if err := s.blobs.Delete(ctx, k); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
