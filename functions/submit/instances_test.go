//go:build !shrinkwrap

package submit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/functions/submit"
	"github.com/sluice-ai/sluice/gpuworker/pool"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	sopenai "github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rconn"
	"github.com/sluice-ai/sluice/shared/redisq/redistest"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// instances is n submit instances (each with its own Redis client, queue,
// admitter and verifier, as separate processes have) in front of one worker
// on the simulator, sharing Redis and a PostgreSQL schema. With
// TEST_REDIS_URL naming a Redis Cluster this is the platform scaled out.
type instances struct {
	urls  []string
	model string
	db    *postgres.DB
	cfg   *config.Config
	rdb   redis.UniversalClient
}

func setupInstances(t *testing.T, n int) *instances {
	t.Helper()
	return setupInstancesOn(t, n, testenv.Redis)
}

// setupInstancesOn is setupInstances on the Redis that open connects to.
func setupInstancesOn(t *testing.T, n int, open func(testing.TB) redis.UniversalClient) *instances {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	model := testenv.Name("inst")
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), model, 1024, 8, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	// The tier leaves the request rate to the key's own limit.
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 8, max_model_len: 1024, endpoints: [%q]}]}
pricing: null
worker: {usage_flush: 20ms}
tiers:
  free: {rate_limit: unlimited, included_credits: unlimited, tokens_per_minute: unlimited, concurrency: unlimited}
