#!/bin/bash
# E: every job-failure code is a sluice.Code* constant (the wire strings are unchanged).
set -euo pipefail
python3 - <<'PY'
p='shared/sluice/errors.go'
s=open(p).read()
anchor='\tCodeMFARequired           = "mfa_required" // log in again with a TOTP or recovery code\n'
assert anchor in s, "CodeMFARequired line moved: add the four constants by hand"
s=s.replace(anchor, anchor+'''	CodeCancelled             = "cancelled"             // the job was cancelled (HTTP 499)
	CodeStreamInterrupted     = "stream_interrupted"    // output was sent, then the job could not finish
	CodeMaxAttempts           = "max_attempts_exceeded" // dead-lettered after jobs.max_attempts
	CodeInputMissing          = "input_missing"         // an async job's stored input is gone
''')
open(p,'w').write(s)
PY
sed -i -E 's/Code: "cancelled"/Code: sluice.CodeCancelled/g; s/Code: "stream_interrupted"/Code: sluice.CodeStreamInterrupted/g; s/Code: "input_missing"/Code: sluice.CodeInputMissing/g' gpuworker/pool/*.go
sed -i -E 's/"server_error", "max_attempts_exceeded"\)/"server_error", sluice.CodeMaxAttempts)/; s/"server_error", "stream_interrupted"\)/"server_error", sluice.CodeStreamInterrupted)/; s/"invalid_request_error", "cancelled"\)/"invalid_request_error", sluice.CodeCancelled)/' shared/redisq/queue.go
gofmt -w shared/sluice/errors.go
go build ./... && go vet ./shared/sluice ./shared/redisq ./gpuworker/...
echo "left as literals (check each):"; grep -rnE 'Code: *"[a-z_]+"|, "(cancelled|stream_interrupted|max_attempts_exceeded|input_missing)"\)' --include=*.go shared functions gpuworker | grep -v _test || echo none
