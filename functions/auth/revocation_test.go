//go:build !shrinkwrap

package auth_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/functions/submit"
	"github.com/sluice-ai/sluice/shared/app"
)

// TestRevocationAcrossInstances revokes a key while requests flow through
// two submit instances (each with its own verifier cache) and measures how
// long each kept accepting it after the revoke call returned. Run with -v
// for the figure; the bound below only stops a broken build from hanging.
func TestRevocationAcrossInstances(t *testing.T) {
	t.Parallel()
	t.Run("pushed", func(t *testing.T) { revocationFigure(t, true) })
	t.Run("ttl only", func(t *testing.T) { revocationFigure(t, false) })
}

func revocationFigure(t *testing.T, push bool) {
	t.Parallel()
	e := newEnv(t, "")
	access, _, _ := e.user("revfig")
	key, keyID := e.key(access, map[string]any{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var urls []string
	for range 2 {
		v := app.NewVerifier(e.cfg, e.db, e.deps.Log)
		if push {
			v.Subscribed(ctx, e.deps.Redis)
		}
		h := submit.New(submit.Deps{Config: e.cfg, Log: slog.New(slog.DiscardHandler), Queue: e.deps.Queue, Verifier: v})
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}

	var revokeStart, revokedAt atomic.Int64 // unix nanos around the revoke call
	lastOK := make([]atomic.Int64, len(urls))
	var okBefore, okAfter [2]atomic.Int64 // acceptances before / after the revoke call started
	stopped := make([]chan struct{}, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		stopped[i] = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{}
			refusedSince := time.Time{}
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", u+"/v1/models", nil)
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := c.Do(req)
				if err != nil {
					continue
				}
				resp.Body.Close()
				now := time.Now()
				switch {
				case resp.StatusCode == 200:
					lastOK[i].Store(now.UnixNano())
					if revokeStart.Load() != 0 {
						okAfter[i].Add(1)
					} else {
						okBefore[i].Add(1)
					}
					refusedSince = time.Time{}
				case resp.StatusCode == 401 && revokedAt.Load() != 0:
					if refusedSince.IsZero() {
						refusedSince = now
					}
					if now.Sub(refusedSince) > 200*time.Millisecond { // refused steadily: done
						close(stopped[i])
						return
					}
				}
			}
		}()
	}
	for okBefore[0].Load() < 50 || okBefore[1].Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	revokeStart.Store(time.Now().UnixNano())
	e.must(204, "DELETE", "/auth/v1/keys/"+keyID, access, nil)
	revokedAt.Store(time.Now().UnixNano())
	for i := range urls {
		select {
		case <-stopped[i]:
		case <-time.After(10 * time.Second):
			t.Fatalf("instance %d still accepts the revoked key after 10s", i)
		}
	}
	cancel()
	wg.Wait()
	for i := range urls {
		t.Logf("push=%v instance %d: %d accepted before the revoke; %d accepted after it started; last acceptance %v after the revoke started, %v after it returned (the call took %v)",
			push, i, okBefore[i].Load(), okAfter[i].Load(), max(0, time.Duration(lastOK[i].Load()-revokeStart.Load())),
			max(0, time.Duration(lastOK[i].Load()-revokedAt.Load())), time.Duration(revokedAt.Load()-revokeStart.Load()))
	}
}
