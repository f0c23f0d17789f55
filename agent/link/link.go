// Package link is the agent's side of its link to the control plane: its
// own Ed25519 key, its enrollment with a one-time token, and the
// short-lived credential its calls carry, renewed by each heartbeat and,
// once lost or about to expire, by proof of the key (RenewCredential).
// Once enrolled, Run keeps the link: heartbeats, the reports of an Outbox
// kept in the agent's database, and the configuration the control plane
// streams, applied to the agent's database (domains and mail users it
// marks managed_by_controlplane, which CheckLocal makes read-only locally).
//
// It keeps two files in the agent's data directory, both mode 0600:
//
//   - agent-ed25519.key: the private key as PEM ("PRIVATE KEY", PKCS #8),
//     made on first use. Whoever holds it can act as the agent.
//   - controlplane.json: the Identity that enrollment returned: agent_id,
//     tenant_id, control_plane_url and the first credential.
package link

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/mairust/mairust/controlplane/agents/proof"
	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
	"github.com/mairust/mairust/proto/mairust/agents/v1/agentsv1connect"
)

// The files in the data directory.
const (
	KeyFile      = "agent-ed25519.key"
	IdentityFile = "controlplane.json"
)

// ErrNotEnrolled is returned by Identity when the agent has not enrolled:
// it runs on its own, without a control plane.
var ErrNotEnrolled = errors.New("link: this agent is not enrolled")

// renewBefore is how long before its expiry a credential is renewed.
const renewBefore = 30 * time.Second

// Identity is the agent's enrollment.
type Identity struct {
	AgentID         string     `json:"agent_id"`
	TenantID        string     `json:"tenant_id"`
	ControlPlaneURL string     `json:"control_plane_url"`
	Credential      Credential `json:"credential"`
}

// Credential is an agent credential (a bearer token) and its expiry.
type Credential struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func credentialOf(c *agentsv1.Credential) Credential {
	return Credential{Token: c.GetToken(), ExpiresAt: c.GetExpiresAt().AsTime()}
}

// Link is an agent's data directory and how it reaches the control plane.
type Link struct {
	DataDir    string
	HTTPClient connect.HTTPClient // nil: http.DefaultClient
}

func (l Link) client(url string, opts ...connect.ClientOption) agentsv1connect.AgentsServiceClient {
	hc := l.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	return agentsv1connect.NewAgentsServiceClient(hc, strings.TrimSuffix(url, "/"), opts...)
}

// Key returns the agent's private key, made and kept on first use.
func (l Link) Key() (ed25519.PrivateKey, error) {
	path := filepath.Join(l.DataDir, KeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l.newKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("link: %s is not a PEM private key: restore it, or remove it and enroll the agent again", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	key, ok := k.(ed25519.PrivateKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("link: %s does not hold an Ed25519 key (%v): restore it, or remove it and enroll the agent again", path, err)
	}
	return key, nil
}

func (l Link) newKey(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("link: keep the agent's key: %w (is data_dir writable?)", err)
	}
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("link: keep the agent's key: %w", err)
	}
	return key, nil
}

// Enroll enrolls the agent with a one-time token from the console and
// keeps its Identity in the data directory. An agent enrolls once: to
// enroll it again, remove both files first.
func (l Link) Enroll(ctx context.Context, controlPlaneURL, token, hostname, version string) (Identity, error) {
	idPath := filepath.Join(l.DataDir, IdentityFile)
	if _, err := os.Stat(idPath); err == nil {
		return Identity{}, fmt.Errorf("link: this agent is enrolled already (%s); to enroll it anew, remove %s and %s first", idPath, IdentityFile, KeyFile)
	}
	key, err := l.Key()
	if err != nil {
		return Identity{}, err
	}
	pub := key.Public().(ed25519.PublicKey)
	resp, err := l.client(controlPlaneURL).Enroll(ctx, connect.NewRequest(&agentsv1.EnrollRequest{Token: token, PublicKey: pub,
		Signature: ed25519.Sign(key, proof.Enroll(token, pub)), Hostname: hostname, Version: version}))
	if err != nil {
		return Identity{}, fmt.Errorf("link: enroll at %s: %w", controlPlaneURL, err)
	}
	id := Identity{AgentID: resp.Msg.AgentId, TenantID: resp.Msg.TenantId, ControlPlaneURL: controlPlaneURL,
		Credential: credentialOf(resp.Msg.Credential)}
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return Identity{}, fmt.Errorf("link: %w", err)
	}
	tmp := idPath + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return Identity{}, fmt.Errorf("link: enrolled as agent %s but cannot keep %s: %w", id.AgentID, IdentityFile, err)
	}
	if err := os.Rename(tmp, idPath); err != nil {
		return Identity{}, fmt.Errorf("link: enrolled as agent %s but cannot keep %s: %w", id.AgentID, IdentityFile, err)
	}
	return id, nil
}

