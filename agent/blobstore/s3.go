package blobstore

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/mairust/mairust/internal/config"
)

// S3 keeps blobs as objects named prefix+key in one bucket. Objects below
// the multipart threshold go up with one PutObject, larger ones as a
// multipart upload that is aborted on any failure, so an object is either
// whole or absent. With client encryption the bytes are sealed (see
// sealer) before they leave the process. A Put holds at most one part in
// memory: the threshold size, or the whole sealed blob below it.
type S3 struct {
	client    *s3.Client
	bucket    string
	prefix    string
	threshold int64 // bytes; stored sizes at or above it use multipart upload
	sse       types.ServerSideEncryption
	kmsKeyID  *string
	master    cipher.AEAD // client encryption master key; nil otherwise
	listPage  int32       // keys asked for per ListObjectsV2 page
}

// maxParts is the largest number of parts S3 accepts in one upload.
const maxParts = 10000

// OpenS3 connects to the bucket described by c and checks it is reachable.
func OpenS3(ctx context.Context, c config.S3) (*S3, error) {
	if c.Bucket == "" {
		return nil, errors.New("blobstore: s3.bucket is empty")
	}
	if c.MultipartThreshold < 5 || c.MultipartThreshold > 128 {
		return nil, fmt.Errorf("blobstore: s3.multipart_threshold_mb is %d, must be between 5 and 128", c.MultipartThreshold)
	}
	s := &S3{
		bucket:    c.Bucket,
		prefix:    c.Prefix,
		threshold: int64(c.MultipartThreshold) << 20,
		listPage:  1000,
	}
	switch c.Encryption {
	case "sse-s3":
		s.sse = types.ServerSideEncryptionAes256
	case "sse-kms":
		if c.KMSKeyID == "" {
			return nil, errors.New("blobstore: s3.kms_key_id must be set with encryption: sse-kms")
		}
		s.sse = types.ServerSideEncryptionAwsKms
		s.kmsKeyID = aws.String(c.KMSKeyID)
	case "client":
		key, err := base64.StdEncoding.DecodeString(c.ClientKey)
		if err != nil || len(key) != 32 {
			return nil, errors.New("blobstore: s3.client_key must be the base64 of 32 bytes")
		}
		if s.master, err = newGCM(key); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("blobstore: s3.encryption %q must be sse-s3, sse-kms or client", c.Encryption)
	}

	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(c.Region)}
	if c.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("blobstore: load AWS configuration: %w (check the AWS_* environment variables and the shared config files)", err)
	}
	s.client = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
		// Multipart objects carry a checksum of checksums that cannot be
		// checked on download; the SDK would warn on every such Get.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		return nil, s.fail("open", err)
	}
	return s, nil
}

// name is the object name of key.
func (s *S3) name(key string) *string {
	return aws.String(s.prefix + key)
}

// Put implements Store. body is read from its start; its length must be size.
func (s *S3) Put(ctx context.Context, key string, size int64, body io.ReadSeeker) error {
	if !ValidKey(key) {
		return fmt.Errorf("blobstore: invalid key %q", key)
	}
	defer observe("s3", "put", time.Now())
	end, err := body.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("blobstore: seek %s: %w", key, err)
	}
	if end != size {
		return fmt.Errorf("blobstore: body of %s holds %d bytes, expected %d", key, end, size)
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("blobstore: seek %s: %w", key, err)
	}

	var src io.Reader = body
	stored := size
	if s.master != nil {
		if src, err = newSealer(s.master, key, size, body); err != nil {
			return err
		}
		stored = sealedSize(size)
	}
	if stored >= s.threshold {
		return s.putMultipart(ctx, key, src, stored)
	}

	one := body
	if s.master != nil {
		buf := make([]byte, stored)
		if _, err := io.ReadFull(src, buf); err != nil {
			return fmt.Errorf("blobstore: read %s: %w", key, err)
		}
		one = bytes.NewReader(buf)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:               &s.bucket,
		Key:                  s.name(key),
		Body:                 one,
		ContentLength:        aws.Int64(stored),
		ChecksumAlgorithm:    types.ChecksumAlgorithmCrc32,
		ServerSideEncryption: s.sse,
		SSEKMSKeyId:          s.kmsKeyID,
	})
	if err != nil {
		return s.fail("put "+key, err)
	}
	return nil
}

