package rollup

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/sluice"
)

func TestParseUsageQuery(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	for _, c := range []struct {
		q           string
		first, last string
		group       string
		param       string // the refused parameter, "" when accepted
	}{
		{"", "2026-10-27", "2026-11-25", "day", ""},
		{"start=2026-11-01&end=2026-11-30", "2026-11-01", "2026-11-30", "day", ""},
		{"end=2026-01-31", "2026-01-02", "2026-01-31", "day", ""},
		{"group_by=job", "2026-10-27", "2026-11-25", "job", ""},
		{"group_by=key", "2026-10-27", "2026-11-25", "key", ""},
		{"group_by=model", "", "", "", "group_by"},
		{"start=2026-13-01", "", "", "", "start"},
		{"end=yesterday", "", "", "", "end"},
		{"start=2026-11-02&end=2026-11-01", "", "", "", "end"},
		{"start=2024-01-01&end=2026-01-01", "", "", "", "start"},
	} {
		v, _ := url.ParseQuery(c.q)
		got, err := parseUsageQuery(v, now)
		if c.param != "" {
			var se *sluice.Error
			if !errors.As(err, &se) || se.Param != c.param || se.Kind != sluice.KindInvalid {
				t.Errorf("%q: %v, want invalid %s", c.q, err, c.param)
			}
			continue
		}
		if err != nil || !got.First.Equal(day(c.first)) || !got.Last.Equal(day(c.last)) || got.GroupBy != c.group {
			t.Errorf("%q: %+v %v, want %s..%s %s", c.q, got, err, c.first, c.last, c.group)
		}
	}
}

// FuzzUsageQuery: any query string is either refused as invalid input or
// gives a range of at most maxUsageDays days, first <= last, a known group.
func FuzzUsageQuery(f *testing.F) {
	for _, s := range []string{"", "start=2026-11-01&end=2026-11-30", "group_by=job", "start=0000-01-01", "end=9999-12-31&start=9999-01-01", "start=%zz"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseUsageQuery(v, now)
		if err != nil {
			var se *sluice.Error
			if !errors.As(err, &se) || se.Kind != sluice.KindInvalid || se.Param == "" {
				t.Fatalf("%q: error %v is not an invalid-parameter error", raw, err)
			}
			return
		}
		if q.Last.Before(q.First) || q.Last.Sub(q.First) >= maxUsageDays*24*time.Hour || (q.GroupBy != "day" && q.GroupBy != "job") {
			t.Fatalf("%q: accepted %+v", raw, q)
		}
	})
}
