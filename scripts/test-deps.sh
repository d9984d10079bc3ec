#!/usr/bin/env bash
# Installs what the test suite, the benchmarks and the linters need:
# Debian packages (openssl, socat, haproxy, and chromium with chromium-driver
# for the live page's browser test) and Go tools (staticcheck,
# grpcurl) pinned to versions known to work here. Idempotent: already
# installed tools are skipped. Called by .ci/run and the README.
set -euo pipefail

need_pkgs=()
for tool in openssl:openssl socat:socat haproxy:haproxy chromium:chromium chromedriver:chromium-driver; do
	bin=${tool%%:*} pkg=${tool##*:}
	command -v "$bin" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
	echo "test-deps: installing Debian packages: ${need_pkgs[*]}"
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

gobin=$(go env GOPATH)/bin
install_go_tool() { # name module@version
	if [ ! -x "$gobin/$1" ]; then
		echo "test-deps: go install $2"
		GOFLAGS=-mod=mod go install "$2"
	fi
}
install_go_tool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
install_go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3
echo "test-deps: ok (openssl $(openssl version | cut -d' ' -f2), socat, haproxy, chromium, staticcheck, grpcurl in $gobin)"
