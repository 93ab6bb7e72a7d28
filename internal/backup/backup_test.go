package backup_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/backup"
	"github.com/sluice-ai/sluice/shared/objstore/s3test"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestDumpAndRestore loses the users table's rows, then restores them from
// the newest backup; a tampered backup is refused before the database is
// touched.
func TestDumpAndRestore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := s3test.New(t)
	// An options parameter with a space, as a DATABASE_URL may carry: the
	// URL handed to pg_dump and pg_restore must keep it %20-encoded (libpq
	// reads a + as itself).
	dbURL := pgtest.NewURL(t) + "&options=-c%20statement_timeout%3D600000"
	db, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := db.UpsertUser(ctx, "dr@example.com", sluice.TierPro, sluice.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	old, err := backup.Dump(ctx, dbURL, store, "backups/", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Dump(ctx, dbURL, store, "backups/", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if b.Size == 0 || len(b.SHA256) != 64 || !strings.HasPrefix(b.Key, "backups/") {
		t.Fatalf("backup %+v", b)
	}
	latest, err := backup.Latest(ctx, store, "backups/")
	if err != nil || latest != b.Key || latest == old.Key {
		t.Fatalf("latest = %q (%v), want %q", latest, err, b.Key)
	}

	// The disaster: every user is gone.
	if _, err := db.Pool.Exec(ctx, "TRUNCATE users CASCADE"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// A tampered copy is refused.
	if err := store.Put(ctx, "backups/zz-tampered.dump", bytes.NewReader([]byte("not a dump")), map[string]string{"sha256": b.SHA256}); err != nil {
		t.Fatal(err)
	}
	if err := backup.Restore(ctx, dbURL, store, "backups/zz-tampered.dump"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("tampered backup: %v", err)
	}

	if err := backup.Restore(ctx, dbURL, store, latest); err != nil {
		t.Fatal(err)
	}
	db2, err := postgres.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	got, err := db2.UpsertUser(ctx, "dr@example.com", sluice.TierFree, sluice.RoleUser)
	if err != nil || got.ID != u.ID || got.Tier != sluice.TierPro {
		t.Fatalf("after restore: %+v (%v), want the original user %s on pro", got, err, u.ID)
	}
}
