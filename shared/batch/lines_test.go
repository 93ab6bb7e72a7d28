package batch_test

import (
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/batch"
)

func TestParseLine(t *testing.T) {
	for _, c := range []struct{ in, code string }{
		{`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}`, ""},
		{`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}`, batch.CodeInvalidJSONLine},
		{`[1]`, batch.CodeInvalidJSONLine},
		{`{"custom_id":"","method":"POST","url":"/v1/chat/completions","body":{}}`, batch.CodeMissingCustomID},
		{`{"custom_id":"a","method":"GET","url":"/v1/chat/completions","body":{}}`, batch.CodeInvalidMethod},
		{`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":"x"}`, batch.CodeInvalidRequest},
		{`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{},"extra":1}`, batch.CodeInvalidRequest},
		{`{"custom_id":"a","Custom_id":"b","method":"POST","url":"u","body":{}}`, batch.CodeInvalidJSONLine},
		{`{"custom_id":"` + strings.Repeat("x", 513) + `","method":"POST","url":"u","body":{}}`, batch.CodeInvalidRequest},
	} {
		l := batch.ParseLine([]byte(c.in))
		got := ""
		if l.Err != nil {
			got = l.Err.Code
		}
		if got != c.code {
			t.Errorf("%.60s: code %q, want %q", c.in, got, c.code)
		}
	}
}

func TestReadLines(t *testing.T) {
	in := `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}

{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}
{"custom_id":"b","method":"POST","url":"/v1/completions","body":{}}
`
	ls, err := batch.ReadLines(strings.NewReader(in), "/v1/chat/completions", 10)
	if err != nil || len(ls) != 3 {
		t.Fatalf("%v %d", err, len(ls))
	}
	if ls[0].Err != nil || ls[1].Err.Code != batch.CodeDuplicateCustomID || *ls[1].Err.Line != 3 || ls[2].Err.Code != batch.CodeMismatchedURL {
		t.Fatalf("%+v %+v %+v", ls[0].Err, ls[1].Err, ls[2].Err)
	}
	for in, code := range map[string]string{"": batch.CodeEmptyFile, "\n \n": batch.CodeEmptyFile, "a\nb\n": batch.CodeInvalidFileFormat,
		strings.Repeat("{}\n", 11): batch.CodeTooManyLines} {
		_, err := batch.ReadLines(strings.NewReader(in), "/v1/chat/completions", 10)
		fe, ok := err.(*batch.FileError)
		if !ok || fe.Code != code {
			t.Errorf("%q: %v, want %s", in, err, code)
		}
	}
}

// FuzzParseLine: no input line panics the parser, and a line it accepts has
// a custom_id, a url and a JSON object body that parses again the same.
func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}`))
	f.Add([]byte(`{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"a":{"b":[1,2,{"c":null}]}}}`))
	f.Add([]byte(`{"custom_id":1}`))
	f.Add([]byte(`{"custom_id":"\u00e9","method":"POST","url":"","body":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l := batch.ParseLine(b)
		if l.Err != nil {
			return
		}
		if l.CustomID == "" || len(l.Body) == 0 || l.Body[0] != '{' {
			t.Fatalf("accepted %q as %+v", b, l)
		}
		again := batch.ParseLine([]byte(`{"custom_id":"x","method":"POST","url":"u","body":` + string(l.Body) + `}`))
		if again.Err != nil || string(again.Body) != string(l.Body) {
			t.Fatalf("body %s does not parse again: %+v", l.Body, again.Err)
		}
	})
}
