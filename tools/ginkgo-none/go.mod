// Stands in for github.com/onsi/ginkgo/v2 in the tools build: the
// simulator's test helper pkg/kv-cache/kv_test_helper.go calls only Fail,
// and its binary never calls that helper (see tools/gomega-none). tools/go.mod
// replaces the module with it.
module github.com/onsi/ginkgo/v2

go 1.24.0
