// Package s3test runs an in-process S3 (gofakes3) for tests and returns a
// store configured for it, as MinIO would be.
package s3test

import (
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/objstore"
)

// Start runs an empty in-memory S3 until the test ends and returns its
// endpoint, for a storage.endpoint setting.
func Start(tb testing.TB) string {
	tb.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	tb.Cleanup(srv.Close)
	return srv.URL
}

// New starts an empty in-memory S3 for the test and returns a store on it.
func New(tb testing.TB) *objstore.Store {
	tb.Helper()
	cfg, err := config.Parse([]byte("storage:\n  endpoint: " + Start(tb) + "\n  bucket: sluice-test\n"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Env.S3AccessKey, cfg.Env.S3SecretKey = "test", "test"
	return objstore.New(cfg)
}
