#!/usr/bin/env bash
# make test's `go test -exec`: runs a package's test binary as go test would
# and, for the packages whose tests touch Redis (SLUICE_CLUSTER_PACKAGES, from
# `scripts/testenv.sh redis-packages`), a second time at once against the
# local Redis Cluster (TEST_REDIS_URL=SLUICE_CLUSTER_SEED).
#
# One go test command then builds and links each package once for both runs.
# Two go test commands side by side (the earlier way) each compiled what the
# cache lacked, so a fresh machine compiled those packages twice, and each
# linked its own binaries.
#
# Each cluster run appends "ok|FAIL <tab> ./pkg <tab> seconds" to
# SLUICE_CLUSTER_LOG; a failed one prints its whole output after the
# package's own, under a header naming the cluster, and fails the package.
set -u
bin=$1
shift
# make test runs go test with GOMAXPROCS=1 and GOGC=200 for its compiles
# (the Makefile's BUILD_ENV); the tests run with the caller's (empty: unset).
if [ -n "${SLUICE_TEST_GOMAXPROCS+set}" ]; then
  if [ -n "$SLUICE_TEST_GOMAXPROCS" ]; then export GOMAXPROCS=$SLUICE_TEST_GOMAXPROCS; else unset GOMAXPROCS; fi
  unset SLUICE_TEST_GOMAXPROCS
fi
if [ -n "${SLUICE_TEST_GOGC+set}" ]; then
  if [ -n "$SLUICE_TEST_GOGC" ]; then export GOGC=$SLUICE_TEST_GOGC; else unset GOGC; fi
  unset SLUICE_TEST_GOGC
fi
rel=./${PWD#"${SLUICE_ROOT:-$PWD}"/}
case " ${SLUICE_CLUSTER_PACKAGES:-} " in
  *" $rel "*) [ -n "${SLUICE_CLUSTER_SEED:-}" ] || exec "$bin" "$@" ;;
  *) exec "$bin" "$@" ;;
esac

out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$EPOCHREALTIME
(
  TEST_REDIS_URL=$SLUICE_CLUSTER_SEED "$bin" "$@" >"$out" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
  status=ok
  [ $rc = 0 ] || status=FAIL
  printf '%s\t%s\t%ss\n' "$status" "$rel" "$secs" >>"${SLUICE_CLUSTER_LOG:-/dev/null}"
  exit $rc
) &
cluster=$!
"$bin" "$@"
rc=$?
wait "$cluster"
crc=$?
if [ $crc != 0 ]; then
  echo "=== $rel again on the Redis Cluster (TEST_REDIS_URL=$SLUICE_CLUSTER_SEED): FAIL"
  cat "$out"
  [ $rc != 0 ] || rc=$crc
fi
exit $rc
