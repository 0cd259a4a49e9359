#!/bin/bash
# shellcheck shell=bash
#
# devstack/plugin.sh: the imagetrust devstack plugin.
#
# Sourced by stack.sh, unstack.sh and clean.sh with MODE [PHASE]:
#   stack install      build imagetrust with Go and install the binary
#   stack post-config  identities (mirror project, service users, role),
#                      imagetrust.toml and clouds.yaml, Glance (glance-direct,
#                      property protections, policy) and Nova
#                      (non_inheritable_image_properties)
#   stack extra        start imagetrust-sync, -crl and -proxy (run_process),
#                      then make the proxy the public compute endpoint
#                      (Nova's own URL stays as internal and admin)
#   stack test-config  optionally point tempest's compute client at Nova's
#                      internal endpoint; verify the demo bundle
#   unstack            stop the three services
#   clean              remove the binary, configuration and state
# Settings and their defaults: devstack/settings. Usage: devstack/README.md.

# Save trace setting
_XTRACE_IMAGETRUST=$(set +o | grep xtrace)
set -o xtrace

IMAGETRUST_PLUGIN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGETRUST_SRC_DIR=$(dirname "$IMAGETRUST_PLUGIN_DIR")

# SERVICE_PASSWORD is known only after settings were read.
IMAGETRUST_PASSWORD=${IMAGETRUST_PASSWORD:-$SERVICE_PASSWORD}

# The clouds.yaml entries the services use.
IMAGETRUST_MIRROR_CLOUD=imagetrust-mirror
IMAGETRUST_PROXY_CLOUD=imagetrust-proxy

# imagetrust_any_enabled: is one of the three services enabled?
function imagetrust_any_enabled {
    is_service_enabled imagetrust-sync || is_service_enabled imagetrust-crl || is_service_enabled imagetrust-proxy
}

# imagetrust_has_command NAME: does the installed binary have subcommand NAME?
function imagetrust_has_command {
    "$IMAGETRUST_BIN" help 2>&1 | grep -qE "^  $1 "
}

# imagetrust_go: print the path of a Go toolchain of at least
# IMAGETRUST_GO_VERSION, downloading the official one when needed.
function imagetrust_go {
    local want=$IMAGETRUST_GO_VERSION
    local have=""
    if command -v "$IMAGETRUST_GO" >/dev/null 2>&1; then
        have=$("$IMAGETRUST_GO" env GOVERSION 2>/dev/null)
        have=${have#go}
        if [[ -n "$have" && "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" == "$want" ]]; then
            command -v "$IMAGETRUST_GO"
            return 0
        fi
    fi
    local root=$DEST/go-$want
    if [[ ! -x $root/bin/go ]]; then
        local arch
        case $(uname -m) in
            x86_64) arch=amd64 ;;
            aarch64) arch=arm64 ;;
            ppc64le) arch=ppc64le ;;
            s390x) arch=s390x ;;
            *) die $LINENO "imagetrust: no Go tarball for $(uname -m); set IMAGETRUST_GO" ;;
        esac
        local tarball=$DEST/go$want.linux-$arch.tar.gz
        curl -fsSL -o "$tarball" "$IMAGETRUST_GO_URL/go$want.linux-$arch.tar.gz" ||
            die $LINENO "imagetrust: could not download Go $want"
        if [[ -n "${IMAGETRUST_GO_SHA256:-}" ]]; then
            echo "$IMAGETRUST_GO_SHA256  $tarball" | sha256sum -c - ||
                die $LINENO "imagetrust: Go tarball checksum mismatch"
        fi
        rm -rf "$root.tmp"
        mkdir -p "$root.tmp"
        tar -C "$root.tmp" --strip-components=1 -xzf "$tarball"
        rm -rf "$root"
        mv "$root.tmp" "$root"
        rm -f "$tarball"
    fi
    echo "$root/bin/go"
}

# install_imagetrust: build the binary from the plugin's repository.
function install_imagetrust {
    local go
    go=$(imagetrust_go)
    mkdir -p "$IMAGETRUST_STATE_DIR"
    (cd "$IMAGETRUST_SRC_DIR" && "$go" build -trimpath -o "$IMAGETRUST_STATE_DIR/imagetrust" ./cmd/imagetrust) ||
        die $LINENO "imagetrust: go build failed"
    sudo install -m 0755 "$IMAGETRUST_STATE_DIR/imagetrust" "$IMAGETRUST_BIN"
}