// Identity reads the Identity that Enroll kept.
func (l Link) Identity() (Identity, error) {
	path := filepath.Join(l.DataDir, IdentityFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Identity{}, fmt.Errorf("%w (no %s): enroll it with a token from the console", ErrNotEnrolled, path)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("link: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, fmt.Errorf("link: %s: %w", path, err)
	}
	return id, nil
}

// Source keeps an agent's credential: it takes the one each Heartbeat
// returns, and renews it by proof of the key when it is missing, about to
// expire or was refused.
type Source struct {
	id    Identity
	key   ed25519.PrivateKey
	renew agentsv1connect.AgentsServiceClient // without credentials
	calls agentsv1connect.AgentsServiceClient

	mu   sync.Mutex
	cred Credential
}

// Source returns the credential source of id, which starts with
// id.Credential.
func (l Link) Source(id Identity) (*Source, error) {
	key, err := l.Key()
	if err != nil {
		return nil, err
	}
	s := &Source{id: id, key: key, renew: l.client(id.ControlPlaneURL), cred: id.Credential}
	s.calls = l.client(id.ControlPlaneURL, s.Auth())
	return s, nil
}

// Client returns a client of the control plane whose calls carry the
// credential, and whose heartbeats renew it.
func (s *Source) Client() agentsv1connect.AgentsServiceClient { return s.calls }

// Auth is the client option that gives another service's calls the
// credential (renewed when needed), e.g. the monitor service's.
func (s *Source) Auth() connect.ClientOption { return connect.WithInterceptors(bearer{s}) }

// Credential returns the credential held now.
func (s *Source) Credential() Credential {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cred
}

// Token returns a credential valid for a while yet, renewed when needed.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cred.Token != "" && time.Until(s.cred.ExpiresAt) > renewBefore {
		return s.cred.Token, nil
	}
	ts := time.Now().Unix()
	resp, err := s.renew.RenewCredential(ctx, connect.NewRequest(&agentsv1.RenewCredentialRequest{AgentId: s.id.AgentID, Timestamp: ts,
		Signature: ed25519.Sign(s.key, proof.Renew(s.id.AgentID, ts))}))
	if err != nil {
		return "", fmt.Errorf("link: renew the credential of agent %s: %w", s.id.AgentID, err)
	}
	s.cred = credentialOf(resp.Msg.Credential)
	return s.cred.Token, nil
}

// observe takes the credential of a heartbeat's response, and drops one
// the control plane refused so that the next call renews it.
func (s *Source) observe(token string, resp connect.AnyResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hb, ok := resp.(*connect.Response[agentsv1.HeartbeatResponse]); ok && err == nil && hb.Msg.Credential != nil {
		s.cred = credentialOf(hb.Msg.Credential)
	}
	if connect.CodeOf(err) == connect.CodeUnauthenticated && s.cred.Token == token {
		s.cred = Credential{}
	}
}

// bearer puts the Source's credential on each call.
type bearer struct{ s *Source }

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		tok, err := b.s.Token(ctx)
		if err != nil {
			return nil, err
		}
		req.Header().Set("Authorization", "Bearer "+tok)
		resp, err := next(ctx, req)
		b.s.observe(tok, resp, err)
		return resp, err
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		tok, err := b.s.Token(ctx)
		if err != nil {
			return failedConn{conn, err}
		}
		conn.RequestHeader().Set("Authorization", "Bearer "+tok)
		return conn
	}
}

func (bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// failedConn is a stream that could not get a credential.
type failedConn struct {
	connect.StreamingClientConn
	err error
}

func (c failedConn) Send(any) error    { return c.err }
func (c failedConn) Receive(any) error { return c.err }
