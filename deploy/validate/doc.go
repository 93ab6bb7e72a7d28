// Package validate decodes Sluice's Kubernetes manifests strictly into the
// Kubernetes API types (k8s.io/api), so a misspelt or misplaced field fails a
// test instead of being dropped by the API server. It is its own module so
// the main module does not carry the Kubernetes API's dependencies; `make
// test` runs it.
package validate
