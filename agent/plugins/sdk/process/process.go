// Package process serves a MaiRust plugin of kind "process": a long-running
// program that the agent starts once and calls over gRPC, through
// hashicorp/go-plugin, for each event. The event and the result travel as
// the JSON of the sdk package's types (see proto/plugin/v1/plugin.proto).
//
// A plugin's main is one line:
//
//	func main() { process.Serve(classify) }
//
// Run by hand, the program says it is a plugin and exits: only the agent,
// which passes the handshake, can start it. What the plugin writes to its
// standard output and error goes to the plugin's log.
package process

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mairust/mairust/agent/plugins/sdk"
	pluginv1 "github.com/mairust/mairust/proto/plugin/v1"
)

// Handshake is what the agent and a process plugin check before talking:
// the agent sets the magic cookie in the plugin's environment, and both
// sides must speak ProtocolVersion.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "MAIRUST_PLUGIN",
	MagicCookieValue: "d3b6c1a0-mairust-process-plugin-v1",
}

// PluginName is the name the plugin is served and dispensed under.
const PluginName = "hook"

// Health statuses, as reported by a [HealthFunc].
const (
	StatusOK       = "ok"
	StatusDegraded = "degraded"
	StatusError    = "error"
)

// Wire limits: the gRPC messages wrap an encoded Event or Result.
const (
	MaxRequestBytes = sdk.MaxEventBytes + 1<<10
	MaxReplyBytes   = sdk.MaxResultBytes + 1<<10
)

// HealthFunc reports a plugin's health: StatusOK, StatusDegraded or
// StatusError and a short detail for people.
type HealthFunc func(context.Context) (status, detail string)

// Option changes how [Serve] serves a plugin.
type Option func(*server)

// WithHealth answers the agent's health checks with h. Without it the
// plugin is ok whenever it answers.
func WithHealth(h HealthFunc) Option { return func(s *server) { s.health = h } }

// Serve serves fn as a process plugin until the agent stops it, then exits.
func Serve(fn sdk.PluginFunc, opts ...Option) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Impl: NewServer(fn, opts...)}},
		GRPCServer: func(o []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(o, grpc.MaxRecvMsgSize(MaxRequestBytes))...)
		},
		// go-plugin's own messages, as JSON on the real standard error; the
		// agent forwards warnings and errors to the plugin's log.
		Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn, JSONFormat: true}),
	})
}

// NewServer returns the gRPC service that [Serve] serves: it decodes each
// event, calls fn and encodes its result, refusing one that
// [sdk.Result.Validate] refuses.
func NewServer(fn sdk.PluginFunc, opts ...Option) pluginv1.PluginServer {
	s := &server{fn: fn}
	for _, o := range opts {
		o(s)
	}
	return s
}

type server struct {
	pluginv1.UnimplementedPluginServer
	fn     sdk.PluginFunc
	health HealthFunc
}

func (s *server) PostReceive(ctx context.Context, req *pluginv1.EventRequest) (*pluginv1.ResultReply, error) {
	var ev sdk.Event
	if err := json.Unmarshal(req.GetEventJson(), &ev); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad event: %v", err)
	}
	if ev.Version != sdk.EventVersion {
		return nil, status.Errorf(codes.InvalidArgument, "event version %d, this plugin speaks %d", ev.Version, sdk.EventVersion)
	}
	res, err := s.fn(ctx, ev)
	if err != nil {
		return nil, status.Error(codes.Unknown, err.Error())
	}
	if err := res.Validate(); err != nil {
		return nil, status.Errorf(codes.Internal, "%v: %v", sdk.ErrInvalidResult, err)
	}
	out, err := json.Marshal(res)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding the result: %v", err)
	}
	return &pluginv1.ResultReply{ResultJson: out}, nil
}

func (s *server) Health(ctx context.Context, _ *pluginv1.HealthRequest) (*pluginv1.HealthReply, error) {
	if s.health == nil {
		return &pluginv1.HealthReply{Status: pluginv1.HealthReply_STATUS_OK}, nil
	}
	st, detail := s.health(ctx)
	r := &pluginv1.HealthReply{Status: pluginv1.HealthReply_STATUS_ERROR, Detail: detail}
	switch st {
	case StatusOK:
		r.Status = pluginv1.HealthReply_STATUS_OK
	case StatusDegraded:
		r.Status = pluginv1.HealthReply_STATUS_DEGRADED
	case StatusError:
	default:
		r.Detail = fmt.Sprintf("unknown health status %q: %s", st, detail)
	}
	return r, nil
}

// GRPCPlugin is the go-plugin glue of the plugin service, for both sides:
// the plugin serves Impl, the agent dispenses a [pluginv1.PluginClient].
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl pluginv1.PluginServer // served on the plugin side; unused by the agent
}

// GRPCServer registers p.Impl.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginv1.RegisterPluginServer(s, p.Impl)
	return nil
}

// GRPCClient returns a [pluginv1.PluginClient] on c.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pluginv1.NewPluginClient(c), nil
}
