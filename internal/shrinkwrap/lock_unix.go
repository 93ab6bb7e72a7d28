//go:build unix

package shrinkwrap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockBuilds takes the build lock (see BuildCached), waiting for it while
// ctx lasts, and returns its release. The lock is the user's, as the Go
// build cache it guards is (both under the user's cache folder); where
// that folder cannot be written, builds go on without it.
func lockBuilds(ctx context.Context) (func(), error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return func() {}, nil
	}
	dir = filepath.Join(dir, "sluice")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() {}, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, "go-build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return func() {}, nil
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// Closing the file releases the lock, also when the process dies.
			return func() { f.Close() }, nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			f.Close()
			return nil, fmt.Errorf("shrinkwrap: build lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
