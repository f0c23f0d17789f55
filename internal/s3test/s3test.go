// Package s3test gives each test a real S3-compatible server: versitygw with
// its posix backend on loopback, behind a proxy that records every request.
// It fails, never skips, when versitygw is not installed.
package s3test

import (
	"bytes"
	"context"
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
	"github.com/mairust/mairust/internal/proctest"
)

// Settings every gateway shares.
const (
	Region    = "us-east-1"
	Prefix    = "mail/" // the blob key prefix Config sets
	KMSKeyID  = "mairust-test-kms-key"
	ClientKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // bytes 0..31, base64
)

// install is how to get the binary the package runs.
const install = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Gateway is a versitygw (posix backend) serving one bucket on loopback,
// reached through a recording reverse proxy.
type Gateway struct {
	Endpoint  string // the proxy's URL; clients use this
	Root      string // posix root: objects are files under Root/Bucket/
	Bucket    string
	AccessKey string // of the gateway's root account
	SecretKey string

	accessLog string // versitygw's own access log

	mu   sync.Mutex
	reqs []Request
}

// Request is what the proxy forwarded to versitygw, and its answer.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Length int64 // Content-Length of the body
	Status int
}

// Start runs versitygw on a free loopback port with a fresh posix root,
// puts the recording proxy in front of it and creates the bucket. Both are
// stopped when the test ends.
func Start(t testing.TB) *Gateway {
	t.Helper()
	bin := proctest.GoTool(t, "versitygw", install)
	dir := t.TempDir()
	g := &Gateway{
		Root:      filepath.Join(dir, "root"),
		Bucket:    "blobs",
		AccessKey: "mairusttest",
		SecretKey: "mairust-test-secret-key",
		accessLog: filepath.Join(dir, "access.log"),
	}
	if err := os.Mkdir(g.Root, 0o750); err != nil {
		t.Fatal(err)
	}

	var addr, output string
	// The free port may be taken between probing and versitygw binding it;
	// try a few times.
	for attempt := 0; addr == "" && attempt < 3; attempt++ {
		addr, output = g.run(t, bin)
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
			g.reqs = append(g.reqs, Request{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), r.ContentLength, resp.StatusCode})
			g.mu.Unlock()
			return nil
		},
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	g.Endpoint = srv.URL

	if _, err := g.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(g.Bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return g
}

// run starts versitygw on a free port and waits until its health endpoint
// answers. It returns the address, or "" and the output if the process
// ended first.
func (g *Gateway) run(t testing.TB, bin string) (string, string) {
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
		"--access", g.AccessKey,
		"--secret", g.SecretKey,
		"--region", Region,
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

// Client returns a plain S3 client for the gateway, for checks and setup.
func (g *Gateway) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(g.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(g.AccessKey, g.SecretKey, ""),
	})
}

// Config returns store settings for the gateway with the given encryption:
// keys under Prefix, multipart from 5 MiB, KMSKeyID and ClientKey.
func (g *Gateway) Config(encryption string) config.S3 {
	return config.S3{
		Bucket:             g.Bucket,
		Region:             Region,
		Endpoint:           g.Endpoint,
		PathStyle:          true,
		Prefix:             Prefix,
		AccessKeyID:        g.AccessKey,
		SecretAccessKey:    g.SecretKey,
		MultipartThreshold: 5,
		Encryption:         encryption,
		KMSKeyID:           KMSKeyID,
		ClientKey:          ClientKey,
	}
}

// File is the posix path of the object of blob key stored with Config.
func (g *Gateway) File(key string) string {
	return filepath.Join(g.Root, g.Bucket, Prefix, key)
}

// Requests returns what reached versitygw for object name, or for the
// bucket itself when name is "".
func (g *Gateway) Requests(name string) []Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	path := "/" + g.Bucket
	if name != "" {
		path += "/" + name
	}
	var rs []Request
	for _, r := range g.reqs {
		if r.Path == path {
			rs = append(rs, r)
		}
	}
	return rs
}

// Operation names the S3 operation of a request to an object.
func (r Request) Operation() string {
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

// Operations counts, from versitygw's access log, the successful (2xx)
// operations on object name, by versitygw's operation name.
func (g *Gateway) Operations(t testing.TB, name string) map[string]int {
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
