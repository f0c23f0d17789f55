// Package runner calls one plugin with one event and returns its result:
// stdin commands, HTTP endpoints and long-running process plugins (go-plugin
// over gRPC). It enforces the timeout, output limits and process isolation;
// it does not decide what a plugin may see or do.
package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mairust/mairust/agent/plugins/sdk"
)

// Runner calls a plugin. Run returns a *Failure when the plugin failed, or
// an error wrapping ctx's error when ctx was cancelled before it answered.
type Runner interface {
	Run(ctx context.Context, ev sdk.Event) (sdk.Result, error)
}

// Reasons of a [Failure]; callers count failures by them.
const (
	ReasonTimeout     = "timeout"     // no answer within the timeout (or ctx's deadline)
	ReasonCrash       = "crash"       // non-zero exit or killed by a signal
	ReasonGarbage     = "garbage"     // an answer that is not a valid Result
	ReasonFlood       = "flood"       // more output than sdk.MaxResultBytes
	ReasonRefused     = "refused"     // an HTTP status other than 200
	ReasonUnreachable = "unreachable" // the HTTP endpoint could not be reached
	ReasonBroken      = "broken"      // the command cannot be started: missing, outside its directory, checksum differs
)

// Failure is a failed plugin call.
type Failure struct {
	Plugin string // the plugin's id
	Reason string // one of the Reason constants
	Err    error
}

func (f *Failure) Error() string {
	return fmt.Sprintf("plugin %s: %s: %v", f.Plugin, f.Reason, f.Err)
}

func (f *Failure) Unwrap() error { return f.Err }

func fail(plugin, reason string, format string, args ...any) *Failure {
	return &Failure{Plugin: plugin, Reason: reason, Err: fmt.Errorf(format, args...)}
}

// errTimeout is the cause of a run's context when the plugin's timeout ends it.
var errTimeout = errors.New("plugin timeout")

// ctxFailure classifies the end of ctx, a run's context: the plugin's
// timeout or ctx's deadline is a timeout Failure, a cancellation is returned
// as is (the caller gave up; the plugin did nothing wrong).
func ctxFailure(ctx context.Context, plugin, timeout string) error {
	cause := context.Cause(ctx)
	if errors.Is(cause, errTimeout) || errors.Is(cause, context.DeadlineExceeded) {
		return &Failure{Plugin: plugin, Reason: ReasonTimeout, Err: fmt.Errorf("no answer in time (plugin timeout %s): %w", timeout, context.DeadlineExceeded)}
	}
	return fmt.Errorf("plugin %s: %w", plugin, cause)
}

// excerpt is a short, quoted prefix of b for error messages.
func excerpt(b []byte, n int) string {
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), string(utf8.RuneError))
	if len(b) > n {
		return fmt.Sprintf("%q...", s)
	}
	return fmt.Sprintf("%q", s)
}
