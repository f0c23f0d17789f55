package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"

	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
)

// msg joins lines with CRLF.
func msg(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

var all = manifest.Permissions{ReadHeaders: true, ReadBody: manifest.BodyFull, ReadAttachments: manifest.AttachmentsFull}

// markers is a message with a unique marker in its header, text body, HTML
// body, text attachment (base64), attachment file name and binary
// attachment (base64).
var markers = msg(
	"From: a@example.com",
	"To: b@example.com",
	"Subject: HDRMARK subject",
	"MIME-Version: 1.0",
	`Content-Type: multipart/mixed; boundary="outer"`,
	"",
	"--outer",
	`Content-Type: multipart/alternative; boundary="alt"`,
	"",
	"--alt",
	"Content-Type: text/plain; charset=utf-8",
	"",
	"TEXTMARK body",
	"--alt",
	"Content-Type: text/html; charset=utf-8",
	"",
	"<p>HTMLMARK body</p>",
	"--alt--",
	"--outer",
	"Content-Type: text/plain; charset=utf-8",
	`Content-Disposition: attachment; filename="FILEMARK.txt"`,
	"Content-Transfer-Encoding: base64",
	"",
	b64("ATTMARK text attachment"),
	"--outer",
	"Content-Type: application/octet-stream",
	`Content-Disposition: attachment; filename="blob.bin"`,
	"Content-Transfer-Encoding: base64",
	"",
	b64("\x00\x01BINMARK\xff\xfe"),
	"--outer--",
)

// wire is everything a plugin could read of m: its JSON and the decoded
// attachment contents.
func wire(t *testing.T, m sdk.Message) string {
	t.Helper()
	j, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	var back sdk.Message
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatalf("json.Unmarshal: %v", err)
	}
	var s strings.Builder
	s.Write(j)
	for _, a := range back.Attachments {
		s.Write(a.Content)
	}
	return s.String()
}

// TestPermissions checks, for every combination of read permissions, that
// each marker reaches the plugin exactly when allowed.
func TestPermissions(t *testing.T) {
	base := sdk.Message{
		ID: 7, User: "b@example.com", Folder: "INBOX", MailFrom: "a@example.com", RcptTo: "b@example.com",
		Size: int64(len(markers)), ReceivedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		// Build must replace these, never pass them on.
		Headers:     []sdk.Header{{Name: "X-Base", Value: "BASEMARK"}},
		Body:        &sdk.Body{Text: "BASEMARK"},
		Attachments: []sdk.Attachment{{Filename: "BASEMARK", Content: []byte("BASEMARK")}},
	}
	for _, headers := range []bool{false, true} {
		for body := manifest.BodyNone; body <= manifest.BodyFull; body++ {
			for att := manifest.AttachmentsNone; att <= manifest.AttachmentsFull; att++ {
				p := manifest.Permissions{ReadHeaders: headers, ReadBody: body, ReadAttachments: att}
				t.Run(p.String(), func(t *testing.T) {
					m := Build(markers, base, p)
					if m.ID != 7 || m.Folder != "INBOX" || m.Size != base.Size || !m.ReceivedAt.Equal(base.ReceivedAt) {
						t.Errorf("metadata not kept: %+v", m)
					}
					seen := wire(t, m)
					for marker, allowed := range map[string]bool{
						"HDRMARK":  headers,
						"TEXTMARK": body >= manifest.BodyPreview,
						"HTMLMARK": body == manifest.BodyFull,
						"FILEMARK": att >= manifest.AttachmentsMetadata,
						"ATTMARK":  att >= manifest.AttachmentsPreview,
						"BINMARK":  att == manifest.AttachmentsFull,
						"BASEMARK": false,
					} {
						if got := strings.Contains(seen, marker); got != allowed {
							t.Errorf("%s seen = %v, want %v in\n%s", marker, got, allowed, seen)
						}
					}
					if (m.Headers != nil) != headers || (m.Body != nil) != (body != manifest.BodyNone) || (m.Attachments != nil) != (att != manifest.AttachmentsNone) {
						t.Errorf("headers %v, body %v, attachments %v present for %v", m.Headers != nil, m.Body != nil, m.Attachments != nil, p)
					}
				})
			}
		}
	}
}

