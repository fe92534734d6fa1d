//go:build !unix

package incidents

import (
	"os"
	"path/filepath"
)

// lockDir opens dir/lock. Without flock the spool is not protected against a second
// uploader; pcapot runs on Linux.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
}
