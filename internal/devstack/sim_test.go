package devstack_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
)

// TestStartSimExitedAndStop: a simulator that exits before it is healthy
// (here, an unknown flag; in a loaded make test, a free port taken before
// it could bind) is reported at once, after its retries, instead of after
// the 30 s health deadline; a healthy one answers and Stop ends it.
func TestStartSimExitedAndStop(t *testing.T) {
	t.Parallel()
	bin := testenv.Sim(t)
	start := time.Now()
	_, err := devstack.StartSim(context.Background(), bin, "m", 256, 2, "", "--no-such-flag")
	if err == nil || !strings.Contains(err.Error(), "exited before it was healthy") {
		t.Fatalf("StartSim with a bad flag: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("the exit took %v to be noticed", d)
	}
	s, err := devstack.StartSim(context.Background(), bin, "m", 256, 2, "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	s.Stop()
	if _, err := http.Get(s.URL + "/health"); err == nil {
		t.Fatal("the simulator still answers after Stop")
	}
}
