#!/usr/bin/env bash
# Build ccproxy's container image fully offline: a static binary, then
# deploy/image puts it into a one-layer image (no base image, no Docker
# daemon) and writes
#
#   OUTDIR/ccproxy       the static binary
#   OUTDIR/oci/          an OCI image layout (push with crane or skopeo)
#   OUTDIR/ccproxy.tar   a `docker load`-able tarball
#   OUTDIR/digest        the image digest, sha256:...
#
# and prints the digest on stdout (progress goes to stderr), so
#
#   scripts/pin-image.sh "$(scripts/image.sh)"
#
# pins deploy/socat-replacement.yaml to what was just built.
#
# Usage: scripts/image.sh [OUTDIR]          (default _out/image)
# Environment: VERSION, COMMIT (default from git), GOARCH (default the host's),
#   SOURCE_DATE_EPOCH (default the commit time; fixes every timestamp so the
#   same source and toolchain give the same digest), CA_CERTS (PEM bundle to
#   install as /etc/ssl/certs/ca-certificates.crt; default the host's
#   /etc/ssl/certs/ca-certificates.crt if present, "none" to leave it out).
set -euo pipefail

cd "$(dirname "$0")/.."
outdir="${1:-_out/image}"
mkdir -p "$outdir"

version="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
commit="${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
goarch="${GOARCH:-$(go env GOARCH)}"
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
	SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
fi
export SOURCE_DATE_EPOCH

ca_args=()
ca="${CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"
if [[ "$ca" != none && -f "$ca" ]]; then
	ca_args=(-ca-certs "$ca")
elif [[ -n "${CA_CERTS:-}" && "$ca" != none ]]; then
	echo "image.sh: CA_CERTS=$ca does not exist" >&2
	exit 2
fi

# A tag allows [A-Za-z0-9_.-] only: "v1.2.3+dirty" becomes "v1.2.3-dirty".
tag="ccproxy:$(printf '%s' "$version" | tr -c 'A-Za-z0-9_.-' '-' | cut -c1-128)"

echo "image.sh: building ccproxy $version ($commit) for linux/$goarch" >&2
CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
	-o "$outdir/ccproxy" ./cmd/ccproxy

# The image builder runs on the host, whatever GOARCH the image is for.
digest="$(GOARCH= GOOS= go run ./deploy/image \
	-binary "$outdir/ccproxy" -arch "$goarch" \
	-version "$version" -revision "$commit" "${ca_args[@]}" \
	-oci "$outdir/oci" -tarball "$outdir/ccproxy.tar" -tag "$tag")"

printf '%s\n' "$digest" >"$outdir/digest"
echo "image.sh: $tag $digest in $outdir" >&2
printf '%s\n' "$digest"
