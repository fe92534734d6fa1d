package incidents

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Store keeps session objects (pcaps and bundles) under keys. Implementations are safe
// for concurrent use.
type Store interface {
	// Put stores body under key with its content type and SHA-256 (computed when
	// m.SHA256 is empty; a body that does not match m.SHA256 is refused with
	// ErrHashMismatch). Put is idempotent: storing the same content again succeeds.
	// Evidence is never overwritten: a key that holds other content gives ErrExists.
	Put(ctx context.Context, key string, body []byte, m Meta) error
	// Get returns the object and its metadata. When a SHA-256 was stored with the
	// object, the content is verified against it; a mismatch gives ErrHashMismatch. A
	// missing object gives ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, Meta, error)
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// URL is where a consumer fetches key (with the store's credentials where needed).
	URL(key string) string
}

// Meta is an object's metadata.
type Meta struct {
	ContentType string
	// SHA256 is lowercase hex.
	SHA256 string
	Size   int64
}

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}

// Store errors.
var (
	ErrNotFound     = errors.New("object not found")
	ErrHashMismatch = errors.New("SHA-256 mismatch")
	// ErrExists reports that a key already holds different content.
	ErrExists = errors.New("key holds different content")
)

const maxKeyLen = 1024

// checkStoreKey accepts keys made of '/'-separated segments of [A-Za-z0-9._-] that do
// not start with '.' (so no "." or "..", and no clash with a store's hidden files).
func checkStoreKey(key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("incidents: store key %q: %w: want 1-%d bytes", key, ErrInvalid, maxKeyLen)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg[0] == '.' || !keyChars(seg) {
			return fmt.Errorf("incidents: store key %q: %w: segments are [A-Za-z0-9._-], not empty, not starting with '.'", key, ErrInvalid)
		}
	}
	return nil
}

// checkPrefix accepts "" and any key prefix made of the same characters.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	segs := strings.Split(prefix, "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		if (seg == "" && !last) || (seg != "" && (seg[0] == '.' || !keyChars(seg))) {
			return fmt.Errorf("incidents: list prefix %q: %w", prefix, ErrInvalid)
		}
	}
	return nil
}

func keyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sealMeta checks body against m.SHA256 (when given) and fills in SHA256 and Size.
func sealMeta(key string, body []byte, m Meta) (Meta, error) {
	sum := sha256Hex(body)
	if m.SHA256 != "" && !strings.EqualFold(m.SHA256, sum) {
		return m, fmt.Errorf("incidents: put %s: %w: body hashes to %s, metadata says %s", key, ErrHashMismatch, sum, m.SHA256)
	}
	m.SHA256, m.Size = sum, int64(len(body))
	return m, nil
}

// verifyStored checks body against the SHA-256 stored with it ("" when none was).
func verifyStored(body []byte, stored string) error {
	if stored == "" {
		return nil
	}
	if got := sha256Hex(body); got != stored {
		return fmt.Errorf("%w: content hashes to %s, stored SHA-256 is %s", ErrHashMismatch, got, stored)
	}
	return nil
}
