// A trim of sigs.k8s.io/controller-runtime v0.23.3 (Apache-2.0, LICENSE):
// only the packages the simulator imports (pkg/log, pkg/log/zap,
// pkg/metrics), copied unchanged, less pkg/metrics' client-go adapters. The
// real pkg/metrics registers leader-election metrics, which pulls in the
// whole Kubernetes clientset and its informers; the simulator only uses
// metrics.Registry. tools/go.mod replaces controller-runtime with this.
module sigs.k8s.io/controller-runtime

go 1.24.0

require (
	github.com/go-logr/logr v1.4.3
	github.com/go-logr/zapr v1.3.0
	github.com/prometheus/client_golang v1.23.2
	go.uber.org/zap v1.27.0
	k8s.io/apimachinery v0.35.0
)
