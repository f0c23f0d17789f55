package agent_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/internal/config"
)

// TestMbsyncSyncsMailboxToMaildir pulls alice's INBOX into Maildirs with
// mbsync (isync), over STARTTLS and over IMAPS, and checks that every
// message arrives as the agent stored it, that a second run fetches only
// the message delivered since, and that after a restart of the agent a
// third run fetches nothing (same UIDVALIDITY and UIDs).
func TestMbsyncSyncsMailboxToMaildir(t *testing.T) {
	mbsync, err := exec.LookPath("mbsync")
	if err != nil {
		t.Fatalf("mbsync not found (%v): apt-get install isync (scripts/deps.sh test)", err)
	}
	tlsKey := mbsyncTLSKeyword(t, mbsync)

	cfgPath, dataDir, pool := setup(t, "")
	p := startAgent(t, cfgPath)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IMAP.TLSListen == "" || p.imap == "" {
		t.Fatalf("imap.listen %q, imap.tls_listen %q: both wanted", p.imap, cfg.IMAP.TLSListen)
	}

	msgs := mbsyncMessages()
	firstBatch := msgs[:len(msgs)-1]
	for _, m := range firstBatch {
		if err := sendRaw(p.smtp, m); err != nil {
			t.Fatalf("send: %v\n%s", err, p.logs())
		}
	}

	dir := t.TempDir()
	channels := []mbsyncChannel{
		{name: "starttls", addr: p.imap, tlsType: "STARTTLS"},
		{name: "imaps", addr: cfg.IMAP.TLSListen, tlsType: "IMAPS"},
	}
	rc := writeMbsyncrc(t, dir, tlsKey, filepath.Join(dataDir, "tls", "cert.pem"), channels)
	maildir := func(ch mbsyncChannel) string { return filepath.Join(dir, ch.name, "INBOX") }

	// First run: every message, each channel once.
	fetched := runMbsync(t, mbsync, rc, p)
	checkFetched(t, "first run", fetched, inboxUIDs(t, pool, dataDir), len(channels))
	before := make(map[string]map[string][]byte)
	for _, ch := range channels {
		before[ch.name] = checkMaildir(t, pool, dataDir, maildir(ch), ch.name, firstBatch)
	}

	// Second run: only the message delivered since.
	if err := sendRaw(p.smtp, msgs[len(msgs)-1]); err != nil {
		t.Fatalf("send: %v\n%s", err, p.logs())
	}
	fetched = runMbsync(t, mbsync, rc, p)
	uids := inboxUIDs(t, pool, dataDir)
	checkFetched(t, "second run", fetched, uids[len(uids)-1:], len(channels))
	for _, ch := range channels {
		files := checkMaildir(t, pool, dataDir, maildir(ch), ch.name, msgs)
		added := sameFiles(t, ch.name+" second run", before[ch.name], files)
		if len(added) != 1 {
			t.Errorf("%s: second run added %d files %v, want 1", ch.name, len(added), added)
		} else if got, want := subjectOf(files[added[0]]), subjectOf([]byte(msgs[len(msgs)-1])); got != want {
			t.Errorf("%s: second run added %q, want %q", ch.name, got, want)
		}
		before[ch.name] = files
	}

	// Third run, against a restarted agent: nothing new, nothing fetched.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.waitExit(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs())
	}
	p = startAgent(t, cfgPath)
	fetched = runMbsync(t, mbsync, rc, p)
	checkFetched(t, "run after restart", fetched, nil, len(channels))
	for _, ch := range channels {
		files := checkMaildir(t, pool, dataDir, maildir(ch), ch.name, msgs)
		if added := sameFiles(t, ch.name+" run after restart", before[ch.name], files); len(added) != 0 {
			t.Errorf("%s: run after restart added %v", ch.name, added)
		}
	}
}

// inboxUIDs returns the UIDs of alice's INBOX messages, ascending.
func inboxUIDs(t *testing.T, pool *pgxpool.Pool, dataDir string) []uint32 {
	t.Helper()
	stored, _ := storedInbox(t, pool, dataDir)
	uids := make([]uint32, len(stored))
	for i, m := range stored {
		uids[i] = m.uid
	}
	return uids
}

// sameFiles checks that every file of before is in after, unchanged, and
// returns the names of the files added.
func sameFiles(t *testing.T, what string, before, after map[string][]byte) []string {
	t.Helper()
	for name, data := range before {
		got, ok := after[name]
		if !ok {
			t.Errorf("%s: %s gone", what, name)
		} else if !bytes.Equal(got, data) {
			t.Errorf("%s: %s changed", what, name)
		}
	}
	var added []string
	for name := range after {
		if _, ok := before[name]; !ok {
			added = append(added, name)
		}
	}
	return added
}

