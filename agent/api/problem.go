package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// maxBodyBytes bounds every JSON request body.
const maxBodyBytes = 64 << 10

// Problem is an RFC 9457 problem document. Field names the request field at
// fault, when there is one.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Field  string `json:"field,omitempty"`
}

func (p *Problem) Error() string { return p.Detail }

// problem builds a Problem; its type names the status.
func problem(status int, field, format string, args ...any) *Problem {
	return &Problem{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: fmt.Sprintf(format, args...),
		Field:  field,
	}
}

// writeProblem answers with err as problem JSON; an error that is not a
// *Problem is logged and answered 500 without its text.
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	var p *Problem
	if !errors.As(err, &p) {
		s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		p = problem(http.StatusInternalServerError, "", "internal error; the agent's log has the details")
		if isTransient(err) {
			p = problem(http.StatusServiceUnavailable, "", "the database is busy; retry shortly")
			w.Header().Set("Retry-After", "1")
		}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	json.NewEncoder(w).Encode(p)
}

// isTransient reports errors a retry may cure: a deadline, or a database
// error of class 40 (serialization, deadlock), 53 (insufficient resources)
// or 57 (operator intervention, e.g. a server shutting down).
func isTransient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		class := pgErr.Code[:2]
		return class == "40" || class == "53" || class == "57"
	}
	return errors.Is(err, context.DeadlineExceeded)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body of at most maxBodyBytes into v, refusing unknown
// fields, and names the field at fault when a value has the wrong type.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeUpTo(w, r, v, maxBodyBytes)
}

// decodeUpTo is decode with a body of at most limit bytes.
func decodeUpTo(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var typeErr *json.UnmarshalTypeError
	var maxErr *http.MaxBytesError
	switch {
	case err == nil:
		if dec.More() {
			return problem(http.StatusBadRequest, "", "the body must hold one JSON object")
		}
		return nil
	case errors.As(err, &maxErr):
		return problem(http.StatusRequestEntityTooLarge, "", "the body is larger than %d bytes", limit)
	case errors.As(err, &typeErr):
		return problem(http.StatusBadRequest, typeErr.Field, "%s must be a JSON %s", typeErr.Field, typeErr.Type.Kind())
	case errors.Is(err, io.EOF):
		return problem(http.StatusBadRequest, "", "the body is empty; send a JSON object")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return problem(http.StatusBadRequest, field, "unknown field %q", field)
	default:
		return problem(http.StatusBadRequest, "", "the body is not valid JSON: %v", err)
	}
}
