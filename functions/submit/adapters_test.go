//go:build !shrinkwrap

package submit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/functions/submit"
	"github.com/sluice-ai/sluice/gpuworker/pool"
	"github.com/sluice-ai/sluice/internal/artifact"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/enginetest"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/objstore/s3test"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// loraEnv is two simulators of one base model, the first started with the
// adapter (--lora-modules), the second without, and a third simulator of
// another base model with no adapter, whose adapter the worker must load at
// run time from a signed artifact; each behind a recording proxy.
type loraEnv struct {
	*tierEnv
	base, adapter, base2, dyn string
	bad, badSource            string // an adapter whose artifact is signed by another key
	with, without, loads      *enginetest.Proxy
	refuses                   *enginetest.Proxy // the engine the bad adapter would be loaded on
	dynSource                 string
	logs                      *lockedBuffer // the worker's log
}

// lockedBuffer is a log sink the test reads while the worker writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func setupLoRA(t *testing.T) *loraEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	base := testenv.Name("lora")
	e := &loraEnv{base: base, adapter: base + "-sql", base2: base + "-b2", dyn: base + "-dyn", bad: base + "-bad", logs: &lockedBuffer{}}
	start := func(model string, extra ...string) *enginetest.Proxy {
		sim, err := devstack.StartSim(ctx, testenv.Sim(t), model, 1024, 4, "", extra...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sim.Stop)
		return enginetest.NewProxy(t, sim.URL, 0)
	}
	e.with = start(base, "--max-loras", "2", "--lora-modules",
		fmt.Sprintf(`{"name":%q,"path":"/adapters/sql","base_model_name":%q}`, e.adapter, base))
	e.without = start(base)
	e.loads = start(e.base2, "--max-loras", "1")
	e.refuses = start(e.base+"-b3", "--max-loras", "1")

	// The run-time adapter: published signed, as `sluice model publish` does.
	keys := t.TempDir()
	priv, pub := filepath.Join(keys, "adapter.key"), filepath.Join(keys, "adapter.pub")
	if err := artifact.GenerateKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "adapter_config.json"), []byte(`{"r":8,"lora_alpha":16}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "adapter_model.safetensors"), []byte(strings.Repeat("w", 4096)), 0o644); err != nil {
		t.Fatal(err)
	}
	store := s3test.New(t)
	pk, err := artifact.LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.Publish(ctx, store, "models/", e.dyn, "v1", src, pk, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.dynSource = filepath.Join(t.TempDir(), "dyn")
	otherPriv, otherPub := filepath.Join(keys, "other.key"), filepath.Join(keys, "other.pub")
	if err := artifact.GenerateKey(otherPriv, otherPub); err != nil {
		t.Fatal(err)
	}
	opk, err := artifact.LoadPrivateKey(otherPriv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.Publish(ctx, store, "models/", e.bad, "v1", src, opk, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.badSource = filepath.Join(t.TempDir(), "bad")

	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference:
  adapter_public_key: %[8]q
  models:
    - {name: %[1]s, max_batch_size: 4, max_model_len: 1024, max_loras: 2, endpoints: [%[4]q, %[5]q],
       adapters: [{name: %[2]s, source: /adapters/sql}]}
    - {name: %[3]s, max_batch_size: 4, max_model_len: 1024, endpoints: [%[6]q],
       adapters: [{name: %[7]s, source: %[9]q, version: v1}]}
    - {name: %[1]s-b3, max_batch_size: 4, max_model_len: 1024, endpoints: [%[10]q],
       adapters: [{name: %[11]s, source: %[12]q, version: v1}]}
pricing:
  %[1]s: {input_tokens: 0.000003, output_tokens: 0.000007}
  %[2]s: {input_tokens: 0.000005, output_tokens: 0.000011}
  %[3]s: {input_tokens: 0.000002, output_tokens: 0.000013}
tiers:
  free: {included_credits: 0, rate_limit: 1000, tokens_per_minute: 10000000, concurrency: 32}
dispatch: {health_interval: 100ms}
worker: {usage_flush: 20ms}
`, base, e.adapter, e.base2, e.with.URL, e.without.URL, e.loads.URL, e.dyn, pub, e.dynSource, e.refuses.URL, e.bad, e.badSource)))
	if err != nil {
		t.Fatal(err)
	}
	e.tierEnv = serveLoRA(ctx, t, cfg, e.logs, store)
	return e
}

