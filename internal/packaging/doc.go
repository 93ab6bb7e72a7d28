// Package packaging holds no code, only tests of how Sluice is built and
// shipped: the OpenFaaS template and stack file (openfaas.yml), the shrinkwrap
// layout faas-cli produces from them, and the GPU worker's Kubernetes
// manifests. They catch packaging breakage without Docker or a cluster.
package packaging
