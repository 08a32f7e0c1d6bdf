"""Smoke check of the real-OpenStack harness with the real openstacksdk."""

from __future__ import annotations

import time
import uuid

import pytest

openstack = pytest.importorskip("openstack")

pytestmark = pytest.mark.openstack


def _conn(info, admin=False):
    import openstack.config

    cfg = openstack.config.OpenStackConfig(config_files=[str(info.clouds_yaml)])
    name = info.admin_cloud if admin else info.cloud
    return openstack.connection.Connection(config=cfg.get_one(cloud=name))


def test_server_create_list_by_tag_delete(openstack_cloud):
    conn = _conn(openstack_cloud)
    image = conn.image.find_image("golden", ignore_missing=False)
    assert image.properties.get("role") == "web" or getattr(image, "role", None) == "web"
    flavor = conn.compute.find_flavor("m1.small", ignore_missing=False)
    assert (flavor.vcpus, flavor.ram) == (1, 512)
    net = conn.network.find_network("private", ignore_missing=False)
    tag = f"phoenix-smoke-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    server = conn.compute.create_server(
        name=f"smoke-{tag}",
        image_id=image.id,
        flavor_id=flavor.id,
        networks=[{"uuid": net.id}],
        user_data="I2Nsb3VkLWNvbmZpZwo=",  # "#cloud-config"
        metadata={"phoenix": "smoke"},
        tags=[tag],
    )
    try:
        server = conn.compute.wait_for_server(server, status="ACTIVE", wait=120, interval=0.5)
        print(f"server ACTIVE in {time.monotonic() - t0:.2f}s")
        assert server.metadata == {"phoenix": "smoke"}
        assert tag in (server.tags or [])
        found = list(conn.compute.servers(tags=tag))
        assert [s.id for s in found] == [server.id]
        addrs = conn.compute.get_server(server).addresses
        assert any(a["addr"].startswith("192.0.2.") for a in addrs.get("private", []))
    finally:
        conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=120, interval=0.5)
    assert list(conn.compute.servers(tags=tag)) == []


def _wait_lb(conn, lb_id, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        lb = conn.load_balancer.get_load_balancer(lb_id)
        if lb.provisioning_status == "ACTIVE":
            return lb
        assert lb.provisioning_status != "ERROR", "load balancer went to ERROR"
        assert time.monotonic() < deadline, f"LB stuck in {lb.provisioning_status}"
        time.sleep(0.2)


def test_load_balancer_listener_pool_member(openstack_cloud):
    conn = _conn(openstack_cloud)
    net = conn.network.find_network("private", ignore_missing=False)
    subnet = next(iter(conn.network.subnets(network_id=net.id)))
    name = f"smoke-lb-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    lb = conn.load_balancer.create_load_balancer(name=name, vip_subnet_id=subnet.id)
    try:
        lb = _wait_lb(conn, lb.id)
        print(f"LB ACTIVE in {time.monotonic() - t0:.2f}s")
        listener = conn.load_balancer.create_listener(
            name=name, load_balancer_id=lb.id, protocol="HTTP", protocol_port=80
        )
        _wait_lb(conn, lb.id)
        pool = conn.load_balancer.create_pool(
            name=name, listener_id=listener.id, protocol="HTTP", lb_algorithm="ROUND_ROBIN"
        )
        _wait_lb(conn, lb.id)
        member = conn.load_balancer.create_member(
            pool, address="192.0.2.10", protocol_port=8080, subnet_id=subnet.id
        )
        lb = _wait_lb(conn, lb.id)
        assert lb.provisioning_status == "ACTIVE"
        assert conn.load_balancer.get_member(member, pool).provisioning_status == "ACTIVE"
    finally:
        conn.load_balancer.delete_load_balancer(lb.id, cascade=True)
    deadline = time.monotonic() + 120
    while conn.load_balancer.find_load_balancer(name) is not None:
        assert time.monotonic() < deadline, "LB delete did not finish"
        time.sleep(0.3)
