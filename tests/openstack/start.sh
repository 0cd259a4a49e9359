#!/bin/bash
# start.sh: run Keystone and Glance (and with --with-nova placement-api and
# nova-api, with --with-cinder cinder-api) from Debian's packages as plain
# processes on 127.0.0.1, each on a free port, with sqlite databases and all
# state under STATE_DIR.
#
# Usage: tests/openstack/start.sh STATE_DIR [--with-nova] [--with-cinder]
#
# Optional environment:
#   IMAGETRUST_PROPERTY_PROTECTIONS         a Glance property protection file
#   IMAGETRUST_PROPERTY_PROTECTIONS_FORMAT  its rule format: roles (default) or policies
#   IMAGETRUST_GLANCE_POLICY                a Glance policy.yaml (default: empty)
#   IMAGETRUST_GLANCE_IMPORT_METHODS        Glance's enabled_import_methods
#                                           (default: glance-direct,copy-image;
#                                           "web-download" makes a Glance
#                                           without glance-direct)
#   IMAGETRUST_CINDER_POLICY                a Cinder policy.yaml (default: empty,
#                                           Cinder's own defaults;
#                                           etc/cinder/policy.yaml is what
#                                           imagetrust asks sites to use)
#   IMAGETRUST_NOVA_POLICY                  a Nova policy.yaml (default: none,
#                                           Nova's defaults); "<mirror project
#                                           id>" in it becomes the mirror
#                                           project's id (e.g.
#                                           etc/nova/policy-retire-delete.yaml)
#   IMAGETRUST_SECURE_RBAC                  1: OpenStack's new policy defaults
#                                           everywhere ([oslo_policy]
#                                           enforce_new_defaults and
#                                           enforce_scope in every service,
#                                           Glance's enforce_secure_rbac) and
#                                           the identities of
#                                           docs/operator-guide.md: the mirror
#                                           user without admin (see README.md)
#   IMAGETRUST_TOKEN_EXPIRATION             Keystone's [token] expiration, the
#                                           lifetime of every token in seconds
#                                           (default: Keystone's, 3600; at least
#                                           5: see README.md, "Short tokens")
#   IMAGETRUST_LOCKOUT_ATTEMPTS             Keystone's [security_compliance]
#                                           lockout_failure_attempts: a user is
#                                           locked out for half an hour after
#                                           that many failed logins in a row
#                                           (default: no lockout)
#   IMAGETRUST_GLANCE_STORAGE_QUOTA         Glance's user_storage_quota, the
#                                           most image data one project may
#                                           hold, e.g. 1MB (default: none)
#   IMAGETRUST_GLANCE_LIMITS                Keystone unified limits for Glance:
#                                           "RESOURCE=N ..." (space or comma
#                                           separated) of image_size_total,
#                                           image_stage_total (MiB),
#                                           image_count_total and
#                                           image_count_uploading; Glance runs
#                                           with use_keystone_limits and
#                                           [oslo_limit], each named limit is
#                                           registered (a default for every
#                                           project) with its N, the others
#                                           with 1000000 (oslo.limit 2.0 has
#                                           no "unlimited"). Glance starts once
#                                           Keystone has its endpoint (its
#                                           [oslo_limit] endpoint_id): a few
#                                           seconds more (default: none)
#   IMAGETRUST_GLANCE_IMAGE_SIZE_CAP        Glance's image_size_cap in bytes,
#                                           the largest image it takes
#                                           (default: Glance's, 1 TiB)
#   IMAGETRUST_OPENSTACK_WAIT               seconds to wait for each service (default 90)
#
# Writes:
#   STATE_DIR/env          sourceable: ports, URLs, pids, passwords (see README.md)
#   STATE_DIR/clouds.yaml  clouds admin, system-admin, mirror, proxy and demo
#   STATE_DIR/log/         one log per service and per setup step
#   STATE_DIR/run/*.pid    the pids stop.sh stops
# Run install.sh first. Stop with stop.sh STATE_DIR.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# The Debian interpreter, whatever python3 comes first in PATH (pyenv ...).
PY=/usr/bin/python3

