package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-ai/sluice/internal/scratch"
)

// setup makes the drill's temporary folder (d.dir), builds gpuworker and
// sluice into it as deployed, and creates a fresh database (d.dbURL). The
// returned cleanup drops the database and removes the folder unless keep
// (a failed or -keep run leaves its logs and binaries).
func (d *drill) setup(ctx context.Context, name string) (cleanup func(keep bool), err error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	if d.dir, err = os.MkdirTemp("", name+"-"); err != nil {
		return nil, err
	}
	removeDir := func(keep bool) {
		if keep {
			d.logf("logs and binaries kept in %s", d.dir)
			return
		}
		os.RemoveAll(d.dir)
	}
	d.logf("building gpuworker and sluice")
	for _, b := range [][2]string{{"gpuworker", "./gpuworker"}, {"sluice", "./cmd/sluice"}} {
		if err := goBuild(ctx, root, filepath.Join(d.dir, b[0]), b[1]); err != nil {
			removeDir(true)
			return nil, err
		}
	}
	adminURL := scratch.FirstEnv("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "DRILL_DATABASE_URL", "TEST_DATABASE_URL")
	dbURL, dropDB, err := scratch.CreateDatabase(ctx, adminURL, strings.ReplaceAll(name, "-", "_")+"_")
	if err != nil {
		removeDir(true)
		return nil, err
	}
	d.dbURL = dbURL
	return func(keep bool) { dropDB(); removeDir(keep) }, nil
}
