package postgres

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// CreateUser stores a new account; an existing email is a conflict.
func (db *DB) CreateUser(ctx context.Context, email, passwordHash, tier, role string) (sluice.User, error) {
	var u sluice.User
	err := db.Pool.QueryRow(ctx, q("CreateUser"), strings.TrimSpace(email), passwordHash, tier, role).
		Scan(&u.ID, &u.Email, &u.Role, &u.Tier, &u.Disabled, &u.CreatedAt)
	return u, translate(err)
}

func scanUserAuth(row pgx.Row) (UserAuth, error) {
	var u UserAuth
	err := row.Scan(&u.ID, &u.Email, &u.Role, &u.Tier, &u.Disabled, &u.CreatedAt,
		&u.PasswordHash, &u.MFAEnabled, &u.MFASecret, &u.MFALastStep)
	return u, translate(err)
}

// UserAuthByEmail returns a live (not deleted) user by email.
func (db *DB) UserAuthByEmail(ctx context.Context, email string) (UserAuth, error) {
	return scanUserAuth(db.Pool.QueryRow(ctx, q("UserAuthByEmail"), strings.TrimSpace(email)))
}

// UserAuthByID returns a live user by id.
func (db *DB) UserAuthByID(ctx context.Context, id string) (UserAuth, error) {
	return scanUserAuth(db.Pool.QueryRow(ctx, q("UserAuthByID"), id))
}

// UserPrincipal returns the principal of a session token's subject.
func (db *DB) UserPrincipal(ctx context.Context, userID string) (sluice.Principal, error) {
	var p sluice.Principal
	err := db.Pool.QueryRow(ctx, q("UserPrincipal"), userID).Scan(principalDest(&p)...)
	return p, translate(err)
}

// principalDest is where a user principal's columns scan to: identity, then
// the user's limit overrides.
func principalDest(p *sluice.Principal) []any {
	return []any{&p.UserID, &p.Email, &p.Role, &p.Tier, &p.Disabled,
		&p.Limits.RequestsPerMinute, &p.Limits.TokensPerMinute, &p.Limits.Concurrency, &p.Limits.OverageCap,
		&p.PeriodStart, &p.PastDueSince}
}

// SetMFASecret stores a sealed TOTP secret awaiting confirmation.
func (db *DB) SetMFASecret(ctx context.Context, userID, sealed string) error {
	_, err := db.Pool.Exec(ctx, q("SetMFASecret"), userID, sealed)
	return translate(err)
}

// SetMFAEnabled turns MFA on (after confirmation) or off (dropping the secret).
func (db *DB) SetMFAEnabled(ctx context.Context, userID string, on bool) error {
	_, err := db.Pool.Exec(ctx, q("SetMFAEnabled"), userID, on)
	return translate(err)
}

// AdvanceMFAStep records step as used; false if it (or a later one) already was.
func (db *DB) AdvanceMFAStep(ctx context.Context, userID string, step int64) (bool, error) {
	tag, err := db.Pool.Exec(ctx, q("AdvanceMFAStep"), userID, step)
	return tag.RowsAffected() == 1, translate(err)
}

// ReplaceRecoveryCodes swaps a user's recovery codes for new hashes.
func (db *DB) ReplaceRecoveryCodes(ctx context.Context, userID string, hashes []string) error {
	return translate(pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, q("DeleteRecoveryCodes"), userID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, q("InsertRecoveryCodes"), userID, hashes)
		return err
	}))
}

// UseRecoveryCode spends a recovery code; false if unknown or spent.
func (db *DB) UseRecoveryCode(ctx context.Context, userID, hash string) (bool, error) {
	tag, err := db.Pool.Exec(ctx, q("UseRecoveryCode"), userID, hash)
	return tag.RowsAffected() == 1, translate(err)
}

// InsertRefreshToken stores a refresh token's hash in its family; mfa
// records that the family's login passed a second factor.
func (db *DB) InsertRefreshToken(ctx context.Context, hash []byte, familyID, userID string, expires time.Time, mfa bool) error {
	_, err := db.Pool.Exec(ctx, q("InsertRefreshToken"), hex.EncodeToString(hash), familyID, userID, expires, mfa)
	return translate(err)
}

