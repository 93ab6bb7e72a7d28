// Package postgres is Sluice's PostgreSQL storage: the system of record for
// users, keys and usage. SQL lives in .sql files embedded at build time;
// driver errors are translated to sluice errors here and nowhere else.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-ai/sluice/shared/sluice"
)

//go:embed *.sql
var sqlFS embed.FS

// queries maps the "-- name: X" blocks of every .sql file beside this one
// (queries, identity, ledger, billing, rollup) to their text.
var queries = loadQueries()

func loadQueries() map[string]string {
	out := map[string]string{}
	files, _ := fs.Glob(sqlFS, "*.sql")
	for _, f := range files {
		b, err := sqlFS.ReadFile(f)
		if err != nil {
			panic(err)
		}
		for name, text := range parseQueries(string(b)) {
			if _, dup := out[name]; dup {
				// Two blocks of one name would silently run the wrong SQL.
				panic("postgres: query " + name + " is defined twice (" + f + ")")
			}
			out[name] = text
		}
	}
	return out
}

func parseQueries(src string) map[string]string {
	out := map[string]string{}
	var name string
	var b strings.Builder
	flush := func() {
		if name != "" {
			if _, dup := out[name]; dup {
				panic("postgres: query " + name + " is defined twice")
			}
			out[name] = strings.TrimSpace(b.String())
		}
		b.Reset()
	}
	for _, line := range strings.Split(src, "\n") {
		if n, ok := strings.CutPrefix(line, "-- name: "); ok {
			flush()
			name = strings.TrimSpace(n)
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	flush()
	return out
}

func q(name string) string {
	s, ok := queries[name]
	if !ok {
		panic("postgres: no query named " + name)
	}
	return s
}

// DB is the PostgreSQL store.
type DB struct {
	Pool *pgxpool.Pool
}

// Open connects to url and checks the connection.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DATABASE_URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// Ping checks the database is reachable.
func (db *DB) Ping(ctx context.Context) error { return translate(db.Pool.Ping(ctx)) }

// translate maps driver errors to sluice errors at the storage edge.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return sluice.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return &sluice.Error{Kind: sluice.KindConflict, Code: sluice.CodeConflict, Message: "Already exists.", Err: err}
		case "22P02", "23514", "22001", "23503", "23502":
			return &sluice.Error{Kind: sluice.KindInvalid, Code: sluice.CodeInvalidValue, Message: "Invalid value.", Err: err}
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return sluice.Unavailable("The database is unavailable.", err)
}
