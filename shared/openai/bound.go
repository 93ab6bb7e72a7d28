package openai

import (
	"strings"
	"unicode/utf8"
)

// jsonBound is an upper bound of the bytes a chat template renders for v
// with tojson (Python's json.dumps, ensure_ascii off, the model's indent),
// assuming v sits extra levels deeper than it is: every string escaped
// where Python escapes, every non-integer number as long as Python's
// longest float repr, every item on its own indented line.
func jsonBound(v *Value, indent, depth int) int64 {
	const extra = 2 // templates nest tool JSON inside lists and objects of their own
	return jsonLen(v, indent, depth+extra)
}

func jsonLen(v *Value, indent, depth int) int64 {
	switch v.Kind {
	case Null:
		return 4
	case Bool:
		return 5
	case Number:
		s := string(v.Num)
		if strings.ContainsAny(s, ".eE") {
			// Python re-renders floats: 1e15 becomes 1000000000000000.0,
			// 1e400 Infinity; no repr is longer than -1.2345678901234567e-308.
			return max(int64(len(s)), 24)
		}
		return int64(len(s))
	case String:
		return strBound(v.Str)
	case Array, Object:
		n := len(v.Items)
		if v.Kind == Object {
			n = len(v.Members)
		}
		if n == 0 {
			return 2
		}
		// Brackets, and per item a separator (", " or ",\n"), a newline and
		// the item's indent; the closing bracket's own line.
		total := int64(2) + int64(n)*int64(2+1+indent*(depth+1)) + int64(1+indent*depth)
		for i := range n {
			if v.Kind == Object {
				total += strBound(v.Members[i].Key) + 2 // ": "
				total += jsonLen(v.Members[i].Val, indent, depth+1)
			} else {
				total += jsonLen(v.Items[i], indent, depth+1)
			}
		}
		return total
	}
	return 0
}

// strBound is a string's JSON length: quotes, two bytes for the short
// escapes, six for other control characters (and, in case ensure_ascii is
// on, for characters past ASCII: twelve for those past the BMP).
func strBound(s string) int64 {
	n := int64(2)
	for _, r := range s {
		switch {
		case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
			n += 2
		case r < 0x20 || r == utf8.RuneError:
			n += 6
		case r > 0xFFFF:
			n += 12
		case r >= 0x80:
			n += 6
		default:
			n++
		}
	}
	return n
}