// UseRefreshToken spends a live refresh token. If the token exists but was
// already spent or revoked, its whole family is revoked (reuse means theft)
// and reused is true. mfa is whether the family's login passed a second
// factor.
func (db *DB) UseRefreshToken(ctx context.Context, hash []byte) (familyID, userID string, mfa, reused bool, err error) {
	h := hex.EncodeToString(hash)
	err = db.Pool.QueryRow(ctx, q("UseRefreshToken"), h).Scan(&familyID, &userID, &mfa)
	if err == nil {
		return familyID, userID, mfa, false, nil
	}
	if err = translate(err); err != sluice.ErrNotFound {
		return "", "", false, false, err
	}
	if err := db.Pool.QueryRow(ctx, q("RefreshTokenFamily"), h).Scan(&familyID, &userID); err != nil {
		return "", "", false, false, translate(err) // never issued: not found
	}
	if _, err := db.Pool.Exec(ctx, q("RevokeRefreshFamily"), familyID); err != nil {
		return "", "", false, false, translate(err)
	}
	return familyID, userID, false, true, sluice.ErrNotFound
}

// RevokeRefreshFamilyOf revokes the login the token belongs to (logout)
// and returns the login (family) and its user.
func (db *DB) RevokeRefreshFamilyOf(ctx context.Context, hash []byte) (familyID, userID string, err error) {
	if err := db.Pool.QueryRow(ctx, q("RefreshTokenFamily"), hex.EncodeToString(hash)).Scan(&familyID, &userID); err != nil {
		return "", "", translate(err)
	}
	_, err = db.Pool.Exec(ctx, q("RevokeRefreshFamily"), familyID)
	return familyID, userID, translate(err)
}

// SigningKeys lists the active key and the retired keys still inside grace.
func (db *DB) SigningKeys(ctx context.Context, grace time.Duration) ([]SigningKey, error) {
	rows, err := db.Pool.Query(ctx, q("SigningKeys"), grace)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SigningKey, error) {
		var k SigningKey
		err := r.Scan(&k.KID, &k.Public, &k.Private, &k.CreatedAt, &k.RetiredAt)
		return k, err
	})
	return out, translate(err)
}

// RotateSigningKey stores a new key and retires the others, in one transaction.
func (db *DB) RotateSigningKey(ctx context.Context, k SigningKey) error {
	return translate(pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, q("InsertSigningKey"), k.KID, k.Public, k.Private); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, q("RetireSigningKeys"), k.KID)
		return err
	}))
}

