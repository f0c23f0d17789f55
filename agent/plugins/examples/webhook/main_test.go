package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mairust/mairust/agent/hooks/runner"
	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
)

// TestWebhookThroughTheRunner: the agent's HTTP runner calls the plugin
// with a signed event, and the webhook gets the summary; a request signed
// with another secret is refused.
func TestWebhookThroughTheRunner(t *testing.T) {
	got := make(chan Summary, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s Summary
		json.NewDecoder(r.Body).Decode(&s)
		got <- s
	}))
	defer hook.Close()
	secret := []byte("0123456789abcdef0123456789abcdef")
	plugin := httptest.NewServer(handler(secret, hook.URL))
	defer plugin.Close()

	m, err := manifest.Load(".")
	if err != nil {
		t.Fatal(err)
	}
	m.URL = plugin.URL + "/event"
	ev := sdk.Event{Version: sdk.EventVersion, Hook: "post_receive", PluginID: "webhook", EventID: "1", Attempt: 1, Message: sdk.Message{
		ID: 7, User: "alice@example.test", ReceivedAt: time.Now(),
		Headers: []sdk.Header{{Name: "From", Value: "Bob <bob@remote.test>"}, {Name: "Subject", Value: "会議の件"}},
		Body:    &sdk.Body{Text: "明日の会議は10時からです。"},
	}}
	r, err := runner.NewHTTP(m, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background(), ev)
	if err != nil || res.Log != "forwarded to the webhook" {
		t.Fatalf("run: %+v, %v", res, err)
	}
	s := <-got
	if s.MessageID != 7 || s.Subject != "会議の件" || s.From != "Bob <bob@remote.test>" || s.Preview != "明日の会議は10時からです。" {
		t.Fatalf("summary %+v", s)
	}
	wrong, err := runner.NewHTTP(m, []byte("another secret, 32 bytes long..."), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Run(context.Background(), ev); err == nil {
		t.Fatal("a request signed with another secret was accepted")
	}
}
