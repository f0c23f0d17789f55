package accounts_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/mairust/mairust/controlplane/accounts"
	"github.com/mairust/mairust/controlplane/auth"
	"github.com/mairust/mairust/controlplane/cptest"
	"github.com/mairust/mairust/controlplane/mailer"
	"github.com/mairust/mairust/controlplane/server"
	accountsv1 "github.com/mairust/mairust/proto/mairust/accounts/v1"
	"github.com/mairust/mairust/proto/mairust/accounts/v1/accountsv1connect"
)

// env is the accounts service on a real database behind the control
// plane's HTTP server on loopback.
type env struct {
	*cptest.Env
	mail *mailer.Recorder
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{Env: cptest.New(t, "cpaccounts"), mail: &mailer.Recorder{}}
	e.Serve(t, []server.Service{accounts.New(e.Store, e.Keys, e.Config, e.mail, e.Log).Service(e.Options()...)}, nil)
	return e
}

// client calls as the session token (none: anonymously).
func (e *env) client(token string) accountsv1connect.AccountsServiceClient {
	return accountsv1connect.NewAccountsServiceClient(http.DefaultClient, e.URL, cptest.Bearer(token))
}

func TestSignUpVerifyLogIn(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.client("")
	res, err := c.SignUp(ctx, connect.NewRequest(&accountsv1.SignUpRequest{Email: " Alice@Example.TEST ", Password: "correct horse battery"}))
	if err != nil {
		t.Fatal(err)
	}
	if a := res.Msg.Account; a.Email != "alice@example.test" || a.EmailVerified || a.Id == "" {
		t.Fatalf("signed up %+v", a)
	}
	mails := e.mail.Mails()
	if len(mails) != 1 || mails[0].To != "alice@example.test" || !strings.Contains(mails[0].Body, "https://cp.example.test/console/verify?token=") {
		t.Fatalf("mails %+v", mails)
	}
	logIn := func(email, pw string) (*accountsv1.LogInResponse, error) {
		r, err := c.LogIn(ctx, connect.NewRequest(&accountsv1.LogInRequest{Email: email, Password: pw}))
		if err != nil {
			return nil, err
		}
		return r.Msg, nil
	}
	_, err = logIn("alice@example.test", "correct horse battery")
	cptest.WantCode(t, "log in unverified", err, connect.CodeFailedPrecondition, "click the link")

	tok, err := e.mail.LastToken("alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a link opened twice still answers the account
		v, err := c.VerifyEmail(ctx, connect.NewRequest(&accountsv1.VerifyEmailRequest{Token: tok}))
		if err != nil || !v.Msg.Account.EmailVerified || v.Msg.Account.Id != res.Msg.Account.Id {
			t.Fatalf("verify: %v %v", v, err)
		}
	}

	_, wrong := logIn("alice@example.test", "wrong horse battery")
	_, unknown := logIn("nobody@example.test", "correct horse battery")
	cptest.WantCode(t, "wrong password", wrong, connect.CodeUnauthenticated, "wrong e-mail address or password")
	if unknown == nil || wrong.Error() != unknown.Error() {
		t.Errorf("unknown address %v and wrong password %v answer differently", unknown, wrong)
	}
	in, err := logIn("ALICE@example.test", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := e.Keys.Parse(in.SessionToken); err != nil || p.Kind != auth.KindSession || p.AccountID != res.Msg.Account.Id {
		t.Fatalf("session %+v, %v", p, err)
	}
	if !in.ExpiresAt.AsTime().After(in.Account.CreatedAt.AsTime()) {
		t.Errorf("session expires %v, before the account was made", in.ExpiresAt.AsTime())
	}

	me, err := e.client(in.SessionToken).GetMe(ctx, connect.NewRequest(&accountsv1.GetMeRequest{}))
	if err != nil || me.Msg.Account.Email != "alice@example.test" || !me.Msg.Account.EmailVerified || len(me.Msg.Memberships) != 0 {
		t.Fatalf("GetMe %v, %v", me, err)
	}
	_, err = c.GetMe(ctx, connect.NewRequest(&accountsv1.GetMeRequest{}))
	cptest.WantCode(t, "GetMe without a session", err, connect.CodeUnauthenticated, "log in")
	_, err = c.AcceptInvitation(ctx, connect.NewRequest(&accountsv1.AcceptInvitationRequest{Token: tok}))
	cptest.WantCode(t, "AcceptInvitation without a session", err, connect.CodeUnauthenticated, "log in")
}

func TestSignUpErrors(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.client("")
	signUp := func(email, pw string) error {
		_, err := c.SignUp(ctx, connect.NewRequest(&accountsv1.SignUpRequest{Email: email, Password: pw}))
		return err
	}
	for _, tc := range []struct{ email, pw, text string }{
		{"", "long enough password", "email: empty"},
		{"not-an-address", "long enough password", "email: "},
		{"Alice <alice@example.test>", "long enough password", "email: "},
		{strings.Repeat("a", 250) + "@example.test", "long enough password", "email: longer than 254"},
		{"alice@example.test", "short", "password: too short"},
		{"alice@example.test", "ÄÄÄÄÄÄÄÄÄ", "password: too short"}, // 9 characters, 18 bytes
		{"alice@example.test", strings.Repeat("x", 1025), "password: too long"},
	} {
		cptest.WantCode(t, "sign up "+tc.email, signUp(tc.email, tc.pw), connect.CodeInvalidArgument, tc.text)
	}
	if n := len(e.mail.Mails()); n != 0 {
		t.Fatalf("%d mails sent for refused sign-ups", n)
	}

	// A mail that cannot be sent keeps nothing: signing up again works.
	e.mail.FailWith(errors.New("relay down"))
	cptest.WantCode(t, "relay down", signUp("alice@example.test", "long enough password"), connect.CodeUnavailable, "try again later")
	e.mail.FailWith(nil)
	if err := signUp("alice@example.test", "long enough password"); err != nil {
		t.Fatal(err)
	}
	// A second sign-up, pending or verified, says no more than that.
	cptest.WantCode(t, "duplicate", signUp("ALICE@example.test", "another long password"), connect.CodeAlreadyExists, "already exists")
	tok, err := e.mail.LastToken("alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.VerifyEmail(ctx, connect.NewRequest(&accountsv1.VerifyEmailRequest{Token: tok})); err != nil {
		t.Fatal(err)
	}
	cptest.WantCode(t, "duplicate of a verified account", signUp("alice@example.test", "another long password"), connect.CodeAlreadyExists, "already exists")

	_, err = c.LogIn(ctx, connect.NewRequest(&accountsv1.LogInRequest{Email: "alice@example.test"}))
	cptest.WantCode(t, "empty password", err, connect.CodeInvalidArgument, "password: ")
	_, err = c.LogIn(ctx, connect.NewRequest(&accountsv1.LogInRequest{Email: "alice", Password: "long enough password"}))
	cptest.WantCode(t, "bad address", err, connect.CodeInvalidArgument, "email: ")
}

func TestVerifyEmailErrors(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.client("")
	verify := func(tok string) error {
		_, err := c.VerifyEmail(ctx, connect.NewRequest(&accountsv1.VerifyEmailRequest{Token: tok}))
		return err
	}
	cptest.WantCode(t, "malformed token", verify("abc"), connect.CodeInvalidArgument, "token: ")
	unknown, _ := mailer.NewToken()
	cptest.WantCode(t, "unknown token", verify(unknown), connect.CodeNotFound, "not known")

	if _, err := c.SignUp(ctx, connect.NewRequest(&accountsv1.SignUpRequest{Email: "bob@example.test", Password: "long enough password"})); err != nil {
		t.Fatal(err)
	}
	old, err := e.mail.LastToken("bob@example.test")
	if err != nil {
		t.Fatal(err)
	}
	e.Exec(t, "", `UPDATE email_verifications SET expires_at = now() - interval '1 second'`) // every link expires
	cptest.WantCode(t, "expired token", verify(old), connect.CodeFailedPrecondition, "expired")
	// Once every link has expired, the address may be signed up again,
	// with a new password.
	if _, err := c.SignUp(ctx, connect.NewRequest(&accountsv1.SignUpRequest{Email: "bob@example.test", Password: "a new long password"})); err != nil {
		t.Fatalf("signing up again after the link expired: %v", err)
	}
	tok, err := e.mail.LastToken("bob@example.test")
	if err != nil || tok == old {
		t.Fatalf("new link %q (old %q), %v", tok, old, err)
	}
	if err := verify(tok); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LogIn(ctx, connect.NewRequest(&accountsv1.LogInRequest{Email: "bob@example.test", Password: "a new long password"})); err != nil {
		t.Fatalf("log in with the new password: %v", err)
	}
}

func TestAcceptInvitationErrors(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	tok, _, err := e.Keys.Issue(auth.Principal{Kind: auth.KindSession, AccountID: "00000000-0000-4000-8000-000000000000"}, e.Config.SessionTTL)
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(tok)
	_, err = c.AcceptInvitation(ctx, connect.NewRequest(&accountsv1.AcceptInvitationRequest{Token: "short"}))
	cptest.WantCode(t, "malformed token", err, connect.CodeInvalidArgument, "token: ")
	unknown, _ := mailer.NewToken()
	_, err = c.AcceptInvitation(ctx, connect.NewRequest(&accountsv1.AcceptInvitationRequest{Token: unknown}))
	cptest.WantCode(t, "unknown token", err, connect.CodeNotFound, "not known")
	_, err = c.GetMe(ctx, connect.NewRequest(&accountsv1.GetMeRequest{}))
	cptest.WantCode(t, "GetMe of a deleted account", err, connect.CodeUnauthenticated, "no longer exists")
}

func TestCheckPassword(t *testing.T) {
	for pw, ok := range map[string]bool{"": false, "123456789": false, "1234567890": true, strings.Repeat("é", 10): true, strings.Repeat("é", 513): false} {
		if err := accounts.CheckPassword(pw); (err == nil) != ok {
			t.Errorf("CheckPassword(%d bytes) = %v", len(pw), err)
		}
	}
}

// TestPublicCallLimits: calls without a session are limited per client
// address, and log-in attempts per account (from any address), with a
// Retry-After; another account is not affected by the latter.
func TestPublicCallLimits(t *testing.T) {
	ctx := context.Background()
	t.Run("per address", func(t *testing.T) {
		e := &env{Env: cptest.New(t, "cplimits"), mail: &mailer.Recorder{}}
		e.Config.PublicPerMinute = 3
		e.Serve(t, []server.Service{accounts.New(e.Store, e.Keys, e.Config, e.mail, e.Log).Service(e.Options()...)}, nil)
		c := e.client("")
		for i := range 3 {
			_, err := c.LogIn(ctx, connect.NewRequest(&accountsv1.LogInRequest{Email: "nobody@example.test", Password: "wrong password"}))
			cptest.WantCode(t, fmt.Sprint("log-in ", i+1), err, connect.CodeUnauthenticated, "wrong e-mail address or password")
		}
		_, err := c.SignUp(ctx, connect.NewRequest(&accountsv1.SignUpRequest{Email: "alice@example.test", Password: "correct horse battery"}))
		cptest.WantCode(t, "4th call", err, connect.CodeResourceExhausted, "too many calls from your address: try again in")
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Meta().Get("Retry-After") == "" {
			t.Fatalf("no Retry-After in %v", err)
		}
		if len(e.mail.Mails()) != 0 {
			t.Fatal("a refused sign-up sent a mail")
		}
	})
	t.Run("per account", func(t *testing.T) {
		e := start(t)
		c := e.client("")
		logIn := func(email string) error {
			_, err := c.LogIn(ctx, connect.NewRequest(&accountsv1.LogInRequest{Email: email, Password: "wrong password"}))
			return err
		}
		for range 10 {
			cptest.WantCode(t, "guess", logIn("alice@example.test"), connect.CodeUnauthenticated, "wrong e-mail address or password")
		}
		cptest.WantCode(t, "11th guess", logIn("ALICE@example.test"), connect.CodeResourceExhausted, "too many log-in attempts on this account")
		cptest.WantCode(t, "other account", logIn("bob@example.test"), connect.CodeUnauthenticated, "wrong e-mail address or password")
	})
}

// TestAPITokens: a token made by a session acts as its account (through
// the same middleware as sessions), is listed without its value, and stops
// working once revoked or expired; another account cannot revoke it.
func TestAPITokens(t *testing.T) {
	e := &env{Env: cptest.New(t, "cptokens"), mail: &mailer.Recorder{}}
	svc := accounts.New(e.Store, e.Keys, e.Config, e.mail, e.Log)
	e.Keys.APITokens = svc.LookupAPIToken
	e.Serve(t, []server.Service{svc.Service(e.Options()...)}, nil)
	ctx := context.Background()
	session := func(email string) string {
		var id string
		if err := e.Owner.QueryRow(ctx, `INSERT INTO accounts (email, password_hash, email_verified_at) VALUES ($1, 'x', now()) RETURNING id`, email).Scan(&id); err != nil {
			t.Fatal(err)
		}
		tok, _, err := e.Keys.Issue(auth.Principal{Kind: auth.KindSession, AccountID: id}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice, bob := session("alice@example.test"), session("bob@example.test")
	_, err := e.client(alice).CreateAPIToken(ctx, connect.NewRequest(&accountsv1.CreateAPITokenRequest{}))
	cptest.WantCode(t, "a token without a name", err, connect.CodeInvalidArgument, "name")
	created, err := e.client(alice).CreateAPIToken(ctx, connect.NewRequest(&accountsv1.CreateAPITokenRequest{Name: "terraform"}))
	if err != nil || !strings.HasPrefix(created.Msg.Token, "mrt_") {
		t.Fatalf("create: %v %v", created, err)
	}
	me, err := e.client(created.Msg.Token).GetMe(ctx, connect.NewRequest(&accountsv1.GetMeRequest{}))
	if err != nil || me.Msg.Account.Email != "alice@example.test" {
		t.Fatalf("GetMe with the token: %v %v", me, err)
	}
	list, err := e.client(alice).ListAPITokens(ctx, connect.NewRequest(&accountsv1.ListAPITokensRequest{}))
	if err != nil || len(list.Msg.ApiTokens) != 1 || list.Msg.ApiTokens[0].Name != "terraform" || strings.Contains(list.Msg.String(), created.Msg.Token) {
		t.Fatalf("list: %v %v", list, err)
	}
	var stored []byte
	e.Owner.QueryRow(ctx, `SELECT token_hash FROM api_tokens`).Scan(&stored)
	if bytes.Contains(stored, []byte(created.Msg.Token)) || len(stored) != 32 {
		t.Fatal("the token is not stored hashed")
	}
	id := created.Msg.ApiToken.Id
	_, err = e.client(bob).RevokeAPIToken(ctx, connect.NewRequest(&accountsv1.RevokeAPITokenRequest{Id: id}))
	cptest.WantCode(t, "another account's revoke", err, connect.CodeNotFound, "no such token")
	if _, err := e.client(alice).RevokeAPIToken(ctx, connect.NewRequest(&accountsv1.RevokeAPITokenRequest{Id: id})); err != nil {
		t.Fatal(err)
	}
	_, err = e.client(created.Msg.Token).GetMe(ctx, connect.NewRequest(&accountsv1.GetMeRequest{}))
	cptest.WantCode(t, "a revoked token", err, connect.CodeUnauthenticated, "revoked")
	_, err = e.client("mrt_unknown").GetMe(ctx, connect.NewRequest(&accountsv1.GetMeRequest{}))
	cptest.WantCode(t, "an unknown token", err, connect.CodeUnauthenticated, "unknown API token")
	short, err := e.client(alice).CreateAPIToken(ctx, connect.NewRequest(&accountsv1.CreateAPITokenRequest{Name: "ci", TtlSeconds: 60}))
	if err != nil {
		t.Fatal(err)
	}
	e.Owner.Exec(ctx, `UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, short.Msg.ApiToken.Id)
	_, err = e.client(short.Msg.Token).GetMe(ctx, connect.NewRequest(&accountsv1.GetMeRequest{}))
	cptest.WantCode(t, "an expired token", err, connect.CodeUnauthenticated, "expired")
}
