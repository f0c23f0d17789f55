package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsonLines decodes every line written to buf.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimRight(buf.String(), "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestJSONKeys(t *testing.T) {
	var buf bytes.Buffer
	lv := new(slog.LevelVar)
	log := New(&buf, "json", lv)

	log.Info("plain line")
	log.With("component", "smtp", "request_id", "r-42").Warn("with attributes")
	log.Error("failure")

	lines := jsonLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), buf.String())
	}

	if got, want := keys(lines[0]), []string{"level", "message", "timestamp"}; !slices.Equal(got, want) {
		t.Errorf("plain line keys = %v, want %v", got, want)
	}
	if got, want := keys(lines[1]), []string{"component", "level", "message", "request_id", "timestamp"}; !slices.Equal(got, want) {
		t.Errorf("line with attributes keys = %v, want %v", got, want)
	}

	for i, want := range []struct{ level, message string }{
		{"info", "plain line"},
		{"warn", "with attributes"},
		{"error", "failure"},
	} {
		if lines[i]["level"] != want.level {
			t.Errorf("line %d level = %v, want %q", i, lines[i]["level"], want.level)
		}
		if lines[i]["message"] != want.message {
			t.Errorf("line %d message = %v, want %q", i, lines[i]["message"], want.message)
		}
		ts, ok := lines[i]["timestamp"].(string)
		if !ok {
			t.Errorf("line %d timestamp = %v, want a string", i, lines[i]["timestamp"])
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("line %d timestamp %q is not RFC 3339: %v", i, ts, err)
		}
	}
	if lines[1]["component"] != "smtp" || lines[1]["request_id"] != "r-42" {
		t.Errorf("attributes = component %v, request_id %v; want smtp, r-42", lines[1]["component"], lines[1]["request_id"])
	}
}

// Keys inside a group are left alone: only the top-level built-ins are renamed.
func TestJSONGroupKeysUntouched(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "json", new(slog.LevelVar))
	log.Info("grouped", slog.Group("g", "msg", "inner", "time", "t", "level", "L"))
	lines := jsonLines(t, &buf)
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1", len(lines))
	}
	g, ok := lines[0]["g"].(map[string]any)
	if !ok {
		t.Fatalf("group g missing: %v", lines[0])
	}
	if g["msg"] != "inner" || g["time"] != "t" || g["level"] != "L" {
		t.Errorf("group attributes were rewritten: %v", g)
	}
}

func TestTextFormat(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "text", new(slog.LevelVar))
	log.With("component", "agent").Info("hello there", "request_id", "abc")

	line := strings.TrimRight(buf.String(), "\n")
	if strings.Contains(line, "\n") || line == "" {
		t.Fatalf("want one text line, got %q", buf.String())
	}
	if strings.HasPrefix(line, "{") {
		t.Fatalf("text format wrote JSON: %q", line)
	}
	for _, want := range []string{"timestamp=", "level=info", `message="hello there"`, "component=agent", "request_id=abc"} {
		if !strings.Contains(line, want) {
			t.Errorf("text line %q lacks %q", line, want)
		}
	}
	for _, bad := range []string{"time=", "msg=", "level=INFO"} {
		if strings.Contains(line, bad) {
			t.Errorf("text line %q has unrenamed %q", line, bad)
		}
	}
}

func TestLevelVarLive(t *testing.T) {
	var buf bytes.Buffer
	lv := new(slog.LevelVar) // zero value: info
	log := New(&buf, "json", lv)

	log.Debug("hidden")
	if buf.Len() != 0 {
		t.Fatalf("debug line written at info level: %q", buf.String())
	}

	lv.Set(slog.LevelDebug)
	log.Debug("shown")
	lines := jsonLines(t, &buf)
	if len(lines) != 1 || lines[0]["message"] != "shown" || lines[0]["level"] != "debug" {
		t.Fatalf("after Set(debug) got %v, want one debug line \"shown\"", lines)
	}

	buf.Reset()
	lv.Set(slog.LevelError)
	log.Warn("dropped")
	log.Error("kept")
	lines = jsonLines(t, &buf)
	if len(lines) != 1 || lines[0]["message"] != "kept" {
		t.Fatalf("at error level got %v, want only \"kept\"", lines)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"debug": slog.LevelDebug,
		"info":  slog.LevelInfo,
		"warn":  slog.LevelWarn,
		"error": slog.LevelError,
		"INFO":  slog.LevelInfo,
	} {
		got, err := ParseLevel(in)
		if err != nil {
			t.Errorf("ParseLevel(%q): %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("ParseLevel(%q) = %v, want %v", in, got, want)
		}
	}
	for _, in := range []string{"", "verbose", "trace", "warning", "fatal", "info!"} {
		if l, err := ParseLevel(in); err == nil {
			t.Errorf("ParseLevel(%q) = %v, want an error", in, l)
		} else if !strings.Contains(err.Error(), "want debug, info, warn or error") {
			t.Errorf("ParseLevel(%q) error %q does not list the valid levels", in, err)
		}
	}
}
