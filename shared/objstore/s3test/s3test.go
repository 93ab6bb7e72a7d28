// Package s3test runs an in-process S3 (gofakes3) for tests and returns a
// store configured for it, as MinIO would be.
package s3test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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

// NewAt returns a store on a running S3 endpoint and bucket.
func NewAt(tb testing.TB, endpoint, bucket string) *objstore.Store {
	tb.Helper()
	cfg, err := config.Parse([]byte("storage:\n  endpoint: " + endpoint + "\n  bucket: " + bucket + "\n"))
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Env.S3AccessKey, cfg.Env.S3SecretKey = "test", "test"
	return objstore.New(cfg)
}

// Outage is an in-memory S3 that can be taken down: while Down is set it
// answers every request 503, as an unreachable or failing store would, and
// records the paths it refused.
type Outage struct {
	URL  string
	Down atomic.Bool

	mu      sync.Mutex
	refused []string
}

// StartOutage runs an in-memory S3 with an outage switch until the test ends.
func StartOutage(tb testing.TB) *Outage {
	tb.Helper()
	o := &Outage{}
	s3 := gofakes3.New(s3mem.New()).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.Down.Load() {
			o.mu.Lock()
			o.refused = append(o.refused, r.Method+" "+r.URL.Path)
			o.mu.Unlock()
			http.Error(w, "<Error><Code>ServiceUnavailable</Code><Message>down for the test</Message></Error>", http.StatusServiceUnavailable)
			return
		}
		s3.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	o.URL = srv.URL
	return o
}

// Refused reports how many requests whose method and path contain sub
// were refused while the store was down.
func (o *Outage) Refused(sub string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, r := range o.refused {
		if strings.Contains(r, sub) {
			n++
		}
	}
	return n
}
