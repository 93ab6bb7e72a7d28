package submit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sluice-ai/sluice/shared/batch"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// The Files API (/v1/files): uploads for batches (purpose batch) and
// other uses (user_data), and the batch output files the driver writes.
// Metadata is in PostgreSQL (Deps.Batches), content in Deps.Files (the
// object store, or the dev state folder). A file is its owner's only:
// anyone else's id answers 404, as an absent one does.
//
// An upload is one request: on AWS Lambda (6 MB request cap) larger files
// go through OpenFaaS or `sluice dev` (docs/BATCH.md).

// uploadSlack is what a multipart upload may carry beyond the file itself
// (boundaries, headers, the purpose field).
const uploadSlack = 64 << 10

func (s *service) filesRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/files", s.uploadFile)
	mux.HandleFunc("GET /v1/files", s.listFiles)
	mux.HandleFunc("GET /v1/files/{id}", s.getFile)
	mux.HandleFunc("GET /v1/files/{id}/content", s.fileContent)
	mux.HandleFunc("DELETE /v1/files/{id}", s.deleteFile)
}

func fileNotFound(id string) error {
	return &sluice.Error{Kind: sluice.KindNotFound, Code: sluice.CodeNotFound, Param: "id",
		Message: "No such File object: " + id}
}

// uploadFile: POST /v1/files, multipart with `file` and `purpose`. The file
// is spooled to a temporary file (counted and bounded as it comes), stored,
// and only then recorded: a refused or failed upload leaves nothing.
func (s *service) uploadFile(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	f, err := s.receiveUpload(w, r, p.UserID)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, f.Object())
}

