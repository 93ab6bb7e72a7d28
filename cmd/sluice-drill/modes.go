package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// startRedis runs a redis-server of the drill's own on a free port with
// appendonly yes, as production runs it (the shared Redis is never
// restarted), and returns its URL.
func (d *drill) startRedis(ctx context.Context) (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("mode redis needs redis-server on PATH: %w", err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		return "", err
	}
	d.redis, err = d.start("redis", bin, nil, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--appendonly", "yes", "--save", "", "--dir", d.dir)
	if err != nil {
		return "", err
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	return url, d.waitTCP(ctx, port)
}

// waitTCP waits until something listens on the port.
func (d *drill) waitTCP(ctx context.Context, port int) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("nothing listens on port %d after 20s", port)
}

// startSims starts the drill's engines as child processes on fixed ports, so
// one can be killed and started again at the same address: two for mode
// endpoint, one that fails 10% of requests for mode failures, else one.
func (d *drill) startSims(ctx context.Context) ([]*proc, error) {
	bin, err := devstack.SimBinary(d.o.sim)
	if err != nil {
		return nil, err
	}
	n, extra := 1, []string(nil)
	switch d.o.mode {
	case "endpoint":
		n = 2
	case "failures":
		extra = []string{"--failure-injection-rate", "10"}
	}
	var out []*proc
	for i := range n {
		port, err := devstack.FreePort()
		if err != nil {
			return nil, err
		}
		args := append([]string{"--port", strconv.Itoa(port), "--model", model, "--force-dummy-tokenizer",
			"--max-model-len", "2048", "--max-num-seqs", "8", "--time-to-first-token", "50ms", "--inter-token-latency", "20ms"}, extra...)
		p, err := d.start(fmt.Sprintf("sim%d", i), bin, nil, args...)
		if err != nil {
			return nil, err
		}
		if err := d.waitHealthy(ctx, simURL(p)); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func simURL(p *proc) string {
	for i, a := range p.cmd.Args {
		if a == "--port" && i+1 < len(p.cmd.Args) {
			return "http://127.0.0.1:" + p.cmd.Args[i+1]
		}
	}
	return ""
}

func simURLs(ps []*proc) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = simURL(p)
	}
	return out
}

// waitHealthy waits for an engine's /health.
func (d *drill) waitHealthy(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s not healthy after 30s", url)
}

// afterProgress waits until -kill-after jobs have succeeded, then runs the
// fault; it returns when the fault began.
func (d *drill) afterProgress(ctx context.Context, ids []string, fault func() error) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		states, err := d.statuses(ctx, ids)
		if err != nil {
			return time.Time{}, err
		}
		if done := count(states, succeeded); done >= d.o.killAfter {
			d.logf("%d jobs succeeded: fault now", done)
			at := time.Now()
			return at, fault()
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, errors.New("jobs made no progress within 2 minutes")
}

// restart stops a child with sig, waits for it to exit, leaves it down for
// `down`, then starts it again with the same command line.
func (d *drill) restart(ctx context.Context, pp **proc, sig syscall.Signal, down time.Duration) error {
	p := *pp
	if err := syscall.Kill(p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	<-p.done
	d.logf("%s stopped (%s); down for %s", p.name, sig, down)
	if err := sleep(ctx, down); err != nil {
		return err
	}
	np, err := d.start(p.name+"-again", p.cmd.Path, nil, p.cmd.Args[1:]...)
	if err != nil {
		return err
	}
	*pp = np
	// Keep the stop order: the new process takes the old one's place.
	d.procs = d.procs[:len(d.procs)-1]
	for i := range d.procs {
		if d.procs[i] == p {
			d.procs[i] = np
		}
	}
	if strings.HasSuffix(p.name, "redis") {
		port, _ := strconv.Atoi(p.cmd.Args[2])
		return d.waitTCP(ctx, port)
	}
	return d.waitHealthy(ctx, simURL(np))
}

// verify prints a fault drill's summary and checks that nothing was lost or
// billed twice: every job final with exactly one end event, one usage row
// per job that reached an engine and no other, and every succeeded job
// billed exactly its tokens.
func (d *drill) verify(ids []string, states map[string]sluice.JobState, m map[string]meta, u usageRows, dead int64,
	submitted, faultAt, allDone time.Time) error {
	byStatus := map[sluice.JobStatus]int{}
	codes := map[string]int{}
	for _, s := range states {
		byStatus[s.Status]++
		if s.Error != nil {
			codes[fmt.Sprintf("%s:%v", s.Error.Type, s.Error.Code)]++
		}
	}
	var rerun, multiEnd int
	for _, id := range ids {
		if m[id].attempts > 1 {
			rerun++
		}
		if m[id].ends != 1 {
			multiEnd++
		}
	}
	what := map[string]string{
		"endpoint": "one of two engines (max-num-seqs 8 each) is killed with SIGKILL and started again 3 s later (its in-flight jobs fail engine_error)",
		"redis":    "Redis (its own redis-server, appendonly yes) is stopped and started again 2 s later",
		"failures": "the engine fails 10% of requests (--failure-injection-rate 10, all failure types)",
	}[d.o.mode]
	billedJobs := byStatus[sluice.JobSucceeded] + byStatus[sluice.JobFailed]
	w := d.out
	fmt.Fprintf(w, "\n%s drill: 2 workers; %s; %d async jobs of %d tokens\n\n", d.o.mode, what, len(ids), d.o.maxTokens)
	fmt.Fprintf(w, "  jobs submitted               %d\n", len(ids))
	fmt.Fprintf(w, "  jobs succeeded / failed      %d / %d  (cancelled %d, expired %d)\n", byStatus[sluice.JobSucceeded],
		byStatus[sluice.JobFailed], byStatus[sluice.JobCancelled], byStatus[sluice.JobExpired])
	if len(codes) > 0 {
		fmt.Fprintf(w, "  failures by error            %v\n", codes)
	}
	if !faultAt.IsZero() {
		fmt.Fprintf(w, "  fault after                  %.1fs\n", faultAt.Sub(submitted).Seconds())
	}
	fmt.Fprintf(w, "  jobs claimed more than once  %d (attempts > 1)\n", rerun)
	if d.o.mode == "endpoint" {
		for _, wk := range []string{"w1", "w2"} {
			fmt.Fprintf(w, "  %s: endpoint taken out %d×, back in rotation %d× (1 at start-up per endpoint), jobs handed back %d\n", wk,
				len(d.logLines(wk, "endpoint taken out of rotation")), len(d.logLines(wk, "endpoint in rotation")), len(d.logLines(wk, "job handed back")))
		}
	}
	fmt.Fprintf(w, "  jobs with != 1 end event     %d\n", multiEnd)
	fmt.Fprintf(w, "  dead-lettered                %d\n", dead)
	fmt.Fprintf(w, "  all jobs final after         %.1fs from submit\n", allDone.Sub(submitted).Seconds())
	fmt.Fprintf(w, "  usage rows                   %d (distinct job ids %d, duplicates %d)\n", u.rows, u.distinct, u.rows-u.distinct)
	fmt.Fprintf(w, "  usage rows by status         %v\n", u.byStatus)
	fmt.Fprintf(w, "  usage job ids missing/extra  %d / %d\n", len(u.missing), len(u.extra))
	fmt.Fprintf(w, "  tokens billed, succeeded     %d (expected %d)\n\n", u.succeededTokens, int64(byStatus[sluice.JobSucceeded])*int64(d.o.maxTokens))

	var errs []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	check(billedJobs == len(ids), "%d of %d jobs ended succeeded or failed", billedJobs, len(ids))
	switch d.o.mode {
	case "failures":
	case "endpoint":
		// Jobs running on the engine when it died fail with engine_error
		// (never retried on the other engine: a request that crashed one
		// engine could crash the next) and pay what it processed; at most
		// what both workers had in flight there (8 slots plus the margin each).
		engineErr := codes["server_error:"+sluice.CodeEngineError]
		check(byStatus[sluice.JobSucceeded]+engineErr == len(ids), "%d of %d jobs succeeded, %d failed with engine_error, codes %v",
			byStatus[sluice.JobSucceeded], len(ids), engineErr, codes)
		check(engineErr <= 2*(8+4), "%d jobs failed with engine_error: more than were in flight on the engine", engineErr)
	default:
		check(byStatus[sluice.JobSucceeded] == len(ids), "%d of %d jobs succeeded", byStatus[sluice.JobSucceeded], len(ids))
	}
	check(multiEnd == 0, "%d jobs do not have exactly one end event", multiEnd)
	check(u.rows == u.distinct, "%d duplicate usage rows", u.rows-u.distinct)
	check(u.rows == billedJobs, "%d usage rows, want %d", u.rows, billedJobs)
	check(len(u.missing) == 0 && len(u.extra) == 0, "usage job ids differ from the submitted ones: %d missing, %d extra",
		len(u.missing), len(u.extra))
	check(u.byStatus[string(sluice.JobSucceeded)] == byStatus[sluice.JobSucceeded], "usage rows by status %v, jobs %v", u.byStatus, byStatus)
	check(u.succeededTokens == int64(byStatus[sluice.JobSucceeded])*int64(d.o.maxTokens), "succeeded jobs billed %d tokens, want %d",
		u.succeededTokens, int64(byStatus[sluice.JobSucceeded])*int64(d.o.maxTokens))
	return errors.Join(errs...)
}
