package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// refreshPrefix marks Sluice refresh tokens; the rest is 256 random bits.
const refreshPrefix = "rt_"

var errBadLogin = &sluice.Error{Kind: sluice.KindUnauthenticated, Code: sluice.CodeInvalidCredentials,
	Message: "Incorrect email or password."}

var errBadRefresh = &sluice.Error{Kind: sluice.KindUnauthenticated, Code: sluice.CodeInvalidRefreshToken,
	Message: "The refresh token is invalid, expired or already used."}

// secretHash is the stored form of a server-issued secret (refresh token,
// recovery code): HMAC-SHA-256 under the current pepper and a purpose.
func (s *service) secretHash(purpose, secret string) []byte {
	m := hmac.New(sha256.New, s.peppers[0])
	m.Write([]byte(purpose + "\x00" + secret))
	return m.Sum(nil)
}

type credentials struct {
	Email        string `json:"email"`
	Password     string `json:"password"`
	TOTPCode     string `json:"totp_code"`
	RecoveryCode string `json:"recovery_code"`
}

// normalizeEmail is the one form an e-mail is stored and compared in:
// lowercased and trimmed (sign-up, admin creation, login, counters).
func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

func validEmail(e string) bool {
	at := strings.IndexByte(e, '@')
	return len(e) <= 254 && at > 0 && at < len(e)-1 && !strings.ContainsAny(e, " \t\r\n<>\"") && strings.Count(e, "@") == 1
}

// signup creates a user with the default role and the free tier. The body
// takes only email and password: role and tier are never the caller's.
func (s *service) signup(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.limits.allow(ctx, "signup", remote(r), s.Config.Auth.Identity.Limits.SignupPerAddress); err != nil {
		s.fail(w, r, err)
		return
	}
	var c struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if err := decode(r, &c); err != nil {
		s.fail(w, r, err)
		return
	}
	c.Email = normalizeEmail(c.Email)
	if !validEmail(c.Email) {
		s.fail(w, r, sluice.Invalid("email", sluice.CodeInvalidValue, "The email address is not valid."))
		return
	}
	if err := checkPassword(c.Password); err != nil {
		s.fail(w, r, err)
		return
	}
	hash, err := hashPassword(c.Password)
	if err != nil {
		s.fail(w, r, sluice.Internal(err))
		return
	}
	u, err := s.DB.CreateUser(ctx, c.Email, hash, sluice.TierFree, sluice.RoleUser)
	if err != nil {
		if sluice.KindOf(err) == sluice.KindConflict {
			err = &sluice.Error{Kind: sluice.KindConflict, Code: sluice.CodeConflict, Param: "email",
				Message: "An account with this email already exists."}
		}
		s.audit(r, "", "user.signup", c.Email, "refused", nil)
		s.fail(w, r, err)
		return
	}
	s.audit(r, u.ID, "user.signup", u.ID, "ok", nil)
	openai.WriteJSON(w, http.StatusCreated, userJSON(u))
}

// emailSubject keys per-account counters without putting addresses in Redis.
func emailSubject(email string) string {
	h := sha256.Sum256([]byte(normalizeEmail(email)))
	return hex.EncodeToString(h[:12])
}