# imagetrust_property_names: every imagetrust_ property name of the
# catalogue record, read from the source: validator/record.go (the record),
# crl/record.go (what the CRL job adds) and glancesync/backoff.go (the
# sync's refused-bytes back-off), as etc/nova/nova.conf.snippet lists them.
function imagetrust_property_names {
    cat "$IMAGETRUST_SRC_DIR/validator/record.go" "$IMAGETRUST_SRC_DIR/crl/record.go" \
        "$IMAGETRUST_SRC_DIR/glancesync/backoff.go" |
        grep -o '"imagetrust_[a-z0-9_]\+"' | tr -d '"' | sort -u
}

# imagetrust_hostport HOST PORT: HOST:PORT, an IPv6 literal in brackets
# (SERVICE_IP_VERSION=6: SERVICE_LISTEN_ADDRESS is ::).
function imagetrust_hostport {
    if [[ $1 == *:* && $1 != \[* ]]; then
        echo "[$1]:$2"
    else
        echo "$1:$2"
    fi
}

# imagetrust_nova_url: Nova's own compute URL without /v2.1: the internal
# endpoint if one exists (a re-run), else the public one.
function imagetrust_nova_url {
    local url
    url=$(openstack --os-cloud devstack-system-admin endpoint list --service compute \
        --interface internal --region "$REGION_NAME" -f value -c URL | head -n1)
    if [[ -z "$url" ]]; then
        url=$(openstack --os-cloud devstack-system-admin endpoint list --service compute \
            --interface public --region "$REGION_NAME" -f value -c URL | head -n1)
    fi
    echo "${url%/v2.1}"
}

# create_imagetrust_accounts: the mirror project, its role and service users.
function create_imagetrust_accounts {
    local project mirror proxy
    project=$(get_or_create_project "$IMAGETRUST_MIRROR_PROJECT" "$SERVICE_DOMAIN_NAME")
    get_or_create_role "$IMAGETRUST_MIRROR_ROLE" >/dev/null
    mirror=$(get_or_create_user "$IMAGETRUST_MIRROR_USER" "$IMAGETRUST_PASSWORD" "$SERVICE_DOMAIN_NAME")
    get_or_add_user_project_role member "$mirror" "$project" >/dev/null
    get_or_add_user_project_role "$IMAGETRUST_MIRROR_ROLE" "$mirror" "$project" >/dev/null
    proxy=$(get_or_create_user "$IMAGETRUST_PROXY_USER" "$IMAGETRUST_PASSWORD" "$SERVICE_DOMAIN_NAME")
    # reader for its Glance lookups; no service role: the proxy validates
    # each token with itself (proxy.token_validation = "self", the default)
    get_or_add_user_project_role reader "$proxy" "$project" >/dev/null
}

# imagetrust_write_clouds_yaml: credentials of the services.
function imagetrust_write_clouds_yaml {
    local tmp
    tmp=$(mktemp)
    chmod 600 "$tmp"
    local cloud user
    {
        echo "clouds:"
        for cloud in $IMAGETRUST_MIRROR_CLOUD $IMAGETRUST_PROXY_CLOUD; do
            user=$IMAGETRUST_MIRROR_USER
            [[ $cloud == "$IMAGETRUST_PROXY_CLOUD" ]] && user=$IMAGETRUST_PROXY_USER
            cat <<EOF
  $cloud:
    auth:
      auth_url: $KEYSTONE_SERVICE_URI
      username: $user
      password: "$IMAGETRUST_PASSWORD"
      user_domain_name: $SERVICE_DOMAIN_NAME
      project_name: $IMAGETRUST_MIRROR_PROJECT
      project_domain_name: $SERVICE_DOMAIN_NAME
    region_name: $REGION_NAME
    interface: public
    identity_api_version: 3
EOF
        done
    } >"$tmp"
    mv "$tmp" "$IMAGETRUST_CLOUDS_YAML"
}

# imagetrust_write_config: imagetrust.toml, from IMAGETRUST_SITE_CONFIG or
# for a demonstration PKI.
function imagetrust_write_config {
    if [[ -n "$IMAGETRUST_SITE_CONFIG" ]]; then
        install -m 0640 "$IMAGETRUST_SITE_CONFIG" "$IMAGETRUST_CONF"
        return 0
    fi
    if [[ ! -f $IMAGETRUST_PKI_DIR/people-ca.pem ]]; then
        "$IMAGETRUST_BIN" pki init --vo "$IMAGETRUST_DEMO_VO" "$IMAGETRUST_PKI_DIR" ||
            die $LINENO "imagetrust: pki init failed"
    fi
    mkdir -p "$IMAGETRUST_SOURCE_DIR" "$IMAGETRUST_STATE_DIR/crl"
    local demo_project nova_url
    demo_project=$(get_or_create_project demo "$SERVICE_DOMAIN_NAME")
    nova_url=$(imagetrust_nova_url)
    if [[ -z "$nova_url" ]] && is_service_enabled imagetrust-proxy; then
        die $LINENO "imagetrust: no compute endpoint in the catalog: the proxy needs Nova (n-api)"
    fi
    local pki=$IMAGETRUST_PKI_DIR
    local tmp
    tmp=$(mktemp)
    {
        cat <<EOF
# Written by the imagetrust devstack plugin: trusts the DEMONSTRATION PKI of
# $pki (NOT for production). Every key: etc/imagetrust.toml.
[trust]
ca_files = ["$pki/people-ca.pem"]
registrar_ca_files = ["$pki/registrar-ca.pem"]
crl_files = ["$pki/people-ca.crl", "$pki/registrar-ca.crl"]

EOF
        # the [vo.NAME] section pki init wrote, with its demo DNs
        sed -n '/^\[vo\./,$p' "$pki/imagetrust.toml"
        cat <<EOF
visibility = "shared"
projects = ["$demo_project"]

[sync]
interval = "$IMAGETRUST_SYNC_INTERVAL"
listen = "$IMAGETRUST_SYNC_METRICS"
lock_file = "$IMAGETRUST_STATE_DIR/sync.lock"

[[sync.source]]
path = "$IMAGETRUST_SOURCE_DIR"
vos = ["$IMAGETRUST_DEMO_VO"]

[crl]
interval = "$IMAGETRUST_CRL_INTERVAL"
cache_dir = "$IMAGETRUST_STATE_DIR/crl"
listen = "$IMAGETRUST_CRL_METRICS"

[[crl.source]]
file = "$pki/people-ca.crl"

[[crl.source]]
file = "$pki/registrar-ca.crl"

[proxy]
listen = "$(imagetrust_hostport "$IMAGETRUST_PROXY_LISTEN" "$IMAGETRUST_PROXY_PORT")"
public_url = "http://$(imagetrust_hostport "$IMAGETRUST_PROXY_HOST" "$IMAGETRUST_PROXY_PORT")"
upstream = "$nova_url"
metrics_listen = "$IMAGETRUST_PROXY_METRICS"

[log]
format = "text"
level = "info"
EOF
    } >"$tmp"
    install -m 0640 "$tmp" "$IMAGETRUST_CONF"
    rm -f "$tmp"
}

# configure_imagetrust_glance: glance-direct, the hash, property protections
# and policy (etc/glance/).
function configure_imagetrust_glance {
    iniset "$GLANCE_API_CONF" DEFAULT enabled_import_methods "[glance-direct,copy-image]"
    iniset "$GLANCE_API_CONF" DEFAULT hashing_algorithm sha512
    iniset "$GLANCE_API_CONF" DEFAULT image_property_quota 128
    # single store (no enabled_backends): glance-direct stages under
    # node_staging_uri; multi-store deployments use [os_glance_staging_store],
    # which devstack configures.
    if [[ -z "$(iniget "$GLANCE_API_CONF" DEFAULT enabled_backends)" &&
        -z "$(iniget "$GLANCE_API_CONF" DEFAULT node_staging_uri)" ]]; then
        mkdir -p "$DATA_DIR/glance/staging"
        iniset "$GLANCE_API_CONF" DEFAULT node_staging_uri "file://$DATA_DIR/glance/staging"
    fi

    local protections=$GLANCE_CONF_DIR/property-protections.conf
    sed -e "s/^\(create\|update\|delete\) = admin,imagetrust$/\1 = admin,$IMAGETRUST_MIRROR_ROLE/" \
        "$IMAGETRUST_SRC_DIR/etc/glance/property-protections.conf" >"$protections"
    iniset "$GLANCE_API_CONF" DEFAULT property_protection_file "$protections"
    iniset "$GLANCE_API_CONF" DEFAULT property_protection_rule_format roles

    # policy: add our rules to the policy file: all of them, with their
    # comments, the first time; on a later run (an upgrade that brought new
    # rules) each rule whose name the file lacks. A rule the file already
    # has is left as it is (the operator's), with a warning if it differs.
    local policy ours missing
    policy=$(iniget "$GLANCE_API_CONF" oslo_policy policy_file)
    if [[ -z "$policy" ]]; then
        policy=$GLANCE_CONF_DIR/policy.yaml
        iniset "$GLANCE_API_CONF" oslo_policy policy_file "$policy"
    fi
    [[ $policy == /* ]] || policy=$GLANCE_CONF_DIR/$policy
    ours=$(sed -e "s/role:imagetrust /role:$IMAGETRUST_MIRROR_ROLE /" \
        "$IMAGETRUST_SRC_DIR/etc/glance/policy.yaml")
    if ! grep -qs '^"deactivate":' "$policy"; then
        printf '%s\n' "$ours" >>"$policy"
        return
    fi
    missing=$(awk -F: -v file="$policy" 'NR == FNR { if (/^"/) have[$1] = $0; next }
        /^"/ { if (!($1 in have)) print; else if (have[$1] != $0) print "warning: Glance policy " $1 " kept as " file " has it, not as imagetrust suggests: " $0 > "/dev/stderr" }' \
        "$policy" <(printf '%s\n' "$ours"))
    if [[ -n "$missing" ]]; then
        printf '\n# added by the imagetrust devstack plugin on upgrade (see %s)\n%s\n' \
            "$IMAGETRUST_SRC_DIR/etc/glance/policy.yaml" "$missing" >>"$policy"
    fi
}

# configure_imagetrust_nova: users' snapshots don't inherit the record, and
# nova-api names the proxy (from its X-Forwarded-* fields) in its links.
function configure_imagetrust_nova {
    local names conf current
    names=$(imagetrust_property_names | paste -sd, -)
    for conf in "$NOVA_CONF" "$NOVA_CPU_CONF"; do
        [[ -f $conf ]] || continue
        current=$(iniget "$conf" DEFAULT non_inheritable_image_properties)
        current=${current:-cache_in_nova,bittorrent}
        # drop earlier imagetrust_ names, then add the current ones
        current=$(echo "$current" | tr ',' '\n' | grep -v '^imagetrust_' | paste -sd, -)
        iniset "$conf" DEFAULT non_inheritable_image_properties "$current,$names"
    done
    if [[ -f $NOVA_CONF ]]; then
        iniset "$NOVA_CONF" oslo_middleware enable_proxy_headers_parsing True
    fi
}

# configure_imagetrust: everything of post-config.
function configure_imagetrust {
    sudo install -d -o "$STACK_USER" -m 0750 "$IMAGETRUST_CONF_DIR"
    mkdir -p "$IMAGETRUST_STATE_DIR"
    create_imagetrust_accounts
    imagetrust_write_clouds_yaml
    imagetrust_write_config
    if is_service_enabled g-api glance; then
        configure_imagetrust_glance
    fi
    if is_service_enabled n-api; then
        configure_imagetrust_nova
    fi
}

# imagetrust_publish_demo: publish devstack's cirros image as a demo bundle
# (describe, sign, approve, register) into the sync's source directory.
function imagetrust_publish_demo {
    [[ -z "$IMAGETRUST_SITE_CONFIG" ]] || return 0
    local img
    img=$(find "$FILES" -maxdepth 1 -name 'cirros-*-disk.img' 2>/dev/null | sort | tail -n1)
    [[ -n "$img" ]] || return 0
    local name
    name=$(basename "$img" .img)
    local bundle=$IMAGETRUST_SOURCE_DIR/$name.json
    [[ -f $bundle.p7s ]] && return 0
    cp "$img" "$IMAGETRUST_SOURCE_DIR/$name.qcow2"
    local pki=$IMAGETRUST_PKI_DIR
    if ! { "$IMAGETRUST_BIN" describe "$IMAGETRUST_SOURCE_DIR/$name.qcow2" --vo "$IMAGETRUST_DEMO_VO" \
        --tag cirros --title "$name" -o "$bundle" &&
        "$IMAGETRUST_BIN" sign --cert "$pki/creator.pem" --key "$pki/creator.key" "$bundle" &&
        "$IMAGETRUST_BIN" approve --cert "$pki/approver.pem" --key "$pki/approver.key" "$bundle" &&
        "$IMAGETRUST_BIN" register --ca "$pki/registrar-ca.pem" --ca-key "$pki/registrar-ca.key" \
            --expires 90d "$bundle"; }; then
        die $LINENO "imagetrust: could not publish the demo bundle"
    fi
}

# imagetrust_point_compute_at_proxy: the proxy becomes the public compute
# endpoint (compute and compute_legacy); Nova's own URL stays as internal
# and admin endpoint.
function imagetrust_point_compute_at_proxy {
    local nova_url proxy_url
    nova_url=$(imagetrust_nova_url)
    # the proxy listens without TLS here (devstack's tls-proxy does not
    # front it)
    proxy_url=http://$(imagetrust_hostport "$IMAGETRUST_PROXY_HOST" "$IMAGETRUST_PROXY_PORT")
    local type suffix iface id
    for type in compute compute_legacy; do
        openstack --os-cloud devstack-system-admin service show "$type" >/dev/null 2>&1 || continue
        suffix=/v2.1
        [[ $type == compute_legacy ]] && suffix="/v2/\$(project_id)s"
        for iface in internal admin; do
            id=$(openstack --os-cloud devstack-system-admin endpoint list --service "$type" \
                --interface "$iface" --region "$REGION_NAME" -f value -c ID | head -n1)
            if [[ -z "$id" ]]; then
                openstack --os-cloud devstack-system-admin endpoint create --region "$REGION_NAME" \
                    "$type" "$iface" "$nova_url$suffix" >/dev/null
            fi
        done
        for id in $(openstack --os-cloud devstack-system-admin endpoint list --service "$type" \
            --interface public --region "$REGION_NAME" -f value -c ID); do
            openstack --os-cloud devstack-system-admin endpoint set --url "$proxy_url$suffix" "$id"
        done
        get_or_create_endpoint "$type" "$REGION_NAME" "$proxy_url$suffix" >/dev/null
    done
}

# start_imagetrust: the three services under devstack's systemd units.
function start_imagetrust {
    local env="OS_CLIENT_CONFIG_FILE=$IMAGETRUST_CLOUDS_YAML"
    local svc cmd cloud
    for svc in sync crl proxy; do
        is_service_enabled "imagetrust-$svc" || continue
        if ! imagetrust_has_command "$svc"; then
            echo "WARNING: $IMAGETRUST_BIN has no '$svc' subcommand yet; imagetrust-$svc not started"
            continue
        fi
        cloud=$IMAGETRUST_MIRROR_CLOUD
        [[ $svc == proxy ]] && cloud=$IMAGETRUST_PROXY_CLOUD
        cmd="$IMAGETRUST_BIN $svc --config $IMAGETRUST_CONF"
        run_process "imagetrust-$svc" "$cmd" "" "" "$env OS_CLOUD=$cloud"
    done
    if is_service_enabled imagetrust-proxy && imagetrust_has_command proxy; then
        # plain http: devstack's tls-proxy does not front the proxy
        local url=http://$(imagetrust_hostport "$IMAGETRUST_PROXY_HOST" "$IMAGETRUST_PROXY_PORT")/
        if ! wait_for_service "$SERVICE_TIMEOUT" "$url"; then
            die $LINENO "imagetrust-proxy did not start on $url"
        fi
        if [[ "$IMAGETRUST_REGISTER_PROXY" == "True" ]] && is_service_enabled n-api; then
            imagetrust_point_compute_at_proxy
        fi
    fi
}

# stop_imagetrust: the three services.
function stop_imagetrust {
    local svc
    for svc in sync crl proxy; do
        stop_process "imagetrust-$svc"
    done
}

# configure_imagetrust_tempest: tempest boots images outside the catalogue;
# with IMAGETRUST_TEMPEST_BYPASS it talks to Nova's internal endpoint.
function configure_imagetrust_tempest {
    if is_service_enabled tempest && [[ "$IMAGETRUST_TEMPEST_BYPASS" == "True" ]]; then
        iniset "$TEMPEST_CONFIG" compute endpoint_type internalURL
    fi
    if [[ -z "$IMAGETRUST_SITE_CONFIG" ]]; then
        local bundle
        for bundle in "$IMAGETRUST_SOURCE_DIR"/*.json; do
            [[ -f $bundle ]] || continue
            "$IMAGETRUST_BIN" verify --config "$IMAGETRUST_CONF" "$bundle" ||
                die $LINENO "imagetrust: demo bundle $bundle does not verify"
        done
    fi
}

# cleanup_imagetrust: binary, configuration, state.
function cleanup_imagetrust {
    sudo rm -f "$IMAGETRUST_BIN"
    sudo rm -rf "$IMAGETRUST_CONF_DIR"
    rm -rf "$IMAGETRUST_STATE_DIR"
    rm -f "$GLANCE_CONF_DIR/property-protections.conf"
}

if imagetrust_any_enabled; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing imagetrust"
        install_imagetrust

    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring imagetrust, Glance and Nova for it"
        configure_imagetrust

    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting imagetrust"
        imagetrust_publish_demo
        start_imagetrust

    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        echo_summary "Configuring tests for imagetrust"
        configure_imagetrust_tempest
    fi

    if [[ "$1" == "unstack" ]]; then
        stop_imagetrust
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_imagetrust
    fi
fi

# Restore xtrace
$_XTRACE_IMAGETRUST
