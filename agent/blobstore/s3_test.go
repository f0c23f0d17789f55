package blobstore

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mairust/mairust/internal/config"
	"github.com/mairust/mairust/internal/s3test"
)

// openS3 opens a store with settings c, failing the test on error.
func openS3(t *testing.T, c config.S3) *S3 {
	t.Helper()
	s, err := OpenS3(context.Background(), c)
	if err != nil {
		t.Fatalf("OpenS3: %v", err)
	}
	return s
}

// blob returns n bytes of readable mail-like text, distinct per seed.
func blob(seed string, n int) []byte {
	line := fmt.Sprintf("Subject: confidential %s\r\nThis is the secret body of the message.\r\n", seed)
	return bytes.Repeat([]byte(line), n/len(line)+1)[:n]
}

func TestS3RoundTrip(t *testing.T) {
	t.Parallel()
	g := s3test.Start(t)
	s := openS3(t, g.Config("sse-s3"))
	s.listPage = 2
	ctx := context.Background()

	var keys []string
	blobs := map[string][]byte{}
	for i := range 5 {
		data := blob(fmt.Sprint("round trip ", i), 1000+i)
		key := putBlob(t, s, data)
		keys = append(keys, key)
		blobs[key] = data
	}
	// Putting an existing key again leaves one object.
	putBlob(t, s, blobs[keys[0]])
	// Objects under the prefix that are not blobs, and blobs outside the
	// prefix, are not walked.
	for _, name := range []string{"mail/README", "mail/sub/" + keys[0], "other/" + keys[0]} {
		_, err := g.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(g.Bucket), Key: aws.String(name), Body: strings.NewReader("x")})
		if err != nil {
			t.Fatal(err)
		}
	}

	for key, data := range blobs {
		if got := getBlob(t, s, key); !bytes.Equal(got, data) {
			t.Fatalf("Get %s returned %d bytes, not what was put", key, len(got))
		}
		// On the server the object is named prefix+key.
		if got, err := os.ReadFile(g.File(key)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("object file %s on the gateway: %v (or wrong content)", g.File(key), err)
		}
	}
	sameKeys(t, walkKeys(t, s), keys...)
	// Walk followed the pages: 8 objects under mail/, 2 per page.
	pages, continued := 0, 0
	for _, r := range g.Requests("") {
		if r.Method == http.MethodGet && r.Query.Get("list-type") == "2" {
			pages++
			if r.Query.Get("continuation-token") != "" {
				continued++
			}
		}
	}
	if pages < 4 || continued != pages-1 {
		t.Fatalf("Walk sent %d ListObjectsV2 requests, %d with a continuation token; want at least 4, all but the first continued", pages, continued)
	}

	if err := s.Delete(ctx, keys[0]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, keys[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(g.File(keys[0])); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("object file still on the gateway after Delete: %v", err)
	}
	if err := s.Delete(ctx, keys[0]); err != nil {
		t.Fatalf("Delete of an absent key: %v", err)
	}
	sameKeys(t, walkKeys(t, s), keys[1:]...)
	if _, err := s.Get(ctx, Key([]byte("never stored"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a key never stored: %v, want ErrNotFound", err)
	}
}

func TestS3InvalidInput(t *testing.T) {
	t.Parallel()
	g := s3test.Start(t)
	s := openS3(t, g.Config("sse-s3"))
	ctx := context.Background()
	for _, key := range []string{"", "../x", Key(nil)[:63] + "g"} {
		if err := s.Put(ctx, key, 1, strings.NewReader("x")); err == nil {
			t.Errorf("Put %q succeeded", key)
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get %q: %v, want ErrNotFound", key, err)
		}
		if err := s.Delete(ctx, key); err == nil {
			t.Errorf("Delete %q succeeded", key)
		}
	}
	data := []byte("twelve bytes")
	for _, size := range []int64{11, 13} {
		if err := s.Put(ctx, Key(data), size, bytes.NewReader(data)); err == nil || !strings.Contains(err.Error(), "expected") {
			t.Errorf("Put of 12 bytes declared as %d: %v, want a size error", size, err)
		}
	}
	if n := len(g.Requests(s3test.Prefix + Key(data))); n != 0 {
		t.Errorf("a Put with the wrong size sent %d requests", n)
	}
}

func TestS3MultipartThreshold(t *testing.T) {
	t.Parallel()
	g := s3test.Start(t)
	s := openS3(t, g.Config("sse-s3")) // threshold 5 MiB
	cases := []struct {
		size      int
		multipart bool
		parts     int
	}{
		{1_000_000, false, 0},
		{5<<20 - 1, false, 0},
		{5 << 20, true, 1},
		{20_000_000, true, 4},
	}
	for _, c := range cases {
		data := blob(fmt.Sprint("size ", c.size), c.size)
		key := putBlob(t, s, data)
		name := s3test.Prefix + key

		// versitygw's own access log says which operations it performed.
		ops := g.Operations(t, name)
		var want map[string]int
		if c.multipart {
			want = map[string]int{"CreateMultipartUpload": 1, "UploadPart": c.parts, "CompleteMultipartUpload": 1}
		} else {
			want = map[string]int{"PutObject": 1}
		}
		if fmt.Sprint(ops) != fmt.Sprint(want) {
			t.Errorf("%d bytes: versitygw performed %v, want %v", c.size, ops, want)
		}
		// The proxy saw the parts' sizes: the threshold, the last one the rest.
		left := int64(c.size)
		for _, r := range g.Requests(name) {
			op := r.Operation()
			if op != "PutObject" && op != "UploadPart" || r.Status != http.StatusOK {
				continue
			}
			want := left
			if op == "UploadPart" {
				want = min(left, 5<<20)
			}
			if r.Length != want {
				t.Errorf("%d bytes: %s of %d bytes, want %d", c.size, op, r.Length, want)
			}
			left -= r.Length
		}
		if left != 0 {
			t.Errorf("%d bytes: %d bytes never reached the gateway", c.size, left)
		}
		if fi, err := os.Stat(g.File(key)); err != nil || fi.Size() != int64(c.size) {
			t.Errorf("%d bytes: object file on the gateway: %v", c.size, fi)
		}
		if got := getBlob(t, s, key); !bytes.Equal(got, data) {
			t.Errorf("%d bytes: Get returned different content", c.size)
		}
	}
}

// failingBody is a blob body whose reads fail from offset at on, first
// cancelling the Put's context.
type failingBody struct {
	*bytes.Reader
	at     int64
	cancel context.CancelFunc
}

func (f *failingBody) Read(p []byte) (int, error) {
	pos := f.Size() - int64(f.Len())
	if pos >= f.at {
		f.cancel()
		return 0, errors.New("disk read error")
	}
	return f.Reader.Read(p[:min(int64(len(p)), f.at-pos)])
}

func TestS3MultipartAbortedOnFailure(t *testing.T) {
	t.Parallel()
	g := s3test.Start(t)
	s := openS3(t, g.Config("sse-s3"))
	data := blob("aborted", 12<<20)
	key := Key(data)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := &failingBody{Reader: bytes.NewReader(data), at: 7 << 20, cancel: cancel}
	err := s.Put(ctx, key, int64(len(data)), body)
	if err == nil || !strings.Contains(err.Error(), "disk read error") {
		t.Fatalf("Put with a failing body: %v", err)
	}

	want := map[string]int{"CreateMultipartUpload": 1, "UploadPart": 1, "AbortMultipartUpload": 1}
	if ops := g.Operations(t, s3test.Prefix+key); fmt.Sprint(ops) != fmt.Sprint(want) {
		t.Fatalf("versitygw performed %v, want %v", ops, want)
	}
	up, err := g.Client().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(g.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(up.Uploads) != 0 {
		t.Fatalf("%d multipart uploads left on the gateway", len(up.Uploads))
	}
	if _, err := s.Get(context.Background(), key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after a failed Put: %v, want ErrNotFound", err)
	}
}

func TestS3ServerSideEncryptionHeaders(t *testing.T) {
	t.Parallel()
	g := s3test.Start(t)
	for _, enc := range []struct{ setting, header, kmsKey string }{
		{"sse-s3", "AES256", ""},
		{"sse-kms", "aws:kms", s3test.KMSKeyID},
	} {
		s := openS3(t, g.Config(enc.setting))
		for _, size := range []int{1_000_000, 6 << 20} {
			data := blob(enc.setting+fmt.Sprint(size), size)
			key := putBlob(t, s, data)
			if got := getBlob(t, s, key); !bytes.Equal(got, data) {
				t.Fatalf("%s: Get returned different content", enc.setting)
			}
			writes := 0
			for _, r := range g.Requests(s3test.Prefix + key) {
				if r.Status/100 != 2 {
					t.Errorf("%s: %s answered %d", enc.setting, r.Operation(), r.Status)
				}
				sse := r.Header.Get("X-Amz-Server-Side-Encryption")
				kms := r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id")
				// PutObject and CreateMultipartUpload carry the SSE headers;
				// parts, completion and reads must not.
				if op := r.Operation(); op == "PutObject" || op == "CreateMultipartUpload" {
					writes++
					if sse != enc.header || kms != enc.kmsKey {
						t.Errorf("%s: %s sent encryption %q, KMS key %q; want %q, %q", enc.setting, op, sse, kms, enc.header, enc.kmsKey)
					}
				} else if sse != "" || kms != "" {
					t.Errorf("%s: %s carried SSE headers %q %q", enc.setting, op, sse, kms)
				}
			}
			if writes != 1 {
				t.Errorf("%s, %d bytes: %d object-creating requests reached the gateway, want 1", enc.setting, size, writes)
			}
		}
	}
}

func TestS3ClientEncryption(t *testing.T) {
	t.Parallel()
	g := s3test.Start(t)
	s := openS3(t, g.Config("client"))
	ctx := context.Background()
	small, big := blob("client small", 1_000_000), blob("client big", 20_000_000)
	smallKey, bigKey := putBlob(t, s, small), putBlob(t, s, big)

	for _, b := range []struct {
		key  string
		data []byte
	}{{smallKey, small}, {bigKey, big}} {
		stored, err := os.ReadFile(g.File(b.key))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(stored)) != sealedSize(int64(len(b.data))) || !bytes.HasPrefix(stored, []byte(sealMagic)) {
			t.Fatalf("object on the gateway is %d bytes starting %q; want %d starting %q", len(stored), stored[:4], sealedSize(int64(len(b.data))), sealMagic)
		}
		if bytes.Contains(stored, []byte("secret body")) || bytes.Contains(stored, b.data[:64]) {
			t.Fatal("the object on the gateway contains the plaintext")
		}
		if got := getBlob(t, s, b.key); !bytes.Equal(got, b.data) {
			t.Fatalf("Get returned different content for %d bytes", len(b.data))
		}
		for _, r := range g.Requests(s3test.Prefix + b.key) {
			if r.Header.Get("X-Amz-Server-Side-Encryption") != "" {
				t.Fatalf("%s sent an SSE header with client encryption", r.Operation())
			}
		}
	}
	// Encrypted, then split into parts.
	ops := g.Operations(t, s3test.Prefix+bigKey)
	if ops["CreateMultipartUpload"] != 1 || ops["UploadPart"] < 2 || ops["CompleteMultipartUpload"] != 1 || ops["PutObject"] != 0 {
		t.Fatalf("20 MB client-encrypted blob: versitygw performed %v, want a multipart upload", ops)
	}
	if ops := g.Operations(t, s3test.Prefix+smallKey); ops["PutObject"] != 1 || ops["UploadPart"] != 0 {
		t.Fatalf("1 MB client-encrypted blob: versitygw performed %v, want one PutObject", ops)
	}
	// Putting the key again seals it under a new data key.
	before, _ := os.ReadFile(g.File(smallKey))
	putBlob(t, s, small)
	if after, _ := os.ReadFile(g.File(smallKey)); bytes.Equal(before, after) {
		t.Fatal("two Puts of one blob stored identical ciphertext")
	}
	if got := getBlob(t, s, smallKey); !bytes.Equal(got, small) {
		t.Fatal("Get after a second Put returned different content")
	}

	other := g.Config("client")
	other.ClientKey = "//////////////////////////////////////////8="
	if _, err := openS3(t, other).Get(ctx, smallKey); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "wrong s3.client_key") {
		t.Fatalf("Get with another client key: %v, want an authentication error", err)
	}
	// An object written without client encryption is refused, not returned.
	plainKey := putBlob(t, openS3(t, g.Config("sse-s3")), []byte("plain"))
	if _, err := s.Get(ctx, plainKey); err == nil || !strings.Contains(err.Error(), "not a client-encrypted blob") {
		t.Fatalf("Get of an unencrypted object: %v", err)
	}
	// A byte changed on the server makes the read fail.
	stored, _ := os.ReadFile(g.File(smallKey))
	stored[len(stored)/2] ^= 1
	if err := os.WriteFile(g.File(smallKey), stored, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(ctx, smallKey)
	if err != nil {
		t.Fatalf("Get of an altered object: %v", err)
	}
	defer r.Close()
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("reading an altered object succeeded")
	}
}

func TestSealed(t *testing.T) {
	master := testGCM(t)
	key := Key([]byte("sealed"))
	seal := func(data []byte) []byte {
		t.Helper()
		sl, err := newSealer(master, key, int64(len(data)), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(sl)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	open := func(m cipher.AEAD, k string, sealed []byte) ([]byte, error) {
		o, err := openSealed(m, k, io.NopCloser(bytes.NewReader(sealed)))
		if err != nil {
			return nil, err
		}
		defer o.Close()
		return io.ReadAll(o)
	}

	for _, n := range []int{0, 1, sealSegment - 1, sealSegment, sealSegment + 1, 3*sealSegment + 17} {
		data := make([]byte, n)
		rand.Read(data)
		sealed := seal(data)
		if int64(len(sealed)) != sealedSize(int64(n)) {
			t.Fatalf("%d bytes sealed to %d, sealedSize says %d", n, len(sealed), sealedSize(int64(n)))
		}
		got, err := open(master, key, sealed)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d bytes: open: %v", n, err)
		}
	}

	data := make([]byte, 2*sealSegment+100)
	sealed := seal(data)
	changed := func(at int) []byte {
		c := bytes.Clone(sealed)
		c[at] ^= 1
		return c
	}
	for _, c := range []struct {
		name   string
		master cipher.AEAD
		key    string
		sealed []byte
		want   string
	}{
		{"wrong master key", testGCM(t), key, sealed, "wrong s3.client_key"},
		{"moved to another key", master, Key([]byte("other")), sealed, "wrong s3.client_key"},
		{"magic changed", master, key, changed(0), "not a client-encrypted blob"},
		{"version changed", master, key, changed(4), "format"},
		{"length changed", master, key, changed(12), "wrong s3.client_key"},
		{"data key changed", master, key, changed(40), "wrong s3.client_key"},
		{"segment changed", master, key, changed(sealHeader + sealSegment + 20), "segment 1 failed authentication"},
		{"truncated", master, key, sealed[:len(sealed)-1], "truncated"},
		{"last segment dropped", master, key, sealed[:sealHeader+2*(sealSegment+sealTag)], "truncated"},
		{"bytes appended", master, key, append(bytes.Clone(sealed), 0), "bytes after its last segment"},
		{"segments swapped", master, key, slicesSwapped(sealed), "segment 0 failed authentication"},
		{"too short", master, key, sealed[:10], "not a client-encrypted blob"},
	} {
		if _, err := open(c.master, c.key, c.sealed); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

// testGCM returns AES-256-GCM under a fresh random key.
func testGCM(t *testing.T) cipher.AEAD {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	aead, err := newGCM(key)
	if err != nil {
		t.Fatal(err)
	}
	return aead
}

// slicesSwapped returns sealed with its first two segments exchanged.
func slicesSwapped(sealed []byte) []byte {
	seg := sealSegment + sealTag
	c := bytes.Clone(sealed)
	copy(c[sealHeader:], sealed[sealHeader+seg:sealHeader+2*seg])
	copy(c[sealHeader+seg:], sealed[sealHeader:sealHeader+seg])
	return c
}

func TestOpenS3Errors(t *testing.T) {
	t.Parallel()
	g := s3test.Start(t)
	for _, c := range []struct {
		name   string
		change func(*config.S3)
		want   string
	}{
		{"missing bucket", func(c *config.S3) { c.Bucket = "nosuchbucket" }, "check s3.bucket"},
		{"wrong secret", func(c *config.S3) { c.SecretAccessKey = "wrong" }, "check the access key, the secret key"},
		{"threshold", func(c *config.S3) { c.MultipartThreshold = 4 }, "multipart_threshold_mb"},
		{"encryption", func(c *config.S3) { c.Encryption = "" }, "s3.encryption"},
		{"kms key", func(c *config.S3) { c.Encryption, c.KMSKeyID = "sse-kms", "" }, "s3.kms_key_id"},
		{"client key", func(c *config.S3) { c.Encryption, c.ClientKey = "client", "c2hvcnQ=" }, "s3.client_key"},
	} {
		cfg := g.Config("sse-s3")
		c.change(&cfg)
		if _, err := OpenS3(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
