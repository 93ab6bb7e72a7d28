// Package backup dumps PostgreSQL (the system of record) to S3-compatible
// storage and restores it: pg_dump's custom format, named by UTC time so the
// newest sorts last, with its SHA-256 kept beside it and checked before a
// restore touches the database.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/postgres"
)

// shaKey is the object metadata key holding the dump's SHA-256.
const shaKey = "sha256"

// Backup is one stored dump.
type Backup struct {
	Key    string
	Size   int64
	SHA256 string
}

// target splits a database URL into what libpq accepts and the schema to
// limit the dump to: pgx's search_path parameter (one schema per test, or a
// deployment sharing a database) is not a libpq parameter.
func target(dbURL string) (conn, schema string, err error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", "", errors.New("backup: the database URL does not parse")
	}
	q := u.Query()
	schema = q.Get("search_path")
	q.Del("search_path")
	u.RawQuery = postgres.EncodeQuery(q) // a space as %20, as libpq reads it
	return u.String(), schema, nil
}

// Dump runs pg_dump and stores the result under prefix as <UTC time>.dump.
func Dump(ctx context.Context, dbURL string, store *objstore.Store, prefix string, now time.Time) (Backup, error) {
	conn, schema, err := target(dbURL)
	if err != nil {
		return Backup{}, err
	}
	tmp, err := os.MkdirTemp("", "sluice-backup-")
	if err != nil {
		return Backup{}, err
	}
	defer os.RemoveAll(tmp)
	file := filepath.Join(tmp, "db.dump")
	args := []string{"--format=custom", "--no-owner", "--no-privileges", "--file", file}
	if schema != "" {
		args = append(args, "--schema", schema)
	}
	if err := run(ctx, "pg_dump", append(args, "--dbname", conn)...); err != nil {
		return Backup{}, err
	}
	f, err := os.Open(file)
	if err != nil {
		return Backup{}, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return Backup{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Backup{}, err
	}
	b := Backup{Key: prefix + now.UTC().Format("20060102T150405.000Z") + ".dump", Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
	if err := store.EnsureBucket(ctx); err != nil {
		return Backup{}, err
	}
	return b, store.Put(ctx, b.Key, f, map[string]string{shaKey: b.SHA256})
}

// Latest returns the newest backup's key under prefix.
func Latest(ctx context.Context, store *objstore.Store, prefix string) (string, error) {
	objs, err := store.List(ctx, prefix)
	if err != nil {
		return "", err
	}
	for i := len(objs) - 1; i >= 0; i-- {
		if strings.HasSuffix(objs[i].Key, ".dump") {
			return objs[i].Key, nil
		}
	}
	return "", fmt.Errorf("backup: no backups under %s", prefix)
}

// Restore downloads key, checks its SHA-256 and restores it with pg_restore
// in one transaction: the objects it holds are dropped and recreated, so
// either the whole backup is in place or nothing changed.
func Restore(ctx context.Context, dbURL string, store *objstore.Store, key string) error {
	conn, _, err := target(dbURL)
	if err != nil {
		return err
	}
	body, meta, err := store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer body.Close()
	tmp, err := os.MkdirTemp("", "sluice-restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	file := filepath.Join(tmp, "db.dump")
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup: download %s: %w", key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); meta[shaKey] == "" || got != meta[shaKey] {
		return fmt.Errorf("backup: %s: SHA-256 %s does not match the recorded %q; not restoring", key, got, meta[shaKey])
	}
	return run(ctx, "pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
		"--single-transaction", "--exit-on-error", "--dbname", conn, file)
}

// run runs a PostgreSQL client tool; its output (never the URL) goes into
// the error.
func run(ctx context.Context, tool string, args ...string) error {
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("backup: %s: %w: %s", tool, err, strings.TrimSpace(string(out)))
	}
	return nil
}
