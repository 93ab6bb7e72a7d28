package packaging_test

import (
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-ai/sluice/shared/config"
)

// The structs below are the subset of the Kubernetes API the manifests use.
// Decoding is strict, so a misspelt or misplaced field (which kubectl would
// reject, or worse, silently drop) fails here without a cluster.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type typeMeta struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type configMap struct {
	typeMeta `yaml:",inline"`
	Data     map[string]string `yaml:"data"`
}

type deployment struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Strategy struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxSurge       string `yaml:"maxSurge"`
				MaxUnavailable string `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int              `yaml:"terminationGracePeriodSeconds"`
	NodeSelector                  map[string]string `yaml:"nodeSelector"`
	Tolerations                   []struct {
		Key      string `yaml:"key"`
		Operator string `yaml:"operator"`
		Value    string `yaml:"value"`
		Effect   string `yaml:"effect"`
	} `yaml:"tolerations"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		EmptyDir *struct {
			Medium    string `yaml:"medium"`
			SizeLimit string `yaml:"sizeLimit"`
		} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *keyRef `yaml:"secretKeyRef"`
			FieldRef     *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		SecretRef    *ref `yaml:"secretRef"`
		ConfigMapRef *ref `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Exec *execAction `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	SecurityContext *struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		RunAsUser                *int  `yaml:"runAsUser"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             *struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type ref struct {
	Name     string `yaml:"name"`
	Optional *bool  `yaml:"optional"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional *bool  `yaml:"optional"`
}

type execAction struct {
	Command []string `yaml:"command"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	Exec                *execAction `yaml:"exec"`
	InitialDelaySeconds int         `yaml:"initialDelaySeconds"`
	PeriodSeconds       int         `yaml:"periodSeconds"`
	TimeoutSeconds      int         `yaml:"timeoutSeconds"`
	FailureThreshold    int         `yaml:"failureThreshold"`
}

type podDisruptionBudget struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		MinAvailable   *string       `yaml:"minAvailable"`
		MaxUnavailable *string       `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type horizontalPodAutoscaler struct {
	typeMeta `yaml:",inline"`
	Spec     struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int `yaml:"minReplicas"`
		MaxReplicas int `yaml:"maxReplicas"`
		Metrics     []struct {
			Type string `yaml:"type"`
			Pods *struct {
				Metric struct {
					Name string `yaml:"name"`
				} `yaml:"metric"`
				Target struct {
					Type         string `yaml:"type"`
					AverageValue string `yaml:"averageValue"`
				} `yaml:"target"`
			} `yaml:"pods"`
		} `yaml:"metrics"`
		Behavior *struct {
			ScaleUp   *scalingRules `yaml:"scaleUp"`
			ScaleDown *scalingRules `yaml:"scaleDown"`
		} `yaml:"behavior"`
	} `yaml:"spec"`
}

type scalingRules struct {
	StabilizationWindowSeconds *int `yaml:"stabilizationWindowSeconds"`
	Policies                   []struct {
		Type          string `yaml:"type"`
		Value         int    `yaml:"value"`
		PeriodSeconds int    `yaml:"periodSeconds"`
	} `yaml:"policies"`
}