func TestMarkersFull(t *testing.T) {
	m := Build(markers, sdk.Message{}, all)
	wantHeaders := []sdk.Header{
		{Name: "From", Value: "a@example.com"}, {Name: "To", Value: "b@example.com"}, {Name: "Subject", Value: "HDRMARK subject"},
		{Name: "Mime-Version", Value: "1.0"}, {Name: "Content-Type", Value: `multipart/mixed; boundary="outer"`},
	}
	if fmt.Sprint(m.Headers) != fmt.Sprint(wantHeaders) {
		t.Errorf("headers = %v, want %v", m.Headers, wantHeaders)
	}
	if *m.Body != (sdk.Body{Text: "TEXTMARK body", HTML: "<p>HTMLMARK body</p>"}) {
		t.Errorf("body = %+v", *m.Body)
	}
	want := []sdk.Attachment{
		{Index: 1, Filename: "FILEMARK.txt", ContentType: "text/plain; charset=utf-8", Size: 23, Content: []byte("ATTMARK text attachment")},
		{Index: 2, Filename: "blob.bin", ContentType: "application/octet-stream", Size: 11, Content: []byte("\x00\x01BINMARK\xff\xfe")},
	}
	if fmt.Sprint(m.Attachments) != fmt.Sprint(want) {
		t.Errorf("attachments =\n%+v, want\n%+v", m.Attachments, want)
	}
	meta := Build(markers, sdk.Message{}, manifest.Permissions{ReadAttachments: manifest.AttachmentsMetadata})
	for i, a := range meta.Attachments {
		want[i].Content = nil
		if fmt.Sprint(a) != fmt.Sprint(want[i]) {
			t.Errorf("metadata attachment = %+v, want %+v", a, want[i])
		}
	}
}

