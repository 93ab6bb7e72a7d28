package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// Kind is the JSON type of a Value.
type Kind uint8

// The JSON types.
const (
	Null Kind = iota
	Bool
	Number
	String
	Array
	Object
)

// Value is one JSON value as the client sent it, object members in order.
// Decode builds it; nothing in it is ambiguous: no object holds two keys that
// are equal or equal but for case, so the engine (vLLM: exact-case keys, the
// last duplicate wins) and Sluice (encoding/json: case-insensitive) read the
// same request from it.
type Value struct {
	Kind    Kind
	Bool    bool
	Num     json.Number // the number's own text
	Str     string
	Items   []*Value
	Members []Member
}

// Member is one key of an object.
type Member struct {
	Key string
	Val *Value
}

// Get returns the member named key exactly, or nil.
func (v *Value) Get(key string) *Value {
	if v == nil || v.Kind != Object {
		return nil
	}
	for _, m := range v.Members {
		if m.Key == key {
			return m.Val
		}
	}
	return nil
}

// maxDepth bounds nesting, so a hostile body cannot exhaust the stack.
const maxDepth = 128

// Decode parses body strictly: one JSON value, valid UTF-8, at most maxDepth
// deep, and at every depth no object with a duplicate key or with two keys
// that differ only by case (400 duplicate_key naming the key's path).
func Decode(body []byte) (*Value, error) {
	if !utf8.Valid(body) {
		return nil, sluice.Invalid("", sluice.CodeInvalidJSON, "The request body is not valid UTF-8.")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	v, err := decodeValue(d, "", 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, badJSON()
	}
	return v, nil
}

func badJSON() error {
	return sluice.Invalid("", sluice.CodeInvalidJSON, "We could not parse the JSON body of your request.")
}

func decodeValue(d *json.Decoder, path string, depth int) (*Value, error) {
	if depth > maxDepth {
		return nil, sluice.Invalid(path, sluice.CodeInvalidJSON, "The request body is nested more than %d deep.", maxDepth)
	}
	tok, err := d.Token()
	if err != nil {
		return nil, badJSON()
	}
	switch t := tok.(type) {
	case nil:
		return &Value{Kind: Null}, nil
	case bool:
		return &Value{Kind: Bool, Bool: t}, nil
	case json.Number:
		return &Value{Kind: Number, Num: t}, nil
	case string:
		return &Value{Kind: String, Str: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := &Value{Kind: Array}
			for d.More() {
				item, err := decodeValue(d, fmt.Sprintf("%s[%d]", path, len(v.Items)), depth+1)
				if err != nil {
					return nil, err
				}
				v.Items = append(v.Items, item)
			}
			if _, err := d.Token(); err != nil {
				return nil, badJSON()
			}
			return v, nil
		case '{':
			v := &Value{Kind: Object}
			seen := map[string]string{} // folded key -> the key as first sent
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, badJSON()
				}
				key, ok := kt.(string)
				if !ok {
					return nil, badJSON()
				}
				p := joinPath(path, key)
				folded := foldKey(key)
				if first, dup := seen[folded]; dup {
					if first == key {
						return nil, sluice.Invalid(p, sluice.CodeDuplicateKey, "The key '%s' appears twice in the request body.", p)
					}
					return nil, sluice.Invalid(p, sluice.CodeDuplicateKey,
						"The keys '%s' and '%s' differ only by case; send each parameter once, in lower case.", joinPath(path, first), p)
				}
				seen[folded] = key
				val, err := decodeValue(d, p, depth+1)
				if err != nil {
					return nil, err
				}
				v.Members = append(v.Members, Member{Key: key, Val: val})
			}
			if _, err := d.Token(); err != nil {
				return nil, badJSON()
			}
			return v, nil
		}
	}
	return nil, badJSON()
}

// foldKey is the key as encoding/json matches it: case-insensitively, with
// Unicode simple folding (so "K" and the Kelvin sign meet).
func foldKey(k string) string {
	var b strings.Builder
	for _, r := range k {
		// The smallest rune of r's fold orbit stands for all of them.
		lo := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			lo = min(lo, f)
		}
		b.WriteRune(lo)
	}
	return b.String()
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Encode writes v back as compact JSON, members in order. Only the client's
// values go out, re-encoded: the engine parses exactly what was validated.
func (v *Value) Encode(b *bytes.Buffer) {
	switch v.Kind {
	case Null:
		b.WriteString("null")
	case Bool:
		b.WriteString(strconv.FormatBool(v.Bool))
	case Number:
		b.WriteString(string(v.Num))
	case String:
		writeString(b, v.Str)
	case Array:
		b.WriteByte('[')
		for i, it := range v.Items {
			if i > 0 {
				b.WriteByte(',')
			}
			it.Encode(b)
		}
		b.WriteByte(']')
	case Object:
		b.WriteByte('{')
		for i, m := range v.Members {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, m.Key)
			b.WriteByte(':')
			m.Val.Encode(b)
		}
		b.WriteByte('}')
	}
}

// Bytes is v encoded.
func (v *Value) Bytes() []byte {
	var b bytes.Buffer
	v.Encode(&b)
	return b.Bytes()
}

func writeString(b *bytes.Buffer, s string) {
	e := json.NewEncoder(b)
	e.SetEscapeHTML(false)
	e.Encode(s)             //nolint:errcheck // a string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}
