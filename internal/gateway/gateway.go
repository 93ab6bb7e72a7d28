// Package gateway is a local OpenFaaS provider: it serves the gateway API
// (faas-provider's routes) so that faas-cli and go-sdk can deploy, list,
// describe, invoke and remove Sluice's functions on a machine without
// containers. Each deployed function is built from its shrinkwrapped context
// (the image build's input) and runs as its own process, its secrets as
// files, exactly one replica.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/openfaas/faas-provider/proxy"
	"github.com/openfaas/faas-provider/types"
	"github.com/openfaas/go-sdk/stack"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/shrinkwrap"
)

// Namespace is the only namespace this provider has, OpenFaaS's default.
const Namespace = "openfaas-fn"

// PIDAnnotation carries a function's process id in list and describe
// answers, so an operator (or a test) can see the process behind it.
const PIDAnnotation = "com.sluice.pid"

// stopTimeout bounds a function's graceful shutdown after SIGTERM.
const stopTimeout = 15 * time.Second

var secretName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// Provider runs functions of one stack file as local processes.
type Provider struct {
	stack *stack.Services
	dir   string // state: build/, bin/, secrets/, run/<fn>/, logs/
	log   *slog.Logger

	buildMu sync.Mutex // one shrinkwrap+build at a time: builds share a folder and two cores
	mu      sync.Mutex
	fns     map[string]*instance
}

type instance struct {
	spec    types.FunctionDeployment
	addr    string // 127.0.0.1:port
	cmd     *exec.Cmd
	exited  chan struct{}
	created time.Time
}

// New prepares a provider for the functions in stackFile. Like faas-cli it
// must run from the stack file's folder (the handler paths are relative).
func New(stackFile, dir string, log *slog.Logger) (*Provider, error) {
	s, err := shrinkwrap.Load(stackFile)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"build", "bin", "secrets", "run", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	return &Provider{stack: s, dir: dir, log: log, fns: map[string]*instance{}}, nil
}

// Handlers returns the provider's implementation of the gateway API.
func (p *Provider) Handlers(cfg types.FaaSConfig) *types.FaaSHandlers {
	return &types.FaaSHandlers{
		FunctionProxy:  proxy.NewHandlerFunc(cfg, resolver{p}, false),
		FunctionLister: p.list,
		DeployFunction: p.deploy(false),
		UpdateFunction: p.deploy(true),
		DeleteFunction: p.delete,
		FunctionStatus: p.describe,
		ScaleFunction:  p.scale,
		Secrets:        p.secrets,
		Logs: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "logs are in "+filepath.Join(p.dir, "logs"), http.StatusNotImplemented)
		},
		ListNamespaces: func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, []string{Namespace}) },
		Health:         func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) },
		Info: func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, types.ProviderInfo{Name: "sluice-gateway", Orchestration: "process",
				Version: &types.VersionInfo{Release: "dev", SHA: "dev"}})
		},
	}
}

// Close stops every function process.
func (p *Provider) Close() {
	p.mu.Lock()
	fns := p.fns
	p.fns = map[string]*instance{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range fns {
		wg.Go(func() { in.stop() })
	}
	wg.Wait()
}

func (p *Provider) deploy(update bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var spec types.FunctionDeployment
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&spec); err != nil {
			http.Error(w, "invalid FunctionDeployment: "+err.Error(), http.StatusBadRequest)
			return
		}
		if status, err := p.checkSpec(&spec); err != nil {
			http.Error(w, err.Error(), status)
			return
		}
		p.mu.Lock()
		_, exists := p.fns[spec.Service]
		p.mu.Unlock()
		if update && !exists {
			// faas-cli deploy PUTs first and POSTs on 404.
			http.Error(w, "function not found: "+spec.Service, http.StatusNotFound)
			return
		}
		in, err := p.start(r.Context(), spec)
		if err != nil {
			p.log.ErrorContext(r.Context(), "gateway: deploy", slog.String("function", spec.Service), slog.String("err", err.Error()))
			http.Error(w, fmt.Sprintf("deploy %s: %v", spec.Service, err), http.StatusInternalServerError)
			return
		}
		p.mu.Lock()
		old := p.fns[spec.Service]
		p.fns[spec.Service] = in
		p.mu.Unlock()
		if old != nil {
			old.stop()
		}
		p.log.InfoContext(r.Context(), "gateway: deployed", slog.String("function", spec.Service),
			slog.Int("pid", in.cmd.Process.Pid), slog.String("addr", in.addr))
		w.WriteHeader(http.StatusAccepted)
	}
}

