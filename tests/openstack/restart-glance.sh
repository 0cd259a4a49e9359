#!/bin/bash
# restart-glance.sh: restart the glance-api of the stack in STATE_DIR, with
# each KEY=VALUE set in the [DEFAULT] section of its glance-api.conf first
# (replacing the key's earlier line), as an operator changing a setting
# such as image_size_cap would. Waits for Glance to answer again.
#
# Usage: tests/openstack/restart-glance.sh STATE_DIR [KEY=VALUE ...]
set -euo pipefail

if [ $# -lt 1 ]; then
	echo "usage: $0 STATE_DIR [KEY=VALUE ...]" >&2
	exit 2
fi
STATE=$1
shift
die() {
	echo "restart-glance.sh: error: $*" >&2
	exit 1
}
[ -r "$STATE/env" ] || die "no $STATE/env: start the stack with start.sh first"
CONF=$STATE/glance/etc/glance-api.conf
PIDFILE=$STATE/run/glance-api.pid
LOG=$STATE/log/glance-api.log
GLANCE_URL=$(sed -n 's/^GLANCE_URL=//p' "$STATE/env")

for kv in "$@"; do
	case $kv in
	[a-z]*=*) ;;
	*) die "$kv: want KEY=VALUE" ;;
	esac
	key=${kv%%=*}
	value=${kv#*=}
	case $key in *[!a-z0-9_]*) die "$key: not an option name" ;; esac
	case $value in *$'\n'*) die "$key: a value of one line" ;; esac
	awk -v key="$key" -v value="$value" '
		$0 ~ "^" key " *=" { next }
		{ print }
		$0 == "[DEFAULT]" { print key " = " value }
	' "$CONF" >"$CONF.new"
	mv "$CONF.new" "$CONF"
done

# stop: as stop.sh, the process group of the session start.sh gave it
if [ -r "$PIDFILE" ]; then
	pid=$(cat "$PIDFILE")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		deadline=$(($(date +%s) + 10))
		while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
			sleep 0.1
		done
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
fi

# start: as start.sh's launch
echo "restart-glance.sh: restarting with $*" >>"$LOG"
setsid glance-api --config-file "$CONF" >>"$LOG" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$PIDFILE"
tmp=$(mktemp "$STATE/env.XXXXXX")
sed "s/^GLANCE_PID=.*/GLANCE_PID=$pid/" "$STATE/env" >"$tmp"
chmod 600 "$tmp"
mv "$tmp" "$STATE/env"

deadline=$(($(date +%s) + ${IMAGETRUST_OPENSTACK_WAIT:-90}))
until curl -fsS -o /dev/null --max-time 5 "$GLANCE_URL/healthcheck" 2>/dev/null; do
	kill -0 "$pid" 2>/dev/null || die "glance-api exited; last lines of $LOG: $(tail -n 20 "$LOG")"
	[ "$(date +%s)" -lt "$deadline" ] || die "glance-api did not answer within ${IMAGETRUST_OPENSTACK_WAIT:-90}s"
	sleep 0.2
done
echo "restart-glance.sh: glance-api up again on $GLANCE_URL (pid $pid)"
