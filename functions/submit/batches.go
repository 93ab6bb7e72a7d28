package submit

import (
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/sluice-ai/sluice/shared/batch"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// The Batch API (/v1/batches). A batch is a PostgreSQL row here; the
// driver in the GPU worker validates its file and runs its lines
// (shared/batch/driver), so nothing of a batch runs in this function.

func (s *service) batchRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/batches", s.createBatch)
	mux.HandleFunc("GET /v1/batches", s.listBatches)
	mux.HandleFunc("GET /v1/batches/{id}", s.getBatch)
	mux.HandleFunc("POST /v1/batches/{id}/cancel", s.cancelBatch)
}

// batchEndpoints are the endpoints a batch may name; one is accepted where
// this build has its request parser (openai.Routes).
var batchEndpoints = []string{sluice.EndpointChat, sluice.EndpointCompletion, sluice.EndpointEmbeddings, sluice.EndpointResponses}

func batchNotFound(id string) error {
	return &sluice.Error{Kind: sluice.KindNotFound, Code: sluice.CodeNotFound, Param: "id", Message: "No such Batch object: " + id}
}

// parseBatch reads POST /v1/batches strictly: exactly its keys, once each.
func parseBatch(raw []byte) (*batch.Batch, error) {
	tree, err := openai.Decode(raw)
	if err != nil {
		return nil, err
	}
	if tree.Kind != openai.Object {
		return nil, sluice.Invalid("", sluice.CodeInvalidJSON, "The OpenAI API expects a JSON object.")
	}
	b := &batch.Batch{}
	for _, m := range tree.Members {
		v := m.Val
		switch m.Key {
		case "input_file_id", "endpoint", "completion_window":
			if v.Kind != openai.String {
				return nil, sluice.Invalid(m.Key, sluice.CodeInvalidValue, "%s must be a string.", m.Key)
			}
			switch m.Key {
			case "input_file_id":
				b.InputFileID = v.Str
			case "endpoint":
				b.Endpoint = v.Str
			default:
				b.CompletionWindow = v.Str
			}
		case "metadata":
			if v.Kind == openai.Null {
				continue
			}
			if v.Kind != openai.Object || len(v.Members) > 16 {
				return nil, sluice.Invalid("metadata", sluice.CodeInvalidValue, "metadata must be an object of at most 16 string values.")
			}
			b.Metadata = map[string]string{}
			for _, mm := range v.Members {
				if mm.Val.Kind != openai.String || utf8.RuneCountInString(mm.Key) > 64 || utf8.RuneCountInString(mm.Val.Str) > 512 {
					return nil, sluice.Invalid("metadata", sluice.CodeInvalidValue,
						"metadata values must be strings of at most 512 characters, keys at most 64.")
				}
				b.Metadata[mm.Key] = mm.Val.Str
			}
		default:
			return nil, &sluice.Error{Kind: sluice.KindInvalid, Code: sluice.CodeUnknownParameter, Param: m.Key,
				Message: "Unrecognized request argument supplied: " + m.Key}
		}
	}
	switch {
	case b.InputFileID == "":
		return nil, sluice.Invalid("input_file_id", sluice.CodeMissingRequired, "You must provide an input_file_id.")
	case b.CompletionWindow != batch.CompletionWindow:
		return nil, sluice.Invalid("completion_window", sluice.CodeInvalidValue, "completion_window must be %q.", batch.CompletionWindow)
	}
	ok := false
	for _, e := range batchEndpoints {
		_, parsed := openai.Routes[e]
		ok = ok || (e == b.Endpoint && parsed)
	}
	if !ok {
		return nil, sluice.Invalid("endpoint", sluice.CodeInvalidValue,
			"endpoint %q is not supported: use one of %v.", b.Endpoint, batchEndpoints)
	}
	return b, nil
}

// createBatch: POST /v1/batches. The input file must be the caller's;
// a file of another purpose makes a batch that has failed (its errors say
// why), as a file the driver cannot read does.
func (s *service) createBatch(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	raw, err := openai.ReadBody(r, s.Config.Server.MaxBodyBytes)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	b, err := parseBatch(raw)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	f, err := s.Batches.GetFile(r.Context(), b.InputFileID, p.UserID)
	if errors.Is(err, sluice.ErrNotFound) {
		err = &sluice.Error{Kind: sluice.KindNotFound, Code: sluice.CodeNotFound, Param: "input_file_id",
			Message: "No such File object: " + b.InputFileID}
	}
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	b.ID, b.UserID, b.Owner, b.Status = batch.NewBatchID(), p.UserID, batch.OwnerOf(p), batch.StatusValidating
	if f.Purpose != batch.PurposeBatch {
		param := "input_file_id"
		b.Status = batch.StatusFailed
		b.Errors = []batch.LineError{{Code: batch.CodeInvalidPurpose, Param: &param,
			Message: "The input file's purpose is \"" + f.Purpose + "\"; a batch needs one uploaded with purpose \"batch\"."}}
	}
	if err := s.Batches.CreateBatch(r.Context(), b); err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	s.writeBatch(w, r, b.ID, p.UserID)
}

func (s *service) writeBatch(w http.ResponseWriter, r *http.Request, id, owner string) {
	b, err := s.Batches.GetBatch(r.Context(), id, owner)
	if errors.Is(err, sluice.ErrNotFound) {
		err = batchNotFound(id)
	}
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, b.Object())
}

// getBatch: GET /v1/batches/{id}, the owner's only.
func (s *service) getBatch(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	s.writeBatch(w, r, r.PathValue("id"), p.UserID)
}

// listBatches: GET /v1/batches?after=&limit= (1 to 100; default 20), newest first.
func (s *service) listBatches(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	limit, err := listLimit(r, 20, 100)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	bs, err := s.Batches.ListBatches(r.Context(), p.UserID, r.URL.Query().Get("after"), limit+1)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	more := len(bs) > limit
	bs = bs[:min(len(bs), limit)]
	data := make([]batch.Object, len(bs))
	for i, b := range bs {
		data[i] = b.Object()
	}
	openai.WriteJSON(w, http.StatusOK, listPage(data, more, func(o batch.Object) string { return o.ID }))
}

// cancelBatch: POST /v1/batches/{id}/cancel. The batch is cancelling until
// the driver has cancelled its running lines (their holds released, what
// they used charged) and written its files; then cancelled. A batch that
// has ended already answers 409.
func (s *service) cancelBatch(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	id := r.PathValue("id")
	if _, err := s.Batches.CancelBatch(r.Context(), id, p.UserID); err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	b, err := s.Batches.GetBatch(r.Context(), id, p.UserID)
	if errors.Is(err, sluice.ErrNotFound) {
		err = batchNotFound(id)
	}
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	if b.Status != batch.StatusCancelling && b.Status != batch.StatusCancelled {
		openai.WriteError(w, r, s.Log, sluice.Errorf(sluice.KindConflict, sluice.CodeConflict,
			"Cannot cancel a batch with status %s.", b.Status))
		return
	}
	openai.WriteJSON(w, http.StatusOK, b.Object())
}
