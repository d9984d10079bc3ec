#!/usr/bin/env bash
# Pin the ccproxy image in the in-cluster manifest to a digest.
#
# Usage: scripts/pin-image.sh DIGEST [REPOSITORY]
#   DIGEST      sha256:<64 hex> (or just the 64 hex), e.g. "$(cat _out/image/digest)"
#   REPOSITORY  where the image was pushed, e.g. ghcr.io/you/ccproxy; default:
#               keep the repository the manifest names now
# Environment: MANIFEST (default deploy/socat-replacement.yaml)
#
# Only the `image: ...ccproxy@sha256:...` line changes; the script fails
# unless exactly one such line exists, so it never rewrites the wrong thing.
set -euo pipefail

usage() {
	echo "usage: $0 DIGEST [REPOSITORY]" >&2
	exit 2
}
[[ $# -ge 1 && $# -le 2 ]] || usage

digest="$1"
[[ "$digest" == sha256:* ]] || digest="sha256:$digest"
if ! [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
	echo "pin-image.sh: DIGEST must be sha256: and 64 lowercase hex digits, got '$1'" >&2
	exit 2
fi
repo="${2:-}"
if [[ -n "$repo" ]] && ! [[ "$repo" =~ ^[a-z0-9]([a-z0-9._:/-]*[a-z0-9])?$ ]] ; then
	echo "pin-image.sh: REPOSITORY '$repo' is not an image repository (no tag or digest, e.g. ghcr.io/you/ccproxy)" >&2
	exit 2
fi

manifest="${MANIFEST:-$(dirname "$0")/../deploy/socat-replacement.yaml}"
[[ -f "$manifest" ]] || { echo "pin-image.sh: $manifest not found" >&2; exit 2; }

# The image line: indentation, "image:", repository, "@sha256:" and 64 hex.
line_re='^([[:space:]]*image:[[:space:]]*)([^[:space:]@]+)@sha256:[0-9a-f]{64}[[:space:]]*$'
count="$(grep -Ec "$line_re" "$manifest" || true)"
if [[ "$count" != 1 ]]; then
	echo "pin-image.sh: expected exactly one digest-pinned image line in $manifest, found $count" >&2
	exit 1
fi

tmp="$(mktemp "$manifest.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
if [[ -n "$repo" ]]; then
	sed -E "s#${line_re}#\\1${repo}@${digest}#" "$manifest" >"$tmp"
else
	sed -E "s#${line_re}#\\1\\2@${digest}#" "$manifest" >"$tmp"
fi
# Keep the file's mode; mktemp creates 0600.
chmod --reference="$manifest" "$tmp" 2>/dev/null || chmod 0644 "$tmp"
mv "$tmp" "$manifest"
trap - EXIT
grep -E "$line_re" "$manifest" | sed -E 's/^[[:space:]]*image:[[:space:]]*/pinned: /' >&2
