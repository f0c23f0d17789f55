package sdk_test

import (
	"context"
	"net/http"
	"os"

	"github.com/mairust/mairust/agent/plugins/sdk"
)

// A plugin that files newsletters, served over HTTP.
func ExampleHTTPHandler() {
	fn := func(_ context.Context, ev sdk.Event) (sdk.Result, error) {
		for _, h := range ev.Message.Headers {
			if h.Name == "List-Unsubscribe" {
				return sdk.Result{Tags: []string{"newsletter"}, MoveTo: "Newsletters"}, nil
			}
		}
		return sdk.Result{}, nil
	}
	mux := http.NewServeMux()
	mux.Handle("POST /mairust", sdk.HTTPHandler("newsletters", []byte(os.Getenv("MAIRUST_PLUGIN_SECRET")), fn))
	// http.ListenAndServe(":8080", mux)
}

// The same plugin as a stdin plugin: the agent runs the program per event.
func ExampleServeStdin() {
	sdk.ServeStdin(func(_ context.Context, ev sdk.Event) (sdk.Result, error) {
		return sdk.Result{Log: "saw " + ev.EventID}, nil
	})
}
