#!/usr/bin/python3
"""Create the projects, users, roles, services and endpoints of the test cloud.

    bootstrap.py                        create everything (start.sh)
    bootstrap.py set-compute PUBLIC_URL make PUBLIC_URL the public compute
                                        endpoint, NOVA_URL internal and admin
                                        (set-compute-endpoint.sh)

Called by start.sh once Keystone answers, after `keystone-manage bootstrap`
created the admin user and project, the admin/member/reader roles, RegionOne
and the identity endpoints. Everything is done in one Python process because
each `openstack` CLI call costs more than a second.

Input comes from the environment (never the command line, which `ps` shows):
KEYSTONE_URL, ADMIN_PASSWORD, SERVICE_PASSWORD, MIRROR_PASSWORD,
PROXY_PASSWORD, DEMO_PASSWORD, GLANCE_URL, when nova is wanted, NOVA_URL and
PLACEMENT_URL, when cinder is wanted, CINDER_URL, and IMAGETRUST_SECURE_RBAC
(1: the mirror user gets the roles docs/operator-guide.md documents, without
admin), GLANCE_LIMITS (Glance's unified limits: see glance_limits). Prints
MIRROR_PROJECT_ID=<id> (start.sh puts it in STATE_DIR/env), and with
GLANCE_LIMITS GLANCE_ENDPOINT_ID=<id>.
"""

import os
import sys

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client as ks_client

REGION = "RegionOne"
DOMAIN = "default"


def admin_client(env):
    """A keystoneclient authenticated as the bootstrap admin, system-scoped:
    under Keystone's new policy defaults with enforce_scope (start.sh with
    IMAGETRUST_SECURE_RBAC=1) a project-scoped admin may not create a user
    with a default project (403 identity:get_project). `keystone-manage
    bootstrap` gives the admin user the admin role on the system too; the
    old defaults accept the system-scoped token as well."""
    auth = v3.Password(
        auth_url=env["KEYSTONE_URL"],
        username="admin",
        password=env["ADMIN_PASSWORD"],
        user_domain_id=DOMAIN,
        system_scope="all",
    )
    # keystoneauth renews a token that expires within 120 s before every
    # request: under a short [token] expiration (IMAGETRUST_TOKEN_EXPIRATION)
    # that is one authentication a request, minutes of start-up
    auth.MIN_TOKEN_LIFE_SECONDS = 2
    return ks_client.Client(session=ks_session.Session(auth=auth), interface="public")


def set_endpoints(ks, stype, sname, urls):
    """Make urls ({interface: url}) the only endpoints of service type stype."""
    found = ks.services.list(type=stype)
    svc = found[0] if found else ks.services.create(name=sname, type=stype)
    for ep in ks.endpoints.list(service=svc):
        ks.endpoints.delete(ep)
    for iface, url in urls.items():
        ks.endpoints.create(service=svc, url=url, interface=iface, region=REGION)


# Glance's unified limits (glance/quota/keystone.py): sizes in MiB.
GLANCE_RESOURCES = ("image_size_total", "image_stage_total",
                    "image_count_total", "image_count_uploading")


def glance_limits(ks, spec):
    """Register Glance's limits (spec: "RESOURCE=N ...", start.sh's
    GLANCE_LIMITS) as registered limits, every other Glance resource at
    1000000 (oslo.limit 2.0 counts a missing limit as 0 and knows no -1);
    give the glance user the reader role on the system, as Glance's install
    guide (configure-quotas) asks; print GLANCE_ENDPOINT_ID=<id>, Glance's
    [oslo_limit] endpoint_id."""
    want = dict.fromkeys(GLANCE_RESOURCES, 1000000)
    for item in spec.split():
        name, value = item.split("=", 1)
        want[name] = int(value)
    svc = ks.services.list(type="image")[0]
    for name, value in want.items():
        ks.registered_limits.create(svc, name, value, region=REGION)
    roles = {r.name: r for r in ks.roles.list()}
    glance = ks.users.list(name="glance", domain=DOMAIN)[0]
    ks.roles.grant(roles["reader"], user=glance, system="all")
    public = [ep for ep in ks.endpoints.list(service=svc) if ep.interface == "public"]
    print("GLANCE_ENDPOINT_ID=%s" % public[0].id)


