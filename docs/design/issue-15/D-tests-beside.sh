#!/bin/bash
# D: the auth suite's tests live beside functions/auth (external test package auth_test).
set -euo pipefail
for f in internal/authsuite/*_test.go; do
  b=$(basename "$f"); t=functions/auth/$b; [ -e "$t" ] && t=functions/auth/suite_$b
  git mv "$f" "$t"; sed -i '1s/^package authsuite_test$/package auth_test/' "$t"
done
git rm -q internal/authsuite/doc.go
grep -rln 'internal/authsuite' --exclude-dir=.git . || true   # fix any mention (Makefile, docs) by hand
go vet ./functions/auth
