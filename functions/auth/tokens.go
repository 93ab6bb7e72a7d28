package auth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// sealer encrypts secrets the server must read back (TOTP secrets, JWT
// private keys) with AES-256-GCM under keys derived from the peppers, so a
// database dump alone reveals none of them. Opening tries every pepper, so
// a pepper rotation keeps them readable.
type sealer struct{ aeads []cipher.AEAD }

func newSealer(peppers [][]byte) *sealer {
	s := &sealer{}
	for _, p := range peppers {
		m := hmac.New(sha256.New, p)
		m.Write([]byte("sluice/seal/v1"))
		block, _ := aes.NewCipher(m.Sum(nil)) // a 32-byte key never fails
		aead, _ := cipher.NewGCM(block)
		s.aeads = append(s.aeads, aead)
	}
	return s
}

func (s *sealer) seal(plain []byte) []byte {
	nonce := make([]byte, s.aeads[0].NonceSize())
	rand.Read(nonce) //nolint:errcheck // crypto/rand never fails on Linux
	return s.aeads[0].Seal(nonce, nonce, plain, nil)
}

var errUnseal = errors.New("auth: sealed value does not open under any pepper")

func (s *sealer) open(sealed []byte) ([]byte, error) {
	for _, a := range s.aeads {
		if len(sealed) < a.NonceSize() {
			break
		}
		if p, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], nil); err == nil {
			return p, nil
		}
	}
	return nil, errUnseal
}

// signer issues session tokens with the current Ed25519 key, creating or
// replacing it when it is older than the configured age. Retired keys stay
// published (and accepted by the verifier) until their tokens have expired.
type signer struct {
	db      sluice.AuthStore
	cfg     config.Identity
	seal    *sealer
	rotated func(context.Context) // tells the verifiers a new kid exists

	mu       sync.Mutex
	kid      string
	priv     ed25519.PrivateKey
	loadedAt time.Time
	created  time.Time
}

func newSigner(db sluice.AuthStore, cfg config.Identity, seal *sealer, rotated func(context.Context)) *signer {
	return &signer{db: db, cfg: cfg, seal: seal, rotated: rotated}
}

// kidOf names a public key by its hash, so every instance agrees on it.
func kidOf(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(h[:12])
}

// current returns the signing key, reloading it every minute so a rotation
// by another instance is picked up.
func (s *signer) current(ctx context.Context) (string, ed25519.PrivateKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.priv != nil && now.Sub(s.loadedAt) < time.Minute && now.Sub(s.created) < s.cfg.SigningKeyAge {
		return s.kid, s.priv, nil
	}
	keys, err := s.db.SigningKeys(ctx, s.grace())
	if err != nil {
		return "", nil, err
	}
	for _, k := range keys {
		if k.RetiredAt != nil || now.Sub(k.CreatedAt) >= s.cfg.SigningKeyAge {
			continue
		}
		seed, err := s.seal.open(k.Private)
		if err != nil || len(seed) != ed25519.SeedSize {
			continue
		}
		s.kid, s.priv, s.created, s.loadedAt = k.KID, ed25519.NewKeyFromSeed(seed), k.CreatedAt, now
		return s.kid, s.priv, nil
	}
	return s.rotateLocked(ctx)
}

// Rotate replaces the signing key now (scheduled rotation or compromise).
func (s *signer) Rotate(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kid, _, err := s.rotateLocked(ctx)
	return kid, err
}

func (s *signer) rotateLocked(ctx context.Context) (string, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	kid := kidOf(pub)
	if err := s.db.RotateSigningKey(ctx, sluice.SigningKey{KID: kid, Public: pub, Private: s.seal.seal(priv.Seed())}); err != nil {
		return "", nil, err
	}
	s.kid, s.priv, s.created, s.loadedAt = kid, priv, time.Now(), time.Now()
	s.rotated(ctx)
	return kid, priv, nil
}

// grace is how long a retired key stays published: its last token's life.
func (s *signer) grace() time.Duration { return s.cfg.AccessTTL + s.cfg.Leeway }

// access issues an access token for a user's login.
func (s *signer) access(ctx context.Context, userID, sessionID string, mfa bool) (string, error) {
	kid, priv, err := s.current(ctx)
	if err != nil {
		return "", err
	}
	now := time.Now()
	jti := make([]byte, 12)
	rand.Read(jti) //nolint:errcheck
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, authn.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.Issuer, Subject: userID, Audience: jwt.ClaimStrings{s.cfg.Audience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.AccessTTL)), ID: base64.RawURLEncoding.EncodeToString(jti),
		},
		MFA: mfa, SessionID: sessionID,
	})
	t.Header["kid"] = kid
	return t.SignedString(priv)
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// jwks publishes the verification keys: the signing key and retired keys
// whose tokens may still be alive.
func (s *service) jwks(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.signer.current(r.Context()); err != nil { // a fresh install has a key to publish
		s.fail(w, r, err)
		return
	}
	keys, err := s.DB.PublicKeys(r.Context(), s.signer.grace())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]jwk, 0, len(keys))
	for kid, pub := range keys {
		out = append(out, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: kid,
			Alg: authn.Algorithm, Use: "sig"})
	}
	w.Header().Set("Cache-Control", "public, max-age=60")
	openai.WriteJSON(w, http.StatusOK, map[string]any{"keys": out})
}
