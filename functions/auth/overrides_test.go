package auth

import (
	"encoding/json"
	"testing"
)

// FuzzLimitsPatch: whatever a PATCH body holds, an accepted limit change only
// ever writes whole numbers in [0, maxLimit], and only the fields it names.
func FuzzLimitsPatch(f *testing.F) {
	for _, s := range []string{`{"requests_per_minute":5}`, `{"concurrency":null}`, `{"tokens_per_minute":-1}`,
		`{"overage_cap_micros":1e3}`, `{"requests_per_minute":1.5}`, `{"requests_per_minute":"9"}`, `{}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var p userLimitsPatch
		if json.Unmarshal([]byte(body), &p) != nil {
			return
		}
		up, detail, err := p.update()
		if err != nil {
			return
		}
		if len(up.Set) != len(detail) {
			t.Fatalf("set %v, audit detail %v", up.Set, detail)
		}
		for _, v := range []int64{up.To.RequestsPerMinute, up.To.TokensPerMinute, up.To.Concurrency, up.To.OverageCap} {
			if v < 0 || v > maxLimit {
				t.Fatalf("%q accepted out-of-range limit %d", body, v)
			}
		}
	})
}
