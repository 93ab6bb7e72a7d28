// Package prefixcache computes what Sluice needs of a prompt to use the
// engines' prefix (KV) caches: the chain of block hashes the claim places
// jobs by (so prompts that share a prefix run where it is cached), and the
// per-account cache salt that keeps one account's prompts out of another's
// cache entries. It reads only the request body Sluice already validated;
// it imports no Redis and no engine.
package prefixcache

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// HashLen is the length of one block hash, in hex characters: 64 bits, so
// prefixes of one model collide with odds far below one in a billion at
// the entry bound (config.PrefixCache.MaxEntries), and a collision only
// misplaces a job, never mixes caches (the engine's own hashes decide hits).
const HashLen = 16

// Salt is an account's cache salt: an HMAC of its id under key (derived
// from a server secret), so it cannot be guessed from the id and differs
// between accounts. vLLM mixes it into the first block hash of the
// prompt's KV entries, so one account's requests never hit entries another
// account's prompts made.
func Salt(key []byte, userID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("sluice cache_salt v1\x00"))
	m.Write([]byte(userID))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// SaltKey derives the cache-salt HMAC key from the API-key pepper (every
// process that makes jobs holds it). Rotating the pepper changes every
// salt: the engines' caches start cold once, nothing else changes.
func SaltKey(pepper string) []byte {
	m := hmac.New(sha256.New, []byte(pepper))
	m.Write([]byte("sluice cache-salt key"))
	return m.Sum(nil)
}

// Chain returns the block hashes of the prompt a request body renders to,
// for placement: hash i covers blocks 0..i (each block blockChars
// characters of the rendered prompt, at most maxBlocks of them), mixed
// with salt, so two prompts share hash i exactly when they share their
// first i+1 blocks and their salt. A prompt shorter than one block, or a
// body with no prompt (embeddings), has none.
func Chain(salt, endpoint string, body []byte, blockChars, maxBlocks int) []string {
	text := Render(endpoint, body)
	n := min(len(text)/blockChars, maxBlocks)
	if n <= 0 {
		return nil
	}
	out := make([]string, 0, n)
	h := sha256.Sum256([]byte("sluice prefix v1\x00" + salt))
	for i := range n {
		s := sha256.New()
		s.Write(h[:])
		s.Write([]byte(text[i*blockChars : (i+1)*blockChars]))
		copy(h[:], s.Sum(nil))
		out = append(out, hex.EncodeToString(h[:HashLen/2]))
	}
	return out
}

// Render is the text of a request's prompt, in the order the engine's
// template lays it out: each chat message's role and content (text parts
// as text, other parts as their JSON), a completion's prompt, a response's
// instructions and input. Only its prefix matters, and only for placement:
// a body it cannot read renders to "" (not placed), never an error.
func Render(endpoint string, body []byte) string {
	var b strings.Builder
	switch endpoint {
	case sluice.EndpointChat:
		var req struct {
			Messages []struct {
				Role    string          `json:"role"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		if json.Unmarshal(body, &req) != nil {
			return ""
		}
		for _, m := range req.Messages {
			b.WriteString(m.Role)
			b.WriteByte('\n')
			content(&b, m.Content)
			b.WriteString("\n\x00")
		}
	case sluice.EndpointCompletion:
		var req struct {
			Prompt json.RawMessage `json:"prompt"`
		}
		if json.Unmarshal(body, &req) != nil {
			return ""
		}
		content(&b, req.Prompt)
	case sluice.EndpointResponses:
		var req struct {
			Instructions string          `json:"instructions"`
			Input        json.RawMessage `json:"input"`
		}
		if json.Unmarshal(body, &req) != nil {
			return ""
		}
		b.WriteString(req.Instructions)
		b.WriteString("\n\x00")
		content(&b, req.Input)
	}
	return b.String()
}

// content writes a content value: a string as itself, an array of parts
// with their text parts as text and the rest as JSON, anything else as JSON.
func content(b *strings.Builder, raw json.RawMessage) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		b.WriteString(s)
		return
	}
	var parts []json.RawMessage
	if json.Unmarshal(raw, &parts) == nil {
		for _, p := range parts {
			var t struct {
				Type string  `json:"type"`
				Text *string `json:"text"`
			}
			if json.Unmarshal(p, &t) == nil && t.Text != nil {
				b.WriteString(*t.Text)
			} else {
				b.Write(p)
			}
			b.WriteByte('\n')
		}
		return
	}
	b.Write(raw)
}

// Stamp sets a new job's cache salt (unless the operator shares the cache
// across accounts) and its placement chain (when placement is on), from
// its owner and body. A job whose body went to the object store (large
// async input) is stamped before that, or not placed.
//
// A client may send its own cache_salt (vLLM's field, allowed through):
// shared across accounts it goes to the engine as sent; isolated, it is
// folded into the account's salt (account salt, "-", a hash of the
// client's), which then replaces it, so a client can partition its own
// cache further but never reach into another account's.
func Stamp(cfg *config.Config, job *sluice.Job) {
	pc := cfg.Inference.PrefixCache
	var own struct {
		CacheSalt string `json:"cache_salt"`
	}
	_ = json.Unmarshal(job.Body, &own) // a body that is not an object has no salt of its own
	job.CacheSalt = ""
	salt := own.CacheSalt // what the engine will see
	if !pc.ShareAcrossAccounts {
		job.CacheSalt = Salt(SaltKey(cfg.Env.KeyPepper), job.UserID)
		if own.CacheSalt != "" {
			h := sha256.Sum256([]byte(own.CacheSalt))
			job.CacheSalt += "-" + hex.EncodeToString(h[:8])
		}
		salt = job.CacheSalt
	}
	job.Prefix = nil
	if pc.PlacementOn() {
		job.Prefix = Chain(salt, job.Endpoint, job.Body, pc.BlockChars, pc.MaxBlocks)
	}
}
