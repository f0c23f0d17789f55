package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/plugins/sdk"
)

// TestArchive runs the plugin as the agent would (one event on stdin, one
// result on stdout) and reads the copy back.
func TestArchive(t *testing.T) {
	dir := t.TempDir()
	ev := sdk.Event{Version: sdk.EventVersion, Hook: "post_receive", PluginID: "archive", EventID: "9", Attempt: 1, Message: sdk.Message{
		ID: 42, User: "alice@example.test", ReceivedAt: time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC),
		Headers:     []sdk.Header{{Name: "Subject", Value: "請求書"}},
		Body:        &sdk.Body{Text: "本文", HTML: "<p>本文</p>"},
		Attachments: []sdk.Attachment{{Index: 1, Filename: "a.pdf", ContentType: "application/pdf", Size: 3, Content: []byte("PDF")}},
	}}
	in, _ := json.Marshal(ev)
	var out bytes.Buffer
	if err := sdk.RunStdin(context.Background(), bytes.NewReader(in), &out, archive(dir)); err != nil {
		t.Fatal(err)
	}
	res, err := sdk.DecodeResult(&out, 0)
	if err != nil || res.Metadata["archived_as"] != filepath.Join("archive", "2026-11", "42.json") {
		t.Fatalf("result %+v, %v", res, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, res.Metadata["archived_as"]))
	if err != nil {
		t.Fatal(err)
	}
	var m sdk.Message
	if err := json.Unmarshal(data, &m); err != nil || m.Headers[0].Value != "請求書" || m.Body.HTML != "<p>本文</p>" || string(m.Attachments[0].Content) != "PDF" {
		t.Fatalf("archived copy %+v, %v", m, err)
	}
}
