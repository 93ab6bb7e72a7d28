package auth

import (
	"encoding/json"
	"net/http"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// maxLimit bounds an override (requests, tokens, slots per minute or at
// once; micro-dollars for a cap): large enough for any real contract,
// small enough that no sum in the admit script overflows.
const maxLimit = 1 << 50

// optLimit is one limit in a PATCH body: absent leaves it alone, null or 0
// clears the override (the next level decides), a positive number sets it.
type optLimit struct {
	set bool
	v   int64
}

// UnmarshalJSON records that the field was present (null included).
func (o *optLimit) UnmarshalJSON(b []byte) error {
	o.set = true
	if string(b) == "null" {
		return nil
	}
	return json.Unmarshal(b, &o.v)
}

// limitsPatch is the limit fields of a user or key PATCH body.
type limitsPatch struct {
	RequestsPerMinute optLimit `json:"requests_per_minute"`
	TokensPerMinute   optLimit `json:"tokens_per_minute"`
	Concurrency       optLimit `json:"concurrency"`
}

// keyPatch is a key PATCH body: its limits and its response-cache opt-in
// (absent or null leaves it).
type keyPatch struct {
	limitsPatch
	CacheResponses *bool   `json:"cache_responses"`
	Name           *string `json:"name"` // a new label; absent or null leaves it
}

// userLimitsPatch adds the postpaid cap, which only a user has.
type userLimitsPatch struct {
	limitsPatch
	OverageCap optLimit `json:"overage_cap_micros"`
}

type limitField struct {
	name, param string
	o           optLimit
	to          *int64
}

func (p *limitsPatch) fields(to *sluice.Limits) []limitField {
	return []limitField{
		{sluice.LimitRPM, "requests_per_minute", p.RequestsPerMinute, &to.RequestsPerMinute},
		{sluice.LimitTPM, "tokens_per_minute", p.TokensPerMinute, &to.TokensPerMinute},
		{sluice.LimitConcurrency, "concurrency", p.Concurrency, &to.Concurrency},
	}
}

// update validates the present fields and returns the store's change and
// the audit detail (which values were set; 0 is a cleared override).
func update(fs []limitField) (sluice.LimitsUpdate, map[string]any, error) {
	var up sluice.LimitsUpdate
	detail := map[string]any{}
	for _, f := range fs {
		if !f.o.set {
			continue
		}
		if f.o.v < 0 || f.o.v > maxLimit {
			return up, nil, sluice.Invalid(f.param, sluice.CodeInvalidValue,
				"%s must be a positive whole number (or null to clear it).", f.param)
		}
		up.Set = append(up.Set, f.name)
		*f.to = f.o.v
		detail[f.param] = f.o.v
	}
	return up, detail, nil
}

func (p *userLimitsPatch) update() (sluice.LimitsUpdate, map[string]any, error) {
	var to sluice.Limits
	up, detail, err := update(append(p.fields(&to),
		limitField{sluice.LimitCap, "overage_cap_micros", p.OverageCap, &to.OverageCap}))
	up.To = to
	return up, detail, err
}

func (p *limitsPatch) update() (sluice.LimitsUpdate, map[string]any, error) {
	var to sluice.Limits
	up, detail, err := update(p.fields(&to))
	up.To = to
	return up, detail, err
}

// withinOwner refuses key limits looser than the creating credential's own
// effective limits, so no key (nor its owner) can lift a limit an admin or
// the tier set; only an admin can make a key looser than its owner.
func (s *service) withinOwner(p *sluice.Principal, l sluice.Limits) error {
	own := admission.EffectiveLimits(s.Config, p.Tier, p.Limits)
	for _, c := range []struct {
		param     string
		want, max int64
	}{
		{"requests_per_minute", l.RequestsPerMinute, own.RequestsPerMinute},
		{"tokens_per_minute", l.TokensPerMinute, own.TokensPerMinute},
		{"concurrency", l.Concurrency, own.Concurrency},
	} {
		if c.want < 0 || c.want > maxLimit {
			return sluice.Invalid(c.param, sluice.CodeInvalidValue, "%s must be a positive whole number.", c.param)
		}
		if c.want > 0 && c.max >= 0 && c.want > c.max {
			return sluice.Errorf(sluice.KindPermissionDenied, sluice.CodePermissionDenied,
				"A key cannot have %s %d: your own limit is %d.", c.param, c.want, c.max)
		}
	}
	return nil
}

// withinCeiling refuses an owner's limit above the key's ceilings (set by
// an admin or inherited from the key that created it). Clearing a limit is
// allowed: the key then runs at its ceiling, never at the tier's limit.
func (s *service) withinCeiling(r *http.Request, owner, id string, l sluice.Limits) error {
	k, err := s.DB.GetKey(r.Context(), owner, id)
	if err != nil {
		return notFoundKey(err)
	}
	for _, c := range []struct {
		param     string
		want, max int64
	}{
		{"requests_per_minute", l.RequestsPerMinute, k.Max.RequestsPerMinute},
		{"tokens_per_minute", l.TokensPerMinute, k.Max.TokensPerMinute},
		{"concurrency", l.Concurrency, k.Max.Concurrency},
	} {
		if c.want > 0 && c.max > 0 && c.want > c.max {
			return sluice.Errorf(sluice.KindPermissionDenied, sluice.CodePermissionDenied,
				"This key's %s cannot exceed %d: only an admin can loosen it.", c.param, c.max)
		}
	}
	return nil
}

// updateKeyLimits changes the limits of one of the caller's keys, within the
// caller's own and the key's ceilings.
func (s *service) updateKeyLimits(w http.ResponseWriter, r *http.Request) {
	p, err := s.keyManager(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.patchKeyLimits(w, r, p, p.UserID, "key.limits")
}

// adminUpdateKeyLimits changes any key's limits, tighter or looser than its
// owner's tier; what it sets is also the key's ceiling, so the owner cannot
// lift it again (null clears both).
func (s *service) adminUpdateKeyLimits(w http.ResponseWriter, r *http.Request) {
	p, err := s.admin(r, PermUserAdmin)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.patchKeyLimits(w, r, p, "", "admin.key_limits")
}

func (s *service) patchKeyLimits(w http.ResponseWriter, r *http.Request, p *sluice.Principal, owner, action string) {
	var b keyPatch
	if err := decode(r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	up, detail, err := b.update()
	if err == nil && b.CacheResponses != nil {
		detail["cache_responses"] = *b.CacheResponses
	}
	if err == nil && b.Name != nil {
		if len(*b.Name) > 100 {
			err = sluice.Invalid("name", sluice.CodeInvalidValue, "name is longer than 100 characters.")
		} else {
			detail["name"] = *b.Name
		}
	}
	id := r.PathValue("id")
	if err == nil && owner != "" {
		err = s.withinOwner(p, up.To)
	}
	if err == nil && owner != "" {
		err = s.withinCeiling(r, owner, id, up.To)
	}
	if err != nil {
		s.audit(r, p.UserID, action, id, "refused", detail)
		s.fail(w, r, err)
		return
	}
	keyOwner, err := s.DB.UpdateKeyLimits(r.Context(), id, owner, up, b.CacheResponses, b.Name)
	if err != nil {
		s.fail(w, r, notFoundKey(err))
		return
	}
	detail["owner"] = keyOwner
	s.audit(r, p.UserID, action, id, "ok", detail)
	s.broadcastKey(r, id) // every instance reloads the key, limits and cache opt-in included
	k, err := s.DB.GetKey(r.Context(), keyOwner, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, keyJSON(k))
}
