#!/bin/bash
# stop.sh: stop every service start.sh started in STATE_DIR (by its pid file):
# SIGTERM, then SIGKILL after a bounded wait. Leaves the state (databases,
# logs) in place. Safe to run twice or on a half-started stack.
#
# Usage: tests/openstack/stop.sh STATE_DIR
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 STATE_DIR" >&2
	exit 2
fi
RUN=$1/run
[ -d "$RUN" ] || exit 0

# Each service runs in its own session (start.sh uses setsid), so its pid is
# also its process group: signalling the group reaches uwsgi workers and
# eventlet children too.
pids=()
for f in "$RUN"/*.pid; do
	[ -e "$f" ] || continue
	pid=$(cat "$f")
	case $pid in
	'' | *[!0-9]*) rm -f "$f"; continue ;;
	esac
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		pids+=("$pid")
	fi
done

deadline=$(($(date +%s) + 10))
for pid in "${pids[@]}"; do
	while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "stop.sh: pid $pid ignored SIGTERM for 10s, sending SIGKILL" >&2
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	fi
done
# Children left in a group whose leader already exited.
for pid in "${pids[@]}"; do
	kill -KILL -- "-$pid" 2>/dev/null || true
done
rm -f "$RUN"/*.pid
