// Command storelat measures, for pcapot's benchmarks (scripts/bench/capture.sh), the
// latency from the end of a session (the client closes its connection) to the
// session's pcap and STIX bundle being stored. The sensor stores the pcap first and
// the bundle that names it last, so the bundle's arrival marks both as stored.
//
// It runs -n short Modbus sessions (connect, one FC 3 read, close) one at a time,
// -interval apart, and records the wall-clock time of each close. Meanwhile it watches
// the store:
//
//	folder: -data DIR, with inotify on every folder below DIR: a bundle counts as
//	        stored when it is renamed into place (the folder store writes a temporary
//	        file, fsyncs it and renames it);
//	S3:     -s3-endpoint HOST:PORT -s3-bucket B (credentials from -s3-access-key /
//	        -s3-secret-key), by listing the bucket every -poll.
//
// Each new bundle is read back and matched to its session by the client port. The
// result, one JSON object on stdout, has latency percentiles in milliseconds.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pcapot/pcapot/incidents"
)

type result struct {
	Store      string  `json:"store"`
	Sessions   int     `json:"sessions"`
	Failed     int     `json:"sessions_failed"`
	Stored     int     `json:"stored"`
	Missing    int     `json:"missing"`
	IntervalMS float64 `json:"interval_ms"`
	P50ms      float64 `json:"p50_ms"`
	P90ms      float64 `json:"p90_ms"`
	P99ms      float64 `json:"p99_ms"`
	Minms      float64 `json:"min_ms"`
	Maxms      float64 `json:"max_ms"`
	PollMS     float64 `json:"poll_ms,omitempty"`
	FirstError string  `json:"first_error,omitempty"`
}

// arrival is a bundle seen in the store.
type arrival struct {
	at   time.Time
	body func() ([]byte, error)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:502", "Modbus/TCP address of the sensor")
	n := flag.Int("n", 200, "sessions")
	interval := flag.Duration("interval", 50*time.Millisecond, "time between session starts")
	wait := flag.Duration("wait", 60*time.Second, "how long to wait for the last bundle")
	data := flag.String("data", "", "folder store to watch")
	endpoint := flag.String("s3-endpoint", "", "S3 endpoint to poll instead of a folder")
	bucket := flag.String("s3-bucket", "", "S3 bucket")
	access := flag.String("s3-access-key", "", "S3 access key")
	secret := flag.String("s3-secret-key", "", "S3 secret key")
	poll := flag.Duration("poll", 20*time.Millisecond, "S3 listing interval")
	flag.Parse()
	if (*data == "") == (*endpoint == "") {
		fatalf("give exactly one of -data and -s3-endpoint")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	arrivals := make(chan arrival, 1<<16)
	res := result{Sessions: *n, IntervalMS: float64(*interval) / 1e6}
	var err error
	if *data != "" {
		res.Store = "folder"
		err = watchFolder(ctx, *data, arrivals)
	} else {
		res.Store = "s3"
		res.PollMS = float64(*poll) / 1e6
		var st incidents.Store
		st, err = incidents.NewS3Store(ctx, incidents.S3Config{Endpoint: *endpoint, Bucket: *bucket, AccessKey: *access, SecretKey: *secret, Insecure: true})
		if err == nil {
			err = pollS3(ctx, st, *poll, arrivals)
		}
	}
	if err != nil {
		fatalf("%v", err)
	}

	// The sessions, one at a time.
	var mu sync.Mutex
	// Client port -> close times: on loopback the kernel may reuse a port within
	// seconds (net.ipv4.tcp_tw_reuse), so a port can name several sessions.
	closed := map[uint16][]time.Time{}
	nclosed := 0
	req := []byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10}
	resp := make([]byte, 29)
	t0 := time.Now()
	for i := 0; i < *n; i++ {
		if w := time.Until(t0.Add(time.Duration(i) * *interval)); w > 0 {
			time.Sleep(w)
		}
		conn, err := net.DialTimeout("tcp", *addr, 5*time.Second)
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err = conn.Write(req); err == nil {
				_, err = io.ReadFull(conn, resp)
			}
			port := uint16(conn.LocalAddr().(*net.TCPAddr).Port)
			end := time.Now()
			conn.Close()
			if err == nil {
				mu.Lock()
				closed[port] = append(closed[port], end)
				nclosed++
				mu.Unlock()
			}
		}
		if err != nil {
			res.Failed++
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
		}
	}

	// Match arrivals to sessions until all are stored or -wait passes. A bundle is
	// the session of its client port whose close time is nearest to the bundle's last
	// packet.
	var lat []time.Duration
	deadline := time.After(*wait)
	type sessKey struct {
		port uint16
		i    int
	}
	matched := map[sessKey]bool{}
	for len(matched) < nclosed {
		select {
		case a := <-arrivals:
			b, err := a.body()
			if err != nil {
				continue // not (yet) a readable bundle
			}
			sum, err := incidents.Summarize(b)
			if err != nil {
				continue
			}
			port := sum.Client.Port()
			best := -1
			for i, end := range closed[port] {
				if matched[sessKey{port, i}] {
					continue
				}
				if best < 0 || absDur(end.Sub(sum.End)) < absDur(closed[port][best].Sub(sum.End)) {
					best = i
				}
			}
			if best < 0 {
				continue
			}
			matched[sessKey{port, best}] = true
			lat = append(lat, a.at.Sub(closed[port][best]))
		case <-deadline:
			goto done
		}
	}
