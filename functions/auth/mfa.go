package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	qrcode "github.com/skip2/go-qrcode"

	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TOTP per RFC 6238: 30-second steps, 6 digits, one step of skew each way.
const (
	totpPeriod = 30
	totpSkew   = 1
	recoveryN  = 10
)

var errBadCode = &sluice.Error{Kind: sluice.KindUnauthenticated, Code: sluice.CodeInvalidMFACode,
	Message: "The authentication code is invalid or was already used."}

// checkTOTP returns the step a code belongs to, or 0. Only steps later than
// the last accepted one count, so a code cannot be replayed.
func checkTOTP(secret, code string, lastStep int64, now time.Time) int64 {
	if len(code) != 6 {
		return 0
	}
	cur := now.Unix() / totpPeriod
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		step := cur + d
		if step <= lastStep {
			continue
		}
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0),
			totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return step
		}
	}
	return 0
}

// secondFactor checks a TOTP or recovery code for u. Failures count per
// user; the accepted step is recorded atomically so two instances cannot
// both accept the same code.
func (s *service) secondFactor(ctx context.Context, r *http.Request, u *sluice.UserAuth, code, recovery string) error {
	if code == "" && recovery == "" {
		return &sluice.Error{Kind: sluice.KindUnauthenticated, Code: CodeMFARequired, Param: "totp_code",
			Message: "This account uses multi-factor authentication: send totp_code or recovery_code."}
	}
	if n, err := s.limits.count(ctx, "mfa", u.ID); err != nil {
		return err
	} else if n >= s.Config.Auth.Identity.Limits.MFAPerUser {
		s.audit(r, u.ID, "mfa.verify", u.ID, "rate_limited", nil)
		return tooMany()
	}
	ok, err := s.verifyFactor(ctx, u, code, recovery)
	if err != nil {
		return err
	}
	if !ok {
		s.limits.hit(ctx, "mfa", u.ID) //nolint:errcheck
		s.audit(r, u.ID, "mfa.verify", u.ID, "bad_code", nil)
		return errBadCode
	}
	s.limits.reset(ctx, "mfa", u.ID)
	return nil
}

func (s *service) verifyFactor(ctx context.Context, u *sluice.UserAuth, code, recovery string) (bool, error) {
	if recovery != "" {
		return s.DB.UseRecoveryCode(ctx, u.ID, hex.EncodeToString(s.secretHash("recovery:"+u.ID, normRecovery(recovery))))
	}
	secret, err := s.openSecret(u.MFASecret)
	if err != nil {
		return false, err
	}
	step := checkTOTP(secret, code, u.MFALastStep, time.Now())
	if step == 0 {
		return false, nil
	}
	return s.DB.AdvanceMFAStep(ctx, u.ID, step)
}

func (s *service) openSecret(sealed string) (string, error) {
	b, err := hex.DecodeString(sealed)
	if err != nil {
		return "", sluice.Internal(err)
	}
	p, err := s.signer.seal.open(b)
	if err != nil {
		return "", sluice.Internal(err)
	}
	return string(p), nil
}

func normRecovery(c string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(c), "-", ""))
}

type reauthBody struct {
	Password     string `json:"password"`
	TOTPCode     string `json:"totp_code"`
	RecoveryCode string `json:"recovery_code"`
}

// reauth asks for the password again (and the second factor once enrolled)
// before a sensitive change: MFA changes and account deletion.
func (s *service) reauth(r *http.Request, p *sluice.Principal) (*sluice.UserAuth, error) {
	var b reauthBody
	if err := decode(r, &b); err != nil {
		return nil, err
	}
	ctx := r.Context()
	u, err := s.DB.UserAuthByID(ctx, p.UserID)
	if err != nil {
		return nil, err
	}
	if n, err := s.limits.count(ctx, "login", emailSubject(u.Email)+":"+remote(r)); err != nil {
		return nil, err
	} else if n >= s.Config.Auth.Identity.Limits.LoginPerAccountAddress {
		return nil, tooMany()
	}
	if u.PasswordHash == "" || !verifyPassword(u.PasswordHash, b.Password) {
		s.limits.hit(ctx, "login", emailSubject(u.Email)+":"+remote(r)) //nolint:errcheck
		s.audit(r, u.ID, "session.reauth", u.ID, "bad_password", nil)
		return nil, &sluice.Error{Kind: sluice.KindPermissionDenied, Code: sluice.CodeReauthRequired, Param: "password",
			Message: "This change needs your password."}
	}
	if u.MFAEnabled {
		if err := s.secondFactor(ctx, r, &u, b.TOTPCode, b.RecoveryCode); err != nil {
			return nil, err
		}
	}
	return &u, nil
}

