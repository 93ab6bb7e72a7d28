// Stands in for github.com/testcontainers/testcontainers-go in the tools
// build. The simulator imports it only from pkg/tokenizer/test_utils.go, a
// helper for its own tests that starts a vLLM render container with Docker;
// nothing the simulator's binary runs reaches it. The real module pulls in
// the Docker client and about 90 packages (about 30 s of compiling on an
// empty cache). This one has the few names that file uses, and Run always
// fails. tools/go.mod replaces the module with it.
module github.com/testcontainers/testcontainers-go

go 1.24.0
