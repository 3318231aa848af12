package integrity

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// errChange is the error of an operation that would change the checked
// directory.
var errChange = errors.New("integrity: the check changes nothing")

// readOnlyFS is the filesystem Check reads through: every operation that
// would change the directory fails, and locking a directory without a
// LOCK file (a backup) does not create one.
type readOnlyFS struct{ vfs.FS }

func (readOnlyFS) Create(name string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, fmt.Errorf("create %s: %w", name, errChange)
}
func (readOnlyFS) Link(oldname, _ string) error { return fmt.Errorf("link %s: %w", oldname, errChange) }
func (readOnlyFS) OpenReadWrite(name string, _ vfs.DiskWriteCategory, _ ...vfs.OpenOption) (vfs.File, error) {
	return nil, fmt.Errorf("open %s for writing: %w", name, errChange)
}
func (readOnlyFS) Remove(name string) error    { return fmt.Errorf("remove %s: %w", name, errChange) }
func (readOnlyFS) RemoveAll(name string) error { return fmt.Errorf("remove %s: %w", name, errChange) }
func (readOnlyFS) Rename(oldname, _ string) error {
	return fmt.Errorf("rename %s: %w", oldname, errChange)
}
func (readOnlyFS) ReuseForWrite(oldname, _ string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, fmt.Errorf("reuse %s: %w", oldname, errChange)
}
func (readOnlyFS) MkdirAll(dir string, _ os.FileMode) error {
	return fmt.Errorf("create %s: %w", dir, errChange)
}

// Lock locks an existing LOCK file, so that a running levitated is
// noticed; a missing one is not created.
func (fs readOnlyFS) Lock(name string) (io.Closer, error) {
	if _, err := fs.FS.Stat(name); errors.Is(err, os.ErrNotExist) {
		return io.NopCloser(nil), nil
	}
	return fs.FS.Lock(name)
}

func (fs readOnlyFS) Unwrap() vfs.FS { return fs.FS }
