package incidents

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// S3Config configures an S3Store.
type S3Config struct {
	// Endpoint is host:port ("127.0.0.1:9000", "s3.eu-west-1.amazonaws.com"). An
	// "http://" or "https://" prefix is accepted and then decides Insecure.
	Endpoint string
	Bucket   string
	// AccessKey and SecretKey are static credentials.
	AccessKey, SecretKey string
	// Region is optional ("us-east-1" for MinIO); empty lets the client discover it.
	Region string
	// Insecure selects plain HTTP instead of HTTPS.
	Insecure bool
	// MaxRetries bounds the client's own retries of one request; 0 means 3. The
	// Uploader retries failed uploads on top of that.
	MaxRetries int
}

// S3Store keeps objects in an S3 bucket (MinIO, AWS S3 or another S3-compatible
// server), addressed path-style. Each object carries its SHA-256 as user metadata
// (x-amz-meta-sha256), which Get verifies.
type S3Store struct {
	client   *minio.Client
	bucket   string
	endpoint string // host[:port]
	scheme   string
	region   string
}

var _ Store = (*S3Store)(nil)

const metaSHA256 = "sha256" // sent as X-Amz-Meta-Sha256

// NewS3Store connects to the endpoint, checks the credentials and creates the bucket
// if it is missing. Its errors are one line naming the problem and the fix.
func NewS3Store(ctx context.Context, c S3Config) (*S3Store, error) {
	s, err := OpenS3Store(c)
	if err != nil {
		return nil, err
	}
	if err := s.EnsureBucket(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenS3Store returns a store for c without any network access, so a sensor can start
// (and spool) while S3 is down; a missing bucket is created on the first Put.
func OpenS3Store(c S3Config) (*S3Store, error) {
	endpoint, secure := c.Endpoint, !c.Insecure
	if rest, ok := strings.CutPrefix(endpoint, "http://"); ok {
		endpoint, secure = rest, false
	} else if rest, ok := strings.CutPrefix(endpoint, "https://"); ok {
		endpoint, secure = rest, true
	}
	endpoint = strings.TrimSuffix(endpoint, "/")
	if endpoint == "" || strings.ContainsAny(endpoint, "/?#@ ") {
		return nil, fmt.Errorf("incidents: S3 endpoint %q: %w: want host:port, e.g. 127.0.0.1:9000", c.Endpoint, ErrInvalid)
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		return nil, fmt.Errorf("incidents: S3 bucket %q: %w: %v", c.Bucket, ErrInvalid, err)
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return nil, fmt.Errorf("incidents: S3 endpoint %s: %w: access key and secret key are required", endpoint, ErrInvalid)
	}
	retries := c.MaxRetries
	if retries <= 0 {
		retries = 3
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(c.AccessKey, c.SecretKey, ""),
		Secure:       secure,
		Region:       c.Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   retries,
	})
	if err != nil {
		return nil, fmt.Errorf("incidents: S3 endpoint %q: %w", c.Endpoint, err)
	}
	scheme := "https"
	if !secure {
		scheme = "http"
	}
	return &S3Store{client: client, bucket: c.Bucket, endpoint: endpoint, scheme: scheme, region: c.Region}, nil
}

// Bucket returns the store's bucket name.
func (s *S3Store) Bucket() string { return s.bucket }

// EnsureBucket creates the bucket if it does not exist.
func (s *S3Store) EnsureBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.explain("check bucket", err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" {
		return nil
	}
	if err != nil {
		return s.explain("create bucket", err)
	}
	return nil
}

// explain turns a client error into one line naming the problem and its fix.
func (s *S3Store) explain(op string, err error) error {
	var netErr net.Error
	var urlErr *url.Error
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	resp := minio.ToErrorResponse(err)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return fmt.Errorf("incidents: S3 %s on %s: TLS certificate not trusted: %w; install the CA or fix the endpoint name", op, s.endpoint, err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("incidents: S3 %s on %s: the server speaks plain HTTP: %w; set insecure (plain http) or enable TLS on the server", op, s.endpoint, err)
	case slices.Contains([]string{"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken"}, resp.Code):
		return fmt.Errorf("incidents: S3 %s %q on %s: credentials rejected (%s): %w; check the access key, secret key and the bucket policy", op, s.bucket, s.endpoint, resp.Code, err)
	case errors.As(err, &netErr), errors.As(err, &urlErr):
		return fmt.Errorf("incidents: S3 endpoint %s unreachable (%s): %w; check the endpoint address and that the server is running", s.endpoint, op, err)
	default:
		return fmt.Errorf("incidents: S3 %s %q on %s: %w", op, s.bucket, s.endpoint, err)
	}
}

