"""Region outages and the DNS front end of the local provider, with real processes.

An outage SIGKILLs a region's balancer and node processes and makes every region-scoped
call fail with ``RegionUnavailable``; the front end (one balancer per DNS record, over
the region balancers) moves traffic between regions without failing a request.

Loopback only. Each test seeds regions.json with random region numbers and uses a random
free ``lb_port``, so it can run beside the other local tests; every process it starts is
SIGKILLed in teardown, failures included.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from phoenix.clock import SystemClock
from phoenix.errors import BadRequest, NotFound, RegionUnavailable, Transient
from phoenix.model import TAG_APP, TAG_INDEX, TAG_RELEASE, NodeRequest
from phoenix.providers.base import ImageQuery, Provider
from phoenix.providers.local.frontend import LocalDns
from phoenix.providers.local.haproxy import haproxy_available
from phoenix.providers.local.outage import end_outage, outage_of, start_outage
from phoenix.providers.local.provider import (
    LocalCloud,
    LocalCompute,
    LocalLoadBalancer,
    open_local_provider,
)

from .local_processes import (
    BACKEND,
    alive,
    free_port,
    kill_everything_under,
    processes_mentioning,
    wait_for,
)

pytestmark = pytest.mark.integration

IMAGE = Path(__file__).resolve().parents[2] / "examples" / "hello" / "image"
KINDS = ["builtin"] + (["haproxy"] if shutil.which("haproxy") and haproxy_available() else [])
ZONE, NAME = "test.", "www"
BOOT_TIMEOUT = 30.0

USER_DATA = """\
#cloud-config
write_files:
  - path: /etc/hello/config.json
    content: |
      {{"release": "r1", "index": {index}, "region": "{region}", "greeting": "hi",
       "port": {port}, "healthy": true}}
"""


def wait_serving(url: str) -> None:
    with httpx.Client(timeout=5) as client:
        wait_for(lambda: client.get(url).status_code == 200, what=f"{url} serving")


def seed_regions(state_dir: Path, names: list[str]) -> dict[str, int]:
    """Random, distinct region numbers (addresses 127.<n>.x.y) away from other tests'."""
    numbers = dict(zip(names, random.sample(range(100, 250), len(names)), strict=True))
    state_dir.mkdir(parents=True, mode=0o700)
    (state_dir / "regions.json").write_text(json.dumps(numbers))
    return numbers


@dataclass
class Backends:
    """Small HTTP servers answering their name (and 200 on /healthz)."""

    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, name: str, host: str) -> int:
        process = subprocess.Popen(
            [sys.executable, "-c", BACKEND, name, host], stdout=subprocess.PIPE, text=True
        )
        self.started.append(process)
        assert process.stdout is not None
        return int(process.stdout.readline())

    def stop_all(self) -> None:
        for process in self.started:
            process.kill()
            process.wait(timeout=10)


# --- the outage -------------------------------------------------------------------------


@dataclass
class OutageWorld:
    provider: Provider
    compute: LocalCompute
    lb: LocalLoadBalancer
    state_dir: Path
    region: str
    number: int
    lb_port: int
    service_port: int


@pytest.fixture(params=KINDS)
def outage_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OutageWorld]:
    state_dir = tmp_path / "state"
    number = seed_regions(state_dir, ["out-a"])["out-a"]
    lb_port = free_port([f"127.{number}.255.254"])
    service_port = free_port([f"127.{number}.0.{i}" for i in (1, 2)])
    options = {"state_dir": str(state_dir), "balancer": request.param, "lb_port": lb_port}
    provider = open_local_provider(options, ["out-a"], clock=SystemClock())
    assert isinstance(provider.compute, LocalCompute)
    assert isinstance(provider.load_balancer, LocalLoadBalancer)
    world = OutageWorld(
        provider, provider.compute, provider.load_balancer, state_dir.resolve(), "out-a",
        number, lb_port, service_port,
    )
    try:
        yield world
    finally:
        end_outage(world.state_dir, "out-a")
        kill_everything_under(tmp_path.resolve())


