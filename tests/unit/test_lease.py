"""Issue 13: one actor per app, provably (``phoenix/lease.py``).

The invariants are checked by driving real ``DeployLock`` code through every schedule of
two and three contenders (with crashes, stalls and clocks minutes apart) on each store
implementation that runs in-process; ``tests/lease_interleavings.py`` says how. The
mutation checks at the end break the lease the ways it used to be broken (no fence, a
takeover that is not exclusive, a takeover without proof the holder is dead, a release
that deletes) and assert the explorer catches each one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from phoenix.clock import FakeClock
from phoenix.errors import LeaseLost, LockHeld, Transient
from phoenix.executor import Executor, RetryingStore
from phoenix.lease import DeployLock, LockInfo
from phoenix.providers.base import Store
from phoenix.providers.local.store import DirectoryStore
from phoenix.providers.memory import MemoryCloud
from phoenix.steps import RemoveMember
from tests.lease_interleavings import START, TTL, Actor, CheckedLock, explore, sample

# --- the stores ------------------------------------------------------------------------


def memory_store() -> Store:
    return MemoryCloud(["r"], clock=FakeClock(START)).provider().store


@pytest.fixture(params=["memory", "directory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "memory":
        return memory_store
    counter = iter(range(1_000_000))
    return lambda: DirectoryStore(tmp_path / f"store-{next(counter)}")


def two() -> list[Actor]:
    return [Actor("a"), Actor("b", program="contend")]


def two_skewed() -> list[Actor]:
    """Clocks five minutes apart, either way round."""
    return [Actor("a", skew=-150.0), Actor("b", program="contend", skew=150.0)]


def three() -> list[Actor]:
    return [Actor("a"), Actor("b", program="contend", skew=240.0),
            Actor("c", program="contend", skew=-240.0, mutations=1)]


# --- every interleaving ------------------------------------------------------------------


@pytest.mark.parametrize("actors", [two, two_skewed], ids=["two", "two-skewed"])
def test_every_interleaving_of_two_contenders_keeps_one_actor(
    make_store: Callable[[], Store], actors: Callable[[], list[Actor]]
) -> None:
    result = explore(make_store, actors, limit=5000, preemptions=2)

    assert result.violations == []
    assert result.complete, f"only {result.schedules} schedules within the limit"
    # Not vacuous: the schedules did make actors lose, be refused and crash.
    assert {"done", "lost", "refused", "crashed"} <= set(result.outcomes), result.outcomes


def test_every_interleaving_of_three_contenders_keeps_one_actor(
    make_store: Callable[[], Store]
) -> None:
    result = explore(make_store, three, limit=5000, preemptions=1)

    assert result.violations == []
    assert result.complete
    assert {"done", "lost", "refused", "crashed"} <= set(result.outcomes), result.outcomes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_long_schedules_of_three_contenders(seed: int) -> None:
    """Longer programs than the exhaustive runs afford, in random (seeded) orders."""
    def actors() -> list[Actor]:
        return [Actor("a", mutations=6), Actor("b", program="contend", skew=400.0, mutations=4),
                Actor("c", program="contend", skew=-400.0, mutations=4)]

    result = sample(memory_store, actors, runs=300, seed=seed)

    assert result.violations == []
    assert result.outcomes.get("lost", 0) > 0  # stalls did happen, and were fenced


# --- mutation checks: the explorer catches each way the lease used to be broken ---------


class NoFence(CheckedLock):
    """A fence check that never looks (the lease before generations)."""

    def fence(self, now: Any = None) -> None:
        self.turnstile.fence_passed(self.actor)  # type: ignore[attr-defined]


class NotExclusive(CheckedLock):
    """Takes a generation with a plain put (two contenders can both "win")."""

    def __init__(self, store: Store, *args: Any, **kwargs: Any) -> None:
        class PutIsCreate:
            def __getattr__(self, name: str) -> Any:
                return getattr(store, name)

            def create_exclusive(self, key: str, data: bytes) -> bool:
                store.put(key, data)
                return True

        super().__init__(PutIsCreate(), *args, **kwargs)  # type: ignore[arg-type]


class NoProof(CheckedLock):
    """Takes over as soon as the lease looks expired by its own (skewed) clock."""

    def _proves_dead(self, generation: int, data: bytes, clock: Any) -> bool:
        return True


class DeletingRelease(CheckedLock):
    """Releases by deleting its generation (generation numbers can then go back)."""

    def release(self, now: Any) -> None:
        if self.generation is not None:
            self.store.delete(self.key(self.generation))
            self.generation = None


class DeleteThenCreate(CheckedLock):
    """The old takeover: delete the stale lease, then create it again under the same
    name (two contenders can each delete the other's and both create)."""

    def acquire(self, clock: Any) -> int:
        for _ in range(5):
            generation, data = self.newest()
            now = clock.now()
            if data is None:
                if self.store.create_exclusive(self.key(1), self._info(now, 1)):
                    return self._hold(1, now)
                continue
            info = LockInfo.parse(data, generation)
            if info is not None and info.deploy_id == self.deploy_id:
                return self._hold(generation, now)
            if (info is not None and info.released) or self._takeover_allowed(
                    info, generation, data, clock):
                self.store.delete(self.key(generation))
                if self.store.create_exclusive(self.key(generation),
                                               self._info(clock.now(), generation)):
                    return self._hold(generation, clock.now())
                continue
            raise LockHeld(self.app, "?", "?")
        raise LockHeld(self.app, "?", "?")


class UnconditionalRenew(CheckedLock):
    """The old renew: write the lease (the newest generation) whoever holds it."""

    def heartbeat(self, now: Any) -> None:
        self.renew(now)

    def renew(self, now: Any) -> None:
        newest, _ = self.newest()
        self.generation = newest
        self.store.put(self.key(newest), self._info(now, newest))
        self.turnstile.fence_passed(self.actor)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("broken", "actors"),
    [(NoFence, two), (NotExclusive, two), (NoProof, two_skewed), (DeletingRelease, three),
     (DeleteThenCreate, two), (UnconditionalRenew, two)],
    ids=["no-fence", "not-exclusive", "no-proof-of-death", "deleting-release",
         "delete-then-create", "unconditional-renew"],
)
def test_the_explorer_catches_a_broken_lease(
    broken: type[DeployLock], actors: Callable[[], list[Actor]]
) -> None:
    result = explore(memory_store, actors, limit=5000, preemptions=2, lock_class=broken)

    assert result.violations, f"{broken.__name__} survived {result.schedules} schedules"


