package pool_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// classCounter is a proxy in front of an engine that counts the requests
// it has in flight by kind (a marker in the body), and, whenever a
// batch-class request starts, whether interactive jobs were still waiting
// in Redis (the claim script's own test: the interactive fair queue is
// not empty) and how many batch-class requests were then in flight.
type classCounter struct {
	mu                     sync.Mutex
	bulk, inter            int // in flight now
	bulkMaxWaiting         int // most batch-class in flight at a start while interactive waited
	bulkMaxIdle            int // most batch-class in flight at a start with none waiting
	bulkStartedWaiting     int // batch-class starts while interactive waited
	interStarted, bulkDone int
}

func startClassCounter(t *testing.T, target string, waiting func() bool) (*classCounter, string) {
	t.Helper()
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	c := &classCounter{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			rp.ServeHTTP(w, r)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(raw))
		bulk := bytes.Contains(raw, []byte("BULKJOB"))
		w8 := bulk && waiting()
		c.mu.Lock()
		if bulk {
			c.bulk++
			if w8 {
				c.bulkStartedWaiting++
				c.bulkMaxWaiting = max(c.bulkMaxWaiting, c.bulk)
			} else {
				c.bulkMaxIdle = max(c.bulkMaxIdle, c.bulk)
			}
		} else {
			c.inter++
			c.interStarted++
		}
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
		c.mu.Lock()
		if bulk {
			c.bulk--
			c.bulkDone++
		} else {
			c.inter--
		}
		c.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

// TestBatchClassSlotShare: batch-class jobs (batch lines, flex) fill only
// the slots interactive work leaves. With interactive jobs waiting, they
// hold at most batch.max_slot_share × max_batch_size of the endpoint
// (here 0.25 × 8 = 2), yet still run (the aging turn claims their class
// first); once nothing interactive waits they fill the endpoint.
func TestBatchClassSlotShare(t *testing.T) {
	t.Parallel()
	model := testenv.Name("share")
	sim := startSim(t, model, 1024, "--max-num-seqs", "16", "--inter-token-latency", "15ms")
	rdb := testenv.Redis(t)
	fair := rkey.ShardFairKey(rkey.Tag(model), model, 2)
	waiting := func() bool {
		n, err := rdb.ZCard(context.Background(), fair).Result()
		return err == nil && n > 0
	}
	cc, proxy := startClassCounter(t, sim.URL, waiting)
	h := startPoolLater(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 8, max_model_len: 1024, endpoints: [%q]}]}
pricing: null
batch: {max_slot_share: 0.25}
dispatch: {batch_margin: 0}
worker: {usage_flush: 20ms}
`, model, proxy))
	ctx := context.Background()
	const interactive, bulk = 96, 32
	var ids []string
	// Every job is queued before the worker starts: interactive jobs wait
	// from the first claim to the last.
	for i := range interactive + bulk {
		j := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model, Endpoint: sluice.EndpointChat, Priority: 2,
			Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"INTERJOB %d"}],"max_tokens":10,"ignore_eos":true}`, model, i))}
		if i >= interactive {
			j.Priority, j.ServiceTier = config.BatchClass, sluice.TierBatch
			j.Body = []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"BULKJOB %d"}],"max_tokens":10,"ignore_eos":true}`, model, i))
		}
		if err := h.q.Enqueue(ctx, j, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	h.start()
	for _, id := range ids {
		if js := waitJob(t, h, id, 90*time.Second); js.Status != sluice.JobSucceeded {
			t.Fatalf("job %s %s", id, js.Status)
		}
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	t.Logf("batch-class starts while interactive waited: %d, most in flight then %d (cap 2 of 8); most in flight with none waiting %d",
		cc.bulkStartedWaiting, cc.bulkMaxWaiting, cc.bulkMaxIdle)
	if cc.bulkMaxWaiting > 2 {
		t.Fatalf("batch-class held %d slots while interactive jobs waited; the share allows 2 of 8", cc.bulkMaxWaiting)
	}
	if cc.bulkStartedWaiting == 0 {
		t.Fatalf("batch-class never ran while interactive waited: the aging turn should give it its share")
	}
	if cc.bulkMaxIdle <= 2 {
		t.Fatalf("with nothing interactive waiting, batch-class filled only %d slots", cc.bulkMaxIdle)
	}
	h.stop(t)
}
