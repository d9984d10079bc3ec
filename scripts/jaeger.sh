#!/usr/bin/env bash
# Build Jaeger v2 from its Go module and print the path of the binary.
#
# Jaeger is a real OTLP backend with a query API; analyze's integration test
# posts spans to it and reads them back with `ccproxy analyze --jaeger`. Its
# dependency tree is large, so it lives in its own module (tools/jaeger) and
# never in ccproxy's go.mod. The first build takes several minutes on two
# cores, so the binary is cached under $HOME/.cache/ccproxy/jaeger/<version>/
# and reused while that version is asked for.
#
# Usage:
#   bin=$(scripts/jaeger.sh)                # build or reuse, print the path
#   CCPROXY_JAEGER_BIN=$(scripts/jaeger.sh) go test ./analyze/ -run Jaeger
#   JAEGER_VERSION=v1.76.0 scripts/jaeger.sh
#
# Progress goes to stderr; stdout carries only the path.
set -euo pipefail

version="${JAEGER_VERSION:-v1.76.0}"
pkg="github.com/jaegertracing/jaeger/cmd/jaeger"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="$repo_root/tools/jaeger"
cache_dir="${CCPROXY_CACHE_DIR:-$HOME/.cache/ccproxy}/jaeger/$version"
bin="$cache_dir/jaeger"

log() { printf 'jaeger.sh: %s\n' "$*" >&2; }

if [[ -x "$bin" ]]; then
	log "using cached $bin"
	printf '%s\n' "$bin"
	exit 0
fi

command -v go >/dev/null || { log "go is not on PATH"; exit 1; }

# The tools module pins the version that tests were written against. Asking
# for another one updates the pin in place (go get -tool), which is the way to
# move to a newer Jaeger: rerun with JAEGER_VERSION and keep go.mod/go.sum.
pinned="$(go -C "$tools_dir" list -m -f '{{.Version}}' github.com/jaegertracing/jaeger 2>/dev/null || true)"
if [[ "$pinned" != "$version" ]]; then
	log "pinning $pkg@$version in tools/jaeger (was: ${pinned:-none})"
	go -C "$tools_dir" get -tool "$pkg@$version"
fi

mkdir -p "$cache_dir"
# Build into a temporary name and rename, so an interrupted build never leaves
# a half-written binary that the next run would trust.
tmp="$(mktemp "$cache_dir/.jaeger.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
log "building $pkg@$version (the first build takes minutes)"
start=$SECONDS
go -C "$tools_dir" build -trimpath -o "$tmp" "$pkg"
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
trap - EXIT
log "built in $((SECONDS - start))s: $bin"
printf '%s\n' "$bin"
