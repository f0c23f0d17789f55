package imapd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/accounts/accountstest"
	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/agent/mailparse"
	"github.com/mairust/mairust/agent/mailstore"
	"github.com/mairust/mairust/agent/mailstore/storetest"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/tlsconfig"
)

// world is a database with alice and bob, a mail store, and an IMAP server
// on loopback.
type world struct {
	pool   *pgxpool.Pool
	store  *mailstore.Store
	blobs  blobstore.Store
	acc    *accounts.Accounts
	tls    *tls.Config
	cfg    config.IMAP
	srv    *Server
	addr   string // STARTTLS
	tlsAdr string // IMAPS
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{pool: accountstest.NewDatabase(t, "imapd", "alice@example.test", "bob@example.test")}
	w.store, w.blobs = storetest.New(t, w.pool)
	w.acc = accounts.New(w.pool)
	var err error
	if w.tls, err = tlsconfig.SelfSigned(t.(interface{ TempDir() string }).TempDir(), "localhost"); err != nil {
		t.Fatal(err)
	}
	w.cfg = config.Default().IMAP
	w.cfg.IdlePoll = 100 * time.Millisecond
	w.start(t)
	return w
}

// start runs a new server on fresh ports; the old one, if any, is closed.
func (w *world) start(t testing.TB) {
	t.Helper()
	if w.srv != nil {
		w.srv.Close()
	}
	w.srv = New(w.cfg, w.tls, w.acc, w.store, w.blobs, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr, w.tlsAdr = ln.Addr().String(), tln.Addr().String()
	go w.srv.Serve(ln)
	go w.srv.ServeTLS(tln)
	srv := w.srv
	t.Cleanup(func() { srv.Close() })
}

// deliver stores a message for the user and returns its id.
func (w *world) deliver(t testing.TB, user, raw string) int64 {
	t.Helper()
	ctx := context.Background()
	rcpt, err := w.acc.Lookup(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mailparse.ParseHeader(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := w.store.Deliver(ctx, mailstore.Delivery{MailFrom: "sender@remote.test", Recipients: []accounts.Recipient{rcpt}, Data: []byte(raw), Header: h})
	if err != nil {
		t.Fatal(err)
	}
	return ids[0]
}

func testMessage(subject, body string) string {
	return "From: Sender <sender@remote.test>\r\nTo: alice@example.test\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Jan 2006 15:04:05 +0900\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@remote.test>\r\n\r\n" + body + "\r\n"
}

// dial signs in over STARTTLS; handler may be nil.
func (w *world) dial(t testing.TB, user string, handler *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialStartTLS(w.addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}, UnilateralDataHandler: handler})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, "pw-"+user).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func TestLoginNeedsTLSAndRightPassword(t *testing.T) {
	w := newWorld(t)
	// Before STARTTLS the server offers no sign-in.
	plain, err := imapclient.DialInsecure(w.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Login("alice@example.test", "pw-alice@example.test").Wait(); err == nil {
		t.Fatal("LOGIN over plain text succeeded")
	}
	c, err := imapclient.DialTLS(w.tlsAdr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Login("alice@example.test", "wrong").Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("wrong password: %v; want NO [AUTHENTICATIONFAILED]", err)
	}
	if err := c.Login("alice@example.test", "pw-alice@example.test").Wait(); err != nil {
		t.Fatalf("IMAPS login: %v", err)
	}
	sc, err := imapclient.DialStartTLS(w.addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Authenticate(sasl.NewPlainClient("", "bob@example.test", "pw-bob@example.test")); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN after STARTTLS: %v", err)
	}
	var n int
	if err := w.pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE kind = 'auth.login' AND detail->>'via' = 'imap'`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d imap login events, %v; want 3 (the refused plain-text LOGIN never reached the password check)", n, err)
	}
}

func TestLoginAttemptsLimitedPerIP(t *testing.T) {
	w := newWorld(t)
	w.srv.Apply(config.IMAP{MaxConnectionsPerIP: 50, LoginsPerIPMinute: 2})
	c, err := imapclient.DialTLS(w.tlsAdr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 2 {
		c.Login("alice@example.test", "wrong").Wait()
	}
	err = c.Login("alice@example.test", "pw-alice@example.test").Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeUnavailable {
		t.Fatalf("third attempt in a minute: %v; want NO [UNAVAILABLE]", err)
	}
}

func TestListSelectFetch(t *testing.T) {
	w := newWorld(t)
	raws := []string{
		testMessage("first", "hello"),
		testMessage("=?UTF-8?B?5pel5pys6Kqe44Gu5Lu25ZCN?=", "こんにちは"),
		"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\ntext part\r\n" +
			"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nPDF\r\n--b--\r\n",
	}
	for _, r := range raws {
		w.deliver(t, "alice@example.test", r)
	}
	w.deliver(t, "bob@example.test", testMessage("bob's", "not alice's"))
	c := w.dial(t, "alice@example.test", nil)

	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]imap.MailboxAttr{}
	for _, l := range list {
		got[l.Mailbox] = l.Attrs
	}
	if len(got) != 4 || got["INBOX"] == nil || !hasAttr(got["Junk"], imap.MailboxAttrJunk) || !hasAttr(got["Sent"], imap.MailboxAttrSent) || !hasAttr(got["Trash"], imap.MailboxAttrTrash) {
		t.Fatalf("LIST: %v", got)
	}

	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true}).Wait()
	if err != nil || *st.NumMessages != 3 || st.UIDNext != 4 {
		t.Fatalf("STATUS INBOX: %+v, %v", st, err)
	}
	var validity uint32
	if err := w.pool.QueryRow(context.Background(), `SELECT f.uid_validity FROM folders f JOIN mail_users u ON u.id = f.user_id WHERE u.address = 'alice@example.test' AND f.name = 'INBOX'`).Scan(&validity); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 3 || sel.UIDValidity != validity || sel.UIDNext != 4 || st.UIDValidity != validity {
		t.Fatalf("SELECT INBOX: %+v, %v; want 3 messages, UIDVALIDITY %d", sel, err, validity)
	}
	if _, err := c.Select("Nope", nil).Wait(); err == nil || !strings.Contains(err.Error(), "NONEXISTENT") {
		t.Fatalf("SELECT Nope: %v", err)
	}
	if _, err := c.Select("inbox", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatalf("EXAMINE inbox: %v", err)
	}

	whole := &imap.FetchItemBodySection{Peek: true}
	partial := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 10}}
	subject := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}}
	msgs, err := c.Fetch(imap.UIDSetNum(1, 2, 3), &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{whole, partial, subject},
	}).Collect()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("UID FETCH 1:3: %d messages, %v", len(msgs), err)
	}
	for i, m := range msgs {
		raw := []byte(raws[i])
		if m.UID != imap.UID(i+1) || m.SeqNum != uint32(i+1) || len(m.Flags) != 0 || m.RFC822Size != int64(len(raw)) || m.InternalDate.IsZero() {
			t.Errorf("message %d: uid %d seq %d flags %v size %d date %v", i, m.UID, m.SeqNum, m.Flags, m.RFC822Size, m.InternalDate)
		}
		if b := m.FindBodySection(whole); !bytes.Equal(b, raw) {
			t.Errorf("message %d: BODY[] %q, want %q", i, b, raw)
		}
		if b := m.FindBodySection(partial); !bytes.Equal(b, raw[6:16]) {
			t.Errorf("message %d: BODY[]<6.10> %q, want %q", i, b, raw[6:16])
		}
		if b := m.FindBodySection(subject); !bytes.HasPrefix(b, []byte("Subject: ")) {
			t.Errorf("message %d: BODY[HEADER.FIELDS (Subject)] %q", i, b)
		}
	}
	if s := msgs[1].Envelope.Subject; s != "日本語の件名" {
		t.Errorf("envelope subject %q, want the decoded Japanese", s)
	}
	if from := msgs[0].Envelope.From; len(from) != 1 || from[0].Addr() != "sender@remote.test" || from[0].Name != "Sender" {
		t.Errorf("envelope from %+v", from)
	}
	mp, ok := msgs[2].BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE %#v", msgs[2].BodyStructure)
	}
	att := &imap.FetchItemBodySection{Peek: true, Part: []int{2}}
	m2, err := c.Fetch(imap.SeqSetNum(3), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{att}}).Collect()
	if err != nil || len(m2) != 1 || string(m2[0].FindBodySection(att)) != "PDF" {
		t.Fatalf("FETCH 3 BODY[2]: %v", err)
	}
	// Sequence numbers and "*".
	last, err := c.Fetch(imap.SeqSet{{Start: 2, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(last) != 2 || last[0].UID != 2 || last[1].UID != 3 {
		t.Fatalf("FETCH 2:*: %v", err)
	}
	// "*" alone, and a UID range past the highest UID, name the last
	// message (go-imap's client drops answers to these: raw lines).
	r := w.raw(t)
	r.cmd("LOGIN alice@example.test pw-alice@example.test")
	r.cmd("EXAMINE INBOX")
	for _, command := range []string{"FETCH * (UID)", "UID FETCH 10:* (UID)"} {
		if got := r.untagged(command); fmt.Sprint(got) != "[* 3 FETCH (UID 3)]" {
			t.Errorf("%s: %q", command, got)
		}
	}
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if x == a {
			return true
		}
	}
	return false
}

// TestOtherUsersMailInvisible: bob's session never sees alice's messages,
// whatever UIDs it asks for.
func TestOtherUsersMailInvisible(t *testing.T) {
	w := newWorld(t)
	for i := range 3 {
		w.deliver(t, "alice@example.test", testMessage(fmt.Sprintf("alice %d", i), "secret"))
	}
	w.deliver(t, "bob@example.test", testMessage("bob", "bob's own"))
	c := w.dial(t, "bob@example.test", nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("bob's INBOX: %+v, %v", sel, err)
	}
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 1000}}, &imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope.Subject != "bob" {
		t.Fatalf("bob fetches 1:1000: %d messages, %v", len(msgs), err)
	}
	res, err := c.UIDSearch(&imap.SearchCriteria{Body: []string{"secret"}}, nil).Wait()
	if err != nil || len(res.AllUIDs()) != 0 {
		t.Fatalf("bob searches alice's words: %v, %v", res, err)
	}
}

// raw is a line-level IMAP conversation, for checking exact answers.
type raw struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int
}

func (w *world) raw(t *testing.T) *raw {
	conn, err := tls.Dial("tcp", w.tlsAdr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &raw{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.line() // greeting
	return c
}

func (c *raw) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a command and returns its tagged answer.
func (c *raw) cmd(command string) string {
	c.t.Helper()
	answer, _ := c.exchange(command)
	return answer
}

// untagged sends a command that must succeed and returns its untagged lines.
func (c *raw) untagged(command string) []string {
	c.t.Helper()
	answer, lines := c.exchange(command)
	if !strings.HasPrefix(answer, "OK") {
		c.t.Fatalf("%s: %s", command, answer)
	}
	return lines
}

// exchange sends a command and returns its tagged answer and the untagged
// lines before it.
func (c *raw) exchange(command string) (string, []string) {
	c.t.Helper()
	var lines []string
	c.n++
	tag := fmt.Sprintf("t%d", c.n)
	fmt.Fprintf(c.conn, "%s %s\r\n", tag, command)
	for {
		l := c.line()
		if strings.HasPrefix(l, "+ ") && strings.HasSuffix(command, "}") {
			fmt.Fprintf(c.conn, "hello\r\n")
			continue
		}
		if strings.HasPrefix(l, tag+" ") {
			return strings.TrimPrefix(l, tag+" "), lines
		}
		lines = append(lines, l)
	}
}

func TestWritesRefusedReadOnly(t *testing.T) {
	w := newWorld(t)
	w.deliver(t, "alice@example.test", testMessage("keep me", "body"))
	c := w.raw(t)
	if a := c.cmd("LOGIN alice@example.test pw-alice@example.test"); !strings.HasPrefix(a, "OK") {
		t.Fatalf("LOGIN: %s", a)
	}
	if a := c.cmd("SELECT INBOX"); !strings.HasPrefix(a, "OK") {
		t.Fatalf("SELECT: %s", a)
	}
	for _, command := range []string{
		`STORE 1 +FLAGS (\Seen)`, `UID STORE 1 +FLAGS (\Deleted)`, "COPY 1 Junk", "UID COPY 1 Junk", "MOVE 1 Junk", "UID MOVE 1 Junk",
		"EXPUNGE", "UID EXPUNGE 1", "APPEND INBOX {5}", "CREATE Archive", "DELETE Junk", "RENAME Junk Spam", "UNSUBSCRIBE INBOX",
	} {
		a := c.cmd(command)
		if !strings.HasPrefix(a, "NO [CANNOT]") || !strings.Contains(a, "read-only over IMAP") || !strings.Contains(a, "web UI or the REST API") {
			t.Errorf("%s: %q; want NO [CANNOT] saying read-only and where to change mail", command, a)
		}
	}
	if a := c.cmd("CLOSE"); !strings.HasPrefix(a, "OK") {
		t.Errorf("CLOSE: %s", a)
	}
	var n int
	if err := w.pool.QueryRow(context.Background(), `SELECT count(*) FROM messages WHERE deleted_at IS NULL`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d messages left, %v; want the one, untouched", n, err)
	}
	folders, _ := w.store.Folders(context.Background(), mustUser(t, w, "alice@example.test"))
	if len(folders) != 4 {
		t.Fatalf("folders after CREATE/DELETE/RENAME: %v", folders)
	}
}

func mustUser(t *testing.T, w *world, addr string) int64 {
	r, err := w.acc.Lookup(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return r.UserID
}

func TestSearch(t *testing.T) {
	w := newWorld(t)
	first := testMessage("invoice march", "please pay")
	w.deliver(t, "alice@example.test", first)
	second := testMessage("=?UTF-8?B?5pel5pys6Kqe44Gu5Lu25ZCN?=", "請求書を送ります")
	w.deliver(t, "alice@example.test", second)
	w.deliver(t, "alice@example.test", "From: boss@corp.test\r\nTo: alice@example.test\r\nSubject: meeting\r\nX-Priority: 1\r\n"+
		"Date: Tue, 03 Jan 2006 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
		"44GC44GX44Gf5Lya6K2w\r\n") // "あした会議"
	c := w.dial(t, "alice@example.test", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	today := time.Now()
	for _, tc := range []struct {
		name string
		c    imap.SearchCriteria
		want []uint32
	}{
		{"all", imap.SearchCriteria{}, []uint32{1, 2, 3}},
		{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "INVOICE"}}}, []uint32{1}},
		{"japanese subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "日本語"}}}, []uint32{2}},
		{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "boss@"}}}, []uint32{3}},
		{"other header", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "X-Priority", Value: "1"}}}, []uint32{3}},
		{"header present", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "X-Priority", Value: ""}}}, []uint32{3}},
		{"body decoded", imap.SearchCriteria{Body: []string{"会議"}}, []uint32{3}},
		{"body utf-8", imap.SearchCriteria{Body: []string{"請求書"}}, []uint32{2}},
		{"text in header", imap.SearchCriteria{Text: []string{"march"}}, []uint32{1}},
		{"sent before", imap.SearchCriteria{SentBefore: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC)}, []uint32{1, 2}},
		{"sent on", imap.SearchCriteria{SentSince: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC), SentBefore: time.Date(2006, 1, 4, 0, 0, 0, 0, time.UTC)}, []uint32{3}},
		{"since today", imap.SearchCriteria{Since: today.AddDate(0, 0, -1)}, []uint32{1, 2, 3}},
		{"before yesterday", imap.SearchCriteria{Before: today.AddDate(0, 0, -1)}, nil},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Body: []string{"pay"}}}}, []uint32{2, 3}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Body: []string{"pay"}}, {Body: []string{"会議"}}}}}, []uint32{1, 3}},
		{"seen (no flags kept)", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, nil},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{1, 2, 3}},
		{"uid set", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 2, Stop: 0}}}}, []uint32{2, 3}},
		{"larger", imap.SearchCriteria{Larger: int64(len(first))}, []uint32{2, 3}},
		{"smaller", imap.SearchCriteria{Smaller: int64(len(first) + 1)}, []uint32{1}},
	} {
		res, err := c.UIDSearch(&tc.c, nil).Wait()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var got []uint32
		for _, u := range res.AllUIDs() {
			got = append(got, uint32(u))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("UID SEARCH %s: %v, want %v", tc.name, got, tc.want)
		}
	}
	res, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "meeting"}}}, nil).Wait()
	if err != nil || fmt.Sprint(res.AllSeqNums()) != "[3]" {
		t.Fatalf("SEARCH SUBJECT meeting: %v, %v", res, err)
	}
}

// TestIdleSeesNewAndRemovedMail: a message delivered during IDLE appears
// (EXISTS), one deleted through the store goes (EXPUNGE), one moved away
// goes too and shows up in its new folder with a new UID.
func TestIdleSeesNewAndRemovedMail(t *testing.T) {
	w := newWorld(t)
	first := w.deliver(t, "alice@example.test", testMessage("one", "1"))
	var mu sync.Mutex
	var exists []uint32
	var expunged []uint32
	events := make(chan struct{}, 16)
	c := w.dial(t, "alice@example.test", &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mu.Lock()
				exists = append(exists, *d.NumMessages)
				mu.Unlock()
				events <- struct{}{}
			}
		},
		Expunge: func(seq uint32) {
			mu.Lock()
			expunged = append(expunged, seq)
			mu.Unlock()
			events <- struct{}{}
		},
	})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	second := w.deliver(t, "alice@example.test", testMessage("two", "2"))
	wait := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			mu.Lock()
			done := ok()
			mu.Unlock()
			if done {
				return
			}
			select {
			case <-events:
			case <-deadline:
				t.Fatalf("no %s during IDLE within 30s (exists %v, expunged %v)", what, exists, expunged)
			}
		}
	}
	wait("EXISTS 2", func() bool { return len(exists) > 0 && exists[len(exists)-1] == 2 })
	ctx := context.Background()
	alice := mustUser(t, w, "alice@example.test")
	if err := w.store.Delete(ctx, alice, first); err != nil {
		t.Fatal(err)
	}
	wait("EXPUNGE 1", func() bool { return len(expunged) == 1 && expunged[0] == 1 })
	if _, err := w.store.Move(ctx, alice, second, "Junk"); err != nil {
		t.Fatal(err)
	}
	wait("EXPUNGE of the moved message", func() bool { return len(expunged) == 2 && expunged[1] == 1 })
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("Junk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 1 || msgs[0].Envelope.Subject != "two" {
		t.Fatalf("Junk after the move: %v", err)
	}
}

// TestUIDsStableAcrossRestart: a new server (as after a restart) gives the
// same UIDVALIDITY and UIDs; UIDs are never reused after a delete.
func TestUIDsStableAcrossRestart(t *testing.T) {
	w := newWorld(t)
	var ids []int64
	for i := range 4 {
		ids = append(ids, w.deliver(t, "alice@example.test", testMessage(fmt.Sprintf("m%d", i), "x")))
	}
	if err := w.store.Delete(context.Background(), mustUser(t, w, "alice@example.test"), ids[3]); err != nil {
		t.Fatal(err)
	}
	state := func() (uint32, []imap.UID) {
		c := w.dial(t, "alice@example.test", nil)
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var uids []imap.UID
		for _, m := range msgs {
			uids = append(uids, m.UID)
		}
		return sel.UIDValidity, uids
	}
	v1, u1 := state()
	w.start(t)
	v2, u2 := state()
	if v1 != v2 || fmt.Sprint(u1) != fmt.Sprint(u2) || fmt.Sprint(u1) != "[1 2 3]" {
		t.Fatalf("before restart %d %v, after %d %v", v1, u1, v2, u2)
	}
	w.deliver(t, "alice@example.test", testMessage("m4", "x"))
	if _, u3 := state(); fmt.Sprint(u3) != "[1 2 3 5]" {
		t.Fatalf("after a new delivery: %v; want UID 4 (deleted) not reused", u3)
	}
}

func TestConnectionsPerIPLimited(t *testing.T) {
	w := newWorld(t)
	w.srv.Apply(config.IMAP{MaxConnectionsPerIP: 1, LoginsPerIPMinute: 30})
	first := w.dial(t, "alice@example.test", nil)
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	l, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(l, "* BYE Too many connections from your address") {
		t.Fatalf("second connection: %q", l)
	}
	if err := first.Noop().Wait(); err != nil {
		t.Fatalf("the first connection broke: %v", err)
	}
}

// BenchmarkUIDFetchEnvelope times UID FETCH 1:* (FLAGS ENVELOPE) over
// STARTTLS on a folder of 10,000 messages, each its own blob:
//
//	go test ./agent/imapd -run xxx -bench UIDFetchEnvelope -benchtime 5x
func BenchmarkUIDFetchEnvelope(b *testing.B) {
	const n = 10000
	w := newWorld(b)
	rcpt, err := w.acc.Lookup(context.Background(), "alice@example.test")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 16 {
				raw := "From: Sender " + fmt.Sprint(i) + " <sender@remote.test>\r\nTo: Alice <alice@example.test>\r\nCc: team@example.test\r\n" +
					"Subject: message number " + fmt.Sprint(i) + "\r\nDate: Mon, 02 Jan 2006 15:04:05 +0900\r\n" +
					"Message-ID: <" + fmt.Sprint(i) + "@remote.test>\r\nIn-Reply-To: <parent@remote.test>\r\n\r\n" + strings.Repeat("body text line\r\n", 100)
				h, _ := mailparse.ParseHeader(strings.NewReader(raw))
				if _, err := w.store.Deliver(context.Background(), mailstore.Delivery{MailFrom: "sender@remote.test", Recipients: []accounts.Recipient{rcpt}, Data: []byte(raw), Header: h}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	c := w.dial(b, "alice@example.test", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
		if err != nil || len(msgs) != n || msgs[n-1].Envelope == nil {
			b.Fatalf("%d messages, %v", len(msgs), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/fetch")
}
