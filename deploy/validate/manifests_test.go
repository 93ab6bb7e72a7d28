package validate

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// objects are the manifests' documents, decoded into their API types.
type objects struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	ingresses   []*networkingv1.Ingress
	cronJobs    []*batchv1.CronJob
}

// decode reads one document into its kind's API type, strictly: unknown or
// duplicate fields are errors.
func (o *objects) decode(doc []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return err
	}
	var into any
	want := ""
	switch head.Kind {
	case "Deployment":
		into, want = add(&o.deployments), "apps/v1"
	case "Service":
		into, want = add(&o.services), "v1"
	case "ConfigMap":
		into, want = add(&o.configMaps), "v1"
	case "PodDisruptionBudget":
		into, want = add(&o.pdbs), "policy/v1"
	case "HorizontalPodAutoscaler":
		into, want = add(&o.hpas), "autoscaling/v2"
	case "Ingress":
		into, want = add(&o.ingresses), "networking.k8s.io/v1"
	case "CronJob":
		into, want = add(&o.cronJobs), "batch/v1"
	default:
		return fmt.Errorf("kind %q: add it to the validator", head.Kind)
	}
	if head.APIVersion != want {
		return fmt.Errorf("%s: apiVersion %q, want %q", head.Kind, head.APIVersion, want)
	}
	return yaml.UnmarshalStrict(doc, into)
}

// add appends a new zero object to list and returns it to decode into.
func add[T any](list *[]*T) any {
	v := new(T)
	*list = append(*list, v)
	return v
}

func load(t *testing.T) *objects {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in ../kubernetes (%v)", err)
	}
	o := &objects{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(raw), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			if err := o.decode([]byte(doc)); err != nil {
				t.Errorf("%s document %d: %v", filepath.Base(f), i, err)
			}
		}
	}
	return o
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestStrictDecodingCatchesTypos(t *testing.T) {
	t.Parallel()
	o := &objects{}
	typo := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"
	if err := o.decode([]byte(typo)); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("a misspelt field decoded without error: %v", err)
	}
}

