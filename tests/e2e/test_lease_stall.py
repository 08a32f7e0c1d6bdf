"""Issue 13: a deploy that stalls anywhere (SIGSTOP, a laptop lid) while another deploy
takes its lease over and ships must, once it resumes, stop without acting on what it
saw before the stall.

Found on the OpenStack harness: a canary deploy stopped while it baked, resumed after
a newer release shipped, and created a server of its own release. It had passed its
poll's fence check, then stopped in the middle of its reads; it resumed with a server
list from before the takeover and a member list from after it, planned on that mixed
view, and acted. The fence now runs after the poll's reads and plan, right before its
mutations, and again before any mutation whose last check went stale.

The stall is simulated in one process on the memory cloud with the fake clock: at the
k-th provider call made by deploy A, time jumps by two lease TTLs and deploy B (a newer
release) takes the lease over and ships, all before A's call goes on. For each stall
point: A stops with ``LeaseLost``; after the stall it makes no change to the cloud,
except the one call it was already making when it stopped (the window the lease cannot
close: a request already on its way); B's release keeps serving.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest

import phoenix
from phoenix.errors import LeaseLost, Transient
from phoenix.providers.base import Provider

from .conftest import POOL, REGION, World, make_world

TTL = 5.0
CANARY = f"  lease_ttl: {TTL:g}s\n  canary: {{size: 1, bake: 10m}}"
MUTATIONS = {"create_node", "delete_node", "set_metadata",
             "add_member", "drain_member", "remove_member", "change_members"}


@dataclass
class Stall:
    """Counts A's provider calls (on its main thread, which a SIGSTOP would stop with
    every other) and stalls at call ``at``; then records what A changes."""

    at: int | None
    takeover: Callable[[], None]
    calls: int = 0
    stalled_in: str | None = None
    after_stall: list[str] = field(default_factory=list)

    def before(self, name: str) -> None:
        if self.stalled_in is not None:
            if name in MUTATIONS:
                self.after_stall.append(name)
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self.calls += 1
        if self.calls == self.at:
            self.stalled_in = name
            self.takeover()


class _Stalling:
    def __init__(self, inner: Any, stall: Stall) -> None:
        self._inner = inner
        self._stall = stall

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._stall.before(name)
            return attr(*args, **kwargs)

        return call


def stalling_provider(world: World, stall: Stall) -> Provider:
    plain = world.cloud.provider()
    return Provider(
        name="memory",
        compute=_Stalling(plain.compute, stall),  # type: ignore[arg-type]
        load_balancer=_Stalling(plain.load_balancer, stall),  # type: ignore[arg-type]
        store=plain.store,
        dns=plain.dns,
        health_source=plain.health_source,
        requests=plain.requests,
    )


def _world_view(world: World) -> tuple[Any, ...]:
    servers = sorted((s.name, s.release) for s in world.live_servers())
    members = sorted((m.name, m.state.value) for m in world.cloud.members(REGION, POOL))
    return servers, members


def run_with_stall(world: World, at: int | None) -> tuple[Stall, dict[str, Any]]:
    """Deploy r1, then a long-baking canary A that stalls at its call ``at`` while B
    ships r3. Returns the stall and what happened."""
    first = world.spec(greeting="one", count=2, extra_rollout=f"  lease_ttl: {TTL:g}s")
    phoenix.deploy(first, provider=world.provider(), clock=world.clock)
    canary = world.spec(greeting="two", count=2, strategy="canary", extra_rollout=CANARY)
    newer = world.spec(greeting="three", count=2, extra_rollout=f"  lease_ttl: {TTL:g}s")
    seen: dict[str, Any] = {"newer": newer}

    def takeover() -> None:
        world.clock.advance(2 * TTL)  # A is frozen: its lease expires
        seen["b"] = phoenix.deploy(newer, provider=world.cloud.provider(), clock=world.clock)
        seen["after_b"] = _world_view(world)

    stall = Stall(at, takeover)
    try:
        seen["a"] = phoenix.deploy(canary, provider=stalling_provider(world, stall),
                                   clock=world.clock)
    except LeaseLost as lost:
        seen["lost"] = lost
    return stall, seen


class _Enough(BaseException):
    """Ends the probe run: it has seen enough of the bake."""


@dataclass
class _Probe(Stall):
    """Counts like a stall that never fires, and notes the call at which the canary is
    first seen in the pool."""

    joined_at: int | None = None
    plain: Any = None

    def before(self, name: str) -> None:
        super().before(name)
        if (name == "list_members" and self.joined_at is None
                and len(self.plain.list_members(REGION, POOL)) > 2):
            self.joined_at = self.calls
        if self.calls > 400:
            raise _Enough


def _calls_until_baking(tmp: Any) -> int:
    """A's main-thread calls until its canary is in the pool (a run without a stall)."""
    world = make_world(tmp)
    first = world.spec(greeting="one", count=2, extra_rollout=f"  lease_ttl: {TTL:g}s")
    phoenix.deploy(first, provider=world.provider(), clock=world.clock)
    canary = world.spec(greeting="two", count=2, strategy="canary", extra_rollout=CANARY)
    probe = _Probe(None, lambda: None, plain=world.cloud.provider().load_balancer)
    with pytest.raises(_Enough):
        phoenix.deploy(canary, provider=stalling_provider(world, probe), clock=world.clock)
    assert probe.joined_at is not None, "the canary never joined the pool"
    return probe.joined_at