done:
	res.Stored = len(lat)
	res.Missing = nclosed - len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		p := func(q float64) float64 {
			i := max(0, min(len(lat)-1, int(float64(len(lat))*q/100+0.999999)-1))
			return float64(lat[i]) / 1e6
		}
		res.P50ms, res.P90ms, res.P99ms, res.Minms, res.Maxms = p(50), p(90), p(99), float64(lat[0])/1e6, float64(lat[len(lat)-1])/1e6
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fatalf("%v", err)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "storelat: "+format+"\n", a...)
	os.Exit(1)
}

// bundleName reports whether a file name is a session bundle: <uuid>.json.
func bundleName(name string) bool {
	return strings.HasSuffix(name, ".json") && len(name) == 36+5 && strings.Count(name, "-") == 4
}

// watchFolder reports every bundle renamed or written into place below dir,
// watching new folders as they appear.
func watchFolder(ctx context.Context, dir string, out chan<- arrival) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	const mask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE | unix.IN_ONLYDIR
	dirs := map[int]string{}
	var add func(string) error
	add = func(p string) error {
		wd, err := unix.InotifyAddWatch(fd, p, mask&^unix.IN_ONLYDIR)
		if err != nil {
			return fmt.Errorf("inotify watch %s: %w", p, err)
		}
		dirs[wd] = p
		// Folders created before the watch: watch them too.
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.IsDir() && e.Name() != "spool" {
				if err := add(filepath.Join(p, e.Name())); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := add(dir); err != nil {
		return err
	}
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 1<<16)
		for ctx.Err() == nil {
			n, err := unix.Read(fd, buf)
			if err != nil || n <= 0 {
				return
			}
			at := time.Now()
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				off += unix.SizeofInotifyEvent + int(ev.Len)
				name := strings.TrimRight(string(nameBytes), "\x00")
				parent := dirs[int(ev.Wd)]
				p := filepath.Join(parent, name)
				switch {
				case ev.Mask&unix.IN_ISDIR != 0 && ev.Mask&unix.IN_CREATE != 0:
					if name != "spool" {
						_ = add(p)
					}
				case ev.Mask&(unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE) != 0 && bundleName(name):
					out <- arrival{at: at, body: func() ([]byte, error) { return os.ReadFile(p) }}
				}
			}
		}
	}()
	return nil
}

// pollS3 lists the bucket every interval and reports each new bundle key.
func pollS3(ctx context.Context, st incidents.Store, every time.Duration, out chan<- arrival) error {
	seen := map[string]bool{}
	objs, err := st.List(ctx, "")
	if err != nil {
		return fmt.Errorf("list bucket: %w", err)
	}
	for _, o := range objs {
		seen[o.Key] = true // older sessions are not ours
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			objs, err := st.List(ctx, "")
			if err != nil {
				continue
			}
			at := time.Now()
			for _, o := range objs {
				if seen[o.Key] || !bundleName(filepath.Base(o.Key)) || incidents.ValidKey(o.Key) != nil {
					continue
				}
				seen[o.Key] = true
				key := o.Key
				out <- arrival{at: at, body: func() ([]byte, error) {
					b, _, err := st.Get(ctx, key)
					return b, err
				}}
			}
		}
	}()
	return nil
}