# --- examples ----------------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def lock(store: Store, deploy_id: str, *, host: str = "here", pid: int = 1) -> DeployLock:
    held = DeployLock(store, "web", deploy_id, ttl=TTL)
    held.host, held.pid = host, pid
    return held


def test_a_dead_holder_on_this_host_is_taken_over_at_once() -> None:
    store, clock = memory_store(), FakeClock(START)
    crashed = lock(store, "d-crashed", host=DeployLock(store, "web", "x").host, pid=dead_pid())
    crashed.acquire(clock)
    rerun = DeployLock(store, "web", "d-rerun", ttl=TTL)

    assert rerun.acquire(clock) == 2
    assert clock.now() == START  # no waiting: the pid is gone


def test_a_live_holder_refuses_at_once_and_an_expired_one_must_prove_dead() -> None:
    store, clock = memory_store(), FakeClock(START)
    away = lock(store, "d-away", host="elsewhere")
    away.acquire(clock)
    mine = lock(store, "d-mine")

    with pytest.raises(LockHeld, match="d-away@elsewhere"):
        mine.acquire(clock)  # not expired: no wait
    assert clock.now() == START

    clock.advance(TTL + 1)
    assert mine.acquire(clock) == 2  # expired, then unchanged for a whole TTL
    assert clock.now() >= START + timedelta(seconds=2 * TTL)
    with pytest.raises(LeaseLost, match="d-mine@here:1 \\(generation 2\\)"):
        away.heartbeat(clock.now())


def test_a_holder_that_renews_is_never_taken_over_whatever_the_clocks_say() -> None:
    """The contender's clock is an hour ahead: the lease looks expired to it, but the
    holder renews while it watches, so it backs off."""
    store, world = memory_store(), FakeClock(START)
    holder = lock(store, "d-holder", host="a")
    holder.acquire(world)

    class AheadAndTicking:
        def now(self) -> Any:
            return world.now() + timedelta(hours=1)

        def sleep(self, seconds: float) -> None:
            world.advance(seconds)
            holder.heartbeat(world.now())  # the holder keeps working meanwhile

    with pytest.raises(LockHeld):
        lock(store, "d-ahead", host="b").acquire(AheadAndTicking())
    holder.fence()  # still the holder