usage() {
	echo "usage: $0 STATE_DIR [--with-nova] [--with-cinder]" >&2
	exit 2
}

[ $# -ge 1 ] || usage
STATE=$1
shift
WITH_NOVA=0
WITH_CINDER=0
for a in "$@"; do
	case $a in
	--with-nova) WITH_NOVA=1 ;;
	--with-cinder) WITH_CINDER=1 ;;
	*) usage ;;
	esac
done

WAIT=${IMAGETRUST_OPENSTACK_WAIT:-90}
SECURE_RBAC=0
case ${IMAGETRUST_SECURE_RBAC:-} in
"" | 0) ;;
1) SECURE_RBAC=1 ;;
*)
	echo "start.sh: error: IMAGETRUST_SECURE_RBAC must be 0 or 1" >&2
	exit 2
	;;
esac
export IMAGETRUST_SECURE_RBAC=$SECURE_RBAC
TOKEN_EXPIRATION=${IMAGETRUST_TOKEN_EXPIRATION:-}
if [ -n "$TOKEN_EXPIRATION" ]; then
	case $TOKEN_EXPIRATION in
	*[!0-9]*)
		echo "start.sh: error: IMAGETRUST_TOKEN_EXPIRATION must be a number of seconds" >&2
		exit 2
		;;
	esac
	if [ "$TOKEN_EXPIRATION" -lt 5 ]; then
		echo "start.sh: error: IMAGETRUST_TOKEN_EXPIRATION must be at least 5 (seconds)" >&2
		exit 2
	fi
fi
LOCKOUT=""
case ${IMAGETRUST_LOCKOUT_ATTEMPTS:-} in
"") ;;
*[!0-9]* | 0)
	echo "start.sh: error: IMAGETRUST_LOCKOUT_ATTEMPTS must be a positive number" >&2
	exit 2
	;;
*)
	LOCKOUT="[security_compliance]
lockout_failure_attempts = $IMAGETRUST_LOCKOUT_ATTEMPTS
lockout_duration = 1800"
	;;
esac
GLANCE_QUOTA=""
case ${IMAGETRUST_GLANCE_STORAGE_QUOTA:-} in
"") ;;
*[!0-9A-Za-z]* | [!0-9]*)
	echo "start.sh: error: IMAGETRUST_GLANCE_STORAGE_QUOTA must be a size such as 1MB" >&2
	exit 2
	;;
*) GLANCE_QUOTA="user_storage_quota = $IMAGETRUST_GLANCE_STORAGE_QUOTA" ;;
esac
GLANCE_LIMITS=$(echo "${IMAGETRUST_GLANCE_LIMITS:-}" | tr ',' ' ' | xargs)
for l in $GLANCE_LIMITS; do
	case $l in
	image_size_total=* | image_stage_total=* | image_count_total=* | image_count_uploading=*)
		case ${l#*=} in
		"" | *[!0-9]*)
			echo "start.sh: error: IMAGETRUST_GLANCE_LIMITS: $l: not a number" >&2
			exit 2
			;;
		esac
		;;
	*)
		echo "start.sh: error: IMAGETRUST_GLANCE_LIMITS: $l: want RESOURCE=N, RESOURCE one of image_size_total, image_stage_total, image_count_total, image_count_uploading" >&2
		exit 2
		;;
	esac
done
export GLANCE_LIMITS
case ${IMAGETRUST_GLANCE_IMAGE_SIZE_CAP:-} in
"") ;;
*[!0-9]* | 0)
	echo "start.sh: error: IMAGETRUST_GLANCE_IMAGE_SIZE_CAP must be a positive number of bytes" >&2
	exit 2
	;;