func iso2022jp(t *testing.T, s string) string {
	t.Helper()
	b, err := japanese.ISO2022JP.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJapanese(t *testing.T) {
	sjis, err := japanese.ShiftJIS.NewEncoder().String("山田 太郎")
	if err != nil {
		t.Fatal(err)
	}
	raw := msg(
		"From: =?Shift_JIS?B?"+b64(sjis)+"?= <yamada@example.jp>",
		"Subject: =?ISO-2022-JP?B?"+b64(iso2022jp(t, "会議のお知らせ"))+"?=",
		"MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="b"`,
		"",
		"--b",
		"Content-Type: text/plain; charset=ISO-2022-JP",
		"Content-Transfer-Encoding: 7bit",
		"",
		iso2022jp(t, "明日の会議は十時からです。"),
		"--b",
		"Content-Type: text/plain; charset=ISO-2022-JP",
		`Content-Disposition: attachment; filename="=?ISO-2022-JP?B?`+b64(iso2022jp(t, "資料.txt"))+`?="`,
		"",
		iso2022jp(t, "資料です"),
		"--b--",
	)
	m := Build(raw, sdk.Message{}, all)
	if got := m.Headers[0].Value; got != "山田 太郎 <yamada@example.jp>" {
		t.Errorf("From = %q", got)
	}
	if got := m.Headers[1].Value; got != "会議のお知らせ" {
		t.Errorf("Subject = %q", got)
	}
	if m.Body.Text != "明日の会議は十時からです。" {
		t.Errorf("text = %q", m.Body.Text)
	}
	if len(m.Attachments) != 1 {
		t.Fatalf("attachments = %+v", m.Attachments)
	}
	a := m.Attachments[0]
	if a.Filename != "資料.txt" || a.ContentType != "text/plain; charset=utf-8" || string(a.Content) != "資料です" || a.Size != int64(len("資料です")) {
		t.Errorf("attachment = %+v (%q)", a, a.Content)
	}
}

func TestPreviewCut(t *testing.T) {
	text := strings.Repeat("あ", 2000) // 6000 bytes, 3 a character
	raw := msg("Subject: long", "Content-Type: text/plain; charset=utf-8", "", text)
	m := Build(raw, sdk.Message{}, manifest.Permissions{ReadBody: manifest.BodyPreview})
	b := m.Body
	if len(b.Text) != 4095 || !utf8.ValidString(b.Text) || !strings.HasPrefix(text, b.Text) || !b.Truncated || b.HTML != "" {
		t.Errorf("preview: %d bytes, valid %v, truncated %v", len(b.Text), utf8.ValidString(b.Text), b.Truncated)
	}
	full := Build(raw, sdk.Message{}, all).Body
	if full.Text != text+"\r\n" || full.Truncated {
		t.Errorf("full: %d bytes, truncated %v", len(full.Text), full.Truncated)
	}
	short := Build(msg("", "short"), sdk.Message{}, manifest.Permissions{ReadBody: manifest.BodyPreview}).Body
	if short.Text != "short\r\n" || short.Truncated {
		t.Errorf("short preview = %+v", short)
	}
}

func TestAlternative(t *testing.T) {
	raw := msg(
		"Subject: alt",
		`Content-Type: multipart/alternative; boundary="a"`,
		"",
		"--a",
		"Content-Type: text/plain; charset=us-ascii",
		"",
		"Hello plain",
		"--a",
		"Content-Type: text/html; charset=utf-8",
		"",
		"<html><body><p>Hello <b>html</b></p></body></html>",
		"--a--",
	)
	preview := Build(raw, sdk.Message{}, manifest.Permissions{ReadBody: manifest.BodyPreview, ReadAttachments: manifest.AttachmentsFull})
	if *preview.Body != (sdk.Body{Text: "Hello plain"}) || len(preview.Attachments) != 0 {
		t.Errorf("preview = %+v, %+v", *preview.Body, preview.Attachments)
	}
	full := Build(raw, sdk.Message{}, all)
	if *full.Body != (sdk.Body{Text: "Hello plain", HTML: "<html><body><p>Hello <b>html</b></p></body></html>"}) {
		t.Errorf("full = %+v", *full.Body)
	}
}

func TestHTMLOnly(t *testing.T) {
	raw := msg(
		"Content-Type: text/html; charset=utf-8",
		"",
		"<html><head><title>T</title><style>p{color:red}</style></head><body>",
		"<p>Caf&eacute; &amp; <i>bar</i></p><script>alert('x')</script><!-- hidden -->",
		"<div>1 &lt; 2</div>a < b",
		"</body></html>",
	)
	want := "Café & bar\n\n1 < 2\na < b"
	for _, level := range []manifest.BodyLevel{manifest.BodyPreview, manifest.BodyFull} {
		m := Build(raw, sdk.Message{}, manifest.Permissions{ReadBody: level})
		if m.Body.Text != want {
			t.Errorf("%v: text = %q, want %q", level, m.Body.Text, want)
		}
		if (m.Body.HTML != "") != (level == manifest.BodyFull) {
			t.Errorf("%v: html = %q", level, m.Body.HTML)
		}
	}
	long := msg("Content-Type: text/html", "", "<p>"+strings.Repeat("word ", 2000)+"</p>")
	b := Build(long, sdk.Message{}, manifest.Permissions{ReadBody: manifest.BodyPreview}).Body
	if len(b.Text) > sdk.PreviewBytes || !b.Truncated || b.HTML != "" || !strings.HasPrefix(b.Text, "word word") {
		t.Errorf("long html preview: %d bytes, truncated %v", len(b.Text), b.Truncated)
	}
}

func TestNestedAttachments(t *testing.T) {
	png := "\x89PNG\r\n\x1a\n" + strings.Repeat("\x00", 100)
	pdf := "%PDF-1.4 " + strings.Repeat("z", 5000)
	long := strings.Repeat("x", 5000)
	raw := msg(
		"Subject: nested",
		`Content-Type: multipart/mixed; boundary="o"`,
		"",
		"preamble",
		"--o",
		`Content-Type: multipart/mixed; boundary="i"`,
		"",
		"--i",
		"Content-Type: text/plain",
		"",
		"the body",
		"--i",
		`Content-Type: image/png; name="pic.png"`,
		"Content-Transfer-Encoding: base64",
		"",
		b64(png),
		"--i--",
		"--o",
		"Content-Type: application/pdf",
		`Content-Disposition: attachment; filename="doc.pdf"`,
		"Content-Transfer-Encoding: base64",
		"",
		b64(pdf),
		"--o",
		"Content-Type: text/csv",
		`Content-Disposition: attachment; filename="long.csv"`,
		"",
		long,
		"--o--",
	)
	m := Build(raw, sdk.Message{}, manifest.Permissions{ReadBody: manifest.BodyFull, ReadAttachments: manifest.AttachmentsPreview})
	if m.Body.Text != "the body" {
		t.Errorf("text = %q", m.Body.Text)
	}
	want := []sdk.Attachment{
		{Index: 1, Filename: "pic.png", ContentType: "image/png", Size: int64(len(png))},
		{Index: 2, Filename: "doc.pdf", ContentType: "application/pdf", Size: int64(len(pdf))},
		{Index: 3, Filename: "long.csv", ContentType: "text/csv", Size: int64(len(long)), Content: []byte(long[:sdk.PreviewBytes]), Truncated: true},
	}
	if fmt.Sprint(m.Attachments) != fmt.Sprint(want) {
		t.Errorf("attachments =\n%+v, want\n%+v", m.Attachments, want)
	}
	full := Build(raw, sdk.Message{}, all)
	if len(full.Attachments) != 3 || string(full.Attachments[0].Content) != png || string(full.Attachments[1].Content) != pdf ||
		string(full.Attachments[2].Content) != long || full.Attachments[2].Truncated {
		t.Errorf("full attachments wrong")
	}
}

func TestEncodings(t *testing.T) {
	html := "<p>" + strings.Repeat("base64 html ", 20) + "</p>"
	raw := msg(
		`Content-Type: multipart/alternative; boundary="e"`,
		"",
		"--e",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: quoted-printable",
		"",
		"caf=C3=A9 au lait, a very long line that is soft =",
		"broken here, 1+1=3D2",
		"--e",
		"Content-Type: text/html; charset=utf-8",
		"Content-Transfer-Encoding: BASE64",
		"",
		b64(html)[:40],
		"  "+b64(html)[40:],
		"--e--",
	)
	b := Build(raw, sdk.Message{}, all).Body
	if b.Text != "café au lait, a very long line that is soft broken here, 1+1=2" {
		t.Errorf("quoted-printable text = %q", b.Text)
	}
	if b.HTML != html {
		t.Errorf("base64 html = %q", b.HTML)
	}
}

func TestNotMIME(t *testing.T) {
	text := "Hello,\r\n\r\nthis is not a MIME message: just text.\r\n"
	m := Build([]byte(text), sdk.Message{}, all)
	if len(m.Headers) != 0 || m.Body.Text != text || len(m.Attachments) != 0 {
		t.Errorf("plain text: %+v", m)
	}
	// A header cut short by a line that is not a field.
	broken := msg("Subject: broken", "X-Ok: yes", "this line ends the header", "and the body goes on")
	m = Build(broken, sdk.Message{}, all)
	if fmt.Sprint(m.Headers) != fmt.Sprint([]sdk.Header{{Name: "Subject", Value: "broken"}, {Name: "X-Ok", Value: "yes"}}) {
		t.Errorf("headers = %+v", m.Headers)
	}
	if m.Body.Text != "this line ends the header\r\nand the body goes on\r\n" {
		t.Errorf("text = %q", m.Body.Text)
	}
	if m := Build(broken, sdk.Message{}, manifest.Permissions{ReadBody: manifest.BodyFull}); m.Headers != nil || strings.Contains(m.Body.Text, "Subject") {
		t.Errorf("without read_headers: %+v", m)
	}
	// Header only, no body; empty input.
	if m := Build([]byte("Subject: x"), sdk.Message{}, all); len(m.Headers) != 1 || m.Headers[0].Value != "x" || *m.Body != (sdk.Body{}) {
		t.Errorf("header only: %+v", m)
	}
	if m := Build(nil, sdk.Message{}, all); m.Headers != nil || *m.Body != (sdk.Body{}) || m.Attachments != nil {
		t.Errorf("empty: %+v", m)
	}
}

func TestMalformed(t *testing.T) {
	for name, raw := range map[string][]byte{
		"no closing boundary": msg(`Content-Type: multipart/mixed; boundary="x"`, "", "--x", "", "body text"),
		"no boundary":         msg("Content-Type: multipart/mixed", "", "--x", "", "body"),
		"bad base64":          msg("Content-Transfer-Encoding: base64", "", "!!!!not base64 at all"),
		"unknown encoding":    msg("Content-Transfer-Encoding: x-rot13", "", "uryyb"),
		"unknown charset":     msg("Content-Type: text/plain; charset=x-klingon", "", "qapla\xff"),
		"bad content type":    msg("Content-Type: text/plain; charset", "", "still text"),
		"invalid utf-8":       msg("Subject: \xff\xfe =?utf-8?q?=FF?=", "", "\xc3\x28 body"),
		"deep": append(msg(`Content-Type: multipart/mixed; boundary="b"`, ""),
			bytes.Repeat(msg("--b", `Content-Type: multipart/mixed; boundary="b"`, ""), 1000)...),
		"many parts": append(msg(`Content-Type: multipart/mixed; boundary="b"`, ""),
			bytes.Repeat(msg("--b", "Content-Type: image/gif", "", "GIF"), 1000)...),
	} {
		t.Run(name, func(t *testing.T) {
			check(t, Build(raw, sdk.Message{}, all))
		})
	}
	m := Build(msg("Content-Type: text/plain; charset", "", "still text"), sdk.Message{}, all)
	if m.Body.Text != "still text\r\n" {
		t.Errorf("malformed parameters: text = %q", m.Body.Text)
	}
	m = Build(msg(`Content-Type: multipart/mixed; boundary="b"`, "", "--b", "", "first", "--b", "Content-Type: image/gif", "", "GIF"), sdk.Message{}, all)
	if m.Body.Text != "first" || len(m.Attachments) != 1 || string(m.Attachments[0].Content) != "GIF" {
		t.Errorf("unterminated multipart: %+v", m)
	}
}

func TestAttachmentBudget(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 10<<20/16) // 10 MiB
	part := msg("--b", "Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64", "", b64(big))
	raw := append(append(msg(`Content-Type: multipart/mixed; boundary="b"`, ""), bytes.Repeat(part, 3)...), "--b--"...)
	m := Build(raw, sdk.Message{}, manifest.Permissions{ReadAttachments: manifest.AttachmentsFull})
	if len(m.Attachments) != 3 {
		t.Fatalf("%d attachments", len(m.Attachments))
	}
	for i, want := range []int{10 << 20, 6 << 20, 0} {
		a := m.Attachments[i]
		if len(a.Content) != want || a.Size != 10<<20 || a.Truncated != (i > 0) {
			t.Errorf("attachment %d: %d bytes, size %d, truncated %v", i+1, len(a.Content), a.Size, a.Truncated)
		}
	}
}

