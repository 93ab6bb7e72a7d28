// Package gomega has the assertions the simulator's test helpers use: Expect
// with To or NotTo and the matchers Equal, BeTrue, BeNil, HaveLen and
// HaveOccurred. A failed assertion panics with what it expected.
package gomega

import (
	"fmt"
	"reflect"
)

// Matcher says whether a value matches and describes what it expects.
type Matcher interface {
	Match(actual any) bool
	String() string
}

type matcher struct {
	desc  string
	match func(any) bool
}

func (m matcher) Match(a any) bool { return m.match(a) }
func (m matcher) String() string   { return m.desc }

// Assertion is an actual value waiting for a matcher.
type Assertion struct{ actual any }

// Expect starts an assertion on actual; the extra values are ignored.
func Expect(actual any, _ ...any) Assertion { return Assertion{actual} }

// To panics unless the actual value matches m.
func (a Assertion) To(m Matcher, _ ...any) bool {
	if !m.Match(a.actual) {
		panic(fmt.Sprintf("gomega: expected %#v to %s", a.actual, m))
	}
	return true
}

// NotTo panics if the actual value matches m.
func (a Assertion) NotTo(m Matcher, _ ...any) bool {
	if m.Match(a.actual) {
		panic(fmt.Sprintf("gomega: expected %#v not to %s", a.actual, m))
	}
	return true
}

// Equal matches a value deeply equal to want.
func Equal(want any) Matcher {
	return matcher{fmt.Sprintf("equal %#v", want), func(a any) bool { return reflect.DeepEqual(a, want) }}
}

// BeTrue matches true.
func BeTrue() Matcher { return matcher{"be true", func(a any) bool { return a == true }} }

// BeNil matches nil, typed or not.
func BeNil() Matcher {
	return matcher{"be nil", func(a any) bool {
		if a == nil {
			return true
		}
		v := reflect.ValueOf(a)
		switch v.Kind() {
		case reflect.Chan, reflect.Func, reflect.Interface, reflect.Map, reflect.Pointer, reflect.Slice:
			return v.IsNil()
		}
		return false
	}}
}

// HaveLen matches a string, slice, array, map or channel of length n.
func HaveLen(n int) Matcher {
	return matcher{fmt.Sprintf("have length %d", n), func(a any) bool {
		v := reflect.ValueOf(a)
		switch v.Kind() {
		case reflect.String, reflect.Slice, reflect.Array, reflect.Map, reflect.Chan:
			return v.Len() == n
		}
		return false
	}}
}

// HaveOccurred matches a non-nil error.
func HaveOccurred() Matcher {
	return matcher{"have occurred", func(a any) bool { err, _ := a.(error); return err != nil }}
}
