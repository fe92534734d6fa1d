package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pcapot/pcapot/incidents"
	"github.com/pcapot/pcapot/sensor/metrics"
)

// Media types.
const (
	TAXIIMediaType = "application/taxii+json;version=2.1"
	STIXMediaType  = "application/stix+json;version=2.1"
)

// Defaults.
const (
	DefaultAPIRoot         = "pcapot"
	DefaultVisibilityDelay = 10 * time.Second
	DefaultRefreshInterval = 5 * time.Second
	DefaultPageSize        = 100
	DefaultMaxPageSize     = 1000
	DefaultCacheBytes      = 32 << 20
	// maxContentLength is advertised by the API root; the server accepts no bodies.
	maxContentLength = 64 << 10
	refreshTimeout   = 2 * time.Minute
)

// Config configures a Server.
type Config struct {
	// Store holds the session bundles (folder or S3); required.
	Store incidents.Store
	// Users are HTTP Basic credentials (user name -> password); Tokens are API keys
	// accepted as "Authorization: Bearer <key>" or "Authorization: Token <key>". With
	// neither, the API is open: listen on loopback only (CheckListen).
	Users  map[string]string
	Tokens []string
	// Title, Description and Contact describe the server in discovery.
	Title, Description, Contact string
	// APIRoot is the API root's path segment below /taxii2/ (default "pcapot").
	APIRoot string
	// Metrics, when set, counts requests and is served at /metrics (with the same
	// authentication as TAXII, unless MetricsNoAuth).
	Metrics       *metrics.Metrics
	MetricsNoAuth bool
	// NextKey authenticates next tokens (HMAC-SHA256, at least 16 bytes). Set it (see
	// LoadOrCreateKey) so that tokens survive restarts and work on every instance
	// behind a load balancer; when nil a random per-process key is used.
	NextKey []byte
	// NextTTL bounds the age of next tokens; 0 means no expiry (tokens carry no
	// privilege beyond the principal's own, which is re-checked on every use).
	NextTTL time.Duration
	// VisibilityDelay is how long after its modification time a bundle is served (see
	// the package documentation); default 10 s. Every server over one bucket must use
	// the same delay. RefreshInterval is how old the index may be for a follow-up page
	// (default 5 s); a new query always lists the store first.
	VisibilityDelay, RefreshInterval time.Duration
	// PageSize is the page size when a request has no limit (default 100);
	// MaxPageSize caps limit (default 1000).
	PageSize, MaxPageSize int
	// CacheBytes bounds the cache of bundles read for serving (default 32 MiB).
	CacheBytes int64
	// EmptyObjectsList answers an empty page with "objects": [] instead of leaving the
	// key out as TAXII 2.1 requires. Elastic's ti_custom CEL program reads body.objects
	// unconditionally and fails on an empty page without it.
	EmptyObjectsList bool
	// Now returns the current time; tests replace it.
	Now func() time.Time
}

// Server is the management API. Create it with New; it is safe for concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	idx    *index
	key    []byte
	users  []credential
	tokens [][32]byte
	root   string // "/taxii2/<root>/"
}

type credential struct {
	user, pass [32]byte
	name       string
}

// New checks cfg and returns a server. It does not touch the store: the index is
// built by the first request that needs it (or by Refresh).
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Store == nil {
		return nil, errors.New("api: no store")
	}
	if cfg.APIRoot == "" {
		cfg.APIRoot = DefaultAPIRoot
	}
	if !segmentRE(cfg.APIRoot) {
		return nil, fmt.Errorf("api: API root %q: want 1-64 characters of a-z, 0-9, '-' and '_'", cfg.APIRoot)
	}
	if cfg.Title == "" {
		cfg.Title = "pcapot ICS honeypot"
	}
	if cfg.Description == "" {
		cfg.Description = "STIX 2.1 incidents, observed data, pcap artifacts, indicators and sightings recorded by pcapot ICS honeypot sensors."
	}
	if cfg.VisibilityDelay <= 0 {
		cfg.VisibilityDelay = DefaultVisibilityDelay
	}
	if cfg.RefreshInterval < 0 {
		return nil, errors.New("api: negative refresh interval")
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.MaxPageSize <= 0 {
		cfg.MaxPageSize = DefaultMaxPageSize
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = min(DefaultPageSize, cfg.MaxPageSize)
	}
	if cfg.PageSize > cfg.MaxPageSize {
		return nil, fmt.Errorf("api: page size %d above the maximum %d", cfg.PageSize, cfg.MaxPageSize)
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, log: logger.With("component", "api"), root: "/taxii2/" + cfg.APIRoot + "/"}
	switch {
	case cfg.NextKey == nil:
		s.key = make([]byte, 32)
		_, _ = rand.Read(s.key) // never fails (Go 1.24+)
	case len(cfg.NextKey) < 16:
		return nil, errors.New("api: next-token key shorter than 16 bytes")
	default:
		s.key = append([]byte(nil), cfg.NextKey...)
	}
	for name, pass := range cfg.Users {
		if name == "" || pass == "" || strings.Contains(name, ":") {
			return nil, fmt.Errorf("api: user %q: want a non-empty name without ':' and a non-empty password", name)
		}
		s.users = append(s.users, credential{user: sha256.Sum256([]byte(name)), pass: sha256.Sum256([]byte(pass)), name: name})
	}
	for _, t := range cfg.Tokens {
		if len(t) < 16 {
			return nil, errors.New("api: API tokens must have at least 16 characters")
		}
		s.tokens = append(s.tokens, sha256.Sum256([]byte(t)))
	}
	s.idx = newIndex(cfg.Store, cfg.VisibilityDelay, cfg.CacheBytes, cfg.Now, s.log)
	return s, nil
}