// CreateKey stores a key's hash with its scopes and model allowlist.
func (db *DB) CreateKey(ctx context.Context, n NewKey) (sluice.APIKey, error) {
	k := sluice.APIKey{UserID: n.UserID, Name: n.Name, Prefix: n.Prefix, Hash: n.Hash, ExpiresAt: n.ExpiresAt,
		Scopes: nonNil(n.Scopes), Models: nonNil(n.Models), CacheResponses: n.CacheResponses}
	err := db.Pool.QueryRow(ctx, q("CreateKey"), n.UserID, hex.EncodeToString(n.Hash), n.Name, n.Prefix, n.ExpiresAt,
		k.Scopes, k.Models, n.RotatedFrom, n.Limits.RequestsPerMinute, n.Limits.TokensPerMinute, n.Limits.Concurrency,
		n.CacheResponses, n.Max.RequestsPerMinute, n.Max.TokensPerMinute, n.Max.Concurrency).Scan(&k.ID, &k.CreatedAt)
	k.Max = sluice.Limits{RequestsPerMinute: n.Max.RequestsPerMinute, TokensPerMinute: n.Max.TokensPerMinute, Concurrency: n.Max.Concurrency}
	k.Limits = sluice.Limits{RequestsPerMinute: n.Limits.RequestsPerMinute, TokensPerMinute: n.Limits.TokensPerMinute,
		Concurrency: n.Limits.Concurrency}
	return k, translate(err)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// LookupKeyAny returns the principal behind whichever of hashes is stored
// (one hash per pepper during a rotation) and the hash that matched.
func (db *DB) LookupKeyAny(ctx context.Context, hashes [][]byte) (sluice.Principal, []byte, error) {
	hs := make([]string, len(hashes))
	for i, h := range hashes {
		hs[i] = hex.EncodeToString(h)
	}
	var p sluice.Principal
	var matched string
	err := db.Pool.QueryRow(ctx, q("LookupKeyAny"), hs).
		Scan(&p.KeyID, &matched, &p.UserID, &p.Email, &p.Role, &p.Tier, &p.Disabled, &p.Scopes, &p.Models,
			&p.Limits.RequestsPerMinute, &p.Limits.TokensPerMinute, &p.Limits.Concurrency, &p.Limits.OverageCap, &p.CacheResponses,
			&p.PeriodStart, &p.PastDueSince)
	if err != nil {
		return p, nil, translate(err)
	}
	m, err := hex.DecodeString(matched)
	return p, m, err
}

// RehashKey stores a key's hash under the current pepper.
func (db *DB) RehashKey(ctx context.Context, keyID string, hash []byte) error {
	_, err := db.Pool.Exec(ctx, q("RehashKey"), keyID, hex.EncodeToString(hash))
	return translate(err)
}

func scanKey(r pgx.CollectableRow) (sluice.APIKey, error) {
	var k sluice.APIKey
	err := r.Scan(&k.ID, &k.UserID, &k.Name, &k.Prefix, &k.CreatedAt, &k.LastUsedAt, &k.ExpiresAt, &k.RevokedAt, &k.Scopes, &k.Models,
		&k.Limits.RequestsPerMinute, &k.Limits.TokensPerMinute, &k.Limits.Concurrency, &k.CacheResponses,
		&k.Max.RequestsPerMinute, &k.Max.TokensPerMinute, &k.Max.Concurrency)
	return k, err
}

// ListKeys lists a user's keys (never their hashes).
func (db *DB) ListKeys(ctx context.Context, userID string) ([]sluice.APIKey, error) {
	rows, err := db.Pool.Query(ctx, q("ListKeys"), userID)
	if err != nil {
		return nil, translate(err)
	}
	ks, err := pgx.CollectRows(rows, scanKey)
	return ks, translate(err)
}

// GetKey returns one of the user's keys; another user's key is not found.
func (db *DB) GetKey(ctx context.Context, userID, keyID string) (sluice.APIKey, error) {
	rows, err := db.Pool.Query(ctx, q("GetKey"), keyID, userID)
	if err != nil {
		return sluice.APIKey{}, translate(err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, scanKey)
	return k, translate(err)
}

// RevokeAnyKey revokes any user's key (admin) and returns its owner.
func (db *DB) RevokeAnyKey(ctx context.Context, keyID string) (userID string, err error) {
	var h string
	err = db.Pool.QueryRow(ctx, q("RevokeAnyKey"), keyID).Scan(&h, &userID)
	return userID, translate(err)
}

// ExpireKeyBy makes the user's key stop working at until (rotation overlap).
func (db *DB) ExpireKeyBy(ctx context.Context, userID, keyID string, until time.Time) error {
	var h string
	return translate(db.Pool.QueryRow(ctx, q("ExpireKeyBy"), keyID, userID, until).Scan(&h))
}

// ListUsers pages through live users ordered by id, after the given id;
// a non-empty search keeps those whose email contains it (any case).
func (db *DB) ListUsers(ctx context.Context, after, search string, limit int) ([]sluice.User, error) {
	var a *string
	if after != "" {
		a = &after
	}
	rows, err := db.Pool.Query(ctx, q("ListUsers"), a, limit, search)
	if err != nil {
		return nil, translate(err)
	}
	us, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sluice.User, error) { return scanUserLimits(r) })
	return us, translate(err)
}

func scanUserLimits(r pgx.Row) (sluice.User, error) {
	var u sluice.User
	l := &u.Limits
	err := r.Scan(&u.ID, &u.Email, &u.Role, &u.Tier, &u.Disabled, &u.CreatedAt,
		&l.RequestsPerMinute, &l.TokensPerMinute, &l.Concurrency, &l.OverageCap)
	return u, err
}

// UpdateUser applies an admin's change.
func (db *DB) UpdateUser(ctx context.Context, id string, up UserUpdate) (sluice.User, error) {
	l := up.Limits
	u, err := scanUserLimits(db.Pool.QueryRow(ctx, q("UpdateUser"), id, up.Role, up.Tier, up.Disabled, nonNil(l.Set),
		l.To.RequestsPerMinute, l.To.TokensPerMinute, l.To.Concurrency, l.To.OverageCap))
	return u, translate(err)
}

// UpdateKeyLimits changes a key's limit overrides and, when cache is not
// nil, its response-cache opt-in, and when name is not nil its name. owner "" lets an admin change any key,
// and sets the key's ceilings to the same values (only an admin loosens a
// key); otherwise another user's key is not found. It returns the key's owner.
func (db *DB) UpdateKeyLimits(ctx context.Context, keyID, owner string, up LimitsUpdate, cache *bool, name *string) (string, error) {
	var o *string
	if owner != "" {
		o = &owner
	}
	var userID string
	err := db.Pool.QueryRow(ctx, q("UpdateKeyLimits"), keyID, o, nonNil(up.Set),
		up.To.RequestsPerMinute, up.To.TokensPerMinute, up.To.Concurrency, cache, name, owner == "").Scan(&userID)
	return userID, translate(err)
}

