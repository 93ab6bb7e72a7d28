package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/sluice-ai/sluice/internal/backup"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/objstore"
)

func init() {
	commands["backup"] = command{
		usage: `backup                               pg_dump DATABASE_URL to storage.bucket (S3/MinIO)`,
		run:   runBackup,
	}
	commands["restore"] = command{
		usage: `restore --yes [--key K]              restore the newest (or K) backup into DATABASE_URL`,
		run:   runRestore,
	}
}

// storageEnv loads the configuration a backup or restore needs.
func storageEnv(getenv func(string) string) (*config.Config, *objstore.Store, error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Env.DatabaseURL == "" {
		return nil, nil, errors.New("DATABASE_URL is not set")
	}
	return cfg, objstore.New(cfg), nil
}

func runBackup(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	cfg, store, err := storageEnv(e.getenv)
	if err != nil {
		return err
	}
	b, err := backup.Dump(ctx, cfg.Env.DatabaseURL, store, cfg.Storage.BackupPrefix, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "s3://%s/%s\t%d bytes\tsha256 %s\n", cfg.Storage.Bucket, b.Key, b.Size, b.SHA256)
	return nil
}

func runRestore(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	key := fs.String("key", "", "backup object key; default the newest under storage.backup_prefix")
	yes := fs.Bool("yes", false, "confirm: the backup's tables replace the database's")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if !*yes {
		return errors.New("restore replaces the database's tables with the backup's; pass --yes to go ahead")
	}
	cfg, store, err := storageEnv(e.getenv)
	if err != nil {
		return err
	}
	if *key == "" {
		if *key, err = backup.Latest(ctx, store, cfg.Storage.BackupPrefix); err != nil {
			return err
		}
	}
	if err := backup.Restore(ctx, cfg.Env.DatabaseURL, store, *key); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "restored s3://%s/%s\n", cfg.Storage.Bucket, *key)
	return nil
}
