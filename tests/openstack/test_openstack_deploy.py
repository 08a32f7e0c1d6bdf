"""`phoenix deploy` from the CLI against real OpenStack services (the harness), exactly as
a user runs it against a cloud: clouds.yaml, a spec naming the cloud, the real SDK.

Asserts on what Nova and Octavia report: servers, tags, metadata, user_data, members.
The harness's servers get TEST-NET addresses nothing can reach, so health is
``mode: provider`` (trust Nova's status and Octavia's monitor). Release records and the
deploy lock go to the object-store service of the harness's catalog (a loopback fake that
speaks Swift's API and checks tokens with Keystone; see tests/openstack/fake_object_dns.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.openstack

# Octavia reports no per-member connection counts, so every drain lasts drain_timeout;
# 3 s keeps the tests short (they are not about draining).
SPEC = """\
app: {app}
provider:
  name: openstack
  cloud: phoenix-harness
{options}regions: [RegionOne]
image: {{name: {image}}}
flavor: m1.small
network: private
count: {count}
{server}template: t.yaml.j2
vars: {{greeting: {greeting}}}
health: {{mode: provider, interval: 1s, timeout: 0.5s, healthy_threshold: 1, deadline: 120s}}
rollout: {{strategy: {strategy}, max_surge: 1, max_unavailable: 0, deadline: {deadline},
  drain_timeout: 3s{rollout}}}
