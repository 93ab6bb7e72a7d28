package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/sluice-ai/sluice/internal/artifact"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/objstore"
)

func init() {
	commands["model"] = command{
		usage: `model keygen|publish|verify ...      signed model artifacts in storage.bucket (sluice model --help)`,
		run:   runModel,
		help:  modelUsage[len("usage:\n"):],
	}
}

const modelUsage = `usage:
  sluice model keygen  --key model.key --pub model.pub
  sluice model publish --name N --version V --dir weights/ --key model.key
  sluice model verify  --name N --version V --pub model.pub [--download dir]`

func runModel(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		return usageError{modelUsage}
	}
	fs := flag.NewFlagSet("model "+args[0], flag.ContinueOnError)
	name := fs.String("name", "", "model name, as served (e.g. llama-2-7b)")
	version := fs.String("version", "", "version; immutable once published")
	dir := fs.String("dir", "", "publish: the folder of weights and config files")
	keyPath := fs.String("key", "", "ed25519 private key (PEM); keygen writes it")
	pubPath := fs.String("pub", "", "ed25519 public key (PEM); keygen writes it")
	download := fs.String("download", "", "verify: write the verified files here")
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	// A flag the verb does not use is an error rather than ignored.
	uses := map[string]string{"keygen": " key pub ", "publish": " name version dir key ", "verify": " name version pub download "}[args[0]]
	var unused error
	fs.Visit(func(f *flag.Flag) {
		if uses != "" && !strings.Contains(uses, " "+f.Name+" ") && unused == nil {
			unused = usageErrorf("model %s does not take --%s", args[0], f.Name)
		}
	})
	if unused != nil {
		return unused
	}
	if args[0] == "keygen" {
		if *keyPath == "" || *pubPath == "" {
			return usageError{modelUsage}
		}
		return artifact.GenerateKey(*keyPath, *pubPath)
	}
	cfg, err := config.Load(e.getenv)
	if err != nil {
		return err
	}
	store, prefix := objstore.New(cfg), cfg.Storage.ModelPrefix
	switch args[0] {
	case "publish":
		if *name == "" || *version == "" || *dir == "" || *keyPath == "" {
			return usageError{modelUsage}
		}
		key, err := artifact.LoadPrivateKey(*keyPath)
		if err != nil {
			return err
		}
		m, err := artifact.Publish(ctx, store, prefix, *name, *version, *dir, key, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "published %s %s: %d files, signed manifest at s3://%s/%s%s/%s/manifest.json\n",
			m.Name, m.Version, len(m.Files), cfg.Storage.Bucket, prefix, m.Name, m.Version)
	case "verify":
		if *name == "" || *version == "" || *pubPath == "" {
			return usageError{modelUsage}
		}
		pub, err := artifact.LoadPublicKey(*pubPath)
		if err != nil {
			return err
		}
		m, err := artifact.Verify(ctx, store, prefix, *name, *version, pub, *download)
		if err != nil {
			return err
		}
		var total int64
		for _, f := range m.Files {
			total += f.Size
		}
		fmt.Fprintf(e.stdout, "verified %s %s: signature good, %d files, %d bytes match\n", m.Name, m.Version, len(m.Files), total)
	default:
		return usageError{modelUsage}
	}
	return nil
}
