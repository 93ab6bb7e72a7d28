// Stands in for modernc.org/sqlite in the tools build: an empty package. The
// simulator imports the real one only to register the "sqlite" driver for its
// response datasets (--dataset-path, --dataset-url), which Sluice never
// configures; with this, such a flag fails with database/sql's "unknown
// driver". The real module is a C-to-Go translation of SQLite (its lib
// package alone is the longest single compile of the simulator's build,
// about 28 s with modernc.org/libc on an empty cache). tools/go.mod replaces
// the module with it.
module modernc.org/sqlite

go 1.24.0
