package tlsconfig

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func leaf(t *testing.T, cfg *tls.Config) *x509.Certificate {
	t.Helper()
	if len(cfg.Certificates) != 1 || len(cfg.Certificates[0].Certificate) == 0 {
		t.Fatalf("config has %d certificates, want 1", len(cfg.Certificates))
	}
	c, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSelfSignedGeneratesOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls") // does not exist yet
	cfg, err := SelfSigned(dir, "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("key.pem mode = %o, want 600", mode)
	}

	c := leaf(t, cfg)
	if !slices.Equal(c.DNSNames, []string{"mail.example.test"}) {
		t.Errorf("DNSNames = %v, want [mail.example.test]", c.DNSNames)
	}
	if len(c.IPAddresses) != 0 {
		t.Errorf("IPAddresses = %v, want none for a host name", c.IPAddresses)
	}
	if err := c.VerifyHostname("mail.example.test"); err != nil {
		t.Error(err)
	}
	if err := c.VerifyHostname("other.example.test"); err == nil {
		t.Error("certificate also verifies for other.example.test")
	}

	// Second call: same files, same certificate.
	cfg2, err := SelfSigned(dir, "mail.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cfg2.Certificates[0].Certificate[0], cfg.Certificates[0].Certificate[0]) {
		t.Fatal("second SelfSigned made a new certificate instead of reusing cert.pem")
	}
	certPEM2, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
	keyPEM2, _ := os.ReadFile(filepath.Join(dir, "key.pem"))
	if !bytes.Equal(certPEM, certPEM2) || !bytes.Equal(keyPEM, keyPEM2) {
		t.Fatal("second SelfSigned rewrote cert.pem or key.pem")
	}
}

func TestSelfSignedIP(t *testing.T) {
	cfg, err := SelfSigned(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := leaf(t, cfg)
	if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IPAddresses = %v, want [127.0.0.1]", c.IPAddresses)
	}
	if len(c.DNSNames) != 0 {
		t.Errorf("DNSNames = %v, want none for an IP", c.DNSNames)
	}
	if err := c.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
}

// handshake runs a TLS handshake over loopback TCP against server,
// verifying the server certificate for serverName against the certificate
// itself, then echoes one message. (Loopback rather than net.Pipe: an
// unbuffered pipe deadlocks when the client sends its alert while the server
// is still writing its flight.)
func handshake(t *testing.T, server *tls.Config, serverName string) error {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(leaf(t, server))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer sc.Close()
		sc.SetDeadline(time.Now().Add(time.Minute)) // a hang fails instead of blocking the run
		s := tls.Server(sc, server)
		if err := s.Handshake(); err != nil {
			srvErr <- err
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil {
			srvErr <- err
			return
		}
		_, err = s.Write(buf)
		srvErr <- err
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.SetDeadline(time.Now().Add(time.Minute))
	client := tls.Client(cc, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err := client.Handshake(); err != nil {
		cc.Close()
		<-srvErr
		return err
	}
	if _, err := client.Write([]byte("EHLO")); err != nil {
		return err
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(client, got); err != nil {
		return err
	}
	if string(got) != "EHLO" {
		t.Fatalf("echo = %q", got)
	}
	return <-srvErr
}

func TestSelfSignedHandshake(t *testing.T) {
	for _, host := range []string{"mx.example.test", "127.0.0.1"} {
		cfg, err := SelfSigned(t.TempDir(), host)
		if err != nil {
			t.Fatal(err)
		}
		if err := handshake(t, cfg, host); err != nil {
			t.Errorf("handshake for %s: %v", host, err)
		}
	}
	// The client refuses the certificate for a name it does not carry.
	cfg, err := SelfSigned(t.TempDir(), "mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, cfg, "wrong.example.test"); err == nil {
		t.Error("handshake verified the certificate for a name it does not carry")
	}
}

func TestLoad(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if _, err := SelfSigned(a, "a.example.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := SelfSigned(b, "b.example.test"); err != nil {
		t.Fatal(err)
	}

	cfg, err := Load(filepath.Join(a, "cert.pem"), filepath.Join(a, "key.pem"))
	if err != nil {
		t.Fatalf("Load of a matching pair: %v", err)
	}
	if err := handshake(t, cfg, "a.example.test"); err != nil {
		t.Errorf("handshake with loaded pair: %v", err)
	}

	for name, files := range map[string][2]string{
		"missing cert": {filepath.Join(a, "nope.pem"), filepath.Join(a, "key.pem")},
		"missing key":  {filepath.Join(a, "cert.pem"), filepath.Join(a, "nope.pem")},
		"mismatched":   {filepath.Join(a, "cert.pem"), filepath.Join(b, "key.pem")},
		"swapped":      {filepath.Join(a, "key.pem"), filepath.Join(a, "cert.pem")},
	} {
		cfg, err := Load(files[0], files[1])
		if err == nil {
			t.Errorf("%s: Load succeeded (%d certificates)", name, len(cfg.Certificates))
			continue
		}
		if !strings.Contains(err.Error(), "smtp.tls_cert") {
			t.Errorf("%s: error %q does not mention smtp.tls_cert", name, err)
		}
	}
}