// selfReauth authenticates the caller and re-checks its password (and
// second factor) for a change to its own account.
func (s *service) selfReauth(r *http.Request) (*sluice.UserAuth, error) {
	p, err := s.principal(r)
	if err != nil {
		return nil, err
	}
	return s.reauth(r, p)
}

// mfaEnrol creates a TOTP secret awaiting confirmation.
func (s *service) mfaEnrol(w http.ResponseWriter, r *http.Request) {
	u, err := s.selfReauth(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if u.MFAEnabled {
		s.fail(w, r, &sluice.Error{Kind: sluice.KindConflict, Code: sluice.CodeConflict, Message: "MFA is already enabled; disable it first."})
		return
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "Sluice", AccountName: u.Email, Period: totpPeriod})
	if err != nil {
		s.fail(w, r, sluice.Internal(err))
		return
	}
	if err := s.DB.SetMFASecret(r.Context(), u.ID, hex.EncodeToString(s.signer.seal.seal([]byte(key.Secret())))); err != nil {
		s.fail(w, r, err)
		return
	}
	// The QR code is drawn here, never by a third-party service: the
	// otpauth URL holds the secret.
	png, err := qrcode.Encode(key.URL(), qrcode.Medium, 256)
	if err != nil {
		s.fail(w, r, sluice.Internal(err))
		return
	}
	s.audit(r, u.ID, "mfa.enrol", u.ID, "ok", nil)
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "mfa.totp", "secret": key.Secret(), "otpauth_url": key.URL(),
		"qr_code": "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)})
}

// mfaConfirm turns MFA on once the user proves the authenticator works, and
// returns the recovery codes (shown once).
func (s *service) mfaConfirm(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var b struct {
		TOTPCode string `json:"totp_code"`
	}
	if err := decode(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	u, err := s.DB.UserAuthByID(ctx, p.UserID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if u.MFAEnabled || u.MFASecret == "" {
		s.fail(w, r, &sluice.Error{Kind: sluice.KindConflict, Code: sluice.CodeConflict, Message: "There is no TOTP enrolment to confirm."})
		return
	}
	u.MFAEnabled = true // so secondFactor checks the pending secret
	if err := s.secondFactor(ctx, r, &u, b.TOTPCode, ""); err != nil {
		s.fail(w, r, err)
		return
	}
	codes := make([]string, recoveryN)
	hashes := make([]string, recoveryN)
	for i := range codes {
		raw := make([]byte, 10)
		rand.Read(raw) //nolint:errcheck
		c := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw)[:16]
		codes[i] = c[:4] + "-" + c[4:8] + "-" + c[8:12] + "-" + c[12:]
		hashes[i] = hex.EncodeToString(s.secretHash("recovery:"+u.ID, c))
	}
	if err := s.DB.ReplaceRecoveryCodes(ctx, u.ID, hashes); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.DB.SetMFAEnabled(ctx, u.ID, true); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, u.ID, "mfa.confirm", u.ID, "ok", nil)
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "mfa.recovery_codes", "recovery_codes": codes})
}

// mfaDisable turns MFA off after the password and a current code.
func (s *service) mfaDisable(w http.ResponseWriter, r *http.Request) {
	u, err := s.selfReauth(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !u.MFAEnabled {
		s.fail(w, r, &sluice.Error{Kind: sluice.KindConflict, Code: sluice.CodeConflict, Message: "MFA is not enabled."})
		return
	}
	ctx := r.Context()
	if err := s.DB.SetMFAEnabled(ctx, u.ID, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.DB.ReplaceRecoveryCodes(ctx, u.ID, nil); err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, u.ID, "mfa.disable", u.ID, "ok", nil)
	w.WriteHeader(http.StatusNoContent)
}
