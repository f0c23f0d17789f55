package blobstore

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mairust/mairust/internal/config"
)

// Credentials of the test gateway's root account.
const (
	gwAccess = "mairusttest"
	gwSecret = "mairust-test-secret-key"
	gwBucket = "blobs"
)

// gateway is a versitygw (posix backend) serving one bucket on loopback,
// reached through a recording reverse proxy.
type gateway struct {
	Endpoint  string // the proxy's URL; clients use this
	Root      string // posix root: objects are files under Root/bucket/
	accessLog string // versitygw's own access log

	mu   sync.Mutex
	reqs []request
}

// request is what the proxy forwarded to versitygw, and its answer.
type request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Length int64 // Content-Length of the body
	Status int
}

// versitygwBinary finds versitygw in PATH, GOBIN or GOPATH/bin, and fails
// the test with the install command when it is missing.
func versitygwBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		t.Fatalf("versitygw is not in PATH and `go env` failed (%v); install it with: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dirs := []string{strings.TrimSpace(lines[0])}
	if len(lines) > 1 {
		for _, gp := range filepath.SplitList(strings.TrimSpace(lines[1])) {
			dirs = append(dirs, filepath.Join(gp, "bin"))
		}
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	t.Fatalf("versitygw not found in PATH nor in %v; install it with: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0", dirs)
	return ""
}

// startGateway runs versitygw on a free loopback port with a fresh posix
// root, puts the recording proxy in front of it, and creates the bucket.
// Both are stopped when the test ends.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	bin := versitygwBinary(t)
	dir := t.TempDir()
	g := &gateway{Root: filepath.Join(dir, "root"), accessLog: filepath.Join(dir, "access.log")}
	if err := os.Mkdir(g.Root, 0o750); err != nil {
		t.Fatal(err)
	}

	var addr string
	var output string
	// The free port may be taken between probing and versitygw binding it;
	// try a few times.
	for attempt := 0; addr == "" && attempt < 3; attempt++ {
		addr, output = runVersitygw(t, bin, g)
	}
	if addr == "" {
		t.Fatalf("versitygw did not start:\n%s", output)
	}

	proxy := &httputil.ReverseProxy{
		// The Host header stays the proxy's: it is part of the signature.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = addr
		},
		ModifyResponse: func(resp *http.Response) error {
			r := resp.Request
			g.mu.Lock()
			g.reqs = append(g.reqs, request{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), r.ContentLength, resp.StatusCode})
			g.mu.Unlock()
			return nil
		},
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	g.Endpoint = srv.URL

	if _, err := g.client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(gwBucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return g
}

// runVersitygw starts versitygw on a free port and waits until its health
// endpoint answers. It returns the address, or "" and the output if the
// process ended first.
func runVersitygw(t *testing.T, bin string, g *gateway) (string, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	var out bytes.Buffer
	cmd := exec.Command(bin,
		"--port", addr,
		"--access", gwAccess,
		"--secret", gwSecret,
		"--region", "us-east-1",
		"--access-log", g.accessLog,
		"--health", "/health",
		"--quiet",
		"posix", g.Root)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()

	hc := &http.Client{Timeout: time.Second}
	deadline := time.After(15 * time.Second)
	for {
		resp, err := hc.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Cleanup(func() {
					cmd.Process.Kill()
					<-exited
				})
				return addr, ""
			}
		}
		select {
		case <-exited:
			return "", out.String()
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			t.Fatalf("versitygw on %s did not answer on /health within 15s:\n%s", addr, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// client returns a plain S3 client for the gateway, for checks and setup.
func (g *gateway) client() *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(g.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(gwAccess, gwSecret, ""),
	})
}

// config returns store settings for the gateway with the given encryption.
func (g *gateway) config(encryption string) config.S3 {
	return config.S3{
		Bucket:             gwBucket,
		Region:             "us-east-1",
		Endpoint:           g.Endpoint,
		PathStyle:          true,
		Prefix:             "mail/",
		AccessKeyID:        gwAccess,
		SecretAccessKey:    gwSecret,
		MultipartThreshold: 5,
		Encryption:         encryption,
		KMSKeyID:           "mairust-test-kms-key",
		ClientKey:          "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	}
}

// open opens a store on the gateway.
func (g *gateway) open(t *testing.T, c config.S3) *S3 {
	t.Helper()
	s, err := OpenS3(context.Background(), c)
	if err != nil {
		t.Fatalf("OpenS3: %v", err)
	}
	return s
}

// file is the posix path of blob key in the bucket.
func (g *gateway) file(key string) string {
	return filepath.Join(g.Root, gwBucket, "mail", key)
}

// requests returns what reached versitygw for object name, or for the
// bucket itself when name is "".
func (g *gateway) requests(name string) []request {
	g.mu.Lock()
	defer g.mu.Unlock()
	path := "/" + gwBucket
	if name != "" {
		path += "/" + name
	}
	var rs []request
	for _, r := range g.reqs {
		if r.Path == path {
			rs = append(rs, r)
		}
	}
	return rs
}

// operation names the S3 operation of a request to an object.
func (r request) operation() string {
	q := r.Query
	switch {
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodDelete:
		return "DeleteObject"
	case r.Method == http.MethodGet:
		return "GetObject"
	}
	return r.Method
}

// accessLine matches the operation, key and status of a versitygw access
// log line.
var accessLine = regexp.MustCompile(`\] \S+ \S+ \S+ s3_(\w+) (\S+) \S+ (\d{3}) `)

// operations counts, from versitygw's access log, the successful (2xx)
// operations on object name, by versitygw's operation name.
func (g *gateway) operations(t *testing.T, name string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(g.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		m := accessLine.FindStringSubmatch(line)
		if m != nil && m[2] == name && m[3][0] == '2' {
			ops[m[1]]++
		}
	}
	return ops
}

// blob returns n bytes of readable mail-like text, distinct per seed.
func blob(seed string, n int) []byte {
	line := fmt.Sprintf("Subject: confidential %s\r\nThis is the secret body of the message.\r\n", seed)
	return bytes.Repeat([]byte(line), n/len(line)+1)[:n]
}