def test_a_lost_create_response_is_recognised_as_ours() -> None:
    """The create acted, its response was lost, the retry found the key taken: the lease
    is ours at once, never a spurious exit 4 with no holder."""
    cloud = MemoryCloud(["r"], clock=FakeClock(START))
    plain = cloud.provider().store

    class LosesFirstResponse:
        def __init__(self) -> None:
            self.lost: set[str] = set()

        def __getattr__(self, name: str) -> Any:
            attr = getattr(plain, name)
            if name not in ("put", "delete", "create_exclusive"):
                return attr

            def call(*args: Any) -> Any:
                result = attr(*args)
                key = f"{name} {args[0]}"
                if key in self.lost:
                    self.lost.discard(key)
                    return result
                self.lost.add(key)
                raise Transient(f"{name}: the response was lost (test)")

            return call

    executor = Executor(cloud.provider(), region="r", pool="p", clock=cloud.clock,
                        build_request=lambda step: None)  # type: ignore[arg-type,return-value]
    mine = DeployLock(RetryingStore(LosesFirstResponse(), executor), "web", "d-1")  # type: ignore[arg-type]

    assert mine.acquire(FakeClock(START)) == 1
    assert mine.holder() is not None and mine.holder().deploy_id == "d-1"  # type: ignore[union-attr]
    mine.release(START)
    assert mine.holder() is None


def test_release_keeps_generations_growing_and_never_touches_a_newer_one() -> None:
    store, clock = memory_store(), FakeClock(START)
    first = lock(store, "d-1")
    first.acquire(clock)
    first.release(clock.now())
    second = lock(store, "d-2")

    assert second.acquire(clock) == 2  # a released lease is followed at once
    first.release(clock.now())  # not held any more: a no-op
    assert second.holder() is not None and second.holder().deploy_id == "d-2"  # type: ignore[union-attr]


def test_old_generations_are_forgotten_but_never_the_newest() -> None:
    store, clock = memory_store(), FakeClock(START)
    for n in range(20):
        held = lock(store, f"d-{n}")
        held.acquire(clock)
        held.release(clock.now())

    generations = sorted(int(k.rsplit("/", 1)[1]) for k in store.list("apps/web/lease/"))
    assert generations[-1] == 20 and len(generations) <= 10


@pytest.mark.parametrize("force", [False, True])
def test_unlock_refuses_a_live_holder_unless_forced(force: bool) -> None:
    store, clock = memory_store(), FakeClock(START)
    holder = lock(store, "d-busy", host="elsewhere")
    holder.acquire(clock)
    breaker = DeployLock(store, "web", "unlock")

    if not force:
        with pytest.raises(LockHeld, match="looks alive"):
            breaker.break_lease(clock.now(), force=False, by="ops")
        holder.fence()  # untouched
        return
    broken = breaker.break_lease(clock.now(), force=True, by="phoenix unlock --force by ops")
    assert broken is not None and broken.deploy_id == "d-busy"
    with pytest.raises(LeaseLost, match="phoenix unlock --force by ops"):
        holder.heartbeat(clock.now())
    assert breaker.holder() is None  # the broken lease is free for the next actor


def test_unlock_of_a_dead_holder_needs_no_force() -> None:
    store, clock = memory_store(), FakeClock(START)
    here = DeployLock(store, "web", "x").host
    lock(store, "d-dead", host=here, pid=dead_pid()).acquire(clock)

    broken = DeployLock(store, "web", "unlock").break_lease(clock.now(), force=False, by="ops")

    assert broken is not None and broken.deploy_id == "d-dead"


def test_a_newer_phoenixs_lease_fields_are_ignored() -> None:
    info = LockInfo.parse(b'{"owner": "o", "host": "h", "pid": 3, "deploy_id": "d",'
                          b' "expires_at": "2026-01-01T00:00:00+00:00", "priority": 9}', 4)
    assert info is not None and info.generation == 4 and info.deploy_id == "d"


