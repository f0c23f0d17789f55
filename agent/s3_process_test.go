package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mairust/mairust/agent/blobstore"
	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/proctest"
	"github.com/mairust/mairust/internal/s3test"
)

// s3Settings is the config text selecting the S3 backend with settings c.
func s3Settings(t *testing.T, c config.S3) string {
	t.Helper()
	out, err := yaml.Marshal(struct {
		Storage config.Storage `yaml:"storage"`
		S3      config.S3      `yaml:"s3"`
	}{config.Storage{Backend: "s3"}, c})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// s3Reader returns a function reading blobs through a store of its own
// opened with settings c.
func s3Reader(t *testing.T, c config.S3) func(key string) ([]byte, error) {
	t.Helper()
	ctx := context.Background()
	s, err := blobstore.OpenS3(ctx, c)
	if err != nil {
		t.Fatalf("OpenS3: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return func(key string) ([]byte, error) {
		r, err := s.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
}

// TestS3StorageEndToEnd delivers a message to an agent storing blobs on a
// real S3 server and finds it there, encrypted as configured.
func TestS3StorageEndToEnd(t *testing.T) {
	for _, c := range []struct {
		encryption string
		sse        string // X-Amz-Server-Side-Encryption of the upload
		sealed     bool   // the server holds ciphertext
	}{
		{"sse-s3", "AES256", false},
		{"client", "", true},
	} {
		t.Run(c.encryption, func(t *testing.T) {
			g := s3test.Start(t)
			settings := g.Config(c.encryption)
			cfgPath, _, pool := setup(t, s3Settings(t, settings))
			p := startAgent(t, cfgPath)
			id := "s3-" + c.encryption
			if err := sendOne(p.smtp, id); err != nil {
				t.Fatalf("SMTP delivery: %v", err)
			}
			// The row is committed and the blob reads back through the
			// backend: the message, whose SHA-256 is its key.
			checkAcknowledged(t, pool, []string{id}, s3Reader(t, settings))

			var key string
			if err := pool.QueryRow(context.Background(), `SELECT blob_key FROM messages WHERE message_id = $1`, id+"@remote.test").Scan(&key); err != nil {
				t.Fatal(err)
			}
			stored, err := os.ReadFile(g.File(key))
			if err != nil {
				t.Fatalf("no object for blob %s in the bucket: %v", key, err)
			}
			sum := sha256.Sum256(stored)
			asSent := hex.EncodeToString(sum[:]) == key
			if c.sealed && (asSent || bytes.Contains(stored, []byte("Subject: load "+id))) {
				t.Fatalf("with encryption %s the object on the server holds the plaintext", c.encryption)
			}
			if !c.sealed && !asSent {
				t.Fatalf("with encryption %s the server holds %d bytes that are not the message", c.encryption, len(stored))
			}
			puts := 0
			for _, r := range g.Requests(s3test.Prefix + key) {
				if r.Operation() == "PutObject" {
					puts++
					if got := r.Header.Get("X-Amz-Server-Side-Encryption"); got != c.sse {
						t.Errorf("the upload asked for server-side encryption %q, want %q", got, c.sse)
					}
				}
			}
			if puts != 1 {
				t.Errorf("the agent uploaded the blob %d times, want once", puts)
			}
		})
	}
}

// TestS3SIGKILLLosesNoAcknowledgedMessage is the crash test on S3: after a
// SIGKILL mid-load and a restart every acknowledged message reads back from
// the bucket, and the objects of unacknowledged ones are swept.
func TestS3SIGKILLLosesNoAcknowledgedMessage(t *testing.T) {
	g := s3test.Start(t)
	settings := g.Config("sse-s3")
	cfgPath, _, pool := setup(t, crashRetention+s3Settings(t, settings))
	acked := loadUntilKilled(t, startAgent(t, cfgPath), 200)

	restartAfterCrash(t, cfgPath)
	checkAcknowledged(t, pool, acked, s3Reader(t, settings))
	waitStorageMatchesRows(t, pool, g.File("*")) // every object under the prefix
}

// TestS3BadSettingStopsAgent checks that an invalid s3 value makes the agent
// exit with an error naming the key and its line, before it contacts S3.
func TestS3BadSettingStopsAgent(t *testing.T) {
	g := s3test.Start(t)
	settings := g.Config("sse-s3")
	settings.MultipartThreshold = 4
	cfgPath, _, _ := setup(t, s3Settings(t, settings))

	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	line := 0
	for sc, n := bufio.NewScanner(bytes.NewReader(raw)), 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "multipart_threshold_mb: 4" {
			line = n
		}
	}
	if line == 0 {
		t.Fatalf("multipart_threshold_mb: 4 not in the config:\n%s", raw)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, proctest.Binary(t), "agent", "--config", cfgPath).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() <= 0 {
		t.Fatalf("mairust agent with multipart_threshold_mb: 4: %v, want a non-zero exit\n%s", err, out)
	}
	if want := fmt.Sprintf("%s:%d: s3.multipart_threshold_mb", cfgPath, line); !strings.Contains(string(out), want) {
		t.Fatalf("mairust agent printed\n%s\nwant an error containing %q", out, want)
	}
	// Only the test's CreateBucket reached the bucket.
	if rs := g.Requests(""); len(rs) != 1 {
		t.Fatalf("%d requests reached the bucket, want only the test's CreateBucket", len(rs))
	}
}
