package postgres

import (
	"net/url"
	"strings"
)

// EncodeQuery encodes a connection URL's query the way pgx and libpq read
// it: url.Values.Encode writes a space as +, which both keep as a literal
// +, so options=-c%20statement_timeout%3D5s would reach the server as
// "-c+statement_timeout=5s". Every place that rewrites a DATABASE_URL's
// query (backup's pg_dump target, the tests' search_path) goes through it.
func EncodeQuery(q url.Values) string {
	return strings.ReplaceAll(q.Encode(), "+", "%20")
}