// serveLoRA runs the submit function, a worker (logging to logs, loading
// adapter artifacts from store) and the settler on cfg, on a fresh schema
// and Redis, until the test ends.
func serveLoRA(ctx context.Context, t *testing.T, cfg *config.Config, logs io.Writer, store *objstore.Store) *tierEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	model := cfg.Inference.Models[0].Name
	cfg.Env.KeyPepper = strings.Repeat("p", 32)
	log := slog.New(slog.DiscardHandler)
	db := pgtest.New(t)
	rdb := testenv.Redis(t)
	q := redisq.New(rdb, redisq.Options{EncodeError: openai.EncodeError, SyncRetention: cfg.Jobs.SyncRetention})
	adm := admission.New(cfg, rdb, db, log)
	go adm.Settler(admission.ConsumerName("t-" + model)).Run(ctx)
	w, err := pool.New(pool.Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Queue: q, Usage: db, Name: "t-" + model, Artifacts: store})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	})
	srv := httptest.NewServer(submit.New(submit.Deps{Config: cfg, Log: log, Queue: q, Verifier: app.NewVerifier(cfg, db, log), Admission: adm}))
	t.Cleanup(srv.Close)
	return &tierEnv{env: &env{url: srv.URL, model: model, db: db, cfg: cfg, rdb: rdb}}
}

// keyFor is a funded key of a new free-tier user, limited to models (none:
// every model).
func (e *loraEnv) keyFor(t *testing.T, email string, models ...string) string {
	t.Helper()
	ctx := context.Background()
	u, err := e.db.UpsertUser(ctx, email, "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	key, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.CreateKey(ctx, postgres.NewKey{UserID: u.ID, Name: "test", Hash: apikey.Hash([]byte(e.cfg.Env.KeyPepper), key),
		Prefix: apikey.Display(key), Models: models}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.LedgerGrant(ctx, u.ID, sluice.CalendarPeriod(time.Now()), 50_000_000, "test"); err != nil {
		t.Fatal(err)
	}
	return key
}

// adminKey is a key of a new admin.
func (e *loraEnv) adminKey(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	u, err := e.db.UpsertUser(ctx, e.base+"-admin@example.com", "free", "admin")
	if err != nil {
		t.Fatal(err)
	}
	key, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.CreateKey(ctx, postgres.NewKey{UserID: u.ID, Name: "admin", Hash: apikey.Hash([]byte(e.cfg.Env.KeyPepper), key),
		Prefix: apikey.Display(key)}); err != nil {
		t.Fatal(err)
	}
	return key
}