*) GLANCE_QUOTA="$GLANCE_QUOTA
image_size_cap = $IMAGETRUST_GLANCE_IMAGE_SIZE_CAP" ;;
esac
NOVA_POLICY=""
if [ -n "${IMAGETRUST_NOVA_POLICY:-}" ]; then
	NOVA_POLICY=$(realpath "$IMAGETRUST_NOVA_POLICY")
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "start.sh: $*"; }
die() {
	echo "start.sh: error: $*" >&2
	exit 1
}

for cmd in glance-api glance-manage keystone-manage uwsgi curl openssl; do
	command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found: run tests/openstack/install.sh"
done
[ -e /usr/lib/uwsgi/plugins/python3_plugin.so ] || die "uwsgi python3 plugin not found: run tests/openstack/install.sh"
if [ "$WITH_NOVA" = 1 ]; then
	for cmd in nova-api nova-manage placement-manage; do
		command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found: run tests/openstack/install.sh"
	done
fi
if [ "$WITH_CINDER" = 1 ]; then
	for cmd in cinder-api cinder-manage; do
		command -v "$cmd" >/dev/null 2>&1 || die "$cmd not found: run tests/openstack/install.sh"
	done
fi

[ -z "$NOVA_POLICY" ] || [ -r "$NOVA_POLICY" ] || die "IMAGETRUST_NOVA_POLICY: cannot read $NOVA_POLICY"

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
RUN=$STATE/run
LOG=$STATE/log

