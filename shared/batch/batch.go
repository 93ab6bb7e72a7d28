// Package batch is the OpenAI Files and Batch APIs' domain: files (their
// metadata in PostgreSQL, their content in a Blobs store), batches, the
// JSONL line format, and the Driver that runs a batch's lines through
// admission and the queue as the lowest class of work. See docs/BATCH.md.
package batch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// File purposes: what a user may upload (batch, user_data), and what Sluice
// writes (a batch's output and error files).
const (
	PurposeBatch       = "batch"
	PurposeUserData    = "user_data"
	PurposeBatchOutput = "batch_output"
)

// Batch statuses, OpenAI's.
const (
	StatusValidating = "validating"
	StatusFailed     = "failed"
	StatusInProgress = "in_progress"
	StatusFinalizing = "finalizing"
	StatusCompleted  = "completed"
	StatusExpired    = "expired"
	StatusCancelling = "cancelling"
	StatusCancelled  = "cancelled"
)

// CompletionWindow is the one window a batch may ask for.
const CompletionWindow = "24h"

// Window is how long a batch may run before it expires.
const Window = 24 * time.Hour

// File is one stored file's metadata.
type File struct {
	ID, UserID, Purpose, Filename string
	Bytes                         int64
	// StorageKey names the content in the Blobs store.
	StorageKey string
	// Status is "uploading" for a presigned upload not completed yet;
	// empty (processed) otherwise.
	Status    string
	CreatedAt time.Time
}