// check fails t unless m keeps the limits and is valid UTF-8 JSON.
func check(t *testing.T, m sdk.Message) {
	t.Helper()
	if _, err := json.Marshal(m); err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	valid := func(what, s string) {
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8: %q", what, s)
		}
	}
	if len(m.Headers) > MaxHeaders {
		t.Errorf("%d headers", len(m.Headers))
	}
	for _, h := range m.Headers {
		valid("header name", h.Name)
		valid("header value", h.Value)
		if len(h.Value) > MaxHeaderValueBytes {
			t.Errorf("header value of %d bytes", len(h.Value))
		}
	}
	if m.Body != nil {
		valid("text", m.Body.Text)
		valid("html", m.Body.HTML)
		if len(m.Body.Text) > MaxBodyBytes || len(m.Body.HTML) > MaxBodyBytes {
			t.Errorf("body of %d and %d bytes", len(m.Body.Text), len(m.Body.HTML))
		}
	}
	total := 0
	for i, a := range m.Attachments {
		valid("file name", a.Filename)
		valid("content type", a.ContentType)
		if a.Index != i+1 || int64(len(a.Content)) > a.Size {
			t.Errorf("attachment %d: %+v", i+1, a)
		}
		total += len(a.Content)
	}
	if total > MaxAttachmentBytes || len(m.Attachments) > MaxParts {
		t.Errorf("%d attachments with %d bytes", len(m.Attachments), total)
	}
}