func segmentRE(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// HasCredentials reports whether the server requires authentication.
func (s *Server) HasCredentials() bool { return len(s.users) > 0 || len(s.tokens) > 0 }

// APIRootPath returns the API root's path, "/taxii2/<root>/".
func (s *Server) APIRootPath() string { return s.root }

// Refresh brings the index up to date with the store now.
func (s *Server) Refresh(ctx context.Context) error {
	return s.idx.refresh(ctx, s.cfg.Now())
}

// Stats describes the index.
func (s *Server) Stats() IndexStats { return s.idx.stats() }

// ensureFresh brings the index up to date for a request. A new query (no next token)
// needs an index sampled after the request arrived, so that every object whose
// date_added is before the request is indexed (clients that poll with added_after
// taken from their own clock rely on it); it fails when the store cannot be listed.
// A follow-up page (next token) continues the query on an index at most
// RefreshInterval old, and keeps serving the last index if the store fails.
func (s *Server) ensureFresh(ctx context.Context, newQuery bool) error {
	now := s.cfg.Now()
	s.idx.mu.RLock()
	built, last := s.idx.built, s.idx.lastTry
	s.idx.mu.RUnlock()
	if !newQuery && built {
		if now.Sub(last) < s.cfg.RefreshInterval || !s.idx.refreshMu.TryLock() {
			return nil // recent enough, or being refreshed: serve what is sealed
		}
		s.idx.refreshMu.Unlock()
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	if err := s.idx.refresh(rctx, now); err != nil {
		if built && !newQuery {
			s.log.Warn("TAXII index refresh failed; serving the last index", "err", err)
			return nil
		}
		return err
	}
	return nil
}

// Handler returns the API's HTTP handler: TAXII under /taxii2/, metrics at /metrics.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// responseWriter records the status for metrics and logs.
type responseWriter struct {
	http.ResponseWriter
	code int
}

func (w *responseWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// route is a parsed request path.
type route struct {
	endpoint string // metrics label and dispatch key
	coll     colKind
	object   string
}

// Endpoint names (also the metrics label).
const (
	epDiscovery   = "discovery"
	epAPIRoot     = "api_root"
	epCollections = "collections"
	epCollection  = "collection"
	epStatus      = "status"
	epMetrics     = "metrics"
	epOther       = "other"
)

// parseRoute maps a path onto an endpoint. The trailing slash TAXII requires is
// optional (clients configured without it still work). ok is false for paths that are
// not the API's; found is false for TAXII paths naming something that does not exist.
func (s *Server) parseRoute(path string) (r route, found bool) {
	if path == "/metrics" {
		return route{endpoint: epMetrics}, s.cfg.Metrics != nil
	}
	rest, ok := strings.CutPrefix(path, "/taxii2")
	if !ok || (rest != "" && rest[0] != '/') {
		return route{endpoint: epOther}, false
	}
	rest = strings.TrimSuffix(strings.TrimPrefix(rest, "/"), "/")
	if rest == "" {
		return route{endpoint: epDiscovery}, true
	}
	seg := strings.Split(rest, "/")
	if seg[0] != s.cfg.APIRoot {
		return route{endpoint: epOther}, false
	}
	seg = seg[1:]
	switch {
	case len(seg) == 0:
		return route{endpoint: epAPIRoot}, true
	case seg[0] == "status" && len(seg) == 2:
		return route{endpoint: epStatus}, false // no status resources: nothing is ever posted
	case seg[0] != "collections":
		return route{endpoint: epOther}, false
	case len(seg) == 1:
		return route{endpoint: epCollections}, true
	}
	coll := -1
	for i, c := range collectionInfos {
		if seg[1] == c.ID || seg[1] == c.Alias {
			coll = i
		}
	}
	if coll < 0 {
		return route{endpoint: epCollection}, false
	}
	r.coll = colKind(coll)
	switch {
	case len(seg) == 2:
		r.endpoint = epCollection
	case len(seg) == 3 && seg[2] == "manifest":
		r.endpoint = epManifest
	case len(seg) == 3 && seg[2] == "objects":
		r.endpoint = epObjects
	case len(seg) == 4 && seg[2] == "objects" && validID(seg[3]):
		r.endpoint, r.object = epObject, seg[3]
	case len(seg) == 5 && seg[2] == "objects" && seg[4] == "versions" && validID(seg[3]):
		r.endpoint, r.object = epVersions, seg[3]
	default:
		return route{endpoint: epOther}, false
	}
	return r, true
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w}
	rt, found := s.parseRoute(r.URL.Path)
	defer func() {
		s.cfg.Metrics.TAXIIRequest(rt.endpoint, rw.code, time.Since(start))
		if rw.code >= 500 {
			s.log.Warn("API request failed", "endpoint", rt.endpoint, "code", rw.code, "path", r.URL.Path)
		} else {
			s.log.Debug("API request", "endpoint", rt.endpoint, "code", rw.code, "path", r.URL.Path)
		}
	}()
	r.Body = http.MaxBytesReader(rw, r.Body, maxContentLength)
	h := rw.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")

	if rt.endpoint == epMetrics && found {
		if !s.cfg.MetricsNoAuth {
			if _, ok := s.authenticate(r); !ok {
				s.challenge(rw)
				http.Error(rw, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		s.cfg.Metrics.Handler().ServeHTTP(rw, r)
		return
	}
	if (rt.endpoint == epOther && !strings.HasPrefix(r.URL.Path, "/taxii2")) || rt.endpoint == epMetrics {
		http.NotFound(rw, r)
		return
	}
	principal, ok := s.authenticate(r)
	if !ok {
		s.challenge(rw)
		s.fail(rw, http.StatusUnauthorized, "Authentication required", "Use HTTP Basic or an API key (Authorization: Bearer <key> or Token <key>).")
		return
	}
	if !acceptable(r.Header.Values("Accept")) {
		s.fail(rw, http.StatusNotAcceptable, "Not acceptable", "This server answers "+TAXIIMediaType+" only.")
		return
	}
	if !found {
		s.fail(rw, http.StatusNotFound, "Not found", "No such TAXII resource (the API root is "+s.root+").")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if (rt.endpoint == epObjects && r.Method == http.MethodPost) || (rt.endpoint == epObject && r.Method == http.MethodDelete) {
			s.fail(rw, http.StatusForbidden, "Forbidden", "The collection is read-only (can_write is false).")
			return
		}
		rw.Header().Set("Allow", "GET, HEAD")
		s.fail(rw, http.StatusMethodNotAllowed, "Method not allowed", "Only GET is supported.")
		return
	}
	switch rt.endpoint {
	case epDiscovery:
		s.writeJSON(rw, s.discovery())
	case epAPIRoot:
		s.writeJSON(rw, map[string]any{
			"title": s.cfg.Title, "description": s.cfg.Description,
			"versions": []string{TAXIIMediaType}, "max_content_length": maxContentLength,
		})
	case epCollections:
		cols := make([]map[string]any, 0, numCollections)
		for i := range collectionInfos {
			cols = append(cols, collectionResource(colKind(i)))
		}
		s.writeJSON(rw, map[string]any{"collections": cols})
	case epCollection:
		s.writeJSON(rw, collectionResource(rt.coll))
	default:
		s.serveFiltered(rw, r, rt, principal)
	}
}

func (s *Server) discovery() map[string]any {
	d := map[string]any{
		"title":       s.cfg.Title,
		"description": s.cfg.Description,
		"default":     s.root,
		"api_roots":   []string{s.root},
	}
	if s.cfg.Contact != "" {
		d["contact"] = s.cfg.Contact
	}
	return d
}

func collectionResource(c colKind) map[string]any {
	info := collectionInfos[c]
	return map[string]any{
		"id": info.ID, "title": info.Title, "description": info.Description, "alias": info.Alias,
		"can_read": true, "can_write": false, "media_types": []string{STIXMediaType},
	}
}

// acceptable reports whether an Accept header allows a TAXII 2.1 answer: a TAXII or
// STIX media range without a version or with version 2.1, or */* or application/*. A
// request without Accept is answered (HTTP: no Accept means anything).
func acceptable(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			switch mt {
			case "*/*", "application/*":
				return true
			case "application/taxii+json", "application/stix+json":
				if ver, ok := params["version"]; !ok || ver == "2.1" {
					return true
				}
			}
		}
	}
	return false
}

// authenticate checks the Authorization header. Without configured credentials every
// request is the anonymous principal.
func (s *Server) authenticate(r *http.Request) (string, bool) {
	if !s.HasCredentials() {
		return "anonymous", true
	}
	auth := r.Header.Get("Authorization")
	scheme, value, _ := strings.Cut(auth, " ")
	value = strings.TrimSpace(value)
	switch strings.ToLower(scheme) {
	case "basic":
		user, pass, ok := r.BasicAuth()
		if !ok {
			return "", false
		}
		uh, ph := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
		match := ""
		for _, c := range s.users { // every entry is compared: no early exit
			if subtle.ConstantTimeCompare(uh[:], c.user[:])&subtle.ConstantTimeCompare(ph[:], c.pass[:]) == 1 {
				match = c.name
			}
		}
		if match == "" {
			return "", false
		}
		return "user:" + match, true
	case "bearer", "token":
		th := sha256.Sum256([]byte(value))
		found := -1
		for i, t := range s.tokens {
			if subtle.ConstantTimeCompare(th[:], t[:]) == 1 {
				found = i
			}
		}
		if found < 0 {
			return "", false
		}
		return "token:" + strconv.Itoa(found), true
	}
	return "", false
}

func (s *Server) challenge(w http.ResponseWriter) {
	if len(s.users) > 0 {
		w.Header().Add("WWW-Authenticate", `Basic realm="pcapot TAXII", charset="UTF-8"`)
	}
	if len(s.tokens) > 0 {
		w.Header().Add("WWW-Authenticate", `Bearer realm="pcapot TAXII"`)
	}
}

func (s *Server) writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, "Internal error", "")
		return
	}
	w.Header().Set("Content-Type", TAXIIMediaType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// fail answers with a TAXII error message.
func (s *Server) fail(w http.ResponseWriter, code int, title, description string) {
	e := map[string]any{"title": title, "http_status": strconv.Itoa(code)}
	if description != "" {
		e["description"] = description
	}
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", TAXIIMediaType)
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// CheckListen enforces the management API's rule: without credentials it listens on
// loopback only. addr is host:port; an empty host means every interface.
func CheckListen(addr string, hasCredentials bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("api: listen address %q: %w", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("api: listen address %q: bad port", addr)
	}
	if hasCredentials || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("api: refusing to listen on %q without credentials: set --api-user/--api-password or --api-token, or listen on 127.0.0.1", addr)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ListenConfig says where and how the API listens.
type ListenConfig struct {
	// Addr is host:port, e.g. "127.0.0.1:8080".
	Addr string
	// CertFile and KeyFile enable TLS (1.2 or newer); both or neither.
	CertFile, KeyFile string
}

// NewHTTPServer returns an http.Server for h with the API's timeouts and limits.
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// ListenAndServe serves the API on lc.Addr until ctx is done, then shuts down
// gracefully (5 s). It refuses a non-loopback address when the server has no
// credentials (CheckListen), and loads the TLS key pair before listening.
func (s *Server) ListenAndServe(ctx context.Context, lc ListenConfig) error {
	if err := CheckListen(lc.Addr, s.HasCredentials()); err != nil {
		return err
	}
	var tlsCfg *tls.Config
	switch {
	case lc.CertFile != "" && lc.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(lc.CertFile, lc.KeyFile)
		if err != nil {
			return fmt.Errorf("api: TLS key pair: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	case lc.CertFile != "" || lc.KeyFile != "":
		return errors.New("api: TLS needs both a certificate and a key file")
	}
	ln, err := net.Listen("tcp", lc.Addr)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	return s.Serve(ctx, ln, tlsCfg)
}

// Serve serves the API on ln (with TLS when tlsCfg is set) until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	if tlsCfg == nil && s.HasCredentials() && !isLoopback(host) {
		s.log.Warn("management API credentials travel in clear text: configure a TLS certificate", "addr", ln.Addr().String())
	}
	srv := NewHTTPServer(s.Handler(), s.log)
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	s.log.Info("management API listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil,
		"taxii", s.root, "metrics", s.cfg.Metrics != nil)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: serve: %w", err)
	}
	return nil
}

// LoadOrCreateKey returns the 32-byte next-token key stored in path, creating it (mode
// 0600) with random bytes when the file does not exist. Keep the file with the
// sensor's state so that next tokens survive restarts.
func LoadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < 32 {
			return nil, fmt.Errorf("api: next-token key %s: %d bytes, want 32", path, len(b))
		}
		return b[:32], nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("api: next-token key: %w", err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("api: next-token key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // created concurrently: use that one
		return LoadOrCreateKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("api: next-token key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("api: next-token key: %w", err)
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return nil, fmt.Errorf("api: next-token key: %w", err)
	}
	return key, nil
}
