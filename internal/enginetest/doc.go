// Package enginetest puts test doubles between Sluice's worker and a real
// engine (the simulator) to see what the engine is really asked to do.
//
// Proxy (proxy.go) forwards every request unchanged and records it as
// vLLM's Python server reads it: DecodePython keeps exact-case keys and lets
// the last duplicate win, Render re-renders what a chat template makes of
// it (tool and schema JSON as Python's json.dumps writes it), and Covers
// asserts that the funds hold Sluice took covers it. The simulator parses
// JSON as Go does and counts only message text, so without the proxy a test
// could not see an engine running more than was admitted.
//
// Other doubles for engine faults live beside it in this package, one file
// each (faultproxy.go: a proxy that breaks chosen requests).
package enginetest
