#!/bin/bash
# The revocation step of `make demo`: the Registrar revokes one mirrored
# image, `imagetrust crl` applies the CRL, and Glance shows the image flagged
# and deactivated. Called by the demo after the image was synced.
#
# Inputs (environment):
#   DEMO     the demo directory. It holds:
#              pki/                from `imagetrust pki init pki` (registrar-ca.pem,
#                                  registrar-ca.key, registrar-ca.crl);
#              $IMAGE.json.crt     the image certificate `imagetrust register` wrote;
#              $IMAGE.json         the descriptor (its uuid is the Glance image id);
#              imagetrust.toml     (or $CONFIG) a configuration whose CRL sources read
#                                  pki/registrar-ca.crl, as a file (trust.crl_files or
#                                  [[crl.source]] file = ...) or from a URL serving that
#                                  file, with crl.cache_dir set to a directory under $DEMO.
#   IMAGE    the image's name in $DEMO (default: worker-a).
#   CONFIG   the configuration (default: $DEMO/imagetrust.toml).
#   OS_CLOUD, OS_CLIENT_CONFIG_FILE (or the OS_* variables): the mirror's
#            credentials, as for `imagetrust sync`; `openstack` uses them too.
#   imagetrust and openstack in PATH.
# It exits non-zero if the image does not end up revoked and deactivated.
set -euo pipefail
: "${DEMO:?set DEMO to the demo directory}"
IMAGE=${IMAGE:-worker-a}
CONFIG=${CONFIG:-$DEMO/imagetrust.toml}
cd "$DEMO"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

for f in pki/registrar-ca.pem pki/registrar-ca.key "$IMAGE.json" "$IMAGE.json.crt" "$CONFIG"; do
	[ -f "$f" ] || { echo "crl-step.sh: $DEMO/$f is missing" >&2; exit 2; }
done
ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"].removeprefix("urn:uuid:"))' "$IMAGE.json")

say "R1. Before: $IMAGE is active and valid in Glance"
run openstack image show "$ID" -c name -c status -f value
openstack image show "$ID" -f json -c properties | grep -o '"imagetrust_global_validity": "[a-z]*"' || true

say "R2. The Registrar revokes the image certificate of $IMAGE (keyCompromise) and re-signs its CRL"
run imagetrust revoke --ca pki/registrar-ca.pem --ca-key pki/registrar-ca.key --crl pki/registrar-ca.crl --cert "$IMAGE.json.crt"
run openssl crl -in pki/registrar-ca.crl -noout -issuer -crlnumber -lastupdate -nextupdate

say "R3. The CRL job fetches and verifies the CRL, flags the image and deactivates it"
run imagetrust crl --config "$CONFIG" --once

say "R4. Glance now shows $IMAGE revoked and deactivated"
run openstack image show "$ID" -c name -c status -f value
openstack image show "$ID" -f json -c properties | grep -o '"imagetrust_\(global_validity\|revocation_[a-z_]*\|revoked_role\)": "[^"]*"'
status=$(openstack image show "$ID" -f value -c status)
validity=$(openstack image show "$ID" -f json -c properties | grep -o '"imagetrust_global_validity": "[a-z]*"' | cut -d'"' -f4)
if [ "$status" != deactivated ] || [ "$validity" != revoked ]; then
	echo "!! expected status deactivated and imagetrust_global_validity revoked, got $status/$validity" >&2
	exit 1
fi

say "R5. Run again with the same CRL: nothing to write"
run imagetrust crl --config "$CONFIG" --once
