#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a set time each.
#   scripts/fuzz.sh 30s          # full run, writes docs/fuzz-results.md
#   scripts/fuzz.sh 300x smoke   # CI smoke run (a count per target), no results file
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-30s}
mode=${2:-full}
results=docs/fuzz-results.md
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
[ "$mode" = full ] && { printf '# Fuzz results\n\n%s, %s per target, %s\n\n| package | target | executions | result |\n|---|---|---|---|\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$fuzztime" "$(go version | cut -d' ' -f3)" > "$results"; }
fail=0
for pkg in $(go list ./... | grep -v /tools/); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "fuzz: $pkg $target ($fuzztime)"
		if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >"$tmp" 2>&1; then
			res=ok
		else
			res=FAILED; fail=1; cat "$tmp"
		fi
		execs=$(grep -o 'execs: [0-9]*' "$tmp" | tail -1 | cut -d' ' -f2)
		echo "  $res, ${execs:-?} executions"
		[ "$mode" = full ] && echo "| ${pkg#github.com/ccproxy-dev/ccproxy/} | $target | ${execs:-?} | $res |" >> "$results"
	done
done
exit $fail
