package storage

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// guardFS keeps filesystem errors away from Pebble's panics. Pebble treats
// a failed write to its write-ahead log or MANIFEST as fatal: it panics,
// with its commit mutex held, and every later commit waits on that mutex
// for ever. guardFS sits under Pebble and, when a write-side operation
// fails because the disk is full or the directory is no longer writable,
// holds that operation back and retries it until it goes through, while
// health makes the store refuse new writes. Freeing space or giving the
// permission back lets the held operation finish, and Pebble carries on
// as if the disk had been slow.
//
// A failed fsync is not retried (after a failed fsync the kernel may have
// dropped the dirty pages, so a second fsync proves nothing — PostgreSQL's
// "fsyncgate"), nor is any other I/O error: the operation is held for good
// and the store is marked failed, so the process can exit cleanly and
// replay its write-ahead log at the next start.
//
// Reads and errors that Pebble handles (a file that does not exist, say)
// pass through unchanged.
type guardFS struct {
	vfs.FS
	h *health
}

// retryBackoff bounds the wait between two attempts of a held operation.
var retryBackoff = [2]time.Duration{100 * time.Millisecond, 2 * time.Second}

// resourceError reports whether err clears when an operator fixes the
// disk: space, quota, permission, a read-only remount.
func resourceError(err error) bool {
	for _, e := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EACCES, syscall.EPERM, syscall.EROFS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ioError reports whether err is the device failing.
func ioError(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.ENODEV)
}

// do runs fn, holding it back on a resource error until it succeeds; a
// fatal error parks the goroutine. fn is called again as is: operations
// that make progress (a partial write) keep it in their closure.
func (g *guardFS) do(op, path string, fn func() error) error {
	err := fn()
	if err == nil {
		return nil
	}
	if ioError(err) {
		g.h.die(&FaultError{Op: op, Path: path, Err: err})
		park()
	}
	if !resourceError(err) {
		return err
	}
	g.h.hold(&FaultError{Op: op, Path: path, Err: err})
	defer g.h.release()
	wait := retryBackoff[0]
	for {
		time.Sleep(wait)
		wait = min(2*wait, retryBackoff[1])
		err = fn()
		switch {
		case err == nil:
			return nil
		case ioError(err):
			g.h.die(&FaultError{Op: op, Path: path, Err: err})
			park()
		case !resourceError(err):
			return err
		}
		g.h.still(&FaultError{Op: op, Path: path, Err: err})
	}
}

// sync runs a sync: any error is fatal.
func (g *guardFS) sync(op, path string, fn func() error) error {
	if err := fn(); err != nil {
		g.h.die(&FaultError{Op: op, Path: path, Err: err})
		park()
	}
	return nil
}

func (g *guardFS) wrap(f vfs.File, path string) vfs.File {
	if f == nil {
		return nil
	}
	return &guardFile{File: f, g: g, path: path}
}

func (g *guardFS) Create(name string, category vfs.DiskWriteCategory) (f vfs.File, err error) {
	err = g.do("create", name, func() (err error) {
		f, err = g.FS.Create(name, category)
		return err
	})
	return g.wrap(f, name), err
}

func (g *guardFS) Link(oldname, newname string) error {
	return g.do("link", newname, func() error { return g.FS.Link(oldname, newname) })
}

func (g *guardFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := g.FS.Open(name, opts...)
	return g.wrap(f, name), err
}

func (g *guardFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (f vfs.File, err error) {
	err = g.do("open", name, func() (err error) {
		f, err = g.FS.OpenReadWrite(name, category, opts...)
		return err
	})
	return g.wrap(f, name), err
}

func (g *guardFS) OpenDir(name string) (vfs.File, error) {
	f, err := g.FS.OpenDir(name)
	return g.wrap(f, name), err
}

func (g *guardFS) Remove(name string) error {
	return g.do("remove", name, func() error { return g.FS.Remove(name) })
}

func (g *guardFS) RemoveAll(name string) error {
	return g.do("remove", name, func() error { return g.FS.RemoveAll(name) })
}

func (g *guardFS) Rename(oldname, newname string) error {
	return g.do("rename", newname, func() error { return g.FS.Rename(oldname, newname) })
}

func (g *guardFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (f vfs.File, err error) {
	err = g.do("create", newname, func() (err error) {
		f, err = g.FS.ReuseForWrite(oldname, newname, category)
		return err
	})
	return g.wrap(f, newname), err
}

func (g *guardFS) MkdirAll(dir string, perm os.FileMode) error {
	return g.do("mkdir", dir, func() error { return g.FS.MkdirAll(dir, perm) })
}

func (g *guardFS) Lock(name string) (io.Closer, error) { return g.FS.Lock(name) }

func (g *guardFS) Unwrap() vfs.FS { return g.FS }

// guardFile guards the writes and syncs of one file.
type guardFile struct {
	vfs.File
	g    *guardFS
	path string
}

func (f *guardFile) Write(p []byte) (int, error) {
	n := 0
	err := f.g.do("write", f.path, func() error {
		m, err := f.File.Write(p[n:])
		n += m
		return err
	})
	return n, err
}

func (f *guardFile) WriteAt(p []byte, off int64) (int, error) {
	n := 0
	err := f.g.do("write", f.path, func() error {
		m, err := f.File.WriteAt(p[n:], off+int64(n))
		n += m
		return err
	})
	return n, err
}

func (f *guardFile) Sync() error {
	return f.g.sync("sync", f.path, f.File.Sync)
}

func (f *guardFile) SyncData() error {
	return f.g.sync("sync", f.path, f.File.SyncData)
}

func (f *guardFile) SyncTo(length int64) (fullSync bool, err error) {
	err = f.g.sync("sync", f.path, func() (err error) {
		fullSync, err = f.File.SyncTo(length)
		return err
	})
	return fullSync, err
}