load_balancer: {{pool: {pool}, member_port: 8080}}
"""


class Cloud:
    def __init__(self, tmp: Path, pool: str, conn: object) -> None:
        self.tmp = tmp
        self.pool = pool
        self.conn = conn
        self.app = f"os{uuid.uuid4().hex[:6]}"
        self.images: list[object] = []  # made by a test; deleted after it
        import openstack

        self.admin = openstack.connect(cloud="phoenix-harness-admin", region_name="RegionOne")
        (tmp / "t.yaml.j2").write_text(
            "#cloud-config\nwrite_files:\n  - path: /etc/app\n"
            "    content: '{{ vars.greeting }} {{ release }} {{ index }}'\n"
        )

    def write(self, *, image: str = "golden", greeting: str = "one",
              strategy: str = "blue-green", deadline: str = "10m", count: int = 3,
              server_group: str | None = None, rollout: str = "") -> None:
        (self.tmp / "phoenix.yaml").write_text(SPEC.format(
            app=self.app, image=image, greeting=greeting, strategy=strategy,
            deadline=deadline, pool=self.pool, count=count, options="",
            rollout=f", {rollout}" if rollout else "",
            server=f"server: {{server_group: {server_group}}}\n" if server_group else "",
        ))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "phoenix", "--output", "json", *args, "phoenix.yaml"]

    def phoenix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.tmp, capture_output=True,
                              text=True, timeout=600, check=False, env={**os.environ})

    def records(self) -> dict[str, bytes]:
        """The objects Phoenix keeps for this app in its Swift container."""
        objects = self.swift.objects("phoenix")  # type: ignore[attr-defined]
        return {k: v for k, v in objects.items() if k.startswith(f"apps/{self.app}/")}

    def servers(self) -> list[object]:
        return [s for s in self.conn.compute.servers(details=True)  # type: ignore[attr-defined]
                if s.metadata.get("phoenix:app") == self.app]

    def releases_after_deletions(self, timeout: float = 60.0) -> set[str]:
        """The releases of the app's servers once Nova has finished the deletions under
        way. A deploy returns when it has deleted what it retires (Nova then lists the
        server with task_state 'deleting' for a moment); a server *not* being deleted
        must never be waited for: it counts at once."""
        deadline = time.monotonic() + timeout
        while True:
            servers = self.servers()
            going = [s for s in servers if s.status == "DELETED"  # type: ignore[attr-defined]
                     or str(s.task_state or "").lower() == "deleting"]  # type: ignore[attr-defined]
            if not going or time.monotonic() > deadline:
                return {s.metadata["phoenix:release"] for s in servers  # type: ignore[attr-defined]
                        if s not in going}
            time.sleep(0.5)

    def members(self) -> dict[str, int]:
        return {m.name: m.weight
                for m in self.conn.load_balancer.members(self.pool_id)}  # type: ignore[attr-defined]

    @property
    def pool_id(self) -> str:
        return self.conn.load_balancer.find_pool(self.pool).id  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def cloud(openstack_cloud: object, harness_object_dns: object, tmp_path: Path) -> Iterator[Cloud]:
    import openstack

    from tests.openstack import harness

    conn = openstack.connect(cloud="phoenix-harness", region_name=harness.REGION)
    name = f"pool-{uuid.uuid4().hex[:6]}"
    with harness.octavia_pool(conn, name):
        the_cloud = Cloud(tmp_path, name, conn)
        the_cloud.swift = harness_object_dns  # type: ignore[attr-defined]
        try:
            yield the_cloud
        finally:
            the_cloud.write()
            the_cloud.phoenix("destroy", "--yes")
            for image in the_cloud.images:
                conn.image.delete_image(image, ignore_missing=True)


def test_blue_green_then_rolling_then_forced_rollback_then_destroy(cloud: Cloud) -> None:
    cloud.write()
    first = cloud.phoenix("deploy")
    assert first.returncode == 0, first.stderr[-3000:]
    r1 = json.loads(first.stdout)["release"]
    servers = cloud.servers()
    assert sorted(s.name for s in servers) == [f"{cloud.app}-{r1}-{i}" for i in range(3)]
    golden = next(iter(cloud.conn.image.images(name="golden")))  # type: ignore[attr-defined]
    for server in servers:
        assert server.status == "ACTIVE"
        assert server.image.id == golden.id  # the image Glance has under that name
        assert f"phoenix-app={cloud.app}" in server.tags
        assert server.metadata["phoenix:release"] == r1
        # Nova shows user_data (microversion 2.3+) to admins only, by default policy.
        user_data = base64.b64decode(
            cloud.admin.compute.get_server(server.id).user_data  # type: ignore[attr-defined]
        ).decode()
        assert f"one {r1} {server.metadata['phoenix:index']}" in user_data
    assert cloud.members() == {s.name: 1 for s in servers}
    # The release record and the deploy history live in Swift; the lock was released.
    stored = cloud.records()
    assert f"apps/{cloud.app}/releases/{r1}.json" in stored
    assert any(key.startswith(f"apps/{cloud.app}/deploys/") for key in stored)
    assert f"apps/{cloud.app}/lock" not in stored

    # A rolling deploy of a second image.
    second_image = cloud.conn.image.create_image(  # type: ignore[attr-defined]
        name=f"golden-{cloud.app}", data=b"v2", disk_format="raw", container_format="bare",
        allow_duplicates=True,
    )
    cloud.images.append(second_image)
    cloud.write(image=f"golden-{cloud.app}", strategy="rolling")
    second = cloud.phoenix("deploy")
    assert second.returncode == 0, second.stderr[-3000:]
    r2 = json.loads(second.stdout)["release"]
    assert r2 != r1
    assert cloud.releases_after_deletions() == {r2}
    assert {s.image.id for s in cloud.servers()} == {second_image.id}
    assert set(cloud.members()) == {f"{cloud.app}-{r2}-{i}" for i in range(3)}

    # A forced rollback: a deadline the new servers cannot meet.
    cloud.write(image=f"golden-{cloud.app}", greeting="three", deadline="1s")
    failed = cloud.phoenix("deploy")
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert json.loads(failed.stdout)["outcome"] == "rolled-back"
    assert cloud.releases_after_deletions() == {r2}  # the new servers were deleted
    assert set(cloud.members()) == {f"{cloud.app}-{r2}-{i}" for i in range(3)}

    cloud.write()
    gone = cloud.phoenix("destroy", "--yes")
    assert gone.returncode == 0, gone.stderr[-3000:]
    assert cloud.servers() == []
    assert cloud.members() == {}


def test_quota_preflight_refuses_before_creating_anything(cloud: Cloud) -> None:
    """The phoenix project's default Nova quota is 10 instances."""
    cloud.write(count=11)
    refused = cloud.phoenix("deploy")
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "instances: needs 11" in refused.stderr
    assert cloud.servers() == []