`, model, sim.URL)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Env.KeyPepper = strings.Repeat("p", 32)
	log := slog.New(slog.DiscardHandler)
	db := pgtest.New(t)
	wq := redisq.New(open(t), redisq.Options{EncodeError: sopenai.EncodeError})
	w, err := pool.New(pool.Deps{Config: cfg, Log: log, Queue: wq, Usage: db, Name: "t-" + model})
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
	in := &instances{model: model, db: db, cfg: cfg, rdb: open(t)}
	for i := range n {
		rdb := open(t)
		adm := admission.New(cfg, rdb, db, log)
		go adm.Settler(admission.ConsumerName(fmt.Sprintf("t-%s-%d", model, i))).Run(ctx)
		q := redisq.New(rdb, redisq.Options{EncodeError: sopenai.EncodeError})
		srv := httptest.NewServer(submit.New(submit.Deps{Config: cfg, Log: log, Queue: q, Verifier: app.NewVerifier(cfg, db, log), Admission: adm}))
		t.Cleanup(srv.Close)
		in.urls = append(in.urls, srv.URL)
	}
	return in
}

// key creates a user and an API key with limits of its own.
func (in *instances) key(t *testing.T, l sluice.Limits) string {
	t.Helper()
	ctx := context.Background()
	u, err := in.db.UpsertUser(ctx, testenv.Name("u")+"@example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	key, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.db.CreateKey(ctx, postgres.NewKey{UserID: u.ID, Name: "test", Hash: apikey.Hash([]byte(in.cfg.Env.KeyPepper), key),
		Prefix: apikey.Display(key), Limits: l}); err != nil {
		t.Fatal(err)
	}
	return key
}

func (in *instances) client(i int, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(in.urls[i]+"/v1"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// logKeysPerMaster logs DBSIZE of every master when the test Redis is a
// cluster: the keys spread over the masters, not one.
func logKeysPerMaster(t *testing.T, rdb redis.UniversalClient) {
	t.Helper()
	c, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return
	}
	var mu sync.Mutex
	var sizes []string
	err := c.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		mu.Lock()
		sizes = append(sizes, fmt.Sprintf("%s DBSIZE %d", m.Options().Addr, n))
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(sizes)
	t.Logf("Redis Cluster masters: %s", strings.Join(sizes, ", "))
}

// The OpenAI Go SDK through two submit instances and one worker: plain,
// streamed and legacy completions on either instance, for several users
// (whose keys hash to different slots, so on a cluster to several masters).
func TestTwoInstancesOpenAISDK(t *testing.T) {
	t.Parallel()
	in := setupInstances(t, 2)
	ctx := context.Background()
	var jobs []string
	for i := range 6 {
		key := in.key(t, sluice.Limits{})
		c := in.client(i%2, key)
		var resp *http.Response
		cc, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: in.model,
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
			MaxTokens: openai.Int(12)}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatalf("instance %d: chat: %v", i, err)
		}
		if len(cc.Choices) != 1 || cc.Choices[0].Message.Content == "" || cc.Usage.CompletionTokens == 0 {
			t.Fatalf("instance %d: chat = %+v", i, cc)
		}
		jobs = append(jobs, resp.Header.Get("Sluice-Job-Id")+resp.Header.Get("X-Request-Id"))

		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: in.model,
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Stream please")},
			MaxTokens:     openai.Int(10),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
		acc := openai.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("instance %d: stream: %v", i, err)
		}
		if acc.Choices[0].Message.Content == "" || acc.Usage.CompletionTokens == 0 {
			t.Fatalf("instance %d: streamed = %+v", i, acc.ChatCompletion)
		}

		comp, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(in.model),
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens: openai.Int(8)})
		if err != nil || len(comp.Choices) != 1 || comp.Choices[0].Text == "" {
			t.Fatalf("instance %d: completion = %+v, %v", i, comp, err)
		}
	}
	for _, id := range jobs {
		if id == "" {
			t.Fatal("an answer without Sluice-Job-Id or X-Request-Id")
		}
	}
	logKeysPerMaster(t, in.rdb)
}

// A key limited to 5 requests per minute, 40 requests at once split over
// two submit instances: exactly 5 answered, 35 refused with
// rate_limit_exceeded, on one Redis or a Redis Cluster.
func TestKeyRateLimitExactAcrossInstances(t *testing.T) {
	t.Parallel()
	const rpm, n = 5, 40
	in := setupInstances(t, 2)
	key := in.key(t, sluice.Limits{RequestsPerMinute: rpm})
	codes := make([]int, n)
	errCodes := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := in.client(i%2, key)
			_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: in.model,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, MaxTokens: openai.Int(4)})
			var apiErr *openai.Error
			switch {
			case err == nil:
				codes[i] = http.StatusOK
			case errors.As(err, &apiErr):
				codes[i], errCodes[i] = apiErr.StatusCode, apiErr.Code
			default:
				t.Errorf("request %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	admitted, limited := 0, 0
	perInstance := [2]int{}
	for i, c := range codes {
		switch {
		case c == http.StatusOK:
			admitted++
			perInstance[i%2]++
		case c == http.StatusTooManyRequests && errCodes[i] == sluice.CodeRateLimitExceeded:
			limited++
		default:
			t.Errorf("request %d: %d %q", i, c, errCodes[i])
		}
	}
	t.Logf("%d requests at once over 2 instances, key limit %d rpm: %d admitted (instance A %d, B %d), %d refused with 429 rate_limit_exceeded",
		n, rpm, admitted, perInstance[0], perInstance[1], limited)
	if admitted != rpm || limited != n-rpm {
		t.Fatalf("admitted %d, refused %d; want exactly %d and %d", admitted, limited, rpm, n-rpm)
	}
	logKeysPerMaster(t, in.rdb)
}

// A Redis Cluster that goes down: a process starting now fails with the
// reason; requests answer 503 service_unavailable in OpenAI's error form
// (fail closed: nothing is admitted without its limits and funds checked);
// once the cluster is back the same processes serve again, no restart.
func TestClusterDownAnswers503AndRecovers(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	open := func(tb testing.TB) redis.UniversalClient {
		c, err := rconn.Open(context.Background(), cl.URL(), rconn.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		return c
	}
	in := setupInstancesOn(t, 1, open)
	key := in.key(t, sluice.Limits{})
	chat := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, in.urls[0]+"/v1/chat/completions",
			strings.NewReader(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, in.model)))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e apiError
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == nil {
				t.Fatalf("%d answer not in OpenAI's error form: %s", resp.StatusCode, b)
			}
			return resp.StatusCode, *e.Error.Code
		}
		return resp.StatusCode, ""
	}
	if code, ec := chat(); code != http.StatusOK {
		t.Fatalf("before: %d %s", code, ec)
	}

	cl.Stop()
	_, err := rconn.Open(context.Background(), cl.URL(), rconn.Options{})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(cl.Ports[0])) {
		t.Fatalf("start-up against a cluster that is down: %v, want an error naming the node", err)
	}
	t.Logf("start-up error: %v", err)
	for i := range 3 {
		code, ec := chat()
		if code != http.StatusServiceUnavailable || ec != sluice.CodeServiceUnavailable {
			t.Fatalf("down, request %d: %d %q; want 503 %s", i, code, ec, sluice.CodeServiceUnavailable)
		}
	}

	back := time.Now()
	cl.Start()
	cl.WaitOK()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, ec := chat()
		if code == http.StatusOK {
			break
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after the cluster came back: %d %q", code, ec)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("served again %v after the cluster's nodes were restarted", time.Since(back).Round(time.Millisecond))
}
