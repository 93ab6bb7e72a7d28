package authn

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// TokenConfig says which session JWTs the verifier accepts.
type TokenConfig struct {
	Issuer    string        // required iss
	Audience  string        // required aud
	AccessTTL time.Duration // access token lifetime: retired keys are kept this long
	Leeway    time.Duration // clock skew allowed on exp/iat/nbf; at most 60s
}

// Claims are Sluice's session token claims. The token names the user only;
// role and tier are read from the user so that changes apply at once.
type Claims struct {
	jwt.RegisteredClaims
	MFA       bool   `json:"mfa,omitempty"` // the login passed a second factor
	SessionID string `json:"sid,omitempty"` // the refresh family (login)
}

// Algorithm is the only JWS algorithm Sluice signs or accepts.
const Algorithm = "EdDSA"

type tokenVerifier struct {
	cfg    TokenConfig
	store  KeyStore
	parser *jwt.Parser

	mu       sync.Mutex
	keys     map[string]ed25519.PublicKey
	loadedAt time.Time
	verified map[[32]byte]*Claims // tokens whose signature and claims passed, until they expire
	noCache  bool                 // a zero cache TTL turns every cache off
}

// maxVerified bounds the verified-token cache; it is cleared when full.
const maxVerified = 100000

func newTokenVerifier(cfg TokenConfig, store KeyStore) *tokenVerifier {
	if cfg.Leeway > time.Minute {
		cfg.Leeway = time.Minute
	}
	return &tokenVerifier{cfg: cfg, store: store, parser: jwt.NewParser(
		jwt.WithValidMethods([]string{Algorithm}), // pinned: no alg:none, no HMAC-with-public-key confusion
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
	)}
}

// keyRefetchEvery bounds reloads of the key set caused by unknown kids, so a
// flood of made-up kids costs one query a second, not one per request.
const keyRefetchEvery = time.Second

func (t *tokenVerifier) key(ctx context.Context, kid string) (ed25519.PublicKey, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if k, ok := t.keys[kid]; ok {
		return k, true
	}
	if time.Since(t.loadedAt) < keyRefetchEvery {
		return nil, false
	}
	t.loadedAt = time.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second) // deadline on unknown-kid fetches
	defer cancel()
	keys, err := t.store.PublicKeys(ctx, t.cfg.AccessTTL+t.cfg.Leeway)
	if err != nil {
		return nil, false
	}
	t.keys = keys
	k, ok := keys[kid]
	return k, ok
}

// forget lets the next unknown kid reload the key set at once.
func (t *tokenVerifier) forget() {
	t.mu.Lock()
	t.loadedAt = time.Time{}
	t.mu.Unlock()
}

// verify checks a token, remembering tokens that passed so a session's
// later requests skip the Ed25519 check (~55 µs). Only a token that passed
// every check is remembered, and only until its own exp; revocation does not
// depend on this cache (the user is looked up, and evicted, separately).
func (t *tokenVerifier) verify(ctx context.Context, tok string) (*Claims, error) {
	sum := sha256.Sum256([]byte(tok))
	now := time.Now()
	t.mu.Lock()
	c, ok := t.verified[sum]
	t.mu.Unlock()
	if ok && now.Before(c.ExpiresAt.Time) {
		return c, nil
	}
	c, err := t.check(ctx, tok)
	if err != nil || t.noCache {
		return c, err
	}
	t.mu.Lock()
	if t.verified == nil || len(t.verified) >= maxVerified {
		t.verified = map[[32]byte]*Claims{}
	}
	t.verified[sum] = c
	t.mu.Unlock()
	return c, nil
}

func (t *tokenVerifier) check(ctx context.Context, tok string) (*Claims, error) {
	var c Claims
	_, err := t.parser.ParseWithClaims(tok, &c, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		if kid == "" {
			return nil, errNoKey
		}
		k, ok := t.key(ctx, kid)
		if !ok {
			return nil, errNoKey
		}
		return k, nil
	})
	if err != nil || c.Subject == "" {
		return nil, sluice.ErrUnauthenticated
	}
	return &c, nil
}

var errNoKey = &sluice.Error{Kind: sluice.KindUnauthenticated, Code: sluice.CodeInvalidAPIKey, Message: "unknown signing key"}
