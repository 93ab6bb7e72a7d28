package auth

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func (s *service) validRole(role string) bool { return slices.Contains(s.Config.Auth.RBAC.Roles, role) }

func (s *service) validTier(tier string) bool { _, ok := s.Config.Tiers[tier]; return ok }

func queryInt(r *http.Request, name string, def, max int) int {
	n, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil || n <= 0 {
		return def
	}
	return min(n, max)
}

func (s *service) adminListUsers(w http.ResponseWriter, r *http.Request) {
	if _, err := s.admin(r, PermUserAdmin); err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	if len(q.Get("q")) > 254 {
		s.fail(w, r, sluice.Invalid("q", sluice.CodeInvalidValue, "q is longer than an email address can be."))
		return
	}
	us, err := s.DB.ListUsers(r.Context(), q.Get("after"), strings.TrimSpace(q.Get("q")), queryInt(r, "limit", 100, 1000))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, us, userJSON)
}

func (s *service) adminCreateUser(w http.ResponseWriter, r *http.Request) {
	p, err := s.admin(r, PermUserAdmin)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var b struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		Role     string `json:"role"`
		Tier     string `json:"tier"`
	}
	if err := decode(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&b.Role, sluice.RoleUser)
	def(&b.Tier, sluice.TierFree)
	b.Email = normalizeEmail(b.Email)
	if !validEmail(b.Email) || !s.validRole(b.Role) || !s.validTier(b.Tier) {
		s.fail(w, r, sluice.Invalid("", sluice.CodeInvalidValue, "email, role or tier is not valid."))
		return
	}
	hash := ""
	if b.Password != "" {
		if err := checkPassword(b.Password); err != nil {
			s.fail(w, r, err)
			return
		}
		if hash, err = hashPassword(b.Password); err != nil {
			s.fail(w, r, sluice.Internal(err))
			return
		}
	}
	u, err := s.DB.CreateUser(r.Context(), b.Email, hash, b.Tier, b.Role)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, p.UserID, "admin.user_create", u.ID, "ok", map[string]any{"role": u.Role, "tier": u.Tier})
	openai.WriteJSON(w, http.StatusCreated, userJSON(u))
}

func (s *service) adminUpdateUser(w http.ResponseWriter, r *http.Request) {
	p, err := s.admin(r, PermUserAdmin)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var b struct {
		Role     *string `json:"role"`
		Tier     *string `json:"tier"`
		Disabled *bool   `json:"disabled"`
		userLimitsPatch
	}
	if err := decode(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	if (b.Role != nil && !s.validRole(*b.Role)) || (b.Tier != nil && !s.validTier(*b.Tier)) {
		s.fail(w, r, sluice.Invalid("", sluice.CodeInvalidValue, "role or tier is not valid."))
		return
	}
	limits, detail, err := b.update()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	u, err := s.DB.UpdateUser(r.Context(), id, sluice.UserUpdate{Role: b.Role, Tier: b.Tier, Disabled: b.Disabled, Limits: limits})
	if err != nil {
		s.audit(r, p.UserID, "admin.user_update", id, "not_found", nil)
		s.fail(w, r, notFoundUser(err))
		return
	}
	if b.Disabled != nil && *b.Disabled {
		if err := s.DB.RevokeUserSessions(r.Context(), id); err != nil {
			s.fail(w, r, err)
			return
		}
		if err := s.endUserSessions(r.Context(), id); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if b.Role != nil {
		detail["role"] = *b.Role
	}
	if b.Tier != nil {
		detail["tier"] = *b.Tier
	}
	if b.Disabled != nil {
		detail["disabled"] = *b.Disabled
	}
	s.audit(r, p.UserID, "admin.user_update", id, "ok", detail)
	if err := s.evictUser(r.Context(), id); err != nil { // role, tier, disabled or limits apply at once
		s.fail(w, r, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, userJSON(u))
}

func notFoundUser(err error) error {
	if k := sluice.KindOf(err); k == sluice.KindNotFound || k == sluice.KindInvalid {
		return sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound, "No such user.")
	}
	return err
}

func (s *service) adminDeleteUser(w http.ResponseWriter, r *http.Request) {
	p, err := s.admin(r, PermUserAdmin)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := s.deleteUser(r, id); err != nil {
		s.fail(w, r, notFoundUser(err))
		return
	}
	s.audit(r, p.UserID, "user.delete", id, "ok", map[string]any{"by": "admin"})
	w.WriteHeader(http.StatusNoContent)
}

func (s *service) adminListKeys(w http.ResponseWriter, r *http.Request) {
	if _, err := s.admin(r, PermUserAdmin); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeKeys(w, r, r.PathValue("id"))
}

func (s *service) adminRevokeKey(w http.ResponseWriter, r *http.Request) {
	p, err := s.admin(r, PermUserAdmin)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	owner, err := s.DB.RevokeAnyKey(r.Context(), id)
	if err != nil {
		s.fail(w, r, notFoundKey(err))
		return
	}
	s.broadcastKey(r, id)
	s.audit(r, p.UserID, "admin.key_revoke", id, "ok", map[string]any{"owner": owner})
	w.WriteHeader(http.StatusNoContent)
}

func (s *service) adminAudit(w http.ResponseWriter, r *http.Request) {
	if _, err := s.admin(r, PermAuditRead); err != nil {
		s.fail(w, r, err)
		return
	}
	before, _ := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	es, err := s.DB.ListAudit(r.Context(), max(before, 0), queryInt(r, "limit", 100, 1000))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": es})
}

// adminRotateSigningKey replaces the JWT signing key now; tokens signed by
// the old one stay valid until they expire.
func (s *service) adminRotateSigningKey(w http.ResponseWriter, r *http.Request) {
	p, err := s.admin(r, PermUserAdmin)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	kid, err := s.signer.Rotate(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, p.UserID, "admin.signing_key_rotate", kid, "ok", nil)
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "signing_key", "kid": kid})
}

// adminEmailCollisions lists live accounts whose e-mails are equal once
// normalised (or not yet normalised): the 014 migration lowercased every
// other address and left these for an admin to resolve (change or delete
// one of each set).
func (s *service) adminEmailCollisions(w http.ResponseWriter, r *http.Request) {
	if _, err := s.admin(r, PermUserAdmin); err != nil {
		s.fail(w, r, err)
		return
	}
	cs, err := s.DB.EmailCollisions(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, cs, func(c sluice.EmailCollision) map[string]any {
		return map[string]any{"object": "email_collision", "email": c.Normalized, "user_ids": c.UserIDs, "emails": c.Emails}
	})
}
