#!/bin/sh
# A: shared/telemetry stops importing postgres and redisq; the stores export their collectors.
set -eu
FIX=/work/helpers/tools/fiximports/fiximports
git mv shared/telemetry/queue.go shared/redisq/collector.go
git mv shared/telemetry/business.go shared/postgres/collector.go
sed -i 's/^package telemetry$/package redisq/; s/\*redisq\.Queue/*Queue/; s/redisq\.WorkerEndpoints/WorkerEndpoints/' shared/redisq/collector.go
sed -i 's/^package telemetry$/package postgres/; s/\*postgres\.DB/*DB/; s/postgres\.\(BusinessStats\|TopUser\)/\1/g' shared/postgres/collector.go
sed -i 's/&telemetry\.QueueCollector{/\&redisq.QueueCollector{/; s/&telemetry\.BusinessCollector{/\&postgres.BusinessCollector{/' shared/app/telemetry.go
sed -i 's/telemetry\.ModelHealth/redisq.ModelHealth/; s/telemetry\.Health(/redisq.Health(/' functions/submit/status.go
$FIX shared/redisq/collector.go shared/postgres/collector.go shared/app/telemetry.go functions/submit/status.go
gofmt -l shared functions
go build ./... && go vet ./shared/telemetry ./shared/redisq ./shared/postgres ./shared/app ./functions/submit
go list -f '{{join .Imports "\n"}}' ./shared/telemetry | grep -E 'shared/(postgres|redisq)$' && { echo "telemetry still imports a store"; exit 1; } || echo "A: telemetry is store-free"
