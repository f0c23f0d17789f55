package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"golang.org/x/text/encoding/japanese"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/mailparse"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/mailstore/storetest"
	"github.com/mairust/mairust/agent/spam"
	"github.com/mairust/mairust/agent/spamlearn"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/jobs"
)

// deliver stores raw for the local address to as the SMTP server does and
// returns the new message's id.
func (e *env) deliver(to, raw string) int64 {
	e.t.Helper()
	ctx := e.t.Context()
	rcpt, err := accounts.New(e.pool).Lookup(ctx, to)
	if err != nil {
		e.t.Fatal(err)
	}
	h, err := mailparse.ParseHeader(strings.NewReader(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	ids, err := e.store.Deliver(ctx, mailstore.Delivery{MailFrom: "sender@remote.test", Recipients: []accounts.Recipient{rcpt}, Data: []byte(raw), Header: h})
	if err != nil {
		e.t.Fatal(err)
	}
	return ids[0]
}

// fetch sends a GET and returns the answer with its whole body.
func (e *env) fetch(path, token string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.http.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

// page fetches one page of a folder listing; it must answer 200.
func (e *env) page(query, token string) messagePage {
	e.t.Helper()
	var p messagePage
	if resp := e.call("GET", "/api/v1/messages?"+query, token, nil, &p); resp.StatusCode != 200 {
		e.t.Fatalf("GET /api/v1/messages?%s: %d", query, resp.StatusCode)
	}
	return p
}

// folderTotals maps the caller's folder names to their message counts.
func (e *env) folderTotals(token string) map[string]int64 {
	e.t.Helper()
	var list struct{ Folders []folderJSON }
	if resp := e.call("GET", "/api/v1/folders", token, nil, &list); resp.StatusCode != 200 {
		e.t.Fatalf("GET /api/v1/folders: %d", resp.StatusCode)
	}
	totals := map[string]int64{}
	for _, f := range list.Folders {
		totals[f.Name] = f.Total
	}
	return totals
}

func ids(msgs []messageJSON) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

var (
	logoPNG   = []byte("\x89PNG\r\n\x1a\nnot really a picture")
	reportPDF = bytes.Repeat([]byte("%PDF-1.4 quarterly figures\n"), 40)
)

// richMessage has a text and an HTML alternative (with a script, an event
// handler, a tracking pixel and an inline picture), the inline picture and
// a PDF whose name tries to climb out of the download folder.
var richMessage = "From: Sender <sender@remote.test>\r\n" +
	"To: alice@example.test\r\n" +
	"Subject: Quarterly report\r\n" +
	"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n" +
	"Message-ID: <rich@remote.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=outer\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/alternative; boundary=inner\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Alice, the report is attached.\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	`<p onclick="steal()">Hello <b>Alice</b></p><script>alert(1)</script>` +
	`<img src="https://tracker.example/pixel.gif?u=alice" alt="pixel"><img src="//tracker.example/p.gif" alt="relative">` +
	`<img src="cid:logo@remote.test" alt="logo"><a href="https://remote.test/report">report</a>` + "\r\n" +
	"--inner--\r\n" +
	"--outer\r\n" +
	"Content-Type: image/png\r\n" +
	"Content-ID: <logo@remote.test>\r\n" +
	"Content-Disposition: inline\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	base64.StdEncoding.EncodeToString(logoPNG) + "\r\n" +
	"--outer\r\n" +
	"Content-Type: application/pdf\r\n" +
	"Content-Disposition: attachment; filename*=UTF-8''..%2F%E5%A0%B1%E5%91%8A%22.pdf\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	base64.StdEncoding.EncodeToString(reportPDF) + "\r\n" +
	"--outer--\r\n"

// japaneseMessage has an ISO-2022-JP subject and body and a Shift_JIS
// text attachment.
func japaneseMessage(t *testing.T) string {
	t.Helper()
	iso := func(s string) string {
		b, err := japanese.ISO2022JP.NewEncoder().String(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	memo, err := japanese.ShiftJIS.NewEncoder().String("議事録メモ")
	if err != nil {
		t.Fatal(err)
	}
	return "From: " + mime.BEncoding.Encode("ISO-2022-JP", iso("山田 太郎")) + " <yamada@remote.test>\r\n" +
		"To: alice@example.test\r\n" +
		"Subject: " + mime.BEncoding.Encode("ISO-2022-JP", iso("会議の議事録")) + "\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n" +
		"\r\n" +
		"--b\r\n" +
		"Content-Type: text/plain; charset=ISO-2022-JP\r\n" +
		"Content-Transfer-Encoding: 7bit\r\n" +
		"\r\n" +
		iso("明日の会議は十時からです。") + "\r\n" +
		"--b\r\n" +
		"Content-Type: text/plain; charset=Shift_JIS\r\n" +
		"Content-Disposition: attachment; filename=memo.txt\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		base64.StdEncoding.EncodeToString([]byte(memo)) + "\r\n" +
		"--b--\r\n"
}

func TestMessageView(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice@example.test").AccessToken
	rich := e.deliver("alice@example.test", richMessage)
	jp := e.deliver("alice@example.test", japaneseMessage(t))

	if got := e.folderTotals(alice); got["INBOX"] != 2 || got["Junk"] != 0 || len(got) != 4 {
		t.Fatalf("folders %v", got)
	}
	list := e.page("folder=INBOX", alice)
	if !slices.Equal(ids(list.Messages), []int64{jp, rich}) || list.NextCursor != "" {
		t.Fatalf("INBOX lists %v, next %q", ids(list.Messages), list.NextCursor)
	}
	if m := list.Messages[0]; m.Subject != "会議の議事録" || m.From != "山田 太郎 <yamada@remote.test>" || m.Folder != "INBOX" || m.Date != nil {
		t.Errorf("Japanese message listed as %+v", m)
	}
	if m := list.Messages[1]; m.Subject != "Quarterly report" || m.Date == nil || !m.Date.Equal(time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)) || m.Size != int64(len(richMessage)) {
		t.Errorf("rich message listed as %+v", m)
	}

	var v messageView
	if resp := e.call("GET", fmt.Sprintf("/api/v1/messages/%d", rich), alice, nil, &v); resp.StatusCode != 200 {
		t.Fatalf("view: %d", resp.StatusCode)
	}
	if v.Text != "Hello Alice, the report is attached." || v.MessageID != "rich@remote.test" || v.Truncated {
		t.Errorf("text %q, message id %q, truncated %v", v.Text, v.MessageID, v.Truncated)
	}
	if len(v.Headers) != 7 || v.Headers[2] != (headerField{"Subject", "Quarterly report"}) {
		t.Errorf("headers %v", v.Headers)
	}
	for _, bad := range []string{"<script", "alert(", "onclick", "tracker.example"} {
		if strings.Contains(v.HTML, bad) {
			t.Errorf("sanitized HTML keeps %q: %s", bad, v.HTML)
		}
	}
	for _, good := range []string{"Hello <b>Alice</b>", `<img src="cid:logo@remote.test" alt="logo">`, `<img src="" alt="pixel">`, `href="https://remote.test/report"`, "nofollow"} {
		if !strings.Contains(v.HTML, good) {
			t.Errorf("sanitized HTML lacks %q: %s", good, v.HTML)
		}
	}
	// Remote images only when asked for: absolute http(s) kept, the
	// scheme-relative one still emptied, scripts still gone.
	var withImages messageView
	e.call("GET", fmt.Sprintf("/api/v1/messages/%d?images=remote", rich), alice, nil, &withImages)
	if !strings.Contains(withImages.HTML, `src="https://tracker.example/pixel.gif?u=alice"`) || strings.Contains(withImages.HTML, "//tracker.example/p.gif") || strings.Contains(withImages.HTML, "<script") {
		t.Errorf("HTML with remote images: %s", withImages.HTML)
	}
	e.wantProblem("GET", fmt.Sprintf("/api/v1/messages/%d?images=all", rich), alice, nil, 400, "images")
	want := []attachmentJSON{
		{Index: 0, Filename: "attachment-0", ContentType: "image/png", ContentID: "logo@remote.test", Size: int64(len(logoPNG))},
		{Index: 1, Filename: `報告".pdf`, ContentType: "application/pdf", Size: int64(len(reportPDF))},
	}
	if !slices.Equal(v.Attachments, want) {
		t.Errorf("attachments %+v, want %+v", v.Attachments, want)
	}

	// Attachments come decoded, as downloads with a safe name.
	resp, b := e.fetch(fmt.Sprintf("/api/v1/messages/%d/attachments/1", rich), alice)
	if resp.StatusCode != 200 || !bytes.Equal(b, reportPDF) || resp.Header.Get("Content-Type") != "application/pdf" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="___.pdf"; filename*=UTF-8''%E5%A0%B1%E5%91%8A%22.pdf` ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("attachment 1: %d %v, %d bytes", resp.StatusCode, resp.Header, len(b))
	}
	if resp, b := e.fetch(fmt.Sprintf("/api/v1/messages/%d/attachments/0", rich), alice); resp.StatusCode != 200 || !bytes.Equal(b, logoPNG) {
		t.Errorf("attachment 0: %d %q", resp.StatusCode, b)
	}
	e.wantProblem("GET", fmt.Sprintf("/api/v1/messages/%d/attachments/2", rich), alice, nil, 404, "n")
	e.wantProblem("GET", fmt.Sprintf("/api/v1/messages/%d/attachments/x", rich), alice, nil, 400, "n")
	e.wantProblem("GET", fmt.Sprintf("/api/v1/messages/%d/attachments/-1", rich), alice, nil, 400, "n")

	// The raw message is the stored bytes.
	resp, b = e.fetch(fmt.Sprintf("/api/v1/messages/%d/raw", rich), alice)
	if resp.StatusCode != 200 || string(b) != richMessage || resp.Header.Get("Content-Type") != "message/rfc822" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("raw: %d %v, %d bytes", resp.StatusCode, resp.Header, len(b))
	}

	// Japanese charsets are decoded; a text attachment is served in UTF-8.
	v = messageView{}
	if resp := e.call("GET", fmt.Sprintf("/api/v1/messages/%d", jp), alice, nil, &v); resp.StatusCode != 200 ||
		v.Subject != "会議の議事録" || v.Text != "明日の会議は十時からです。" || v.HTML != "" || len(v.Attachments) != 1 || v.Attachments[0].Filename != "memo.txt" {
		t.Errorf("Japanese view: %d %+v", resp.StatusCode, v)
	}
	resp, b = e.fetch(fmt.Sprintf("/api/v1/messages/%d/attachments/0", jp), alice)
	if string(b) != "議事録メモ" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("Shift_JIS attachment: %q as %s", b, resp.Header.Get("Content-Type"))
	}
}

func TestMessagePagingIsStable(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice@example.test").AccessToken
	msg := func(i int) string {
		return fmt.Sprintf("From: s@remote.test\r\nSubject: message %d\r\n\r\nbody %d\r\n", i, i)
	}
	before := make([]int64, 120)
	for i := range before {
		before[i] = e.deliver("alice@example.test", msg(i))
	}
	del := func(id int64) {
		if resp := e.call("DELETE", fmt.Sprintf("/api/v1/messages/%d", id), alice, nil, nil); resp.StatusCode != 204 {
			t.Fatalf("delete %d: %d", id, resp.StatusCode)
		}
	}
	var seen []int64
	p := e.page("limit=50", alice)
	seen = append(seen, ids(p.Messages)...)
	// Between pages mail arrives, an unseen message and a seen one go.
	for i := range 3 {
		e.deliver("alice@example.test", msg(200+i))
	}
	del(before[60])
	del(before[65])
	del(before[100])
	p = e.page("limit=50&cursor="+p.NextCursor, alice)
	seen = append(seen, ids(p.Messages)...)
	e.deliver("alice@example.test", msg(300))
	del(before[5])
	p = e.page("limit=50&cursor="+p.NextCursor, alice)
	seen = append(seen, ids(p.Messages)...)
	if p.NextCursor != "" {
		t.Fatalf("third page has a next cursor")
	}
	// Every message there before paging began and not deleted before its
	// page was read shows up, once, newest first; newer ones do not.
	var want []int64
	for i := len(before) - 1; i >= 0; i-- {
		if i != 60 && i != 65 && i != 5 {
			want = append(want, before[i])
		}
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("paged through\n%v\nwant\n%v", seen, want)
	}
	if got := e.folderTotals(alice)["INBOX"]; got != 120+4-4 {
		t.Fatalf("INBOX total %d", got)
	}
}

func TestListCursorChecks(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice@example.test").AccessToken
	bob := e.login("bob@example.test").AccessToken
	var all []int64
	for i := range 5 {
		all = append(all, e.deliver("alice@example.test", fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i)))
		e.deliver("bob@example.test", fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i))
	}
	first := e.page("limit=2", alice)
	cursor := first.NextCursor
	if second := e.page("folder=inbox&limit=2&cursor="+cursor, alice); !slices.Equal(ids(second.Messages), []int64{all[2], all[1]}) {
		t.Fatalf("second page %v", ids(second.Messages))
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		t.Fatal(err)
	}
	tamper := func(i int) string {
		b := slices.Clone(raw)
		b[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}
	for _, tc := range []struct{ token, query string }{
		{alice, "cursor=" + tamper(0)},                 // version
		{alice, "cursor=" + tamper(8)},                 // id
		{alice, "cursor=" + tamper(len(raw)-1)},        // MAC
		{alice, "cursor=" + cursor + "A"},              // length
		{alice, "cursor=not*base64"},                   // encoding
		{alice, "folder=Junk&cursor=" + cursor},        // another folder
		{bob, "cursor=" + cursor},                      // another user
		{bob, "folder=INBOX&limit=2&cursor=" + cursor}, // another user
	} {
		e.wantProblem("GET", "/api/v1/messages?"+tc.query, tc.token, nil, 400, "cursor")
	}

	// A cursor outlives a restart (same data_dir) and a key rotation that
	// keeps the old key as a previous one.
	restart := func(api config.API) *env {
		cfg := config.Default()
		cfg.DataDir = e.srv.dataDir
		cfg.API = api
		srv, err := New(cfg, e.pool, e.store, e.blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		next := *e
		next.srv, next.http = srv, httptest.NewServer(srv.Handler())
		t.Cleanup(next.http.Close)
		return &next
	}
	restarted := restart(config.Default().API)
	if p := restarted.page("limit=2&cursor="+cursor, alice); !slices.Equal(ids(p.Messages), []int64{all[2], all[1]}) {
		t.Fatalf("after restart: %v", ids(p.Messages))
	}
	old, err := e.srv.storedKey()
	if err != nil {
		t.Fatal(err)
	}
	rotatedAPI := config.Default().API
	rotatedAPI.JWTKey, rotatedAPI.JWTPreviousKeys = generateJWTKey(), old
	rotated := restart(rotatedAPI)
	if p := rotated.page("limit=2&cursor="+cursor, alice); !slices.Equal(ids(p.Messages), []int64{all[2], all[1]}) {
		t.Fatalf("after rotation: %v", ids(p.Messages))
	}
}

func TestListParameters(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice@example.test").AccessToken
	for i := range 3 {
		e.deliver("alice@example.test", fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i))
	}
	for _, tc := range []struct {
		query  string
		status int
		field  string
	}{
		{"limit=0", 400, "limit"},
		{"limit=201", 400, "limit"},
		{"limit=-5", 400, "limit"},
		{"limit=ten", 400, "limit"},
		{"offset=50", 400, "offset"},
		{"limit=5&offset=0", 400, "offset"},
		{"page=2", 400, "page"},
		{"folder=Nowhere", 404, "folder"},
	} {
		e.wantProblem("GET", "/api/v1/messages?"+tc.query, alice, nil, tc.status, tc.field)
	}
	if p := e.page("limit=200", alice); len(p.Messages) != 3 {
		t.Errorf("limit=200 lists %d", len(p.Messages))
	}
	if p := e.page("folder=inbox&limit=1", alice); len(p.Messages) != 1 || p.NextCursor == "" || p.Messages[0].Folder != "INBOX" {
		t.Errorf("inbox in lower case: %+v", p)
	}
	if p := e.page("folder=Junk", alice); p.Messages == nil || len(p.Messages) != 0 {
		t.Errorf("empty folder: %+v", p)
	}
	for _, path := range []string{"/api/v1/folders", "/api/v1/messages", "/api/v1/messages/1", "/api/v1/messages/1/raw", "/api/v1/messages/1/attachments/0"} {
		e.wantProblem("GET", path, "", nil, 401, "Authorization")
	}
}

func TestMessagesOfOthersAreNotFound(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice@example.test").AccessToken
	bob := e.login("bob@example.test").AccessToken
	id := e.deliver("alice@example.test", richMessage)
	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/v1/messages/%d", nil},
		{"GET", "/api/v1/messages/%d/raw", nil},
		{"GET", "/api/v1/messages/%d/attachments/0", nil},
		{"POST", "/api/v1/messages/%d/move", moveRequest{Folder: "Junk"}},
		{"DELETE", "/api/v1/messages/%d", nil},
	} {
		e.wantProblem(tc.method, fmt.Sprintf(tc.path, id), bob, tc.body, 404, "id")
		// Ids must be positive integers; unknown ones are not found.
		for _, bad := range []string{"abc", "0", "-1", "1.5", "99999999999999999999"} {
			e.wantProblem(tc.method, strings.Replace(tc.path, "%d", bad, 1), alice, tc.body, 400, "id")
		}
		e.wantProblem(tc.method, fmt.Sprintf(tc.path, id+1000), alice, tc.body, 404, "id")
	}
	if got := e.folderTotals(bob); got["INBOX"] != 0 || got["Junk"] != 0 {
		t.Errorf("bob's folders %v", got)
	}
	if p := e.page("", bob); len(p.Messages) != 0 {
		t.Errorf("bob lists %v", ids(p.Messages))
	}
	// Alice's message is untouched.
	if p := e.page("", alice); !slices.Equal(ids(p.Messages), []int64{id}) || p.Messages[0].Folder != "INBOX" {
		t.Errorf("alice lists %+v", p.Messages)
	}
}

func TestMoveAndDelete(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice@example.test").AccessToken
	id := e.deliver("alice@example.test", richMessage)
	other := e.deliver("alice@example.test", "Subject: other\r\n\r\nx\r\n")
	move := fmt.Sprintf("/api/v1/messages/%d/move", id)

	var m messageJSON
	if resp := e.call("POST", move, alice, moveRequest{Folder: "Junk"}, &m); resp.StatusCode != 200 || m.ID != id || m.Folder != "Junk" || m.Subject != "Quarterly report" {
		t.Fatalf("move: %d %+v", resp.StatusCode, m)
	}
	if got := e.folderTotals(alice); got["INBOX"] != 1 || got["Junk"] != 1 {
		t.Fatalf("after move: %v", got)
	}
	if p := e.page("folder=Junk", alice); !slices.Equal(ids(p.Messages), []int64{id}) {
		t.Fatalf("Junk lists %v", ids(p.Messages))
	}
	if resp := e.call("POST", move, alice, moveRequest{Folder: "inbox"}, &m); resp.StatusCode != 200 || m.Folder != "INBOX" {
		t.Fatalf("move back: %d %+v", resp.StatusCode, m)
	}
	e.wantProblem("POST", move, alice, moveRequest{Folder: "Nowhere"}, 404, "folder")
	e.wantProblem("POST", move, alice, map[string]any{}, 400, "folder")
	e.wantProblem("POST", move, alice, map[string]any{"folder": 5}, 400, "folder")
	e.wantProblem("POST", move, alice, map[string]any{"folder": "Junk", "copy": true}, 400, "copy")

	// A deleted message is gone from every endpoint.
	del := fmt.Sprintf("/api/v1/messages/%d", id)
	if resp := e.call("DELETE", del, alice, nil, nil); resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	e.wantProblem("DELETE", del, alice, nil, 404, "id")
	e.wantProblem("GET", del, alice, nil, 404, "id")
	e.wantProblem("GET", del+"/raw", alice, nil, 404, "id")
	e.wantProblem("GET", del+"/attachments/0", alice, nil, 404, "id")
	e.wantProblem("POST", move, alice, moveRequest{Folder: "Junk"}, 404, "id")
	if p := e.page("", alice); !slices.Equal(ids(p.Messages), []int64{other}) {
		t.Errorf("INBOX lists %v", ids(p.Messages))
	}
	if got := e.folderTotals(alice); got["INBOX"] != 1 || got["Junk"] != 0 {
		t.Errorf("after delete: %v", got)
	}
}

func TestMessageViewLimits(t *testing.T) {
	e := newEnv(t)
	alice := e.login("alice@example.test").AccessToken
	var many strings.Builder
	many.WriteString("Subject: many parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := range maxMIMEParts {
		fmt.Fprintf(&many, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	many.WriteString("--b--\r\n")
	var deep strings.Builder
	deep.WriteString("Subject: deep\r\n")
	for i := range maxMIMEDepth + 1 {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	deep.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
	for i := maxMIMEDepth; i >= 0; i-- {
		fmt.Fprintf(&deep, "--b%d--\r\n", i)
	}
	for _, raw := range []string{many.String(), deep.String()} {
		id := e.deliver("alice@example.test", raw)
		e.wantProblem("GET", fmt.Sprintf("/api/v1/messages/%d", id), alice, nil, 422, "id")
		if resp, b := e.fetch(fmt.Sprintf("/api/v1/messages/%d/raw", id), alice); resp.StatusCode != 200 || string(b) != raw {
			t.Errorf("raw of a refused message: %d", resp.StatusCode)
		}
	}
	// Just within the limits is fine.
	var within strings.Builder
	within.WriteString("Subject: within\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := range maxMIMEParts - 1 {
		fmt.Fprintf(&within, "--b\r\nContent-Type: application/octet-stream\r\n\r\n%d\r\n", i)
	}
	within.WriteString("--b--\r\n")
	var v messageView
	if resp := e.call("GET", fmt.Sprintf("/api/v1/messages/%d", e.deliver("alice@example.test", within.String())), alice, nil, &v); resp.StatusCode != 200 || len(v.Attachments) != maxMIMEParts-1 {
		t.Errorf("%d parts: %d, %d attachments", maxMIMEParts, resp.StatusCode, len(v.Attachments))
	}
	// A long text is cut on a character boundary.
	long := strings.Repeat("あ", maxBodyText/3+100)
	id := e.deliver("alice@example.test", "Subject: long\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+long)
	if resp := e.call("GET", fmt.Sprintf("/api/v1/messages/%d", id), alice, nil, &v); resp.StatusCode != 200 || !v.Truncated ||
		len(v.Text) > maxBodyText || len(v.Text) < maxBodyText-3 || !utf8.ValidString(v.Text) || !strings.HasPrefix(long, v.Text) {
		t.Errorf("long text: %d, truncated %v, %d bytes", resp.StatusCode, v.Truncated, len(v.Text))
	}
}

func TestContentDisposition(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"report.pdf", `attachment; filename="report.pdf"; filename*=UTF-8''report.pdf`},
		{"a b;c=d.txt", `attachment; filename="a b;c=d.txt"; filename*=UTF-8''a%20b%3Bc%3Dd.txt`},
		{`日本"\.txt`, `attachment; filename="____.txt"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%22%5C.txt`},
	} {
		if got := contentDisposition(tc.name); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"../../etc/passwd", "passwd"},
		{`C:\Users\x\evil.exe`, "evil.exe"},
		{"..", "fallback"},
		{".hidden", "hidden"},
		{"a\r\nb\x00.txt", "ab.txt"},
		{"", "fallback"},
		{strings.Repeat("é", 150), strings.Repeat("é", 100)},
	} {
		if got := safeFilename(tc.name, "fallback"); got != tc.want {
			t.Errorf("safeFilename(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// BenchmarkListMessages lists a mailbox of 100,000 messages (beside
// another user's 100,000) through the handler: the first page, and paging
// through the whole mailbox by cursor.
func BenchmarkListMessages(b *testing.B) {
	ctx := b.Context()
	pool := accountstest.NewDatabase(b, "apibench", "alice@example.test", "bob@example.test")
	if _, err := pool.Exec(ctx, `
		INSERT INTO blobs(key, size) VALUES ('bench', 2000);
		INSERT INTO messages(tenant_id, user_id, folder_id, blob_key, size, mail_from, rcpt_to, from_addr, to_addrs, subject, date, message_id)
		SELECT f.tenant_id, f.user_id, f.id, 'bench', 2000, 'sender@remote.test', u.address, 'Sender <sender@remote.test>', u.address,
			'message ' || g, now() - g * interval '1 minute', g || '@remote.test'
		FROM generate_series(1, 100000) g, folders f JOIN mail_users u ON u.id = f.user_id
		WHERE f.special = 'inbox' ORDER BY g, f.user_id;
		ANALYZE messages`); err != nil {
		b.Fatal(err)
	}
	store, blobs := storetest.New(b, pool)
	cfg := config.Default()
	cfg.DataDir = b.TempDir()
	srv, err := New(cfg, pool, store, blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	u, err := srv.accounts.Authenticate(ctx, "alice@example.test", "pw-alice@example.test")
	if err != nil {
		b.Fatal(err)
	}
	token, err := srv.keys.Load().sign(u, time.Now(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	list := func(b *testing.B, query string) messagePage {
		req := httptest.NewRequest("GET", "/api/v1/messages?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var p messagePage
		if err := json.Unmarshal(rec.Body.Bytes(), &p); rec.Code != 200 || err != nil || len(p.Messages) != 50 {
			b.Fatalf("%s: %d %v, %d messages", query, rec.Code, err, len(p.Messages))
		}
		return p
	}
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			list(b, "limit=50")
		}
	})
	b.Run("paging", func(b *testing.B) {
		cursor := ""
		for b.Loop() {
			cursor = list(b, "limit=50&cursor="+cursor).NextCursor
		}
	})
}

// FuzzWalkMessage feeds arbitrary messages to the MIME walk: it must not
// panic, must answer a message it cannot show with a 422 problem, and must
// number attachments 0, 1, 2, ... within the part limit.
func FuzzWalkMessage(f *testing.F) {
	f.Add(richMessage)
	f.Add("Subject: plain\r\n\r\nbody\r\n")
	f.Add("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n--x--\r\n")
	f.Fuzz(func(t *testing.T, raw string) {
		next, leaves := 0, 0
		err := walkMessage(1, strings.NewReader(raw), nil, func(p part) error {
			leaves++
			if p.role == attachment {
				if p.index != next {
					t.Fatalf("attachment %d after %d", p.index, next-1)
				}
				next++
				p.contentType()
				p.filename()
			}
			_, err := io.Copy(io.Discard, p.entity.Body)
			return err
		})
		var prob *Problem
		if err != nil && (!errors.As(err, &prob) || prob.Status != http.StatusUnprocessableEntity) {
			t.Fatalf("error %v is not a 422 problem", err)
		}
		if leaves > maxMIMEParts {
			t.Fatalf("%d leaves walked", leaves)
		}
	})
}

// TestMoveEnqueuesLearning moves a message into Junk and out of it through
// the API and finds the learn jobs committed with the moves.
func TestMoveEnqueuesLearning(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if err := jobs.Migrate(ctx, e.pool); err != nil {
		t.Fatal(err)
	}
	insertOnly, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	settings := config.Default().Spam
	settings.LearnURL = "http://127.0.0.1:11334" // not called: no worker runs here
	scanner, err := spam.New(settings, e.srv.log)
	if err != nil {
		t.Fatal(err)
	}
	e.store.OnJunkMove(spamlearn.Enqueue(insertOnly, scanner))
	rcpt, err := accounts.New(e.pool).Lookup(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	alice := e.login("alice@example.test").AccessToken
	id := e.deliver("alice@example.test", richMessage)
	move := fmt.Sprintf("/api/v1/messages/%d/move", id)
	var want []spamlearn.Args
	for _, step := range []struct {
		folder string
		learn  bool // a job is expected
		spam   bool
	}{{"Junk", true, true}, {"Junk", false, false}, {"Trash", true, false}, {"INBOX", false, false}} {
		if resp := e.call("POST", move, alice, moveRequest{Folder: step.folder}, nil); resp.StatusCode != 200 {
			t.Fatalf("move to %s: %d", step.folder, resp.StatusCode)
		}
		if step.learn {
			want = append(want, spamlearn.Args{MessageID: id, UserID: rcpt.UserID, Spam: step.spam})
		}
		rows, err := e.pool.Query(ctx, `SELECT args FROM river_job WHERE kind = 'spam_learn' ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[spamlearn.Args])
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("after the move to %s: jobs %+v, %v; want %+v", step.folder, got, err, want)
		}
	}
}

// TestSpamVerdictShown: the verdict given at delivery is in the list and the
// message view; a message delivered unscanned says so.
func TestSpamVerdictShown(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	rcpt, err := accounts.New(e.pool).Lookup(ctx, "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: s@remote.test\r\nSubject: cheap pills\r\n\r\nbuy\r\n"
	verdict := spam.Verdict{Action: spam.AddHeader, Score: 7.5, Symbols: map[string]float64{"TEST_SPAM": 7.5}, Scanned: true}
	ids, err := e.store.Deliver(ctx, mailstore.Delivery{MailFrom: "s@remote.test", Recipients: []accounts.Recipient{rcpt}, Folders: []int64{rcpt.JunkID}, Data: []byte(raw), Spam: verdict})
	if err != nil {
		t.Fatal(err)
	}
	plain := e.deliver("alice@example.test", "From: s@remote.test\r\nSubject: hello\r\n\r\nhi\r\n")
	alice := e.login("alice@example.test").AccessToken
	var v messageView
	e.call("GET", fmt.Sprintf("/api/v1/messages/%d", ids[0]), alice, nil, &v)
	if v.Folder != "Junk" || !v.Spam.Scanned || v.Spam.Score == nil || *v.Spam.Score != 7.5 || v.Spam.Action != "add header" || v.Spam.Symbols["TEST_SPAM"] != 7.5 {
		t.Fatalf("spam message shows %+v in %s", v.Spam, v.Folder)
	}
	var list messagePage
	e.call("GET", "/api/v1/messages?folder=Junk", alice, nil, &list)
	if len(list.Messages) != 1 || list.Messages[0].Spam.Action != "add header" {
		t.Fatalf("Junk listing: %+v", list.Messages)
	}
	e.call("GET", fmt.Sprintf("/api/v1/messages/%d", plain), alice, nil, &v)
	if v.Spam.Scanned || v.Spam.Score != nil {
		t.Fatalf("unscanned message shows %+v", v.Spam)
	}
}