def test_anti_affinity_server_group_is_enforced_by_nova(cloud: Cloud) -> None:
    """``server.server_group`` reaches Nova's scheduler as a hint: the server joins the
    group; and since the harness has one compute host, a second server in an
    anti-affinity group cannot be placed. That failure is Nova's "No valid host" fault,
    reported as such; the deploy rolls back and leaves no server behind."""
    group = cloud.conn.compute.create_server_group(  # type: ignore[attr-defined]
        name=f"aa-{cloud.app}", policy="anti-affinity"
    )
    try:
        cloud.write(count=1, server_group=group.name)
        placed = cloud.phoenix("deploy")
        assert placed.returncode == 0, placed.stderr[-3000:]
        (server,) = cloud.servers()
        members = cloud.conn.compute.get_server_group(group.id).member_ids  # type: ignore[attr-defined]
        assert members == [server.id]
        cloud.write(count=1)
        assert cloud.phoenix("destroy", "--yes").returncode == 0

        cloud.write(count=2, server_group=group.name)
        crowded = cloud.phoenix("deploy")
        assert crowded.returncode == 1, crowded.stderr[-3000:]
        assert json.loads(crowded.stdout)["outcome"] == "rolled-back"
        assert "no valid host" in crowded.stderr.lower()
        assert cloud.releases_after_deletions() == set()
        assert cloud.members() == {}
    finally:
        cloud.conn.compute.delete_server_group(group.id)  # type: ignore[attr-defined]


def test_deploy_points_the_designate_record_at_the_octavia_vip(cloud: Cloud) -> None:
    """With dns: in the spec, the deploy writes the app's record in Designate (the fake,
    through the harness catalog) pointing at the region's Octavia VIP, and status says
    that region serves. A second deploy leaves it as it is."""
    from tests.conftest import CONTRACT_ZONE

    cloud.write(count=1)
    spec = cloud.tmp / "phoenix.yaml"
    spec.write_text(spec.read_text() + f"dns: {{zone: {CONTRACT_ZONE}, record: {cloud.app},"
                                        " ttl: 30}\n")
    first = cloud.phoenix("deploy")
    assert first.returncode == 0, first.stderr[-3000:]
    lb = cloud.conn.load_balancer.find_load_balancer(cloud.pool)  # type: ignore[attr-defined]
    result = json.loads(first.stdout)
    assert result["dns"] == lb.vip_address
    assert [a["region"] for a in result["attempts"]] == ["RegionOne"]
    recordsets = [
        rs for rs in cloud.swift.recordsets(CONTRACT_ZONE)  # type: ignore[attr-defined]
        if rs["name"] == f"{cloud.app}.{CONTRACT_ZONE}"
    ]
    assert [(rs["type"], rs["records"], rs["ttl"]) for rs in recordsets] == [
        ("A", [lb.vip_address], 30)]
    shown = cloud.phoenix("status")
    assert json.loads(shown.stdout)["serving_region"] == "RegionOne"
    again = cloud.phoenix("deploy")
    assert again.returncode == 0 and json.loads(again.stdout)["outcome"] == "unchanged"


