#!/bin/bash
# The whole imagetrust story, end to end, with the commands an operator, a
# publisher and a user type: imagetrust's publisher commands, `openstack image
# list/show/set`, and `openstack server create --image <tag>` through the boot
# proxy, over HTTPS, registered as the catalog's public compute endpoint.
#
# It needs a running loopback stack with nova (tests/openstack/start.sh
# STATE --with-nova, with IMAGETRUST_PROPERTY_PROTECTIONS set to
# etc/glance/property-protections.conf and IMAGETRUST_GLANCE_POLICY to
# etc/glance/policy.yaml) and imagetrust on PATH. Each actor uses the
# identity docs/operator-guide.md gives it: the sync and the CRL job the
# mirror user (cloud mirror), the proxy its read-only user (cloud proxy), the
# operator's local flags a project-scoped admin (cloud admin), users their
# own project (cloud demo); Keystone's catalog is changed by a system-scoped
# admin (cloud system-admin). On a stack started with
# IMAGETRUST_SECURE_RBAC=1 (OpenStack's new policy defaults, the mirror user
# without admin) it runs the same; with IMAGETRUST_NOVA_POLICY set to
# etc/nova/policy-retire-delete.yaml it also tells step 14, retire =
# "delete".
#
# usage: story.sh STATE_DIR WORK_DIR
# Both `make demo` (narrated) and tests/e2e (TestStory) run it. It exits
# non-zero at the first step that doesn't go as the story says.
set -euo pipefail
STATE=$1
WORK=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$WORK"
cd "$WORK"
set -a
# shellcheck source=/dev/null
. "$STATE/env"
set +a
export OS_CLIENT_CONFIG_FILE="$STATE/clouds.yaml"
unset OS_CLOUD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }
run() { show "$*"; "$@"; }
# expect_fail PATTERN CMD...: CMD must fail and print PATTERN.
expect_fail() {
	local pattern=$1
	shift
	show "$*"
	local out
	if out=$("$@" 2>&1); then
		echo "$out"
		echo "!! expected a refusal, but it succeeded" >&2
		return 1
	fi
	echo "$out"
	if ! grep -qiE -- "$pattern" <<<"$out"; then
		echo "!! the refusal does not say: $pattern" >&2
		return 1
	fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
osc() { openstack "$@"; }
prop() { # prop CLOUD IMAGE KEY
	openstack --os-cloud "$1" image show -f json -c properties "$2" | python3 -c "import json,sys; print(json.load(sys.stdin)['properties'].get('$3',''))"
}
status() { openstack --os-cloud "$1" image show -f value -c status "$2"; }
image_id() { python3 -c "import json,sys; print(json.load(open('$1'))['uuid'])"; }

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
say "Setting the scene: a demonstration PKI and the site's imagetrust.toml"
run imagetrust pki init pki >/dev/null
# The proxy's HTTPS certificate: self-signed for 127.0.0.1, trusted by the
# OpenStack client through OS_CACERT (a site uses its usual host
# certificate).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=imagetrust-proxy -addext subjectAltName=IP:127.0.0.1 \
	-keyout pki/proxy-tls.key -out pki/proxy-tls.pem 2>openssl.log || { cat openssl.log >&2; exit 1; }
export OS_CACERT=$PWD/pki/proxy-tls.pem
PROXY_PORT=$(free_port)
HEALTH_PORT=$(free_port)
NOVA_ROOT=${NOVA_URL%/v2.1}
creators=$(grep '^creators' pki/imagetrust.toml)
approvers=$(grep '^approvers' pki/imagetrust.toml)
mkdir -p images
cat >imagetrust.toml <<EOF
[trust]
ca_files = ["pki/people-ca.pem"]
registrar_ca_files = ["pki/registrar-ca.pem"]
crl_files = ["pki/people-ca.crl", "pki/registrar-ca.crl"]

[vo.demo]
$creators
$approvers
visibility = "public"

[sync]
retire = "keep"            # superseded images stay bootable by uuid and as a tag fallback
lock_file = "sync.lock"    # one sync at a time (default /var/lib/imagetrust/sync.lock)
[[sync.source]]
path = "images"            # a CVMFS-style directory
vos = ["demo"]

[crl]
cache_dir = "crl-cache"

[proxy]
listen = "127.0.0.1:$PROXY_PORT"
public_url = "https://127.0.0.1:$PROXY_PORT"
tls_cert = "pki/proxy-tls.pem"
tls_key = "pki/proxy-tls.key"
upstream = "$NOVA_ROOT"
metrics_listen = "127.0.0.1:$HEALTH_PORT"
cache_ttl = "1s"           # the story changes flags and expects them at once

[contextualise]
dir = "$ROOT/etc/contextualise"
site_name = "demo-site"
vars = { squid_proxy = "http://squid.demo-site.example:3128" }
EOF
note "trust: the demo people CA and Registrar CA; VO demo: one creator, one approver; source: ./images"

# publish NAME TAG EXPIRES [CREATED]: describe, sign, approve, register.
publish() {
	local name=$1 tag=$2 expires=$3 created=${4:-}
	head -c $((2 * 1024 * 1024)) /dev/urandom >"images/$name.qcow2"
	imagetrust describe "images/$name.qcow2" --vo demo --tag "$tag" --title "Demo $tag $name" \
		${created:+--created "$created"} -o "images/$name.json" >/dev/null
	imagetrust sign --cert pki/creator.pem --key pki/creator.key "images/$name.json" >/dev/null
	imagetrust approve --cert pki/approver.pem --key pki/approver.key "images/$name.json" >/dev/null
	imagetrust register --ca pki/registrar-ca.pem --ca-key pki/registrar-ca.key --expires "$expires" "images/$name.json" | sed -n 1p
}

# ---------------------------------------------------------------------------
say "1. The creator, approver and registrar publish image A of tag 'worker'"
show "imagetrust describe/sign/approve/register images/a.json"
publish a worker 90d "$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%SZ)"
A=$(image_id images/a.json)
run imagetrust verify --config imagetrust.toml images/a.json >/dev/null
note "A = $A verifies"

say "2. The site's mirror syncs it into Glance, with its catalogue record"
run env OS_CLOUD=mirror imagetrust sync --config imagetrust.toml --once
run openstack --os-cloud demo image list --property imagetrust_tag=worker -c ID -c Name -c Status
[ "$(status demo "$A")" = active ]
show "openstack --os-cloud demo image show $A  (the imagetrust_ properties)"
openstack --os-cloud demo image show -f json -c properties "$A" | python3 -c '
import json,sys; p=json.load(sys.stdin)["properties"]
for k in sorted(p):
    if k.startswith("imagetrust_") and k not in ("imagetrust_descriptor","imagetrust_signature","imagetrust_chain"):
        print("   %-34s %s" % (k, p[k]))'

say "3. The boot proxy goes in front of Nova, over HTTPS, and becomes the catalog's compute endpoint"
imagetrust proxy --config imagetrust.toml --cloud proxy 2>proxy.log &
PIDS+=($!)
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$HEALTH_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$HEALTH_PORT/healthz" >/dev/null
grep -q 'msg="proxy listening".* tls=true' proxy.log || { echo "the proxy does not listen with TLS" >&2; exit 1; }
curl -fsS --cacert pki/proxy-tls.pem "https://127.0.0.1:$PROXY_PORT/" >/dev/null
note "the proxy answers on https://127.0.0.1:$PROXY_PORT (its certificate: pki/proxy-tls.pem)"
run "$ROOT/tests/openstack/set-compute-endpoint.sh" "$STATE" "https://127.0.0.1:$PROXY_PORT/v2.1"
# nova-api's server views ask Neutron, which doesn't run here: a read-only
# stand-in answers with empty lists (tests/e2e/fake-neutron.py says why).
NEUTRON_PORT=$(free_port)
/usr/bin/python3 "$ROOT/tests/e2e/fake-neutron.py" "$NEUTRON_PORT" &
PIDS+=($!)
# (the catalog is Keystone's system scope: under its new policy defaults a
# project admin may not change it)
if ! openstack --os-cloud system-admin service show network >/dev/null 2>&1; then
	openstack --os-cloud system-admin service create --name neutron network >/dev/null
fi
for iface in public internal admin; do
	for id in $(openstack --os-cloud system-admin endpoint list --service network --interface $iface -f value -c ID); do
		openstack --os-cloud system-admin endpoint delete "$id"
	done
	openstack --os-cloud system-admin endpoint create --region RegionOne network $iface "http://127.0.0.1:$NEUTRON_PORT" >/dev/null
done
note "a read-only stand-in answers for Neutron on port $NEUTRON_PORT (nothing is scheduled here)"
openstack --os-cloud admin flavor show tiny >/dev/null 2>&1 ||
	run openstack --os-cloud admin flavor create --ram 64 --disk 1 --vcpus 1 tiny -f value -c name

# boot NAME IMAGE [extra args]: a user's `openstack server create` through the proxy.
boot() {
	local name=$1 image=$2
	shift 2
	openstack --os-cloud demo --os-compute-api-version 2.37 server create \
		--flavor tiny --nic none --image "$image" "$@" "$name" -f value -c id -c name
}
# booted_image NAME: the image the proxy forwarded for the last boot of NAME.
booted_image() {
	grep 'msg="boot decision"' proxy.log | grep 'allowed=true' | tail -1 | grep -oE ' image=[0-9a-f-]{36}' | cut -d= -f2
}

say "4. A user boots by the tag: the proxy resolves 'worker' to A"
printf '#cloud-config\nruncmd:\n  - echo hello from the user\n' >user-data.yaml
show "openstack server create --image worker --flavor tiny --nic none --user-data user-data.yaml vm-1"
VM1=$(boot vm-1 worker --user-data user-data.yaml | sed -n 1p)
note "server $VM1 accepted by nova-api (202)"
got=$(booted_image)
note "the proxy forwarded image $got"
[ "$got" = "$A" ]

say "5. A newer image B of the tag is published and synced: the tag now boots B"
show "imagetrust describe/sign/approve/register images/b.json"
publish b worker 90d "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)"
B=$(image_id images/b.json)
run env OS_CLOUD=mirror imagetrust sync --config imagetrust.toml --once
run boot vm-2 worker
got=$(booted_image)
note "the proxy forwarded image $got"
[ "$got" = "$B" ]

say "6. The operator blacklists B: a boot of B by uuid is refused, and the tag falls back to A"
run openstack --os-cloud admin image set --property imagetrust_local_validity=blacklist "$B"
sleep 1.2
expect_fail "blacklist" boot vm-3 "$B"
run boot vm-4 worker
got=$(booted_image)
note "the proxy forwarded image $got"
[ "$got" = "$A" ]

say "7. Nobody but the catalogue may write the record: a user's attempt is refused by Glance"
expect_fail "403|Forbidden|not allowed|permission" openstack --os-cloud demo image set --property imagetrust_global_validity=valid "$A"

say "8. The registrar revokes A; the CRL job flags it and deactivates it in Glance"
run imagetrust revoke --ca pki/registrar-ca.pem --ca-key pki/registrar-ca.key --crl pki/registrar-ca.crl --cert images/a.json.crt --reason keyCompromise
run env OS_CLOUD=mirror imagetrust crl --config imagetrust.toml --once
show "openstack --os-cloud demo image show $A  (status and the CRL job's flags)"
openstack --os-cloud demo image show -f json -c status -c properties "$A" | python3 -c '
import json,sys; d=json.load(sys.stdin); p=d["properties"]
print("   %-34s %s" % ("status", d["status"]))
for k in sorted(p):
    if k.startswith(("imagetrust_global", "imagetrust_revo", "imagetrust_local")):
        print("   %-34s %s" % (k, p[k]))'
[ "$(prop mirror "$A" imagetrust_global_validity)" = revoked ]
[ "$(status mirror "$A")" = deactivated ]
show "env OS_CLOUD=mirror imagetrust crl --config imagetrust.toml --once --report-json   (again)"
env OS_CLOUD=mirror imagetrust crl --config imagetrust.toml --once --report-json 2>/dev/null | python3 -c '
import json,sys; r=json.load(sys.stdin); print("   a second run with the same CRLs: Glance writes =", r["writes"]); sys.exit(r["writes"] != 0)'
sleep 1.2

say "9. A boot by the tag is now refused, with both reasons"
expect_fail "blacklist" boot vm-5 worker
grep -q "revoked" <<<"$(boot vm-5b worker 2>&1 || true)"

say "10. run-anyway does not bring a revoked image back"
run openstack --os-cloud admin image set --property imagetrust_local_validity=run-anyway "$A"
sleep 1.2
expect_fail "revoked" boot vm-6 "$A"

say "11. An expired image C is refused; the operator sets run-anyway on it; C boots"
show "imagetrust describe/sign/approve/register images/c.json (expires in 40 s)"
publish c legacy 40s
C=$(image_id images/c.json)
run env OS_CLOUD=mirror imagetrust sync --config imagetrust.toml --once
note "waiting for C's certificate to expire ..."
while imagetrust verify --config imagetrust.toml --no-image images/c.json >/dev/null 2>&1; do sleep 2; done
sleep 1.2
expect_fail "expired" boot vm-7 "$C"
run openstack --os-cloud admin image set --property imagetrust_local_validity=run-anyway "$C"
sleep 1.2
run boot vm-8 "$C"
got=$(booted_image)
[ "$got" = "$C" ]

say "12. A user's snapshot carrying copied imagetrust_ properties is not a catalogue image"
expect_fail "403|Forbidden|not allowed|permission" openstack --os-cloud demo image create --disk-format qcow2 --container-format bare \
	--property imagetrust_vo=demo --property imagetrust_tag=worker --property imagetrust_global_validity=valid snapshot-1
mapfile -d '' copied < <(openstack --os-cloud mirror image show -f json -c properties "$B" | python3 -c '
import json,sys; p=json.load(sys.stdin)["properties"]
for k, v in p.items():
    if k.startswith("imagetrust_") and k != "imagetrust_local_validity":
        sys.stdout.write("--property\0%s=%s\0" % (k, v))')
head -c 1024 /dev/urandom >snap.img
show "openstack --os-cloud admin image create --project demo --file snap.img --property imagetrust_...=<B's record> snapshot-2"
SNAP=$(openstack --os-cloud admin image create --project demo --disk-format qcow2 --container-format bare --file snap.img "${copied[@]}" snapshot-2 -f value -c id)
note "snapshot-2 ($SNAP) is owned by project demo and carries B's whole record"
expect_fail "catalogue" boot vm-9 "$SNAP"

say "13. The user data Nova received for vm-1: the user's part first, then the site's context"
show "openstack --os-cloud admin --os-compute-api-version 2.3 server show $VM1 -c OS-EXT-SRV-ATTR:user_data | base64 -d"
openstack --os-cloud admin --os-compute-api-version 2.3 server show "$VM1" -f value -c OS-EXT-SRV-ATTR:user_data | base64 -d >vm-1.user-data
python3 - vm-1.user-data <<'PY'
import email, sys
raw = open(sys.argv[1], "rb").read()
if raw[:2] == b"\x1f\x8b":
    import gzip
    raw = gzip.decompress(raw)
open(sys.argv[1] + ".txt", "wb").write(raw)
msg = email.message_from_bytes(raw)
print("   MIME-Version:", msg["MIME-Version"], "|", msg.get_content_type())
for i, part in enumerate(p for p in msg.walk() if not p.is_multipart()):
    body = part.get_payload(decode=True).decode("utf-8", "replace")
    print("   --- part %d: %s %s" % (i + 1, part.get_content_type(), part.get_filename() or ""))
    for line in body.splitlines()[:12]:
        print("     " + line)
PY
grep -q "hello from the user" vm-1.user-data.txt || { echo "!! the user's own user data is missing" >&2; exit 1; }
grep -q "demo-site" vm-1.user-data.txt || { echo "!! the site context is missing" >&2; exit 1; }
note "both the user's cloud-config and the site's context reach the VM; see proxy.log for one audit line per decision"

if [ -n "${NOVA_POLICY:-}" ]; then
	say "14. retire = \"delete\": a superseded image no server uses is deleted, one a server uses only deactivated and hidden"
	note "Nova's policy.yaml has etc/nova/policy-retire-delete.yaml: the mirror's role may list every project's servers"
	show "imagetrust describe/sign/approve/register images/d1.json (tag batch) and images/e1.json (tag spare)"
	publish d1 batch 90d "$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
	publish e1 spare 90d "$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
	D1=$(image_id images/d1.json)
	E1=$(image_id images/e1.json)
	run env OS_CLOUD=mirror imagetrust sync --config imagetrust.toml --once 2>sync-d1.log
	run boot vm-10 batch
	got=$(booted_image)
	note "vm-10 runs $got (D1); nothing runs E1 ($E1)"
	[ "$got" = "$D1" ]
	show "imagetrust describe/sign/approve/register images/d2.json (batch) and images/e2.json (spare), newer"
	publish d2 batch 90d "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
	publish e2 spare 90d "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
	sed -i 's/^retire = "keep".*/retire = "delete"/' imagetrust.toml
	grep -q '^retire = "delete"' imagetrust.toml
	run env OS_CLOUD=mirror imagetrust sync --config imagetrust.toml --once 2>sync-delete.log
	grep -E "$D1|$E1" sync-delete.log | sed 's/^/   /'
	# Nova refusing to tell (403: "cannot tell whether servers use the
	# image") or not answering ("cannot ask Nova whether servers use
	# images", "not retired in this pass") both mean the check below
	# would not test what it means to
	nova_failed='cannot tell whether servers use the image|cannot ask Nova whether servers use images|not retired in this pass'
	if grep -Eq "$nova_failed" sync-delete.log; then
		echo "!! the sync could not ask Nova which servers use an image:" >&2
		grep -E "$nova_failed" sync-delete.log >&2
		exit 1
	fi
	grep -q "msg=\"image retired (deleted)\" image=$E1" sync-delete.log
	if openstack --os-cloud mirror image show "$E1" >/dev/null 2>&1; then
		echo "!! E1 ($E1), superseded and unused, was not deleted" >&2
		exit 1
	fi
	note "E1 is deleted"
	[ "$(status mirror "$D1")" = deactivated ]
	openstack --os-cloud mirror image list --hidden --property imagetrust_tag=batch -f value -c ID | grep -qx "$D1"
	note "D1, which vm-10 uses, is deactivated and hidden, not deleted"
fi

say "The story is complete."
