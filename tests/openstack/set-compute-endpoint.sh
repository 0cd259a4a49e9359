#!/bin/bash
# set-compute-endpoint.sh: make PUBLIC_URL the public compute endpoint in the
# Keystone catalog of the stack in STATE_DIR (for example the imagetrust boot
# proxy in front of nova-api), and keep nova-api's own URL (NOVA_URL in
# STATE_DIR/env) as the internal and admin endpoints. Run it again with
# NOVA_URL as PUBLIC_URL to undo. Needs a stack started with --with-nova.
#
# Usage: tests/openstack/set-compute-endpoint.sh STATE_DIR PUBLIC_URL
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
if [ $# -ne 2 ]; then
	echo "usage: $0 STATE_DIR PUBLIC_URL" >&2
	exit 2
fi
STATE=$1
PUBLIC_URL=$2
[ -r "$STATE/env" ] || {
	echo "set-compute-endpoint.sh: no $STATE/env: start the stack with start.sh first" >&2
	exit 1
}
set -a
# shellcheck source=/dev/null
. "$STATE/env"
set +a
/usr/bin/python3 "$HERE/bootstrap.py" set-compute "$PUBLIC_URL"

# Record it in env, replacing an earlier value.
tmp=$(mktemp "$STATE/env.XXXXXX")
grep -v '^COMPUTE_PUBLIC_URL=' "$STATE/env" >"$tmp" || true
echo "COMPUTE_PUBLIC_URL=$PUBLIC_URL" >>"$tmp"
chmod 600 "$tmp"
mv "$tmp" "$STATE/env"
echo "set-compute-endpoint.sh: public compute endpoint is now $PUBLIC_URL (internal/admin: $NOVA_URL)"
