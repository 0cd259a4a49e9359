#!/bin/bash
# install.sh: install (only what is missing) the Debian 12 packages that
# tests/openstack/start.sh runs: Keystone, Glance, nova-api, placement-api,
# cinder-api, the openstack client, plus cloud-init and nginx for other tests
# and wrk for the proxy's pass-through benchmark (make bench).
#
# Usage (as root): tests/openstack/install.sh
#
# Idempotent: a second run installs nothing and only re-disables the packaged
# services. No packaged service is started: the install runs under a
# /usr/sbin/policy-rc.d that exits 101 (created only if none exists, removed
# afterwards), and the services are then disabled so that they do not start at
# boot either. Only start.sh starts anything, bound to 127.0.0.1.
set -euo pipefail

# Packages this stack needs. python3-keystoneclient is used by start.sh to
# bootstrap projects, users and endpoints in one Python process.
PACKAGES=(
	glance-api
	keystone
	uwsgi
	uwsgi-plugin-python3
	nova-api
	placement-api
	cinder-api
	python3-openstackclient
	python3-glanceclient
	python3-keystoneclient
	openssl
	curl
	cloud-init
	nginx
	wrk
)

# Services the packages above may ship; each is disabled after the install.
SERVICES=(
	glance-api
	keystone
	uwsgi
	nova-api
	placement-api
	cinder-api
	nginx
)

# Services of cloud-init; disabled only when this script installed it, since
# a machine that already had cloud-init may depend on it.
CLOUD_INIT_SERVICES=(
	cloud-init-local
	cloud-init
	cloud-config
	cloud-final
)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

if [ "$(id -u)" -ne 0 ]; then
	echo "install.sh: must run as root" >&2
	exit 1
fi

t_all=$(now)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

installed_cloud_init=no
for p in "${missing[@]}"; do
	if [ "$p" = cloud-init ]; then
		installed_cloud_init=yes
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "install.sh: all packages already installed"
else
	echo "install.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive

	# Refresh package lists when there are none or they are older than a day.
	stale=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)
	if [ -z "$stale" ]; then
		t=$(now)
		apt-get update
		echo "install.sh: apt-get update took $(elapsed "$t") s"
	fi

	created_policy=no
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\n# created by imagetrust tests/openstack/install.sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		created_policy=yes
	fi
	remove_policy() {
		if [ "$created_policy" = yes ]; then
			rm -f /usr/sbin/policy-rc.d
		fi
	}
	trap remove_policy EXIT

	t=$(now)
	apt-get install -y --no-install-recommends "${missing[@]}"
	echo "install.sh: apt-get install took $(elapsed "$t") s"

	remove_policy
	trap - EXIT
fi

# Disable the packaged services (works without a running systemd).
t=$(now)
to_disable=("${SERVICES[@]}")
if [ "$installed_cloud_init" = yes ]; then
	to_disable+=("${CLOUD_INIT_SERVICES[@]}")
fi
for s in "${to_disable[@]}"; do
	if [ -e "/lib/systemd/system/$s.service" ] || [ -e "/etc/init.d/$s" ]; then
		if command -v systemctl >/dev/null 2>&1; then
			systemctl disable "$s" >/dev/null 2>&1 || true
		fi
		if command -v update-rc.d >/dev/null 2>&1 && [ -e "/etc/init.d/$s" ]; then
			update-rc.d "$s" disable >/dev/null 2>&1 || true
		fi
	fi
done
echo "install.sh: disabling services took $(elapsed "$t") s"

# A packaged service may still have been started by a policy-rc.d that was
# already present but permissive; report anything listening on their ports.
if command -v ss >/dev/null 2>&1; then
	if ss -ltn 2>/dev/null | awk '{print $4}' | grep -Eq ':(80|5000|8774|8776|8778|9292)$'; then
		echo "install.sh: warning: something listens on a packaged service port (80, 5000, 8774, 8776, 8778 or 9292)" >&2
	fi
fi

echo "install.sh: done in $(elapsed "$t_all") s"
