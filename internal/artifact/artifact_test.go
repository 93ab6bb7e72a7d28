package artifact_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/artifact"
	"github.com/sluice-ai/sluice/shared/objstore/s3test"
)

func keys(t *testing.T) (privPath, pubPath string) {
	t.Helper()
	dir := t.TempDir()
	privPath, pubPath = filepath.Join(dir, "model.key"), filepath.Join(dir, "model.pub")
	if err := artifact.GenerateKey(privPath, pubPath); err != nil {
		t.Fatal(err)
	}
	return privPath, pubPath
}

// TestPublishVerify publishes a small "model", verifies and downloads it,
// and refuses a tampered file, a manifest signed by another key, and a
// second publication of the same version.
func TestPublishVerify(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := s3test.New(t)
	src := t.TempDir()
	files := map[string]string{"config.json": `{"model_type":"llama"}`, "weights/model-00001.safetensors": strings.Repeat("w", 4096)}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	privPath, pubPath := keys(t)
	priv, err := artifact.LoadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := artifact.LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := artifact.Publish(ctx, store, "models/", "tiny", "v1", src, priv, time.Now())
	if err != nil || len(m.Files) != 2 {
		t.Fatalf("publish: %+v, %v", m, err)
	}
	if _, err := artifact.Publish(ctx, store, "models/", "tiny", "v1", src, priv, time.Now()); err == nil {
		t.Error("publishing v1 twice succeeded; versions must be immutable")
	}

	dest := t.TempDir()
	if _, err := artifact.Verify(ctx, store, "models/", "tiny", "v1", pub, dest); err != nil {
		t.Fatal(err)
	}
	for p, body := range files {
		got, err := os.ReadFile(filepath.Join(dest, p))
		if err != nil || string(got) != body {
			t.Errorf("downloaded %s: %q, %v", p, got, err)
		}
	}

	// Another key's signature is refused.
	_, otherPub := keys(t)
	other, _ := artifact.LoadPublicKey(otherPub)
	if _, err := artifact.Verify(ctx, store, "models/", "tiny", "v1", other, ""); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("wrong key: %v", err)
	}

	// A weight file swapped in storage is refused, and not left on disk.
	if err := store.Put(ctx, "models/tiny/v1/files/weights/model-00001.safetensors",
		bytes.NewReader([]byte(strings.Repeat("x", 4096))), nil); err != nil {
		t.Fatal(err)
	}
	dest2 := t.TempDir()
	if _, err := artifact.Verify(ctx, store, "models/", "tiny", "v1", pub, dest2); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("tampered weights: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest2, "weights", "model-00001.safetensors")); !os.IsNotExist(err) {
		t.Errorf("a tampered file was left for the engine to load (%v)", err)
	}
}

func TestParseManifestRejectsEscapes(t *testing.T) {
	t.Parallel()
	sha := strings.Repeat("a", 64)
	for _, path := range []string{"../etc/passwd", "/abs", "a/../../b", "", "./x"} {
		b := []byte(`{"name":"m","version":"v1","created_at":"2026-01-01T00:00:00Z","files":[{"path":"` + path + `","size":1,"sha256":"` + sha + `"}]}`)
		if _, err := artifact.ParseManifest(b); err == nil {
			t.Errorf("path %q accepted", path)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"name":"m","version":"v1","created_at":"2026-01-01T00:00:00Z","files":[{"path":"a/b","size":1,"sha256":"` + strings.Repeat("0", 64) + `"}]}`))
	f.Add([]byte(`{"name":"../x","files":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := artifact.ParseManifest(b)
		if err != nil {
			return
		}
		for _, file := range m.Files {
			if !filepath.IsLocal(file.Path) {
				t.Fatalf("accepted a path outside the version: %q", file.Path)
			}
		}
	})
}
