package admission

import (
	"fmt"
	"strconv"
	"strings"
)

// Hold is the worst case admission reserved for one job.
type Hold struct {
	PromptBound int64  // tokens the prompt may take at most
	MaxOutput   int64  // completion tokens it may produce at most
	InputPrice  int64  // micro-dollars per prompt token
	OutputPrice int64  // micro-dollars per completion token
	Included    int64  // included tokens held
	Credit      int64  // prepaid micro-dollars held
	Overage     int64  // postpaid micro-dollars held
	Period      string // YYYY-MM the hold counts against
	Model       string
}

// parseHold reads the hold string admit.lua writes (P|M|pin|pout|inc|cr|ov|period|model).
func parseHold(s string) (Hold, error) {
	f := strings.SplitN(s, "|", 9) // the model name, last, may itself hold a "|"
	if len(f) != 9 {
		return Hold{}, fmt.Errorf("admission: malformed hold %q", s)
	}
	var n [7]int64
	for i := range n {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return Hold{}, fmt.Errorf("admission: malformed hold %q", s)
		}
		n[i] = v
	}
	return Hold{PromptBound: n[0], MaxOutput: n[1], InputPrice: n[2], OutputPrice: n[3],
		Included: n[4], Credit: n[5], Overage: n[6], Period: f[7], Model: f[8]}, nil
}

// Charge is what a settled job pays, from each source.
type Charge struct {
	Included int64 // included tokens
	Credit   int64 // prepaid micro-dollars
	Overage  int64 // postpaid micro-dollars
	Unbilled int64 // micro-dollars past the hold (the engine counted more than the bound); not charged
}

// Split divides a job's real usage between the sources its hold reserved, in
// the order admission reserved them: included tokens first (prompt tokens
// before completion tokens), then credit, then overage. The result never
// exceeds the hold, so a balance never goes below zero.
func (h Hold) Split(prompt, completion int64) Charge {
	prompt, completion = max(prompt, 0), max(completion, 0)
	total := prompt + completion
	var c Charge
	c.Included = min(total, h.Included)
	inRest := max(prompt-c.Included, 0)
	outRest := total - c.Included - inRest
	money := inRest*h.InputPrice + outRest*h.OutputPrice
	c.Credit = min(money, h.Credit)
	c.Overage = min(money-c.Credit, h.Overage)
	c.Unbilled = money - c.Credit - c.Overage
	return c
}
