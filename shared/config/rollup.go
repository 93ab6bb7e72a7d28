package config

import (
	"errors"
	"net/netip"
	"time"
)

// UsageRollup configures the usage-rollup function's scheduled run
// (functions/usage-rollup): folding raw usage into hourly and daily rollups,
// and reporting postpaid overage to Stripe Billing Meters.
type UsageRollup struct {
	// Schedule is how often the local stack (`sluice dev`) runs the rollup;
	// default 1m. OpenFaaS (openfaas.yml) and Lambda (EventBridge) keep
	// their own schedule next to the deployment.
	Schedule time.Duration `yaml:"schedule"`
	// MeterEventName is the Stripe Billing Meter's event_name the overage
	// is reported under; default "sluice_overage". The meter's value is
	// micro-dollars of postpaid overage (exact: no rounding to cents), so the
	// meter's price is $0.000001 per unit.
	MeterEventName string `yaml:"meter_event_name"`
	// PartitionsAhead is how many monthly partitions of raw usage each run
	// (and `sluice migrate`) keeps created ahead of the current month;
	// default 3.
	PartitionsAhead int `yaml:"partitions_ahead"`
	// MeterBatch is the most outbox rows one run sends; default 500.
	MeterBatch int `yaml:"meter_batch"`
	// SchedulerNetworks are the client addresses (CIDRs or addresses,
	// after server.trusted_proxies) allowed to trigger the scheduled run
	// (POST / of the function) without a credential: where the OpenFaaS
	// cron-connector runs, which cannot send one. Default empty: the
	// trigger needs SLUICE_ROLLUP_TOKEN or an admin's credential. With
	// trusted_proxies wrong, every caller can look like the gateway, so
	// list the gateway's and the ingress's addresses there first.
	SchedulerNetworks []string `yaml:"scheduler_networks"`
}

// SchedulerPrefixes parses SchedulerNetworks (validate has checked them).
func (u UsageRollup) SchedulerPrefixes() []netip.Prefix {
	out, _ := parseProxies(u.SchedulerNetworks)
	return out
}

func (u *UsageRollup) applyDefaults() {
	def(&u.Schedule, time.Minute)
	def(&u.MeterEventName, "sluice_overage")
	def(&u.PartitionsAhead, 3)
	def(&u.MeterBatch, 500)
}

func (u *UsageRollup) validate() error {
	var errs []error
	if u.Schedule < time.Second {
		errs = append(errs, errors.New("usage_rollup.schedule: want at least 1s"))
	}
	if u.PartitionsAhead < 1 || u.PartitionsAhead > 36 {
		errs = append(errs, errors.New("usage_rollup.partitions_ahead: want 1 to 36"))
	}
	if _, err := parseProxies(u.SchedulerNetworks); err != nil {
		errs = append(errs, errors.New("usage_rollup.scheduler_networks: "+err.Error()))
	}
	if u.MeterBatch < 1 {
		errs = append(errs, errors.New("usage_rollup.meter_batch: want at least 1"))
	}
	return errors.Join(errs...)
}
