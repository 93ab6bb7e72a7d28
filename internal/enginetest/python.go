package enginetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// PyDict is a JSON object as Python's json module builds it: keys exact,
// a duplicate key keeps its first position and its last value.
type PyDict struct {
	Keys []string
	Vals map[string]any
}

// Get returns the value of key, or nil.
func (d *PyDict) Get(key string) any {
	if d == nil {
		return nil
	}
	return d.Vals[key]
}

// PyInt is a JSON integer (Python ints are exact: kept as digits).
type PyInt string

// DecodePython parses body as Python's json.loads does: objects become
// PyDict, integers PyInt, other numbers float64 (±Inf past range), arrays
// []any, strings string (a lone surrogate escape becomes U+FFFD, which
// Python would keep; the byte count is the same either way), plus Python's
// NaN, Infinity and -Infinity.
func DecodePython(body []byte) (any, error) {
	p := &pyParser{s: body}
	p.ws()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, errors.New("extra data")
	}
	return v, nil
}

type pyParser struct {
	s []byte
	i int
}

var errSyntax = errors.New("invalid JSON")

func (p *pyParser) ws() {
	for p.i < len(p.s) && strings.IndexByte(" \t\n\r", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *pyParser) lit(w string) bool {
	if bytes.HasPrefix(p.s[p.i:], []byte(w)) {
		p.i += len(w)
		return true
	}
	return false
}

func (p *pyParser) value(depth int) (any, error) {
	if depth > 1000 || p.i >= len(p.s) {
		return nil, errSyntax
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		d := &PyDict{Vals: map[string]any{}}
		p.ws()
		if p.lit("}") {
			return d, nil
		}
		for {
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return nil, errSyntax
			}
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			p.ws()
			if !p.lit(":") {
				return nil, errSyntax
			}
			p.ws()
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			if _, seen := d.Vals[k]; !seen {
				d.Keys = append(d.Keys, k)
			}
			d.Vals[k] = v
			p.ws()
			if p.lit("}") {
				return d, nil
			}
			if !p.lit(",") {
				return nil, errSyntax
			}
		}
	case c == '[':
		p.i++
		out := []any{}
		p.ws()
		if p.lit("]") {
			return out, nil
		}
		for {
			p.ws()
			v, err := p.value(depth + 1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			p.ws()
			if p.lit("]") {
				return out, nil
			}
			if !p.lit(",") {
				return nil, errSyntax
			}
		}
	case c == '"':
		return p.str()
	case p.lit("true"):
		return true, nil
	case p.lit("false"):
		return false, nil
	case p.lit("null"):
		return nil, nil
	case p.lit("NaN"):
		return math.NaN(), nil
	case p.lit("Infinity"):
		return math.Inf(1), nil
	case p.lit("-Infinity"):
		return math.Inf(-1), nil
	default:
		return p.number()
	}
}

func (p *pyParser) number() (any, error) {
	start := p.i
	if p.i < len(p.s) && p.s[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	intStart := p.i
	if digits() == 0 || (p.s[intStart] == '0' && p.i-intStart > 1) {
		return nil, errSyntax
	}
	isInt := true
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		isInt = false
		if digits() == 0 {
			return nil, errSyntax
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		isInt = false
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return nil, errSyntax
		}
	}
	text := string(p.s[start:p.i])
	if isInt {
		if text == "-0" {
			text = "0"
		}
		return PyInt(text), nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, errSyntax
	}
	return f, nil
}

func (p *pyParser) str() (string, error) {
	p.i++ // the quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c < 0x20:
			return "", errSyntax // Python's strict mode refuses raw control characters
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return "", errSyntax
			}
			e := p.s[p.i+1]
			p.i += 2
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", errSyntax
				}
				if utf16.IsSurrogate(r) && bytes.HasPrefix(p.s[p.i:], []byte(`\u`)) {
					save := p.i
					p.i += 2
					if r2, ok := p.hex4(); ok && utf16.DecodeRune(r, r2) != utf8.RuneError {
						r = utf16.DecodeRune(r, r2)
					} else {
						p.i = save
					}
				}
				b.WriteRune(r)
			default:
				return "", errSyntax
			}
		default:
			r, n := utf8.DecodeRune(p.s[p.i:])
			b.WriteRune(r)
			p.i += n
		}
	}
	return "", errSyntax
}

func (p *pyParser) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.s[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(v), true
}

// Dumps is Python's json.dumps(v, ensure_ascii=ensureASCII, indent=indent)
// (indent < 0: None, the compact default with ", " and ": ").
func Dumps(v any, indent int, ensureASCII bool) string {
	var b strings.Builder
	dumps(&b, v, indent, ensureASCII, 0)
	return b.String()
}

func dumps(b *strings.Builder, v any, indent int, ascii bool, depth int) {
	nl := func(d int) {
		if indent >= 0 {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(" ", indent*d))
		}
	}
	sep := ", "
	if indent >= 0 {
		sep = ","
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case PyInt:
		b.WriteString(string(x))
	case float64:
		b.WriteString(pyFloat(x))
	case string:
		pyString(b, x, ascii)
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteByte('[')
		for i, it := range x {
			if i > 0 {
				b.WriteString(sep)
			}
			nl(depth + 1)
			dumps(b, it, indent, ascii, depth+1)
		}
		nl(depth)
		b.WriteByte(']')
	case *PyDict:
		if len(x.Keys) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteByte('{')
		for i, k := range x.Keys {
			if i > 0 {
				b.WriteString(sep)
			}
			nl(depth + 1)
			pyString(b, k, ascii)
			b.WriteString(": ")
			dumps(b, x.Vals[k], indent, ascii, depth+1)
		}
		nl(depth)
		b.WriteByte('}')
	default:
		raw, _ := json.Marshal(x)
		b.Write(raw)
	}
}

// pyFloat is Python's float repr: the shortest round-trip digits, fixed
// notation for exponents -4..15 (with ".0" when integral), else d.ddde±XX.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // -d.ddde±XX
	mant, expS, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expS)
	if exp >= -4 && exp < 16 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	sign := "+"
	if exp < 0 {
		sign, exp = "-", -exp
	}
	return mant + "e" + sign + strconv.Itoa(exp/10) + strconv.Itoa(exp%10)
}

func pyString(b *strings.Builder, s string, ascii bool) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20 || (ascii && r >= 0x80 && r <= 0xFFFF):
				b.WriteString(`\u` + leftPad(strconv.FormatInt(int64(r), 16)))
			case ascii && r > 0xFFFF:
				r1, r2 := utf16.EncodeRune(r)
				b.WriteString(`\u` + leftPad(strconv.FormatInt(int64(r1), 16)) + `\u` + leftPad(strconv.FormatInt(int64(r2), 16)))
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

func leftPad(h string) string { return strings.Repeat("0", 4-len(h)) + h }