// putMultipart uploads size bytes of src as a multipart upload, one part
// (of the threshold size, more if needed to stay within maxParts) at a
// time, and aborts the upload if anything fails.
func (s *S3) putMultipart(ctx context.Context, key string, src io.Reader, size int64) (err error) {
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:               &s.bucket,
		Key:                  s.name(key),
		ChecksumAlgorithm:    types.ChecksumAlgorithmCrc32,
		ServerSideEncryption: s.sse,
		SSEKMSKeyId:          s.kmsKeyID,
	})
	if err != nil {
		return s.fail("start multipart upload of "+key, err)
	}
	defer func() {
		if err == nil {
			return
		}
		// The caller's context may be what failed; the abort must still go out.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: &s.bucket, Key: s.name(key), UploadId: up.UploadId,
		})
		if aerr != nil {
			err = fmt.Errorf("%w; aborting upload %s also failed, remove it with a lifecycle rule: %v", err, aws.ToString(up.UploadId), aerr)
		}
	}()

	partSize := max(s.threshold, (size+maxParts-1)/maxParts)
	buf := make([]byte, min(partSize, size))
	var parts []types.CompletedPart
	for n := int32(1); size > 0; n++ {
		chunk := buf[:min(int64(len(buf)), size)]
		if _, err := io.ReadFull(src, chunk); err != nil {
			return fmt.Errorf("blobstore: read %s: %w", key, err)
		}
		size -= int64(len(chunk))
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:            &s.bucket,
			Key:               s.name(key),
			UploadId:          up.UploadId,
			PartNumber:        aws.Int32(n),
			Body:              bytes.NewReader(chunk),
			ContentLength:     aws.Int64(int64(len(chunk))),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
		})
		if err != nil {
			return s.fail(fmt.Sprintf("upload part %d of %s", n, key), err)
		}
		parts = append(parts, types.CompletedPart{
			PartNumber:    aws.Int32(n),
			ETag:          out.ETag,
			ChecksumCRC32: out.ChecksumCRC32,
		})
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             s.name(key),
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return s.fail("complete multipart upload of "+key, err)
	}
	return nil
}

// Get implements Store. With client encryption the returned reader
// decrypts and authenticates as it goes; a read error means the object was
// altered or truncated.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if !ValidKey(key) {
		return nil, ErrNotFound
	}
	defer observe("s3", "get", time.Now())
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: s.name(key)})
	if isNoSuchKey(err) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, s.fail("get "+key, err)
	}
	if s.master == nil {
		return out.Body, nil
	}
	r, err := openSealed(s.master, key, out.Body)
	if err != nil {
		out.Body.Close()
		return nil, err
	}
	return r, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	if !ValidKey(key) {
		return fmt.Errorf("blobstore: invalid key %q", key)
	}
	defer observe("s3", "delete", time.Now())
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: s.name(key)})
	if err != nil && !isNoSuchKey(err) {
		return s.fail("delete "+key, err)
	}
	return nil
}

// Walk implements Store. Objects under the prefix whose remaining name is
// not a key are skipped.
func (s *S3) Walk(ctx context.Context, fn func(key string, written time.Time) error) error {
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket:  &s.bucket,
		Prefix:  aws.String(s.prefix),
		MaxKeys: aws.Int32(s.listPage),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return s.fail("list "+s.prefix+"*", err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if !ValidKey(key) {
				continue
			}
			if err := fn(key, aws.ToTime(o.LastModified)); err != nil {
				return err
			}
		}
	}
	return nil
}

// isNoSuchKey reports whether err says the object does not exist (as
// opposed to the bucket).
func isNoSuchKey(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket" {
		return false
	}
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// fail wraps an S3 error with what the operator should check.
func (s *S3) fail(op string, err error) error {
	status := 0
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	hint := " (check s3.bucket, s3.endpoint, s3.region and the credentials)"
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		hint = ""
	case errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket", status == http.StatusNotFound:
		hint = " (check s3.bucket: the bucket does not exist)"
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		hint = " (check the access key, the secret key and the bucket policy)"
	case status == 0:
		hint = " (check s3.endpoint, that the server is reachable, and the credentials)"
	}
	return fmt.Errorf("blobstore: s3 %s in bucket %s: %w%s", op, s.bucket, err, hint)
}

// Client encryption seals each blob before upload. The object holds:
//
//	offset size
//	     0    4  magic "MRBE"
//	     4    1  format version, 1
//	     5    8  plaintext length, big-endian
//	    13   12  random nonce for the data key
//	    25   48  the blob's random 32-byte data key, sealed with AES-256-GCM
//	             under the master key (s3.client_key); the additional data is
//	             bytes 0-12 followed by the blob key, so a header cannot be
//	             altered or moved to another blob unnoticed
//	    73       segments
//
// The plaintext is cut into segments of 64 KiB (the last one shorter, and
// one empty segment for an empty blob). Segment i is sealed with
// AES-256-GCM under the data key with the nonce 0x00000000 || uint64(i)
// big-endian, adding a 16-byte tag; the length in the header fixes the
// segment count, so truncation, reordering and appended bytes are detected.
// Segments let Get decrypt while streaming.
const (
	sealMagic   = "MRBE"
	sealVersion = 1
	sealSegment = 64 << 10
	sealTag     = 16
	sealHeader  = 4 + 1 + 8 + 12 + 32 + sealTag
)

// sealedSize is the stored size of an n-byte blob.
func sealedSize(n int64) int64 {
	segments := max(1, (n+sealSegment-1)/sealSegment)
	return sealHeader + n + segments*sealTag
}

// newGCM returns AES-256-GCM under key.
func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	return cipher.NewGCM(b)
}

// segmentNonce sets n to the nonce of segment i.
func segmentNonce(n *[12]byte, i uint64) []byte {
	binary.BigEndian.PutUint64(n[4:], i)
	return n[:]
}