// DeleteUser revokes every key and session of the user and scrubs the
// account's personal data, keeping the row (and so usage and ledger) under a
// pseudonymous address.
func (db *DB) DeleteUser(ctx context.Context, id string) error {
	return translate(pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, q("DeleteUserScrub"), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		for _, name := range []string{"DeleteUserRevokeKeys", "RevokeUserRefreshTokens", "DeleteUserRecovery", "DeleteUserResponses"} {
			if _, err := tx.Exec(ctx, q(name), id); err != nil {
				return err
			}
		}
		return nil
	}))
}

// RevokeUserSessions revokes every refresh token of a user.
func (db *DB) RevokeUserSessions(ctx context.Context, userID string) error {
	_, err := db.Pool.Exec(ctx, q("RevokeUserRefreshTokens"), userID)
	return translate(err)
}

// InsertAudit appends to the audit log.
func (db *DB) InsertAudit(ctx context.Context, e AuditEntry) error {
	var actor *string
	if e.ActorID != "" {
		actor = &e.ActorID
	}
	detail, err := json.Marshal(e.Detail)
	if err != nil || e.Detail == nil {
		detail = []byte("{}")
	}
	_, err = db.Pool.Exec(ctx, q("InsertAudit"), actor, e.Action, e.Target, e.Outcome, e.Remote, string(detail))
	return translate(err)
}

// ListAudit returns audit entries newest first, before id (0: from the newest).
func (db *DB) ListAudit(ctx context.Context, before int64, limit int) ([]AuditEntry, error) {
	rows, err := db.Pool.Query(ctx, q("ListAudit"), before, limit)
	if err != nil {
		return nil, translate(err)
	}
	es, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		var actor *string
		var detail string
		err := r.Scan(&e.ID, &e.At, &actor, &e.Action, &e.Target, &e.Outcome, &e.Remote, &detail)
		if actor != nil {
			e.ActorID = *actor
		}
		json.Unmarshal([]byte(detail), &e.Detail) //nolint:errcheck // written by InsertAudit
		return e, err
	})
	return es, translate(err)
}

// PublicKeys returns the JWT verification keys by kid: the signing key and
// the retired ones whose tokens may still be alive (retired within grace).
func (db *DB) PublicKeys(ctx context.Context, grace time.Duration) (map[string]ed25519.PublicKey, error) {
	ks, err := db.SigningKeys(ctx, grace)
	if err != nil {
		return nil, err
	}
	out := make(map[string]ed25519.PublicKey, len(ks))
	for _, k := range ks {
		if len(k.Public) == ed25519.PublicKeySize {
			out[k.KID] = ed25519.PublicKey(k.Public)
		}
	}
	return out, nil
}

// ExternalPrincipal returns the user behind an external identity, creating
// it (role user, tier free) on first sight. email is used when free;
// otherwise the account gets a synthetic address, never someone else's row.
func (db *DB) ExternalPrincipal(ctx context.Context, issuer, subject, email string) (sluice.Principal, error) {
	var p sluice.Principal
	scan := func() error {
		return db.Pool.QueryRow(ctx, q("ExternalPrincipal"), issuer, subject).Scan(principalDest(&p)...)
	}
	err := scan()
	if !errors.Is(err, pgx.ErrNoRows) {
		return p, translate(err)
	}
	h := sha256.Sum256([]byte(issuer + "\x00" + subject))
	synthetic := "oidc-" + hex.EncodeToString(h[:10]) + "@external.invalid"
	for _, addr := range []string{email, synthetic} {
		if addr == "" {
			continue
		}
		err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			var id string
			if err := tx.QueryRow(ctx, q("CreateUser"), addr, nil, sluice.TierFree, sluice.RoleUser).Scan(&id, new(string), new(string), new(string), new(bool), new(time.Time)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, q("InsertExternalIdentity"), issuer, subject, id)
			return err
		})
		if err == nil || sluice.KindOf(translate(err)) != sluice.KindConflict {
			break
		}
	}
	if err != nil && sluice.KindOf(translate(err)) != sluice.KindConflict {
		return p, translate(err)
	}
	return p, translate(scan()) // also settles a race with another instance
}

// EmailCollisions lists what the e-mail normalisation left for an admin.
func (db *DB) EmailCollisions(ctx context.Context) ([]EmailCollision, error) {
	rows, err := db.Pool.Query(ctx, q("EmailCollisions"))
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EmailCollision, error) {
		var c EmailCollision
		err := r.Scan(&c.Normalized, &c.UserIDs, &c.Emails)
		return c, err
	})
	return out, translate(err)
}
