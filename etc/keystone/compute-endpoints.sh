#!/bin/bash
# compute-endpoints.sh: register the imagetrust proxy as the PUBLIC compute
# endpoint in Keystone's catalog and keep Nova's own URL as the INTERNAL and
# ADMIN endpoints. Run it once, with admin credentials (OS_CLOUD=admin or the
# OS_* environment), after the proxy runs. Idempotent; run it again with
# PROXY_URL=NOVA_URL to undo.
#
# Usage: etc/keystone/compute-endpoints.sh PROXY_URL NOVA_URL [REGION]
#   PROXY_URL  the proxy as users see it, with Nova's version path,
#              e.g. https://compute.example.org:18774/v2.1
#   NOVA_URL   Nova's own endpoint, e.g. http://10.0.0.5:8774/v2.1
#   REGION     default RegionOne
#
# A catalog that also lists the legacy v2 API (service type compute_legacy,
# URL .../v2/$(project_id)s, as devstack registers it) is a second way to
# Nova: re-point it too, or delete it:
#   SERVICE_TYPE=compute_legacy etc/keystone/compute-endpoints.sh \
#       'https://compute.example.org:18774/v2/$(project_id)s' \
#       'http://10.0.0.5:8774/v2/$(project_id)s'
#
# Nova's compute endpoints are usually registered as .../v2.1 (devstack:
# http://HOST/compute/v2.1). Keep the same form: the proxy serves the same
# paths as Nova. etc/imagetrust.toml [proxy] upstream is NOVA_URL, and
# public_url is PROXY_URL (the proxy drops their /v2.1).
#
# After this, clients that use the public interface (the openstack CLI,
# Horizon, users' scripts) reach Nova through the gate; services configured
# with the internal interface (neutron, cinder, nova itself) keep calling
# Nova directly. Nova's internal URL must not be reachable by users
# (docs/security-model.md).
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: $0 PROXY_URL NOVA_URL [REGION]" >&2
	exit 2
fi
PROXY_URL=$1
NOVA_URL=$2
REGION=${3:-RegionOne}
SERVICE_TYPE=${SERVICE_TYPE:-compute}

service=$(openstack service list -f value -c ID -c Type | awk -v t="$SERVICE_TYPE" '$2 == t {print $1; exit}')
if [ -z "$service" ]; then
	echo "compute-endpoints.sh: no $SERVICE_TYPE service in the catalog" >&2
	exit 1
fi

# set_endpoint INTERFACE URL: make INTERFACE of SERVICE_TYPE in REGION point to URL.
set_endpoint() {
	local iface=$1 url=$2 ids id
	ids=$(openstack endpoint list --service "$service" --interface "$iface" --region "$REGION" -f value -c ID)
	if [ -z "$ids" ]; then
		openstack endpoint create --region "$REGION" "$service" "$iface" "$url" >/dev/null
	else
		for id in $ids; do
			openstack endpoint set --url "$url" "$id"
		done
	fi
	echo "$SERVICE_TYPE $iface endpoint ($REGION): $url"
}

set_endpoint public "$PROXY_URL"
set_endpoint internal "$NOVA_URL"
set_endpoint admin "$NOVA_URL"
