package incidents

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/pcapot/pcapot/internal/testenv"
)

const testPrefix = "plant-a-01/2026/03/14/"

func testKey(name string) string { return testPrefix + name }

// testStore is the conformance test every Store passes. corrupt must change the stored
// bytes of key behind the store's back while keeping its recorded hash.
func testStore(t *testing.T, s Store, corrupt func(t *testing.T, key string)) {
	ctx := context.Background()
	body := []byte("\xd4\xc3\xb2\xa1 pcap bytes \x00\xff")
	sum := sha256Hex(body)

	t.Run("round trip", func(t *testing.T) {
		key := testKey("3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f.pcap")
		if err := s.Put(ctx, key, body, Meta{ContentType: PCAPMimeType, SHA256: sum}); err != nil {
			t.Fatal(err)
		}
		got, m, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body) {
			t.Errorf("Get = %q, want %q", got, body)
		}
		if m != (Meta{ContentType: PCAPMimeType, SHA256: sum, Size: int64(len(body))}) {
			t.Errorf("meta = %+v", m)
		}
		if err := s.Put(ctx, key, body, Meta{ContentType: PCAPMimeType}); err != nil {
			t.Errorf("second Put of the same content: %v", err)
		}
		err = s.Put(ctx, key, []byte("other evidence"), Meta{ContentType: PCAPMimeType})
		if !errors.Is(err, ErrExists) {
			t.Errorf("Put of other content = %v, want ErrExists", err)
		}
		if got, _, err := s.Get(ctx, key); err != nil || !bytes.Equal(got, body) {
			t.Errorf("after a refused overwrite Get = %q, %v", got, err)
		}
	})
	t.Run("hash computed when missing", func(t *testing.T) {
		key := testKey("bundle-computed.json")
		b := []byte(`{"type":"bundle"}`)
		if err := s.Put(ctx, key, b, Meta{ContentType: BundleMimeType}); err != nil {
			t.Fatal(err)
		}
		if _, m, err := s.Get(ctx, key); err != nil || m.SHA256 != sha256Hex(b) || m.ContentType != BundleMimeType {
			t.Errorf("Get meta = %+v, %v; want SHA-256 %s", m, err, sha256Hex(b))
		}
	})
	t.Run("empty object", func(t *testing.T) {
		key := testKey("empty.pcap")
		if err := s.Put(ctx, key, nil, Meta{}); err != nil {
			t.Fatal(err)
		}
		if got, m, err := s.Get(ctx, key); err != nil || len(got) != 0 || m.Size != 0 {
			t.Errorf("Get = %q, %+v, %v", got, m, err)
		}
	})
	t.Run("body not matching its hash is refused", func(t *testing.T) {
		key := testKey("wrong-hash.pcap")
		err := s.Put(ctx, key, body, Meta{SHA256: strings.Repeat("0", 64)})
		if !errors.Is(err, ErrHashMismatch) {
			t.Errorf("Put = %v, want ErrHashMismatch", err)
		}
		if _, _, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get after refused Put = %v, want ErrNotFound", err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		if _, _, err := s.Get(ctx, testKey("missing.pcap")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get = %v, want ErrNotFound", err)
		}
	})
	t.Run("list", func(t *testing.T) {
		keys := []string{"list/2026/03/14/b.pcap", "list/2026/03/14/a.json", "list/2026/03/14/c.part2.pcap", "list/2026/03/15/d.pcap", "listing/x.pcap"}
		for i, k := range keys {
			if err := s.Put(ctx, k, bytes.Repeat([]byte{'x'}, i+1), Meta{}); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			prefix string
			want   []string
		}{
			{"list/2026/03/14/", []string{"list/2026/03/14/a.json", "list/2026/03/14/b.pcap", "list/2026/03/14/c.part2.pcap"}},
			{"list/2026/03/1", []string{"list/2026/03/14/a.json", "list/2026/03/14/b.pcap", "list/2026/03/14/c.part2.pcap", "list/2026/03/15/d.pcap"}},
			{"list/2026/03/14/b", []string{"list/2026/03/14/b.pcap"}},
			{"list", []string{"list/2026/03/14/a.json", "list/2026/03/14/b.pcap", "list/2026/03/14/c.part2.pcap", "list/2026/03/15/d.pcap", "listing/x.pcap"}},
			{"nothing/", nil},
		}
		for _, tc := range tests {
			got, err := s.List(ctx, tc.prefix)
			if err != nil {
				t.Fatalf("List(%q): %v", tc.prefix, err)
			}
			var names []string
			for _, o := range got {
				names = append(names, o.Key)
				if o.Modified.IsZero() || time.Since(o.Modified) > time.Hour {
					t.Errorf("List(%q): %s modified %v", tc.prefix, o.Key, o.Modified)
				}
			}
			if strings.Join(names, " ") != strings.Join(tc.want, " ") {
				t.Errorf("List(%q) = %v, want %v", tc.prefix, names, tc.want)
			}
		}
		got, _ := s.List(ctx, "list/2026/03/14/c")
		if len(got) != 1 || got[0].Size != 3 {
			t.Errorf("List sizes = %+v, want c.part2.pcap of 3 bytes", got)
		}
		all, err := s.List(ctx, "")
		if err != nil || len(all) < len(keys) {
			t.Errorf("List(\"\") = %d objects, %v", len(all), err)
		}
	})
	t.Run("hostile keys", func(t *testing.T) {
		for _, k := range []string{"", "../x", "a/../../x", "/abs", "a//b", ".hidden", "a/.meta", "a/./b", "a\x00b", "a b", "a\\b", "ä", strings.Repeat("a", 1025)} {
			if err := s.Put(ctx, k, body, Meta{}); !errors.Is(err, ErrInvalid) {
				t.Errorf("Put(%q) = %v, want ErrInvalid", k, err)
			}
			if _, _, err := s.Get(ctx, k); !errors.Is(err, ErrInvalid) {
				t.Errorf("Get(%q) = %v, want ErrInvalid", k, err)
			}
		}
		for _, p := range []string{"../", "/x", "a//", ".x"} {
			if _, err := s.List(ctx, p); !errors.Is(err, ErrInvalid) {
				t.Errorf("List(%q) = %v, want ErrInvalid", p, err)
			}
		}
	})
	t.Run("corruption detected", func(t *testing.T) {
		key := testKey("to-corrupt.pcap")
		if err := s.Put(ctx, key, body, Meta{ContentType: PCAPMimeType}); err != nil {
			t.Fatal(err)
		}
		corrupt(t, key)
		if _, _, err := s.Get(ctx, key); !errors.Is(err, ErrHashMismatch) {
			t.Errorf("Get of a corrupted object = %v, want ErrHashMismatch", err)
		}
	})
}

