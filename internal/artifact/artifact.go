// Package artifact publishes model weights to S3-compatible storage with a
// signed manifest of checksums and verifies them before they are served: the
// design's model signing and verification. A version is immutable once
// published; its manifest is signed with ed25519, and every file's size and
// SHA-256 must match it.
package artifact

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"time"

	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Manifest lists a model version's files.
type Manifest struct {
	Name      string    `json:"name"`
	Version   string    `json:"version"`
	Files     []File    `json:"files"`
	CreatedAt time.Time `json:"created_at"`
}

// File is one artifact file, its path relative to the version's root.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	hexSHA256   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ParseManifest decodes and checks a manifest: names that are safe as object
// keys, paths that stay inside the version's folder, well-formed checksums.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("artifact: manifest: %w", err)
	}
	if !namePattern.MatchString(m.Name) || !namePattern.MatchString(m.Version) {
		return Manifest{}, fmt.Errorf("artifact: manifest: bad name %q or version %q", m.Name, m.Version)
	}
	if len(m.Files) == 0 {
		return Manifest{}, errors.New("artifact: manifest lists no files")
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if !filepath.IsLocal(f.Path) || path.Clean(f.Path) != f.Path || seen[f.Path] {
			return Manifest{}, fmt.Errorf("artifact: manifest: bad or repeated path %q", f.Path)
		}
		if f.Size < 0 || !hexSHA256.MatchString(f.SHA256) {
			return Manifest{}, fmt.Errorf("artifact: manifest: %s: bad size or sha256", f.Path)
		}
		seen[f.Path] = true
	}
	return m, nil
}

// Keys under prefix: <name>/<version>/manifest.json(.sig) and files/<path>.
func versionKey(prefix, name, version string) string { return prefix + name + "/" + version + "/" }

// Publish uploads every regular file under dir as model name, version, then
// the manifest and its signature. The manifest goes last, so a version is
// visible only once complete; an existing version is never overwritten.
func Publish(ctx context.Context, store *objstore.Store, prefix, name, version, dir string, key ed25519.PrivateKey, now time.Time) (Manifest, error) {
	if !namePattern.MatchString(name) || !namePattern.MatchString(version) {
		return Manifest{}, fmt.Errorf("artifact: bad name %q or version %q", name, version)
	}
	base := versionKey(prefix, name, version)
	if err := store.EnsureBucket(ctx); err != nil {
		return Manifest{}, err
	}
	if r, _, err := store.Get(ctx, base+"manifest.json"); err == nil {
		r.Close()
		return Manifest{}, fmt.Errorf("artifact: %s %s is already published; versions are immutable", name, version)
	} else if sluice.KindOf(err) != sluice.KindNotFound {
		return Manifest{}, err
	}
	m := Manifest{Name: name, Version: version, CreatedAt: now.UTC()}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		size, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		file := File{Path: filepath.ToSlash(rel), Size: size, SHA256: hex.EncodeToString(h.Sum(nil))}
		m.Files = append(m.Files, file)
		return store.Put(ctx, base+"files/"+file.Path, f, map[string]string{"sha256": file.SHA256})
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("artifact: publish %s: %w", dir, err)
	}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	if _, err := ParseManifest(body); err != nil {
		return Manifest{}, err
	}
	sig := ed25519.Sign(key, body)
	if err := store.Put(ctx, base+"manifest.json.sig", bytes.NewReader(sig), nil); err != nil {
		return Manifest{}, err
	}
	return m, store.Put(ctx, base+"manifest.json", bytes.NewReader(body), nil)
}

// Verify checks a published version: the manifest's signature under pub,
// then every file's size and SHA-256. With dest set, the files are written
// there as they are checked (what an init container does before the engine
// loads them); a file that fails is removed and an error returned.
func Verify(ctx context.Context, store *objstore.Store, prefix, name, version string, pub ed25519.PublicKey, dest string) (Manifest, error) {
	base := versionKey(prefix, name, version)
	body, err := readAll(ctx, store, base+"manifest.json")
	if err != nil {
		return Manifest{}, err
	}
	sig, err := readAll(ctx, store, base+"manifest.json.sig")
	if err != nil {
		return Manifest{}, err
	}
	if !ed25519.Verify(pub, body, sig) {
		return Manifest{}, fmt.Errorf("artifact: %s %s: the manifest's signature does not verify; not serving it", name, version)
	}
	m, err := ParseManifest(body)
	if err != nil {
		return Manifest{}, err
	}
	if m.Name != name || m.Version != version {
		return Manifest{}, fmt.Errorf("artifact: the manifest at %s names %s %s", base, m.Name, m.Version)
	}
	for _, f := range m.Files {
		if err := verifyFile(ctx, store, base+"files/"+f.Path, f, dest); err != nil {
			return Manifest{}, err
		}
	}
	return m, nil
}

func verifyFile(ctx context.Context, store *objstore.Store, key string, f File, dest string) error {
	r, _, err := store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer r.Close()
	w := io.Discard
	var out *os.File
	if dest != "" {
		target := filepath.Join(dest, filepath.FromSlash(f.Path)) // ParseManifest keeps it inside dest
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if out, err = os.Create(target); err != nil {
			return err
		}
		defer out.Close()
		w = out
	}
	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(w, h), r)
	if err == nil && (size != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256) {
		err = fmt.Errorf("artifact: %s: size or SHA-256 differs from the signed manifest; not serving it", f.Path)
	}
	if err != nil && out != nil {
		os.Remove(out.Name()) //nolint:errcheck // a partial or bad file must not be loaded
	}
	return err
}

func readAll(ctx context.Context, store *objstore.Store, key string) ([]byte, error) {
	r, _, err := store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, 16<<20))
}

// GenerateKey writes a new signing key pair as PEM: the private key (PKCS #8,
// mode 0600) to privPath and the public key (PKIX) to pubPath.
func GenerateKey(privPath, pubPath string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

// LoadPrivateKey reads a PEM PKCS #8 ed25519 private key.
func LoadPrivateKey(p string) (ed25519.PrivateKey, error) {
	der, err := readPEM(p, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if priv, ok := k.(ed25519.PrivateKey); err == nil && ok {
		return priv, nil
	}
	return nil, fmt.Errorf("artifact: %s is not an ed25519 private key", p)
}

// LoadPublicKey reads a PEM PKIX ed25519 public key.
func LoadPublicKey(p string) (ed25519.PublicKey, error) {
	der, err := readPEM(p, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if pub, ok := k.(ed25519.PublicKey); err == nil && ok {
		return pub, nil
	}
	return nil, fmt.Errorf("artifact: %s is not an ed25519 public key", p)
}

func readPEM(p, typ string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("artifact: %s: want a PEM %s", p, typ)
	}
	return blk.Bytes, nil
}
