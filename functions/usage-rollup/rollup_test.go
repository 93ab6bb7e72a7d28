package rollup

import (
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestRunScheduled counts what is recorded, in a schema of its own. It is an
// internal test: in the shrinkwrapped build context this package is the
// module root, so it cannot import itself by its repository path.
func TestRunScheduled(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	rep, err := RunScheduled(ctx, db)
	if err != nil || rep.Rows != 0 || rep.Tokens != 0 {
		t.Fatalf("empty database: %+v, %v", rep, err)
	}
	u, err := db.UpsertUser(ctx, "rollup@example.com", sluice.TierFree, sluice.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	evs := []sluice.UsageEvent{
		{JobID: "job-a", UserID: u.ID, Model: "m", Status: sluice.JobSucceeded, Usage: sluice.Usage{PromptTokens: 3, CompletionTokens: 4}, CreatedAt: now, EndedAt: now},
		{JobID: "job-b", UserID: u.ID, Model: "m", Status: sluice.JobSucceeded, Usage: sluice.Usage{PromptTokens: 10, CompletionTokens: 1}, CreatedAt: now, EndedAt: now},
	}
	if _, err := db.InsertUsage(ctx, evs); err != nil {
		t.Fatal(err)
	}
	rep, err = RunScheduled(ctx, db)
	if err != nil || rep.Rows != 2 || rep.Tokens != 18 || rep.Object != "usage.scheduled_run" {
		t.Fatalf("got %+v, %v; want 2 rows, 18 tokens", rep, err)
	}
}
