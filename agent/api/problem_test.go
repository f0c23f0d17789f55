package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestIsTransient(t *testing.T) {
	for err, want := range map[error]bool{
		&pgconn.PgError{Code: "40P01"}:                            true,  // deadlock
		fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "53300"}): true,  // too many connections
		&pgconn.PgError{Code: "57P01"}:                            true,  // admin shutdown
		&pgconn.PgError{Code: "23505"}:                            false, // unique violation
		context.DeadlineExceeded:                                  true,
		errors.New("SQLSTATE 40001 in a message"):                 false,
	} {
		if got := isTransient(err); got != want {
			t.Errorf("isTransient(%v) = %v, want %v", err, got, want)
		}
	}
}