@contextlib.contextmanager
def _instances_quota(cloud: Cloud, instances: int) -> Iterator[None]:
    """The phoenix project's Nova quota raised to ``instances`` (m1.small: 1 vCPU,
    512 MB each), and back to what it was afterwards."""
    project = cloud.admin.identity.find_project("phoenix")  # type: ignore[attr-defined]
    before = cloud.admin.get_compute_quotas(project.id)  # type: ignore[attr-defined]
    cloud.admin.set_compute_quotas(  # type: ignore[attr-defined]
        project.id, instances=instances, cores=instances,
        ram=max(int(before.ram), instances * 512))
    try:
        yield
    finally:
        cloud.admin.set_compute_quotas(  # type: ignore[attr-defined]
            project.id, instances=before.instances, cores=before.cores, ram=before.ram)


_ONE_SERVER = re.compile(r"/servers/[0-9a-f]{8}-[0-9a-f-]{27}$")
_MEMBER_STEP = re.compile(r"^(add .* to the load balancer|drain |remove .* from the load balancer)")


class _PollWrites:
    """Octavia member writes per poll of an in-process deploy: every HTTP request the
    SDK sends goes through keystoneauth's ``Session.request`` (recorded here), and the
    engine announces each poll's steps right before it runs them (the event sink)."""

    def __init__(self, pool_id: str) -> None:
        self.members_path = f"/lbaas/pools/{pool_id}/members"
        self.writes: list[tuple[str, str]] = []
        self.polls: list[tuple[int, int]] = []  # (member steps, writes before the poll)
        self.creates = 0  # POST /servers
        self.server_reads = 0  # GET /servers/{id}
        self._lock = threading.Lock()

    def record(self, method: str, url: str) -> None:
        path = urllib.parse.urlsplit(url).path.rstrip("/")
        method = method.upper()
        with self._lock:
            if method in ("POST", "PUT", "DELETE") and self.members_path in path:
                self.writes.append((method, path))
            if method == "POST" and path.endswith("/servers"):
                self.creates += 1
            if method == "GET" and _ONE_SERVER.search(path):
                self.server_reads += 1

    def on_event(self, event: Any) -> None:
        if event.kind == "steps":
            member_steps = sum(1 for line in event.lines if _MEMBER_STEP.match(line))
            with self._lock:
                self.polls.append((member_steps, len(self.writes)))

    def per_poll(self) -> list[tuple[int, int]]:
        """(member steps, member writes) for each poll that changed anything."""
        ends = [before for _, before in self.polls[1:]] + [len(self.writes)]
        return [(steps, end - before)
                for (steps, before), end in zip(self.polls, ends, strict=True)]