// mbsyncTLSKeyword returns the name of the connection security setting:
// TLSType from isync 1.5 on, SSLType before.
func mbsyncTLSKeyword(t *testing.T, mbsync string) string {
	t.Helper()
	out, err := exec.Command(mbsync, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("mbsync --version: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(\d+)\.(\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("mbsync --version: no version in %q", out)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	t.Logf("%s", bytes.TrimSpace(out))
	if major > 1 || major == 1 && minor >= 5 {
		return "TLSType"
	}
	return "SSLType"
}

type mbsyncChannel struct {
	name    string // also the Maildir directory under the test's directory
	addr    string
	tlsType string // STARTTLS or IMAPS
}

// writeMbsyncrc writes a configuration with one channel per ch, each
// pulling INBOX into dir/<name>/INBOX, trusting the agent's certificate.
func writeMbsyncrc(t *testing.T, dir, tlsKey, cert string, chs []mbsyncChannel) string {
	t.Helper()
	var b strings.Builder
	for _, ch := range chs {
		host, port, err := net.SplitHostPort(ch.addr)
		if err != nil {
			t.Fatal(err)
		}
		// mbsync creates the mailboxes, not the store's directory.
		if err := os.MkdirAll(filepath.Join(dir, ch.name), 0o700); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, `IMAPAccount %[1]s
Host %[2]s
Port %[3]s
User alice@example.test
Pass pw-alice@example.test
%[4]s %[5]s
CertificateFile %[6]s
SystemCertificates no

IMAPStore %[1]s-far
Account %[1]s

MaildirStore %[1]s-near
Path %[7]s/
Inbox %[7]s/INBOX
SubFolders Verbatim

Channel %[1]s
Far :%[1]s-far:
Near :%[1]s-near:
Patterns INBOX
Sync Pull
Create Near
Expunge None
SyncState *

`, ch.name, host, port, tlsKey, ch.tlsType, cert, filepath.Join(dir, ch.name))
	}
	rc := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(rc, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return rc
}

// runMbsync runs every channel of rc once, within a minute, and returns
// the UIDs whose content it fetched, from the IMAP conversation that -Dn
// prints (all channels together, in order).
func runMbsync(t *testing.T, mbsync, rc string, p *proc) []uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mbsync, "-V", "-Dn", "-c", rc, "-a")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || ctx.Err() != nil {
		t.Fatalf("mbsync: %v\n%s\nagent:\n%s", err, out, p.logs())
	}
	var uids []uint32
	for _, m := range bodyFetch.FindAllStringSubmatch(string(out), -1) {
		for _, r := range strings.Split(m[1], ",") {
			lo, hi, _ := strings.Cut(r, ":")
			a, err1 := strconv.ParseUint(lo, 10, 32)
			b, err2 := strconv.ParseUint(cmp.Or(hi, lo), 10, 32)
			if err1 != nil || err2 != nil || a > b {
				t.Fatalf("mbsync fetched UIDs %q: cannot read it\n%s", m[1], out)
			}
			for u := a; u <= b; u++ {
				uids = append(uids, uint32(u))
			}
		}
	}
	return uids
}

// bodyFetch is how mbsync asks for a message's content.
var bodyFetch = regexp.MustCompile(`>>> \d+ UID FETCH ([0-9:,]+) \(BODY\.PEEK\[\]\)`)

// checkFetched checks that the content of exactly the messages with UIDs
// want were fetched, once per channel.
func checkFetched(t *testing.T, what string, got, want []uint32, channels int) {
	t.Helper()
	var all []uint32
	for range channels {
		all = append(all, want...)
	}
	slices.Sort(all)
	got = slices.Clone(got)
	slices.Sort(got)
	if !slices.Equal(got, all) {
		t.Errorf("%s: mbsync fetched the content of UIDs %v, want %v", what, got, all)
	}
}

// checkMaildir checks that the Maildir holds exactly the messages of
// alice's INBOX, each as the agent stored it (apart from the changes mbsync
// makes, see fromMaildir), that those are the messages sent, and that
// mbsync's state names the folder's UIDVALIDITY and highest UID. It returns
// the files by name ("new/..." or "cur/...").
func checkMaildir(t *testing.T, pool *pgxpool.Pool, dataDir, maildir, name string, sent []string) map[string][]byte {
	t.Helper()
	stored, validity := storedInbox(t, pool, dataDir)
	if len(stored) != len(sent) {
		t.Fatalf("%s: %d messages stored, %d sent", name, len(stored), len(sent))
	}
	for i, s := range stored {
		if !bytes.HasSuffix(s.data, []byte(sent[i])) {
			t.Fatalf("%s: stored message UID %d does not end with the one sent:\n%.300s", name, s.uid, s.data)
		}
	}

	files := map[string][]byte{}
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(maildir, sub))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(maildir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[sub+"/"+e.Name()] = data
		}
	}
	if len(files) != len(stored) {
		t.Errorf("%s: %d files in the Maildir, %d messages in INBOX", name, len(files), len(stored))
	}
	// Each file is exactly one stored message, and each stored message is
	// in exactly one file.
	matched := make(map[uint32]string)
	for fname, data := range files {
		got := fromMaildir(data)
		var uid uint32
		for _, s := range stored {
			if bytes.Equal(got, bytes.ReplaceAll(s.data, []byte("\r\n"), []byte("\n"))) {
				uid = s.uid
				break
			}
		}
		switch other, dup := matched[uid]; {
		case uid == 0:
			t.Errorf("%s: %s is no stored message (subject %q):\n%.600q", name, fname, subjectOf(data), data)
		case dup:
			t.Errorf("%s: %s and %s are both UID %d", name, fname, other, uid)
		default:
			matched[uid] = fname
		}
	}
	for _, s := range stored {
		if _, ok := matched[s.uid]; !ok {
			t.Errorf("%s: UID %d (subject %q) is in no file", name, s.uid, subjectOf(s.data))
		}
	}

	state, err := os.ReadFile(filepath.Join(maildir, ".mbsyncstate"))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	wantState := []string{fmt.Sprintf("FarUidValidity %d\n", validity)}
	if len(stored) > 0 {
		wantState = append(wantState, fmt.Sprintf("MaxPulledUid %d\n", stored[len(stored)-1].uid))
	}
	for _, w := range wantState {
		if !bytes.Contains(state, []byte(w)) {
			t.Errorf("%s: mbsync state has no %q:\n%s", name, strings.TrimSpace(w), state)
		}
	}
	return files
}