// sealer reads a blob's plaintext and yields its sealed form.
type sealer struct {
	src   io.Reader
	aead  cipher.AEAD // under the data key
	left  int64       // plaintext bytes not yet read
	seq   uint64
	nonce [12]byte
	buf   []byte // one segment, sealed in place
	out   []byte // sealed bytes not yet returned
	done  bool   // the last segment is sealed
}

// newSealer draws a data key for blob key, seals it under master, and
// returns a reader of the whole sealed object for size bytes of src.
func newSealer(master cipher.AEAD, key string, size int64, src io.Reader) (*sealer, error) {
	dataKey := make([]byte, 32)
	hdr := make([]byte, 25, sealHeader)
	copy(hdr, sealMagic)
	hdr[4] = sealVersion
	binary.BigEndian.PutUint64(hdr[5:13], uint64(size))
	if _, err := rand.Read(dataKey); err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	if _, err := rand.Read(hdr[13:25]); err != nil {
		return nil, fmt.Errorf("blobstore: %w", err)
	}
	hdr = master.Seal(hdr, hdr[13:25], dataKey, slices.Concat(hdr[:13], []byte(key)))
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	return &sealer{src: src, aead: aead, left: size, buf: make([]byte, sealSegment+sealTag), out: hdr}, nil
}

// Read implements io.Reader.
func (s *sealer) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.done {
			return 0, io.EOF
		}
		n := min(s.left, sealSegment)
		if _, err := io.ReadFull(s.src, s.buf[:n]); err != nil {
			return 0, err
		}
		s.left -= n
		s.done = s.left == 0
		s.out = s.aead.Seal(s.buf[:0], segmentNonce(&s.nonce, s.seq), s.buf[:n], nil)
		s.seq++
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// opener reads a sealed object and yields the authenticated plaintext.
type opener struct {
	src   io.ReadCloser
	key   string
	aead  cipher.AEAD // under the data key
	left  int64       // plaintext bytes not yet decrypted
	seq   uint64
	nonce [12]byte
	buf   []byte
	out   []byte // plaintext not yet returned
	done  bool
	err   error // sticky
}

// openSealed reads and checks the header of sealed blob key from src.
func openSealed(master cipher.AEAD, key string, src io.ReadCloser) (*opener, error) {
	hdr := make([]byte, sealHeader)
	_, err := io.ReadFull(src, hdr)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("blobstore: read %s: %w", key, err)
	}
	if err != nil || string(hdr[:4]) != sealMagic {
		return nil, fmt.Errorf("blobstore: %s is not a client-encrypted blob (was it written without encryption: client?)", key)
	}
	if hdr[4] != sealVersion {
		return nil, fmt.Errorf("blobstore: %s uses client encryption format %d, this version reads only %d", key, hdr[4], sealVersion)
	}
	dataKey, err := master.Open(nil, hdr[13:25], hdr[25:], slices.Concat(hdr[:13], []byte(key)))
	if err != nil {
		return nil, fmt.Errorf("blobstore: decrypt %s: authentication failed: wrong s3.client_key, or the object was altered", key)
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	left := int64(binary.BigEndian.Uint64(hdr[5:13]))
	return &opener{src: src, key: key, aead: aead, left: left, buf: make([]byte, sealSegment+sealTag)}, nil
}

// Read implements io.Reader.
func (o *opener) Read(p []byte) (int, error) {
	for len(o.out) == 0 && o.err == nil {
		if o.done {
			return 0, io.EOF
		}
		o.out, o.err = o.next()
	}
	if len(o.out) == 0 {
		return 0, o.err
	}
	n := copy(p, o.out)
	o.out = o.out[n:]
	return n, nil
}

// next decrypts the next segment.
func (o *opener) next() ([]byte, error) {
	n := min(o.left, sealSegment)
	seg := o.buf[:n+sealTag]
	if _, err := io.ReadFull(o.src, seg); errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("blobstore: %s is truncated", o.key)
	} else if err != nil {
		return nil, fmt.Errorf("blobstore: read %s: %w", o.key, err)
	}
	plain, err := o.aead.Open(seg[:0], segmentNonce(&o.nonce, o.seq), seg, nil)
	if err != nil {
		return nil, fmt.Errorf("blobstore: decrypt %s: segment %d failed authentication, the object was altered", o.key, o.seq)
	}
	o.seq++
	o.left -= n
	if o.left == 0 {
		o.done = true
		var extra [1]byte
		if k, err := io.ReadFull(o.src, extra[:]); k > 0 {
			return nil, fmt.Errorf("blobstore: %s has bytes after its last segment, the object was altered", o.key)
		} else if err != io.EOF {
			return nil, fmt.Errorf("blobstore: read %s: %w", o.key, err)
		}
	}
	return plain, nil
}

// Close implements io.Closer.
func (o *opener) Close() error { return o.src.Close() }

// Close implements Store; the S3 client holds nothing that needs closing.
func (s *S3) Close() error { return nil }
