package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// The files a running stack keeps in its state folder (default .sluice).
const (
	// StateFile describes the running stack, for the CLI in other shells.
	StateFile = "dev.json"
	// LockFile is held (flock) by the one stack using the folder.
	LockFile = "lock"
	// AdminKeyFile holds the operator's admin key (0600).
	AdminKeyFile = "admin.key"
	// PepperFile holds the API key pepper when SLUICE_KEY_PEPPER is not set.
	PepperFile = "pepper"
	// adminKeyName names the admin key a stack mints, so the next start can
	// revoke the keys it replaces.
	adminKeyName = "sluice dev admin"
)

// ErrLocked is returned by Start when another stack holds the state folder.
var ErrLocked = errors.New("another `sluice dev` is using this state folder")

// State is what a running stack writes to <dir>/dev.json: where the CLI
// finds its database, Redis and pepper from any folder inside the checkout.
// Passwords in the URLs are never written: a URL that had one says so, and
// the CLI then needs the same DATABASE_URL / REDIS_URL in its environment.
type State struct {
	PID              int       `json:"pid"`
	URL              string    `json:"url"`
	Dir              string    `json:"dir"`
	DatabaseURL      string    `json:"database_url"`
	DatabaseEmbedded bool      `json:"database_embedded"`
	DatabaseRedacted bool      `json:"database_password_omitted,omitempty"`
	RedisURL         string    `json:"redis_url"`
	RedisEmbedded    bool      `json:"redis_embedded"`
	RedisRedacted    bool      `json:"redis_password_omitted,omitempty"`
	PepperFile       string    `json:"pepper_file,omitempty"` // empty: SLUICE_KEY_PEPPER was set
	AdminKeyFile     string    `json:"admin_key_file"`
	StartedAt        time.Time `json:"started_at"`
}

// redact drops a URL's password; it reports whether there was one.
func redact(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw, false
	}
	if _, ok := u.User.Password(); !ok {
		return raw, false
	}
	u.User = url.User(u.User.Username())
	return u.String(), true
}

// ReadState reads <dir>/dev.json.
func ReadState(dir string) (State, error) {
	var s State
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	return s, nil
}

// Running reports whether a stack holds dir's lock right now.
func Running(dir string) bool {
	f, err := os.Open(filepath.Join(dir, LockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck
	return false
}

// FindState looks for a running stack's state folder (.sluice with a
// dev.json whose lock is held) in from and each folder above it, up to the
// repository root (the first folder with a .git); it returns the folder and
// its state, or ok false when none is running there.
func FindState(from string) (dir string, st State, ok bool) {
	from, err := filepath.Abs(from)
	if err != nil {
		return "", st, false
	}
	for d := from; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, ".sluice")
		if s, err := ReadState(cand); err == nil && Running(cand) {
			return cand, s, true
		}
		if _, err := os.Stat(filepath.Join(d, ".git")); err == nil || d == filepath.Dir(d) {
			return "", st, false
		}
	}
}

// lock takes dir's lock without waiting; the returned file holds it until
// closed. Nothing in dir is changed when another stack holds it.
func lock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if s, err := ReadState(dir); err == nil {
				return nil, fmt.Errorf("%w (%s, pid %d, serving %s); stop it first (Ctrl-C in its terminal) or use another --dir",
					ErrLocked, dir, s.PID, s.URL)
			}
			return nil, fmt.Errorf("%w (%s); stop it first or use another --dir", ErrLocked, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", filepath.Join(dir, LockFile), err)
	}
	return f, nil
}

func writeState(dir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, StateFile))
}

// adminKey returns the operator's admin key: the one in <dir>/admin.key
// while it is still live, else a new one, revoking the admin keys earlier
// starts minted, so one admin key is live per state folder.
func adminKey(ctx context.Context, d *app.Deps, dir string) (key string, reused bool, err error) {
	admin, err := d.DB.UpsertUser(ctx, "admin@sluice.local", sluice.TierEnterprise, sluice.RoleAdmin)
	if err != nil {
		return "", false, err
	}
	path := filepath.Join(dir, AdminKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		k := strings.TrimSpace(string(b))
		if apikey.Parse(k) == nil {
			if p, err := d.DB.LookupKey(ctx, apikey.Hash([]byte(d.Config.Env.KeyPepper), k)); err == nil && p.UserID == admin.ID && !p.Disabled {
				return k, true, nil
			}
		}
	}
	key, id, err := createKey(ctx, d, admin.ID, adminKeyName)
	if err != nil {
		return "", false, err
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, err
	}
	keys, err := d.DB.ListKeys(ctx, admin.ID)
	if err != nil {
		return "", false, err
	}
	for _, k := range keys {
		if k.Name == adminKeyName && k.RevokedAt == nil && k.ID != id {
			if _, err := d.DB.RevokeKey(ctx, admin.ID, k.ID); err != nil {
				return "", false, err
			}
		}
	}
	return key, false, nil
}
