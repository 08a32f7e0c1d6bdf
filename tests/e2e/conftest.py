"""A harness for engine tests: a spec on disk, the in-memory cloud, a fake clock, and a
watcher that checks the serving invariants after every single change to the cloud."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phoenix.clock import FakeClock
from phoenix.model import Flavor, Image, MemberState, NodeState
from phoenix.providers.base import Provider
from phoenix.providers.memory import MemoryCloud
from phoenix.spec import Spec
from phoenix.spec_loader import load_spec

REGION = "region-a"
POOL = "web-pool"

TEMPLATE = """\
#cloud-config
write_files:
  - path: /etc/web/config
    content: |
      greeting={{ vars.greeting }}
      release={{ release }} index={{ index }} region={{ region }}
"""


class SimulatedCrash(BaseException):
    """Stands for kill -9: not an Exception, so nothing in Phoenix catches it."""


@dataclass
class Watch:
    """Observations of the pool made after every mutating provider call."""

    min_serving: int | None = None
    max_nodes: int = 0
    serving_releases: list[set[str]] = field(default_factory=list)

    def reset(self) -> None:
        self.min_serving = None
        self.max_nodes = 0
        self.serving_releases.clear()


class _Proxy:
    """Wraps one provider part: counts mutations, may crash, then lets the watcher look."""

    def __init__(self, inner: Any, world: World, mutating: set[str]) -> None:
        self._inner = inner
        self._world = world
        self._mutating = mutating

    def __getattr__(self, name: str) -> Any:
        if name == "change_members" and not isinstance(self, _BatchingProxy):
            raise AttributeError(name)  # one member at a time (World.batch_members)
        attr = getattr(self._inner, name)
        if name not in self._mutating:
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            world = self._world
            world.mutations += 1
            world.trace.append(name)
            if world.crash_before is not None and world.mutations == world.crash_before:
                raise SimulatedCrash(f"before mutation {world.mutations} ({name})")
            try:
                return attr(*args, **kwargs)
            finally:
                world.observe()
                if world.crash_after is not None and world.mutations == world.crash_after:
                    raise SimulatedCrash(f"after mutation {world.mutations} ({name})")

        return call


class _BatchingProxy(_Proxy):
    """A load balancer proxy that is a ``MemberBatcher`` (declared, not forwarded, so
    that isinstance sees it on every Python)."""

    def change_members(self, *args: Any, **kwargs: Any) -> Any:
        return self.__getattr__("change_members")(*args, **kwargs)


class _LedgerWatch:
    """The store, with writes of the pool ledger (the poll's stamps) counted, watched
    and crashable like any other mutation; records and the lease pass through."""

    def __init__(self, inner: Any, world: World) -> None:
        self._inner = inner
        self._counted = _Proxy(inner, world, {"put"})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put(self, key: str, data: bytes) -> None:
        if "/ledger/" in key:
            self._counted.put(key, data)
        else:
            self._inner.put(key, data)


@dataclass
class World:
    tmp: Path
    clock: FakeClock
    cloud: MemoryCloud
    watch: Watch = field(default_factory=Watch)
    mutations: int = 0
    crash_before: int | None = None
    crash_after: int | None = None
    trace: list[str] = field(default_factory=list)  # the name of every mutation, in order
    # False: the balancer takes member changes one at a time (as ELB through libcloud),
    # so a test can crash between two members of one poll.
    batch_members: bool = True

    def spec(self, **overrides: Any) -> Spec:
        """Write phoenix.yaml (with overrides merged at the top level) and load it."""
        values: dict[str, Any] = {
            "greeting": "hello",
            "image": "golden",
            "count": 3,
            "strategy": "blue-green",
            "extra_rollout": "",
        }
        values.update(overrides)
        (self.tmp / "web.yaml.j2").write_text(TEMPLATE)
        text = textwrap.dedent(
            f"""\
            app: web
            provider: {{name: memory}}
            regions: [{REGION}, region-b]
            image: {{name: {values['image']}}}
            flavor: m1.small
            count: {values['count']}
            template: web.yaml.j2
            vars:
              greeting: {values['greeting']}
            health:
              http: {{path: /healthz, port: 8080}}
              interval: 1s
              timeout: 0.5s
              healthy_threshold: 2
              unhealthy_threshold: 2
              deadline: 120s
            rollout:
              strategy: {values['strategy']}
              drain_timeout: 10s
            EXTRA
            load_balancer: {{pool: {POOL}, member_port: 8080}}
            """
        ).replace("EXTRA\n", values["extra_rollout"] + "\n" if values["extra_rollout"] else "")
        (self.tmp / "phoenix.yaml").write_text(text)
        return load_spec(self.tmp / "phoenix.yaml")

    def provider(self) -> Provider:
        plain = self.cloud.provider()
        return Provider(
            name="memory",
            compute=_Proxy(plain.compute, self, {"create_node", "delete_node", "set_metadata"}),  # type: ignore[arg-type]
            load_balancer=(_BatchingProxy if self.batch_members else _Proxy)(
                plain.load_balancer, self,
                {"add_member", "drain_member", "remove_member", "change_members"}
            ),  # type: ignore[arg-type]
            store=_LedgerWatch(plain.store, self),  # type: ignore[arg-type]
            dns=plain.dns,
            health_source=plain.health_source,
            requests=plain.requests,
        )

    def observe(self) -> None:
        members = self.cloud.members(REGION, POOL)
        servers = {s.name: s for s in self.cloud.servers(REGION)}
        serving = [m for m in members if m.state is MemberState.SERVING]
        healthy = [
            m for m in serving
            if m.name in servers and servers[m.name].state is NodeState.ACTIVE
        ]
        w = self.watch
        w.min_serving = len(healthy) if w.min_serving is None else min(w.min_serving, len(healthy))
        alive = [s for s in servers.values() if s.state is not NodeState.DELETING]
        w.max_nodes = max(w.max_nodes, len(alive))
        w.serving_releases.append({servers[m.name].release for m in healthy})

    # --- inspection --------------------------------------------------------------

    def live_servers(self) -> list[Any]:
        self.settle()
        return [s for s in self.cloud.servers(REGION) if s.state is not NodeState.DELETING]

    def serving(self) -> dict[str, str]:
        """member name -> release, for SERVING members."""
        return self.serving_in(REGION)

    def serving_in(self, region: str) -> dict[str, str]:
        """member name -> release, for SERVING members of ``region``."""
        servers = {s.name: s for s in self.cloud.servers(region)}
        return {
            m.name: servers[m.name].release if m.name in servers else "?"
            for m in self.cloud.members(region, POOL)
            if m.state is MemberState.SERVING
        }

    def settle(self) -> None:
        self.clock.advance(5)


def make_world(tmp_path: Path) -> World:
    """A fresh cloud with two golden images, and a spec directory."""
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    cloud = MemoryCloud((REGION, "region-b"), clock=clock, boot_seconds=3.0)
    cloud.add_flavor(Flavor("m1.small", "m1.small", vcpus=1, ram_mb=512))
    cloud.add_image(Image("img-1", "golden", datetime(2026, 2, 1, tzinfo=UTC)))
    cloud.add_image(Image("img-2", "golden-v2", datetime(2026, 2, 2, tzinfo=UTC)))
    return World(tmp_path, clock, cloud)


Deployer = Callable[..., Any]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)
