#!/bin/bash
# Publish an image bundle with nothing but openssl and coreutils: a PKI
# (people CA, Registrar CA, creator, approver), the descriptor, the creator's
# signature, the approver's, and the Registrar-issued image certificate with
# its signature, all in WORKDIR (the image copied in when it is elsewhere).
# `imagetrust verify --config imagetrust.toml image.json` then accepts it. Tested by TestOpenSSLOnlyBundle (cmd/imagetrust).
#
# usage: openssl-publish.sh WORKDIR IMAGE VO TAG
set -euo pipefail
dir=$1 image=$(realpath "$2") vo=$3 tag=$4
mkdir -p "$dir" && cd "$dir"
# the descriptor's uri names the image beside it: copy it in when it is elsewhere
[[ "$(dirname "$image")" -ef . ]] || cp "$image" .

# --- a PKI (a real site uses its IGTF CA and an offline Registrar CA) ---
ca_ext() { printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n'; }
leaf_ext() { printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n%s' "${1:-}"; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout people-ca.key -out people-ca.pem \
	-subj "/O=Example Grid/CN=Example People CA" -days 3650 -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout registrar-ca.key -out registrar-ca.pem \
	-subj "/O=Example Grid/CN=Example Registrar CA" -days 3650 -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
for who in creator:Alice approver:Bob; do
	role=${who%%:*} name=${who#*:}
	openssl req -newkey rsa:2048 -nodes -keyout "$role.key" -out "$role.csr" -subj "/DC=org/DC=example/OU=Users/CN=$name Example" 2>/dev/null
	openssl x509 -req -in "$role.csr" -CA people-ca.pem -CAkey people-ca.key -CAcreateserial -days 365 \
		-extfile <(leaf_ext) -out "$role.pem" 2>/dev/null
done

# --- the descriptor ---
uuid=$(cat /proc/sys/kernel/random/uuid)
size=$(stat -c %s "$image")
sha=$(sha512sum "$image" | cut -d' ' -f1)
printf '{"uuid":"%s","vo":"%s","tag":"%s","uri":"%s","size":%s,"sha512":"%s","disk_format":"qcow2","container_format":"bare","created":"%s"}\n' \
	"$uuid" "$vo" "$tag" "$(basename "$image")" "$size" "$sha" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > image.json

# --- creator signs, approver re-signs ---
openssl cms -sign -binary -in image.json -signer creator.pem -inkey creator.key -md sha256 -outform DER -out image.json.p7s
openssl cms -resign -binary -inform DER -in image.json.p7s -signer approver.pem -inkey approver.key -md sha256 -outform DER -out image.json.p7s.new
mv image.json.p7s.new image.json.p7s

# --- the Registrar: an image certificate naming urn:uuid:<uuid>, expiry = the image's ---
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout image.key -out image.csr -subj "/OU=$vo/CN=image $uuid" 2>/dev/null
openssl x509 -req -in image.csr -CA registrar-ca.pem -CAkey registrar-ca.key -CAcreateserial -days 90 \
	-extfile <(leaf_ext "subjectAltName=URI:urn:uuid:$uuid") -out image.pem 2>/dev/null
openssl cms -resign -binary -inform DER -in image.json.p7s -signer image.pem -inkey image.key -md sha256 -outform DER -out image.json.p7s.new
mv image.json.p7s.new image.json.p7s
rm -f image.key ./*.csr   # the image key is not needed after registration

# --- the site's trust configuration ---
cat > imagetrust.toml <<TOML
[trust]
ca_files = ["people-ca.pem"]
registrar_ca_files = ["registrar-ca.pem"]

[vo.$vo]
creators = ["/DC=org/DC=example/OU=Users/CN=Alice Example"]
approvers = ["CN=Bob Example,OU=Users,DC=example,DC=org"]
TOML
echo "bundle: $dir/image.json (+ .p7s), uuid $uuid"
