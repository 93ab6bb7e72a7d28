package stripe

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	stripeapi "github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"
)

// Tolerance is how old a webhook's signed timestamp may be: Stripe's
// default, five minutes, which bounds replays of a captured delivery.
const Tolerance = 300 * time.Second

// ErrSignature is a webhook whose Stripe-Signature matches neither secret,
// is missing or malformed, or is older than Tolerance.
var ErrSignature = errors.New("stripe: webhook signature does not verify")

// VerifyEvent checks the Stripe-Signature header of payload against each
// secret in turn (the current one, then the previous one while a rotation
// is in progress) and returns the event. The API version check of
// stripe-go stays on: an event rendered in another API release than
// stripe-go v85's (2026-03-25.dahlia) may not decode into its types, so it
// is refused (not silently misread) until the endpoint's version is fixed.
func VerifyEvent(payload []byte, header string, secrets ...string) (stripeapi.Event, error) {
	var last error = ErrSignature
	for _, s := range secrets {
		if s == "" {
			continue
		}
		ev, err := webhook.ConstructEventWithOptions(payload, header, s, webhook.ConstructEventOptions{Tolerance: Tolerance})
		if err == nil {
			return ev, nil
		}
		if isSignatureErr(err) {
			continue
		}
		last = fmt.Errorf("stripe: webhook event: %w", err)
		break // the signature verified; the event itself is unusable
	}
	return stripeapi.Event{}, last
}

func isSignatureErr(err error) bool {
	return errors.Is(err, webhook.ErrNotSigned) || errors.Is(err, webhook.ErrInvalidHeader) ||
		errors.Is(err, webhook.ErrNoValidSignature) || errors.Is(err, webhook.ErrTooOld)
}

// Object decodes an event's object into T (a CheckoutSession, Subscription,
// Invoice, Charge or Dispute).
func Object[T any](ev stripeapi.Event) (*T, error) {
	var v T
	if ev.Data == nil || len(ev.Data.Raw) == 0 {
		return nil, fmt.Errorf("stripe: event %s has no object", ev.ID)
	}
	if err := json.Unmarshal(ev.Data.Raw, &v); err != nil {
		return nil, fmt.Errorf("stripe: event %s: %w", ev.ID, err)
	}
	return &v, nil
}

// CentsToMicros converts Stripe's smallest USD unit to micro-dollars.
func CentsToMicros(cents int64) int64 { return cents * 10000 }