// login checks the password (and the second factor once enrolled) and
// starts a session. Failures count per (account, address) and per address.
func (s *service) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var c credentials
	if err := decode(r, &c); err != nil {
		s.fail(w, r, err)
		return
	}
	lim := s.Config.Auth.Identity.Limits
	addr, pair := remote(r), emailSubject(c.Email)+":"+remote(r)
	nAddr, err1 := s.limits.count(ctx, "login-addr", addr)
	nPair, err2 := s.limits.count(ctx, "login", pair)
	if err := errors.Join(err1, err2); err != nil {
		s.fail(w, r, err)
		return
	}
	if nAddr >= lim.LoginPerAddress || nPair >= lim.LoginPerAccountAddress {
		s.audit(r, "", "session.login", emailSubject(c.Email), "rate_limited", nil)
		s.fail(w, r, tooMany())
		return
	}
	u, err := s.DB.UserAuthByEmail(ctx, c.Email)
	if err != nil && !errors.Is(err, sluice.ErrNotFound) {
		s.fail(w, r, err)
		return
	}
	ok := verifyPassword(dummyHash, c.Password) // same work whether or not the account exists
	if err == nil {
		ok = u.PasswordHash != "" && verifyPassword(u.PasswordHash, c.Password) && !u.Disabled
	}
	if !ok || len(c.Password) > maxPassword {
		s.limits.hit(ctx, "login-addr", addr) //nolint:errcheck // the refusal stands either way
		s.limits.hit(ctx, "login", pair)      //nolint:errcheck
		s.audit(r, u.ID, "session.login", emailSubject(c.Email), "bad_password", nil)
		s.fail(w, r, errBadLogin)
		return
	}
	mfa := false
	if u.MFAEnabled {
		if err := s.secondFactor(ctx, r, &u, c.TOTPCode, c.RecoveryCode); err != nil {
			s.fail(w, r, err)
			return
		}
		mfa = true
	}
	s.limits.reset(ctx, "login", pair)
	tokens, err := s.startSession(ctx, u.ID, mfa)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, u.ID, "session.login", u.ID, "ok", map[string]any{"mfa": mfa})
	openai.WriteJSON(w, http.StatusOK, tokens)
}

// startSession issues an access token and, if refresh is enabled, the first
// refresh token of a new family.
func (s *service) startSession(ctx context.Context, userID string, mfa bool) (map[string]any, error) {
	fam := make([]byte, 16)
	rand.Read(fam) //nolint:errcheck
	family := uuidOf(fam)
	return s.issue(ctx, userID, family, mfa)
}

// uuidOf formats 16 random bytes as a version-4 UUID.
func uuidOf(b []byte) string {
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *service) issue(ctx context.Context, userID, family string, mfa bool) (map[string]any, error) {
	at, err := s.signer.access(ctx, userID, family, mfa)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"object": "session", "access_token": at, "token_type": "Bearer",
		"expires_in": int(s.Config.Auth.Identity.AccessTTL.Seconds())}
	if s.Config.Auth.Session.RefreshEnabled {
		rb := make([]byte, 32)
		rand.Read(rb) //nolint:errcheck
		rt := refreshPrefix + base64.RawURLEncoding.EncodeToString(rb)
		idle := time.Duration(s.Config.Auth.Session.Timeout) * time.Second
		// The MFA state survives rotation in the family's row, never in the
		// token's text (which is random and says nothing).
		if err := s.DB.InsertRefreshToken(ctx, s.secretHash("refresh", rt), family, userID, time.Now().Add(idle), mfa); err != nil {
			return nil, err
		}
		out["refresh_token"] = rt
		out["refresh_expires_in"] = s.Config.Auth.Session.Timeout
	}
	return out, nil
}

type refreshBody struct {
	RefreshToken string `json:"refresh_token"`
}

func (s *service) readRefresh(r *http.Request) (string, error) {
	var b refreshBody
	if err := decode(r, &b); err != nil {
		return "", err
	}
	if !strings.HasPrefix(b.RefreshToken, refreshPrefix) || len(b.RefreshToken) > 100 {
		return "", errBadRefresh
	}
	return b.RefreshToken, nil
}

// refresh rotates a refresh token. Presenting a token that was already
// rotated means it was copied: the whole login (family) is revoked.
func (s *service) refresh(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.Config.Auth.Session.RefreshEnabled {
		s.fail(w, r, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound, "Refresh is disabled (auth.session.refresh_enabled)."))
		return
	}
	rt, err := s.readRefresh(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	family, userID, mfa, reused, err := s.DB.UseRefreshToken(ctx, s.secretHash("refresh", rt))
	if reused {
		s.endSession(ctx, family)
		s.audit(r, userID, "session.refresh_reuse", family, "family_revoked", nil)
	}
	if err != nil {
		if errors.Is(err, sluice.ErrNotFound) {
			err = errBadRefresh
		}
		s.fail(w, r, err)
		return
	}
	if u, err := s.DB.UserPrincipal(ctx, userID); err != nil || u.Disabled { // deleted or disabled since
		s.fail(w, r, errBadRefresh)
		return
	}
	tokens, err := s.issue(ctx, userID, family, mfa)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, userID, "session.refresh", family, "ok", nil)
	openai.WriteJSON(w, http.StatusOK, tokens)
}

