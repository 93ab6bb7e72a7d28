#!/bin/bash
# Issue 15 must-show figures. Run from a checkout's root: measure.sh [outdir]
# 1) test:code lines per package dir, 2) production duplicate pairs,
# 3) packages visited from functions/submit/submit.go, 4) import-graph edges.
set -uo pipefail
out=${1:-/tmp/arch-measure}; mkdir -p "$out"
echo "# test-to-code ratio per package (non-blank lines; code = non-test .go)" > "$out/ratio.txt"
tc=0; tt=0; far=0
for d in $(go list -f '{{.Dir}}' ./... | sed "s#$PWD/##"); do
  c=$(cat $(ls $d/*.go 2>/dev/null | grep -v _test.go) /dev/null | grep -cv '^\s*$')
  t=$(cat $(ls $d/*_test.go 2>/dev/null) /dev/null | grep -cv '^\s*$')
  tc=$((tc+c)); tt=$((tt+t))
  case $d in cmd/sluice|internal/authsuite|internal/packaging) far=$((far+t));; esac
  printf "%-32s code=%-5d test=%-5d ratio=%s\n" "$d" "$c" "$t" "$(awk -v c=$c -v t=$t 'BEGIN{printf (c? "%.2f" : "-"), t/(c?c:1)}')"
done >> "$out/ratio.txt"
echo "TOTAL code=$tc test=$tt ratio=$(awk -v c=$tc -v t=$tt 'BEGIN{printf "%.2f", t/c}') far(cmd/sluice+authsuite+packaging)=$far ($(awk -v f=$far -v t=$tt 'BEGIN{printf "%.0f", 100*f/t}')%)" >> "$out/ratio.txt"
grep -E '^(functions|shared|gpuworker)|TOTAL' "$out/ratio.txt"
duplicates --most 200 --seconds 300 > "$out/dups-all.txt" 2>&1
grep '^D[0-9]' "$out/dups-all.txt" | grep -v '_test\.go' > "$out/dups-prod.txt"
echo "production duplicate pairs: $(wc -l < "$out/dups-prod.txt") (boilerplate $(grep -c boilerplate "$out/dups-prod.txt")); in functions/shared/gpuworker, not boilerplate: $(grep -v boilerplate "$out/dups-prod.txt" | grep -cE ' (functions|shared|gpuworker)/')"
go list -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' ./... | sed 's#github.com/sluice-ai/sluice/##g' \
  | awk '{for(i=2;i<=NF;i++) if ($i ~ /^(shared|functions|gpuworker|internal|cmd)\//) print $1" -> "$i}' > "$out/edges.txt"
echo "internal import edges: $(wc -l < "$out/edges.txt")"
for p in functions/submit functions/auth functions/billing-webhook functions/usage-rollup gpuworker; do
  echo "$p: direct sluice imports=$(go list -f '{{join .Imports "\n"}}' ./$p | grep -c sluice-ai) transitive=$(go list -deps ./$p | grep -c 'sluice-ai/sluice/')"
done
if [ -n "${WALK:-}" ]; then /work/helpers/tools/pkgwalk/pkgwalk -file functions/submit/submit.go -pkg ./functions/submit | tee "$out/pkgwalk-submit.txt" | tail -1; fi
