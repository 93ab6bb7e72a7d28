package pool_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/prefixcache"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// recorder is a real HTTP reverse proxy in front of an engine that keeps
// the cache_salt of every completion request the engine receives, by the
// request's first user message (the simulator ignores cache_salt, so the
// wire is where isolation shows).
type recorder struct {
	mu    sync.Mutex
	salts map[string][]string // user message → cache_salt values seen ("" when absent)
}

func newRecorder(t *testing.T, engine string) (*recorder, string) {
	t.Helper()
	u, err := url.Parse(engine)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{salts: map[string][]string{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			var req struct {
				CacheSalt *string `json:"cache_salt"`
				Messages  []struct {
					Role, Content string
				} `json:"messages"`
			}
			if json.Unmarshal(b, &req) == nil && len(req.Messages) > 1 {
				salt := ""
				if req.CacheSalt != nil {
					salt = *req.CacheSalt
				}
				rec.mu.Lock()
				rec.salts[req.Messages[1].Content] = append(rec.salts[req.Messages[1].Content], salt)
				rec.mu.Unlock()
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

func (rec *recorder) seen(msg string) []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.salts[msg]...)
}

// TestCacheSaltOnTheWire: two accounts send the same prompt through a
// worker to a real simulator behind a recording proxy. Isolated (the
// default), each request carries its account's cache_salt (replacing one
// the client set), and the two differ; shared across accounts, Sluice adds
// none.
func TestCacheSaltOnTheWire(t *testing.T) {
	t.Parallel()
	for _, share := range []bool{false, true} {
		t.Run(fmt.Sprintf("share=%v", share), func(t *testing.T) {
			t.Parallel()
			model := testenv.Name("salt")
			sim := startSim(t, model, 2048)
			rec, via := newRecorder(t, sim.URL)
			h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 2048, endpoints: [%q]}], prefix_cache: {share_across_accounts: %v}}
pricing: null
worker: {usage_flush: 20ms}
`, model, via, share))
			h.p.Config.Env.KeyPepper = strings.Repeat("k", 32)
			other, err := h.db.UpsertUser(context.Background(), model+"-2@example.com", "free", "user")
			if err != nil {
				t.Fatal(err)
			}
			system := strings.Repeat("You answer questions about one product only. ", 20)
			for i, user := range []string{h.user, other.ID} {
				msg := fmt.Sprintf("question from account %d", i)
				clientSalt := ""
				if i == 1 {
					clientSalt = `"cache_salt":"client-chosen",` // a client's own salt never replaces the account's
				}
				j := &sluice.Job{ID: rkey.NewJobID(model), UserID: user, Model: model, Endpoint: sluice.EndpointChat,
					Body: []byte(fmt.Sprintf(`{%s"model":%q,"messages":[{"role":"system","content":%q},{"role":"user","content":%q}],"max_tokens":2}`,
						clientSalt, model, system, msg))}
				prefixcache.Stamp(h.p.Config, j)
				if err := h.q.Enqueue(context.Background(), j, time.Minute); err != nil {
					t.Fatal(err)
				}
				if js := waitJob(t, h, j.ID, 30*time.Second); js.Status != sluice.JobSucceeded {
					t.Fatalf("job %s: %+v", j.ID, js)
				}
			}
			s0, s1 := rec.seen("question from account 0"), rec.seen("question from account 1")
			if len(s0) != 1 || len(s1) != 1 {
				t.Fatalf("engine saw %v and %v", s0, s1)
			}
			if share {
				if s0[0] != "" || s1[0] != "client-chosen" {
					t.Fatalf("shared: Sluice must add no salt and pass the client's: %q %q", s0[0], s1[0])
				}
				h.stop(t)
				return
			}
			if s0[0] == "" || s1[0] == "" || s0[0] == s1[0] || strings.Contains(s1[0], "client-chosen") {
				t.Fatalf("isolated: salts %q and %q must be the accounts' own, distinct", s0[0], s1[0])
			}
			h.stop(t)
		})
	}
}
