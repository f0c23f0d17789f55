package mailparse

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

// msg joins header lines with CRLF and ends the header section.
func msg(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n\r\nbody\r\n" }

func TestParseHeader(t *testing.T) {
	jst := time.FixedZone("", 9*3600)
	tests := []struct {
		name string
		in   string
		want Header
	}{
		{
			name: "plain ASCII",
			in: msg("From: Alice Example <alice@example.com>", "To: bob@example.net, Carol <carol@example.org>",
				"Cc: dave@example.com", "Subject: Hello there", "Message-ID: <1234.5678@mx.example.com>",
				"Date: Tue, 02 Jan 2024 15:04:05 +0900"),
			want: Header{From: "Alice Example <alice@example.com>", To: "bob@example.net, Carol <carol@example.org>",
				Cc: "dave@example.com", Subject: "Hello there", MessageID: "1234.5678@mx.example.com",
				Date: time.Date(2024, 1, 2, 15, 4, 5, 0, jst)},
		},
		{
			name: "ISO-2022-JP subject and name",
			in: msg("Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsJE43b0w+GyhC?=",
				"From: =?ISO-2022-JP?B?GyRCOzNFRBsoQiAbJEJCQE86GyhC?= <taro@example.jp>"),
			want: Header{Subject: "日本語の件名", From: "山田 太郎 <taro@example.jp>"},
		},
		{
			name: "lower-case charset name",
			in:   msg("Subject: =?iso-2022-jp?b?GyRCRnxLXDhsJE43b0w+GyhC?="),
			want: Header{Subject: "日本語の件名"},
		},
		{
			name: "Shift_JIS and EUC-JP",
			in:   msg("Subject: =?Shift_JIS?B?ie+LY4LMgqiSbYLngrk=?= =?EUC-JP?B?xey1/g==?="),
			want: Header{Subject: "会議のお知らせ東京"},
		},
		{
			name: "UTF-8 B and Q",
			in:   msg("Subject: =?UTF-8?B?44GT44KT44Gr44Gh44Gv5LiW55WM?= and =?UTF-8?Q?Caf=C3=A9_d=C3=A9j=C3=A0_vu?="),
			want: Header{Subject: "こんにちは世界 and Café déjà vu"},
		},
		{
			name: "folded subject",
			in: msg("Subject: =?ISO-2022-JP?B?GyRCRDkkJDdvTD4kTkEwSD4bKEI=?=",
				" =?ISO-2022-JP?B?GyRCJEg4ZUg+JEckORsoQg==?=", "\t(end)"),
			want: Header{Subject: "長い件名の前半と後半です (end)"},
		},
		{
			name: "folded plain subject and address list",
			in:   msg("Subject: a long", "   subject", "To: a@example.com,", "\tb@example.com"),
			want: Header{Subject: "a long subject", To: "a@example.com, b@example.com"},
		},
		{
			name: "invalid encoded words left as they are",
			in:   msg("Subject: =?UTF-8?B?!!!?= and =?X-UNKNOWN?Q?abc?="),
			want: Header{Subject: "=?UTF-8?B?!!!?= and =?X-UNKNOWN?Q?abc?="},
		},
		{
			name: "raw UTF-8 and quoted name with specials",
			in:   msg("From: \"Doe, John\" <john@example.com>", "To: 山田 太郎 <taro@example.jp>", "Subject: 件名そのまま"),
			want: Header{From: `"Doe, John" <john@example.com>`, To: "山田 太郎 <taro@example.jp>", Subject: "件名そのまま"},
		},
		{
			name: "encoded word inside quotes",
			in:   msg(`From: "=?UTF-8?B?5bGx55Sw?=" <yamada@example.jp>`),
			want: Header{From: "山田 <yamada@example.jp>"},
		},
		{
			name: "malformed address list falls back to the text",
			in:   msg("From: =?UTF-8?Q?Caf=C3=A9?= <broken@", "To: undisclosed-recipients:;"),
			want: Header{From: "Café <broken@", To: "undisclosed-recipients:;"},
		},
		{
			name: "missing headers",
			in:   msg("X-Other: 1"),
			want: Header{},
		},
		{
			name: "bad date",
			in:   msg("Date: yesterday at noon", "Subject: s"),
			want: Header{Subject: "s"},
		},
		{
			name: "date with comment and obsolete zone",
			in:   msg("Date: Thu, 20 Nov 1997 09:55:06 GMT (comment)"),
			want: Header{Date: time.Date(1997, 11, 20, 9, 55, 6, 0, time.UTC)},
		},
		{
			name: "first occurrence wins, case-insensitive names",
			in:   msg("SUBJECT: first", "subject: second", "message-id:  <a@b> ", "Message-ID: <c@d>"),
			want: Header{Subject: "first", MessageID: "a@b"},
		},
		{
			name: "message id without brackets",
			in:   msg("Message-ID: abc@example"),
			want: Header{MessageID: "abc@example"},
		},
		{
			name: "LF line ends, junk lines, space before colon",
			in:   "From mbox-line Sat Jan  1 00:00:00 2000\n continuation of nothing\nnot a field\nSubject : hi\n\nbody",
			want: Header{Subject: "hi"},
		},
		{
			name: "header without body",
			in:   "Subject: only a header",
			want: Header{Subject: "only a header"},
		},
		{
			name: "fields after the blank line are body",
			in:   "Subject: s\r\n\r\nFrom: body@example.com\r\n",
			want: Header{Subject: "s"},
		},
		{
			name: "control characters and invalid UTF-8",
			in:   msg("Subject: a=?UTF-8?Q?=0D=0Ab=00c?= d\x00e\xff", "To: =?UTF-8?Q?x=0Ay?= <x@example.com>"),
			want: Header{Subject: "a  b c d e\uFFFD", To: "x y <x@example.com>"},
		},
		{
			name: "empty input",
			in:   "",
			want: Header{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseHeader(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Date.Equal(tt.want.Date) {
				t.Errorf("Date = %v, want %v", got.Date, tt.want.Date)
			}
			got.Date, tt.want.Date = time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	fields := func(n int) string {
		return strings.Repeat("X-F: v\r\n", n-1) + "Subject: last\r\n\r\n"
	}
	if h, err := ParseHeader(strings.NewReader(fields(MaxFields))); err != nil || h.Subject != "last" {
		t.Errorf("%d fields: %+v, %v", MaxFields, h, err)
	}
	if _, err := ParseHeader(strings.NewReader(fields(MaxFields + 1))); !errors.Is(err, ErrTooManyFields) {
		t.Errorf("%d fields: %v, want ErrTooManyFields", MaxFields+1, err)
	}

	// A header section of exactly MaxHeaderBytes, in one long folded field.
	exact := func(size int, end string) string {
		head := "Subject: x\r\nX-Long: "
		return head + strings.Repeat("a", size-len(head)-2) + "\r\n" + end
	}
	for _, end := range []string{"\r\n", "\n", ""} {
		if h, err := ParseHeader(strings.NewReader(exact(MaxHeaderBytes, end))); err != nil || h.Subject != "x" {
			t.Errorf("header of MaxHeaderBytes ending %q: %+v, %v", end, h, err)
		}
		if _, err := ParseHeader(strings.NewReader(exact(MaxHeaderBytes+1, end))); !errors.Is(err, ErrHeaderTooLarge) {
			t.Errorf("header of MaxHeaderBytes+1 ending %q: %v, want ErrHeaderTooLarge", end, err)
		}
	}
	// An endless header line is refused without reading everything.
	endless := io.MultiReader(strings.NewReader("Subject: "), neverEnding('a'))
	if _, err := ParseHeader(io.LimitReader(endless, 64<<20)); !errors.Is(err, ErrHeaderTooLarge) {
		t.Errorf("endless header: %v", err)
	}

	long := strings.Repeat("あ", 400) // 1200 bytes
	h, err := ParseHeader(strings.NewReader(msg("Subject: "+long, "To: "+strings.Repeat("someone@example.com, ", 1000))))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Subject) > MaxSubjectBytes || !utf8.ValidString(h.Subject) || h.Subject != strings.Repeat("あ", MaxSubjectBytes/3) {
		t.Errorf("subject capped to %d bytes: %q", len(h.Subject), h.Subject)
	}
	if len(h.To) > MaxAddressBytes || len(h.To) < MaxAddressBytes-30 || strings.HasSuffix(h.To, " ") {
		t.Errorf("To capped to %d bytes", len(h.To))
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("Subject: x\r\n"), iotest.ErrReader(boom))
	if _, err := ParseHeader(r); !errors.Is(err, boom) {
		t.Errorf("got %v, want the read error", err)
	}
}

func TestBufioReaderLeftAtBody(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("Subject: s\r\n\r\nthe body"))
	if _, err := ParseHeader(br); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "the body" {
		t.Errorf("left %q, want the body", rest)
	}
}

func FuzzParseHeader(f *testing.F) {
	for _, seed := range []string{
		"",
		msg("From: Alice <a@example.com>", "Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsJE43b0w+GyhC?=", "Date: Tue, 02 Jan 2024 15:04:05 +0900"),
		msg("To: \"=?UTF-8?B?5bGx55Sw?=\" <y@example.jp>, (comment) b@example.com", "Cc: group: a@b, c@d;"),
		msg("Subject: =?UTF-8?Q?=0D=0A=00?=", "Message-ID: <(((a@b>"),
		msg("Subject: =?Shift_JIS?B?ie+LY4LMgqiSbYLngrk=?=", " =?EUC-JP?B?xey1/g==?="),
		"\tcontinuation\r\nSubject\r\n:\r\n\r\n",
		"Subject: \xff\xfe\r\nFrom: \x80 <\x81@x>\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(strings.NewReader(string(data)))
		if err != nil {
			if !errors.Is(err, ErrTooManyFields) && !errors.Is(err, ErrHeaderTooLarge) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		for name, v := range map[string]string{"From": h.From, "To": h.To, "Cc": h.Cc, "Subject": h.Subject, "MessageID": h.MessageID} {
			if strings.ContainsAny(v, "\r\n\x00") || !utf8.ValidString(v) {
				t.Fatalf("%s = %q", name, v)
			}
		}
		if len(h.Subject) > MaxSubjectBytes || len(h.MessageID) > MaxMessageIDBytes ||
			len(h.From) > MaxAddressBytes || len(h.To) > MaxAddressBytes || len(h.Cc) > MaxAddressBytes {
			t.Fatalf("field over its cap: %+v", h)
		}
	})
}
