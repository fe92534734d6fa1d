package incidents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Object is one object to upload.
type Object struct {
	Key  string
	Body []byte
	Meta Meta
}

// UploadStats counts the uploader's work since it was created.
type UploadStats struct {
	// Uploaded counts spool entries (sessions) fully stored, Objects the objects stored.
	Uploaded, Objects int64
	// Failed counts failed upload attempts (each is retried).
	Failed int64
	// Quarantined counts entries moved to the spool's failed/ folder because they can
	// never be stored as they are (damaged in the spool, or their key already holds
	// other content). They stay there for an operator.
	Quarantined int64
	// Spooled and SpoolBytes are the entries waiting in the spool now, and their size.
	Spooled, SpoolBytes int64
}

// Uploader stores session objects through a disk spool: Submit makes them durable on
// local disk first, then Run uploads them (pcaps first, the bundle that names them
// last), retrying with exponential backoff while the store is unavailable. Entries
// left by a previous process are recovered when an Uploader opens the spool.
//
// Spool layout (one directory per Submit):
//
//	<spool>/tmp/<id>/     being written; promoted at start if complete, else removed
//	<spool>/ready/<id>/   durable, waiting: manifest.json and the object files 0, 1, ...
//	<spool>/done/<id>/    uploaded, being removed
//	<spool>/failed/<id>/  quarantined (see UploadStats.Quarantined), with reason.txt
//
// Entry ids are UUIDv7, so entries upload in submission order.
type Uploader struct {
	store      Store
	dir        string
	log        *slog.Logger
	minBackoff time.Duration
	maxBackoff time.Duration
	rescan     time.Duration

	wake   chan struct{}
	mu     sync.Mutex // one upload pass at a time
	lock   *os.File
	closed atomic.Bool

	uploaded, objects, failed, quarantined, spooled, spoolBytes atomic.Int64
}

// UploaderOption configures NewUploader.
type UploaderOption func(*Uploader)

// WithBackoff sets the first and the longest wait between retries after a failed
// upload (default 1s and 5m; each failure doubles the wait, with jitter).
func WithBackoff(first, longest time.Duration) UploaderOption {
	return func(u *Uploader) { u.minBackoff, u.maxBackoff = first, max(first, longest) }
}

const (
	spoolTmp      = "tmp"
	spoolReady    = "ready"
	spoolDone     = "done"
	spoolFailed   = "failed"
	manifestName  = "manifest.json"
	manifestV1    = 1
	defaultRescan = time.Minute
)

// errDamaged marks spool entries that can never be uploaded as they are.
var errDamaged = errors.New("damaged spool entry")

type manifest struct {
	Version int              `json:"version"`
	Created time.Time        `json:"created"`
	Objects []manifestObject `json:"objects"` // in upload order, the bundle last
}

