package objstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Jobs keeps large job payloads in the bucket: results over
// storage.jobs.result_threshold_bytes and async inputs over
// input_threshold_bytes. The job's Redis record then holds only the object's
// key. A nil *Jobs is "off": nothing is over a threshold, so every payload
// stays in Redis.
//
// Objects live under <prefix><user id>/<job id>/, so erasing a user deletes
// one folder, and they are deleted by Sweep once older than
// storage.jobs.retention (longer than the Redis record lives). An object
// whose job never recorded it (a worker that died between the write and the
// completion) is harmless and goes the same way.
type Jobs struct {
	store *Store
	cfg   config.JobStorage
}

// NewJobs returns the job payload store of cfg, or nil when
// storage.jobs.enabled is off.
func NewJobs(cfg *config.Config) *Jobs {
	if !cfg.Storage.Jobs.Enabled {
		return nil
	}
	return &Jobs{store: New(cfg), cfg: cfg.Storage.Jobs}
}

// NewJobsOn returns a job payload store on an existing store.
func NewJobsOn(store *Store, cfg config.JobStorage) *Jobs { return &Jobs{store: store, cfg: cfg} }

// EnsureBucket creates the bucket if it does not exist.
func (j *Jobs) EnsureBucket(ctx context.Context) error {
	if j == nil {
		return nil
	}
	return j.store.EnsureBucket(ctx)
}

// ResultOver reports whether a result of n bytes goes to the bucket.
func (j *Jobs) ResultOver(n int) bool { return j != nil && int64(n) > j.cfg.ResultThresholdBytes }

// InputOver reports whether an async input of n bytes goes to the bucket.
func (j *Jobs) InputOver(n int) bool { return j != nil && int64(n) > j.cfg.InputThresholdBytes }

func (j *Jobs) key(userID, jobID, name string) string {
	return j.cfg.Prefix + userID + "/" + jobID + "/" + name
}

// PutResult stores a job's result and returns its key. It is written before
// the job is recorded done, so a recorded key always names an object.
func (j *Jobs) PutResult(ctx context.Context, userID, jobID string, body []byte) (string, error) {
	return j.put(ctx, j.key(userID, jobID, "result.json"), userID, jobID, body)
}

// PutInput stores an async job's request body and returns its key.
func (j *Jobs) PutInput(ctx context.Context, userID, jobID string, body []byte) (string, error) {
	return j.put(ctx, j.key(userID, jobID, "input.json"), userID, jobID, body)
}

func (j *Jobs) put(ctx context.Context, key, userID, jobID string, body []byte) (string, error) {
	err := j.store.Put(ctx, key, bytes.NewReader(body), map[string]string{"sluice-user": userID, "sluice-job": jobID})
	if err != nil {
		return "", sluice.Unavailable("The object store is unavailable.", err)
	}
	return key, nil
}

// Fetch reads a payload by the key a job record holds. Only keys under the
// job prefix are read, whatever the record says.
func (j *Jobs) Fetch(ctx context.Context, key string) ([]byte, error) {
	if j == nil {
		return nil, sluice.Unavailable("The job's payload is in object storage, which is not configured here.", nil)
	}
	if !strings.HasPrefix(key, j.cfg.Prefix) || strings.Contains(key, "..") {
		return nil, fmt.Errorf("objstore: job object key %q is outside %q", key, j.cfg.Prefix)
	}
	rc, _, err := j.store.Get(ctx, key)
	if err != nil {
		if sluice.AsError(err).Kind == sluice.KindNotFound {
			return nil, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound, "The job's stored payload is no longer available.")
		}
		return nil, sluice.Unavailable("The object store is unavailable.", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, sluice.Unavailable("The object store is unavailable.", err)
	}
	return b, nil
}

// Delete removes a payload once nothing needs it (best effort: Sweep
// removes what is left).
func (j *Jobs) Delete(ctx context.Context, key string) error {
	if j == nil || key == "" || !strings.HasPrefix(key, j.cfg.Prefix) {
		return nil
	}
	return j.store.Delete(ctx, key)
}

// EraseUser deletes every job object of a user and returns how many.
func (j *Jobs) EraseUser(ctx context.Context, userID string) (int, error) {
	if j == nil || userID == "" {
		return 0, nil
	}
	objs, err := j.store.List(ctx, j.cfg.Prefix+userID+"/")
	if err != nil {
		return 0, err
	}
	for i, o := range objs {
		if err := j.store.Delete(ctx, o.Key); err != nil {
			return i, err
		}
	}
	return len(objs), nil
}

// Sweep deletes job objects last written before now - retention and
// returns how many. Any number of workers may sweep at once: deleting a
// deleted object succeeds.
func (j *Jobs) Sweep(ctx context.Context, now time.Time) (int, error) {
	if j == nil {
		return 0, nil
	}
	objs, err := j.store.List(ctx, j.cfg.Prefix)
	if err != nil {
		return 0, err
	}
	cut := now.Add(-j.cfg.Retention)
	n := 0
	for _, o := range objs {
		if o.LastModified.IsZero() || !o.LastModified.Before(cut) {
			continue
		}
		if err := j.store.Delete(ctx, o.Key); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