// chat sends one chat request for model carrying marker and returns the
// status, body and job id.
func (e *loraEnv) chat(t *testing.T, key, model, marker string) (int, []byte, string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"%s please answer"}],"max_tokens":12}`, model, marker)
	resp := e.do(t, "POST", "/v1/chat/completions", key, body, nil)
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header.Get("Sluice-Job-Id")
}

// TestLoRAAdapters: an adapter is listed with its parent; its requests land
// only on the engine that serves it (the recording proxies in front of the
// engines say where each went, and the engine answers under the adapter's
// name) while the other engine of the same model stays in rotation for the
// parent; a key without the adapter in its allowlist is refused it; the
// adapter's own price is in the ledger and its name in the usage rows; and
// an adapter no engine has is verified from its signed artifact and loaded
// through POST /v1/load_lora_adapter, then served at the parent's price.
func TestLoRAAdapters(t *testing.T) {
	t.Parallel()
	e := setupLoRA(t)
	key := e.keyFor(t, e.base+"@example.com")

	// /v1/models lists both adapters with their parents.
	var list struct {
		Data []struct{ ID, Parent string } `json:"data"`
	}
	if resp := e.do(t, "GET", "/v1/models", key, "", &list); resp.StatusCode != 200 {
		t.Fatalf("/v1/models: %d", resp.StatusCode)
	}
	parents := map[string]string{}
	for _, m := range list.Data {
		parents[m.ID] = m.Parent
	}
	if p, ok := parents[e.adapter]; !ok || p != e.base {
		t.Fatalf("/v1/models: %s listed %v with parent %q: %+v", e.adapter, ok, p, list.Data)
	}
	if p, ok := parents[e.dyn]; !ok || p != e.base2 {
		t.Fatalf("/v1/models: %s listed %v with parent %q", e.dyn, ok, p)
	}
	if p, ok := parents[e.base]; !ok || p != "" {
		t.Fatalf("/v1/models: %s listed %v with parent %q", e.base, ok, p)
	}

	// Twelve adapter requests at once: more than one endpoint's slots, so
	// a worker that ignored where the adapter is would use the other one.
	const n = 12
	var wg sync.WaitGroup
	type answer struct {
		code  int
		raw   []byte
		jobID string
	}
	answers := make([]answer, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, raw, id := e.chat(t, key, e.adapter, fmt.Sprintf("loramark%02d", i))
			answers[i] = answer{c, raw, id}
		}()
	}
	wg.Wait()
	for i, a := range answers {
		var out struct{ Model string }
		if a.code != 200 || json.Unmarshal(a.raw, &out) != nil || out.Model != e.adapter {
			t.Fatalf("adapter request %d: %d %s", i, a.code, a.raw)
		}
		marker := fmt.Sprintf("loramark%02d", i)
		if got := len(e.with.Find(marker)); got != 1 {
			t.Fatalf("adapter request %d: %d requests at the engine with the adapter, want 1", i, got)
		}
		if got := len(e.without.Find(marker)); got != 0 {
			t.Fatalf("adapter request %d reached the engine without the adapter", i)
		}
	}
	t.Logf("%d adapter requests: %d exchanges at the engine with %s, %d at the engine without", n, len(e.with.Exchanges()),
		e.adapter, len(e.without.Exchanges()))

	// The engine without the adapter is in rotation for the parent: parent
	// requests until one lands there.
	for i := 0; len(e.without.Find("basemark")) == 0; i++ {
		if i == 200 {
			t.Fatal("no parent request reached the second engine")
		}
		var wg sync.WaitGroup
		for j := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c, raw, _ := e.chat(t, key, e.base, fmt.Sprintf("basemark%d-%d-", i, j)); c != 200 {
					t.Errorf("parent request: %d %s", c, raw)
				}
			}()
		}
		wg.Wait()
	}

	// The operator's status lists the adapter under its parent, its
	// endpoints healthy only where the engine lists it.
	var st struct {
		Models []struct {
			Model, Parent string
			Workers       []struct {
				Endpoints []struct {
					URL     string `json:"url"`
					Healthy bool   `json:"healthy"`
				} `json:"endpoints"`
			} `json:"workers"`
		} `json:"models"`
	}
	// Workers publish every second: read until a reading shows the engine
	// with the adapter healthy.
	admin := e.adminKey(t)
	health := map[string]bool{}
	for deadline := time.Now().Add(10 * time.Second); !health[e.with.URL]; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %s healthy for %s: %+v", e.with.URL, e.adapter, st)
		}
		if resp := e.do(t, "GET", "/v1/admin/status", admin, "", &st); resp.StatusCode != 200 {
			t.Fatalf("/v1/admin/status: %d", resp.StatusCode)
		}
		for _, m := range st.Models {
			if m.Model != e.adapter {
				continue
			}
			if m.Parent != e.base || len(m.Workers) != 1 {
				t.Fatalf("status of %s: %+v", e.adapter, m)
			}
			for _, ep := range m.Workers[0].Endpoints {
				health[ep.URL] = ep.Healthy
			}
		}
	}
	if len(health) != 2 || !health[e.with.URL] || health[e.without.URL] {
		t.Fatalf("status of %s's endpoints: %v, want only %s healthy", e.adapter, health, e.with.URL)
	}

	// The adapter's own price (5 and 11 µ$ per token) in the ledger; the
	// usage row names the adapter.
	row := e.settled(t, answers[0].jobID)
	if want := row.prompt*5 + row.completion*11; row.prompt == 0 || row.credit != want {
		t.Fatalf("ledger %+v: charged %d µ$, want %d×5 + %d×11 = %d", row, row.credit, row.prompt, row.completion, want)
	}
	t.Logf("adapter job: %d prompt + %d completion tokens charged %d µ$ at the adapter's price", row.prompt, row.completion, row.credit)
	// The usage row is the worker's batched flush, not the settler's ledger
	// row that settled waited for: wait for it too (under load it lags).
	e.usageTier(t, answers[0].jobID)
	var model string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT model_name FROM inference_requests WHERE job_id = $1`, answers[0].jobID).Scan(&model); err != nil || model != e.adapter {
		t.Fatalf("usage row model %q (%v), want %s", model, err, e.adapter)
	}

	// A key whose allowlist has the parent only is refused the adapter, and
	// does not see it listed; one with the adapter only is refused the parent.
	parentOnly := e.keyFor(t, e.base+"-p@example.com", e.base)
	for _, path := range []string{"/v1/chat/completions", "/v1/models/" + e.adapter} {
		var ae apiError
		var resp *http.Response
		if path == "/v1/chat/completions" {
			resp = e.do(t, "POST", path, parentOnly, fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, e.adapter), &ae)
		} else {
			resp = e.do(t, "GET", path, parentOnly, "", &ae)
		}
		if resp.StatusCode != 404 || ae.Error.Code == nil || *ae.Error.Code != "model_not_found" || ae.Error.Type == "" {
			t.Fatalf("%s for a key without the adapter: %d %+v", path, resp.StatusCode, ae.Error)
		}
	}
	list.Data = nil
	e.do(t, "GET", "/v1/models", parentOnly, "", &list)
	if len(list.Data) != 1 || list.Data[0].ID != e.base {
		t.Fatalf("/v1/models for a parent-only key: %+v", list.Data)
	}
	adapterOnly := e.keyFor(t, e.base+"-a@example.com", e.adapter)
	if c, raw, _ := e.chat(t, adapterOnly, e.adapter, "allowed"); c != 200 {
		t.Fatalf("adapter for a key allowed it: %d %s", c, raw)
	}
	if c, raw, _ := e.chat(t, adapterOnly, e.base, "refused"); c != 404 {
		t.Fatalf("parent for an adapter-only key: %d %s", c, raw)
	}

	// The run-time adapter: no engine had it; the worker verified the
	// artifact into its source folder and asked the engine to load it.
	c, raw, jobID := e.chat(t, key, e.dyn, "dynmark")
	if c != 200 {
		t.Fatalf("run-time adapter: %d %s", c, raw)
	}
	var loads int
	for _, ex := range e.loads.Exchanges() {
		if ex.Endpoint == "/v1/load_lora_adapter" && strings.Contains(string(ex.Raw), `"lora_name":"`+e.dyn+`"`) &&
			strings.Contains(string(ex.Raw), e.dynSource) {
			loads++
		}
	}
	if loads != 1 || len(e.loads.Find("dynmark")) != 1 {
		t.Fatalf("engine saw %d loads of %s, %d requests", loads, e.dyn, len(e.loads.Find("dynmark")))
	}
	if b, err := os.ReadFile(filepath.Join(e.dynSource, "adapter_config.json")); err != nil || string(b) != `{"r":8,"lora_alpha":16}` {
		t.Fatalf("verified files at the source: %q %v", b, err)
	}
	resp, err := http.Get(e.loads.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var engineList struct {
		Data []struct {
			ID     string  `json:"id"`
			Parent *string `json:"parent"`
		} `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&engineList) //nolint:errcheck // checked below
	found := false
	for _, m := range engineList.Data {
		found = found || (m.ID == e.dyn && m.Parent != nil && *m.Parent == e.base2)
	}
	if !found {
		t.Fatalf("the engine does not list %s under %s: %+v", e.dyn, e.base2, engineList.Data)
	}
	row = e.settled(t, jobID)
	if want := row.prompt*2 + row.completion*13; row.prompt == 0 || row.credit != want {
		t.Fatalf("run-time adapter ledger %+v: charged %d µ$, want the parent's price %d", row, row.credit, want)
	}
	t.Logf("run-time adapter: loaded once, answered, charged %d µ$ at its parent's price", row.credit)

	// The adapter signed by another key: once the worker has tried it, the
	// engine was never asked to load it and no file reached its source.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(e.logs.String(), "adapter="+e.bad); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the worker never tried %s: %s", e.bad, e.logs.String())
		}
	}
	if line := e.logs.String(); !strings.Contains(line, "its artifact does not verify") || !strings.Contains(line, "signature does not verify") {
		t.Fatalf("worker log: %s", line)
	}
	for _, ex := range e.refuses.Exchanges() {
		if ex.Endpoint == "/v1/load_lora_adapter" {
			t.Fatalf("the engine was asked to load an adapter that does not verify: %s", ex.Raw)
		}
	}
	if _, err := os.Stat(e.badSource); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the unverified adapter's source exists: %v", err)
	}
}

// inflightProxy forwards to an engine and records the most chat requests
// it had open at once: what the engine was given, not what Sluice counted.
type inflightProxy struct {
	URL       string
	mu        sync.Mutex
	open, max int
	models    map[string]int // requests per model field
}

func newInflightProxy(t *testing.T, target string) *inflightProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &inflightProxy{models: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0) // requests cut at the test's end
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			rp.ServeHTTP(w, r)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(raw))
		var b struct{ Model string }
		json.Unmarshal(raw, &b) //nolint:errcheck // counted under "" if not JSON
		p.mu.Lock()
		p.open++
		p.max = max(p.max, p.open)
		p.models[b.Model]++
		p.mu.Unlock()
		defer func() { p.mu.Lock(); p.open--; p.mu.Unlock() }()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// TestLoRASharedSlots: a parent and its adapter share the endpoint's
// max_batch_size: with 2 slots, no margin and slow answers, 8 requests
// (4 each) never have more than 2 open at the engine at once.
func TestLoRASharedSlots(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	base := testenv.Name("loraslots")
	adapter := base + "-sql"
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), base, 1024, 8, "", "--time-to-first-token", "300ms", "--max-loras", "1",
		"--lora-modules", fmt.Sprintf(`{"name":%q,"path":"/adapters/sql","base_model_name":%q}`, adapter, base))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	proxy := newInflightProxy(t, sim.URL)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference:
  models:
    - {name: %[1]s, max_batch_size: 2, max_model_len: 1024, endpoints: [%[3]q], adapters: [{name: %[2]s, source: /adapters/sql}]}
tiers:
  free: {included_credits: 0, rate_limit: 1000, tokens_per_minute: 10000000, concurrency: 32}
dispatch: {health_interval: 100ms, batch_margin: 0}
worker: {usage_flush: 20ms}
`, base, adapter, proxy.URL)))
	if err != nil {
		t.Fatal(err)
	}
	e := &loraEnv{tierEnv: serveLoRA(ctx, t, cfg, io.Discard, nil)}
	key := e.keyFor(t, base+"@example.com")
	// One adapter request first: it waits in its queue until the worker has
	// read the engine's list, so the burst finds the adapter listed.
	if c, raw, _ := e.chat(t, key, adapter, "warm"); c != 200 {
		t.Fatalf("warm-up: %d %s", c, raw)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		model := base
		if i%2 == 1 {
			model = adapter
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, raw, _ := e.chat(t, key, model, fmt.Sprintf("slotmark%d-", i)); c != 200 {
				t.Errorf("%s: %d %s", model, c, raw)
			}
		}()
	}
	wg.Wait()
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	if proxy.max > 2 || proxy.models[base] != 4 || proxy.models[adapter] != 5 {
		t.Fatalf("engine saw at most %d open at once (want ≤ 2), requests %v", proxy.max, proxy.models)
	}
	t.Logf("8 requests (4 parent, 4 adapter) on 2 shared slots: at most %d open at the engine; per model %v", proxy.max, proxy.models)
}
