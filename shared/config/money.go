package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Micros is an amount in micro-units (micro-dollars for money). The YAML value
// is a decimal such as 0.00015, converted exactly: a value with more than six
// decimals is an error rather than a rounded price.
type Micros int64

// UnmarshalYAML parses the scalar's text, never through a float.
func (m *Micros) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseMicros(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*m = v
	return nil
}

// ParseMicros converts a decimal string ("29", "0.0001", "1.5e-4") to exact
// micro-units.
func ParseMicros(orig string) (Micros, error) {
	s := strings.TrimSpace(orig)
	s = strings.TrimPrefix(s, "$")
	if s == "" {
		return 0, fmt.Errorf("empty amount")
	}
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		s = s[1:]
	}
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > 30 || e < -30 {
			return 0, fmt.Errorf("amount %q: bad exponent", s)
		}
		exp, s = e, s[:i]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	if intPart == "" && frac == "" {
		return 0, fmt.Errorf("amount %q: not a number", s)
	}
	digits := intPart + frac
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("amount %q: not a decimal number", s)
		}
	}
	// value = digits * 10^(exp - len(frac)); micro-units multiply by 10^6.
	shift := exp - len(frac) + 6
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return 0, nil
	}
	if shift < 0 {
		cut := len(digits) + shift
		if cut < 0 || strings.Trim(digits[max(cut, 0):], "0") != "" {
			return 0, fmt.Errorf("amount %q cannot be represented exactly in micro-units (at most 6 decimals)", orig)
		}
		digits = digits[:cut]
		shift = 0
	}
	if len(digits)+shift > 18 {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	v, err := strconv.ParseInt(digits+strings.Repeat("0", shift), 10, 64)
	if err != nil || v > math.MaxInt64/2 {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	if neg {
		return 0, fmt.Errorf("amount %q: must not be negative", s)
	}
	return Micros(v), nil
}

// String formats micro-units as a decimal.
func (m Micros) String() string {
	s := strconv.FormatInt(int64(m)/1e6, 10)
	if f := int64(m) % 1e6; f != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%06d", f), "0")
	}
	return s
}

// QuantityKind says whether a Quantity is a number, unlimited, or set per user.
type QuantityKind int

// Quantity kinds.
const (
	Fixed     QuantityKind = iota // Value holds the number
	Unlimited                     // 'unlimited': no limit
	Custom                        // 'custom': an admin sets it per user
)

// Quantity is a tier figure that may be a number, 'unlimited' or 'custom'.
// For monthly_cost the Value is micro-dollars; otherwise a plain count.
type Quantity struct {
	Kind  QuantityKind
	Value int64
}

// UnmarshalYAML accepts a number, 'unlimited' or 'custom'.
func (q *Quantity) UnmarshalYAML(n *yaml.Node) error {
	switch strings.ToLower(strings.TrimSpace(n.Value)) {
	case "unlimited":
		*q = Quantity{Kind: Unlimited}
		return nil
	case "custom":
		*q = Quantity{Kind: Custom}
		return nil
	}
	m, err := ParseMicros(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: want a number, 'unlimited' or 'custom': %w", n.Line, err)
	}
	// Counts stay counts; callers that hold money read Money().
	*q = Quantity{Kind: Fixed, Value: int64(m)}
	return nil
}

// Count returns a fixed quantity as a whole number (tokens, requests).
func (q Quantity) Count() int64 { return q.Value / 1e6 }

// Money returns a fixed quantity as micro-dollars.
func (q Quantity) Money() Micros { return Micros(q.Value) }
