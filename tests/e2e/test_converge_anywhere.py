"""Converge from anywhere: an unchanged rerun is a no-op however late it comes, a rerun
after a crash finishes the deploy it finds (whatever the age of the nodes it built), and
the deploy that finishes names the release that served before the crash."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest

import phoenix
from phoenix import api
from phoenix.engine import DeployResult, Event
from phoenix.errors import DeployFailed, InputError, RestoreFailed, Transient
from phoenix.providers.base import Provider
from phoenix.providers.memory import FaultWindow
from phoenix.spec import Spec

from .conftest import POOL, REGION, SimulatedCrash, World

ROLLING = "  max_surge: 1\n  max_unavailable: 0"
CANARY = "  canary: {size: 1, bake: 30s}"
DNS = "dns: {zone: example.com., record: web, ttl: 5}"
STRATEGIES = [("blue-green", ""), ("rolling", ROLLING), ("canary", CANARY)]


def spec_of(world: World, strategy: str, extra: str, dns: bool, **overrides: object) -> Spec:
    extra_rollout = "\n".join(part for part in (extra, DNS if dns else "") if part)
    return world.spec(strategy=strategy, extra_rollout=extra_rollout, **overrides)


def deploy(world: World, spec: Spec) -> DeployResult:
    return api.deploy(spec, provider=world.provider(), clock=world.clock)


def dns_values(world: World) -> tuple[str, ...] | None:
    record = world.cloud.provider().dns.get_record("example.com.", "web")  # type: ignore[union-attr]
    return record.values if record else None


@pytest.mark.parametrize("dns", [False, True], ids=["no-dns", "dns"])
@pytest.mark.parametrize(("strategy", "extra"), STRATEGIES, ids=[s for s, _ in STRATEGIES])
@pytest.mark.parametrize("hours", [0, 0.04, 6])  # at once; past health.deadline; hours later
def test_an_unchanged_rerun_changes_nothing(
    world: World, strategy: str, extra: str, dns: bool, hours: float
) -> None:
    spec = spec_of(world, strategy, extra, dns)
    first = deploy(world, spec)
    assert first.outcome == "succeeded"
    record = dns_values(world)
    servers = sorted(s.name for s in world.live_servers())
    world.clock.advance(hours * 3600)
    world.mutations = 0

    again = deploy(world, spec)

    assert again.outcome == "unchanged", again.reason
    assert again.steps == 0
    assert world.mutations == 0  # no create, delete, metadata or member change
    assert again.region == first.region == REGION
    assert again.release == first.release
    assert dns_values(world) == record
    assert sorted(s.name for s in world.live_servers()) == servers
    # A no-op rerun does not wait out the health thresholds of nodes that already serve:
    # one probe round (no second probe, due an interval later) is enough.
    assert again.seconds < spec.health.interval


@pytest.mark.parametrize(("strategy", "extra"), STRATEGIES, ids=[s for s, _ in STRATEGIES])
@pytest.mark.parametrize("stage", ["built", "joined"])
def test_a_rerun_long_after_a_crash_finishes_the_deploy(
    world: World, strategy: str, extra: str, stage: str
) -> None:
    """The crashed deploy's nodes are older than health.deadline when the rerun sees them:
    they are judged afresh, and the deploy finishes instead of rolling back."""
    first = deploy(world, spec_of(world, strategy, extra, dns=False))
    v2 = spec_of(world, strategy, extra, dns=False, greeting="v2")
    # Crash right after the first new node was created, or right after one joined.
    world.mutations = 0
    world.crash_after = 1 if stage == "built" else 4
    with pytest.raises(SimulatedCrash):
        deploy(world, v2)
    world.crash_after = None
    world.clock.advance(v2.health.deadline + 600)

    result = deploy(world, v2)

    assert result.outcome == "succeeded", result.reason
    assert result.release != first.release
    # The deploy that finished names what served before the crash, not itself.
    assert result.previous_release == first.release
    assert set(world.serving().values()) == {result.release}
    assert len(world.serving()) == 3
    assert {m.name for m in world.cloud.members(REGION, POOL)} == set(world.serving())


def test_a_deadline_failure_says_what_it_waited_for(world: World) -> None:
    slow = "  canary: {size: 1, bake: 2h}\n  deadline: 10m"
    first = deploy(world, world.spec(strategy="canary", extra_rollout=slow))
    spec = world.spec(strategy="canary", extra_rollout=slow, greeting="v2")
    with pytest.raises(DeployFailed) as failed:
        deploy(world, spec)
    message = str(failed.value)
    assert "rollout.deadline" in message
    assert "while waiting for the canary to bake until" in message
    assert set(world.serving().values()) == {first.release}


def test_a_gate_deadline_counts_from_the_attempt_for_old_unproven_nodes(world: World) -> None:
    """A node the crashed deploy built but that never passed: the rerun gives it the
    whole health.deadline again, then fails it, naming why."""
    first = deploy(world, world.spec())
    v2 = world.spec(image="golden-v2")
    world.mutations = 0
    world.crash_after = 3  # the three new nodes are created
    with pytest.raises(SimulatedCrash):
        deploy(world, v2)
    world.crash_after = None
    world.cloud.faults.unhealthy_images.add("img-2")
    world.clock.advance(3600)
    with pytest.raises(DeployFailed) as failed:
        deploy(world, v2)
    assert "failed its health check" in str(failed.value)
    assert set(world.serving().values()) == {first.release}
    history = phoenix.history(v2, provider=world.provider(), clock=world.clock)
    assert history[-1].outcome == "rolled-back"
    assert history[-1].previous_release == first.release


# --- a run that stopped half-way: previous release, history, restore to count -----------


def crash_at(world: World, spec: Spec, mutation: str, nth: int = 1) -> None:
    """Deploy ``spec`` and kill it right after its ``nth`` call of ``mutation``.

    A member mutation is counted member by member: the balancer takes them one at a
    time here (a batching one applies a poll's changes in one call, which a crash
    cannot split; the crash-at-every-mutation tests cover that path)."""
    if mutation in ("add_member", "drain_member", "remove_member"):
        world.batch_members = False
    seen = 0
    original = world.observe

    def observe() -> None:  # runs after every mutation (see conftest._Proxy)
        nonlocal seen
        original()
        if world.trace and world.trace[-1] == mutation:
            seen += 1
            if seen == nth:
                raise SimulatedCrash(f"after {mutation} #{nth}")

    world.trace.clear()
    world.observe = observe  # type: ignore[method-assign]
    try:
        with pytest.raises(SimulatedCrash):
            deploy(world, spec)
    finally:
        world.observe = original  # type: ignore[method-assign]


def test_a_resumed_deploy_names_the_release_that_served_before_the_crash(world: World) -> None:
    first = deploy(world, world.spec())
    v2 = world.spec(greeting="v2")
    # Killed after the last old member left the pool: only v2 serves when the rerun looks.
    crash_at(world, v2, "remove_member", nth=3)
    assert set(world.serving().values()) == {v2_release(world, v2)}

    result = deploy(world, v2)

    assert result.outcome == "succeeded"
    assert result.previous_release == first.release
    history = phoenix.history(v2, provider=world.provider(), clock=world.clock)
    assert [(h.outcome, h.release) for h in history] == [
        ("succeeded", first.release),
        ("interrupted", result.release),
        ("succeeded", result.release),
    ]
    assert "stopped before it finished" in (history[1].reason or "")
    assert history[2].previous_release == first.release


def test_a_failed_resumed_deploy_restores_what_served_before_the_crash(world: World) -> None:
    first = deploy(world, world.spec())
    v2 = world.spec(image="golden-v2")
    crash_at(world, v2, "remove_member", nth=3)
    world.cloud.faults.unhealthy_images.add("img-2")

    with pytest.raises(DeployFailed) as failed:
        deploy(world, v2)

    assert failed.value.result.previous_release == first.release  # type: ignore[union-attr]
    assert set(world.serving().values()) == {first.release}
    assert len(world.serving()) == 3
    assert {s.release for s in world.live_servers()} == {first.release}


def test_a_restore_brings_the_previous_release_back_to_count(world: World) -> None:
    """A rolling deploy killed after its first old node was deleted, then failed on
    rerun: the old release comes back with all ``count`` nodes, not the 2 left."""
    first = deploy(world, world.spec(strategy="rolling", extra_rollout=ROLLING))
    v2 = world.spec(strategy="rolling", extra_rollout=ROLLING, image="golden-v2")
    crash_at(world, v2, "delete_node", nth=1)
    assert sum(1 for s in world.live_servers() if s.release == first.release) == 2
    world.cloud.faults.unhealthy_images.add("img-2")

    with pytest.raises(DeployFailed):
        deploy(world, v2)

    assert set(world.serving().values()) == {first.release}
    assert len(world.serving()) == 3
    assert len(world.live_servers()) == 3


def test_a_lookup_503_is_retried(world: World) -> None:
    first = deploy(world, world.spec())
    flaky = FlakyLookups(world, failures=2)
    result = api.deploy(world.spec(greeting="v2"), provider=flaky.provider(), clock=world.clock)
    assert result.outcome == "succeeded" and result.release != first.release
    assert flaky.failed == 2


@pytest.mark.parametrize("method", ["find_images", "get_flavor"])
def test_a_lookup_failing_after_a_crash_restores_the_previous_release(
    world: World, method: str
) -> None:
    """The rerun cannot even resolve the release (the image service is down beyond
    retries): the mixed pool the crash left is put back to the old release, exit 1."""
    first = deploy(world, world.spec())
    v2 = world.spec(greeting="v2")
    crash_at(world, v2, "add_member", nth=1)
    assert set(world.serving().values()) == {first.release, v2_release(world, v2)}
    flaky = FlakyLookups(world, failures=1000, method=method)

    with pytest.raises(DeployFailed) as failed:
        api.deploy(v2, provider=flaky.provider(), clock=world.clock)

    assert "HTTP 503" in str(failed.value)
    assert set(world.serving().values()) == {first.release}
    assert len(world.serving()) == 3
    assert {s.release for s in world.live_servers()} == {first.release}
    assert {m.name for m in world.cloud.members(REGION, POOL)} == set(world.serving())
    # With the lookups back, the same command finishes the deploy.
    result = deploy(world, v2)
    assert result.outcome == "succeeded" and result.previous_release == first.release


def v2_release(world: World, spec: Spec) -> str:
    return phoenix.plan(spec, provider=world.provider(), clock=world.clock).release


class FlakyLookups:
    """The world's provider whose ``part.method`` answers 503 ``failures`` times in a
    row, after ``after`` calls that succeed."""

    def __init__(self, world: World, failures: int, method: str = "find_images",
                 part: str = "compute", after: int = 0) -> None:
        self.world = world
        self.left = failures
        self.after = after
        self.failed = 0
        self.method = method
        self.part = part

    def provider(self) -> Provider:
        plain = self.world.provider()
        inner = getattr(plain, self.part)
        outer = self

        class Part:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(inner, name)
                if name != outer.method:
                    return attr

                def call(*args: Any, **kwargs: Any) -> Any:
                    if outer.after > 0:
                        outer.after -= 1
                    elif outer.left > 0:
                        outer.left -= 1
                        outer.failed += 1
                        raise Transient(f"{name}: HTTP 503 (test)")
                    return attr(*args, **kwargs)

                return call

        return dataclasses.replace(plain, **{self.part: Part()})


def test_status_names_a_run_that_stopped_half_way_until_a_rerun_finishes_it(
    world: World,
) -> None:
    first = deploy(world, world.spec())
    v2 = world.spec(greeting="v2")
    crash_at(world, v2, "add_member", nth=1)
    # The killed run's lease is still there, as after a kill -9 on another machine.
    phoenix.unlock(v2, provider=world.provider(), clock=world.clock)

    problems = phoenix.status(v2, provider=world.provider(), clock=world.clock).problems

    assert any("did not finish" in p and "restores " + first.release in p for p in problems)
    assert any("a mix of releases" in p for p in problems)
    deploy(world, v2)
    assert phoenix.status(v2, provider=world.provider(), clock=world.clock).problems == ()


def test_status_names_a_failed_restore_and_a_fault_free_rerun_converges(world: World) -> None:
    """Exit 3: the rollback itself failed (the old release's nodes cannot be rebuilt).
    status says so; once the fault is gone the same command converges."""
    first = deploy(world, world.spec(strategy="rolling", extra_rollout=ROLLING))
    v2 = world.spec(strategy="rolling", extra_rollout=ROLLING, image="golden-v2")
    crash_at(world, v2, "delete_node", nth=1)
    world.cloud.faults.unhealthy_images.add("img-2")
    world.cloud.faults.boot_fail_images.add("img-1")  # the restore cannot rebuild r1
    with pytest.raises(RestoreFailed):
        deploy(world, v2)

    problems = phoenix.status(v2, provider=world.provider(), clock=world.clock).problems
    assert any("could not restore" in p for p in problems), problems

    world.cloud.faults.unhealthy_images.clear()
    world.cloud.faults.boot_fail_images.clear()
    result = deploy(world, v2)
    assert result.outcome == "succeeded"
    assert result.previous_release == first.release
    assert set(world.serving().values()) == {result.release} and len(world.serving()) == 3
    assert phoenix.status(v2, provider=world.provider(), clock=world.clock).problems == ()


def test_an_api_failing_beyond_retries_for_one_poll_does_not_fail_the_deploy(
    world: World,
) -> None:
    """Seven 503s in a row (one more than the executor's retries) while listing members:
    the next poll tries again, as a controller requeues, instead of rolling back."""
    first = deploy(world, world.spec())
    flaky = FlakyLookups(world, failures=7, method="list_members", part="load_balancer",
                         after=3)
    result = api.deploy(world.spec(greeting="v2"), provider=flaky.provider(),
                        clock=world.clock)
    assert flaky.failed == 7
    assert result.outcome == "succeeded" and result.previous_release == first.release
    assert set(world.serving().values()) == {result.release}


def test_an_image_growing_older_than_max_age_does_not_fail_an_unchanged_rerun(
    world: World,
) -> None:
    """image.max_age stops a new build from a stale image; the release that already
    serves is not failed because days passed (a warning says to bake a fresh one)."""
    stale_after_a_month = "golden, max_age: 30d"  # img-1 is 28 days old at the start
    spec = world.spec(image=stale_after_a_month)
    first = deploy(world, spec)
    world.clock.advance(5 * 86400)

    again = deploy(world, spec)
    assert again.outcome == "unchanged" and again.release == first.release

    with pytest.raises(InputError, match=r"image\.max_age"):
        deploy(world, world.spec(image=stale_after_a_month, greeting="v2"))
    assert set(world.serving().values()) == {first.release}


@pytest.mark.parametrize("command", ["failover", "failback", "deploy"])
def test_a_region_move_rerun_hours_later_changes_nothing(world: World, command: str) -> None:
    spec = spec_of(world, "blue-green", "", dns=True)
    deploy(world, spec)
    api.failover(spec, to="region-b", provider=world.provider(), clock=world.clock)
    if command == "failback":
        api.failback(spec, provider=world.provider(), clock=world.clock)
    record = dns_values(world)
    world.clock.advance(6 * 3600)
    world.mutations = 0

    if command == "failover":
        again = api.failover(spec, to="region-b", provider=world.provider(), clock=world.clock)
    elif command == "failback":
        again = api.failback(spec, provider=world.provider(), clock=world.clock)
    else:
        again = deploy(world, spec)

    assert again.outcome == "unchanged", again.reason
    assert world.mutations == 0
    assert again.region == ("region-a" if command == "failback" else "region-b")
    assert dns_values(world) == record


# --- found by the fault campaign (tests/e2e/campaign.py), one test each ------------------

A, B = "region-a", "region-b"


def live_in(world: World, region: str) -> list[str]:
    world.settle()
    return sorted(s.name for s in world.cloud.servers(region) if s.state.value != "DELETING")


def test_a_region_left_by_a_failover_keeps_no_standby_of_keep_previous(world: World) -> None:
    keep = "  keep_previous: 1\n" + DNS
    deploy(world, world.spec(extra_rollout=keep))
    spec = world.spec(extra_rollout=keep, greeting="v2")
    deploy(world, spec)  # r1's nodes stand by in A, out of the pool
    assert len(live_in(world, A)) == 6

    moved = api.failover(spec, to=B, provider=world.provider(), clock=world.clock)

    assert moved.region == B
    assert live_in(world, A) == []  # traffic left A: nothing stands by there


def test_boots_an_earlier_run_failed_do_not_count_against_the_rerun(world: World) -> None:
    """The killed run burned every boot retry of index 0; a fault-free rerun gets its own."""
    first = deploy(world, world.spec())
    v2 = world.spec(greeting="v2")
    release = v2_release(world, v2)
    bad = {f"web-{release}-0", f"web-{release}-0-b1", f"web-{release}-0-b2"}
    world.cloud.faults.boot_fail_names.update(bad)
    world.mutations = 0
    crash_at(world, v2, "create_node", nth=5)  # 3 first boots, -b1, -b2
    world.clock.advance(10)  # -b2 boots into ERROR

    result = deploy(world, v2)

    assert result.outcome == "succeeded", result.reason
    assert f"web-{release}-0-b3" in world.serving()
    assert result.previous_release == first.release


def test_a_boot_an_earlier_run_left_stuck_is_replaced(world: World) -> None:
    deploy(world, world.spec())
    v2 = world.spec(greeting="v2")
    world.cloud.faults.slow_boot_seconds = 100_000  # these boots never finish
    crash_at(world, v2, "create_node", nth=3)
    world.cloud.faults.slow_boot_seconds = 0

    result = deploy(world, v2)

    assert result.outcome == "succeeded", result.reason
    assert sorted(world.serving()) == sorted(
        f"web-{result.release}-{i}-b1" for i in range(3))


def test_a_release_failing_beside_healthy_old_members_does_not_move_the_region(
    world: World,
) -> None:
    """A canary of one that fails its check while the old release passes in the same
    region: the release is bad, not the region, so it rolls back in place (no failover
    into another region to fail there too)."""
    canary = CANARY + "\n" + DNS
    first = deploy(world, world.spec(strategy="canary", extra_rollout=canary))
    record = dns_values(world)
    world.cloud.faults.unhealthy_images.add("img-2")

    with pytest.raises(DeployFailed) as failed:
        deploy(world, world.spec(strategy="canary", extra_rollout=canary, image="golden-v2"))

    result = failed.value.result
    assert [(a.region, a.radius) for a in result.attempts] == [(A, "node")]  # type: ignore[union-attr]
    assert dns_values(world) == record
    assert set(world.serving().values()) == {first.release}
    assert live_in(world, B) == []


def test_a_failed_rerun_empties_the_region_a_killed_run_failed_over_into(
    world: World,
) -> None:
    """The killed run found A down and started building in B; the rerun finds A back,
    fails there (a sick node), and must not leave the killed run's nodes in B."""
    first = deploy(world, world.spec(extra_rollout=DNS))
    v2 = world.spec(extra_rollout=DNS, image="golden-v2")
    world.cloud.faults.down_regions.add(A)
    crash_at(world, v2, "create_node", nth=2)
    world.cloud.faults.down_regions.clear()
    assert live_in(world, B)
    # One sick new node in A: a node-level failure, so no region is tried after A.
    world.cloud.faults.unhealthy_nodes.add(f"web-{v2_release(world, v2)}-0")

    with pytest.raises(DeployFailed):
        deploy(world, v2)

    assert set(world.serving().values()) == {first.release}
    assert live_in(world, B) == []
    assert world.cloud.members(B, POOL) == []


@pytest.mark.parametrize("fault", ["outage", "api errors"])
def test_a_rollback_waits_out_an_outage_instead_of_leaving_a_mess(
    world: World, fault: str
) -> None:
    """The region stops answering (or its API fails every call) for 60 s just as the
    rollback starts: the rollback waits it out and restores (exit 1), no exit 3."""
    first = deploy(world, world.spec(strategy="rolling", extra_rollout=ROLLING))
    v2 = world.spec(strategy="rolling", extra_rollout=ROLLING, image="golden-v2")
    world.cloud.faults.unhealthy_nodes.add(f"web-{v2_release(world, v2)}-1")
    failing_until: list[datetime] = []

    def on_event(event: Event) -> None:
        if event.kind != "rollback":
            return
        now = world.clock.now()
        if fault == "outage":
            world.cloud.faults.windows.append(FaultWindow(
                now, now + timedelta(seconds=60), down_regions=frozenset({REGION})))
        else:
            failing_until.append(now + timedelta(seconds=60))

    plain = world.provider()

    class FailingWhileTold:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            attr = getattr(self._inner, name)

            def call(*args: Any, **kwargs: Any) -> Any:
                if failing_until and world.clock.now() < failing_until[0]:
                    raise Transient(f"{name}: HTTP 503 (test)")
                return attr(*args, **kwargs)

            return call

    provider = dataclasses.replace(plain, compute=FailingWhileTold(plain.compute),
                                   load_balancer=FailingWhileTold(plain.load_balancer))

    with pytest.raises(DeployFailed):
        api.deploy(v2, provider=provider, clock=world.clock, on_event=on_event)

    assert set(world.serving().values()) == {first.release}
    assert len(world.serving()) == 3
    assert {s.release for s in world.live_servers()} == {first.release}


def test_a_quota_refusal_after_a_crash_restores_the_previous_release(world: World) -> None:
    first = deploy(world, world.spec(strategy="rolling", extra_rollout=ROLLING))
    v2 = world.spec(strategy="rolling", extra_rollout=ROLLING, greeting="v2")
    crash_at(world, v2, "add_member", nth=1)  # one r2 node serves beside r1
    world.cloud.set_quota(REGION, instances=len(world.live_servers()))  # nothing more fits

    with pytest.raises(DeployFailed, match="quota"):
        deploy(world, v2)

    assert set(world.serving().values()) == {first.release}
    assert len(world.serving()) == 3
    assert {s.release for s in world.live_servers()} == {first.release}


@pytest.mark.parametrize(("strategy", "extra"), STRATEGIES, ids=[s for s, _ in STRATEGIES])
def test_a_new_release_after_a_killed_canary_of_another_converges(
    world: World, strategy: str, extra: str
) -> None:
    """A canary deploy killed while its canary serves leaves a third release in the pool.
    Found by the issue 13 SIGSTOP test on moto: the next blue-green deploy counted that
    stray against its room (2 x count) and waited for room it never got, until its
    deadline. A stray goes first, while the old fleet still serves ``count``."""
    first = deploy(world, world.spec(count=2))
    canary = world.spec(count=2, greeting="v2", strategy="canary",
                        extra_rollout="  canary: {size: 1, bake: 10m}")
    world.mutations = 0
    world.crash_after = 4  # created, joined, stamped: the canary serves beside the old
    with pytest.raises(SimulatedCrash):
        deploy(world, canary)
    world.crash_after = None
    assert len(set(world.serving().values())) == 2  # the old release and the canary
    world.watch.reset()

    result = deploy(world, spec_of(world, strategy, extra, dns=False, count=2, greeting="v3"))

    assert result.outcome == "succeeded", result.reason
    assert set(world.serving().values()) == {result.release}
    assert len(world.serving()) == 2
    assert result.previous_release == first.release
    assert world.watch.min_serving is not None and world.watch.min_serving >= 2  # no dip