func (s *service) receiveUpload(w http.ResponseWriter, r *http.Request, userID string) (*batch.File, error) {
	lim := s.Config.Batch
	tooLarge := &sluice.Error{Kind: sluice.KindTooLarge, Code: sluice.CodeRequestTooLarge, Param: "file",
		Message: "The file is larger than " + strconv.FormatInt(lim.MaxFileBytes, 10) + " bytes."}
	if r.ContentLength > lim.MaxFileBytes+uploadSlack {
		return nil, tooLarge
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "multipart/form-data" {
		return nil, sluice.Invalid("", sluice.CodeInvalidValue, "Upload a file as multipart/form-data with the fields file and purpose.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, lim.MaxFileBytes+uploadSlack)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, sluice.Invalid("", sluice.CodeInvalidValue, "The multipart body could not be read.")
	}
	var (
		purpose, name string
		havePurpose   bool
		spool         *os.File
		size          int64
		lines         int
	)
	defer func() {
		if spool != nil {
			spool.Close()
			os.Remove(spool.Name())
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge
		}
		if err != nil {
			return nil, sluice.Invalid("", sluice.CodeInvalidValue, "The multipart body could not be read.")
		}
		switch part.FormName() {
		case "purpose":
			b, _ := io.ReadAll(io.LimitReader(part, 64))
			purpose, havePurpose = string(b), true
		case "file":
			if spool != nil {
				return nil, sluice.Invalid("file", sluice.CodeInvalidValue, "Upload one file per request.")
			}
			name = cleanName(part.FileName())
			if spool, err = os.CreateTemp("", "sluice-upload-*"); err != nil {
				return nil, err
			}
			size, lines, err = spoolPart(spool, part, lim.MaxFileBytes)
			if errors.As(err, &mbe) || (err == nil && size > lim.MaxFileBytes) {
				return nil, tooLarge
			}
			if err != nil {
				return nil, sluice.Invalid("file", sluice.CodeInvalidValue, "The file could not be read.")
			}
		default:
			io.Copy(io.Discard, part) //nolint:errcheck // unknown fields are ignored, as OpenAI does
		}
	}
	switch {
	case !havePurpose:
		return nil, sluice.Invalid("purpose", sluice.CodeMissingRequired, "You must provide a purpose.")
	case purpose != batch.PurposeBatch && purpose != batch.PurposeUserData:
		return nil, sluice.Invalid("purpose", sluice.CodeInvalidValue,
			"purpose %q is not supported: use %q or %q.", purpose, batch.PurposeBatch, batch.PurposeUserData)
	case spool == nil:
		return nil, sluice.Invalid("file", sluice.CodeMissingRequired, "You must provide a file.")
	case purpose == batch.PurposeBatch && lines > lim.MaxLines:
		return nil, sluice.Invalid("file", sluice.CodeInvalidValue,
			"A batch file may hold at most %d requests; this one has %d lines.", lim.MaxLines, lines)
	case purpose == batch.PurposeBatch && lines == 0:
		return nil, sluice.Invalid("file", sluice.CodeInvalidValue, "The batch file has no request lines.")
	}
	f := &batch.File{ID: batch.NewFileID(), UserID: userID, Purpose: purpose, Filename: name, Bytes: size}
	f.StorageKey = batch.BlobKey(userID, f.ID)
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	ctx := r.Context()
	if err := s.Files.Put(ctx, f.StorageKey, spool); err != nil {
		return nil, err
	}
	if err := s.Batches.CreateFile(ctx, f); err != nil {
		s.Files.Delete(context.WithoutCancel(ctx), f.StorageKey) //nolint:errcheck // an unrecorded object is only space
		return nil, err
	}
	return f, nil
}

// spoolPart copies a file part to dst, up to max+1 bytes, counting its
// non-blank lines.
func spoolPart(dst io.Writer, src io.Reader, max int64) (int64, int, error) {
	br := bufio.NewReaderSize(io.LimitReader(src, max+1), 64<<10)
	var n int64
	lines, filled := 0, false
	for {
		b, err := br.ReadSlice('\n')
		if len(b) > 0 {
			if _, werr := dst.Write(b); werr != nil {
				return n, lines, werr
			}
			n += int64(len(b))
			filled = filled || len(bytes.TrimSpace(b)) > 0
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // the same line goes on
		}
		if filled {
			lines++
		}
		filled = false
		if errors.Is(err, io.EOF) {
			return n, lines, nil
		}
		if err != nil {
			return n, lines, err
		}
	}
}

func cleanName(n string) string {
	n = filepath.Base(strings.ReplaceAll(n, "\\", "/"))
	if n == "." || n == "/" || n == "" || !utf8.ValidString(n) {
		n = "file"
	}
	if len(n) > 255 {
		n = n[:255]
	}
	return n
}

// listFiles: GET /v1/files?purpose=&after=&limit= (1 to 10,000; default 10,000), newest first.
func (s *service) listFiles(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	limit, err := listLimit(r, 10000, 10000)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	q := r.URL.Query()
	fs, err := s.Batches.ListFiles(r.Context(), p.UserID, q.Get("purpose"), q.Get("after"), limit+1)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	more := len(fs) > limit
	fs = fs[:min(len(fs), limit)]
	data := make([]batch.FileObject, len(fs))
	for i, f := range fs {
		data[i] = f.Object()
	}
	openai.WriteJSON(w, http.StatusOK, listPage(data, more, func(o batch.FileObject) string { return o.ID }))
}

// listLimit reads ?limit=, 1 to most (def when absent).
func listLimit(r *http.Request, def, most int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, sluice.Invalid("limit", sluice.CodeInvalidValue, "limit must be an integer from 1 to %d.", most)
	}
	return n, nil
}

// page is OpenAI's cursor list.
type page[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

func listPage[T any](data []T, more bool, id func(T) string) page[T] {
	pg := page[T]{Object: "list", Data: data, HasMore: more}
	if len(data) > 0 {
		f, l := id(data[0]), id(data[len(data)-1])
		pg.FirstID, pg.LastID = &f, &l
	}
	return pg
}

func (s *service) ownFile(w http.ResponseWriter, r *http.Request) (*batch.File, bool) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return nil, false
	}
	f, err := s.Batches.GetFile(r.Context(), r.PathValue("id"), p.UserID)
	if errors.Is(err, sluice.ErrNotFound) {
		err = fileNotFound(r.PathValue("id"))
	}
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return nil, false
	}
	return &f, true
}

// getFile: GET /v1/files/{id}.
func (s *service) getFile(w http.ResponseWriter, r *http.Request) {
	if f, ok := s.ownFile(w, r); ok {
		openai.WriteJSON(w, http.StatusOK, f.Object())
	}
}

// fileContent: GET /v1/files/{id}/content, the bytes as uploaded (or written).
func (s *service) fileContent(w http.ResponseWriter, r *http.Request) {
	f, ok := s.ownFile(w, r)
	if !ok {
		return
	}
	rc, err := s.Files.Get(r.Context(), f.StorageKey)
	if err != nil {
		if errors.Is(err, sluice.ErrNotFound) || sluice.AsError(err).Kind == sluice.KindNotFound {
			err = fileNotFound(f.ID)
		}
		openai.WriteError(w, r, s.Log, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(f.Bytes, 10))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Filename}))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc) //nolint:errcheck // the client may be gone
}

// deleteFile: DELETE /v1/files/{id}. The record goes first; then the content.
func (s *service) deleteFile(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	f, err := s.Batches.DeleteFile(r.Context(), r.PathValue("id"), p.UserID)
	if errors.Is(err, sluice.ErrNotFound) {
		err = fileNotFound(r.PathValue("id"))
	}
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	s.Files.Delete(context.WithoutCancel(r.Context()), f.StorageKey) //nolint:errcheck // unreachable now; only space
	openai.WriteJSON(w, http.StatusOK, map[string]any{"id": f.ID, "object": "file", "deleted": true})
}
