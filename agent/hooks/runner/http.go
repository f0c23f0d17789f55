package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/mairust/mairust/agent/plugins/manifest"
	"github.com/mairust/mairust/agent/plugins/sdk"
)

// HTTP posts each event to an HTTP plugin's URL, signed with sdk.Sign, and
// reads the result from a 200 answer. Redirects are not followed. Safe for
// concurrent use.
type HTTP struct {
	m      *manifest.Manifest
	secret []byte
	client *http.Client
}

var _ Runner = (*HTTP)(nil)

// NewHTTP returns the runner of m, an HTTP plugin, signing with secret. The
// client (a new one if nil) is copied, its redirects turned off; the
// manifest's timeout bounds each call whatever the client's own timeout.
func NewHTTP(m *manifest.Manifest, secret []byte, client *http.Client) (*HTTP, error) {
	if m.Kind != manifest.KindHTTP {
		return nil, fmt.Errorf("plugin %s: kind %q is not %q", m.ID, m.Kind, manifest.KindHTTP)
	}
	if m.URL == "" {
		return nil, fmt.Errorf("plugin %s: no url", m.ID)
	}
	if m.Timeout <= 0 {
		return nil, fmt.Errorf("plugin %s: no timeout", m.ID)
	}
	if len(secret) == 0 {
		return nil, fmt.Errorf("plugin %s: no signing secret (an HTTP plugin refuses unsigned events)", m.ID)
	}
	c := &http.Client{}
	if client != nil {
		*c = *client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &HTTP{m: m, secret: bytes.Clone(secret), client: c}, nil
}

// Run posts ev and decodes the answer.
func (h *HTTP) Run(ctx context.Context, ev sdk.Event) (sdk.Result, error) {
	m := h.m
	body, err := json.Marshal(ev)
	if err != nil {
		return sdk.Result{}, fmt.Errorf("plugin %s: encoding the event: %w", m.ID, err)
	}
	ctx, stop := context.WithTimeoutCause(ctx, m.Timeout, errTimeout)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL, bytes.NewReader(body))
	if err != nil {
		return sdk.Result{}, fail(m.ID, ReasonUnreachable, "%w", err)
	}
	sdk.Sign(req, m.ID, h.secret, body, time.Now())
	resp, err := h.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return sdk.Result{}, ctxFailure(ctx, m.ID, m.Timeout.String())
		}
		return sdk.Result{}, fail(m.ID, ReasonUnreachable, "%w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return sdk.Result{}, fail(m.ID, ReasonRefused, "%s answered %s: %s", m.URL, resp.Status, excerpt(bytes.TrimSpace(b), 200))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, sdk.MaxResultBytes+1))
	switch {
	case err != nil && ctx.Err() != nil:
		return sdk.Result{}, ctxFailure(ctx, m.ID, m.Timeout.String())
	case err != nil:
		return sdk.Result{}, fail(m.ID, ReasonUnreachable, "reading the answer: %w", err)
	case len(data) > sdk.MaxResultBytes:
		return sdk.Result{}, fail(m.ID, ReasonFlood, "answer longer than %d bytes", sdk.MaxResultBytes)
	}
	res, err := sdk.DecodeResult(bytes.NewReader(data), sdk.MaxResultBytes)
	if err != nil {
		return sdk.Result{}, fail(m.ID, ReasonGarbage, "%w; answer %s", err, excerpt(data, 200))
	}
	return res, nil
}
