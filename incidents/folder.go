package incidents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FolderStore keeps objects as files below a directory: key "a/b/c.pcap" is the file
// <dir>/a/b/c.pcap, and its metadata (content type, SHA-256, size) is the hidden
// sidecar <dir>/a/b/.c.pcap.meta.json. Both are written atomically (temporary file,
// fsync, rename, fsync of the directory), the sidecar first, so that a file present
// under its key always has its hash beside it.
type FolderStore struct {
	root string
}

var _ Store = (*FolderStore)(nil)

// NewFolderStore opens (creating it if needed) the folder store at dir.
func NewFolderStore(dir string) (*FolderStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("incidents: folder store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("incidents: folder store: %w", err)
	}
	return &FolderStore{root: abs}, nil
}

// Dir returns the store's absolute directory.
func (f *FolderStore) Dir() string { return f.root }

type sidecar struct {
	ContentType string `json:"content_type,omitempty"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
}

func (f *FolderStore) paths(key string) (data, meta string, err error) {
	if err := checkStoreKey(key); err != nil {
		return "", "", err
	}
	data = filepath.Join(f.root, filepath.FromSlash(key))
	dir, name := filepath.Split(data)
	return data, filepath.Join(dir, "."+name+".meta.json"), nil
}

func readSidecar(path string) (*sidecar, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s sidecar
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("sidecar %s: %w", path, err)
	}
	return &s, nil
}

// Put implements Store.
func (f *FolderStore) Put(ctx context.Context, key string, body []byte, m Meta) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dataPath, metaPath, err := f.paths(key)
	if err != nil {
		return err
	}
	if m, err = sealMeta(key, body, m); err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("incidents: folder store: put %s: %w", key, err) }

	old, err := readSidecar(metaPath)
	if err != nil {
		return fail(err)
	}
	switch existing, err := os.ReadFile(dataPath); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fail(err)
	case bytes.Equal(existing, body):
		if old != nil && *old == sidecar(m) {
			return nil
		}
		// Same content, sidecar missing or stale: rewrite it below.
	case old == nil || old.SHA256 != m.SHA256:
		return fail(fmt.Errorf("%w (stored SHA-256 %s, new %s)", ErrExists, sha256Hex(existing), m.SHA256))
	default:
		// The stored file no longer matches its own recorded hash, which is this
		// body's: it is a damaged copy of the same object, repaired below.
	}

	if err := mkdirAllSync(f.root, filepath.Dir(dataPath)); err != nil {
		return fail(err)
	}
	sc, err := json.Marshal(sidecar(m))
	if err != nil {
		return fail(err)
	}
	if err := writeFileAtomic(metaPath, sc, 0o640); err != nil {
		return fail(err)
	}
	if err := writeFileAtomic(dataPath, body, 0o640); err != nil {
		return fail(err)
	}
	return nil
}

// Get implements Store.
func (f *FolderStore) Get(ctx context.Context, key string) ([]byte, Meta, error) {
	if err := ctx.Err(); err != nil {
		return nil, Meta{}, err
	}
	dataPath, metaPath, err := f.paths(key)
	if err != nil {
		return nil, Meta{}, err
	}
	body, err := os.ReadFile(dataPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Meta{}, fmt.Errorf("incidents: folder store: get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, Meta{}, fmt.Errorf("incidents: folder store: get %s: %w", key, err)
	}
	sc, err := readSidecar(metaPath)
	if err != nil {
		return nil, Meta{}, fmt.Errorf("incidents: folder store: get %s: %w", key, err)
	}
	m := Meta{Size: int64(len(body))}
	if sc != nil {
		m.ContentType, m.SHA256 = sc.ContentType, sc.SHA256
	}
	if err := verifyStored(body, m.SHA256); err != nil {
		return nil, m, fmt.Errorf("incidents: folder store: get %s: %w", key, err)
	}
	return body, m, nil
}

// List implements Store. Hidden files (sidecars, temporary files) are not listed.
func (f *FolderStore) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	// Walk only below the deepest directory the prefix names.
	start := f.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = filepath.Join(f.root, filepath.FromSlash(prefix[:i]))
	}
	var out []ObjectInfo
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != start {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(f.root, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, ObjectInfo{Key: key, Size: info.Size(), Modified: info.ModTime().UTC()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("incidents: folder store: list %q: %w", prefix, err)
	}
	slices.SortFunc(out, func(a, b ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// URL implements Store: a file:// URL of the object's absolute path.
func (f *FolderStore) URL(key string) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Join(f.root, filepath.FromSlash(key)))}
	return u.String()
}
