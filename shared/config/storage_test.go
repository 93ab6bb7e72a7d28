package config

import (
	"strings"
	"testing"
	"time"
)

func TestJobStorageDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte("jobs:\n  result_ttl: 2h\n  async_deadline: 30m\n"))
	if err != nil {
		t.Fatal(err)
	}
	j := c.Storage.Jobs
	if j.Enabled || j.ResultThresholdBytes != 256<<10 || j.InputThresholdBytes != 256<<10 || j.Prefix != "jobs/" ||
		j.SweepInterval != 10*time.Minute || j.Retention != 2*time.Hour+30*time.Minute+time.Hour {
		t.Fatalf("defaults: %+v", j)
	}
	for _, bad := range []string{
		"storage:\n  jobs:\n    prefix: jobs\n",
		"storage:\n  jobs:\n    prefix: /jobs/\n",
		"storage:\n  jobs:\n    prefix: models/\n",
		"storage:\n  jobs:\n    result_threshold_bytes: -1\n",
		"storage:\n  jobs:\n    retention: -1s\n",
	} {
		if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "storage.jobs") {
			t.Errorf("%q: %v, want a storage.jobs error", bad, err)
		}
	}
}