// FileObject is OpenAI's file object.
type FileObject struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Bytes     int64  `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	Status    string `json:"status"`
	// StatusDetails is always null (deprecated by OpenAI, still sent).
	StatusDetails *string `json:"status_details"`
}

// Object returns the file as the API shows it.
func (f File) Object() FileObject {
	return FileObject{ID: f.ID, Object: "file", Bytes: f.Bytes, CreatedAt: f.CreatedAt.Unix(), Filename: f.Filename,
		Purpose: f.Purpose, Status: "processed"}
}

// Owner is who a batch runs for, as its creator's credential said: the
// driver admits its lines for this principal (tier, limits, period) and
// under the key's model allowlist.
type Owner struct {
	UserID string        `json:"user_id"`
	KeyID  string        `json:"key_id,omitempty"`
	Tier   string        `json:"tier"`
	Models []string      `json:"models,omitempty"`
	Limits sluice.Limits `json:"limits"`
	Period string        `json:"period,omitempty"`
}

// OwnerOf is the Owner of a principal.
func OwnerOf(p *sluice.Principal) Owner {
	return Owner{UserID: p.UserID, KeyID: p.KeyID, Tier: p.Tier, Models: p.Models, Limits: p.Limits, Period: p.Period}
}

// Principal is the Owner as a principal, for the allowlist check.
func (o Owner) Principal() *sluice.Principal {
	return &sluice.Principal{UserID: o.UserID, KeyID: o.KeyID, Tier: o.Tier, Models: o.Models, Limits: o.Limits, Period: o.Period}
}

// Batch is one batch as stored.
type Batch struct {
	ID               string
	UserID           string
	Owner            Owner
	Endpoint         string
	InputFileID      string
	CompletionWindow string
	Metadata         map[string]string
	Status           string
	Errors           []LineError // why the whole batch failed
	Total            int         // lines in the input file
	NextLine         int         // lines before it were admitted and enqueued (or refused)
	Completed        int         // lines that succeeded
	Failed           int         // lines that failed
	OutputFileID     string
	ErrorFileID      string
	CreatedAt        time.Time
	ExpiresAt        time.Time
	InProgressAt, FinalizingAt, CompletedAt, FailedAt,
	ExpiredAt, CancellingAt, CancelledAt *time.Time
}

// LineError is one entry of a batch's errors list.
type LineError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int    `json:"line"`
}

// Object is OpenAI's batch object.
type Object struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	Endpoint         string            `json:"endpoint"`
	Errors           *ErrorList        `json:"errors"`
	InputFileID      string            `json:"input_file_id"`
	CompletionWindow string            `json:"completion_window"`
	Status           string            `json:"status"`
	OutputFileID     *string           `json:"output_file_id"`
	ErrorFileID      *string           `json:"error_file_id"`
	CreatedAt        int64             `json:"created_at"`
	InProgressAt     *int64            `json:"in_progress_at"`
	ExpiresAt        *int64            `json:"expires_at"`
	FinalizingAt     *int64            `json:"finalizing_at"`
	CompletedAt      *int64            `json:"completed_at"`
	FailedAt         *int64            `json:"failed_at"`
	ExpiredAt        *int64            `json:"expired_at"`
	CancellingAt     *int64            `json:"cancelling_at"`
	CancelledAt      *int64            `json:"cancelled_at"`
	RequestCounts    RequestCounts     `json:"request_counts"`
	Metadata         map[string]string `json:"metadata"`
}

// ErrorList is the batch object's errors field.
type ErrorList struct {
	Object string      `json:"object"`
	Data   []LineError `json:"data"`
}

// RequestCounts are a batch's line counts.
type RequestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

func unix(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.Unix()
	return &v
}

func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Object returns the batch as the API shows it.
func (b Batch) Object() Object {
	exp := b.ExpiresAt.Unix()
	o := Object{ID: b.ID, Object: "batch", Endpoint: b.Endpoint, InputFileID: b.InputFileID,
		CompletionWindow: b.CompletionWindow, Status: b.Status, OutputFileID: str(b.OutputFileID), ErrorFileID: str(b.ErrorFileID),
		CreatedAt: b.CreatedAt.Unix(), InProgressAt: unix(b.InProgressAt), ExpiresAt: &exp, FinalizingAt: unix(b.FinalizingAt),
		CompletedAt: unix(b.CompletedAt), FailedAt: unix(b.FailedAt), ExpiredAt: unix(b.ExpiredAt),
		CancellingAt: unix(b.CancellingAt), CancelledAt: unix(b.CancelledAt),
		RequestCounts: RequestCounts{Total: b.Total, Completed: b.Completed, Failed: b.Failed}, Metadata: b.Metadata}
	if len(b.Errors) > 0 {
		o.Errors = &ErrorList{Object: "list", Data: b.Errors}
	}
	return o
}

// Store is where files' metadata and batches live (shared/postgres
// implements it).
type Store interface {
	// CreateFile records a stored file; it sets f.CreatedAt.
	CreateFile(ctx context.Context, f *File) error
	// GetFile returns a live file of owner's ("": anyone's); sluice.ErrNotFound otherwise.
	GetFile(ctx context.Context, id, owner string) (File, error)
	// ListFiles lists a user's live files, newest first, after the file id
	// after ("": from the newest), of purpose ("": any).
	ListFiles(ctx context.Context, userID, purpose, after string, limit int) ([]File, error)
	// GetUpload returns a user's presigned upload not completed yet.
	GetUpload(ctx context.Context, id, userID string) (File, error)
	// CompleteUpload makes a user's presigned upload a file of size bytes.
	CompleteUpload(ctx context.Context, id, userID string, bytes int64) (File, error)
	// DeleteFile marks a file of the user's deleted and returns it.
	DeleteFile(ctx context.Context, id, userID string) (File, error)

	// CreateBatch records a new batch; it sets b.CreatedAt and b.ExpiresAt.
	CreateBatch(ctx context.Context, b *Batch) error
	// GetBatch returns a batch of owner's ("": anyone's) with its live counts.
	GetBatch(ctx context.Context, id, owner string) (Batch, error)
	// ListBatches lists a user's batches, newest first, after the batch id after.
	ListBatches(ctx context.Context, userID, after string, limit int) ([]Batch, error)
	// CancelBatch starts cancelling a user's batch, if it has not ended; it
	// reports whether it did.
	CancelBatch(ctx context.Context, id, userID string) (bool, error)

	// ClaimBatch leases one unfinished batch no live driver holds to owner.
	ClaimBatch(ctx context.Context, owner string, lease time.Duration) (id string, ok bool, err error)
	// RenewBatch extends owner's lease and returns the batch's status;
	// ErrLost when another driver holds it now.
	RenewBatch(ctx context.Context, id, owner string, lease time.Duration) (string, error)
	// ReleaseBatch gives the lease up, so another driver may claim it at once.
	ReleaseBatch(ctx context.Context, id, owner string) error
	// StartBatch ends validation: status in_progress (or failed, with errs) and the line count.
	StartBatch(ctx context.Context, id, owner, status string, total int, errs []LineError) error
	// AdvanceBatch records that the lines before next were admitted and enqueued (or refused).
	AdvanceBatch(ctx context.Context, id, owner string, next int) error
	// SetBatchStatus moves a batch to finalizing or cancelling.
	SetBatchStatus(ctx context.Context, id, owner, status string) error
	// AddBatchResults records line outcomes; a line's first outcome stays.
	AddBatchResults(ctx context.Context, id string, rs []Result) error
	// BatchResultLines lists the lines with an outcome.
	BatchResultLines(ctx context.Context, id string) ([]int, error)
	// BatchResults returns the outcomes' JSONL lines of one kind, in line order.
	BatchResults(ctx context.Context, id string, ok bool) ([]string, error)
	// FinishBatch ends a batch with its files (each may be nil), in one transaction.
	FinishBatch(ctx context.Context, id, owner, status string, out, errf *File) error
}

// ErrLost is RenewBatch's answer when another driver took the batch over.
var ErrLost = sluice.Errorf(sluice.KindConflict, sluice.CodeConflict, "The batch is held by another driver.")

// Result is one line's outcome: its output (ok) or error file line.
type Result struct {
	Line int
	OK   bool
	Body string
}

// NewFileID returns a new file id, "file-" and 24 random hex digits.
func NewFileID() string { return "file-" + randHex(12) }

// NewBatchID returns a new batch id.
func NewBatchID() string { return "batch_" + randHex(12) }

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // crypto/rand never fails on Linux
	return hex.EncodeToString(b)
}

// MarshalMetadata is a batch's metadata as stored (null for none).
func MarshalMetadata(m map[string]string) []byte {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	return b
}