def stall_points(tmp_factory: pytest.TempPathFactory) -> list[int]:
    joined = _calls_until_baking(tmp_factory.mktemp("probe"))
    points = set(range(1, joined + 1))  # every call until the canary is in the pool
    points |= set(random.Random(13).sample(range(joined + 1, joined + 60), 15))  # baking
    return sorted(points)


def test_a_deploy_stalled_at_any_call_is_fenced_and_acts_no_more(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    points = stall_points(tmp_path_factory)
    assert len(points) >= 20
    for at in points:
        world = make_world(tmp_path_factory.mktemp(f"stall{at}"))
        stall, seen = run_with_stall(world, at)
        where = f"stalled at call {at} ({stall.stalled_in})"

        assert stall.stalled_in is not None, where
        assert "lost" in seen, f"{where}: A did not stop: {seen.get('a')}"
        allowed = 1 if stall.stalled_in in MUTATIONS else 0
        assert len(stall.after_stall) <= allowed, f"{where}: A then made {stall.after_stall}"
        release_b = seen["b"].release
        if stall.stalled_in not in MUTATIONS:
            assert _world_view(world) == seen["after_b"], where
            assert _serving_is(world, release_b), where
        # Whatever the one call in flight left (a server or a member of A's release),
        # the next deploy of B's spec cleans it up: nothing is lost track of.
        again = phoenix.deploy(seen["newer"], provider=world.cloud.provider(), clock=world.clock)
        assert again.release == release_b, where
        assert _serving_is(world, release_b), where
        assert {release for _, release in _world_view(world)[0]} == {release_b}, where


def _serving_is(world: World, release: str) -> bool:
    servers, members = _world_view(world)
    return {name for name, state in members if state == "SERVING"} == {
        name for name, of in servers if of == release}


class _RecordingStore:
    """The cloud's store, noting when each lease generation was written."""

    def __init__(self, inner: Any, clock: Any) -> None:
        self.inner, self.clock = inner, clock
        self.lease_writes: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)
        if "/lease/" in key:
            self.lease_writes.append(self.clock.now())

    def create_exclusive(self, key: str, data: bytes) -> bool:
        made = bool(self.inner.create_exclusive(key, data))
        if made and "/lease/" in key:
            self.lease_writes.append(self.clock.now())
        return made


class _SlowToCreate:
    """Nova answering each server's first two creates with 503 and Retry-After: 10."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.refused: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def create_node(self, region: str, request: Any) -> Any:
        seen = self.refused.get(request.name, 0)
        if seen < 2:
            self.refused[request.name] = seen + 1
            raise Transient(f"create {request.name}: HTTP 503 (test)", retry_after=10.0)
        return self.inner.create_node(region, request)


def test_a_deploy_keeps_its_lease_through_back_offs_longer_than_its_ttl(world: World) -> None:
    """Back-offs of 10 s with a 5 s lease: the deploy renews while it waits, so no
    contender could take the lease from a deploy that is alive and working."""
    plain = world.cloud.provider()
    store = _RecordingStore(plain.store, world.clock)
    slow = _SlowToCreate(plain.compute)
    provider = Provider(name="memory", compute=slow,  # type: ignore[arg-type]
                        load_balancer=plain.load_balancer, store=store,  # type: ignore[arg-type]
                        dns=plain.dns, health_source=plain.health_source,
                        requests=plain.requests)
    spec = world.spec(count=2, extra_rollout=f"  lease_ttl: {TTL:g}s")

    result = phoenix.deploy(spec, provider=provider, clock=world.clock)

    assert result.outcome == "succeeded"
    assert len(slow.refused) == 2 and all(n == 2 for n in slow.refused.values())
    gaps = [(b - a).total_seconds() for a, b in pairwise(store.lease_writes)]
    assert gaps and max(gaps) < TTL / 2, gaps


def test_a_destroy_stalled_after_its_reads_deletes_nothing(world: World) -> None:
    """`phoenix destroy` listed the servers, then stalled while a deploy took the lease
    and kept those servers serving: once it resumes it must not delete them."""
    spec = world.spec(count=2, extra_rollout=f"  lease_ttl: {TTL:g}s")
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    before = _world_view(world)

    def takeover() -> None:
        world.clock.advance(2 * TTL)
        seen["b"] = phoenix.deploy(spec, provider=world.cloud.provider(), clock=world.clock)

    seen: dict[str, Any] = {}
    stall = Stall(2, takeover)  # call 1 lists the servers, call 2 the members
    with pytest.raises(LeaseLost):
        phoenix.destroy(spec, provider=stalling_provider(world, stall), clock=world.clock)
    assert stall.stalled_in == "list_members"
    assert seen["b"].outcome == "unchanged"
    assert stall.after_stall == []
    assert _world_view(world) == before