func storedSHA256(info minio.ObjectInfo) string {
	for k, v := range info.UserMetadata {
		if strings.EqualFold(k, metaSHA256) || strings.EqualFold(k, "X-Amz-Meta-"+metaSHA256) {
			return v
		}
	}
	return ""
}

// Put implements Store.
func (s *S3Store) Put(ctx context.Context, key string, body []byte, m Meta) error {
	if err := checkStoreKey(key); err != nil {
		return err
	}
	m, err := sealMeta(key, body, m)
	if err != nil {
		return err
	}
	info, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	switch code := minio.ToErrorResponse(err).Code; {
	case err == nil:
		stored := storedSHA256(info)
		if stored == "" { // not written by us: compare the content itself
			old, _, gerr := s.Get(ctx, key)
			if gerr != nil {
				return gerr
			}
			stored = sha256Hex(old)
		}
		if stored != m.SHA256 {
			return fmt.Errorf("incidents: S3 put %s: %w (stored SHA-256 %s, new %s)", key, ErrExists, stored, m.SHA256)
		}
		if info.Size == m.Size && storedSHA256(info) != "" {
			return nil // already there
		}
	case code == "NoSuchKey" || code == "NoSuchBucket":
	default:
		return s.explain("stat "+key, err)
	}
	opts := minio.PutObjectOptions{
		ContentType:    m.ContentType,
		UserMetadata:   map[string]string{metaSHA256: m.SHA256},
		SendContentMd5: true,
	}
	_, err = s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(body), m.Size, opts)
	if minio.ToErrorResponse(err).Code == "NoSuchBucket" {
		if err := s.EnsureBucket(ctx); err != nil {
			return err
		}
		_, err = s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(body), m.Size, opts)
	}
	if err != nil {
		return s.explain("put "+key, err)
	}
	return nil
}

// Get implements Store.
func (s *S3Store) Get(ctx context.Context, key string) ([]byte, Meta, error) {
	if err := checkStoreKey(key); err != nil {
		return nil, Meta{}, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, Meta{}, s.explain("get "+key, err)
	}
	defer obj.Close()
	info, err := obj.Stat()
	if err != nil {
		if code := minio.ToErrorResponse(err).Code; code == "NoSuchKey" || code == "NoSuchBucket" {
			return nil, Meta{}, fmt.Errorf("incidents: S3 get %s: %w", key, ErrNotFound)
		}
		return nil, Meta{}, s.explain("get "+key, err)
	}
	body, err := io.ReadAll(obj)
	if err != nil {
		return nil, Meta{}, s.explain("get "+key, err)
	}
	m := Meta{ContentType: info.ContentType, SHA256: storedSHA256(info), Size: int64(len(body))}
	if err := verifyStored(body, m.SHA256); err != nil {
		return nil, m, fmt.Errorf("incidents: S3 get %s: %w", key, err)
	}
	return body, m, nil
}

// List implements Store. A missing bucket holds nothing.
func (s *S3Store) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine on an early return
	var out []ObjectInfo
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			if minio.ToErrorResponse(o.Err).Code == "NoSuchBucket" {
				return nil, nil
			}
			return nil, s.explain(fmt.Sprintf("list %q", prefix), o.Err)
		}
		out = append(out, ObjectInfo{Key: o.Key, Size: o.Size, Modified: o.LastModified.UTC()})
	}
	slices.SortFunc(out, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// URL implements Store: the path-style object URL, "http(s)://<endpoint>/<bucket>/<key>".
// Fetching it needs the bucket's credentials unless the bucket allows anonymous reads.
func (s *S3Store) URL(key string) string {
	u := url.URL{Scheme: s.scheme, Host: s.endpoint, Path: "/" + s.bucket + "/" + key}
	return u.String()
}
