package authn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// OIDCConfig says which external access tokens (Keycloak or any OpenID
// provider) the verifier accepts and how their roles map to Sluice roles.
type OIDCConfig struct {
	Issuer   string // exact iss; discovery at Issuer/.well-known/openid-configuration
	Audience string // required aud
	// ClientID selects resource_access.<ClientID>.roles (Keycloak client roles).
	ClientID string
	// Roles maps an external role (realm or client) to a Sluice role.
	Roles map[string]string
	// RoleOrder lists Sluice roles most privileged first: a user with several
	// mapped roles gets the first; none mapped gets DefaultRole.
	RoleOrder   []string
	DefaultRole string
	Leeway      time.Duration
	HTTP        *http.Client // nil: a client with a 5 s timeout
}

// ExternalStore provisions users seen through an external provider.
type ExternalStore interface {
	// ExternalPrincipal returns (creating on first sight) the user keyed by
	// (issuer, subject).
	ExternalPrincipal(ctx context.Context, issuer, subject, email string) (sluice.Principal, error)
}

// WithOIDC accepts access tokens from an external OpenID provider.
func WithOIDC(c OIDCConfig, store ExternalStore) Option {
	return func(v *Verifier) {
		if c.HTTP == nil {
			c.HTTP = &http.Client{Timeout: 5 * time.Second}
		}
		v.oidc = &oidcVerifier{cfg: c, store: store, parser: jwt.NewParser(
			jwt.WithValidMethods([]string{"RS256", "ES256"}), // pinned; never none or HMAC
			jwt.WithExpirationRequired(), jwt.WithIssuer(c.Issuer), jwt.WithAudience(c.Audience),
			jwt.WithIssuedAt(), jwt.WithLeeway(min(c.Leeway, time.Minute)))}
	}
}

type oidcVerifier struct {
	cfg    OIDCConfig
	store  ExternalStore
	parser *jwt.Parser

	mu        sync.Mutex
	keys      map[string]crypto.PublicKey
	fetchedAt time.Time
}

// JWKS refresh: the set is refetched after jwksMaxAge on the next token, and
// at most once per keyRefetchEvery for an unknown kid, each fetch bounded by
// jwksDeadline so a slow provider cannot hold requests.
const (
	jwksMaxAge   = 10 * time.Minute
	jwksDeadline = 2 * time.Second
)

func (o *oidcVerifier) key(ctx context.Context, kid string) (crypto.PublicKey, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k, ok := o.keys[kid]
	stale := time.Since(o.fetchedAt) > jwksMaxAge
	if ok && !stale {
		return k, true
	}
	if !stale && time.Since(o.fetchedAt) < keyRefetchEvery {
		return k, ok
	}
	o.fetchedAt = time.Now()
	ctx, cancel := context.WithTimeout(ctx, jwksDeadline)
	defer cancel()
	keys, err := o.fetch(ctx)
	if err != nil {
		return k, ok // keep serving the keys we have while the provider is down
	}
	o.keys = keys
	k, ok = keys[kid]
	return k, ok
}

func (o *oidcVerifier) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := o.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oidc: GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// fetch reads the provider's JWKS through discovery.
func (o *oidcVerifier) fetch(ctx context.Context) (map[string]crypto.PublicKey, error) {
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := o.getJSON(ctx, strings.TrimSuffix(o.cfg.Issuer, "/")+"/.well-known/openid-configuration", &disc); err != nil {
		return nil, err
	}
	if disc.Issuer != o.cfg.Issuer || disc.JWKSURI == "" {
		return nil, errors.New("oidc: discovery names another issuer or no jwks_uri")
	}
	var set struct {
		Keys []struct {
			Kty, Kid, Use, Crv, N, E, X, Y string
		} `json:"keys"`
	}
	if err := o.getJSON(ctx, disc.JWKSURI, &set); err != nil {
		return nil, err
	}
	out := map[string]crypto.PublicKey{}
	b64 := base64.RawURLEncoding
	for _, k := range set.Keys {
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		switch k.Kty {
		case "RSA":
			n, err1 := b64.DecodeString(k.N)
			e, err2 := b64.DecodeString(k.E)
			if err1 != nil || err2 != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
				continue // RSA below 2048 bits is refused
			}
			out[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case "EC":
			x, err1 := b64.DecodeString(k.X)
			y, err2 := b64.DecodeString(k.Y)
			if err1 != nil || err2 != nil || k.Crv != "P-256" {
				continue
			}
			pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
			if !pub.Curve.IsOnCurve(pub.X, pub.Y) { //nolint:staticcheck // validates a foreign point
				continue
			}
			out[k.Kid] = pub
		}
	}
	return out, nil
}

// externalClaims are the claims Sluice reads from an external token.
type externalClaims struct {
	jwt.RegisteredClaims
	Email       string `json:"email"`
	RealmAccess struct {
		Roles []string `json:"roles"`
	} `json:"realm_access"`
	ResourceAccess map[string]struct {
		Roles []string `json:"roles"`
	} `json:"resource_access"`
}

func (o *oidcVerifier) verify(ctx context.Context, tok string) (*externalClaims, error) {
	var c externalClaims
	_, err := o.parser.ParseWithClaims(tok, &c, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		if k, ok := o.key(ctx, kid); ok && kid != "" {
			return k, nil
		}
		return nil, errNoKey
	})
	if err != nil || c.Subject == "" {
		return nil, sluice.ErrUnauthenticated
	}
	return &c, nil
}

// MapRoles picks the Sluice role for an external token's realm and client
// roles: the most privileged mapped one, else the default.
func (c *OIDCConfig) MapRoles(realm, client []string) string {
	mapped := map[string]bool{}
	for _, r := range slices.Concat(realm, client) {
		if s, ok := c.Roles[r]; ok {
			mapped[s] = true
		}
	}
	for _, r := range c.RoleOrder {
		if mapped[r] {
			return r
		}
	}
	return c.DefaultRole
}

// issuerOf reads a token's iss without verifying it, only to route it to
// the right verifier (which then checks everything).
func issuerOf(tok string) string {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		return ""
	}
	return c.Issuer
}

// External returns the principal behind an external provider's token: the
// user keyed by (issuer, subject), provisioned on first sight, with the
// role the provider's roles map to.
func (v *Verifier) External(ctx context.Context, tok string) (*sluice.Principal, error) {
	if v.oidc == nil {
		return nil, sluice.ErrUnauthenticated
	}
	c, err := v.oidc.verify(ctx, tok)
	if err != nil {
		return nil, err
	}
	p, err := v.cached(ctx, v.users, "ext\x00"+c.Issuer+"\x00"+c.Subject, func() (sluice.Principal, error) {
		return v.oidc.store.ExternalPrincipal(ctx, c.Issuer, c.Subject, c.Email)
	})
	if err != nil {
		return nil, err
	}
	var client []string
	if ra, ok := c.ResourceAccess[v.oidc.cfg.ClientID]; ok {
		client = ra.Roles
	}
	p.Role = v.oidc.cfg.MapRoles(c.RealmAccess.Roles, client)
	return p, nil
}
