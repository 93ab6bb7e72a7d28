// Package archtest holds the tests that keep Sluice's architecture as
// docs/ARCHITECTURE.md draws it: one package builds Redis keys, Lua scripts
// get every key through KEYS, and the functions and telemetry depend on the
// domain, not on the stores. It has no code of its own.
package archtest
