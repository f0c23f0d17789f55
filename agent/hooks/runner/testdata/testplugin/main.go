// Command testplugin is a process plugin for the runner's tests. Its first
// argument is how it misbehaves: sleep (never answers), crash (panics during
// the call), garbage (answers what is not a Result), flood (answers too
// much), degraded (is unhealthy), child (starts a child that holds its
// standard error), dial (answers, in its metadata, whether it could open a
// TCP connection to each of its further arguments). Otherwise a second
// argument names a file to which it appends its pid when it starts (and
// then its child's).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/mairust/mairust/agent/plugins/sdk/process"
	pluginv1 "github.com/mairust/mairust/proto/plugin/v1"
)

type server struct {
	pluginv1.UnimplementedPluginServer
	mode string
}

func (s *server) PostReceive(ctx context.Context, _ *pluginv1.EventRequest) (*pluginv1.ResultReply, error) {
	switch s.mode {
	case "sleep":
		time.Sleep(time.Hour) // ignores ctx, as a stuck plugin would
	case "crash":
		panic("testplugin: crashing") // the trace goes to the real standard error
	case "garbage":
		fmt.Fprintln(os.Stderr, "testplugin: garbage coming")
		return &pluginv1.ResultReply{ResultJson: []byte("not json")}, nil
	case "flood":
		return &pluginv1.ResultReply{ResultJson: []byte(`{"log":"` + strings.Repeat("x", 1<<20) + `"}`)}, nil
	case "dial":
		md := map[string]string{}
		for _, addr := range os.Args[2:] {
			md[addr] = "ok"
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				md[addr] = "error: " + err.Error()
				continue
			}
			c.Close()
		}
		res, err := json.Marshal(map[string]any{"metadata": md})
		return &pluginv1.ResultReply{ResultJson: res}, err
	}
	return &pluginv1.ResultReply{ResultJson: []byte(`{"tags":["ok"]}`)}, nil
}

func (s *server) Health(context.Context, *pluginv1.HealthRequest) (*pluginv1.HealthReply, error) {
	if s.mode == "degraded" {
		return &pluginv1.HealthReply{Status: pluginv1.HealthReply_STATUS_DEGRADED, Detail: "queue backed up"}, nil
	}
	return &pluginv1.HealthReply{Status: pluginv1.HealthReply_STATUS_OK}, nil
}

func main() {
	if len(os.Args) > 2 && os.Args[1] != "dial" {
		f, err := os.OpenFile(os.Args[2], os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
		if err != nil {
			panic(err)
		}
		fmt.Fprintln(f, os.Getpid())
		if os.Args[1] == "child" {
			child := exec.Command("sleep", "600")
			child.Stderr = os.Stderr
			if err := child.Start(); err != nil {
				panic(err)
			}
			fmt.Fprintln(f, child.Process.Pid)
		}
		f.Close()
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: process.Handshake,
		Plugins:         plugin.PluginSet{process.PluginName: &process.GRPCPlugin{Impl: &server{mode: os.Args[1]}}},
		GRPCServer:      func(o []grpc.ServerOption) *grpc.Server { return grpc.NewServer(o...) },
	})
}
