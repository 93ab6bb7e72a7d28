// Package pglocal finds the installed PostgreSQL server binaries and the
// user to run them as. It is shared by the local stack's private cluster
// (internal/devstack) and the tests' private primary and replica
// (shared/postgres/pgtest), so both launch PostgreSQL the same way. It
// imports only the standard library, and lives under shared/ because the
// functions' build contexts (openfaas.yml copy) carry only shared/.
package pglocal

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// BinDir is the folder of the installed PostgreSQL server binaries
// (initdb, pg_ctl, postgres, pg_basebackup); the error says how to install
// them.
func BinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server binaries not found; install them with: apt-get install -y postgresql")
}

// Credential is who PostgreSQL runs as: nil (this process's user) unless
// this process is root, which initdb and postgres refuse; then the
// "postgres" user, or "nobody".
func Credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and no unprivileged user (postgres or nobody) exists for PostgreSQL")
}

// Hand gives dir and everything under it to cred's user, and makes the
// folders above it traversable, so PostgreSQL running as that user can
// use it. With cred nil there is nothing to do.
func Hand(dir string, cred *syscall.Credential) {
	if cred == nil {
		return
	}
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			os.Chmod(d, fi.Mode().Perm()|0o011) //nolint:errcheck // best effort: initdb reports what it cannot reach
		}
	}
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error { //nolint:errcheck
		if err == nil {
			os.Lchown(p, int(cred.Uid), int(cred.Gid)) //nolint:errcheck
		}
		return nil
	})
}
