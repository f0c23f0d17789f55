package dkim

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"sync"

	msgdkim "github.com/emersion/go-msgauth/dkim"
)

// SignedHeaders are the header fields Signer signs. A listed field absent
// from the message is signed as absent, so adding it later breaks the
// signature.
var SignedHeaders = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version",
	"Content-Type", "Reply-To", "In-Reply-To", "References",
}

// Signer signs outgoing mail with the sending domain's active key. It is
// safe for concurrent use.
type Signer struct {
	store *Store

	mu    sync.Mutex
	cache map[int64]crypto.Signer // decrypted private keys by key id
}

// NewSigner returns a signer using store's keys. Decrypted private keys are
// cached in memory by key id; the active key is looked up for every message,
// so a rotation made by another process takes effect at once.
func NewSigner(store *Store) *Signer {
	return &Signer{store: store, cache: make(map[int64]crypto.Signer)}
}

// Sign returns msg with a DKIM-Signature header field (relaxed/relaxed,
// sha256, SignedHeaders) for domain's active key prepended. Bare LF line
// ends in msg are turned into CRLF first, as the message travels over SMTP.
// A domain without an active key gives an error wrapping ErrNoKey, on which
// the caller may send the message unsigned with a warning.
func (s *Signer) Sign(ctx context.Context, domain string, msg []byte) ([]byte, error) {
	k, err := s.store.Active(ctx, domain)
	if err != nil {
		return nil, err
	}
	priv, err := s.key(ctx, k)
	if err != nil {
		return nil, err
	}
	msg = toCRLF(msg)
	var out bytes.Buffer
	out.Grow(len(msg) + 1024)
	err = msgdkim.Sign(&out, bytes.NewReader(msg), &msgdkim.SignOptions{
		Domain:                 k.Domain,
		Selector:               k.Selector,
		Signer:                 priv,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
		BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
		HeaderKeys:             SignedHeaders,
	})
	if err != nil {
		return nil, fmt.Errorf("dkim: sign for %s (selector %s): %w", k.Domain, k.Selector, err)
	}
	return out.Bytes(), nil
}

func (s *Signer) key(ctx context.Context, k Key) (crypto.Signer, error) {
	s.mu.Lock()
	priv, ok := s.cache[k.ID]
	s.mu.Unlock()
	if ok {
		return priv, nil
	}
	priv, err := s.store.privateKey(ctx, k)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cache[k.ID] = priv
	s.mu.Unlock()
	return priv, nil
}

// Forget drops every cached private key (for instance after keys were
// pruned).
func (s *Signer) Forget() {
	s.mu.Lock()
	clear(s.cache)
	s.mu.Unlock()
}

// toCRLF turns bare LF line ends into CRLF, returning msg itself when it has
// none.
func toCRLF(msg []byte) []byte {
	bare := false
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			bare = true
			break
		}
	}
	if !bare {
		return msg
	}
	out := make([]byte, 0, len(msg)+bytes.Count(msg, []byte("\n")))
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
