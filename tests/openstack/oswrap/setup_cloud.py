"""Registers users, services, endpoints (phase "identity") and the test resources
(phase "resources") with openstacksdk. Run with the nova venv's python:

    setup_cloud.py identity|resources SETTINGS_JSON
"""

import json
import sys

import openstack


def conn(s, admin=True):
    auth = {
        "auth_url": s["auth_url"],
        "username": s["admin_user"] if admin else s["user"],
        "password": s["admin_password"] if admin else s["password"],
        "project_name": "admin" if admin else s["project"],
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }
    return openstack.connect(auth=auth, region_name=s["region"], identity_api_version="3")


def ensure(finder, creator, name, **kw):
    obj = finder(name)
    return obj if obj is not None else creator(name=name, **kw)


def identity(s):
    c = conn(s)
    idn = c.identity
    dom = idn.find_domain("default") or idn.find_domain("Default")
    dom_id = dom.id

    def project(name):
        return idn.find_project(name, domain_id=dom_id) or idn.create_project(
            name=name, domain_id=dom_id
        )

    def role(name):
        return idn.find_role(name) or idn.create_role(name=name)

    def user(name, password, proj):
        u = idn.find_user(name, domain_id=dom_id)
        if u is None:
            u = idn.create_user(
                name=name, password=password, domain_id=dom_id, default_project_id=proj.id
            )
        else:
            idn.update_user(u, password=password)
        return u

    def grant(proj, u, r):
        idn.assign_project_role_to_user(proj, u, r)

    service_p = project("service")
    phoenix_p = project("phoenix")
    admin_r, member_r, reader_r = role("admin"), role("member"), role("reader")
    service_r = role("service")
    lb_member_r = role("load-balancer_member")
    for name in s["service_users"]:
        u = user(name, s["service_password"], service_p)
        grant(service_p, u, admin_r)
        grant(service_p, u, service_r)
    pu = user(s["user"], s["password"], phoenix_p)
    for r in (member_r, reader_r, lb_member_r):
        grant(phoenix_p, pu, r)

    for svc_type, name, url in s["endpoints"]:
        svc = next((x for x in c.identity.services() if x.type == svc_type), None)
        if svc is None:
            svc = idn.create_service(name=name, type=svc_type, is_enabled=True)
        have = {e.interface for e in idn.endpoints(service_id=svc.id)}
        for iface in ("public", "internal", "admin"):
            if iface not in have:
                idn.create_endpoint(
                    service_id=svc.id, interface=iface, url=url, region_id=s["region"]
                )
    print("identity ready")


def resources(s):
    c = conn(s)
    if c.compute.find_flavor("m1.small") is None:
        c.compute.create_flavor(name="m1.small", vcpus=1, ram=512, disk=1, is_public=True)
    img = c.image.find_image("golden")
    if img is None:
        img = c.image.create_image(
            name="golden",
            disk_format="raw",
            container_format="bare",
            visibility="public",
            data=b"phoenix-golden-image\n",
            role="web",
            validate_checksum=False,
        )
    u = conn(s, admin=False)
    net = u.network.find_network("private")
    if net is None:
        net = u.network.create_network(name="private")
    if not list(u.network.subnets(network_id=net.id)):
        u.network.create_subnet(
            name="private-subnet",
            network_id=net.id,
            ip_version=4,
            cidr="192.0.2.0/24",
            gateway_ip="192.0.2.1",
            enable_dhcp=False,
        )
    print(json.dumps({"image": img.id, "network": net.id}))


if __name__ == "__main__":
    settings = json.loads(sys.argv[2])
    {"identity": identity, "resources": resources}[sys.argv[1]](settings)
