// Package objstore is Sluice's S3-compatible object storage (MinIO in the
// design, AWS S3 elsewhere): database backups, model artifacts, and large
// job results and async inputs (jobs.go). It is
// the one place that configures the S3 client.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Store reads and writes objects in one bucket.
type Store struct {
	client *s3.Client
	bucket string
}

// Object is a stored object's listing entry.
type Object struct {
	Key          string
	Size         int64
	LastModified time.Time
}

// New returns a store for cfg's bucket with the environment's credentials.
// MinIO needs path-style addressing, and S3-compatible stores that predate
// S3's default checksums reject them, so checksums are sent only where the
// API requires one.
func New(cfg *config.Config) *Store {
	st := cfg.Storage
	opts := s3.Options{
		Region:                     st.Region,
		UsePathStyle:               !st.VirtualHostStyle,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if st.Endpoint != "" {
		opts.BaseEndpoint = aws.String(st.Endpoint)
	}
	if cfg.Env.S3AccessKey != "" {
		opts.Credentials = credentials.NewStaticCredentialsProvider(cfg.Env.S3AccessKey, cfg.Env.S3SecretKey, "")
	}
	return &Store{client: s3.New(opts), bucket: st.Bucket}
}

// EnsureBucket creates the bucket if it does not exist.
func (s *Store) EnsureBucket(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err == nil {
		return nil
	}
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("objstore: create bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Put stores body (a seekable reader, so its length is known) under key.
func (s *Store) Put(ctx context.Context, key string, body io.ReadSeeker, meta map[string]string) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: body, Metadata: meta})
	if err != nil {
		return fmt.Errorf("objstore: put %s: %w", key, err)
	}
	return nil
}

// Get opens key's content and returns its metadata; the caller closes it.
// A missing key is a sluice not-found error.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, map[string]string, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, nil, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound, "No object %s.", key)
		}
		return nil, nil, fmt.Errorf("objstore: get %s: %w", key, err)
	}
	return out.Body, out.Metadata, nil
}

// List returns the objects under prefix, sorted by key.
func (s *Store) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("objstore: list %s: %w", prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Key, out[j].Key) < 0 })
	return out, nil
}

// Delete removes key; deleting a missing key is not an error (S3's rule).
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil {
		return fmt.Errorf("objstore: delete %s: %w", key, err)
	}
	return nil
}

// PresignPut returns a URL that lets its holder PUT key's content directly
// (no credentials) until ttl passes: large uploads that a function
// platform's request cap (AWS Lambda: 6 MB) would refuse go straight to the
// bucket.
func (s *Store) PresignPut(ctx context.Context, key string, ttl time.Duration) (string, error) {
	req, err := s3.NewPresignClient(s.client, s3.WithPresignExpires(ttl)).PresignPutObject(ctx,
		&s3.PutObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return "", fmt.Errorf("objstore: presign %s: %w", key, err)
	}
	return req.URL, nil
}
