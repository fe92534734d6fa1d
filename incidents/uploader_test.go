package incidents

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recordingStore passes everything to a real store and records the order of Puts.
type recordingStore struct {
	Store
	mu   sync.Mutex
	puts []string
}

func (r *recordingStore) Put(ctx context.Context, key string, body []byte, m Meta) error {
	err := r.Store.Put(ctx, key, body, m)
	if err == nil {
		r.mu.Lock()
		r.puts = append(r.puts, key)
		r.mu.Unlock()
	}
	return err
}

func (r *recordingStore) order() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.puts)
}

var _ Store = (*recordingStore)(nil)

// testSession is what the sensor submits for one session: real pcap bytes stand-ins
// and a real bundle naming them.
type testSession struct {
	pcaps     []Object
	bundleKey string
	bundle    []byte
}

func newTestSession(t *testing.T, i, parts int, urlOf func(string) string) testSession {
	t.Helper()
	start := time.Date(2026, 3, 14, 9, 0, i, 0, time.UTC)
	id := fmt.Sprintf("3f2b8c1e-5d4a-4c7b-9e8f-%012d", i)
	pcapKey, bundleKey, err := Keys("plant-a-01", start, id)
	if err != nil {
		t.Fatal(err)
	}
	sess := Session{
		ID: id, Protocol: "modbus", Service: "mbap", Transport: "tcp",
		Client: netip.MustParseAddrPort("203.0.113.7:50000"), Server: netip.MustParseAddrPort("192.0.2.10:502"),
		Start: start, End: start.Add(time.Second), ClientPackets: 3, ServerPackets: 3, ClientBytes: 200, ServerBytes: 180,
	}
	var ts testSession
	for p := 1; p <= parts; p++ {
		key, err := PartKey(pcapKey, p)
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(fmt.Sprintf("\xd4\xc3\xb2\xa1 session %d part %d", i, p))
		ts.pcaps = append(ts.pcaps, Object{Key: key, Body: body, Meta: Meta{ContentType: PCAPMimeType, SHA256: sha256Hex(body)}})
		sess.PCAPs = append(sess.PCAPs, PCAP{Key: key, URL: urlOf(key), SHA256: sha256Hex(body), Size: int64(len(body)), Part: p})
	}
	b, err := Build(Sensor{ID: "plant-a-01", IdentityID: "identity--0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"}, sess, start.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if ts.bundle, err = b.JSON(); err != nil {
		t.Fatal(err)
	}
	ts.bundleKey = bundleKey
	return ts
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func submit(t *testing.T, u *Uploader, s testSession) {
	t.Helper()
	if err := u.Submit(context.Background(), s.pcaps, s.bundleKey, s.bundle); err != nil {
		t.Fatalf("Submit: %v", err)
	}
}

// checkStored proves that every session is in the store, byte for byte, hash-verified,
// and that each bundle was stored after its pcaps.
func checkStored(t *testing.T, store Store, order []string, sessions []testSession) {
	t.Helper()
	ctx := context.Background()
	pos := map[string]int{}
	for i, k := range order {
		pos[k] = i
	}
	for _, s := range sessions {
		got, m, err := store.Get(ctx, s.bundleKey)
		if err != nil || !bytes.Equal(got, s.bundle) || m.ContentType != BundleMimeType {
			t.Errorf("bundle %s: %v, content type %q, equal=%v", s.bundleKey, err, m.ContentType, bytes.Equal(got, s.bundle))
			continue
		}
		sum, err := Summarize(got)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range sum.PCAPs {
			body, m, err := store.Get(ctx, p.Key)
			if err != nil || !bytes.Equal(body, s.pcaps[i].Body) || m.SHA256 != p.SHA256 {
				t.Errorf("pcap %s: %v (stored SHA-256 %s, bundle says %s)", p.Key, err, m.SHA256, p.SHA256)
			}
			if order != nil && pos[p.Key] > pos[s.bundleKey] {
				t.Errorf("bundle %s was stored before its pcap %s", s.bundleKey, p.Key)
			}
		}
	}
}

func spoolEntries(t *testing.T, dir, sub string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

// newFolderUploader returns a folder store, and an Uploader with its spool beside it
// that stores into wrap(store) (the store itself when wrap is nil).
func newFolderUploader(t *testing.T, wrap func(Store) Store) (*FolderStore, string, *Uploader) {
	t.Helper()
	dir := t.TempDir()
	fs, err := NewFolderStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	var target Store = fs
	if wrap != nil {
		target = wrap(fs)
	}
	spool := filepath.Join(dir, "spool")
	u, err := NewUploader(target, spool, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return fs, spool, u
}

func TestUploaderFolder(t *testing.T) {
	var rec *recordingStore
	fs, spool, u := newFolderUploader(t, func(s Store) Store { rec = &recordingStore{Store: s}; return rec })
	var sessions []testSession
	for i := range 3 {
		s := newTestSession(t, i, i+1, fs.URL)
		submit(t, u, s)
		sessions = append(sessions, s)
	}
	// A session whose capture failed: a bundle only.
	bare := newTestSession(t, 9, 0, fs.URL)
	submit(t, u, bare)
	sessions = append(sessions, bare)

	st := u.Stats()
	if st.Spooled != 4 || st.SpoolBytes == 0 {
		t.Errorf("after Submit: %+v", st)
	}
	if err := u.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkStored(t, fs, rec.order(), sessions)
	if got := rec.order(); len(got) != 1+2+3+4 || got[0] != sessions[0].pcaps[0].Key {
		t.Errorf("upload order %v: want the sessions in submission order", got)
	}
	st = u.Stats()
	if st != (UploadStats{Uploaded: 4, Objects: 10}) {
		t.Errorf("after Drain: %+v", st)
	}
	for _, sub := range []string{spoolReady, spoolTmp, spoolDone} {
		if left := spoolEntries(t, spool, sub); len(left) > 0 {
			t.Errorf("spool %s not empty: %v", sub, left)
		}
	}
}

func TestUploaderRunUploadsOnSubmit(t *testing.T) {
	fs, _, u := newFolderUploader(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()

	s := newTestSession(t, 1, 1, fs.URL)
	submit(t, u, s)
	waitFor(t, 10*time.Second, func() bool { return u.Stats().Uploaded == 1 })
	checkStored(t, fs, nil, []testSession{s})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUploaderS3DownThenUp: with S3 unreachable every session stays in the spool; a
// new Uploader on the same spool with a working S3 uploads all of it, pcaps first.
func TestUploaderS3DownThenUp(t *testing.T) {
	cfg, _ := newTestS3(t)
	upStore, err := OpenS3Store(cfg)
	if err != nil {
		t.Fatal(err)
	}
	downCfg := cfg
	downCfg.Endpoint, downCfg.MaxRetries = closedPort(t), 1
	down, err := OpenS3Store(downCfg)
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(t.TempDir(), "spool")
	u1, err := NewUploader(down, spool, testLogger(t), WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	var sessions []testSession
	for i := range 4 {
		s := newTestSession(t, i, 1+i%2, upStore.URL)
		submit(t, u1, s)
		sessions = append(sessions, s)
	}
	if err := u1.Drain(context.Background()); err == nil || !strings.Contains(err.Error(), "4 entries left") {
		t.Errorf("Drain with S3 down = %v, want 4 entries left", err)
	}
	// Let Run retry for a while: nothing may be lost or quarantined.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	u1.Run(ctx)
	cancel()
	st := u1.Stats()
	if st.Spooled != 4 || st.Uploaded != 0 || st.Quarantined != 0 || st.Failed < 2 {
		t.Errorf("with S3 down: %+v; want 4 spooled, several failed attempts", st)
	}
	if err := u1.Close(); err != nil {
		t.Fatal(err)
	}

	rec := &recordingStore{Store: upStore}
	u2, err := NewUploader(rec, spool, testLogger(t), WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer u2.Close()
	if st := u2.Stats(); st.Spooled != 4 {
		t.Errorf("new Uploader found %d spooled entries, want 4", st.Spooled)
	}
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u2.Run(ctx); close(done) }()
	waitFor(t, 20*time.Second, func() bool { return u2.Stats().Spooled == 0 })
	cancel()
	<-done
	if st := u2.Stats(); st.Uploaded != 4 || st.Quarantined != 0 {
		t.Errorf("after recovery: %+v", st)
	}
	checkStored(t, upStore, rec.order(), sessions)
	if left := spoolEntries(t, spool, spoolReady); len(left) > 0 {
		t.Errorf("spool not empty: %v", left)
	}
}

func TestUploaderQuarantine(t *testing.T) {
	ctx := context.Background()
	fs, spool, u := newFolderUploader(t, nil)
	clash := newTestSession(t, 1, 1, fs.URL)
	if err := fs.Put(ctx, clash.pcaps[0].Key, []byte("other evidence under the same key"), Meta{}); err != nil {
		t.Fatal(err)
	}
	submit(t, u, clash)
	damaged := newTestSession(t, 2, 1, fs.URL)
	submit(t, u, damaged)
	good := newTestSession(t, 3, 1, fs.URL)
	submit(t, u, good)

	ids := spoolEntries(t, spool, spoolReady)
	if len(ids) != 3 {
		t.Fatalf("ready entries %v", ids)
	}
	if err := os.WriteFile(filepath.Join(spool, spoolReady, ids[1], "0"), []byte("bit rot"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := u.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v (quarantined entries must not block the others)", err)
	}
	checkStored(t, fs, nil, []testSession{good})
	if st := u.Stats(); st.Quarantined != 2 || st.Uploaded != 1 || st.Spooled != 0 || st.SpoolBytes != 0 {
		t.Errorf("stats %+v", st)
	}
	failed := spoolEntries(t, spool, spoolFailed)
	if !slices.Equal(failed, ids[:2]) {
		t.Fatalf("failed/ = %v, want %v", failed, ids[:2])
	}
	for i, want := range []string{"cannot be stored", "SHA-256 mismatch"} {
		reason, err := os.ReadFile(filepath.Join(spool, spoolFailed, failed[i], "reason.txt"))
		if err != nil || !strings.Contains(string(reason), want) {
			t.Errorf("reason %d = %q, %v; want %q", i, reason, err, want)
		}
	}
	if _, _, err := fs.Get(ctx, damaged.bundleKey); !errors.Is(err, ErrNotFound) {
		t.Errorf("bundle of a damaged entry was stored: %v", err)
	}
	// The damaged evidence itself is kept for the operator.
	if _, err := os.Stat(filepath.Join(spool, spoolFailed, ids[1], manifestName)); err != nil {
		t.Error(err)
	}
}

func TestUploaderSubmitRejects(t *testing.T) {
	fs, spool, u := newFolderUploader(t, nil)
	s := newTestSession(t, 1, 1, fs.URL)
	tests := []struct {
		name   string
		pcaps  []Object
		bundle string
		want   error
	}{
		{"pcap body does not match its hash", []Object{{Key: s.pcaps[0].Key, Body: []byte("changed"), Meta: s.pcaps[0].Meta}}, s.bundleKey, ErrHashMismatch},
		{"hostile pcap key", []Object{{Key: "../../etc/x", Body: []byte("x")}}, s.bundleKey, ErrInvalid},
		{"hostile bundle key", s.pcaps, "/abs/key.json", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := u.Submit(context.Background(), tc.pcaps, tc.bundle, s.bundle); !errors.Is(err, tc.want) {
				t.Errorf("Submit = %v, want %v", err, tc.want)
			}
		})
	}
	for _, sub := range []string{spoolReady, spoolTmp} {
		if left := spoolEntries(t, spool, sub); len(left) > 0 {
			t.Errorf("refused submissions left %s entries %v", sub, left)
		}
	}
	if st := u.Stats(); st.Spooled != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestUploaderLock(t *testing.T) {
	dir := t.TempDir()
	fs, err := NewFolderStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	u1, err := NewUploader(fs, spool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewUploader(fs, spool, nil); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Uploader on one spool = %v, want 'in use'", err)
	}
	if err := u1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := u1.Submit(context.Background(), nil, testKey("x.json"), []byte("{}")); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close = %v, want ErrClosed", err)
	}
	u2, err := NewUploader(fs, spool, nil)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if err := u2.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestUploaderRecoversLeftovers: what a crash can leave in the spool.
func TestUploaderRecoversLeftovers(t *testing.T) {
	dir := t.TempDir()
	fs, err := NewFolderStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	u, err := NewUploader(fs, spool, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	complete := newTestSession(t, 1, 2, fs.URL)
	submit(t, u, complete)
	uploaded := newTestSession(t, 2, 1, fs.URL)
	submit(t, u, uploaded)
	submit(t, u, newTestSession(t, 3, 1, fs.URL))
	ids := spoolEntries(t, spool, spoolReady)
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	// 1. Crash after writing everything but before the final rename: entry in tmp/.
	if err := os.Rename(filepath.Join(spool, spoolReady, ids[0]), filepath.Join(spool, spoolTmp, ids[0])); err != nil {
		t.Fatal(err)
	}
	// 2. Crash while removing an uploaded entry: entry in done/.
	if err := os.Rename(filepath.Join(spool, spoolReady, ids[1]), filepath.Join(spool, spoolDone, ids[1])); err != nil {
		t.Fatal(err)
	}
	// 3. Crash in the middle of Submit: data file, no manifest.
	partial := filepath.Join(spool, spoolTmp, "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
	if err := os.MkdirAll(partial, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, "0"), []byte("half a pca"), 0o640); err != nil {
		t.Fatal(err)
	}
	// 4. Crash while writing the manifest: truncated JSON.
	truncated := filepath.Join(spool, spoolTmp, "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c")
	if err := os.MkdirAll(truncated, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(truncated, manifestName), []byte(`{"version":1,"objects":[{"key":`), 0o640); err != nil {
		t.Fatal(err)
	}

	// 5. A complete entry in tmp/ whose data was damaged on disk: kept, in failed/.
	if err := os.Rename(filepath.Join(spool, spoolReady, ids[2]), filepath.Join(spool, spoolTmp, ids[2])); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spool, spoolTmp, ids[2], "1"), []byte("damaged bundle"), 0o640); err != nil {
		t.Fatal(err)
	}

	rec := &recordingStore{Store: fs}
	u2, err := NewUploader(rec, spool, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer u2.Close()
	if failed := spoolEntries(t, spool, spoolFailed); !slices.Equal(failed, ids[2:]) {
		t.Errorf("failed/ = %v, want the damaged entry %v", failed, ids[2])
	}
	if left := spoolEntries(t, spool, spoolTmp); len(left) > 0 {
		t.Errorf("tmp/ after recovery: %v", left)
	}
	if left := spoolEntries(t, spool, spoolDone); len(left) > 0 {
		t.Errorf("done/ after recovery: %v", left)
	}
	if st := u2.Stats(); st.Spooled != 1 {
		t.Errorf("recovered %d entries, want the complete one", st.Spooled)
	}
	if err := u2.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkStored(t, fs, rec.order(), []testSession{complete})
	if len(rec.order()) != 3 {
		t.Errorf("uploaded %v, want the complete entry's 3 objects", rec.order())
	}
}

// TestUploaderSurvivesKill: a process submits sessions while S3 is down and is killed
// (SIGKILL, no cleanup). A new process recovers every session from the spool.
func TestUploaderSurvivesKill(t *testing.T) {
	if spool := os.Getenv("PCAPOT_TEST_CRASH_SPOOL"); spool != "" {
		crashChild(t, spool)
		return
	}
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	fs, err := NewFolderStore(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUploaderSurvivesKill$", "-test.v")
	cmd.Env = append(os.Environ(), "PCAPOT_TEST_CRASH_SPOOL="+spool, "PCAPOT_TEST_CRASH_STORE="+fs.Dir())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("submitted 5")) {
		t.Fatalf("child output:\n%s", out)
	}
	rec := &recordingStore{Store: fs}
	u, err := NewUploader(rec, spool, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := u.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	var sessions []testSession
	for i := range 5 {
		sessions = append(sessions, newTestSession(t, i, 1, fs.URL))
	}
	// Bundles hold random ids, so compare what the child stored through Summarize.
	for _, s := range sessions {
		b, _, err := fs.Get(context.Background(), s.bundleKey)
		if err != nil {
			t.Fatalf("session bundle %s lost: %v", s.bundleKey, err)
		}
		sum, err := Summarize(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.PCAPs) != 1 {
			t.Fatalf("bundle %s names %d pcaps", s.bundleKey, len(sum.PCAPs))
		}
		body, _, err := fs.Get(context.Background(), sum.PCAPs[0].Key)
		if err != nil || !bytes.Equal(body, s.pcaps[0].Body) {
			t.Errorf("pcap %s: %v", sum.PCAPs[0].Key, err)
		}
	}
	if st := u.Stats(); st.Uploaded != 5 {
		t.Errorf("stats %+v", st)
	}
}

// crashChild runs in the child process of TestUploaderSurvivesKill.
func crashChild(t *testing.T, spool string) {
	fs, err := NewFolderStore(os.Getenv("PCAPOT_TEST_CRASH_STORE"))
	if err != nil {
		t.Fatal(err)
	}
	down, err := OpenS3Store(S3Config{Endpoint: closedPort(t), Bucket: "pcapot-down", AccessKey: "k", SecretKey: "s", Insecure: true, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	u, err := NewUploader(down, spool, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		submit(t, u, newTestSession(t, i, 1, fs.URL))
	}
	_ = u.Drain(context.Background()) // fails: S3 is down
	fmt.Println("submitted " + strconv.Itoa(5))
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}
