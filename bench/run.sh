#!/usr/bin/env bash
# make bench: ccproxy next to a direct loopback connection, HAProxy and socat,
# measured side by side on 127.0.0.1; writes bench/RESULTS.md.
#
#   bash bench/run.sh                                   # the full run (a few minutes on 2 cores)
#   bash bench/run.sh -bulk-mib 64 -rtt 2000 -rate-rounds 1 -idle 200 -out /tmp/quick.md
#
# Extra arguments go to bench/cmd/ccbench (see `go run ./bench/cmd/ccbench -h`);
# RELAYS overrides the relays measured. Logs and profiles stay in the work
# directory it prints (BENCH_WORKDIR to choose it).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in go haproxy socat; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found (scripts/test-deps.sh installs it)" >&2; exit 1; }
done

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
work=${BENCH_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/ccbench.XXXXXX")}

CGO_ENABLED=0 go build -trimpath -o "$bin/ccproxy" ./cmd/ccproxy
go build -o "$bin/ccbench" ./bench/cmd/ccbench
go build -o "$bin/ccrelay" ./bench/cmd/ccrelay

# Every relay holds two sockets per connection (and the client and upstream
# one each): take the whole hard limit.
ulimit -n "$(ulimit -Hn)"

status=0
"$bin/ccbench" \
	-relays "${RELAYS:-direct,ccproxy,ccproxy-traced,haproxy,gocopy,socat}" \
	-ccproxy "$bin/ccproxy" -harness "$bin/ccrelay" -profile \
	-workdir "$work" -out bench/RESULTS.md "$@" || status=$?
# The traced relay's span files are only evidence that tracing ran.
rm -f "$work"/traces-*.jsonl
echo "bench: logs and profiles in $work" >&2
exit $status
