#!/bin/bash
# Runs the whole test suite (or the benchmarks with "bench") against one real
# Keystone + Glance + nova-api + cinder-api stack on loopback, started here
# and stopped on exit. Used by `make test` and `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}
mode=${1:-test}

state=$(mktemp -d /tmp/imagetrust-openstack.XXXXXX)
cleanup() {
	tests/openstack/stop.sh "$state" >/dev/null 2>&1 || true
	if [ "${IMAGETRUST_OPENSTACK_KEEP:-}" != 1 ]; then rm -rf "$state"; else echo "kept $state"; fi
}
trap cleanup EXIT
echo "== starting Keystone, Glance, placement, nova-api and cinder-api on 127.0.0.1 ($state)"
# Cinder runs with the policy imagetrust asks sites for (etc/cinder).
IMAGETRUST_CINDER_POLICY=etc/cinder/policy.yaml tests/openstack/start.sh "$state" --with-nova --with-cinder
export IMAGETRUST_OPENSTACK_STATE="$state"
# Every service the tests ask for runs here: a test that finds one missing
# fails instead of skipping.
export IMAGETRUST_OPENSTACK_STRICT=1

case "$mode" in
test)
	echo "== go test -race ./..."
	"$GO" test -race -count=1 -timeout 30m ./...
	# the allocation guards count what the race detector's instrumentation
	# would add to, so they run without it
	echo "== go test -run Allocs ./... (without -race)"
	"$GO" test -count=1 -run Allocs ./...
	;;
bench)
	"$GO" test -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-1x}" -timeout 60m ./...
	;;
*)
	echo "usage: $0 [test|bench]" >&2
	exit 2
	;;
esac
