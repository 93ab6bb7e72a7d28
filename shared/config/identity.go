package config

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Identity configures sessions, MFA, key management and abuse limits: what
// the design's auth block leaves to the implementation. It sits under
// auth.identity.
type Identity struct {
	// Issuer is the iss of session tokens; default "sluice".
	Issuer string `yaml:"issuer"`
	// Audience is the aud of session tokens; default "sluice-api".
	Audience string `yaml:"audience"`
	// AccessTTL is an access token's lifetime; default 10m.
	AccessTTL time.Duration `yaml:"access_ttl"`
	// Leeway is the clock skew allowed on exp/iat; default 30s, at most 60s.
	Leeway time.Duration `yaml:"leeway"`
	// SigningKeyAge is when the JWT signing key is replaced; default 720h.
	// The retired key stays in the JWKS until its last token has expired.
	SigningKeyAge time.Duration `yaml:"signing_key_age"`
	// RequireMFAForAdmin: an admin session must have passed TOTP to use
	// admin routes or create keys. Default false (on in default.yaml).
	RequireMFAForAdmin bool `yaml:"require_mfa_for_admin"`
	// KeyRotationOverlap is how long a rotated key keeps working; default 24h.
	KeyRotationOverlap time.Duration `yaml:"key_rotation_overlap"`
	// Limits are the abuse limits; each is a count per window.
	Limits AbuseLimits `yaml:"limits"`
	// OIDC accepts access tokens of an external OpenID provider (Keycloak:
	// issuer https://HOST/realms/REALM). Off while issuer is empty.
	OIDC OIDC `yaml:"oidc"`
}

// OIDC is the external identity provider.
type OIDC struct {
	Issuer   string `yaml:"issuer"`   // exact iss of its tokens
	Audience string `yaml:"audience"` // required aud (Keycloak: add an audience mapper)
	// ClientID selects Keycloak client roles (resource_access.<client_id>.roles).
	ClientID string `yaml:"client_id"`
	// Roles maps the provider's realm or client roles to Sluice roles; a user
	// gets the most privileged mapped role (auth.rbac.roles order).
	Roles map[string]string `yaml:"roles"`
	// DefaultRole is the role of a user no mapping matches; default "user".
	DefaultRole string `yaml:"default_role"`
}

// AbuseLimits bound guessing and bulk creation. Failed logins are counted
// per (account, address) and per address, never per account alone, so an
// attacker cannot lock a victim out from the victim's own address.
type AbuseLimits struct {
	// Window is the counting window; default 15m.
	Window time.Duration `yaml:"window"`
	// LoginPerAccountAddress: failed logins per account and address; default 5.
	LoginPerAccountAddress int `yaml:"login_per_account_address"`
	// LoginPerAddress: failed logins per address; default 50.
	LoginPerAddress int `yaml:"login_per_address"`
	// MFAPerUser: failed TOTP or recovery codes per user; default 5.
	MFAPerUser int `yaml:"mfa_per_user"`
	// SignupPerAddress: sign-ups per address; default 10.
	SignupPerAddress int `yaml:"signup_per_address"`
	// KeysPerUser: keys created (or rotated) per user; default 20.
	KeysPerUser int `yaml:"keys_per_user"`
}

func applyIdentityDefaults(id *Identity) {
	def(&id.Issuer, "sluice")
	def(&id.Audience, "sluice-api")
	def(&id.AccessTTL, 10*time.Minute)
	def(&id.Leeway, 30*time.Second)
	def(&id.SigningKeyAge, 720*time.Hour)
	def(&id.KeyRotationOverlap, 24*time.Hour)
	def(&id.OIDC.DefaultRole, "user")
	l := &id.Limits
	def(&l.Window, 15*time.Minute)
	def(&l.LoginPerAccountAddress, 5)
	def(&l.LoginPerAddress, 50)
	def(&l.MFAPerUser, 5)
	def(&l.SignupPerAddress, 10)
	def(&l.KeysPerUser, 20)
}

func (id *Identity) validate(roles []string) error {
	var errs []error
	if id.OIDC.Issuer != "" && id.OIDC.Audience == "" {
		errs = append(errs, errors.New("auth.identity.oidc.audience: required with an issuer"))
	}
	for ext, r := range id.OIDC.Roles {
		if !slices.Contains(roles, r) {
			errs = append(errs, fmt.Errorf("auth.identity.oidc.roles.%s: %q is not in auth.rbac.roles", ext, r))
		}
	}
	if id.Leeway < 0 || id.Leeway > time.Minute {
		errs = append(errs, errors.New("auth.identity.leeway: must be between 0 and 60s"))
	}
	if id.AccessTTL < time.Minute || id.AccessTTL > time.Hour {
		errs = append(errs, errors.New("auth.identity.access_ttl: must be between 1m and 1h (access tokens live minutes)"))
	}
	if id.SigningKeyAge < id.AccessTTL {
		errs = append(errs, errors.New("auth.identity.signing_key_age: must exceed access_ttl"))
	}
	return errors.Join(errs...)
}
