package admission_test

import (
	"testing"

	"github.com/sluice-ai/sluice/shared/admission"
)

// A hold written before per-request and GPU-second prices (9 fields) still
// parses, its new prices 0; the 11-field form carries them.
func TestParseHoldOldAndNew(t *testing.T) {
	t.Parallel()
	old, err := admission.ParseHold("26|10|1|2|0|46|0|2026-11|llama")
	if err != nil || old.Credit != 46 || old.Model != "llama" || old.Period != "2026-11" || old.RequestPrice != 0 || old.GPUPrice != 0 {
		t.Fatalf("old hold = %+v, %v", old, err)
	}
	if c := old.Split(20, 7, 5000, admission.Room{}); c.Credit != 34 {
		t.Fatalf("old hold charges %+v, want tokens only (34)", c)
	}
	h, err := admission.ParseHold("26|10|1|2|0|10226|0|2026-11|llama|10000|3")
	if err != nil || h.RequestPrice != 10000 || h.GPUPrice != 3 || h.Model != "llama" || h.Credit != 10226 {
		t.Fatalf("new hold = %+v, %v", h, err)
	}
	// grow.lua's marks: grown ('g'), created for a job whose hold was gone ('u').
	g, err := admission.ParseHold("26|10|1|2|250|46|0|2026-11|llama|0|0|g")
	if err != nil || !g.Grown || g.Lost || g.Included != 250 || g.Model != "llama" {
		t.Fatalf("grown hold = %+v, %v", g, err)
	}
	u, err := admission.ParseHold("26|10|1|2|250|46|0|2026-11|llama|0|0|u")
	if err != nil || !u.Grown || !u.Lost {
		t.Fatalf("created hold = %+v, %v", u, err)
	}
	for _, bad := range []string{"", "1|2|3", "26|10|1|2|0|46|0|2026-11|llama|x|3", "26|10|1|2|0|46|0|2026-11|llama|1",
		"26|10|1|2|0|46|0|2026-11|llama|0|0|x", "26|10|1|2|0|46|0|2026-11|llama|g"} {
		if _, err := admission.ParseHold(bad); err == nil {
			t.Errorf("ParseHold(%q) accepted", bad)
		}
	}
}
