#!/usr/bin/env bash
# Draw a failed connection's trace the way a tracing UI would and save a
# screenshot of it: docs/trace-policy-hash-mismatch.png (the picture in
# docs/traces.md).
#
# Jaeger built from its Go module has no UI assets, so the page comes from
# ccproxy itself: the demo drives a wrong-policy-hash handshake through the
# relay and writes its spans, `ccproxy analyze --output html` draws them, and
# headless Chromium takes the picture. Everything stays on loopback.
#
# Usage:
#   scripts/trace-screenshot.sh                     # writes docs/trace-policy-hash-mismatch.png
#   OUT=/tmp/shot.png scripts/trace-screenshot.sh   # somewhere else
#   KEEP=1 scripts/trace-screenshot.sh              # keep the trace file and the page
#
# Needs Go and Chromium (Debian package `chromium`; installed with apt-get
# when missing and running as root). Progress goes to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
out="${OUT:-docs/trace-policy-hash-mismatch.png}"
mode=policy_hash_mismatch
width=1400
height=1000

log() { printf 'trace-screenshot.sh: %s\n' "$*" >&2; }

browser=""
for b in chromium chromium-browser google-chrome; do
	if command -v "$b" >/dev/null; then browser="$b"; break; fi
done
if [[ -z "$browser" ]]; then
	if [[ "$(id -u)" != 0 ]]; then
		log "chromium is not installed; run: sudo apt-get install -y chromium"
		exit 1
	fi
	log "installing chromium"
	apt-get install -y chromium >&2 || { apt-get update >&2 && apt-get install -y chromium >&2; }
	browser=chromium
fi

work="$(mktemp -d)"
cleanup() {
	if [[ -n "${KEEP:-}" ]]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

bin="$work/ccproxy"
go build -o "$bin" ./cmd/ccproxy

# The TLS 1.3 scenario needs the probe refinement to be named
# policy_hash_mismatch (the certificate is encrypted on the wire); the TLS 1.2
# one is seen passively. The demo exits 1 when a scenario is misnamed: then
# fall back to the next one.
traces="$work/traces.jsonl"
named=""
for scenario in "wrong policy hash (SNP" "TLS 1.2 (seen"; do
	rm -f "$traces"
	log "demo --scenario \"$scenario\""
	if "$bin" demo --scenario "$scenario" --trace-file "$traces" >&2; then
		named="$scenario"
		break
	fi
	log "scenario \"$scenario\" was not named $mode; trying the next one"
done
if [[ -z "$named" ]]; then
	log "no scenario was named $mode"
	exit 1
fi

page="$work/page.html"
"$bin" analyze --output html --mode "$mode" "$traces" >"$page"
if ! grep -q 'class="op">ccproxy.connection<' "$page"; then
	log "the page draws no $mode connection"
	exit 1
fi

mkdir -p "$(dirname "$out")"
tmp_png="$work/shot.png"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"; cleanup' EXIT
sandbox=()
[[ "$(id -u)" == 0 ]] && sandbox=(--no-sandbox) # Chromium refuses to run as root with its sandbox
# The flags keep Chromium off the network: the page has no external assets,
# and nothing else (updates, sync, QUIC probes) should be fetched either.
timeout 120 "$browser" --headless "${sandbox[@]}" --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
	--user-data-dir="$profile" --screenshot="$tmp_png" --window-size="$width,$height" \
	"file://$page" >&2 2>/dev/null
[[ -s "$tmp_png" ]] || { log "chromium wrote no screenshot"; exit 1; }
mv -f "$tmp_png" "$out"
log "scenario \"$named\": wrote $out"
