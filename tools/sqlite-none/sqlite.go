// Package sqlite is empty: no database/sql driver is registered.
package sqlite
