// Package sluice holds Sluice's domain: the types every function and the
// worker share (principals, jobs, usage), the interfaces implemented by the
// storage packages, and the one error type with its codes.
//
// It imports only the standard library, so any package may depend on it
// without pulling in a driver (the layout of benbjohnson/wtf).
package sluice