func FuzzBuild(f *testing.F) {
	f.Add(markers)
	f.Add([]byte("Subject: =?ISO-2022-JP?B?GyRCMnFERBsoQg==?=\r\n\r\nbody"))
	f.Add(msg(`Content-Type: multipart/alternative; boundary="a"`, "", "--a", "Content-Type: text/html", "Content-Transfer-Encoding: quoted-printable", "", "<p>a=3Db</p>", "--a--"))
	f.Add([]byte("just text\n\nmore"))
	preview := manifest.Permissions{ReadHeaders: true, ReadBody: manifest.BodyPreview, ReadAttachments: manifest.AttachmentsPreview}
	f.Fuzz(func(t *testing.T, raw []byte) {
		check(t, Build(raw, sdk.Message{}, all))
		m := Build(raw, sdk.Message{}, preview)
		check(t, m)
		if len(m.Body.Text) > sdk.PreviewBytes || m.Body.HTML != "" {
			t.Errorf("preview body: %d bytes text, %d html", len(m.Body.Text), len(m.Body.HTML))
		}
		for _, a := range m.Attachments {
			if len(a.Content) > sdk.PreviewBytes {
				t.Errorf("preview attachment of %d bytes", len(a.Content))
			}
		}
		if none := Build(raw, sdk.Message{}, manifest.Permissions{}); none.Headers != nil || none.Body != nil || none.Attachments != nil {
			t.Errorf("no permissions: %+v", none)
		}
	})
}
