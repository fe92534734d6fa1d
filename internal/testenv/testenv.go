// Package testenv decides whether tests that need real parts (root, external tools, a
// MinIO server) run. Locally a missing part skips the test with a clear message; under
// the project's test command (PCAPOT_INTEGRATION=1, set by scripts/test.sh) or in CI a
// missing part fails the test, so a green run always means the real parts were used.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing parts must fail tests instead of skipping them.
func Strict() bool {
	return os.Getenv("PCAPOT_INTEGRATION") == "1" || os.Getenv("CI") == "true"
}

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (skipped; scripts/test.sh provides it)", args...)
}

// RequireRoot skips (or fails under Strict) unless the test runs as root, which
// packet capture and network namespaces need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "test needs root (CAP_NET_RAW/CAP_NET_ADMIN)")
	}
}

// LookPath returns the path of an external program the test drives.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "test needs %s in PATH", name)
	}
	return p
}

// S3 is a test S3 endpoint (a real MinIO server started by scripts/test.sh).
type S3 struct {
	Endpoint, AccessKey, SecretKey string
}

// RequireS3 returns the MinIO server given by PCAPOT_TEST_S3_ENDPOINT,
// PCAPOT_TEST_S3_ACCESS_KEY and PCAPOT_TEST_S3_SECRET_KEY.
func RequireS3(t testing.TB) S3 {
	t.Helper()
	s := S3{
		Endpoint:  os.Getenv("PCAPOT_TEST_S3_ENDPOINT"),
		AccessKey: os.Getenv("PCAPOT_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("PCAPOT_TEST_S3_SECRET_KEY"),
	}
	if s.Endpoint == "" || s.AccessKey == "" || s.SecretKey == "" {
		missing(t, "test needs a MinIO server (PCAPOT_TEST_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY)")
	}
	return s
}

// Python returns Debian's python3 (which has the python3-* packages installed), not a
// python3 that another toolchain put first in PATH.
func Python(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return LookPath(t, "python3")
}

// Require skips (or fails under Strict) unless ok, naming what is missing.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		missing(t, format, args...)
	}
}

// MinIOBinary returns the MinIO server binary that fault tests start and stop
// themselves (PCAPOT_TEST_MINIO_BIN, set by scripts/test.sh).
func MinIOBinary(t testing.TB) string {
	t.Helper()
	p := os.Getenv("PCAPOT_TEST_MINIO_BIN")
	if p == "" {
		missing(t, "test needs a MinIO server binary (PCAPOT_TEST_MINIO_BIN)")
	}
	return p
}
