package authn

import (
	"net/http"
	"slices"

	"github.com/sluice-ai/sluice/shared/httpserve"

	"github.com/sluice-ai/sluice/shared/rbac"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Require is every function's one authenticate-then-authorize step: it
// authenticates r, names the caller's user in the request's logs, and, when
// needs is non-empty, checks the caller holds one of them (Authorize).
// rolePerms is the deployment's role → permissions lookup
// (config.Config.Permissions).
func (v *Verifier) Require(r *http.Request, rolePerms func(role string) []string, needs ...string) (*sluice.Principal, error) {
	p, err := v.Authenticate(r.Context(), r)
	if err != nil {
		return nil, err
	}
	httpserve.SetUser(r.Context(), p.UserID)
	if len(needs) > 0 {
		if err := Authorize(p, rolePerms(p.Role), needs...); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Authorize checks that p may use one of needs: its role must grant it and,
// for a scoped key, so must the key's scopes (a key never exceeds its owner).
func Authorize(p *sluice.Principal, rolePerms []string, needs ...string) error {
	for _, n := range needs {
		if rbac.Allowed(rolePerms, n) && (len(p.Scopes) == 0 || rbac.Allowed(p.Scopes, n)) {
			return nil
		}
	}
	if len(p.Scopes) > 0 && rbac.AnyAllowed(rolePerms, needs...) {
		return sluice.Errorf(sluice.KindPermissionDenied, sluice.CodePermissionDenied,
			"This API key's scopes do not include %s.", needs[0])
	}
	return sluice.Errorf(sluice.KindPermissionDenied, sluice.CodePermissionDenied,
		"Your role %q does not have the %s permission.", p.Role, needs[0])
}

// AllowModel checks a key's model allowlist. The refusal reads like an
// unknown model, so a key does not learn which models exist beyond its list.
func AllowModel(p *sluice.Principal, model string) error {
	if len(p.Models) == 0 || slices.Contains(p.Models, model) {
		return nil
	}
	return &sluice.Error{Kind: sluice.KindNotFound, Code: sluice.CodeModelNotFound, Param: "model",
		Message: "The model does not exist or you do not have access to it."}
}

// AdminPermissions are the permissions that make a role administrative:
// a role granted any of them ("*" grants all) is an admin role whatever its
// name, and its sessions fall under RequireAdminMFA.
var AdminPermissions = []string{"user:admin", "audit:read", "admin:status", "billing:read"}

// IsAdmin reports whether a role's permissions are administrative.
func IsAdmin(rolePerms []string) bool { return rbac.AnyAllowed(rolePerms, AdminPermissions...) }

// RequireAdminMFA refuses an admin session that has not passed a second
// factor, where the deployment requires it (auth.identity.
// require_mfa_for_admin). Admin is decided by the role's permissions
// (IsAdmin), never by its name, so a custom role with "*" is held to it.
// API keys are exempt: an admin key comes from the operator CLI or from a
// session that passed MFA. Every admin route of every function applies
// this one rule.
func RequireAdminMFA(p *sluice.Principal, rolePerms []string, required bool) error {
	if required && p.KeyID == "" && !p.MFA && IsAdmin(rolePerms) {
		return &sluice.Error{Kind: sluice.KindPermissionDenied, Code: sluice.CodeMFARequired,
			Message: "Administrative access requires a login with multi-factor authentication."}
	}
	return nil
}
