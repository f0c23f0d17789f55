package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestEventJSON(t *testing.T) {
	ev := Event{
		Version: EventVersion, Hook: HookPostReceive, PluginID: "p", EventID: "e1", Attempt: 2,
		Message: Message{
			ID: 7, User: "u@example.com", Folder: "INBOX", Size: 10,
			ReceivedAt:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			Attachments: []Attachment{{Index: 0, ContentType: "text/plain", Size: 3, Content: []byte("abc")}},
		},
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"plugin_id":"p"`, `"event_id":"e1"`, `"received_at":"2025-01-02T03:04:05Z"`, `"content":"YWJj"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %s", data, want)
		}
	}
	for _, absent := range []string{`"headers"`, `"body"`} {
		if strings.Contains(string(data), absent) {
			t.Errorf("%s has %s", data, absent)
		}
	}
	var back Event
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Message.ReceivedAt != ev.Message.ReceivedAt || string(back.Message.Attachments[0].Content) != "abc" {
		t.Errorf("round trip: %+v", back)
	}
}

func TestValidate(t *testing.T) {
	many := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprint("t", i)
		}
		return s
	}
	meta := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprint("k", i)] = "v"
		}
		return m
	}
	ok := []Result{
		{},
		{Tags: many(MaxTags), MoveTo: strings.Repeat("x", MaxMoveToBytes), Metadata: meta(MaxMetadataKeys), Log: strings.Repeat("l", MaxLogBytes)},
		{Tags: []string{strings.Repeat("é", MaxTagBytes/2), "with space", "日本"}},
		{Metadata: map[string]string{strings.Repeat("k", MaxMetaKeyBytes): strings.Repeat("v", MaxMetaValueBytes)}},
		{Metadata: map[string]string{"multi": "line\none"}},
	}
	for i, r := range ok {
		if err := r.Validate(); err != nil {
			t.Errorf("ok[%d]: %v", i, err)
		}
	}
	bad := []struct {
		r    Result
		want string
	}{
		{Result{Tags: many(MaxTags + 1)}, "tags: 33 tags, more than 32"},
		{Result{Tags: []string{"a", "b", "c", strings.Repeat("x", 65)}}, "tags[3]: longer than 64 bytes"},
		{Result{Tags: []string{""}}, "tags[0]: empty"},
		{Result{Tags: []string{"a\nb"}}, "tags[0]: not printable UTF-8"},
		{Result{Tags: []string{"a\x00"}}, "tags[0]: not printable UTF-8"},
		{Result{Tags: []string{"a\u200bb"}}, "tags[0]: not printable UTF-8"},
		{Result{Tags: []string{"\xff"}}, "tags[0]: not printable UTF-8"},
		{Result{MoveTo: strings.Repeat("x", 256)}, "move_to: longer than 255 bytes"},
		{Result{MoveTo: "Junk\r"}, "move_to: not printable UTF-8"},
		{Result{Metadata: meta(MaxMetadataKeys + 1)}, "metadata: 33 keys, more than 32"},
		{Result{Metadata: map[string]string{strings.Repeat("k", 65): ""}}, "metadata key \"kkkk"},
		{Result{Metadata: map[string]string{"a\tb": ""}}, `metadata key "a\tb": not printable UTF-8`},
		{Result{Metadata: map[string]string{"k": strings.Repeat("v", 1025)}}, `metadata["k"]: longer than 1024 bytes`},
		{Result{Metadata: map[string]string{"k": "\xff"}}, `metadata["k"]: not valid UTF-8`},
		{Result{Log: strings.Repeat("l", 4097)}, "log: longer than 4096 bytes"},
	}
	for i, c := range bad {
		err := c.r.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("bad[%d]: got %v, want %q", i, err, c.want)
		}
	}
}

func TestDecodeResult(t *testing.T) {
	res, err := DecodeResult(strings.NewReader(` {"tags":["a","b"],"move_to":"Junk","metadata":{"k":"v"},"log":"hi"}`+"\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tags) != 2 || res.MoveTo != "Junk" || res.Metadata["k"] != "v" || res.Log != "hi" {
		t.Errorf("got %+v", res)
	}
	if res, err := DecodeResult(strings.NewReader(`{}`), 2); err != nil || res.Tags != nil {
		t.Errorf("{} at the limit: %+v, %v", res, err)
	}

	big := `{"log":"` + strings.Repeat("x", 100) + `"}`
	if _, err := DecodeResult(strings.NewReader(big), int64(len(big)-1)); !errors.Is(err, ErrResultTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	if _, err := DecodeResult(strings.NewReader(strings.Repeat(" ", MaxResultBytes+1)), 0); !errors.Is(err, ErrResultTooLarge) {
		t.Errorf("over the default limit: %v", err)
	}

	for _, in := range []string{
		``, ` `, `null`, `[]`, `"x"`, `1`, `{`, `{"tags":}`, `{"tags":"a"}`,
		`{"unknown":1}`, `{"tags":["a"]} {}`, `{} x`, `{}}`, `{"tags":[""]}`,
		`{"tags":["a\u0000"]}`, `{"log":"` + strings.Repeat("x", 5000) + `"}`,
		"\x00\xff{", `{"metadata":{"k":1}}`,
	} {
		_, err := DecodeResult(strings.NewReader(in), 0)
		if !errors.Is(err, ErrInvalidResult) {
			t.Errorf("%.40q: got %v, want ErrInvalidResult", in, err)
		}
	}
	_, err = DecodeResult(strings.NewReader(`{"tags":["a","b","c","`+strings.Repeat("x", 65)+`"]}`), 0)
	if err == nil || !strings.Contains(err.Error(), "tags[3]: longer than 64 bytes") {
		t.Errorf("field not named: %v", err)
	}
}

func FuzzDecodeResult(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"tags":["a"],"move_to":"Junk","metadata":{"k":"v"},"log":"x"}`,
		`null`, `{"tags":[1]}`, `{} {}`, `{"tags":["\u0000"]}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := DecodeResult(bytes.NewReader(data), 1024)
		if err != nil {
			if res.Tags != nil || res.MoveTo != "" || res.Metadata != nil || res.Log != "" {
				t.Fatalf("result with an error: %+v", res)
			}
			return
		}
		if err := res.Validate(); err != nil {
			t.Fatalf("accepted an invalid result: %v", err)
		}
		// What was accepted encodes and decodes to the same.
		out, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeResult(bytes.NewReader(out), MaxResultBytes)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		out2, _ := json.Marshal(again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable: %s vs %s", out, out2)
		}
	})
}