// logout ends the login the refresh token belongs to: its refresh tokens
// in the database and its access tokens on every instance at once.
func (s *service) logout(w http.ResponseWriter, r *http.Request) {
	rt, err := s.readRefresh(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	family, userID, err := s.DB.RevokeRefreshFamilyOf(r.Context(), s.secretHash("refresh", rt))
	if err != nil && !errors.Is(err, sluice.ErrNotFound) {
		s.fail(w, r, err)
		return
	}
	if family != "" {
		if err := s.Verifier.EndSession(r.Context(), s.Redis, family, s.sessionMemory()); err != nil {
			s.fail(w, r, sluice.Unavailable("The session's refresh tokens are revoked, but its access tokens could not be ended now; retry the logout.", err))
			return
		}
	}
	s.audit(r, userID, "session.logout", "", "ok", nil)
	w.WriteHeader(http.StatusNoContent)
}

// deleteMe deletes the caller's account after re-authentication.
func (s *service) deleteMe(w http.ResponseWriter, r *http.Request) {
	u, err := s.selfReauth(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.deleteUser(r, u.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, u.ID, "user.delete", u.ID, "ok", map[string]any{"by": "self"})
	w.WriteHeader(http.StatusNoContent)
}

// deleteUser revokes every credential at once, scrubs the account and erases
// its stored prompts and results; usage and ledger rows stay for accounting
// under the (now pseudonymous) user id.
func (s *service) deleteUser(r *http.Request, userID string) error {
	if err := s.DB.DeleteUser(r.Context(), userID); err != nil {
		return err
	}
	if err := s.endUserSessions(r.Context(), userID); err != nil {
		return err
	}
	if err := s.evictUser(r.Context(), userID); err != nil {
		return err
	}
	models := s.Config.QueueModels() // LoRA adapters' queues too
	// Jobs first: in-flight ones are cancelled before their content goes,
	// so nothing is written back afterwards.
	n, err := s.Queue.EraseUserJobs(r.Context(), userID, models)
	if err == nil {
		_, err = admission.EraseUserCache(r.Context(), s.Redis, userID)
	}
	if err == nil {
		_, err = s.Objects.EraseUser(r.Context(), userID)
	}
	if err != nil {
		return sluice.Unavailable("The account is deleted, but its stored results could not all be erased now; they expire with jobs.result_ttl.", err)
	}
	s.Log.InfoContext(r.Context(), "erased stored jobs of a deleted account", slog.String("user_id", userID), slog.Int("jobs", n))
	return nil
}

// sessionMemory is how long an ended session must be remembered: the
// longest an access token it issued can still be presented.
func (s *service) sessionMemory() time.Duration {
	return s.Config.Auth.Identity.AccessTTL + s.Config.Auth.Identity.Leeway
}

// endSession ends a login's access tokens everywhere (refresh reuse).
func (s *service) endSession(ctx context.Context, family string) {
	if err := s.Verifier.EndSession(ctx, s.Redis, family, s.sessionMemory()); err != nil {
		s.Log.WarnContext(ctx, "ended session not recorded; its access tokens run out with access_ttl", "err", err.Error())
	}
}

// endUserSessions ends every access token issued to a user so far
// (disabled, deleted), on every instance.
func (s *service) endUserSessions(ctx context.Context, userID string) error {
	if err := s.Verifier.EndUserSessions(ctx, s.Redis, userID, s.sessionMemory()); err != nil {
		return sluice.Unavailable("The change is saved, but the user's access tokens could not be ended now; retry.", err)
	}
	return nil
}

// evictUser tells every instance's verifier to forget the user's credentials.
func (s *service) evictUser(ctx context.Context, userID string) error {
	if err := s.Verifier.RevokeUser(ctx, s.Redis, userID); err != nil {
		return sluice.Unavailable("The change is saved but could not be broadcast; it applies within the cache TTL.", err)
	}
	return nil
}

func userJSON(u sluice.User) map[string]any {
	return map[string]any{"object": "user", "id": u.ID, "email": u.Email, "role": u.Role, "tier": u.Tier,
		"disabled": u.Disabled, "created_at": u.CreatedAt.Unix(), "limits": u.Limits}
}