def create_nodes(world: OutageWorld, count: int) -> list[str]:
    image = world.compute.import_image(world.region, IMAGE)
    names = []
    for index in range(count):
        request = NodeRequest(
            name=f"hello-r1-{index}",
            image_id=image.id,
            flavor="local",
            network=None,
            user_data=USER_DATA.format(index=index, region=world.region, port=world.service_port),
            metadata={TAG_APP: "hello", TAG_RELEASE: "r1", TAG_INDEX: str(index)},
        )
        names.append(world.compute.create_node(world.region, request).name)

    def all_active() -> bool:
        states = {n.name: n.state.value for n in world.compute.list_nodes(world.region, "hello")}
        assert "ERROR" not in states.values(), states
        return len(states) == count and set(states.values()) == {"ACTIVE"}

    wait_for(all_active, BOOT_TIMEOUT, "nodes ACTIVE")
    for node in world.compute.list_nodes(world.region, "hello"):
        assert node.address is not None
        world.lb.add_member(world.region, "hello", node.name, node.address, world.service_port)
    return names


def node_pids(state_dir: Path) -> set[int]:
    pids: set[int] = set()
    for status in state_dir.glob("regions/*/apps/*/nodes/*/status.json"):
        data = json.loads(status.read_text())
        pids.update(int(data[k]) for k in ("agent_pid", "service_pid") if data.get(k))
    return pids


def balancer_pids(pool_dir: Path) -> set[int]:
    pids = set()
    for name in ("haproxy.pid", "proxy.pid"):
        # ValueError: caught while HAProxy writes its pid file (truncated, not yet written).
        with contextlib.suppress(FileNotFoundError, ValueError):
            pids.add(int((pool_dir / name).read_text()))
    return {pid for pid in pids if alive(pid)}


def region_calls(world: OutageWorld) -> dict[str, Callable[[], object]]:
    """Every region-scoped call of the local provider, with harmless arguments."""
    c, lb, r = world.compute, world.lb, world.region
    request = NodeRequest("hello-r2-0", "img-x", "local", None, "", {TAG_APP: "hello"})
    return {
        "list_nodes": lambda: c.list_nodes(r, "hello"),
        "create_node": lambda: c.create_node(r, request),
        "delete_node": lambda: c.delete_node(r, "hello-r1-0"),
        "set_metadata": lambda: c.set_metadata(r, "hello-r1-0", {"k": "v"}),
        "find_images": lambda: c.find_images(r, ImageQuery(name="image")),
        "get_flavor": lambda: c.get_flavor(r, "local"),
        "quota": lambda: c.quota(r),
        "import_image": lambda: c.import_image(r, IMAGE),
        "list_members": lambda: lb.list_members(r, "hello"),
        "add_member": lambda: lb.add_member(r, "hello", "x", "127.0.0.9", 9),
        "drain_member": lambda: lb.drain_member(r, "hello", "hello-r1-0"),
        "remove_member": lambda: lb.remove_member(r, "hello", "hello-r1-0"),
        "delete_pool": lambda: lb.delete_pool(r, "hello"),
    }


