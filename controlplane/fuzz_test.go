package controlplane

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/agents"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	"github.com/mairust/mairust/proto/mairust/accounts/v1/accountsv1connect"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
)

// FuzzPublicRPC posts arbitrary bodies, as Connect JSON and binary
// protobuf, to the procedures anyone may call (sign-up, verification,
// log-in, enrollment): each answer must be a well-formed Connect answer,
// never a server fault, whatever the body decodes to.
func FuzzPublicRPC(f *testing.F) {
	e := cptest.New(f, "cpfuzz")
	e.Config.PublicPerMinute = 100000
	ag, err := agents.New(e.Store, e.Keys, e.Config, e.Log)
	if err != nil {
		f.Fatal(err)
	}
	opts := e.Options()
	e.Serve(f, []server.Service{accounts.New(e.Store, e.Keys, e.Config, &mailer.Recorder{}, e.Log).Service(opts...), ag.Service(opts...)}, ag.Check)
	procedures := []string{accountsv1connect.AccountsServiceSignUpProcedure, accountsv1connect.AccountsServiceVerifyEmailProcedure,
		accountsv1connect.AccountsServiceLogInProcedure, agentsv1connect.AgentsServiceEnrollProcedure}
	for i, seed := range []string{
		`{"email":"a@example.test","password":"correct horse battery"}`,
		`{"email":"a@-bad-.test\u0000","password":""}`,
		`{"token":"mre_x","publicKey":"AAAA","proof":"","hostname":"mx\r\n1"}`,
		`{"token":"` + string(bytes.Repeat([]byte("A"), 300)) + `"}`,
		`{"email":123}`, `[]`, `null`, `{`, "\x0a\x05a@b.c\x12\x03pwd", "\x0a\xff\xff\xff\xff\x0f",
	} {
		f.Add(uint8(i), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		for _, ct := range []string{"application/json", "application/proto"} {
			proc := procedures[int(which)%len(procedures)]
			resp, err := http.Post(e.URL+proc, ct, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("%s %s %q: HTTP %d %s", proc, ct, body, resp.StatusCode, b)
			}
			if resp.StatusCode != http.StatusOK {
				var ce struct{ Code, Message string }
				if err := json.Unmarshal(b, &ce); err != nil || ce.Code == "" || ce.Code == "internal" || ce.Code == "unknown" {
					t.Fatalf("%s %s %q: HTTP %d, not a clear Connect error: %s", proc, ct, body, resp.StatusCode, b)
				}
			}
		}
	})
}
