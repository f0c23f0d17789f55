package smtpd

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/pgtest"
	"github.com/mairust/mairust/internal/tlsconfig"
)

// stack is a server on loopback over a real PostgreSQL and a local blob store.
type stack struct {
	srv   *Server
	addr  string
	pool  *pgxpool.Pool
	blobs *blobstore.Local
	store *mailstore.Store
	done  chan error
}

// sharedPool is this package's database, migrated once, with two domains
// and three users.
var sharedPool *pgxpool.Pool

func TestMain(m *testing.M) {
	url, drop, err := pgtest.Create("smtpd")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := seed(url); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
		sharedPool.Close()
	}
	drop()
	os.Exit(code)
}

func seed(url string) (err error) {
	ctx := context.Background()
	if sharedPool, err = accountstest.Open(ctx, url); err != nil {
		return err
	}
	return accountstest.Seed(ctx, sharedPool, "alice@example.test", "bob@example.test", "hanako@例え.jp")
}

func testConfig() config.SMTP {
	c := config.Default().SMTP
	c.Listen = "127.0.0.1:0"
	c.Hostname = "mx.example.test"
	c.MaxMessageBytes = 1 << 20
	return c
}

// deliverFunc lets a test put a failing store in front of the real one.
type deliverFunc func(context.Context, mailstore.Delivery) ([]int64, error)

func (f deliverFunc) Deliver(ctx context.Context, d mailstore.Delivery) ([]int64, error) {
	return f(ctx, d)
}

func start(t *testing.T, cfg config.SMTP, wrap func(Deliverer) Deliverer) *stack {
	t.Helper()
	p := sharedPool
	blobs, err := blobstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := tlsconfig.SelfSigned(t.TempDir(), cfg.Hostname)
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{pool: p, blobs: blobs, store: mailstore.New(p, blobs), done: make(chan error, 1)}
	t.Cleanup(func() { st.store.Close(); blobs.Close() })
	var d Deliverer = st.store
	if wrap != nil {
		d = wrap(d)
	}
	log := discard()
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	st.srv = New(cfg, tlsCfg, accounts.New(p), d, log)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	st.addr = ln.Addr().String()
	go func() { st.done <- st.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st.srv.Shutdown(ctx)
		<-st.done
	})
	return st
}

var insecureTLS = &tls.Config{InsecureSkipVerify: true}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
