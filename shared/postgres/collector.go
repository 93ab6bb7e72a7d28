package postgres

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-ai/sluice/shared/config"
)

// BusinessCollector exports the operator's business figures computed from
// the usage rows in PostgreSQL: active users, the distribution of requests
// per user and the busiest users by rank (never by id, so the series stay
// bounded however many users there are), and the last day's revenue and
// cost per request. Figures are recomputed at most every Refresh; scrapes in
// between get the cached values.
type BusinessCollector struct {
	// DB computes the figures: a *Reports, so a read replica serves them.
	DB      ReportReader
	Pricing map[string]config.ModelPrice
	TopN    int
	Refresh time.Duration

	mu   sync.Mutex
	last time.Time
	ok   bool
	b    BusinessStats
}

var (
	activeUsers = prometheus.NewDesc("sluice_active_users",
		"Distinct users with recorded usage in the window (1h, 24h, 30d).", []string{"window"}, nil)
	callsPerUser = prometheus.NewDesc("sluice_api_calls_per_user",
		"Requests per active user over the window: quantiles 0.5, 0.9, 0.99 and 1 (the busiest user).", []string{"window", "quantile"}, nil)
	topCalls = prometheus.NewDesc("sluice_top_user_api_calls",
		"Requests of the rank-th busiest user over the window (rank 1 = busiest; no user ids).", []string{"window", "rank"}, nil)
	topTokens = prometheus.NewDesc("sluice_top_user_tokens",
		"Tokens of the rank-th busiest user (by requests) over the window.", []string{"window", "rank"}, nil)
	revenue = prometheus.NewDesc("sluice_revenue_dollars",
		"Recorded usage at list price over the window, in dollars, by model.", []string{"window", "model"}, nil)
	recorded = prometheus.NewDesc("sluice_recorded_requests",
		"Usage rows recorded over the window, by model.", []string{"window", "model"}, nil)
	costPerRequest = prometheus.NewDesc("sluice_cost_per_request_dollars",
		"Average list price of a recorded request over the window, in dollars, by model.", []string{"window", "model"}, nil)
	businessUp = prometheus.NewDesc("sluice_business_collector_up",
		"1 when the last refresh of the business figures from PostgreSQL succeeded.", nil, nil)
	businessAge = prometheus.NewDesc("sluice_business_refresh_timestamp_seconds",
		"Unix time of the last successful refresh of the business figures.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *BusinessCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{activeUsers, callsPerUser, topCalls, topTokens, revenue, recorded, costPerRequest, businessUp, businessAge} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *BusinessCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.last) >= c.Refresh {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := c.DB.Business(ctx, c.TopN)
		cancel()
		c.ok = err == nil
		if err == nil {
			c.b, c.last = b, time.Now()
		}
	}
	up := 0.0
	if c.ok {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(businessUp, prometheus.GaugeValue, up)
	if c.last.IsZero() {
		return
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := c.b
	g(businessAge, float64(c.last.Unix()))
	g(activeUsers, float64(b.ActiveUsers1h), "1h")
	g(activeUsers, float64(b.ActiveUsers24h), "24h")
	g(activeUsers, float64(b.ActiveUsers30d), "30d")
	for i, q := range []string{"0.5", "0.9", "0.99", "1"} {
		g(callsPerUser, b.CallsPerUser24h[i], "24h", q)
	}
	for i := range c.TopN {
		var u TopUser
		if i < len(b.Top24h) {
			u = b.Top24h[i]
		}
		rank := strconv.Itoa(i + 1)
		g(topCalls, float64(u.Calls), "24h", rank)
		g(topTokens, float64(u.Tokens), "24h", rank)
	}
	for _, m := range b.Models24h {
		p := c.Pricing[m.Model]
		micros := (m.PromptTokens-m.CachedTokens)*int64(p.InputTokens) + m.CachedTokens*int64(p.CachedInputPrice()) +
			m.OutputToks*int64(p.OutputTokens)
		g(revenue, float64(micros)/1e6, "24h", m.Model)
		g(recorded, float64(m.Requests), "24h", m.Model)
		if m.Requests > 0 {
			g(costPerRequest, float64(micros)/1e6/float64(m.Requests), "24h", m.Model)
		}
	}
}