// checkSpec accepts only the stack's functions in the one namespace, with
// secrets that exist: the handler is built from the stack, never from an
// image, so nothing else could run.
func (p *Provider) checkSpec(spec *types.FunctionDeployment) (int, error) {
	if spec.Namespace != "" && spec.Namespace != Namespace {
		return http.StatusBadRequest, fmt.Errorf("namespace %q: only %s exists", spec.Namespace, Namespace)
	}
	spec.Namespace = Namespace
	if _, ok := p.stack.Functions[spec.Service]; !ok {
		return http.StatusBadRequest, fmt.Errorf("function %q is not in the stack file", spec.Service)
	}
	for _, s := range spec.Secrets {
		if _, err := os.Stat(p.secretPath(s)); err != nil {
			return http.StatusBadRequest, fmt.Errorf("secret %q does not exist; create it first", s)
		}
	}
	return 0, nil
}

// start builds the function from its shrinkwrapped context and runs it.
func (p *Provider) start(ctx context.Context, spec types.FunctionDeployment) (*instance, error) {
	bin := filepath.Join(p.dir, "bin", spec.Service)
	p.buildMu.Lock()
	build, err := shrinkwrap.Context(p.stack, spec.Service, filepath.Join(p.dir, "build"))
	if err == nil {
		err = shrinkwrap.Build(ctx, build, bin)
	}
	p.buildMu.Unlock()
	if err != nil {
		return nil, err
	}

	// Secrets as files, like /var/openfaas/secrets/: a copy per deployment,
	// so removing a secret later does not pull it from a running function.
	run := filepath.Join(p.dir, "run", spec.Service)
	if err := os.RemoveAll(run); err != nil {
		return nil, err
	}
	secrets := filepath.Join(run, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return nil, err
	}
	for _, s := range spec.Secrets {
		b, err := os.ReadFile(p.secretPath(s))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(secrets, s), b, 0o400); err != nil {
			return nil, err
		}
	}
	port, err := devstack.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logf, err := os.OpenFile(filepath.Join(p.dir, "logs", spec.Service+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor

	// A container's environment: what the deployment sets, nothing of the
	// gateway's own, plus where to listen and where the secrets are.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + run}
	for k, v := range spec.EnvVars {
		env = append(env, k+"="+v)
	}
	env = append(env, "upstream_url=http://"+addr, "SLUICE_SECRETS_DIR="+secrets)
	cmd := exec.Command(bin)
	cmd.Dir = run
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	in := &instance{spec: spec, addr: addr, cmd: cmd, exited: make(chan struct{}), created: time.Now()}
	go func() { cmd.Wait(); close(in.exited) }() //nolint:errcheck // the exit is seen through exited
	if err := in.waitReady(ctx); err != nil {
		in.stop()
		return nil, err
	}
	return in, nil
}

// waitReady waits until the function accepts connections.
func (in *instance) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", in.addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-in.exited:
			return fmt.Errorf("the function exited at start: %v", in.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("the function did not listen on %s: %w", in.addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, as the kubelet does, and kills after stopTimeout.
func (in *instance) stop() {
	in.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited already
	select {
	case <-in.exited:
	case <-time.After(stopTimeout):
		in.cmd.Process.Kill() //nolint:errcheck
		<-in.exited
	}
}

func (in *instance) status() types.FunctionStatus {
	s := in.spec
	ann := map[string]string{}
	if s.Annotations != nil {
		for k, v := range *s.Annotations {
			ann[k] = v
		}
	}
	ann[PIDAnnotation] = strconv.Itoa(in.cmd.Process.Pid)
	var avail uint64
	select {
	case <-in.exited:
	default:
		avail = 1
	}
	return types.FunctionStatus{Name: s.Service, Image: s.Image, Namespace: s.Namespace, EnvProcess: s.EnvProcess,
		EnvVars: s.EnvVars, Constraints: s.Constraints, Secrets: s.Secrets, Labels: s.Labels, Annotations: &ann,
		Limits: s.Limits, Requests: s.Requests, ReadOnlyRootFilesystem: s.ReadOnlyRootFilesystem,
		Replicas: 1, AvailableReplicas: avail, CreatedAt: in.created}
}

func (p *Provider) list(w http.ResponseWriter, r *http.Request) {
	if !namespaceOK(w, r.URL.Query().Get("namespace")) {
		return
	}
	p.mu.Lock()
	out := make([]types.FunctionStatus, 0, len(p.fns))
	for _, in := range p.fns {
		out = append(out, in.status())
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b types.FunctionStatus) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, out)
}

func (p *Provider) describe(w http.ResponseWriter, r *http.Request) {
	if !namespaceOK(w, r.URL.Query().Get("namespace")) {
		return
	}
	p.mu.Lock()
	in := p.fns[mux.Vars(r)["name"]]
	p.mu.Unlock()
	if in == nil {
		http.Error(w, "function not found", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, in.status())
}

func (p *Provider) delete(w http.ResponseWriter, r *http.Request) {
	var req types.DeleteFunctionRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "invalid request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !namespaceOK(w, req.Namespace) {
		return
	}
	p.mu.Lock()
	in := p.fns[req.FunctionName]
	delete(p.fns, req.FunctionName)
	p.mu.Unlock()
	if in == nil {
		http.Error(w, "function not found", http.StatusNotFound)
		return
	}
	in.stop()
	os.RemoveAll(filepath.Join(p.dir, "run", req.FunctionName)) //nolint:errcheck // its secrets go with it
	p.log.InfoContext(r.Context(), "gateway: removed", slog.String("function", req.FunctionName))
	w.WriteHeader(http.StatusAccepted)
}

// scale accepts the one replica a process provider has.
func (p *Provider) scale(w http.ResponseWriter, r *http.Request) {
	var req types.ScaleServiceRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "invalid request: "+err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	_, ok := p.fns[mux.Vars(r)["name"]]
	p.mu.Unlock()
	switch {
	case !ok:
		http.Error(w, "function not found", http.StatusNotFound)
	case req.Replicas != 1:
		http.Error(w, "sluice gateway runs exactly one replica per function", http.StatusBadRequest)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

func (p *Provider) secretPath(name string) string {
	return filepath.Join(p.dir, "secrets", name)
}

// secrets stores secrets as 0600 files; values are never listed or logged.
func (p *Provider) secrets(w http.ResponseWriter, r *http.Request) {
	if !namespaceOK(w, r.URL.Query().Get("namespace")) {
		return
	}
	if r.Method == http.MethodGet {
		entries, err := os.ReadDir(filepath.Join(p.dir, "secrets"))
		if err != nil {
			http.Error(w, "cannot list secrets", http.StatusInternalServerError)
			return
		}
		out := make([]types.Secret, 0, len(entries))
		for _, e := range entries {
			out = append(out, types.Secret{Name: e.Name(), Namespace: Namespace})
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	var s types.Secret
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&s); err != nil {
		http.Error(w, "invalid secret: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !secretName.MatchString(s.Name) || !namespaceOK(w, s.Namespace) {
		if !secretName.MatchString(s.Name) {
			http.Error(w, "invalid secret name", http.StatusBadRequest)
		}
		return
	}
	path := p.secretPath(s.Name)
	_, statErr := os.Stat(path)
	exists := statErr == nil
	switch r.Method {
	case http.MethodDelete:
		if !exists {
			http.Error(w, "secret not found", http.StatusNotFound)
			return
		}
		if err := os.Remove(path); err != nil {
			http.Error(w, "cannot remove secret", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		return
	case http.MethodPost:
		if exists {
			http.Error(w, "secret exists", http.StatusConflict)
			return
		}
	case http.MethodPut:
		if !exists {
			http.Error(w, "secret not found", http.StatusNotFound)
			return
		}
	}
	value := s.RawValue
	if s.Value != "" {
		value = []byte(s.Value)
	}
	if err := os.WriteFile(path, value, 0o600); err != nil {
		http.Error(w, "cannot store secret", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func namespaceOK(w http.ResponseWriter, ns string) bool {
	if ns != "" && ns != Namespace {
		http.Error(w, fmt.Sprintf("namespace %q: only %s exists", ns, Namespace), http.StatusBadRequest)
		return false
	}
	return true
}

// resolver maps "name" or "name.openfaas-fn" to the function's process.
type resolver struct{ p *Provider }

func (r resolver) Resolve(name string) (url.URL, error) {
	if n, ns, ok := strings.Cut(name, "."); ok {
		if ns != Namespace {
			return url.URL{}, fmt.Errorf("namespace %q", ns)
		}
		name = n
	}
	r.p.mu.Lock()
	in := r.p.fns[name]
	r.p.mu.Unlock()
	if in == nil {
		return url.URL{}, errors.New("not deployed")
	}
	return url.URL{Scheme: "http", Host: in.addr}, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client went away
}