# Refuse to start over a stack that still runs.
if [ -d "$RUN" ]; then
	for f in "$RUN"/*.pid; do
		[ -e "$f" ] || continue
		if kill -0 "$(cat "$f")" 2>/dev/null; then
			die "a stack already runs in $STATE (pid file $f): run stop.sh $STATE first"
		fi
	done
fi
rm -rf "$RUN" "$LOG" "$STATE/keystone" "$STATE/glance" "$STATE/nova" "$STATE/placement" \
	"$STATE/cinder" "$STATE/env" "$STATE/clouds.yaml"
mkdir -p "$RUN" "$LOG"
chmod 700 "$STATE"

t_all=$(now)

# On any failure, stop what this run started.
started_ok=no
on_exit() {
	if [ "$started_ok" != yes ]; then
		"$HERE/stop.sh" "$STATE" >/dev/null 2>&1 || true
	fi
}
trap on_exit EXIT

# free_ports N: N distinct free TCP ports on 127.0.0.1 (all held open while
# choosing, so they differ; the kernel does not hand them out again at once).
free_ports() {
	"$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

secret() { openssl rand -hex 16; }

# fernet_repo DIR: a Fernet key repository as keystone-manage fernet_setup
# makes it (key 0 staged, key 1 primary), without its interpreter start-up.
fernet_repo() {
	mkdir -p "$1"
	chmod 700 "$1"
	local i
	for i in 0 1; do
		openssl rand 32 | base64 | tr '+/' '-_' >"$1/$i"
		chmod 600 "$1/$i"
	done
}

wal() {
	"$PY" -c 'import sqlite3, sys
for p in sys.argv[1:]:
    sqlite3.connect(p).execute("PRAGMA journal_mode=WAL").fetchall()' "$@"
}

# run_step NAME CMD...: run a setup command with its output in log/NAME.log.
run_step() {
	local name=$1
	shift
	if ! "$@" >"$LOG/$name.log" 2>&1; then
		echo "start.sh: error: step $name failed: $*" >&2
		tail -n 30 "$LOG/$name.log" >&2
		exit 1
	fi
}

# launch NAME CMD...: start a service in the background, in its own session,
# with its output in log/NAME.log and its pid in run/NAME.pid.
launch() {
	local name=$1
	shift
	setsid "$@" >"$LOG/$name.log" 2>&1 </dev/null &
	echo $! >"$RUN/$name.pid"
}

# wait_http NAME URL: wait until URL answers 2xx/3xx, the service's process
# still runs, and at most $WAIT seconds.
wait_http() {
	local name=$1 url=$2 pid deadline
	pid=$(cat "$RUN/$name.pid")
	deadline=$(($(date +%s) + WAIT))
	while :; do
		if curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "start.sh: error: $name (pid $pid) exited before $url answered; last lines of $LOG/$name.log:" >&2
			tail -n 40 "$LOG/$name.log" >&2
			exit 1
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "start.sh: error: $name did not answer $url within ${WAIT}s; last lines of $LOG/$name.log:" >&2
			tail -n 40 "$LOG/$name.log" >&2
			exit 1
		fi
		sleep 0.2
	done
}

read -r KEYSTONE_PORT GLANCE_PORT NOVA_PORT PLACEMENT_PORT CINDER_PORT <<<"$(free_ports 5)"
KEYSTONE_URL=http://127.0.0.1:$KEYSTONE_PORT/v3
GLANCE_URL=http://127.0.0.1:$GLANCE_PORT
NOVA_URL=""
PLACEMENT_URL=""
if [ "$WITH_NOVA" = 1 ]; then
	NOVA_URL=http://127.0.0.1:$NOVA_PORT/v2.1
	PLACEMENT_URL=http://127.0.0.1:$PLACEMENT_PORT
fi
CINDER_URL=""
if [ "$WITH_CINDER" = 1 ]; then
	CINDER_URL=http://127.0.0.1:$CINDER_PORT/v3
fi
ADMIN_PASSWORD=$(secret)
SERVICE_PASSWORD=$(secret)
MIRROR_PASSWORD=$(secret)
PROXY_PASSWORD=$(secret)
DEMO_PASSWORD=$(secret)
export KEYSTONE_URL GLANCE_URL NOVA_URL PLACEMENT_URL CINDER_URL ADMIN_PASSWORD SERVICE_PASSWORD MIRROR_PASSWORD PROXY_PASSWORD DEMO_PASSWORD

# The [oslo_policy] options of IMAGETRUST_SECURE_RBAC=1, in every service:
# the new defaults alone (no deprecated rule OR-ed in), and each token's
# scope checked against the rule's scope_types.
RBAC_POLICY_OPTS=""
GLANCE_RBAC_OPTS=""
if [ "$SECURE_RBAC" = 1 ]; then
	RBAC_POLICY_OPTS="enforce_new_defaults = True
enforce_scope = True"
	# Glance's own switch: its hard-coded owner checks give way to the policies
	GLANCE_RBAC_OPTS="enforce_secure_rbac = True"
fi


# authtoken SERVICE_USER: the [keystone_authtoken] section for a service.
authtoken() {
	cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KEYSTONE_URL
auth_url = $KEYSTONE_URL
auth_type = password
project_name = service
project_domain_name = Default
user_domain_name = Default
username = $1
password = $SERVICE_PASSWORD
region_name = RegionOne
memcached_servers =
EOF
}

############################################################ Keystone
KS=$STATE/keystone
mkdir -p "$KS"
cat >"$KS/keystone.conf" <<EOF
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///$KS/keystone.sqlite
[token]
provider = fernet
${TOKEN_EXPIRATION:+expiration = $TOKEN_EXPIRATION}
[fernet_tokens]
key_repository = $KS/fernet-keys
[fernet_receipts]
key_repository = $KS/fernet-receipts
[credential]
key_repository = $KS/credential-keys
[catalog]
driver = sql
[cache]
enabled = true
backend = dogpile.cache.memory
[oslo_policy]
$RBAC_POLICY_OPTS
$LOCKOUT
EOF
fernet_repo "$KS/fernet-keys"
fernet_repo "$KS/fernet-receipts"
fernet_repo "$KS/credential-keys"

############################################################ Glance
GL=$STATE/glance
mkdir -p "$GL/etc" "$GL/images" "$GL/images2" "$GL/staging" "$GL/tasks" "$GL/lock"
cp /etc/glance/glance-api-paste.ini "$GL/etc/glance-api-paste.ini"
if [ -n "${IMAGETRUST_GLANCE_POLICY:-}" ]; then
	cp "$IMAGETRUST_GLANCE_POLICY" "$GL/etc/policy.yaml"
else
	echo '{}' >"$GL/etc/policy.yaml"
fi
protection_conf=""
if [ -n "${IMAGETRUST_PROPERTY_PROTECTIONS:-}" ]; then
	cp "$IMAGETRUST_PROPERTY_PROTECTIONS" "$GL/etc/property-protections.conf"
	protection_conf="property_protection_file = $GL/etc/property-protections.conf
property_protection_rule_format = ${IMAGETRUST_PROPERTY_PROTECTIONS_FORMAT:-roles}"
fi
cat >"$GL/etc/glance-api.conf" <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $GLANCE_PORT
workers = 0
use_stderr = true
enabled_backends = fs:file, fs2:file
enabled_import_methods = [${IMAGETRUST_GLANCE_IMPORT_METHODS:-glance-direct,copy-image}]
$GLANCE_QUOTA
${GLANCE_LIMITS:+use_keystone_limits = True}
$GLANCE_RBAC_OPTS
$protection_conf
[database]
connection = sqlite:///$GL/glance.sqlite
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $GL/images
[fs2]
filesystem_store_datadir = $GL/images2
[os_glance_staging_store]
filesystem_store_datadir = $GL/staging
[os_glance_tasks_store]
filesystem_store_datadir = $GL/tasks
[oslo_concurrency]
lock_path = $GL/lock
[oslo_policy]
policy_file = $GL/etc/policy.yaml
$RBAC_POLICY_OPTS
[paste_deploy]
config_file = $GL/etc/glance-api-paste.ini
flavor = keystone
$(authtoken glance)
EOF

############################################################ placement, nova
if [ "$WITH_NOVA" = 1 ]; then
	PL=$STATE/placement
	mkdir -p "$PL"
	cat >"$PL/placement.conf" <<EOF
[DEFAULT]
use_stderr = true
[api]
auth_strategy = keystone
[placement_database]
connection = sqlite:///$PL/placement.sqlite
[oslo_policy]
$RBAC_POLICY_OPTS
$(authtoken placement)
EOF

	NV=$STATE/nova
	mkdir -p "$NV/etc" "$NV/lock"
	cp /etc/nova/api-paste.ini "$NV/etc/api-paste.ini"
	nova_policy_file=""
	if [ -n "$NOVA_POLICY" ]; then
		# the real file is written once bootstrap.py made the mirror
		# project (oslo.policy rereads a policy file that changed)
		echo '{}' >"$NV/etc/policy.yaml"
		nova_policy_file="policy_file = $NV/etc/policy.yaml"
	fi
	cat >"$NV/etc/nova.conf" <<EOF
[DEFAULT]
use_stderr = true
state_path = $NV
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_listen_port = $NOVA_PORT
osapi_compute_workers = 1
transport_url = fake:/
[api]
auth_strategy = keystone
[api_database]
connection = sqlite:///$NV/nova_api.sqlite
[database]
connection = sqlite:///$NV/nova.sqlite
[glance]
api_servers = $GLANCE_URL
[placement]
auth_type = password
auth_url = $KEYSTONE_URL
project_name = service
project_domain_name = Default
user_domain_name = Default
username = nova
password = $SERVICE_PASSWORD
region_name = RegionOne
valid_interfaces = internal,public
[oslo_concurrency]
lock_path = $NV/lock
[oslo_policy]
$nova_policy_file
$RBAC_POLICY_OPTS
[wsgi]
api_paste_config = $NV/etc/api-paste.ini
$(authtoken nova)
EOF
	# what imagetrust asks sites to merge into nova.conf, as they would
	# (oslo.config merges repeated sections)
	cat "$HERE/../../etc/nova/nova.conf.snippet" >>"$NV/etc/nova.conf"
fi

############################################################ cinder
# cinder-api alone: no scheduler and no cinder-volume (transport_url fake:/
# drops the casts), so a new volume stays "creating", with no host, until an
# admin resets its status. Enough for what the API itself answers: volumes,
# snapshots, volume_image_metadata, and Nova's attachment calls. A volume
# given a host (to snapshot it) is not deleted by the API either: tests
# finish its deletion with cinder-finish-delete.py, which gives its quota
# back. The quotas are well above Cinder's 10 volumes and snapshots, so
# that the volumes of a few killed runs (whose cleanups never ran) do not
# fail every later run on the stack.
CINDER_POLICY=""
if [ "$WITH_CINDER" = 1 ]; then
	CV=$STATE/cinder
	mkdir -p "$CV/etc" "$CV/lock"
	cp /etc/cinder/api-paste.ini "$CV/etc/api-paste.ini"
	if [ -n "${IMAGETRUST_CINDER_POLICY:-}" ]; then
		cp "$IMAGETRUST_CINDER_POLICY" "$CV/etc/policy.yaml"
		CINDER_POLICY=$(realpath "$IMAGETRUST_CINDER_POLICY")
	else
		echo '{}' >"$CV/etc/policy.yaml"
	fi
	cat >"$CV/etc/cinder.conf" <<EOF
[DEFAULT]
use_stderr = true
state_path = $CV
osapi_volume_listen = 127.0.0.1
osapi_volume_listen_port = $CINDER_PORT
osapi_volume_workers = 1
transport_url = fake:/
auth_strategy = keystone
api_paste_config = $CV/etc/api-paste.ini
enabled_backends =
quota_volumes = 100
quota_snapshots = 100
quota_gigabytes = 1000
[database]
connection = sqlite:///$CV/cinder.sqlite
[oslo_concurrency]
lock_path = $CV/lock
[oslo_policy]
policy_file = $CV/etc/policy.yaml
$RBAC_POLICY_OPTS
$(authtoken cinder)
EOF
fi

############################################################ setup and launch
# Each service's chain (schema, then start) is independent of the others:
# run them side by side. Glance, placement and nova need nothing from
# Keystone to start; they ask it only when a request comes.
# One process with one thread: sqlite objects are per thread, and Keystone's
# in-memory cache is per process. Connection: close, because uwsgi's HTTP
# socket does not keep connections alive and clients that reuse them fail.
UWSGI=(uwsgi --plugins python3 --master --processes 1 --threads 1 --die-on-term
	--need-app --buffer-size 65535 --add-header 'Connection: close')

t=$(now)
setup_pids=()
(
	run_step keystone-db-sync keystone-manage --config-file "$KS/keystone.conf" db_sync
	wal "$KS/keystone.sqlite"
	run_step keystone-bootstrap keystone-manage --config-file "$KS/keystone.conf" bootstrap \
		--bootstrap-password "$ADMIN_PASSWORD" \
		--bootstrap-username admin \
		--bootstrap-project-name admin \
		--bootstrap-role-name admin \
		--bootstrap-service-name keystone \
		--bootstrap-region-id RegionOne \
		--bootstrap-admin-url "$KEYSTONE_URL" \
		--bootstrap-internal-url "$KEYSTONE_URL" \
		--bootstrap-public-url "$KEYSTONE_URL"
	launch keystone "${UWSGI[@]}" --http-socket "127.0.0.1:$KEYSTONE_PORT" \
		--wsgi-file /usr/bin/keystone-wsgi-public --env "OS_KEYSTONE_CONFIG_FILES=$KS/keystone.conf"
) &
setup_pids+=($!)
(
	run_step glance-db-sync glance-manage --config-file "$GL/etc/glance-api.conf" db_sync
	wal "$GL/glance.sqlite"
	# with unified limits, once bootstrap.py made its endpoint (below)
	[ -n "$GLANCE_LIMITS" ] || launch glance-api glance-api --config-file "$GL/etc/glance-api.conf"
) &
setup_pids+=($!)
if [ "$WITH_NOVA" = 1 ]; then
	(
		run_step placement-db-sync placement-manage --config-file "$PL/placement.conf" db sync
		wal "$PL/placement.sqlite"
		launch placement-api "${UWSGI[@]}" --http-socket "127.0.0.1:$PLACEMENT_PORT" \
			--wsgi-file /usr/bin/placement-api --env "OS_PLACEMENT_CONFIG_DIR=$PL"
	) &
	setup_pids+=($!)
	(
		run_step nova-api-db-sync nova-manage --config-file "$NV/etc/nova.conf" api_db sync
		run_step nova-map-cell0 nova-manage --config-file "$NV/etc/nova.conf" cell_v2 map_cell0 \
			--database_connection "sqlite:///$NV/nova_cell0.sqlite"
		run_step nova-db-sync nova-manage --config-file "$NV/etc/nova.conf" db sync
		run_step nova-create-cell1 nova-manage --config-file "$NV/etc/nova.conf" cell_v2 create_cell \
			--name cell1 --database_connection "sqlite:///$NV/nova.sqlite" --transport-url fake:/
		wal "$NV/nova_api.sqlite" "$NV/nova_cell0.sqlite" "$NV/nova.sqlite"
		launch nova-api nova-api --config-file "$NV/etc/nova.conf"
	) &
	setup_pids+=($!)
fi
if [ "$WITH_CINDER" = 1 ]; then
	(
		run_step cinder-db-sync cinder-manage --config-file "$CV/etc/cinder.conf" db sync
		wal "$CV/cinder.sqlite"
		launch cinder-api cinder-api --config-file "$CV/etc/cinder.conf"
	) &
	setup_pids+=($!)
fi
failed=0
for p in "${setup_pids[@]}"; do
	wait "$p" || failed=1
done
[ "$failed" = 0 ] || die "setup failed (logs in $LOG)"
say "databases ready, services launched in $(elapsed "$t") s"

t=$(now)
wait_http keystone "$KEYSTONE_URL"
say "keystone up on $KEYSTONE_URL in $(elapsed "$t") s"

t=$(now)
run_step keystone-objects "$PY" "$HERE/bootstrap.py"
MIRROR_PROJECT_ID=$(sed -n 's/^MIRROR_PROJECT_ID=\([0-9a-f]*\)$/\1/p' "$LOG/keystone-objects.log")
[ -n "$MIRROR_PROJECT_ID" ] || die "bootstrap.py did not print the mirror project's id ($LOG/keystone-objects.log)"
if [ -n "$NOVA_POLICY" ] && [ "$WITH_NOVA" = 1 ]; then
	sed "s/<mirror project id>/$MIRROR_PROJECT_ID/g" "$NOVA_POLICY" >"$NV/etc/policy.yaml.new"
	mv "$NV/etc/policy.yaml.new" "$NV/etc/policy.yaml"
fi
if [ -n "$GLANCE_LIMITS" ]; then
	# as Glance's install guide (configure-quotas) has it; bootstrap.py gave
	# the glance user the reader role on the system, which reads the limits
	# and (identity:get_endpoint) the endpoint
	GLANCE_ENDPOINT_ID=$(sed -n 's/^GLANCE_ENDPOINT_ID=\([0-9a-f]*\)$/\1/p' "$LOG/keystone-objects.log")
	[ -n "$GLANCE_ENDPOINT_ID" ] || die "bootstrap.py did not print Glance's endpoint id ($LOG/keystone-objects.log)"
	cat >>"$GL/etc/glance-api.conf" <<EOF
[oslo_limit]
auth_url = $KEYSTONE_URL
auth_type = password
user_domain_id = default
username = glance
password = $SERVICE_PASSWORD
system_scope = all
endpoint_id = $GLANCE_ENDPOINT_ID
region_name = RegionOne
EOF
	launch glance-api glance-api --config-file "$GL/etc/glance-api.conf"
fi
say "projects, users and endpoints created in $(elapsed "$t") s"

t=$(now)
wait_http glance-api "$GLANCE_URL/healthcheck"
say "glance up on $GLANCE_URL in $(elapsed "$t") s"
if [ "$WITH_NOVA" = 1 ]; then
	t=$(now)
	wait_http placement-api "$PLACEMENT_URL/"
	wait_http nova-api "http://127.0.0.1:$NOVA_PORT/"
	say "placement up on $PLACEMENT_URL, nova up on $NOVA_URL in $(elapsed "$t") s"
fi
if [ "$WITH_CINDER" = 1 ]; then
	t=$(now)
	wait_http cinder-api "http://127.0.0.1:$CINDER_PORT/"
	say "cinder up on $CINDER_URL in $(elapsed "$t") s"
fi

############################################################ env, clouds.yaml
pid_of() { if [ -e "$RUN/$1.pid" ]; then cat "$RUN/$1.pid"; fi; }
umask 077
cat >"$STATE/env" <<EOF
# Written by tests/openstack/start.sh; source it.
IMAGETRUST_OPENSTACK_STATE=$STATE
OS_CLIENT_CONFIG_FILE=$STATE/clouds.yaml
WITH_NOVA=$WITH_NOVA
KEYSTONE_PORT=$KEYSTONE_PORT
KEYSTONE_URL=$KEYSTONE_URL
KEYSTONE_PID=$(pid_of keystone)
GLANCE_PORT=$GLANCE_PORT
GLANCE_URL=$GLANCE_URL
GLANCE_PID=$(pid_of glance-api)
NOVA_PORT=$([ "$WITH_NOVA" = 1 ] && echo "$NOVA_PORT")
NOVA_URL=$NOVA_URL
NOVA_PID=$(pid_of nova-api)
PLACEMENT_PORT=$([ "$WITH_NOVA" = 1 ] && echo "$PLACEMENT_PORT")
PLACEMENT_URL=$PLACEMENT_URL
PLACEMENT_PID=$(pid_of placement-api)
WITH_CINDER=$WITH_CINDER
CINDER_PORT=$([ "$WITH_CINDER" = 1 ] && echo "$CINDER_PORT")
CINDER_URL=$CINDER_URL
CINDER_PID=$(pid_of cinder-api)
CINDER_POLICY=$CINDER_POLICY
NOVA_POLICY=$([ "$WITH_NOVA" = 1 ] && echo "$NOVA_POLICY")
SECURE_RBAC=$SECURE_RBAC
TOKEN_EXPIRATION=${TOKEN_EXPIRATION:-3600}
GLANCE_LIMITS="$GLANCE_LIMITS"
GLANCE_ENDPOINT_ID=${GLANCE_ENDPOINT_ID:-}

ADMIN_PASSWORD=$ADMIN_PASSWORD
SERVICE_PASSWORD=$SERVICE_PASSWORD
MIRROR_PASSWORD=$MIRROR_PASSWORD
PROXY_PASSWORD=$PROXY_PASSWORD
DEMO_PASSWORD=$DEMO_PASSWORD
MIRROR_PROJECT=mirror
MIRROR_PROJECT_ID=$MIRROR_PROJECT_ID
MIRROR_USER=imagetrust
PROXY_USER=imagetrust-proxy
DEMO_PROJECT=demo
DEMO_USER=demo
EOF

# cloud NAME USER PASSWORD PROJECT; PROJECT "system": a system-scoped cloud.
cloud() {
	local scope="project_name: $4
      project_domain_name: Default"
	if [ "$4" = system ]; then scope="system_scope: all"; fi
	cat <<EOF
  $1:
    auth:
      auth_url: $KEYSTONE_URL
      username: $2
      password: $3
      $scope
      user_domain_name: Default
    region_name: RegionOne
    interface: public
    identity_api_version: 3
EOF
}
{
	echo "clouds:"
	cloud admin admin "$ADMIN_PASSWORD" admin
	cloud system-admin admin "$ADMIN_PASSWORD" system
	cloud mirror imagetrust "$MIRROR_PASSWORD" mirror
	cloud proxy imagetrust-proxy "$PROXY_PASSWORD" mirror
	cloud demo demo "$DEMO_PASSWORD" demo
} >"$STATE/clouds.yaml"

started_ok=yes
say "stack up in $(elapsed "$t_all") s; source $STATE/env"