// fromMaildir undoes what mbsync does to a message it writes to a Maildir:
// it ends lines with LF instead of CRLF and adds an X-TUID field at the end
// of the header.
func fromMaildir(data []byte) []byte {
	header, body, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return data
	}
	header = xTUID.ReplaceAll(header, nil)
	return slices.Concat(header, []byte("\n\n"), body)
}

var xTUID = regexp.MustCompile(`(?m)\nX-TUID: [^\n]*$`)

type storedMessage struct {
	uid  uint32
	data []byte
}

// storedInbox returns alice's INBOX messages as stored in the agent's blob
// store, ascending by UID, and the folder's UIDVALIDITY.
func storedInbox(t *testing.T, pool *pgxpool.Pool, dataDir string) ([]storedMessage, uint32) {
	t.Helper()
	ctx := context.Background()
	var validity uint32
	err := pool.QueryRow(ctx, `
		SELECT f.uid_validity FROM folders f JOIN mail_users u ON u.id = f.user_id
		WHERE u.address = 'alice@example.test' AND f.name = 'INBOX'`).Scan(&validity)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `
		SELECT m.uid, m.blob_key FROM messages m
		JOIN folders f ON f.id = m.folder_id
		JOIN mail_users u ON u.id = m.user_id
		WHERE u.address = 'alice@example.test' AND f.name = 'INBOX' AND m.deleted_at IS NULL
		ORDER BY m.uid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedMessage
	for rows.Next() {
		var (
			m   storedMessage
			key string
		)
		if err := rows.Scan(&m.uid, &key); err != nil {
			t.Fatal(err)
		}
		if m.data, err = os.ReadFile(filepath.Join(dataDir, "mail", key[:2], key)); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out, validity
}

// subjectOf returns the raw Subject field body of a message.
func subjectOf(msg []byte) string {
	for _, line := range strings.Split(string(msg), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Subject: "); ok {
			return v
		}
	}
	return ""
}

// mbsyncMessages returns the messages the test sends, the last one for the
// second run: plain text, a Japanese subject and UTF-8 body, a multipart
// message with a binary attachment, dot-stuffing, and a large message.
func mbsyncMessages() []string {
	const hdr = "From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nDate: Mon, 2 Mar 2026 10:00:00 +0900\r\n"
	attachment := make([]byte, 3000)
	for i := range attachment {
		attachment[i] = byte(i * 7)
	}
	b64 := base64.StdEncoding.EncodeToString(attachment)
	var wrapped strings.Builder
	for len(b64) > 76 {
		wrapped.WriteString(b64[:76] + "\r\n")
		b64 = b64[76:]
	}
	wrapped.WriteString(b64 + "\r\n")
	jp := "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("日本語の件名です")) + "?="
	return []string{
		hdr + "Subject: mbsync plain\r\nMessage-ID: <plain@remote.test>\r\n\r\nHello Alice,\r\nthis is plain text.\r\n",
		hdr + "Subject: " + jp + "\r\nMessage-ID: <jp@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nこんにちは、アリスさん。\r\n日本語の本文です。\r\n",
		hdr + "Subject: mbsync attachment\r\nMessage-ID: <multi@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n" +
			"This is a multi-part message in MIME format.\r\n--b0undary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the attachment.\r\n" +
			"--b0undary\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			wrapped.String() + "--b0undary--\r\n",
		hdr + "Subject: mbsync dots\r\nMessage-ID: <dots@remote.test>\r\n\r\n.\r\n..leading dots\r\nFrom the start of a line\r\n.\r\n",
		hdr + "Subject: mbsync large\r\nMessage-ID: <large@remote.test>\r\n\r\n" + strings.Repeat("a line of a large message, repeated many times over\r\n", 4000),
		hdr + "Subject: mbsync second run\r\nMessage-ID: <second@remote.test>\r\n\r\nThe message for the second run.\r\n",
	}
}
