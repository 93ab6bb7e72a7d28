package submit

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/sluice-ai/sluice/shared/batch"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Presigned uploads (a Sluice extension to the Files API), for files larger
// than a function platform accepts in one request (AWS Lambda: 6 MB):
//
//  1. POST /v1/files/uploads {"filename","purpose"} → {id, upload_url, expires_at}
//  2. PUT the content to upload_url (straight to the bucket)
//  3. POST /v1/files/{id}/complete → the file object, once its size and
//     lines are within the limits (else the upload is deleted: 413/400)
//
// Served only where file content is in the object store (batch.files_dir
// unset); a pending upload is not listed and cannot feed a batch.

// uploadTTL is how long an upload URL may be used.
const uploadTTL = 15 * time.Minute

func (s *service) uploadRoutes(mux *http.ServeMux) {
	if _, ok := s.Files.(batch.Presigner); !ok {
		return
	}
	mux.HandleFunc("POST /v1/files/uploads", s.createUpload)
	mux.HandleFunc("POST /v1/files/{id}/complete", s.completeUpload)
}

func (s *service) createUpload(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	raw, err := openai.ReadBody(r, 4096)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	tree, err := openai.Decode(raw)
	if err == nil && tree.Kind != openai.Object {
		err = sluice.Invalid("", sluice.CodeInvalidJSON, "The OpenAI API expects a JSON object.")
	}
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	var name, purpose string
	for _, m := range tree.Members {
		switch {
		case (m.Key == "filename" || m.Key == "purpose") && m.Val.Kind == openai.String:
			if m.Key == "filename" {
				name = m.Val.Str
			} else {
				purpose = m.Val.Str
			}
		case m.Key == "filename" || m.Key == "purpose":
			openai.WriteError(w, r, s.Log, sluice.Invalid(m.Key, sluice.CodeInvalidValue, "%s must be a string.", m.Key))
			return
		default:
			openai.WriteError(w, r, s.Log, &sluice.Error{Kind: sluice.KindInvalid, Code: sluice.CodeUnknownParameter, Param: m.Key,
				Message: "Unrecognized request argument supplied: " + m.Key})
			return
		}
	}
	if purpose != batch.PurposeBatch && purpose != batch.PurposeUserData {
		openai.WriteError(w, r, s.Log, sluice.Invalid("purpose", sluice.CodeInvalidValue,
			"purpose %q is not supported: use %q or %q.", purpose, batch.PurposeBatch, batch.PurposeUserData))
		return
	}
	f := &batch.File{ID: batch.NewFileID(), UserID: p.UserID, Purpose: purpose, Filename: cleanName(name), Status: "uploading"}
	f.StorageKey = batch.BlobKey(p.UserID, f.ID)
	url, err := s.Files.(batch.Presigner).PresignPut(r.Context(), f.StorageKey, uploadTTL)
	if err != nil {
		openai.WriteError(w, r, s.Log, sluice.Unavailable("The file store is unavailable.", err))
		return
	}
	if err := s.Batches.CreateFile(r.Context(), f); err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"id": f.ID, "object": "file.upload", "upload_url": url, "method": "PUT",
		"expires_at": time.Now().Add(uploadTTL).Unix(), "max_bytes": s.Config.Batch.MaxFileBytes})
}

func (s *service) completeUpload(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	id := r.PathValue("id")
	f, err := s.Batches.GetUpload(r.Context(), id, p.UserID)
	if errors.Is(err, sluice.ErrNotFound) {
		err = fileNotFound(id)
	}
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	size, err := s.checkUploaded(r.Context(), &f)
	if err != nil {
		if sluice.AsError(err).Kind != sluice.KindUnavailable { // refused: nothing stays
			s.Files.Delete(context.WithoutCancel(r.Context()), f.StorageKey)         //nolint:errcheck // else only space
			s.Batches.DeleteFile(context.WithoutCancel(r.Context()), f.ID, p.UserID) //nolint:errcheck // it is not listed
		}
		openai.WriteError(w, r, s.Log, err)
		return
	}
	done, err := s.Batches.CompleteUpload(r.Context(), id, p.UserID, size)
	if errors.Is(err, sluice.ErrNotFound) {
		err = fileNotFound(id)
	}
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, done.Object())
}

// checkUploaded reads what was PUT and applies the upload limits; it
// returns the size.
func (s *service) checkUploaded(ctx context.Context, f *batch.File) (int64, error) {
	lim := s.Config.Batch
	rc, err := s.Files.Get(ctx, f.StorageKey)
	if sluice.AsError(err).Kind == sluice.KindNotFound {
		return 0, sluice.Invalid("id", sluice.CodeInvalidValue, "Nothing was uploaded to the upload URL yet.")
	}
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	size, lines, err := spoolPart(io.Discard, rc, lim.MaxFileBytes)
	switch {
	case err != nil:
		return 0, sluice.Unavailable("The file store is unavailable.", err)
	case size > lim.MaxFileBytes:
		return 0, &sluice.Error{Kind: sluice.KindTooLarge, Code: sluice.CodeRequestTooLarge, Param: "file",
			Message: "The file is larger than the limit of batch.max_file_bytes."}
	case f.Purpose == batch.PurposeBatch && (lines > lim.MaxLines || lines == 0):
		return 0, sluice.Invalid("file", sluice.CodeInvalidValue, "A batch file needs 1 to %d request lines; this one has %d.", lim.MaxLines, lines)
	}
	return size, nil
}
