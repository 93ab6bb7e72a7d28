//go:build !shrinkwrap

package submit_test

import (
	"bytes"
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
)

// saltProxy is a real HTTP reverse proxy in front of the simulator that
// records the cache_salt of each chat request the engine receives, by its
// last message (the simulator ignores cache_salt: the wire is where
// isolation shows).
type saltProxy struct {
	mu   sync.Mutex
	seen map[string][]string // last message → salts ("" when absent)
}

func (p *saltProxy) wrap(t *testing.T) func(string) string {
	return func(engine string) string {
		u, err := url.Parse(engine)
		if err != nil {
			t.Fatal(err)
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(b))
				var req struct {
					CacheSalt *string                    `json:"cache_salt"`
					Messages  []struct{ Content string } `json:"messages"`
				}
				if json.Unmarshal(b, &req) == nil && len(req.Messages) > 0 {
					salt := ""
					if req.CacheSalt != nil {
						salt = *req.CacheSalt
					}
					last := req.Messages[len(req.Messages)-1].Content
					p.mu.Lock()
					p.seen[last] = append(p.seen[last], salt)
					p.mu.Unlock()
				}
			}
			rp.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
}

// TestCacheSaltThroughTheAPI: two accounts send the same prompt through
// the real submit handler and worker; the engine behind the recording
// proxy gets a cache_salt on each, different per account, and the same
// again for the same account. With share_across_accounts it gets none.
func TestCacheSaltThroughTheAPI(t *testing.T) {
	t.Parallel()
	for _, share := range []bool{false, true} {
		t.Run(fmt.Sprintf("share=%v", share), func(t *testing.T) {
			t.Parallel()
			p := &saltProxy{seen: map[string][]string{}}
			e := setupEngine(t, false, p.wrap(t), fmt.Sprintf("{share_across_accounts: %v}", share))
			other := e.newKey(t, e.model+"-other@example.com")
			system := strings.Repeat("Answer in one short sentence about the product. ", 16)
			for i, key := range []string{e.key, other, e.key} {
				body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"system","content":%q},{"role":"user","content":"q%d"}],"max_tokens":2}`,
					e.model, system, i)
				if resp := e.do(t, "POST", "/v1/chat/completions", key, body, nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: %d", i, resp.StatusCode)
				}
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			s0, s1, s2 := p.seen["q0"], p.seen["q1"], p.seen["q2"]
			if len(s0) != 1 || len(s1) != 1 || len(s2) != 1 {
				t.Fatalf("engine saw %v %v %v", s0, s1, s2)
			}
			if share {
				if s0[0] != "" || s1[0] != "" {
					t.Fatalf("shared: no salt expected, got %q %q", s0[0], s1[0])
				}
				return
			}
			if s0[0] == "" || s0[0] == s1[0] || s0[0] != s2[0] {
				t.Fatalf("isolated: account salts %q (again %q) and %q", s0[0], s2[0], s1[0])
			}
		})
	}
}
