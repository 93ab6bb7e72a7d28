package batch

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Line is one request line of a batch input file:
// {"custom_id","method":"POST","url","body"}.
type Line struct {
	N        int // its index among the file's request lines, from 0
	Physical int // its line number in the file, from 1 (for messages)
	CustomID string
	URL      string
	Body     []byte // the request's JSON object, as sent
	// Err is why the line cannot run (it goes to the error file); nil for
	// a well-formed line.
	Err *LineError
}

// Line error codes, in the error file and the batch's errors list.
const (
	CodeInvalidJSONLine   = "invalid_json_line"
	CodeDuplicateCustomID = "duplicate_custom_id"
	CodeMismatchedURL     = "mismatched_url"
	CodeInvalidMethod     = "invalid_method"
	CodeMissingCustomID   = "missing_custom_id"
	CodeInvalidRequest    = "invalid_request"
	CodeEmptyFile         = "empty_file"
	CodeTooManyLines      = "too_many_lines"
	CodeInvalidFileFormat = "invalid_file_format"
	CodeInvalidPurpose    = "invalid_purpose"
	CodeFileMissing       = "file_not_found"
	CodeBatchCancelled    = "batch_cancelled"
	CodeBatchExpired      = "batch_expired"
	CodeInsufficientQuota = sluice.CodeInsufficientQuota
	CodeLineLost          = "line_lost"
)

const (
	maxCustomIDBytes = 512
	envelopeHint     = `each line must be {"custom_id": "...", "method": "POST", "url": "...", "body": {...}}`
	readBuffer       = 64 << 10
)

func lineErr(code, param, format string, args ...any) *LineError {
	e := &LineError{Code: code, Message: fmt.Sprintf(format, args...)}
	if param != "" {
		e.Param = &param
	}
	return e
}

// ParseLine parses one input line strictly (openai.Decode: no duplicate or
// case-variant keys, anywhere): only the four envelope keys, custom_id a
// non-empty string of at most 512 bytes, method POST, url a string, body an
// object. It never panics, whatever the bytes (FuzzParseLine).
func ParseLine(b []byte) Line {
	l := Line{}
	v, err := openai.Decode(b)
	if err != nil || v.Kind != openai.Object {
		l.Err = lineErr(CodeInvalidJSONLine, "", "The line is not a JSON object: %s.", envelopeHint)
		return l
	}
	if id := v.Get("custom_id"); id != nil && id.Kind == openai.String {
		l.CustomID = id.Str
	}
	for _, m := range v.Members {
		switch m.Key {
		case "custom_id", "method", "url", "body":
		default:
			l.Err = lineErr(CodeInvalidRequest, m.Key, "Unknown key %q: %s.", m.Key, envelopeHint)
			return l
		}
	}
	id := v.Get("custom_id")
	switch {
	case id == nil || id.Kind != openai.String || id.Str == "":
		l.Err = lineErr(CodeMissingCustomID, "custom_id", "custom_id must be a non-empty string.")
		return l
	case len(id.Str) > maxCustomIDBytes:
		l.Err = lineErr(CodeInvalidRequest, "custom_id", "custom_id is longer than %d bytes.", maxCustomIDBytes)
		return l
	}
	if m := v.Get("method"); m == nil || m.Kind != openai.String || m.Str != "POST" {
		l.Err = lineErr(CodeInvalidMethod, "method", "method must be \"POST\".")
		return l
	}
	u := v.Get("url")
	if u == nil || u.Kind != openai.String {
		l.Err = lineErr(CodeMismatchedURL, "url", "url must be a string.")
		return l
	}
	l.URL = u.Str
	body := v.Get("body")
	if body == nil || body.Kind != openai.Object {
		l.Err = lineErr(CodeInvalidRequest, "body", "body must be the request's JSON object.")
		return l
	}
	l.Body = body.Bytes()
	return l
}

// FileError is a whole-file problem: the batch fails with it.
type FileError struct{ LineError }

func (e *FileError) Error() string { return e.Message }

// ReadLines reads a batch input file: every non-blank line parsed
// (ParseLine), a custom_id seen before refused (duplicate_custom_id), and a
// url other than endpoint refused (mismatched_url). Whole-file problems are
// a *FileError: no request lines, more than maxLines, or no line that is a
// JSON object at all (not JSONL).
func ReadLines(r io.Reader, endpoint string, maxLines int) ([]Line, error) {
	br := bufio.NewReaderSize(r, readBuffer)
	var out []Line
	seen := map[string]int{}
	objects := 0
	for phys := 1; ; phys++ {
		raw, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if t := bytes.TrimSpace(raw); len(t) > 0 {
			if len(out) >= maxLines {
				return nil, &FileError{LineError{Code: CodeTooManyLines,
					Message: fmt.Sprintf("The file has more than %d request lines.", maxLines)}}
			}
			l := ParseLine(t)
			l.N, l.Physical = len(out), phys
			if l.Err == nil || l.Err.Code != CodeInvalidJSONLine {
				objects++
			}
			if l.Err == nil && l.URL != endpoint {
				l.Err = lineErr(CodeMismatchedURL, "url", "The line's url %q is not the batch's endpoint %s.", l.URL, endpoint)
			}
			if l.Err == nil {
				if first, dup := seen[l.CustomID]; dup {
					l.Err = lineErr(CodeDuplicateCustomID, "custom_id",
						"custom_id %q is also on line %d; each line needs its own.", l.CustomID, first)
				} else {
					seen[l.CustomID] = phys
				}
			}
			if l.Err != nil {
				n := phys
				l.Err.Line = &n
			}
			out = append(out, l)
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if len(out) == 0 {
		return nil, &FileError{LineError{Code: CodeEmptyFile, Message: "The file has no request lines."}}
	}
	if objects == 0 {
		return nil, &FileError{LineError{Code: CodeInvalidFileFormat,
			Message: "The file is not JSONL: " + envelopeHint + ", one per line."}}
	}
	return out, nil
}

// RequestID is the id of a batch line's output record, the same whoever
// writes it.
func RequestID(batchID string, line int) string {
	h := sha256.Sum256([]byte(batchID + ":" + strconv.Itoa(line)))
	return "batch_req_" + hex.EncodeToString(h[:12])
}

type outLine struct {
	ID       string     `json:"id"`
	CustomID *string    `json:"custom_id"`
	Response *response  `json:"response"`
	Error    *lineError `json:"error"`
}

type response struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

type lineError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func customID(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ResponseLine is a line that ran: its response, in the output file
// (status 200) or the error file (the engine's or Sluice's error answer).
func ResponseLine(batchID string, l Line, status int, jobID string, body []byte) Result {
	if !json.Valid(body) {
		body, _ = json.Marshal(map[string]any{"error": map[string]any{"message": string(body), "type": "server_error"}})
	}
	b, _ := json.Marshal(outLine{ID: RequestID(batchID, l.N), CustomID: customID(l.CustomID),
		Response: &response{StatusCode: status, RequestID: jobID, Body: body}})
	return Result{Line: l.N, OK: status == 200, Body: string(b)}
}

// ErrorLine is a line that did not run: the error file's {code, message}.
func ErrorLine(batchID string, l Line, code, message string) Result {
	b, _ := json.Marshal(outLine{ID: RequestID(batchID, l.N), CustomID: customID(l.CustomID),
		Error: &lineError{Code: code, Message: message}})
	return Result{Line: l.N, Body: string(b)}
}