type manifestObject struct {
	Key         string `json:"key"`
	File        string `json:"file"`
	ContentType string `json:"content_type,omitempty"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
}

// NewUploader opens (creating it if needed) the spool in spoolDir, takes its lock and
// recovers what a previous process left: complete entries are kept for upload, partial
// ones (whose Submit never returned) are removed. A nil logger discards logs.
func NewUploader(store Store, spoolDir string, logger *slog.Logger, opts ...UploaderOption) (*Uploader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(spoolDir)
	if err != nil {
		return nil, fmt.Errorf("incidents: spool %s: %w", spoolDir, err)
	}
	u := &Uploader{
		store: store, dir: dir, log: logger.With("spool", dir),
		minBackoff: time.Second, maxBackoff: 5 * time.Minute, rescan: defaultRescan,
		wake: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(u)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("incidents: spool: %w", err)
	}
	for _, sub := range []string{spoolTmp, spoolReady, spoolDone, spoolFailed} {
		if err := mkdirAllSync(dir, filepath.Join(dir, sub)); err != nil {
			return nil, fmt.Errorf("incidents: spool: %w", err)
		}
	}
	if u.lock, err = lockDir(dir); err != nil {
		return nil, fmt.Errorf("incidents: %w", err)
	}
	if err := u.recover(); err != nil {
		_ = u.lock.Close()
		return nil, fmt.Errorf("incidents: recover spool %s: %w", dir, err)
	}
	return u, nil
}

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("uploader closed")

// Close releases the spool; call it after Run has returned. Entries not uploaded stay
// for the next Uploader.
func (u *Uploader) Close() error {
	if u.closed.Swap(true) {
		return nil
	}
	return u.lock.Close()
}

func (u *Uploader) path(parts ...string) string {
	return filepath.Join(append([]string{u.dir}, parts...)...)
}

// entries lists the entry directories of a spool folder in id (submission) order;
// anything else there is ignored.
func (u *Uploader) entries(sub string) ([]string, error) {
	des, err := os.ReadDir(u.path(sub))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, d := range des {
		if d.IsDir() {
			ids = append(ids, d.Name())
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (u *Uploader) recover() error {
	done, err := u.entries(spoolDone)
	if err != nil {
		return err
	}
	for _, id := range done { // uploaded before the crash; only the removal was cut short
		if err := os.RemoveAll(u.path(spoolDone, id)); err != nil {
			return err
		}
	}
	tmp, err := u.entries(spoolTmp)
	if err != nil {
		return err
	}
	for _, id := range tmp {
		m, _, err := u.readEntry(spoolTmp, id)
		switch {
		case err == nil: // written completely, only the final rename was missing
			if err := os.Rename(u.path(spoolTmp, id), u.path(spoolReady, id)); err != nil {
				return err
			}
			u.log.Info("recovered a complete spool entry", "entry", id, "bytes", m.size())
		case m == nil && (errors.Is(err, errDamaged) || errors.Is(err, fs.ErrNotExist)):
			// The manifest is written last: without it Submit never returned.
			u.log.Warn("removing a partial spool entry (its Submit never returned)", "entry", id, "err", err)
			if err := os.RemoveAll(u.path(spoolTmp, id)); err != nil {
				return err
			}
		case m != nil && (errors.Is(err, ErrHashMismatch) || errors.Is(err, fs.ErrNotExist)):
			if err := u.quarantine(spoolTmp, id, err.Error()); err != nil {
				return err
			}
		default:
			return err
		}
	}
	if err := syncDir(u.path(spoolReady)); err != nil {
		return err
	}
	ready, err := u.entries(spoolReady)
	if err != nil {
		return err
	}
	for _, id := range ready {
		m, err := u.readManifest(spoolReady, id)
		if errors.Is(err, errDamaged) || errors.Is(err, fs.ErrNotExist) {
			if err := u.quarantine(spoolReady, id, err.Error()); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		u.spooled.Add(1)
		u.spoolBytes.Add(m.size())
	}
	if len(ready) > 0 {
		u.log.Info("spool holds entries from a previous run", "entries", u.spooled.Load(), "bytes", u.spoolBytes.Load())
	}
	return nil
}

func (m *manifest) size() int64 {
	var n int64
	for _, o := range m.Objects {
		n += o.Size
	}
	return n
}

func (u *Uploader) readManifest(sub, id string) (*manifest, error) {
	b, err := os.ReadFile(u.path(sub, id, manifestName))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", errDamaged, err)
	}
	if m.Version != manifestV1 || len(m.Objects) == 0 {
		return nil, fmt.Errorf("%w: manifest version %d with %d objects", errDamaged, m.Version, len(m.Objects))
	}
	return &m, nil
}

// readEntry reads an entry and checks that every file is present and matches its
// hash. The manifest is returned with the error when only a file is damaged.
func (u *Uploader) readEntry(sub, id string) (*manifest, [][]byte, error) {
	m, err := u.readManifest(sub, id)
	if err != nil {
		return nil, nil, err
	}
	bodies := make([][]byte, len(m.Objects))
	for i, o := range m.Objects {
		b, err := os.ReadFile(u.path(sub, id, o.File))
		if err != nil {
			return m, nil, err
		}
		if got := sha256Hex(b); got != o.SHA256 || int64(len(b)) != o.Size {
			return m, nil, fmt.Errorf("%s: %w: spooled file hashes to %s, recorded %s", o.Key, ErrHashMismatch, got, o.SHA256)
		}
		bodies[i] = b
	}
	return m, bodies, nil
}

// Submit makes a session's objects durable in the spool and returns; Run (or Drain)
// uploads them later, the pcaps in the order given, then the bundle. A pcap whose
// Meta.SHA256 does not match its body is refused (ErrHashMismatch): its hash was
// computed when it was written, and the spool keeps only verified evidence.
func (u *Uploader) Submit(ctx context.Context, pcaps []Object, bundleKey string, bundle []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if u.closed.Load() {
		return fmt.Errorf("incidents: submit: %w", ErrClosed)
	}
	objs := append(slices.Clone(pcaps), Object{Key: bundleKey, Body: bundle, Meta: Meta{ContentType: BundleMimeType}})
	m := manifest{Version: manifestV1, Created: time.Now().UTC()}
	for i := range objs {
		o := &objs[i]
		if err := checkStoreKey(o.Key); err != nil {
			return err
		}
		meta, err := sealMeta(o.Key, o.Body, o.Meta)
		if err != nil {
			return err
		}
		m.Objects = append(m.Objects, manifestObject{Key: o.Key, File: strconv.Itoa(i), ContentType: meta.ContentType, SHA256: meta.SHA256, Size: meta.Size})
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("incidents: spool entry id: %w", err)
	}
	if err := u.writeEntry(id.String(), objs, &m); err != nil {
		return fmt.Errorf("incidents: spool %s: %w", u.dir, err)
	}
	u.spooled.Add(1)
	u.spoolBytes.Add(m.size())
	select {
	case u.wake <- struct{}{}:
	default:
	}
	return nil
}

func (u *Uploader) writeEntry(id string, objs []Object, m *manifest) (err error) {
	tmp := u.path(spoolTmp, id)
	if err := os.Mkdir(tmp, 0o750); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	for i, o := range objs {
		if err := writeNewFile(filepath.Join(tmp, m.Objects[i].File), o.Body); err != nil {
			return err
		}
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := writeNewFile(filepath.Join(tmp, manifestName), mb); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, u.path(spoolReady, id)); err != nil {
		return err
	}
	if err := syncDir(u.path(spoolReady)); err != nil {
		return err
	}
	return syncDir(u.path(spoolTmp))
}

// writeNewFile creates path with data and fsyncs it.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// upload stores one entry, or quarantines it when it can never be stored. It returns
// an error when the store failed (worth a retry).
func (u *Uploader) upload(ctx context.Context, id string) error {
	m, bodies, err := u.readEntry(spoolReady, id)
	if err != nil {
		if !errors.Is(err, errDamaged) && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrHashMismatch) {
			return err // e.g. an I/O error: retry
		}
		if err := u.quarantine(spoolReady, id, err.Error()); err != nil {
			return err
		}
		if m != nil {
			u.forget(m)
		} else {
			u.spooled.Add(-1)
		}
		return nil
	}
	for i, o := range m.Objects {
		err := u.store.Put(ctx, o.Key, bodies[i], Meta{ContentType: o.ContentType, SHA256: o.SHA256, Size: o.Size})
		switch {
		case err == nil:
			u.objects.Add(1)
		case errors.Is(err, ErrExists), errors.Is(err, ErrInvalid), errors.Is(err, ErrHashMismatch):
			if err := u.quarantine(spoolReady, id, fmt.Sprintf("%s cannot be stored: %v", o.Key, err)); err != nil {
				return err
			}
			u.forget(m)
			return nil
		default:
			return fmt.Errorf("upload %s: %w", o.Key, err)
		}
	}
	if err := os.Rename(u.path(spoolReady, id), u.path(spoolDone, id)); err != nil {
		return err
	}
	if err := os.RemoveAll(u.path(spoolDone, id)); err != nil {
		u.log.Warn("cannot remove an uploaded spool entry; removed at next start", "entry", id, "err", err)
	}
	u.uploaded.Add(1)
	u.forget(m)
	u.log.Debug("uploaded", "entry", id, "objects", len(m.Objects), "bytes", m.size())
	return nil
}

// forget takes an entry that left the spool out of the spool counters.
func (u *Uploader) forget(m *manifest) {
	u.spooled.Add(-1)
	u.spoolBytes.Add(-m.size())
}

// quarantine moves an entry from sub (ready/ or tmp/) to failed/ with a reason, never deleting it.
func (u *Uploader) quarantine(sub, id, reason string) error {
	if err := os.Rename(u.path(sub, id), u.path(spoolFailed, id)); err != nil {
		return fmt.Errorf("quarantine %s: %w", id, err)
	}
	u.log.Error("spool entry quarantined; it needs an operator", "entry", id, "reason", reason, "path", u.path(spoolFailed, id))
	if err := writeFileAtomic(u.path(spoolFailed, id, "reason.txt"), []byte(reason+"\n"), 0o640); err != nil {
		u.log.Error("cannot write quarantine reason", "entry", id, "err", err)
	}
	u.quarantined.Add(1)
	return nil
}

// flush uploads the spooled entries in order and stops at the first store failure. It
// returns how many entries it left.
func (u *Uploader) flush(ctx context.Context) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ids, err := u.entries(spoolReady)
	if err != nil {
		return 0, fmt.Errorf("incidents: spool: %w", err)
	}
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return len(ids) - i, err
		}
		if err := u.upload(ctx, id); err != nil {
			u.failed.Add(1)
			return len(ids) - i, err
		}
	}
	return 0, nil
}

// Run uploads spooled entries until ctx is done: at once when Submit adds one, and
// after a failure with exponential backoff (with jitter) up to the longest wait. It
// also rescans the spool every minute.
func (u *Uploader) Run(ctx context.Context) {
	var backoff time.Duration
	for {
		left, err := u.flush(ctx)
		if ctx.Err() != nil {
			return
		}
		wake := u.wake
		wait := u.rescan
		if err != nil {
			backoff = min(max(2*backoff, u.minBackoff), u.maxBackoff)
			wait = backoff/2 + rand.N(backoff/2+1)
			wake = nil // a new submission does not cut a backoff short
			u.log.Warn("upload failed; will retry", "err", err, "retry_in", wait, "entries_left", left)
		} else {
			backoff = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// Drain tries once to upload everything spooled, for shutdown. What it cannot upload
// stays in the spool for the next start; the error then says how much.
func (u *Uploader) Drain(ctx context.Context) error {
	left, err := u.flush(ctx)
	if left > 0 {
		return fmt.Errorf("incidents: spool %s: %d entries left for the next start: %w", u.dir, left, err)
	}
	return err
}

// Stats returns the uploader's counters.
func (u *Uploader) Stats() UploadStats {
	return UploadStats{
		Uploaded:    u.uploaded.Load(),
		Objects:     u.objects.Load(),
		Failed:      u.failed.Load(),
		Quarantined: u.quarantined.Load(),
		Spooled:     u.spooled.Load(),
		SpoolBytes:  u.spoolBytes.Load(),
	}
}