def test_an_outage_kills_the_region_and_refuses_every_call(outage_world: OutageWorld) -> None:
    world = outage_world
    create_nodes(world, 2)
    url = world.lb.url(world.region, "hello")
    assert url == f"http://127.{world.number}.255.254:{world.lb_port}"
    with httpx.Client(timeout=5) as client:
        wait_for(lambda: client.get(url).text.startswith("release r1"), what="traffic")
    pool_dir = world.state_dir / "regions" / world.region / "pools" / "hello"
    expected = node_pids(world.state_dir) | balancer_pids(pool_dir)
    assert len(expected) == 5  # the balancer, and each node's agent and service

    started = time.monotonic()
    killed = start_outage(world.state_dir, world.region, reason="power cut in rack 4")
    print(f"\nstart_outage killed {len(killed)} processes in"
          f" {(time.monotonic() - started) * 1000:.0f} ms")
    assert expected <= set(killed)
    assert not any(alive(pid) for pid in expected)
    assert outage_of(world.state_dir, world.region) == "power cut in rack 4"
    marker = json.loads((world.state_dir / "regions" / world.region / "outage.json").read_text())
    assert marker["reason"] == "power cut in rack 4" and marker["since"]

    for what, call in region_calls(world).items():
        with pytest.raises(RegionUnavailable) as caught:
            call()
        message = str(caught.value)
        assert caught.value.region == world.region, what
        assert "power cut in rack 4" in message and "end_outage" in message, (what, message)
    assert not balancer_pids(pool_dir), "list_members restarted a down region's balancer"
    assert world.lb.url(world.region, "hello") == url  # computed from state: still known
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=2)

    assert start_outage(world.state_dir, world.region, reason="again") == []  # idempotent
    assert outage_of(world.state_dir, world.region) == "power cut in rack 4"  # the first

    assert end_outage(world.state_dir, world.region) is True
    assert end_outage(world.state_dir, world.region) is False
    assert outage_of(world.state_dir, world.region) is None
    nodes = world.compute.list_nodes(world.region, "hello")
    assert {(n.state.value, n.fault) for n in nodes} == {("ERROR", "node process died")}
    assert world.compute.get_flavor(world.region, "local").name == "local"
    # No call restarts it: its supervisor does, from members.json, once the marker is gone.
    def restarted() -> bool:
        if not balancer_pids(pool_dir):
            return False
        with contextlib.suppress(Transient):  # started, not answering yet
            members = world.lb.list_members(world.region, "hello")
            return {m.name for m in members} == {"hello-r1-0", "hello-r1-1"}
        return False

    wait_for(restarted, 5.0, "the supervisor to restart it")
    for node in nodes:
        world.compute.delete_node(world.region, node.id)
    assert world.compute.list_nodes(world.region, "hello") == []


# --- the front end ----------------------------------------------------------------------


@dataclass
class Region:
    name: str
    address: str  # the region balancer's, as a DNS value


@dataclass
class FrontWorld:
    cloud: LocalCloud
    dns: LocalDns
    a: Region
    b: Region

    @property
    def url(self) -> str:
        return self.dns.url(ZONE, NAME)

    def frontend_pid(self) -> int:
        pids = balancer_pids(self.cloud.state_dir / "frontends" / f"{NAME}.{ZONE}")
        assert len(pids) == 1, pids
        return pids.pop()


@pytest.fixture(params=KINDS)
def front(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FrontWorld]:
    """Two regions, each a real region balancer with one backend answering its name."""
    state_dir = tmp_path / "state"
    numbers = seed_regions(state_dir, ["fe-a", "fe-b"])
    hosts = [f"127.{n}.255.254" for n in numbers.values()] + ["127.0.1.254"]
    cloud = LocalCloud(
        state_dir.resolve(), clock=SystemClock(), balancer=request.param,
        lb_port=free_port(hosts),
    )
    lb = LocalLoadBalancer(cloud)
    backends = Backends()
    try:
        regions = []
        for name, number in numbers.items():
            host = f"127.{number}.0.1"
            port = backends.start(name.upper()[-1], host)  # answers "A" or "B"
            lb.add_member(name, "web", "backend", host, port)
            regions.append(Region(name, cloud.lb_host(name)))
        world = FrontWorld(cloud, LocalDns(cloud), regions[0], regions[1])
        for region in regions:
            wait_serving(lb.url(region.name, "web"))
        yield world
    finally:
        try:
            backends.stop_all()
        finally:
            kill_everything_under(tmp_path.resolve())


@dataclass
class Load:
    """One client sending GETs in a loop over keep-alive connections."""

    url: str
    results: list[tuple[float, str]] = field(default_factory=list)  # (sent at, answer)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.get(self.url)
                    answer = response.text if response.status_code == 200 else (
                        f"HTTP {response.status_code}"
                    )
                except httpx.HTTPError as exc:
                    answer = f"{type(exc).__name__}: {exc}"
                self.results.append((sent, answer))

    def failures(self) -> list[str]:
        return [answer for _, answer in self.results if answer not in ("A", "B")]


