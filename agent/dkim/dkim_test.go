package dkim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mairust/mairust/agent/accounts/accountstest"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newStore(t *testing.T) (*Store, *pgxpool.Pool) {
	t.Helper()
	pool := accountstest.NewDatabase(t, "dkim", "alice@example.com", "bob@example.org", "taro@example.jp")
	st, err := New(pool, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return st, pool
}

// lookup answers DKIM TXT queries from the store's keys, as DNS would once
// every listed key is published.
func lookup(t *testing.T, st *Store) func(string) ([]string, error) {
	t.Helper()
	keys, err := st.List(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	records := map[string]string{}
	for _, k := range keys {
		name, value := TXTRecord(k)
		records[name] = value
	}
	return func(name string) ([]string, error) {
		if v, ok := records[name]; ok {
			return []string{v}, nil
		}
		return nil, fmt.Errorf("no TXT record for %s", name)
	}
}

func verify(t *testing.T, msg []byte, lookupTXT func(string) ([]string, error)) []*msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: lookupTXT})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(vs) != 1 {
		t.Fatalf("verify: %d signatures, want 1", len(vs))
	}
	return vs
}

const testMsg = "From: Alice <alice@example.com>\r\n" +
	"To: bob@example.org\r\n" +
	"Subject: hello\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Bob,\r\n\r\nsee you.\r\n"

func TestSignVerify(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		domain, selector string
		alg              Algorithm
		a                string
	}{
		{"example.com", "rsa1", RSA, "a=rsa-sha256"},
		{"Example.ORG", "ED1", Ed25519, "a=ed25519-sha256"},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			k, err := st.Generate(ctx, tc.domain, tc.selector, tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			if k.Domain != strings.ToLower(tc.domain) || k.Selector != strings.ToLower(tc.selector) || k.Algorithm != tc.alg || !k.Active || !k.RetiredAt.IsZero() || k.ID == 0 {
				t.Fatalf("key %+v", k)
			}
			signed, err := NewSigner(st).Sign(ctx, tc.domain, []byte(testMsg))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(signed, []byte("DKIM-Signature:")) || !bytes.HasSuffix(signed, []byte(testMsg)) {
				t.Fatalf("signed message:\n%s", signed)
			}
			hdr := string(signed[:len(signed)-len(testMsg)])
			unfolded := strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(hdr)
			for _, want := range []string{tc.a, "c=relaxed/relaxed", "d=" + k.Domain, "s=" + k.Selector,
				"h=From:To:Cc:Subject:Date:Message-ID:MIME-Version:Content-Type:Reply-To:In-Reply-To:References"} {
				if !strings.Contains(unfolded, want) {
					t.Errorf("signature lacks %q:\n%s", want, hdr)
				}
			}
			vs := verify(t, signed, lookup(t, st))
			if vs[0].Err != nil || vs[0].Domain != k.Domain {
				t.Fatalf("verification: %+v", vs[0])
			}

			// A changed body or signed header no longer verifies.
			for _, tamper := range [][2]string{{"see you.", "see you!"}, {"Subject: hello", "Subject: hellO"}} {
				bad := bytes.Replace(signed, []byte(tamper[0]), []byte(tamper[1]), 1)
				if vs := verify(t, bad, lookup(t, st)); vs[0].Err == nil {
					t.Errorf("%q → %q still verifies", tamper[0], tamper[1])
				}
			}
			// Adding a signed header that was absent breaks it too.
			added := append([]byte("Reply-To: mallory@evil.test\r\n"), signed...)
			if vs := verify(t, added, lookup(t, st)); vs[0].Err == nil {
				t.Error("added Reply-To still verifies")
			}
			// Relaxed canonicalization tolerates whitespace changes.
			ws := bytes.Replace(signed, []byte("Subject: hello"), []byte("Subject:   hello "), 1)
			if vs := verify(t, ws, lookup(t, st)); vs[0].Err != nil {
				t.Errorf("whitespace change breaks relaxed signature: %v", vs[0].Err)
			}
		})
	}
}

