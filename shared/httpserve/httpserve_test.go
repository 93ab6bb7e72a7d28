package httpserve_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/httpserve"
)

// TestOneLogLinePerRequest: a function's Middleware inside the local
// gateway's logs the request once, the function's line, under the gateway's
// request id; a request no function serves (the console) is logged by the
// gateway.
func TestOneLogLinePerRequest(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	fn := httpserve.Middleware(log, "submit", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	mux := http.NewServeMux()
	mux.Handle("/v1/", fn)
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {})
	gw := httpserve.Middleware(log, "gateway", mux)

	for _, c := range []struct{ path, function string }{{"/v1/models", "submit"}, {"/console/", "gateway"}} {
		buf.Reset()
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, httptest.NewRequest("GET", c.path, nil))
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 1 {
			t.Fatalf("GET %s: %d log lines, want 1:\n%s", c.path, len(lines), buf.String())
		}
		var line struct{ Function, RequestID string }
		if err := json.Unmarshal([]byte(strings.ReplaceAll(lines[0], `"request_id"`, `"requestid"`)), &line); err != nil {
			t.Fatal(err)
		}
		if line.Function != c.function || line.RequestID == "" || rec.Header().Get("X-Request-Id") != line.RequestID {
			t.Errorf("GET %s: logged %+v, response X-Request-Id %q", c.path, line, rec.Header().Get("X-Request-Id"))
		}
	}
}
