#!/usr/bin/env bash
# Take the picture of the relay's live page (`--ui-listen`) that the README's
# in-cluster section shows: docs/live-page.png.
#
# TestLivePageScreenshot (cmd/ccproxy) starts a simulated Coordinator and
# the ccproxy binary in front of it with the page on, drives a retrying CLI through a
# load balancer that drops its connections (then a slow issuer), a wrong
# policy hash and healthy calls, keeps one CLI retrying, opens the page in
# headless Chromium, clicks the failed connection and saves the whole page.
# Everything stays on loopback.
#
# Usage:
#   scripts/live-screenshot.sh                    # writes docs/live-page.png
#   OUT=/tmp/live.png scripts/live-screenshot.sh  # somewhere else
#
# Needs Go and Chromium (Debian package `chromium`; installed with apt-get
# when missing and running as root). Progress goes to stderr.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
out="${OUT:-docs/live-page.png}"

log() { printf 'live-screenshot.sh: %s\n' "$*" >&2; }

browser=""
for b in chromium chromium-browser google-chrome; do
	if command -v "$b" >/dev/null; then browser="$(command -v "$b")"; break; fi
done
if [[ -z "$browser" ]]; then
	if [[ "$(id -u)" != 0 ]]; then
		log "chromium is not installed; run: sudo apt-get install -y chromium"
		exit 1
	fi
	log "installing chromium"
	apt-get install -y chromium >&2 || { apt-get update >&2 && apt-get install -y chromium >&2; }
	browser="$(command -v chromium)"
fi

# The picture is taken by a test of the binary (cmd/ccproxy, TestLivePageScreenshot):
# it has the relay, simulated Coordinator and browser helpers the live page's
# browser test uses.
abs_out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
log "driving the relay and the page (about 20 s)"
CCPROXY_LIVE_SCREENSHOT="$abs_out" PATH="$(dirname "$browser"):$PATH" \
	go test -count=1 -run '^TestLivePageScreenshot$' ./cmd/ccproxy >&2
[[ -s "$out" ]] || { log "no screenshot was written"; exit 1; }
log "wrote $out"
