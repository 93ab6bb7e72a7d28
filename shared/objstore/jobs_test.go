package objstore_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/objstore/s3test"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func jobsOn(t *testing.T, store *objstore.Store) *objstore.Jobs {
	t.Helper()
	cfg, err := config.Parse([]byte("storage:\n  jobs:\n    enabled: true\n    result_threshold_bytes: 10\n    input_threshold_bytes: 20\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return objstore.NewJobsOn(store, cfg.Storage.Jobs)
}

// TestJobsPayloads: thresholds, the write/read round trip under
// <prefix><user>/<job>/, reads confined to the prefix, erasure of one
// user's objects, and the retention sweep.
func TestJobsPayloads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := s3test.New(t)
	j := jobsOn(t, store)

	var off *objstore.Jobs // storage.jobs.enabled off
	if off.ResultOver(1<<30) || off.InputOver(1<<30) {
		t.Fatal("a disabled store took a payload")
	}
	if j.ResultOver(10) || !j.ResultOver(11) || j.InputOver(20) || !j.InputOver(21) {
		t.Fatal("thresholds: a payload over the threshold goes to the store, one at it stays")
	}

	body := bytes.Repeat([]byte("x"), 100)
	rk, err := j.PutResult(ctx, "u1", "job_1", body)
	if err != nil {
		t.Fatal(err)
	}
	ik, err := j.PutInput(ctx, "u1", "job_1", []byte(`{"in":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if rk != "jobs/u1/job_1/result.json" || ik != "jobs/u1/job_1/input.json" {
		t.Fatalf("keys %q %q", rk, ik)
	}
	got, err := j.Fetch(ctx, rk)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("fetch: %v %q", err, got)
	}
	if _, err := j.Fetch(ctx, "jobs/u1/job_2/result.json"); sluice.AsError(err).Kind != sluice.KindNotFound {
		t.Fatalf("missing object: %v, want not found", err)
	}
	if err := store.Put(ctx, "backups/secret", bytes.NewReader([]byte("s")), nil); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"backups/secret", "jobs/../backups/secret"} {
		if _, err := j.Fetch(ctx, k); err == nil {
			t.Fatalf("read %s outside the job prefix", k)
		}
	}

	if _, err := j.PutResult(ctx, "u2", "job_3", body); err != nil {
		t.Fatal(err)
	}
	if n, err := j.EraseUser(ctx, "u1"); err != nil || n != 2 {
		t.Fatalf("erase u1: %d %v, want 2", n, err)
	}
	left, _ := store.List(ctx, "jobs/")
	if len(left) != 1 || !strings.HasPrefix(left[0].Key, "jobs/u2/") {
		t.Fatalf("after erasing u1: %+v", left)
	}

	// Retention: nothing is young enough to go now; all of it after the retention.
	if n, err := j.Sweep(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("sweep now: %d %v", n, err)
	}
	ret := 24*time.Hour + time.Hour + time.Hour // result_ttl + max(async_deadline, request_timeout) + 1h
	if n, err := j.Sweep(ctx, time.Now().Add(ret+time.Minute)); err != nil || n != 1 {
		t.Fatalf("sweep after retention: %d %v, want 1", n, err)
	}
	if left, _ := store.List(ctx, ""); len(left) != 1 || left[0].Key != "backups/secret" {
		t.Fatalf("the sweep must touch only job objects: %+v", left)
	}
}
