module handler

go 1.26.0

// After shrinkwrap, function/ holds the handler's files plus the module's
// go.mod, go.sum and shared/: it is github.com/sluice-ai/sluice itself.
require github.com/sluice-ai/sluice v0.0.0

replace github.com/sluice-ai/sluice => ./function