def test_a_20_node_blue_green_redeploy_makes_o1_octavia_member_writes(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: a poll's member changes go to Octavia as one batch member update
    (``PUT /v2.0/lbaas/pools/{id}/members``), so each poll of a 20-node blue-green
    redeploy writes the pool's members at most once, whether it adds, drains or removes
    one member or twenty (one at a time that was 60 writes: an add, a drain and a removal
    per node). Counted on the client (keystoneauth) and checked against Octavia's own
    access log."""
    from keystoneauth1 import session as ks_session

    from phoenix import api
    from phoenix.spec_loader import load_spec
    from tests.openstack import harness

    count = 20
    with _instances_quota(cloud, 2 * count):
        try:
            cloud.write(count=count)
            first = cloud.phoenix("deploy")
            assert first.returncode == 0, first.stderr[-3000:]
            r1 = json.loads(first.stdout)["release"]

            cloud.write(count=count, greeting="two")
            counter = _PollWrites(cloud.pool_id)
            send = ks_session.Session.request

            def counted(session: Any, url: str, method: str, *args: Any, **kwargs: Any) -> Any:
                counter.record(method, url)
                return send(session, url, method, *args, **kwargs)

            monkeypatch.setattr(ks_session.Session, "request", counted)
            monkeypatch.chdir(cloud.tmp)
            octavia_log = harness.OctaviaRequests()
            result = api.deploy(load_spec(cloud.tmp / "phoenix.yaml"),
                                on_event=counter.on_event)
            monkeypatch.undo()
            assert result.outcome == "succeeded" and result.release != r1, result

            per_poll = counter.per_poll()
            member_polls = [(steps, writes) for steps, writes in per_poll if steps]
            assert sum(steps for steps, _ in member_polls) >= 3 * count, per_poll
            assert all(writes <= 1 for _, writes in per_poll), per_poll
            assert all(method == "PUT" and path.endswith(counter.members_path)
                       for method, path in counter.writes), counter.writes
            assert len(counter.writes) <= len(member_polls), per_poll
            # What Octavia saw is what was sent.
            assert len(octavia_log.member_writes(cloud.pool_id)) == len(counter.writes)
            # A create is one request: no listing of the app's servers and no read of
            # the new server per create (the next poll's one listing sees them all).
            assert counter.creates == count and counter.server_reads == 0, (
                counter.creates, counter.server_reads)
            # The deploy reports its requests by service, counted at the SDK's session.
            requests = result.provider_requests or {}
            assert requests.get("load_balancer", 0) >= len(counter.writes) > 0, requests
            assert requests.get("compute", 0) >= 2 * count, requests
            assert result.provider_calls == sum(requests.values())

            lb = cloud.conn.load_balancer  # type: ignore[attr-defined]
            lb.wait_for_load_balancer(lb.find_load_balancer(cloud.pool).id, wait=60)
            assert cloud.members() == {f"{cloud.app}-{result.release}-{i}": 1
                                       for i in range(count)}
            deadline = time.monotonic() + 120  # Nova deletes asynchronously
            while {s.metadata["phoenix:release"] for s in cloud.servers()} != {result.release}:
                assert time.monotonic() < deadline, [s.name for s in cloud.servers()]
                time.sleep(1)
        finally:
            monkeypatch.undo()
            cloud.phoenix("destroy", "--yes")


def test_image_prune_keeps_every_image_a_recorded_release_uses(cloud: Cloud) -> None:
    """Glance holds four versions of the golden image; two were deployed. Prune with
    --keep 1 deletes only the one nobody deployed that is not the newest, and a
    rollback to the first release still finds its image."""
    made = []

    def bake(data: bytes) -> Any:
        time.sleep(1.1)  # Glance's created_at counts whole seconds: keep versions apart
        image = cloud.conn.image.create_image(  # type: ignore[attr-defined]
            name=f"golden-{cloud.app}", data=data, disk_format="raw",
            container_format="bare", allow_duplicates=True)
        cloud.images.append(image)
        made.append(image.id)
        return image

    def glance() -> set[str]:
        return {i.id for i in cloud.conn.image.images(  # type: ignore[attr-defined]
            name=f"golden-{cloud.app}")}

    bake(b"v1")
    cloud.write(image=f"golden-{cloud.app}", count=1)
    first = cloud.phoenix("deploy")
    assert first.returncode == 0, first.stderr[-3000:]
    r1 = json.loads(first.stdout)["release"]
    bake(b"v2")
    second = cloud.phoenix("deploy")
    assert second.returncode == 0, second.stderr[-3000:]
    bake(b"v3")
    bake(b"v4")

    listed = cloud.phoenix("image", "list")
    assert listed.returncode == 0, listed.stderr[-3000:]
    used = {i["id"]: i["used_by"] for i in json.loads(listed.stdout)["images"]}
    assert used[made[0]] == [f"{cloud.app}/{r1}"] and used[made[2]] == []

    dry = cloud.phoenix("image", "prune", "--keep", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert [i["id"] for i in json.loads(dry.stdout)["would_delete"]] == [made[2]]
    assert glance() == set(made)

    pruned = cloud.phoenix("image", "prune", "--keep", "1", "--yes")
    assert pruned.returncode == 0, pruned.stderr[-3000:]
    assert glance() == {made[0], made[1], made[3]}

    back = cloud.phoenix("rollback", "--to", r1, "--yes")
    assert back.returncode == 0, back.stderr[-3000:]
    assert cloud.releases_after_deletions() == {r1}
    assert {s.image.id for s in cloud.servers()} == {made[0]}  # type: ignore[attr-defined]
