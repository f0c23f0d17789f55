package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// PluginFunc is a plugin: it looks at an event and answers what to do.
type PluginFunc func(context.Context, Event) (Result, error)

// HTTPHandler serves fn as an HTTP plugin with the given id and secret. It
// answers 401 to requests that do not pass [Verify], 400 to a bad event,
// 500 with the error text if fn fails, and the Result as JSON otherwise.
func HTTPHandler(pluginID string, secret []byte, fn PluginFunc) http.Handler {
	return httpHandler(pluginID, secret, fn, time.Now)
}

func httpHandler(pluginID string, secret []byte, fn PluginFunc, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxEventBytes))
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				http.Error(w, "event too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "reading event: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := Verify(r.Header, body, pluginID, secret, now()); err != nil {
			http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		}
		var ev Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "bad event: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := checkEvent(ev, pluginID); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := run(r.Context(), fn, ev)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out, err := json.Marshal(res)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(out, '\n'))
	})
}

// ServeStdin serves fn as a stdin plugin: one Event from standard input, one
// Result as a JSON line on standard output. On failure it writes the error
// to standard error and exits with status 1.
func ServeStdin(fn PluginFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := RunStdin(ctx, os.Stdin, os.Stdout, fn)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "plugin:", err)
		os.Exit(1)
	}
}

// RunStdin is [ServeStdin] on r and w, returning the error.
func RunStdin(ctx context.Context, r io.Reader, w io.Writer, fn PluginFunc) error {
	lr := &io.LimitedReader{R: r, N: MaxEventBytes + 1}
	var ev Event
	if err := json.NewDecoder(lr).Decode(&ev); err != nil {
		if lr.N <= 0 {
			return fmt.Errorf("event larger than %d bytes", MaxEventBytes)
		}
		return fmt.Errorf("bad event: %w", err)
	}
	if err := checkEvent(ev, ""); err != nil {
		return err
	}
	res, err := run(ctx, fn, ev)
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(res)
}

// checkEvent refuses an event of another version or, if pluginID is set,
// for another plugin.
func checkEvent(ev Event, pluginID string) error {
	if ev.Version != EventVersion {
		return fmt.Errorf("event version %d, this plugin speaks %d", ev.Version, EventVersion)
	}
	if pluginID != "" && ev.PluginID != pluginID {
		return fmt.Errorf("event is for plugin %q, this is %q", ev.PluginID, pluginID)
	}
	return nil
}

// run calls fn and checks its result, so a plugin author sees a result the
// agent would refuse.
func run(ctx context.Context, fn PluginFunc, ev Event) (Result, error) {
	res, err := fn(ctx, ev)
	if err != nil {
		return Result{}, err
	}
	if err := res.Validate(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalidResult, err)
	}
	return res, nil
}
