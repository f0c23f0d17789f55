// Command webhook is an example MaiRust HTTP plugin: for each new message
// it posts a summary (recipient, sender, subject, the start of the text)
// as JSON to a webhook, and answers nothing for MaiRust to apply. It checks
// every request's signature with the SDK.
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mairust/mairust/agent/plugins/sdk"
)

// Summary is what the webhook receives.
type Summary struct {
	MessageID int64  `json:"message_id"`
	User      string `json:"user"`
	From      string `json:"from"`
	Subject   string `json:"subject"`
	Preview   string `json:"preview"`
}

// summarize builds the summary of one event.
func summarize(ev sdk.Event) Summary {
	s := Summary{MessageID: ev.Message.ID, User: ev.Message.User}
	for _, h := range ev.Message.Headers {
		switch strings.ToLower(h.Name) {
		case "from":
			s.From = h.Value
		case "subject":
			s.Subject = h.Value
		}
	}
	if ev.Message.Body != nil {
		s.Preview = ev.Message.Body.Text
		if len(s.Preview) > 280 {
			s.Preview = strings.ToValidUTF8(s.Preview[:280], "") + "…"
		}
	}
	return s
}

// forward returns the plugin function posting summaries to url.
func forward(client *http.Client, url string) sdk.PluginFunc {
	return func(ctx context.Context, ev sdk.Event) (sdk.Result, error) {
		body, err := json.Marshal(summarize(ev))
		if err != nil {
			return sdk.Result{}, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return sdk.Result{}, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return sdk.Result{}, fmt.Errorf("webhook: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return sdk.Result{}, fmt.Errorf("webhook answered %s", resp.Status)
		}
		return sdk.Result{Log: "forwarded to the webhook"}, nil
	}
}

// handler serves the plugin at /event and its health at /health.
func handler(secret []byte, webhook string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/event", sdk.HTTPHandler("webhook", secret, forward(&http.Client{Timeout: 5 * time.Second}, webhook)))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"status":"ok"}`)
	})
	return mux
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8125", "address to serve the plugin on")
	webhook := flag.String("webhook", "", "URL the summaries are posted to")
	flag.Parse()
	secret, err := hex.DecodeString(os.Getenv("MAIRUST_PLUGIN_SECRET"))
	if err != nil || len(secret) == 0 || *webhook == "" {
		log.Fatal("set MAIRUST_PLUGIN_SECRET to the secret mairust plugin install printed, and -webhook to the URL to post to")
	}
	srv := &http.Server{Addr: *listen, Handler: handler(secret, *webhook), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
