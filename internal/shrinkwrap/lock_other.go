//go:build !unix

package shrinkwrap

import "context"

// lockBuilds is a no-op where flock(2) does not exist: concurrent builds of
// one binary then each link it.
func lockBuilds(context.Context) (func(), error) { return func() {}, nil }
