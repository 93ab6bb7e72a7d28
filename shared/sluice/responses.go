package sluice

import (
	"encoding/json"
	"strings"
	"time"
)

// ResponseJob is what a /v1/responses job carries beyond its upstream body:
// the worker names the engine's response with ID, echoes Sluice's own
// fields in it, and, when Store is set, keeps it (with Input) for
// GET /v1/responses/{id} and for a later previous_response_id.
type ResponseJob struct {
	ID         string          `json:"id"`
	Store      bool            `json:"store"`
	PreviousID string          `json:"previous_response_id,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	// TTL is how long a stored response is kept (responses.store_ttl).
	TTL time.Duration `json:"ttl,omitempty"`
}

// ResponseID is the response id of a job: "resp_" and the job id's own
// part, so each names the other.
func ResponseID(jobID string) string { return "resp_" + strings.TrimPrefix(jobID, "job_") }

// StoredResponse is a kept response: its object as its client got it, and
// the input items and output items a previous_response_id expands to.
type StoredResponse struct {
	ID        string
	UserID    string
	Model     string
	Input     json.RawMessage // JSON array of the items the engine got
	Response  json.RawMessage // the response object
	CreatedAt time.Time
	ExpiresAt time.Time
}