func TestJapaneseUTF8(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	for _, alg := range []Algorithm{RSA, Ed25519} {
		sel := "jp-" + string(alg)
		if _, err := st.Rotate(ctx, "example.jp", sel, alg); err != nil {
			t.Fatal(err)
		}
		// Raw UTF-8 header (SMTPUTF8) and an encoded word, LF line ends.
		msg := "From: 山田太郎 <taro@example.jp>\n" +
			"To: bob@example.org\n" +
			"Subject: 会議のお知らせ =?UTF-8?B?5LyB55S7?=\n" +
			"MIME-Version: 1.0\n" +
			"Content-Type: text/plain; charset=utf-8\n" +
			"\n" +
			"こんにちは。\n明日の会議は１０時からです。\n"
		signed, err := NewSigner(st).Sign(ctx, "example.jp", []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(signed, []byte("Subject: 会議のお知らせ")) || bytes.Contains(bytes.ReplaceAll(signed, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatalf("signed message is not the CRLF form of the original:\n%s", signed)
		}
		vs := verify(t, signed, lookup(t, st))
		if vs[0].Err != nil {
			t.Fatalf("%s: %v", alg, vs[0].Err)
		}
		bad := bytes.Replace(signed, []byte("１０時"), []byte("１１時"), 1)
		if vs := verify(t, bad, lookup(t, st)); vs[0].Err == nil {
			t.Fatalf("%s: tampered Japanese body verifies", alg)
		}
	}
}

func TestRotate(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	signer := NewSigner(st)
	old, err := st.Generate(ctx, "example.com", "s1", RSA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Generate(ctx, "example.com", "s2", RSA); !errors.Is(err, ErrActiveKey) {
		t.Fatalf("second Generate: %v, want ErrActiveKey", err)
	}
	oldSigned, err := signer.Sign(ctx, "example.com", []byte(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Rotate(ctx, "example.com", "s1", Ed25519); !errors.Is(err, ErrSelectorUsed) {
		t.Fatalf("Rotate to used selector: %v, want ErrSelectorUsed", err)
	}
	cur, err := st.Rotate(ctx, "example.com", "s2", Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.List(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != cur.ID || !keys[0].Active || keys[1].ID != old.ID || keys[1].Active || keys[1].RetiredAt.IsZero() {
		t.Fatalf("keys after rotation: %+v", keys)
	}
	if a, err := st.Active(ctx, "example.com"); err != nil || a.ID != cur.ID {
		t.Fatalf("Active: %+v, %v", a, err)
	}

	// The same Signer (with the old key cached) now signs with the new key.
	newSigned, err := signer.Sign(ctx, "example.com", []byte(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(newSigned, []byte("s=s2")) || !bytes.Contains(newSigned, []byte("a=ed25519-sha256")) {
		t.Fatalf("not signed with the new key:\n%s", newSigned)
	}
	// During the grace period both verify.
	look := lookup(t, st)
	for _, m := range [][]byte{oldSigned, newSigned} {
		if vs := verify(t, m, look); vs[0].Err != nil {
			t.Fatal(vs[0].Err)
		}
	}

	// Pruning before the retirement keeps the old key; after, removes it.
	retired := keys[1].RetiredAt
	if pruned, err := st.PruneRetired(ctx, retired); err != nil || len(pruned) != 0 {
		t.Fatalf("PruneRetired(retired_at): %v, %v", pruned, err)
	}
	pruned, err := st.PruneRetired(ctx, retired.Add(time.Millisecond))
	if err != nil || len(pruned) != 1 || pruned[0].ID != old.ID {
		t.Fatalf("PruneRetired after grace: %+v, %v", pruned, err)
	}
	look = lookup(t, st)
	if vs := verify(t, oldSigned, look); vs[0].Err == nil {
		t.Fatal("old signature verifies after its key was pruned")
	}
	if vs := verify(t, newSigned, look); vs[0].Err != nil {
		t.Fatal(vs[0].Err)
	}
}

func TestNoKeyAndBadInput(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	if _, err := NewSigner(st).Sign(ctx, "example.org", []byte(testMsg)); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "example.org") {
		t.Fatalf("Sign without key: %v, want ErrNoKey naming the domain", err)
	}
	if _, err := st.Generate(ctx, "not-hosted.test", "s1", RSA); !errors.Is(err, ErrUnknownDomain) {
		t.Fatalf("Generate for unknown domain: %v", err)
	}
	for _, sel := range []string{"", "a b", "-x", "x..y", "_dk"} {
		if _, err := st.Generate(ctx, "example.com", sel, RSA); err == nil {
			t.Errorf("selector %q accepted", sel)
		}
	}
	if _, err := st.Generate(ctx, "example.com", "s1", "dsa"); err == nil {
		t.Error("algorithm dsa accepted")
	}
	if _, err := New(nil, []byte("short")); err == nil {
		t.Error("short secret accepted")
	}
	for in, want := range map[string]Algorithm{"": RSA, "RSA": RSA, "ed25519": Ed25519} {
		if got, err := ParseAlgorithm(in); err != nil || got != want {
			t.Errorf("ParseAlgorithm(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseAlgorithm("rsa-1024"); err == nil {
		t.Error("ParseAlgorithm accepted rsa-1024")
	}
}

func TestPrivateKeyEncryptedAtRest(t *testing.T) {
	st, pool := newStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		domain string
		alg    Algorithm
	}{{"example.com", RSA}, {"example.org", Ed25519}} {
		k, err := st.Generate(ctx, tc.domain, "s1", tc.alg)
		if err != nil {
			t.Fatal(err)
		}
		var sealed []byte
		if err := pool.QueryRow(ctx, "SELECT private_key FROM dkim_keys WHERE id=$1", k.ID).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		der, err := st.open(sealed, aad(k.Domain, k.Selector, k.Algorithm))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sealed, []byte("PRIVATE KEY")) || bytes.Contains(sealed, []byte("-----")) {
			t.Fatal("stored key looks like PEM")
		}
		// No 16-byte run of the plain PKCS#8 key appears in the table.
		for i := 0; i+16 <= len(der); i++ {
			if bytes.Contains(sealed, der[i:i+16]) {
				t.Fatalf("%s: plain key bytes at %d appear in the stored key", tc.alg, i)
			}
		}
		// The sealed key is bound to its row: moved to another selector it
		// does not open.
		if _, err := st.open(sealed, aad(k.Domain, "other", k.Algorithm)); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("sealed key opens under another selector: %v", err)
		}
	}
}

func TestWrongSecret(t *testing.T) {
	st, pool := newStore(t)
	ctx := context.Background()
	if _, err := st.Generate(ctx, "example.com", "s1", RSA); err != nil {
		t.Fatal(err)
	}
	other, err := New(pool, []byte("another secret, also long enough"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewSigner(other).Sign(ctx, "example.com", []byte(testMsg))
	if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "example.com") || !strings.Contains(err.Error(), "wrong key-encryption secret") {
		t.Fatalf("Sign with wrong secret: %v", err)
	}
	// A tampered row does not open either.
	if _, err := pool.Exec(ctx, "UPDATE dkim_keys SET private_key = set_byte(private_key, 20, get_byte(private_key, 20) # 1)"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSigner(st).Sign(ctx, "example.com", []byte(testMsg)); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Sign with altered key: %v", err)
	}
}

func TestConcurrentSign(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	if _, err := st.Generate(ctx, "example.com", "s1", Ed25519); err != nil {
		t.Fatal(err)
	}
	signer := NewSigner(st)
	look := lookup(t, st)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			msg := strings.Replace(testMsg, "see you.", fmt.Sprintf("message %d", i), 1)
			signed, err := signer.Sign(ctx, "example.com", []byte(msg))
			if err == nil {
				var vs []*msgdkim.Verification
				vs, err = msgdkim.VerifyWithOptions(bytes.NewReader(signed), &msgdkim.VerifyOptions{LookupTXT: look})
				if err == nil && (len(vs) != 1 || vs[0].Err != nil) {
					err = fmt.Errorf("verification %+v", vs)
				}
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestTXTRecord(t *testing.T) {
	st, _ := newStore(t)
	ctx := context.Background()
	rk, err := st.Generate(ctx, "example.com", "mail2026", RSA)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := st.Generate(ctx, "example.org", "ed", Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	name, value := TXTRecord(rk)
	if name != "mail2026._domainkey.example.com" || !strings.HasPrefix(value, "v=DKIM1; k=rsa; p=MII") {
		t.Fatalf("rsa record %s %s", name, value)
	}
	parts := TXTStrings(value)
	if len(parts) < 2 || strings.Join(parts, "") != value {
		t.Fatalf("rsa value of %d bytes split into %d parts", len(value), len(parts))
	}
	for _, p := range parts {
		if len(p) > 255 {
			t.Fatalf("TXT string of %d bytes", len(p))
		}
	}
	line := ZoneFileLine(rk)
	want := `mail2026._domainkey.example.com. IN TXT ( "` + parts[0] + `" "` + parts[1] + `"`
	if !strings.HasPrefix(line, want) || !strings.HasSuffix(line, `" )`) {
		t.Fatalf("zone line %s", line)
	}
	name, value = TXTRecord(ek)
	if name != "ed._domainkey.example.org" || !strings.HasPrefix(value, "v=DKIM1; k=ed25519; p=") || len(TXTStrings(value)) != 1 {
		t.Fatalf("ed25519 record %s %s", name, value)
	}
	if got := ZoneFileLine(ek); got != `ed._domainkey.example.org. IN TXT ( "`+value+`" )` {
		t.Fatalf("ed25519 zone line %s", got)
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dkim.key")
	a, err := LoadOrCreateSecret(path)
	if err != nil || len(a) != 32 {
		t.Fatalf("create: %d bytes, %v", len(a), err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v, %v", fi.Mode(), err)
	}
	b, err := LoadOrCreateSecret(path)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("reload differs: %v", err)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSecret(short); err == nil {
		t.Fatal("short secret file accepted")
	}
}