func TestFolderStore(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFolderStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	testStore(t, s, func(t *testing.T, key string) {
		p := filepath.Join(s.Dir(), filepath.FromSlash(key))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[0] ^= 1
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
	})

	key := testKey("3f2b8c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f.pcap")
	if got, want := s.URL(key), "file://"+filepath.Join(dir, "store", key); got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	// The store leaves no temporary files, and its hidden files are never listed.
	if err := os.WriteFile(filepath.Join(s.Dir(), testPrefix, ".tmp-crash-leftover"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(s.Dir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") && !strings.HasSuffix(p, "leftover") {
			t.Errorf("temporary file left: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.List(context.Background(), testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list {
		if strings.Contains(o.Key, "/.") {
			t.Errorf("hidden file listed: %s", o.Key)
		}
	}

	t.Run("damaged copy repaired by the same content", func(t *testing.T) {
		ctx := context.Background()
		k := testKey("repair.pcap")
		body := []byte("original evidence")
		if err := s.Put(ctx, k, body, Meta{}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Dir(), filepath.FromSlash(k)), []byte("bit-rotted"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, k, body, Meta{}); err != nil {
			t.Fatalf("Put of the recorded content over a damaged copy: %v", err)
		}
		if got, _, err := s.Get(ctx, k); err != nil || !bytes.Equal(got, body) {
			t.Errorf("Get = %q, %v", got, err)
		}
	})
}

// newTestS3 returns a config for a fresh bucket on the test MinIO server and removes
// the bucket with everything in it when the test ends.
func newTestS3(t *testing.T) (S3Config, *minio.Client) {
	t.Helper()
	env := testenv.RequireS3(t)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	cfg := S3Config{
		Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey,
		Bucket: "pcapot-test-" + hex.EncodeToString(b[:]), Insecure: true, Region: "us-east-1",
	}
	admin, err := minio.New(env.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(env.AccessKey, env.SecretKey, ""), BucketLookup: minio.BucketLookupPath, Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if ok, err := admin.BucketExists(ctx, cfg.Bucket); err != nil || !ok {
			return
		}
		for o := range admin.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err == nil {
				_ = admin.RemoveObject(ctx, cfg.Bucket, o.Key, minio.RemoveObjectOptions{})
			}
		}
		if err := admin.RemoveBucket(ctx, cfg.Bucket); err != nil {
			t.Errorf("remove test bucket %s: %v", cfg.Bucket, err)
		}
	})
	return cfg, admin
}

func TestS3Store(t *testing.T) {
	cfg, admin := newTestS3(t)
	ctx := context.Background()
	s, err := NewS3Store(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := admin.BucketExists(ctx, cfg.Bucket); err != nil || !ok {
		t.Fatalf("NewS3Store did not create bucket %s: %v %v", cfg.Bucket, ok, err)
	}
	if _, err := NewS3Store(ctx, cfg); err != nil {
		t.Fatalf("NewS3Store on an existing bucket: %v", err)
	}
	testStore(t, s, func(t *testing.T, key string) {
		// Rewrite the object with other bytes but the original sha256 metadata.
		info, err := admin.StatObject(ctx, cfg.Bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		bad := []byte("tampered")
		_, err = admin.PutObject(ctx, cfg.Bucket, key, bytes.NewReader(bad), int64(len(bad)),
			minio.PutObjectOptions{UserMetadata: map[string]string{"sha256": storedSHA256(info)}})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("sha256 in object metadata", func(t *testing.T) {
		key := testKey("meta.pcap")
		body := []byte("pcap with metadata")
		if err := s.Put(ctx, key, body, Meta{ContentType: PCAPMimeType}); err != nil {
			t.Fatal(err)
		}
		info, err := admin.StatObject(ctx, cfg.Bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := info.UserMetadata["Sha256"]; got != sha256Hex(body) {
			t.Errorf("x-amz-meta-sha256 = %q (metadata %v), want %s", got, info.UserMetadata, sha256Hex(body))
		}
		if info.ContentType != PCAPMimeType {
			t.Errorf("content type = %q", info.ContentType)
		}
	})
	t.Run("URL", func(t *testing.T) {
		key := testKey("u.pcap")
		if got, want := s.URL(key), "http://"+cfg.Endpoint+"/"+cfg.Bucket+"/"+key; got != want {
			t.Errorf("URL = %q, want %q", got, want)
		}
	})
	t.Run("bucket created on first put", func(t *testing.T) {
		lazyCfg, admin := newTestS3(t)
		lazy, err := OpenS3Store(lazyCfg)
		if err != nil {
			t.Fatal(err)
		}
		if list, err := lazy.List(ctx, ""); err != nil || len(list) != 0 {
			t.Errorf("List of a missing bucket = %v, %v; want empty", list, err)
		}
		if err := lazy.Put(ctx, testKey("first.pcap"), []byte("x"), Meta{}); err != nil {
			t.Fatal(err)
		}
		if ok, err := admin.BucketExists(ctx, lazyCfg.Bucket); err != nil || !ok {
			t.Errorf("bucket not created: %v %v", ok, err)
		}
	})
	t.Run("bad credentials", func(t *testing.T) {
		bad := cfg
		bad.SecretKey = "wrong-secret"
		_, err := NewS3Store(ctx, bad)
		if err == nil || !strings.Contains(err.Error(), "credentials rejected") || strings.Contains(err.Error(), "\n") {
			t.Errorf("NewS3Store with a wrong secret = %v, want one line saying credentials rejected", err)
		}
	})
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestS3StoreUnreachable(t *testing.T) {
	cfg := S3Config{Endpoint: closedPort(t), Bucket: "pcapot-down", AccessKey: "k", SecretKey: "s", Insecure: true, MaxRetries: 1}
	_, err := NewS3Store(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || strings.Contains(err.Error(), "\n") {
		t.Errorf("NewS3Store(closed port) = %v, want one line saying unreachable", err)
	}
	s, err := OpenS3Store(cfg)
	if err != nil {
		t.Fatalf("OpenS3Store must not touch the network: %v", err)
	}
	if err := s.Put(context.Background(), testKey("x.pcap"), []byte("x"), Meta{}); err == nil {
		t.Error("Put to a closed port: no error")
	}
}

func TestOpenS3StoreConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     S3Config
		wantURL string // "" means an ErrInvalid error
	}{
		{"plain", S3Config{Endpoint: "minio:9000", Bucket: "pcaps", AccessKey: "a", SecretKey: "b", Insecure: true}, "http://minio:9000/pcaps/k"},
		{"tls default", S3Config{Endpoint: "s3.example.org", Bucket: "pcaps", AccessKey: "a", SecretKey: "b"}, "https://s3.example.org/pcaps/k"},
		{"scheme decides", S3Config{Endpoint: "http://minio:9000/", Bucket: "pcaps", AccessKey: "a", SecretKey: "b"}, "http://minio:9000/pcaps/k"},
		{"bad bucket", S3Config{Endpoint: "minio:9000", Bucket: "Bad_Bucket", AccessKey: "a", SecretKey: "b"}, ""},
		{"endpoint with path", S3Config{Endpoint: "minio:9000/x", Bucket: "pcaps", AccessKey: "a", SecretKey: "b"}, ""},
		{"no credentials", S3Config{Endpoint: "minio:9000", Bucket: "pcaps"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := OpenS3Store(tc.cfg)
			if tc.wantURL == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("OpenS3Store = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.URL("k"); got != tc.wantURL {
				t.Errorf("URL = %q, want %q", got, tc.wantURL)
			}
		})
	}
}
