package enginetest

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestPython: duplicates and case as Python's json module sees them, and
// json.dumps's exact output (checked against CPython 3.12).
func TestPython(t *testing.T) {
	t.Parallel()
	v, err := DecodePython([]byte(`{"n":16,"N":1,"b":[1.5,1e15,1e-7,1e400,-0,"\u00e9\ud83d\ude00"],"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*PyDict)
	if d.Get("n") != PyInt("2") || d.Get("N") != PyInt("1") || len(d.Keys) != 3 || d.Keys[0] != "n" {
		t.Fatalf("dict: %+v", d)
	}
	for _, c := range []struct {
		indent int
		ascii  bool
		want   string
	}{
		{-1, true, `{"n": 2, "N": 1, "b": [1.5, 1000000000000000.0, 1e-07, Infinity, 0, "\u00e9\ud83d\ude00"]}`},
		{2, false, "{\n  \"n\": 2,\n  \"N\": 1,\n  \"b\": [\n    1.5,\n    1000000000000000.0,\n    1e-07,\n    Infinity,\n    0,\n    \"é😀\"\n  ]\n}"},
	} {
		if got := Dumps(v, c.indent, c.ascii); got != c.want {
			t.Errorf("Dumps(indent %d, ascii %v) =\n%s\nwant\n%s", c.indent, c.ascii, got, c.want)
		}
	}
	if got := Dumps([]any{1e16, 123.0, 1e22, "\x01\"\\\n", []any{}, &PyDict{}}, -1, true); got != `[1e+16, 123.0, 1e+22, "\u0001\"\\\n", [], {}]` {
		t.Errorf("Dumps = %s", got)
	}
}

// FuzzDecodePython: never panics; accepts every document encoding/json
// accepts, and agrees with it on the value (a map keeps the last duplicate,
// exact case, as Python does).
func FuzzDecodePython(f *testing.F) {
	f.Add(`{"a":1,"A":2,"a":3}`)
	f.Add(`[1.5e3,"\ud800",{"x":[true,false,null]}]`)
	f.Add(`NaN`)
	f.Fuzz(func(t *testing.T, s string) {
		v, err := DecodePython([]byte(s))
		if !json.Valid([]byte(s)) {
			return
		}
		if err != nil {
			t.Fatalf("DecodePython(%q): %v, but it is valid JSON", s, err)
		}
		var want any
		if json.Unmarshal([]byte(Dumps(v, -1, false)), &want) != nil {
			return // Infinity from an out-of-range number: not JSON for Go
		}
		var got any
		_ = json.Unmarshal([]byte(s), &got)
		if !reflect.DeepEqual(want, got) { // -0 and 0 are equal: Python reads "-0" as the int 0
			t.Fatalf("DecodePython(%q) = %v, encoding/json says %v", s, want, got)
		}
	})
}
