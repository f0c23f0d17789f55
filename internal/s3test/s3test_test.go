package s3test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestGatewayStoresAndRecords(t *testing.T) {
	g := Start(t)
	ctx := context.Background()
	name, body := Prefix+"0123", "stored through the proxy"
	_, err := g.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(g.Bucket), Key: aws.String(name), Body: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(g.File("0123")); err != nil || string(got) != body {
		t.Fatalf("object file %s: %q, %v; want %q", g.File("0123"), got, err, body)
	}

	rs := g.Requests(name)
	if len(rs) != 1 || rs[0].Operation() != "PutObject" || rs[0].Status != http.StatusOK || rs[0].Length != int64(len(body)) {
		t.Fatalf("recorded requests for %s: %+v; want one PutObject of %d bytes answered 200", name, rs, len(body))
	}
	if bucket := g.Requests(""); len(bucket) != 1 || bucket[0].Method != http.MethodPut {
		t.Fatalf("recorded bucket requests: %+v; want the CreateBucket PUT", bucket)
	}
	if ops := g.Operations(t, name); len(ops) != 1 || ops["PutObject"] != 1 {
		t.Fatalf("access log operations on %s: %v; want one PutObject", name, ops)
	}

	// A failed read is recorded with its status and not counted as done.
	if _, err := g.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(g.Bucket), Key: aws.String(Prefix + "absent")}); err == nil {
		t.Fatal("GetObject of an absent object succeeded")
	}
	if rs := g.Requests(Prefix + "absent"); len(rs) != 1 || rs[0].Operation() != "GetObject" || rs[0].Status != http.StatusNotFound {
		t.Fatalf("recorded requests for the absent object: %+v; want one GetObject answered 404", rs)
	}
	if ops := g.Operations(t, Prefix+"absent"); len(ops) != 0 {
		t.Fatalf("access log counts %v for a failed GetObject", ops)
	}
}

func TestOperation(t *testing.T) {
	for _, c := range []struct {
		method, query, want string
	}{
		{http.MethodPut, "", "PutObject"},
		{http.MethodPut, "partNumber=1&uploadId=u", "UploadPart"},
		{http.MethodPost, "uploads=", "CreateMultipartUpload"},
		{http.MethodPost, "uploadId=u", "CompleteMultipartUpload"},
		{http.MethodDelete, "uploadId=u", "AbortMultipartUpload"},
		{http.MethodDelete, "", "DeleteObject"},
		{http.MethodGet, "", "GetObject"},
		{http.MethodHead, "", "HEAD"},
	} {
		q, _ := url.ParseQuery(c.query)
		if got := (Request{Method: c.method, Query: q}).Operation(); got != c.want {
			t.Errorf("%s ?%s: %s, want %s", c.method, c.query, got, c.want)
		}
	}
}
