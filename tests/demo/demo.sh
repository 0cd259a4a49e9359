#!/bin/bash
# `make demo`: the imagetrust story on local defaults, told step by step.
# Everything happens under a fresh directory in /tmp; the OpenStack services
# run on 127.0.0.1 only and are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export PATH="$ROOT/bin:$PATH:/usr/local/go/bin"
DEMO=${IMAGETRUST_DEMO_DIR:-$(mktemp -d /tmp/imagetrust-demo.XXXXXX)}
cd "$DEMO"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
expect_fail() { printf '\033[2m$ %s\033[0m\n' "$*"; if "$@"; then echo "!! expected a refusal" >&2; exit 1; fi; }

say "1. A demonstration PKI: a people CA (creators, approvers) and a Registrar CA"
run imagetrust pki init pki

say "2. The creator describes an image and signs the descriptor"
head -c $((8 * 1024 * 1024)) /dev/urandom > worker-a.qcow2
run imagetrust describe worker-a.qcow2 --vo demo --tag worker --title "Demo worker node A" -o worker-a.json
run cat worker-a.json
run imagetrust sign --cert pki/creator.pem --key pki/creator.key worker-a.json

say "3. The approver, a different person, adds a signature"
run imagetrust approve --cert pki/approver.pem --key pki/approver.key worker-a.json

say "4. The Registrar issues the image its own certificate (it expires in 90 days) and signs with it"
run imagetrust register --ca pki/registrar-ca.pem --ca-key pki/registrar-ca.key --expires 90d worker-a.json

say "5. Anyone can verify the bundle against the site's trust configuration"
run imagetrust verify --config pki/imagetrust.toml worker-a.json
run imagetrust inspect worker-a.json

say "6. ... and plain OpenSSL agrees"
cat pki/people-ca.pem pki/registrar-ca.pem > cas.pem
run openssl cms -verify -binary -inform DER -in worker-a.json.p7s -content worker-a.json -CAfile cas.pem -purpose any -out /dev/null

say "7. A tampered image is refused (exit 1), naming the failed check"
# one byte changed (flipped, so never rewritten with the value it had)
byte=$(od -An -tu1 -j1000 -N1 worker-a.qcow2 | tr -d ' ')
cp worker-a.qcow2 tampered.qcow2
printf "$(printf '\\%03o' $((byte ^ 255)))" | dd of=tampered.qcow2 bs=1 seek=1000 conv=notrunc status=none
expect_fail imagetrust verify --config pki/imagetrust.toml --image tampered.qcow2 worker-a.json

say "8. Ten years on, the same bundle is expired (exit 3): a site may still run it with run-anyway"
set +e
imagetrust verify --config pki/imagetrust.toml --at "$(date -u -d '+10 years' +%Y-%m-%dT%H:%M:%SZ)" worker-a.json
code=$?
set -e
echo "exit code $code (3 = expired but otherwise valid)"
[ "$code" = 3 ]

say "9. Now the site: a real Keystone, Glance, placement and nova-api on 127.0.0.1"
STATE="$DEMO/stack"
trap '"$ROOT/tests/openstack/stop.sh" "$STATE" >/dev/null 2>&1 || true' EXIT
IMAGETRUST_PROPERTY_PROTECTIONS="$ROOT/etc/glance/property-protections.conf" \
IMAGETRUST_GLANCE_POLICY="$ROOT/etc/glance/policy.yaml" \
	run "$ROOT/tests/openstack/start.sh" "$STATE" --with-nova
note() { printf '   %s\n' "$*"; }
note "Glance has the property protections of etc/glance/property-protections.conf:"
note "only admins and the mirror's service user may write imagetrust_ properties."

say "10. The story of an image family, from publication to revocation (tests/e2e/story.sh)"
bash "$ROOT/tests/e2e/story.sh" "$STATE" "$DEMO/site"
say "Done. Everything is in $DEMO (the OpenStack services are stopped on exit)"
