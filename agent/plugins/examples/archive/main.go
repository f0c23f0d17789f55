// Command archive is an example MaiRust stdin plugin: it stores a copy of
// each new message, as the SDK gives it (decoded headers, text and HTML
// bodies, attachments), under archive/YYYY-MM/<id>.json in its working
// directory, and records where in the message's metadata.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mairust/mairust/agent/plugins/sdk"
)

// archive writes ev's message below dir and returns the result naming it.
func archive(dir string) sdk.PluginFunc {
	return func(_ context.Context, ev sdk.Event) (sdk.Result, error) {
		m := ev.Message
		rel := filepath.Join("archive", m.ReceivedAt.UTC().Format("2006-01"), strconv.FormatInt(m.ID, 10)+".json")
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return sdk.Result{}, err
		}
		data, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return sdk.Result{}, err
		}
		// Written aside and renamed: a retried event replaces a whole copy.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return sdk.Result{}, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return sdk.Result{}, err
		}
		return sdk.Result{Metadata: map[string]string{"archived_as": rel}, Log: fmt.Sprintf("archived %d bytes", len(data))}, nil
	}
}

func main() {
	// The agent runs the plugin in its working directory.
	sdk.ServeStdin(archive("."))
}
