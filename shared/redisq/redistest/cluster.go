package redistest

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a private 3-master Redis Cluster for one test, which the test
// may stop and start again (a shared cluster must never be): its own free
// ports, its own folder, appendonly so that its data outlives a stop, and
// a 1 s node timeout so that a dead master is noticed quickly.
type Cluster struct {
	tb    testing.TB
	dir   string
	Ports []int
}

// StartCluster starts a private cluster, stopped when the test ends; it
// skips the test when redis-server or redis-cli is not installed.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("%s not installed: %v", bin, err)
		}
	}
	c := &Cluster{tb: tb, dir: tb.TempDir(), Ports: freePorts(tb, 3)}
	tb.Cleanup(c.Stop)
	c.Start()
	addrs := make([]string, len(c.Ports))
	for i, p := range c.Ports {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	if out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK()
	return c
}

// URL is the cluster's first node: a seed address, the usual way to name a
// cluster in REDIS_URL.
func (c *Cluster) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d", c.Ports[0]) }

// Start starts every node not running, with its configuration and data
// from before.
func (c *Cluster) Start() {
	c.tb.Helper()
	for _, p := range c.Ports {
		if c.ping(p) == nil {
			continue
		}
		dir := filepath.Join(c.dir, strconv.Itoa(p))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			c.tb.Fatal(err)
		}
		cmd := exec.Command("redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", strconv.Itoa(p),
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "1000",
			"--appendonly", "yes", "--save", "", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
		if out, err := cmd.CombinedOutput(); err != nil {
			c.tb.Fatalf("redis-server on %d: %v\n%s", p, err, out)
		}
	}
	for _, p := range c.Ports {
		deadline := time.Now().Add(10 * time.Second)
		for c.ping(p) != nil {
			if time.Now().After(deadline) {
				c.tb.Fatalf("redis-server on %d did not start (log in %s)", p, c.dir)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// StopNode stops one node as a crash would (no final save; the appendonly
// file keeps what was written).
func (c *Cluster) StopNode(port int) {
	exec.Command("redis-cli", "-p", strconv.Itoa(port), "shutdown", "nosave").Run() //nolint:errcheck
}

// Stop stops every node.
func (c *Cluster) Stop() {
	for _, p := range c.Ports {
		c.StopNode(p)
	}
}

// WaitOK waits until every node says cluster_state:ok.
func (c *Cluster) WaitOK() {
	c.tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range c.Ports {
		for {
			out, _ := exec.Command("redis-cli", "-p", strconv.Itoa(p), "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				c.tb.Fatalf("node %d: cluster_state not ok within 30s:\n%s", p, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (c *Cluster) ping(port int) error {
	r := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), MaxRetries: -1})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return r.Ping(ctx).Err()
}

// freePorts returns n ports free now, each with port+10000 (the cluster
// bus) free too, both below Linux's ephemeral range (32768 and up): a node
// a test stops and starts again must get its port back, and while it is
// down any outgoing connection on the machine could be given a port from
// that range as its own (TestClusterDownAnswers503AndRecovers once failed
// so under make test). Another process may still take one before
// redis-server binds it; the test then fails at start rather than
// misbehaving.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	for tries := 0; len(ports) < n && tries < 500; tries++ {
		p := 12000 + mrand.IntN(10000) // bus 22000-31999
		if slices.Contains(ports, p) {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			l.Close()
			continue
		}
		bus.Close()
		l.Close()
		ports = append(ports, p)
	}
	if len(ports) < n {
		tb.Fatal("no free ports for a Redis Cluster")
	}
	return ports
}
