package embeddedpg

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
)

// tailLines is how many of the last output lines an error quotes.
const tailLines = 20

// logSink turns a child's output into log records, one per line, with the
// level taken from PostgreSQL's severity prefix, and keeps the last lines
// for error messages.
type logSink struct {
	logger *slog.Logger
	def    slog.Level // level of lines without a severity

	mu      sync.Mutex
	partial []byte
	prev    slog.Level // level of the last line, for DETAIL, HINT and the like
	tail    []string
}

func newLogSink(logger *slog.Logger, def slog.Level) *logSink {
	return &logSink{logger: logger, def: def, prev: def}
}

func (w *logSink) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	rest := w.partial
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		w.line(string(rest[:i]))
		rest = rest[i+1:]
	}
	w.partial = append(w.partial[:0], rest...)
	return len(p), nil
}

// flush logs an unterminated last line.
func (w *logSink) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = w.partial[:0]
	}
}

// lastLines returns the tail of the output, for an error message.
func (w *logSink) lastLines() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.tail) == 0 {
		return "(no output)"
	}
	return strings.Join(w.tail, "\n")
}

func (w *logSink) line(l string) {
	l = strings.TrimRight(l, "\r")
	if strings.TrimSpace(l) == "" {
		return
	}
	if len(w.tail) == tailLines {
		w.tail = append(w.tail[:0], w.tail[1:]...)
	}
	w.tail = append(w.tail, l)

	level, msg := w.def, strings.TrimSpace(l)
	sev, text, found := strings.Cut(l, ":  ")
	known := true
	switch {
	case !found:
		known = false
	case strings.HasPrefix(sev, "DEBUG"):
		level = slog.LevelDebug
	case sev == "LOG" || sev == "INFO" || sev == "NOTICE":
		level = slog.LevelInfo
	case sev == "WARNING" || sev == "ERROR" || sev == "FATAL":
		// ERROR and FATAL end one statement or session, which the
		// client sees and handles; they are not failures of the server.
		level = slog.LevelWarn
	case sev == "PANIC":
		level = slog.LevelError
	case sev == "DETAIL" || sev == "HINT" || sev == "CONTEXT" || sev == "STATEMENT" || sev == "QUERY" || sev == "LOCATION":
		level = w.prev
	default:
		known = false
	}
	if !known && strings.HasPrefix(l, "\t") {
		level = w.prev
	}
	w.prev = level
	if known {
		w.logger.Log(context.Background(), level, text, "severity", sev)
		return
	}
	w.logger.Log(context.Background(), level, msg)
}