func TestManifests(t *testing.T) {
	t.Parallel()
	o := load(t)
	if len(o.deployments) == 0 || len(o.pdbs) == 0 || len(o.hpas) == 0 || len(o.services) == 0 || len(o.ingresses) == 0 {
		t.Fatalf("want Deployments, PDBs, HPAs, Services and an Ingress; got %d/%d/%d/%d/%d",
			len(o.deployments), len(o.pdbs), len(o.hpas), len(o.services), len(o.ingresses))
	}
	byName := map[string]*appsv1.Deployment{}
	for _, d := range o.deployments {
		byName[d.Name] = d
		sel, err := metaSelector(d.Spec.Selector.MatchLabels)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("deployment %s: selector does not match its pods (%v)", d.Name, err)
		}
		var gpus int
		for _, c := range d.Spec.Template.Spec.Containers {
			r := c.Resources
			if r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: memory request and limit are required", d.Name, c.Name)
			}
			if g, ok := r.Limits["nvidia.com/gpu"]; ok {
				gpus += int(g.Value())
				if rq := r.Requests["nvidia.com/gpu"]; rq.Cmp(g) != 0 {
					t.Errorf("%s/%s: GPU request %s != limit %s", d.Name, c.Name, rq.String(), g.String())
				}
				// The design: 16Gi requested, 32Gi limit beside each GPU.
				if !r.Requests.Memory().Equal(resource.MustParse("16Gi")) || !r.Limits.Memory().Equal(resource.MustParse("32Gi")) {
					t.Errorf("%s/%s: memory %s/%s, want 16Gi/32Gi", d.Name, c.Name, r.Requests.Memory(), r.Limits.Memory())
				}
			}
		}
		if gpus != 1 {
			t.Errorf("deployment %s: %d GPUs per pod, want one engine per GPU", d.Name, gpus)
		}
	}
	for _, h := range o.hpas {
		d := byName[h.Spec.ScaleTargetRef.Name]
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || d == nil {
			t.Errorf("HPA %s targets %+v, which is not one of the Deployments", h.Name, h.Spec.ScaleTargetRef)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HPA %s: replicas %v..%d", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		if d != nil && d.Spec.Replicas != nil {
			t.Errorf("deployment %s sets replicas; HPA %s owns the count", d.Name, h.Name)
		}
	}
	selectsAPod := func(kind, name string, matchLabels map[string]string) {
		sel, err := metaSelector(matchLabels)
		if err != nil || len(matchLabels) == 0 {
			t.Errorf("%s %s: bad selector %v (%v)", kind, name, matchLabels, err)
			return
		}
		for _, d := range o.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				return
			}
		}
		t.Errorf("%s %s: selector %v matches no Deployment's pods", kind, name, matchLabels)
	}
	for _, p := range o.pdbs {
		selectsAPod("PodDisruptionBudget", p.Name, p.Spec.Selector.MatchLabels)
		if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
			t.Errorf("PDB %s: neither minAvailable nor maxUnavailable", p.Name)
		}
	}
	for _, s := range o.services {
		selectsAPod("Service", s.Name, s.Spec.Selector)
		for _, port := range s.Spec.Ports {
			if port.TargetPort.StrVal != "" && !namedPortExists(o, s.Spec.Selector, port.TargetPort.StrVal) {
				t.Errorf("service %s: targetPort %q is no container port of its pods", s.Name, port.TargetPort.StrVal)
			}
		}
	}
	for _, ing := range o.ingresses {
		checkIngress(t, ing)
	}
	if len(o.cronJobs) == 0 {
		t.Error("no backup CronJob")
	}
	for _, c := range o.cronJobs {
		pod := c.Spec.JobTemplate.Spec.Template.Spec
		if c.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent || len(pod.Containers) != 1 ||
			strings.Join(pod.Containers[0].Args, " ") != "backup" {
			t.Errorf("CronJob %s: want one `sluice backup` at a time, got %+v", c.Name, pod.Containers)
		}
		for _, v := range pod.Volumes {
			if v.ConfigMap != nil && !hasConfigMap(o, v.ConfigMap.Name) {
				t.Errorf("CronJob %s mounts ConfigMap %s, which is not defined", c.Name, v.ConfigMap.Name)
			}
		}
	}
}

func hasConfigMap(o *objects, name string) bool {
	for _, c := range o.configMaps {
		if c.Name == name {
			return true
		}
	}
	return false
}

// checkIngress: TLS for every host, and /v1 reaching submit through the
// OpenFaaS gateway.
func checkIngress(t *testing.T, ing *networkingv1.Ingress) {
	tlsHosts := map[string]bool{}
	for _, tls := range ing.Spec.TLS {
		if tls.SecretName == "" {
			t.Errorf("ingress %s: TLS without a secret", ing.Name)
		}
		for _, h := range tls.Hosts {
			tlsHosts[h] = true
		}
	}
	v1 := false
	for _, rule := range ing.Spec.Rules {
		if !tlsHosts[rule.Host] {
			t.Errorf("ingress %s: host %q has no TLS", ing.Name, rule.Host)
		}
		for _, p := range rule.HTTP.Paths {
			svc := p.Backend.Service
			if strings.HasPrefix(p.Path, "/v1") && svc != nil && svc.Name == "gateway" && svc.Port.Number == 8080 {
				v1 = true
			}
		}
	}
	target := ing.Annotations["nginx.ingress.kubernetes.io/rewrite-target"]
	if !v1 || !strings.HasPrefix(target, "/function/submit/v1/") {
		t.Errorf("ingress %s: want /v1 → gateway:8080 rewritten to /function/submit/v1/ (rewrite-target %q)", ing.Name, target)
	}
	if ing.Annotations["nginx.ingress.kubernetes.io/proxy-buffering"] != "off" {
		t.Errorf("ingress %s: streamed completions need proxy-buffering off", ing.Name)
	}
}

func namedPortExists(o *objects, selector map[string]string, name string) bool {
	sel, _ := metaSelector(selector)
	for _, d := range o.deployments {
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, p := range c.Ports {
				if p.Name == name {
					return true
				}
			}
		}
	}
	return false
}

func metaSelector(m map[string]string) (labels.Selector, error) {
	return labels.ValidatedSelectorFromSet(m)
}
