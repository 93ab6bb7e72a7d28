// Stands in for github.com/onsi/gomega in the tools build. The simulator
// imports it only from two helpers for its own tests
// (pkg/common/test_utils.go, pkg/kv-cache/kv_test_helper.go), which its
// binary never calls; with ginkgo (tools/ginkgo-none) the real modules pull
// in golang.org/x/tools' go/packages and about 40 packages. This one has the
// few names those helpers use, with the same meaning. tools/go.mod replaces
// the module with it.
module github.com/onsi/gomega

go 1.24.0