def under_load(url: str, action: Callable[[], Any]) -> tuple[Load, float, float]:
    """Run ``action`` during a steady load; (load, when it started, when it returned)."""
    load = Load(url)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        began = time.monotonic()
        action()
        returned = time.monotonic()
        time.sleep(1.0)
    finally:
        load.stop.set()
        thread.join(timeout=30)
    return load, began, returned


def answers(url: str, count: int = 10) -> set[str]:
    with httpx.Client(timeout=5) as client:
        return {client.get(url).text for _ in range(count)}


def test_a_record_switch_under_load_drops_nothing(front: FrontWorld) -> None:
    front.dns.set_record(ZONE, NAME, (front.a.address,), 30)
    assert front.url == f"http://127.0.1.254:{front.cloud.lb_port}"  # the first record
    assert json.loads((front.cloud.state_dir / "frontends.json").read_text()) == {
        f"{NAME}.{ZONE}": 1
    }
    assert answers(front.url) == {"A"}

    load, began, returned = under_load(
        front.url, lambda: front.dns.set_record(ZONE, NAME, (front.b.address,), 30)
    )
    print(f"\nswitch A -> B: {(returned - began) * 1000:.0f} ms, {len(load.results)} requests")
    assert not load.failures(), load.failures()[:5]
    after = [answer for sent, answer in load.results if sent > returned]
    assert len(after) > 20 and set(after) == {"B"}
    assert {answer for sent, answer in load.results if sent < began} == {"A"}
    record = front.dns.get_record(ZONE, NAME)
    assert record is not None and record.values == (front.b.address,)

    pid = front.frontend_pid()
    members = front.dns._balancer(f"{NAME}.{ZONE}", 1).list_members()
    front.dns.set_record(ZONE, NAME, (front.b.address,), 60)  # same values: a no-op
    assert front.frontend_pid() == pid
    assert front.dns._balancer(f"{NAME}.{ZONE}", 1).list_members() == members

    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), what="the front end to die")
    # Its supervisor restarts it, with no call of ours (from its members.json).
    def serving() -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(front.url, timeout=2).status_code == 200
        return False

    wait_for(serving, 5.0, "the supervisor to restart the front end")
    assert answers(front.url) == {"B"}
    restarted = front.frontend_pid()
    assert restarted != pid
    front.dns.ensure_frontend(ZONE, NAME)  # re-derived from dns.json: nothing to change
    assert front.frontend_pid() == restarted
    assert answers(front.url) == {"B"}

    front.dns.stop_frontend(ZONE, NAME)
    assert not balancer_pids(front.cloud.state_dir / "frontends" / f"{NAME}.{ZONE}")
    with pytest.raises(NotFound):
        front.dns.ensure_frontend(ZONE, "nothing")


def test_a_switch_away_from_a_dead_region_survives_its_outage(front: FrontWorld) -> None:
    front.dns.set_record(ZONE, NAME, (front.a.address,), 30)
    assert answers(front.url) == {"A"}
    pid = front.frontend_pid()
    killed = start_outage(front.cloud.state_dir, front.a.name)  # region A's balancer dies
    assert killed and alive(pid)  # the front end is global: not part of the outage

    front.dns.set_record(ZONE, NAME, (front.b.address,), 30)
    load, _, _ = under_load(front.url, lambda: None)
    assert not load.failures(), load.failures()[:5]
    assert {answer for _, answer in load.results} == {"B"}
    assert front.frontend_pid() == pid


def test_values_it_cannot_serve_are_recorded_but_start_no_front_end(tmp_path: Path) -> None:
    cloud = LocalCloud(tmp_path / "state", clock=SystemClock(), balancer="builtin")
    dns = LocalDns(cloud)
    values = ("192.0.2.1", "region-a", "127.1.255.254:0", "http://example.com:8080", "::1")
    dns.set_record(ZONE, NAME, values, 30)  # e.g. the provider contract's test values
    record = dns.get_record(ZONE, NAME)
    assert record is not None and record.values == values and record.ttl == 30
    assert not (tmp_path / "state" / "frontends").exists()
    assert not processes_mentioning(tmp_path.resolve())
    with pytest.raises(BadRequest):
        dns.set_record(ZONE, "a/b", ("127.1.255.254",), 30)
