package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var testEvent = Event{
	Version: EventVersion, Hook: HookPostReceive, PluginID: "spamtag", EventID: "ev-1", Attempt: 1,
	Message: Message{ID: 42, User: "u@example.com", Folder: "INBOX", Size: 100},
}

// tagger tags every message with its folder.
func tagger(_ context.Context, ev Event) (Result, error) {
	if ev.Message.Folder == "fail" {
		return Result{}, errors.New("cannot tag")
	}
	return Result{Tags: []string{ev.Message.Folder}, Metadata: map[string]string{"event": ev.EventID}}, nil
}

func TestHTTPHandler(t *testing.T) {
	srv := httptest.NewServer(httpHandler("spamtag", testSecret, tagger, func() time.Time { return testNow }))
	defer srv.Close()

	post := func(ev Event, signedAt time.Time, secret []byte) (*http.Response, string) {
		t.Helper()
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		Sign(req, "spamtag", secret, body, signedAt)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		text, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(text)
	}

	resp, text := post(testEvent, testNow, testSecret)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("valid request: %s %q", resp.Status, text)
	}
	res, err := DecodeResult(strings.NewReader(text), 0)
	if err != nil || len(res.Tags) != 1 || res.Tags[0] != "INBOX" || res.Metadata["event"] != "ev-1" {
		t.Errorf("result %q: %+v, %v", text, res, err)
	}

	if resp, text := post(testEvent, testNow, []byte("guess")); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(text, "bad signature") {
		t.Errorf("wrong secret: %s %q", resp.Status, text)
	}
	if resp, text := post(testEvent, testNow.Add(-time.Hour), testSecret); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(text, "clocks") {
		t.Errorf("stale: %s %q", resp.Status, text)
	}
	fail := testEvent
	fail.Message.Folder = "fail"
	if resp, text := post(fail, testNow, testSecret); resp.StatusCode != http.StatusInternalServerError || !strings.Contains(text, "cannot tag") {
		t.Errorf("fn fails: %s %q", resp.Status, text)
	}
	invalid := testEvent
	invalid.Message.Folder = "bad\ntag"
	if resp, text := post(invalid, testNow, testSecret); resp.StatusCode != http.StatusInternalServerError || !strings.Contains(text, "tags[0]") {
		t.Errorf("invalid result: %s %q", resp.Status, text)
	}
	v2 := testEvent
	v2.Version = 2
	if resp, text := post(v2, testNow, testSecret); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("version 2: %s %q", resp.Status, text)
	}
	other := testEvent
	other.PluginID = "other"
	if resp, text := post(other, testNow, testSecret); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("event for another plugin: %s %q", resp.Status, text)
	}

	// Signed garbage is a bad request.
	body := []byte(`{"version":`)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	Sign(req, "spamtag", testSecret, body, testNow)
	if resp, err := srv.Client().Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad JSON: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Unsigned is unauthorized; GET is not allowed.
	if resp, err := srv.Client().Post(srv.URL, "application/json", bytes.NewReader(body)); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := srv.Client().Get(srv.URL); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func TestHTTPHandlerTooLarge(t *testing.T) {
	h := httpHandler("spamtag", testSecret, tagger, func() time.Time { return testNow })
	req := httptest.NewRequest(http.MethodPost, "/", io.MultiReader(strings.NewReader(`{"x":"`), strings.NewReader(strings.Repeat("a", MaxEventBytes))))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("got %d %q", w.Code, w.Body)
	}
}

func TestRunStdin(t *testing.T) {
	in, err := json.Marshal(testEvent)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var got Event
	err = RunStdin(context.Background(), bytes.NewReader(in), &out, func(ctx context.Context, ev Event) (Result, error) {
		got = ev
		return tagger(ctx, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.EventID != "ev-1" || got.Message.ID != 42 {
		t.Errorf("fn saw %+v", got)
	}
	if want := `{"tags":["INBOX"],"metadata":{"event":"ev-1"}}` + "\n"; out.String() != want {
		t.Errorf("wrote %q, want %q", out.String(), want)
	}

	fail := testEvent
	fail.Message.Folder = "fail"
	in, _ = json.Marshal(fail)
	out.Reset()
	if err := RunStdin(context.Background(), bytes.NewReader(in), &out, tagger); err == nil || err.Error() != "cannot tag" || out.Len() != 0 {
		t.Errorf("fn fails: %v, wrote %q", err, out.String())
	}
	for _, in := range []string{``, `{`, `[]`, `{"version":2}`} {
		if err := RunStdin(context.Background(), strings.NewReader(in), &out, tagger); err == nil || out.Len() != 0 {
			t.Errorf("%q: %v, wrote %q", in, err, out.String())
		}
	}
	huge := io.MultiReader(strings.NewReader(`{"x":"`), strings.NewReader(strings.Repeat("a", MaxEventBytes)))
	if err := RunStdin(context.Background(), huge, &out, tagger); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge event: %v", err)
	}
}
