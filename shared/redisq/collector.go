package redisq

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueCollector reads each model's queues and published endpoints from
// Redis at scrape time: one pipelined round trip and one script per model.
// Every process that registers it reports the same values, so dashboards
// take max() across instances.
type QueueCollector struct {
	Queue      *Queue
	Models     []string
	Priorities int
}

var (
	queueDepth = prometheus.NewDesc("sluice_queue_depth",
		"Jobs in a model's priority queue (waiting plus running).", []string{"model", "priority"}, nil)
	queuePending = prometheus.NewDesc("sluice_queue_pending",
		"Jobs of a priority queue claimed by a worker and not yet completed.", []string{"model", "priority"}, nil)
	queueAge = prometheus.NewDesc("sluice_queue_oldest_age_seconds",
		"Age of the oldest job in a priority queue (the queue lag); 0 when empty.", []string{"model", "priority"}, nil)
	modelEndpoints = prometheus.NewDesc("sluice_model_healthy_endpoints",
		"Engine endpoints of a model that a live worker reports healthy (0: nothing can serve the model).", []string{"model"}, nil)
	modelWorkers = prometheus.NewDesc("sluice_model_workers",
		"Live workers serving a model (those that published their endpoints recently).", []string{"model"}, nil)
	modelLoad = prometheus.NewDesc("sluice_model_in_flight",
		"Jobs running on a model's engines, as the live workers report them.", []string{"model"}, nil)
	modelCapacity = prometheus.NewDesc("sluice_model_capacity",
		"Batch slots of a model's healthy engine endpoints.", []string{"model"}, nil)
	queueUp = prometheus.NewDesc("sluice_queue_collector_up",
		"1 when the last scrape could read the queues from Redis.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueDepth, queuePending, queueAge, modelEndpoints, modelWorkers, modelLoad, modelCapacity, queueUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	up := 1.0
	for _, m := range c.Models {
		stats, err := c.Queue.QueueStats(ctx, m, c.Priorities)
		if err != nil {
			up = 0
			continue
		}
		for _, s := range stats {
			p := strconv.Itoa(s.Priority)
			ch <- prometheus.MustNewConstMetric(queueDepth, prometheus.GaugeValue, float64(s.Depth), m, p)
			ch <- prometheus.MustNewConstMetric(queuePending, prometheus.GaugeValue, float64(s.Pending), m, p)
			ch <- prometheus.MustNewConstMetric(queueAge, prometheus.GaugeValue, s.OldestAge.Seconds(), m, p)
		}
		ws, err := c.Queue.Endpoints(ctx, m)
		if err != nil {
			up = 0
			continue
		}
		h := Health(ws)
		ch <- prometheus.MustNewConstMetric(modelEndpoints, prometheus.GaugeValue, float64(h.Healthy), m)
		ch <- prometheus.MustNewConstMetric(modelWorkers, prometheus.GaugeValue, float64(len(ws)), m)
		ch <- prometheus.MustNewConstMetric(modelLoad, prometheus.GaugeValue, float64(h.InFlight), m)
		ch <- prometheus.MustNewConstMetric(modelCapacity, prometheus.GaugeValue, float64(h.Capacity), m)
	}
	ch <- prometheus.MustNewConstMetric(queueUp, prometheus.GaugeValue, up)
}

// ModelHealth sums what the live workers report for a model's endpoints.
// An endpoint seen by several workers counts once, healthy if any sees it so.
type ModelHealth struct {
	Healthy  int   `json:"healthy_endpoints"`
	InFlight int64 `json:"in_flight"`
	Capacity int64 `json:"capacity"`
}

// Health folds the workers' reports into one view per model.
func Health(ws []WorkerEndpoints) ModelHealth {
	var h ModelHealth
	healthy := map[string]int64{} // url → capacity
	for _, w := range ws {
		for _, e := range w.Endpoints {
			h.InFlight += e.InFlight
			if e.Healthy {
				healthy[e.URL] = e.Capacity
			}
		}
	}
	h.Healthy = len(healthy)
	for _, c := range healthy {
		h.Capacity += c
	}
	return h
}

// WaitCollector exports the count of WAITs for replicas that timed out
// (redis.wait_replicas): writes answered before enough replicas had them.
type WaitCollector struct {
	Durable *Durable
}

var waitTimeouts = prometheus.NewDesc("sluice_redis_wait_timeouts_total",
	"Durable writes (enqueue, completion, settlement) answered after their WAIT timed out with fewer replicas than redis.wait_replicas: they exist on the master but could be lost at its failover.", nil, nil)

// Describe implements prometheus.Collector.
func (c *WaitCollector) Describe(ch chan<- *prometheus.Desc) { ch <- waitTimeouts }

// Collect implements prometheus.Collector.
func (c *WaitCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(waitTimeouts, prometheus.CounterValue, float64(c.Durable.Timeouts()))
}
