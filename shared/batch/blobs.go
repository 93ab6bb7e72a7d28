package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Blobs holds files' content: the object store (S3, MinIO) in a
// deployment, a local folder for `sluice dev` (batch.files_dir). Keys are
// "<user id>/<file id>"; a Put replaces what the key held, so a driver that
// writes a batch's output again after a crash writes the same object.
type Blobs interface {
	// Put stores r's content (seekable, so its length is known) under key.
	Put(ctx context.Context, key string, r io.ReadSeeker) error
	// Get opens key's content; sluice.ErrNotFound-kind if it is absent.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// OpenBlobs returns the configured content store: a folder when
// batch.files_dir is set, else the storage bucket under batch.files_prefix.
func OpenBlobs(cfg *config.Config) Blobs {
	if cfg.Batch.FilesDir != "" {
		return Disk{Dir: cfg.Batch.FilesDir}
	}
	return S3{Store: objstore.New(cfg), Prefix: cfg.Batch.FilesPrefix}
}

// Presigner is a Blobs store that can hand out an upload URL: a client
// PUTs the content straight to it (S3 does; a local folder does not).
type Presigner interface {
	PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// PresignPut returns a URL to PUT key's content to until ttl passes (Presigner).
func (s S3) PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error) {
	return s.Store.PresignPut(ctx, s.Prefix+key, ttl)
}

// BlobKey is a file's content key.
func BlobKey(userID, fileID string) string { return userID + "/" + fileID }

// S3 keeps content in an object store bucket under Prefix.
type S3 struct {
	Store  *objstore.Store
	Prefix string
}

// Put stores content (Blobs).
func (s S3) Put(ctx context.Context, key string, r io.ReadSeeker) error {
	if err := s.Store.Put(ctx, s.Prefix+key, r, nil); err != nil {
		return sluice.Unavailable("The file store is unavailable.", err)
	}
	return nil
}

// Get opens content (Blobs).
func (s S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, _, err := s.Store.Get(ctx, s.Prefix+key)
	if err != nil && sluice.AsError(err).Kind != sluice.KindNotFound {
		return nil, sluice.Unavailable("The file store is unavailable.", err)
	}
	return rc, err
}

// Delete removes content (Blobs).
func (s S3) Delete(ctx context.Context, key string) error { return s.Store.Delete(ctx, s.Prefix+key) }

// Disk keeps content in a local folder (the embedded default of `sluice
// dev`): one process, or several on one machine.
type Disk struct{ Dir string }

func (d Disk) path(key string) (string, error) {
	if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, "/") {
		return "", fmt.Errorf("batch: bad blob key %q", key)
	}
	return filepath.Join(d.Dir, filepath.FromSlash(key)), nil
}

// Put writes content to a temporary file and renames it into place, so a
// reader never sees half a file (Blobs).
func (d Disk) Put(_ context.Context, key string, r io.ReadSeeker) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// Get opens content (Blobs).
func (d Disk) Get(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound, "The file's content is gone.")
	}
	return f, err
}

// Delete removes content (Blobs).
func (d Disk) Delete(_ context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