def set_compute(public_url):
    """Point the public compute endpoint at public_url, keep nova's own URL
    for the internal and admin interfaces."""
    env = os.environ
    if not env.get("NOVA_URL"):
        print("bootstrap.py: no NOVA_URL: the stack was started without --with-nova",
              file=sys.stderr)
        return 1
    nova = env["NOVA_URL"]
    set_endpoints(admin_client(env), "compute", "nova",
                  {"public": public_url, "internal": nova, "admin": nova})
    return 0


def bootstrap():
    """Create projects, users, role assignments, services and endpoints."""
    env = os.environ
    ks = admin_client(env)

    secure = env.get("IMAGETRUST_SECURE_RBAC") == "1"
    # keystone-manage bootstrap made admin, member and reader; "service" is
    # the role Keystone's identity:validate_token allows (the proxy's user),
    # "imagetrust" the mirror's dedicated role.
    roles = {r.name: r for r in ks.roles.list()}
    for name in ("admin", "member", "reader", "service", "imagetrust"):
        if name not in roles:
            roles[name] = ks.roles.create(name=name)

    def project(name, description):
        found = ks.projects.list(name=name, domain=DOMAIN)
        if found:
            return found[0]
        return ks.projects.create(name=name, domain=DOMAIN, description=description)

    def user(name, password, proj, role_names):
        found = ks.users.list(name=name, domain=DOMAIN)
        if found:
            u = found[0]
        else:
            u = ks.users.create(name=name, domain=DOMAIN, password=password,
                                default_project=proj)
        for rn in role_names:
            ks.roles.grant(roles[rn], user=u, project=proj)
        return u

    service = project("service", "OpenStack service users")
    mirror = project("mirror", "imagetrust mirror: owns the mirrored images")
    demo = project("demo", "an ordinary, non-admin tenant")

    for name in ("glance", "nova", "placement", "cinder"):
        user(name, env["SERVICE_PASSWORD"], service, ["admin"])
    # The mirror user holds the dedicated role "imagetrust", which a property
    # protection file and etc/glance/policy.yaml name. On the default stack
    # it also holds admin on its project (Glance's default policies need
    # admin for public images; the Go tests rely on it); with
    # IMAGETRUST_SECURE_RBAC=1 it holds exactly what docs/operator-guide.md
    # ("Keystone identities") gives it: member and imagetrust.
    if secure:
        user("imagetrust", env["MIRROR_PASSWORD"], mirror, ["member", "imagetrust"])
    else:
        user("imagetrust", env["MIRROR_PASSWORD"], mirror, ["admin", "member", "imagetrust"])
    # The boot proxy's user, as the operator guide documents it: read-only
    # in the mirror project (proxy.token_validation = "self", the default,
    # needs no "service" role: each token validates itself).
    user("imagetrust-proxy", env["PROXY_PASSWORD"], mirror, ["reader"])
    user("demo", env["DEMO_PASSWORD"], demo, ["member"])
    print("MIRROR_PROJECT_ID=%s" % mirror.id)

    glance = env["GLANCE_URL"]
    set_endpoints(ks, "image", "glance", {"public": glance, "internal": glance, "admin": glance})
    if env.get("GLANCE_LIMITS"):
        glance_limits(ks, env["GLANCE_LIMITS"])
    if env.get("NOVA_URL"):
        nova = env["NOVA_URL"]
        set_endpoints(ks, "compute", "nova", {"public": nova, "internal": nova, "admin": nova})
        placement = env["PLACEMENT_URL"]
        set_endpoints(ks, "placement", "placement",
                      {"public": placement, "internal": placement, "admin": placement})
    if env.get("CINDER_URL"):
        # Keystone fills in the project of each token's catalog. Nova looks
        # for type volumev3, the Service Types Authority's name is
        # block-storage (devstack registers both).
        cinder = env["CINDER_URL"] + "/%(project_id)s"
        for stype, sname in (("volumev3", "cinderv3"), ("block-storage", "cinder")):
            set_endpoints(ks, stype, sname, {"public": cinder, "internal": cinder, "admin": cinder})
    return 0


def main(argv):
    if len(argv) == 1:
        return bootstrap()
    if len(argv) == 3 and argv[1] == "set-compute":
        return set_compute(argv[2])
    print("usage: bootstrap.py [set-compute PUBLIC_URL]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
