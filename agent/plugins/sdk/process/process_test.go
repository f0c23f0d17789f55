package process

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/mairust/mairust/agent/plugins/sdk"
	pluginv1 "github.com/mairust/mairust/proto/plugin/v1"
)

// client serves srv through GRPCPlugin on an in-memory connection and
// returns the client the agent would dispense.
func client(t *testing.T, srv pluginv1.PluginServer) pluginv1.PluginClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	p := &GRPCPlugin{Impl: srv}
	if err := p.GRPCServer(nil, s); err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := p.GRPCClient(context.Background(), nil, conn)
	if err != nil {
		t.Fatal(err)
	}
	return c.(pluginv1.PluginClient)
}

func event(t *testing.T, ev sdk.Event) *pluginv1.EventRequest {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return &pluginv1.EventRequest{EventJson: b}
}

func wantCode(t *testing.T, err error, code codes.Code, text string) {
	t.Helper()
	if st := status.Convert(err); st.Code() != code || !strings.Contains(st.Message(), text) {
		t.Errorf("error %v, want %s mentioning %q", err, code, text)
	}
}

func TestPostReceive(t *testing.T) {
	c := client(t, NewServer(func(_ context.Context, ev sdk.Event) (sdk.Result, error) {
		switch ev.EventID {
		case "fail":
			return sdk.Result{}, errors.New("model not loaded")
		case "invalid":
			return sdk.Result{Tags: []string{""}}, nil
		}
		return sdk.Result{Tags: []string{"seen-" + ev.EventID}, Metadata: map[string]string{"k": "v"}}, nil
	}))
	ctx := context.Background()
	ev := sdk.Event{Version: sdk.EventVersion, Hook: sdk.HookPostReceive, PluginID: "p", EventID: "e1", Attempt: 1}

	r, err := c.PostReceive(ctx, event(t, ev))
	if err != nil {
		t.Fatal(err)
	}
	res, err := sdk.DecodeResult(strings.NewReader(string(r.GetResultJson())), 0)
	if err != nil || res.Tags[0] != "seen-e1" || res.Metadata["k"] != "v" {
		t.Errorf("result %+v, %v", res, err)
	}

	_, err = c.PostReceive(ctx, &pluginv1.EventRequest{EventJson: []byte("{")})
	wantCode(t, err, codes.InvalidArgument, "bad event")
	old := ev
	old.Version = 99
	_, err = c.PostReceive(ctx, event(t, old))
	wantCode(t, err, codes.InvalidArgument, "event version 99")
	ev.EventID = "fail"
	_, err = c.PostReceive(ctx, event(t, ev))
	wantCode(t, err, codes.Unknown, "model not loaded")
	ev.EventID = "invalid"
	_, err = c.PostReceive(ctx, event(t, ev))
	wantCode(t, err, codes.Internal, "tags[0]: empty")
}

func TestHealth(t *testing.T) {
	ctx := context.Background()
	nop := func(context.Context, sdk.Event) (sdk.Result, error) { return sdk.Result{}, nil }
	for _, tc := range []struct {
		health     HealthFunc
		want       pluginv1.HealthReply_Status
		wantDetail string
	}{
		{nil, pluginv1.HealthReply_STATUS_OK, ""},
		{func(context.Context) (string, string) { return StatusOK, "fine" }, pluginv1.HealthReply_STATUS_OK, "fine"},
		{func(context.Context) (string, string) { return StatusDegraded, "slow" }, pluginv1.HealthReply_STATUS_DEGRADED, "slow"},
		{func(context.Context) (string, string) { return StatusError, "down" }, pluginv1.HealthReply_STATUS_ERROR, "down"},
		{func(context.Context) (string, string) { return "meh", "?" }, pluginv1.HealthReply_STATUS_ERROR, `unknown health status "meh": ?`},
	} {
		var opts []Option
		if tc.health != nil {
			opts = append(opts, WithHealth(tc.health))
		}
		r, err := client(t, NewServer(nop, opts...)).Health(ctx, &pluginv1.HealthRequest{})
		if err != nil || r.GetStatus() != tc.want || r.GetDetail() != tc.wantDetail {
			t.Errorf("health %v %q %v, want %v %q", r.GetStatus(), r.GetDetail(), err, tc.want, tc.wantDetail)
		}
	}
}