// manifests holds gpuworker.yaml's documents, one of each kind.
type manifests struct {
	configMap  *configMap
	deployment *deployment
	pdb        *podDisruptionBudget
	hpa        *horizontalPodAutoscaler
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

func loadManifests(t *testing.T, file string) manifests {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m manifests
	for i, doc := range docSeparator.Split(string(raw), -1) {
		var head typeMeta
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var into any
		want := map[string]string{"ConfigMap": "v1", "Deployment": "apps/v1",
			"PodDisruptionBudget": "policy/v1", "HorizontalPodAutoscaler": "autoscaling/v2"}[head.Kind]
		switch head.Kind {
		case "ConfigMap":
			m.configMap = &configMap{}
			into = m.configMap
		case "Deployment":
			m.deployment = &deployment{}
			into = m.deployment
		case "PodDisruptionBudget":
			m.pdb = &podDisruptionBudget{}
			into = m.pdb
		case "HorizontalPodAutoscaler":
			m.hpa = &horizontalPodAutoscaler{}
			into = m.hpa
		default:
			t.Fatalf("document %d: unexpected kind %q (deploy/validate checks the other files)", i, head.Kind)
		}
		if head.APIVersion != want {
			t.Errorf("%s: apiVersion %q, want %q", head.Kind, head.APIVersion, want)
		}
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		if err := dec.Decode(into); err != nil {
			t.Fatalf("%s %s: %v", head.Kind, head.Metadata.Name, err)
		}
	}
	if m.configMap == nil || m.deployment == nil || m.pdb == nil || m.hpa == nil {
		t.Fatalf("want a ConfigMap, Deployment, PodDisruptionBudget and HorizontalPodAutoscaler, got %+v", m)
	}
	return m
}

func TestGPUWorkerManifests(t *testing.T) {
	t.Parallel()
	m := loadManifests(t, filepath.Join(repoRoot(t), "deploy", "kubernetes", "gpuworker.yaml"))
	dep := m.deployment
	pod := dep.Spec.Template.Spec

	// The worker's configuration is the real thing: it must load.
	worker := findContainer(t, pod.Containers, "worker")
	cfgPath := envValue(worker, "SLUICE_CONFIG")
	cfgFile, ok := m.configMap.Data[path.Base(cfgPath)]
	if !ok {
		t.Fatalf("SLUICE_CONFIG=%q: no such key in ConfigMap %s", cfgPath, m.configMap.Metadata.Name)
	}
	cfg, err := config.Parse([]byte(cfgFile))
	if err != nil {
		t.Fatalf("ConfigMap %s: %v", m.configMap.Metadata.Name, err)
	}
	if !mountsConfigMap(pod, worker, path.Dir(cfgPath), m.configMap.Metadata.Name) {
		t.Errorf("worker: %s is not a mount of ConfigMap %s", path.Dir(cfgPath), m.configMap.Metadata.Name)
	}
	if len(cfg.Worker.Models) != 1 {
		t.Fatalf("worker.models = %q, want the one model this pod's engine serves", cfg.Worker.Models)
	}
	model, _ := cfg.Model(cfg.Worker.Models[0])
	if model == nil || len(model.Endpoints) != 1 {
		t.Fatalf("worker.models[0] %q: want a configured model with one endpoint, got %+v", cfg.Worker.Models[0], model)
	}
	endpoint, err := url.Parse(model.Endpoints[0])
	if err != nil || endpoint.Hostname() != "127.0.0.1" {
		t.Errorf("endpoint %q: want the engine beside the worker, on 127.0.0.1", model.Endpoints[0])
	}
	if len(worker.EnvFrom) == 0 || worker.EnvFrom[0].SecretRef == nil {
		t.Errorf("worker: want DATABASE_URL etc. from a Secret via envFrom")
	}
	if envValue(worker, "SLUICE_WORKER_NAME") != "fieldRef:metadata.name" {
		t.Errorf("worker: SLUICE_WORKER_NAME should be the pod name, unique per consumer")
	}
	if sc := worker.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("worker: want runAsNonRoot")
	}

	// The engine serves exactly what the configuration says it does.
	vllm := findContainer(t, pod.Containers, "vllm")
	if !strings.HasPrefix(vllm.Image, "vllm/vllm-openai:") {
		t.Errorf("vllm image %q", vllm.Image)
	}
	for flag, want := range map[string]string{
		"--served-model-name": model.Name,
		"--max-num-seqs":      strconv.Itoa(model.MaxBatchSize),
		"--max-model-len":     strconv.Itoa(model.MaxModelLen),
		"--port":              endpoint.Port(),
	} {
		if got := flagValue(vllm.Args, flag); got != want {
			t.Errorf("vllm %s = %q, want %q", flag, got, want)
		}
	}
	// vLLM loads only what the init container verified against the signed
	// manifest (sluice model verify --download).
	if len(pod.InitContainers) != 1 {
		t.Fatalf("want one init container verifying the model, got %d", len(pod.InitContainers))
	}
	verify := &pod.InitContainers[0]
	if strings.Join(verify.Args[:2], " ") != "model verify" || flagValue(verify.Args, "--name") != model.Name ||
		flagValue(verify.Args, "--download") == "" || flagValue(vllm.Args, "--model") != flagValue(verify.Args, "--download") {
		t.Errorf("vllm --model %q must be what `sluice model verify --name %s --download` wrote: %q",
			flagValue(vllm.Args, "--model"), model.Name, verify.Args)
	}
	if envValue(verify, "SLUICE_CONFIG") != cfgPath || cfg.Storage.Endpoint == "" {
		t.Errorf("verify-model: want the worker's configuration, with storage set (got %q, %q)", envValue(verify, "SLUICE_CONFIG"), cfg.Storage.Endpoint)
	}
	exposed := false
	for _, p := range vllm.Ports {
		exposed = exposed || strconv.Itoa(p.ContainerPort) == endpoint.Port()
	}
	if !exposed {
		t.Errorf("vllm: no containerPort %s", endpoint.Port())
	}
	r := vllm.Resources
	if r.Requests["nvidia.com/gpu"] != "1" || r.Limits["nvidia.com/gpu"] != "1" {
		t.Errorf("vllm: want nvidia.com/gpu 1 in requests and limits, got %v / %v", r.Requests, r.Limits)
	}
	if r.Requests["memory"] != "16Gi" || r.Limits["memory"] != "32Gi" {
		t.Errorf("vllm memory = %s/%s, want the design's 16Gi request, 32Gi limit", r.Requests["memory"], r.Limits["memory"])
	}
	if p := vllm.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/health" {
		t.Errorf("vllm: want a readiness probe on /health")
	}

	// Shutdown order: the engine outlives the worker's drain, and the kubelet
	// waits for both.
	preStop := time.Duration(0)
	if l := vllm.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Exec != nil {
		if c := l.PreStop.Exec.Command; len(c) == 2 && c[0] == "sleep" {
			n, _ := strconv.Atoi(c[1])
			preStop = time.Duration(n) * time.Second
		}
	}
	if preStop <= cfg.Worker.DrainTimeout {
		t.Errorf("vllm preStop sleep %v must outlast worker.drain_timeout %v", preStop, cfg.Worker.DrainTimeout)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= preStop {
		t.Errorf("terminationGracePeriodSeconds %v must exceed the preStop sleep %v", g, preStop)
	}

	// Selectors and names tie the objects together.
	for k, v := range dep.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("deployment selector %s=%s does not match its pods", k, v)
		}
	}
	if !maps.Equal(m.pdb.Spec.Selector.MatchLabels, dep.Spec.Selector.MatchLabels) {
		t.Errorf("PDB selector %v != deployment selector %v", m.pdb.Spec.Selector.MatchLabels, dep.Spec.Selector.MatchLabels)
	}
	if dep.Spec.Replicas != nil {
		t.Errorf("deployment sets replicas; the HPA owns the count")
	}

	hpa := m.hpa.Spec
	rule := cfg.Autoscaling["inference"]
	if hpa.ScaleTargetRef.Kind != "Deployment" || hpa.ScaleTargetRef.Name != dep.Metadata.Name {
		t.Errorf("HPA targets %+v, want Deployment %s", hpa.ScaleTargetRef, dep.Metadata.Name)
	}
	if hpa.MinReplicas != rule.MinReplicas || hpa.MaxReplicas != rule.MaxReplicas {
		t.Errorf("HPA %d..%d, want the design's inference rule %+v", hpa.MinReplicas, hpa.MaxReplicas, rule)
	}
	if len(hpa.Metrics) != 1 || hpa.Metrics[0].Pods == nil ||
		hpa.Metrics[0].Pods.Metric.Name != "DCGM_FI_DEV_GPU_UTIL" ||
		hpa.Metrics[0].Pods.Target.AverageValue != strings.TrimSuffix(rule.Target, "%") {
		t.Errorf("HPA metrics = %+v, want pods DCGM_FI_DEV_GPU_UTIL at %s", hpa.Metrics, rule.Target)
	}
}

func findContainer(t *testing.T, cs []container, name string) *container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// envValue returns a variable's value, or "fieldRef:<path>" for a field ref.
func envValue(c *container, name string) string {
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		}
		return e.Value
	}
	return ""
}

func flagValue(args []string, flag string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func mountsConfigMap(pod podSpec, c *container, dir, name string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == name {
				return true
			}
		}
	}
	return false
}
