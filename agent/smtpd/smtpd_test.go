package smtpd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/mailstore"
)

const japaneseSubject = "=?ISO-2022-JP?B?GyRCRnxLXDhsJE43b0w+GyhC?=" // 日本語の件名 (ISO-2022-JP, B encoding)

func message(subject, body string) string {
	return "From: Sender <sender@remote.test>\r\nTo: alice@example.test\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Jan 2006 15:04:05 +0900\r\nMessage-ID: <m1@remote.test>\r\n\r\n" + body + "\r\n"
}

// send runs one transaction with net/smtp and returns the error of the first failing step.
func send(addr string, useTLS bool, from string, to []string, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if useTLS {
		if err := c.StartTLS(insecureTLS); err != nil {
			return err
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func code(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// stored returns the message rows of a recipient: subject, blob key.
func stored(t *testing.T, st *stack, rcpt string) [][2]string {
	t.Helper()
	rows, err := st.pool.Query(context.Background(), `SELECT subject, blob_key FROM messages WHERE rcpt_to = $1 ORDER BY id`, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var s, k string
		rows.Scan(&s, &k)
		out = append(out, [2]string{s, k})
	}
	return out
}

func readBlob(t *testing.T, st *stack, key string) string {
	t.Helper()
	r, err := st.blobs.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("blob %s: %v", key, err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

func clear(t *testing.T, st *stack) {
	if _, err := st.pool.Exec(context.Background(), `DELETE FROM messages; DELETE FROM blobs`); err != nil {
		t.Fatal(err)
	}
}

func TestReceiveStoresDurablyWithHeaders(t *testing.T) {
	st := start(t, testConfig(), nil)
	clear(t, st)
	for _, useTLS := range []bool{false, true} {
		if err := send(st.addr, useTLS, "sender@remote.test", []string{"Alice@Example.test"}, message(japaneseSubject, "hello")); err != nil {
			t.Fatalf("tls=%v: %v", useTLS, err)
		}
	}
	got := stored(t, st, "alice@example.test")
	if len(got) != 2 {
		t.Fatalf("stored %d messages, want 2", len(got))
	}
	if got[0][0] != "日本語の件名" {
		t.Errorf("subject = %q, want 日本語の件名", got[0][0])
	}
	raw := readBlob(t, st, got[1][1])
	if !strings.HasPrefix(raw, "Received: from ") || !strings.Contains(raw, "by mx.example.test (MaiRust) with UTF8SMTPS id ") || !strings.Contains(raw, "for <alice@example.test>") {
		t.Errorf("Received header missing or wrong:\n%s", raw[:min(300, len(raw))])
	}
	if !strings.Contains(raw, "Subject: "+japaneseSubject+"\r\n") || !strings.HasSuffix(raw, "hello\r\n") {
		t.Errorf("message content changed:\n%s", raw)
	}
	if strings.Contains(readBlob(t, st, got[0][1]), "SMTPS id") {
		t.Error("plain session labelled as TLS")
	}
}

func TestMultipleRecipientsShareOneBlob(t *testing.T) {
	st := start(t, testConfig(), nil)
	clear(t, st)
	if err := send(st.addr, false, "", []string{"alice@example.test", "bob@example.test", "alice@example.test"}, message("two", "x")); err != nil {
		t.Fatal(err)
	}
	a, b := stored(t, st, "alice@example.test"), stored(t, st, "bob@example.test")
	if len(a) != 1 || len(b) != 1 || a[0][1] != b[0][1] {
		t.Fatalf("alice %v bob %v: want one row each sharing a blob", a, b)
	}
}

// Mail to an alias lands in its user's INBOX, recorded as sent to the
// alias; the alias and the user in one transaction get one copy.
func TestAliasDeliversToUsersInbox(t *testing.T) {
	st := start(t, testConfig(), nil)
	clear(t, st)
	ctx := context.Background()
	acc := accounts.New(st.pool)
	tenant, err := acc.DomainTenant(ctx, "example.test")
	if err != nil {
		t.Fatal(err)
	}
	al, err := acc.AddAlias(ctx, tenant, "postmaster@example.test", "alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { acc.DeleteAlias(ctx, tenant, al.ID) })

	if err := send(st.addr, false, "sender@remote.test", []string{"PostMaster@Example.test"}, message("to the alias", "x")); err != nil {
		t.Fatal(err)
	}
	if err := send(st.addr, false, "sender@remote.test", []string{"postmaster@example.test", "alice@example.test"}, message("to both", "x")); err != nil {
		t.Fatal(err)
	}
	rows, err := st.pool.Query(ctx, `
		SELECT m.subject, m.rcpt_to, u.address, f.name FROM messages m
		JOIN mail_users u ON u.id = m.user_id JOIN folders f ON f.id = m.folder_id ORDER BY m.id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([4]string, error) {
		var r [4]string
		err := row.Scan(&r[0], &r[1], &r[2], &r[3])
		return r, err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][4]string{
		{"to the alias", "postmaster@example.test", "alice@example.test", "INBOX"},
		{"to both", "postmaster@example.test", "alice@example.test", "INBOX"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("stored (subject, rcpt_to, user, folder) %v, want %v", got, want)
	}
	if raw := readBlob(t, st, stored(t, st, "postmaster@example.test")[0][1]); !strings.Contains(raw, "for <postmaster@example.test>") {
		t.Errorf("Received header does not name the alias:\n%s", raw[:min(300, len(raw))])
	}
}

func TestRejections(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRecipients = 2
	st := start(t, cfg, nil)
	tests := []struct {
		name string
		to   []string
		msg  string
		code int
		text string
	}{
		{"unknown user", []string{"nobody@example.test"}, message("x", "x"), 550, "5.1.1"},
		{"foreign domain", []string{"someone@elsewhere.test"}, message("x", "x"), 550, "relay denied"},
		{"too many recipients", []string{"alice@example.test", "bob@example.test", "hanako@例え.jp"}, message("x", "x"), 452, ""},
		{"too large", []string{"alice@example.test"}, message("big", strings.Repeat("0123456789abcdef\r\n", 70000)), 552, "5.3.4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := send(st.addr, false, "sender@remote.test", tc.to, tc.msg)
			if code(err) != tc.code || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %d %s", err, tc.code, tc.text)
			}
		})
	}
}

func TestUTF8Recipient(t *testing.T) {
	st := start(t, testConfig(), nil)
	clear(t, st)
	c, err := smtp.Dial(st.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("SMTPUTF8"); !ok {
		t.Fatal("SMTPUTF8 not advertised")
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SIZE", "STARTTLS"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("%s not advertised", ext)
		}
	}
	id, err := c.Text.Cmd("MAIL FROM:<送信者@例え.jp> SMTPUTF8 BODY=8BITMIME")
	if err != nil {
		t.Fatal(err)
	}
	c.Text.StartResponse(id)
	_, _, err = c.Text.ReadResponse(250)
	c.Text.EndResponse(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("hanako@例え.jp"); err != nil {
		t.Fatal(err)
	}
	w, _ := c.Data()
	io.WriteString(w, "From: 送信者@例え.jp\r\nSubject: 件名 UTF-8 そのまま\r\n\r\n本文\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := stored(t, st, "hanako@例え.jp")
	if len(got) != 1 || got[0][0] != "件名 UTF-8 そのまま" {
		t.Fatalf("got %v", got)
	}
	if raw := readBlob(t, st, got[0][1]); !strings.Contains(raw, "with UTF8SMTP id") {
		t.Errorf("Received lacks UTF8SMTP:\n%s", raw)
	}
}

func TestStorageFailureAnswers451AndKeepsNothing(t *testing.T) {
	st := start(t, testConfig(), nil)
	clear(t, st)
	ctx := context.Background()
	// The blob is written, then the commit fails: 451, no row, and the blob
	// is an orphan the sweep removes.
	if _, err := st.pool.Exec(ctx, `ALTER TABLE messages ADD CONSTRAINT refuse_all CHECK (false) NOT VALID`); err != nil {
		t.Fatal(err)
	}
	err := send(st.addr, false, "s@remote.test", []string{"alice@example.test"}, message("fail", "x"))
	st.pool.Exec(ctx, `ALTER TABLE messages DROP CONSTRAINT refuse_all`)
	if code(err) != 451 || !strings.Contains(err.Error(), "4.3.0") {
		t.Fatalf("got %v, want 451 4.3.0", err)
	}
	if n := len(stored(t, st, "alice@example.test")); n != 0 {
		t.Fatalf("%d rows left by a failed delivery", n)
	}
	var blobRows int
	st.pool.QueryRow(ctx, `SELECT count(*) FROM blobs`).Scan(&blobRows)
	if blobRows != 0 {
		t.Fatalf("%d blob rows left by a failed delivery", blobRows)
	}
	res, err := st.store.Purge(ctx, time.Now().AddDate(0, 0, -30), time.Now().Add(time.Hour), discard())
	if err != nil || res.Orphans != 1 {
		t.Fatalf("orphan sweep: %+v %v, want 1 orphan", res, err)
	}
	// The blob store failing: 451 too.
	st2 := start(t, testConfig(), func(d Deliverer) Deliverer {
		return deliverFunc(func(ctx context.Context, del mailstore.Delivery) ([]int64, error) {
			return nil, errors.New("disk on fire")
		})
	})
	if err := send(st2.addr, false, "s@remote.test", []string{"alice@example.test"}, message("fail", "x")); code(err) != 451 {
		t.Fatalf("got %v, want 451", err)
	}
}

func TestPerIPConnectionLimitAndReload(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnectionsPerIP = 2
	st := start(t, cfg, nil)
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	greet := func() string {
		c, err := net.Dial("tcp", st.addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for i := 0; i < 2; i++ {
		if g := greet(); !strings.HasPrefix(g, "220 ") {
			t.Fatalf("connection %d: %q", i, g)
		}
	}
	if g := greet(); !strings.HasPrefix(g, "421 4.7.0") {
		t.Fatalf("third connection: %q, want 421 4.7.0", g)
	}
	cfg.MaxConnectionsPerIP = 4
	st.srv.Apply(cfg)
	if g := greet(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("after raising the limit: %q", g)
	}
}

func TestMessageRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MessagesPerIPMinute = 2
	st := start(t, cfg, nil)
	for i := 0; i < 2; i++ {
		if err := send(st.addr, false, "s@remote.test", []string{"alice@example.test"}, message("r", "x")); err != nil {
			t.Fatal(err)
		}
	}
	err := send(st.addr, false, "s@remote.test", []string{"alice@example.test"}, message("r", "x"))
	if code(err) != 450 {
		t.Fatalf("third message: %v, want 450", err)
	}
}

func TestGracefulShutdown(t *testing.T) {
	st := start(t, testConfig(), nil)
	clear(t, st)
	busy, err := smtp.Dial(st.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	idle, err := net.Dial("tcp", st.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleR := bufio.NewReader(idle)
	idleR.ReadString('\n') // greeting
	if err := busy.Mail("s@remote.test"); err != nil {
		t.Fatal(err)
	}
	if err := busy.Rcpt("alice@example.test"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- st.srv.Shutdown(ctx) }()
	// The idle session is told to go away; the listener stops accepting.
	line, _ := idleR.ReadString('\n')
	if !strings.HasPrefix(line, "421 ") {
		t.Errorf("idle session got %q, want 421", line)
	}
	waitRefused(t, st.addr)
	// The transaction under way completes and is acknowledged.
	w, err := busy.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, message("in flight", "x"))
	if err := w.Close(); err != nil {
		t.Fatalf("in-flight message: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if got := stored(t, st, "alice@example.test"); len(got) != 1 || got[0][0] != "in flight" {
		t.Fatalf("stored %v", got)
	}
}

// waitRefused waits until addr refuses connections.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("listener still accepting after Shutdown")
}

func TestSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Fatal("swaks is not installed: run scripts/deps.sh (apt-get install swaks)")
	}
	st := start(t, testConfig(), nil)
	clear(t, st)
	out, err := exec.Command(swaks, "--to", "bob@example.test", "--from", "ext@remote.test", "--server", st.addr,
		"--tls", "--header", "Subject: "+japaneseSubject, "--body", "swaks body").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "<~  250 ") {
		t.Fatalf("no 250 in swaks output:\n%s", out)
	}
	got := stored(t, st, "bob@example.test")
	if len(got) != 1 || got[0][0] != "日本語の件名" {
		t.Fatalf("stored %v", got)
	}
	out, _ = exec.Command(swaks, "--to", "ghost@example.test", "--server", st.addr).CombinedOutput()
	if !strings.Contains(string(out), "550 5.1.1") {
		t.Fatalf("unknown user via swaks:\n%s", out)
	}
}

// TestPipelining sends a whole transaction in one write (RFC 2920) and reads
// the replies in order.
func TestPipelining(t *testing.T) {
	st := start(t, testConfig(), nil)
	clear(t, st)
	c, err := net.Dial("tcp", st.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tp := textproto.NewConn(c)
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	tp.PrintfLine("EHLO client.test")
	if _, msg, err := tp.ReadResponse(250); err != nil || !strings.Contains(msg, "PIPELINING") {
		t.Fatalf("EHLO: %v %q", err, msg)
	}
	io.WriteString(c, "MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 550, 250, 354} {
		if code, msg, err := tp.ReadResponse(want); err != nil {
			t.Fatalf("pipelined reply: %d %q %v, want %d", code, msg, err, want)
		}
	}
	io.WriteString(c, message("pipelined", "x")+".\r\nQUIT\r\n")
	if _, _, err := tp.ReadResponse(250); err != nil {
		t.Fatalf("end of data: %v", err)
	}
	if len(stored(t, st, "alice@example.test")) != 1 || len(stored(t, st, "bob@example.test")) != 1 {
		t.Fatal("pipelined message not stored for both recipients")
	}
}