def test_a_deploy_waits_for_a_heal_but_not_for_another_deploy() -> None:
    """A lease held by ``phoenix watch`` is waited for (a heal takes a boot and a gate);
    one held by a deploy is refused at once, as is any after the patience runs out."""
    store, world = memory_store(), FakeClock(START)
    watcher = lock(store, "watch-1a2b", host="w")
    watcher.acquire(world)

    class Healing:
        """The watcher finishes its heal after 30 s of the deploy's waiting."""

        def now(self) -> Any:
            return world.now()

        def sleep(self, seconds: float) -> None:
            world.advance(seconds)
            if world.now() >= START + timedelta(seconds=30) and watcher.generation:
                watcher.release(world.now())
            elif watcher.generation:
                watcher.heartbeat(world.now())

    deploy = lock(store, "d-ci", host="ci")
    assert deploy.acquire(Healing(), patience=600) == 2
    assert START + timedelta(seconds=30) <= world.now() < START + timedelta(seconds=40)

    other = lock(store, "d-other", host="ci2")
    with pytest.raises(LockHeld):
        other.acquire(Healing(), patience=600)  # a deploy holds it: no waiting
    impatient = lock(store, "watch-9", host="w2")
    deploy.release(world.now())
    watcher2 = lock(store, "watch-2", host="w3")
    watcher2.acquire(world)
    with pytest.raises(LockHeld):
        impatient.acquire(world, patience=0)


class CountingGets:
    """A store that counts its GETs (the cost of a fence check)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.gets = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        return self.inner.get(key)


def test_guard_checks_again_only_when_its_last_check_is_a_quarter_ttl_old() -> None:
    """Between a poll's heartbeat and its mutations the guard costs nothing; after a
    stall it is a fence check, and it stops the actor whose lease moved on."""
    store, clock = CountingGets(memory_store()), FakeClock(START)
    mine = lock(store, "d-mine")  # type: ignore[arg-type]
    mine.acquire(clock)
    mine.heartbeat(clock.now())
    gets = store.gets

    clock.advance(TTL / 4 - 0.1)
    mine.guard(clock.now())
    assert store.gets == gets  # fresh: no call

    clock.advance(0.1)
    mine.guard(clock.now())
    assert store.gets == gets + 1  # a quarter TTL old: checked again

    lock(store, "d-ops", host="elsewhere").break_lease(  # type: ignore[arg-type]
        clock.now(), force=True, by="ops")
    clock.advance(TTL)  # stalled
    with pytest.raises(LeaseLost, match="ops"):
        mine.guard(clock.now())


def test_every_attempt_of_a_mutation_is_guarded_and_no_read_is() -> None:
    """A step retried after a back-off checks the lease again before each attempt (the
    back-off may have been a stall); a lost lease stops the step before its call."""
    cloud = MemoryCloud(["r"], clock=FakeClock(START))
    guarded: list[str] = []
    failing = {"left": 1}

    class FailsOnce:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def remove_member(self, *args: Any) -> None:
            guarded.append("call")
            if failing["left"]:
                failing["left"] -= 1
                raise Transient("remove_member: HTTP 503 (test)")

    provider = cloud.provider()
    provider = type(provider)(name="memory", compute=provider.compute,
                              load_balancer=FailsOnce(provider.load_balancer),
                              store=provider.store, dns=provider.dns,
                              health_source=provider.health_source)
    slept: list[float] = []
    executor = Executor(provider, region="r", pool="p", clock=cloud.clock,
                        build_request=lambda step: None,  # type: ignore[arg-type,return-value]
                        guard=lambda: guarded.append("guard"), sleep=slept.append)

    executor.call(lambda: provider.compute.list_nodes("r", "web"))
    assert guarded == []  # a read is never guarded
    executor.apply(RemoveMember(name="web-0", reason="test"))
    assert guarded == ["guard", "call", "guard", "call"]
    assert len(slept) == 1  # the back-off went through the lease-renewing sleep

    def lost() -> None:
        raise LeaseLost("web", "d-other (generation 2)")

    guarded.clear()
    executor.guard = lost
    with pytest.raises(LeaseLost):
        executor.apply(RemoveMember(name="web-0", reason="test"))
    assert guarded == []  # stopped before the call
