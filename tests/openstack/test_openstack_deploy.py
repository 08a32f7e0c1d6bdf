"""`phoenix deploy` from the CLI against real OpenStack services (the harness), exactly as
a user runs it against a cloud: clouds.yaml, a spec naming the cloud, the real SDK.

Asserts on what Nova and Octavia report: servers, tags, metadata, user_data, members.
The harness's servers get TEST-NET addresses nothing can reach, so health is
``mode: provider`` (trust Nova's status and Octavia's monitor).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.openstack

SPEC = """\
app: {app}
provider:
  name: openstack
  cloud: phoenix-harness
  options: {{store_dir: {store}}}
regions: [RegionOne]
image: {{name: {image}}}
flavor: m1.small
network: private
count: 3
template: t.yaml.j2
vars: {{greeting: {greeting}}}
health: {{mode: provider, interval: 1s, timeout: 0.5s, healthy_threshold: 1, deadline: 120s}}
rollout: {{strategy: {strategy}, max_surge: 1, max_unavailable: 0, deadline: {deadline}}}
load_balancer: {{pool: {pool}, member_port: 8080}}
"""


class Cloud:
    def __init__(self, tmp: Path, pool: str, conn: object) -> None:
        self.tmp = tmp
        self.pool = pool
        self.conn = conn
        self.app = f"os{uuid.uuid4().hex[:6]}"
        import openstack

        self.admin = openstack.connect(cloud="phoenix-harness-admin", region_name="RegionOne")
        (tmp / "t.yaml.j2").write_text(
            "#cloud-config\nwrite_files:\n  - path: /etc/app\n"
            "    content: '{{ vars.greeting }} {{ release }} {{ index }}'\n"
        )

    def write(self, *, image: str = "golden", greeting: str = "one",
              strategy: str = "blue-green", deadline: str = "10m") -> None:
        (self.tmp / "phoenix.yaml").write_text(SPEC.format(
            app=self.app, store=self.tmp / "store", image=image, greeting=greeting,
            strategy=strategy, deadline=deadline, pool=self.pool,
        ))

    def phoenix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "phoenix", "--output", "json", *args, "phoenix.yaml"],
            cwd=self.tmp, capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ},
        )

    def servers(self) -> list[object]:
        return [s for s in self.conn.compute.servers(details=True)  # type: ignore[attr-defined]
                if s.metadata.get("phoenix:app") == self.app]

    def members(self) -> dict[str, int]:
        return {m.name: m.weight
                for m in self.conn.load_balancer.members(self.pool_id)}  # type: ignore[attr-defined]

    @property
    def pool_id(self) -> str:
        return self.conn.load_balancer.find_pool(self.pool).id  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def cloud(openstack_cloud: object, tmp_path: Path) -> Iterator[Cloud]:
    import openstack

    conn = openstack.connect(cloud="phoenix-harness", region_name="RegionOne")
    subnet = next(iter(conn.network.subnets()))
    name = f"pool-{uuid.uuid4().hex[:6]}"
    lb = conn.load_balancer.create_load_balancer(name=name, vip_subnet_id=subnet.id)
    conn.load_balancer.wait_for_load_balancer(lb.id, wait=120)
    listener = conn.load_balancer.create_listener(
        name=name, loadbalancer_id=lb.id, protocol="HTTP", protocol_port=80
    )
    conn.load_balancer.wait_for_load_balancer(lb.id, wait=120)
    conn.load_balancer.create_pool(name=name, listener_id=listener.id, protocol="HTTP",
                                   lb_algorithm="ROUND_ROBIN")
    conn.load_balancer.wait_for_load_balancer(lb.id, wait=120)
    the_cloud = Cloud(tmp_path, name, conn)
    try:
        yield the_cloud
    finally:
        the_cloud.write()
        the_cloud.phoenix("destroy", "--yes")
        conn.load_balancer.delete_load_balancer(lb.id, cascade=True)


def test_blue_green_then_rolling_then_forced_rollback_then_destroy(cloud: Cloud) -> None:
    cloud.write()
    first = cloud.phoenix("deploy")
    assert first.returncode == 0, first.stderr[-3000:]
    r1 = json.loads(first.stdout)["release"]
    servers = cloud.servers()
    assert sorted(s.name for s in servers) == [f"{cloud.app}-{r1}-{i}" for i in range(3)]
    for server in servers:
        assert server.status == "ACTIVE"
        assert f"phoenix-app={cloud.app}" in server.tags
        assert server.metadata["phoenix:release"] == r1
        # Nova shows user_data (microversion 2.3+) to admins only, by default policy.
        user_data = base64.b64decode(
            cloud.admin.compute.get_server(server.id).user_data  # type: ignore[attr-defined]
        ).decode()
        assert f"one {r1} {server.metadata['phoenix:index']}" in user_data
    assert cloud.members() == {s.name: 1 for s in servers}

    # A rolling deploy of a second image.
    cloud.conn.image.create_image(  # type: ignore[attr-defined]
        name=f"golden-{cloud.app}", data=b"v2", disk_format="raw", container_format="bare",
        allow_duplicates=True,
    )
    cloud.write(image=f"golden-{cloud.app}", strategy="rolling")
    second = cloud.phoenix("deploy")
    assert second.returncode == 0, second.stderr[-3000:]
    r2 = json.loads(second.stdout)["release"]
    assert r2 != r1
    assert {s.metadata["phoenix:release"] for s in cloud.servers()} == {r2}
    assert set(cloud.members()) == {f"{cloud.app}-{r2}-{i}" for i in range(3)}

    # A forced rollback: a deadline the new servers cannot meet.
    cloud.write(image=f"golden-{cloud.app}", greeting="three", deadline="1s")
    failed = cloud.phoenix("deploy")
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert json.loads(failed.stdout)["outcome"] == "rolled-back"
    assert {s.metadata["phoenix:release"] for s in cloud.servers()} == {r2}
    assert set(cloud.members()) == {f"{cloud.app}-{r2}-{i}" for i in range(3)}

    cloud.write()
    gone = cloud.phoenix("destroy", "--yes")
    assert gone.returncode == 0, gone.stderr[-3000:]
    assert cloud.servers() == []
    assert cloud.members() == {}


def test_quota_preflight_refuses_before_creating_anything(cloud: Cloud) -> None:
    """The phoenix project's default Nova quota is 10 instances."""
    (cloud.tmp / "phoenix.yaml").write_text(
        SPEC.format(app=cloud.app, store=cloud.tmp / "store", image="golden", greeting="q",
                    strategy="blue-green", deadline="10m", pool=cloud.pool)
        .replace("count: 3", "count: 11")
    )
    refused = cloud.phoenix("deploy")
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "instances: needs 11" in refused.stderr
    assert cloud.servers() == []
