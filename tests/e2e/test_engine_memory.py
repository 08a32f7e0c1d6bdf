"""The engine end to end on the in-memory cloud: every strategy, crashes at every step
boundary, injected API errors, boot and health failures, quota, lock, interrupt."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

import phoenix
from phoenix.engine import Engine
from phoenix.errors import DeployFailed, ExitCode, Interrupted, LockHeld, QuotaExceeded
from phoenix.model import NodeState

from .conftest import POOL, REGION, SimulatedCrash, World, make_world


def deploy(world: World, spec: phoenix.Spec, **kwargs: Any) -> phoenix.DeployResult:
    return phoenix.deploy(spec, provider=world.provider(), clock=world.clock, **kwargs)


def releases_of(world: World) -> set[str]:
    return {s.release for s in world.live_servers()}


ROLLING = "  max_surge: 1\n  max_unavailable: 0"
CANARY = "  canary: {size: 1, bake: 30s}"


@pytest.mark.parametrize(
    ("strategy", "extra", "floor", "ceiling"),
    [
        ("blue-green", "", 3, 6),
        ("rolling", ROLLING, 3, 4),
        ("rolling", "  max_surge: 0\n  max_unavailable: 1", 2, 3),
        ("canary", CANARY, 3, 6),
    ],
)
def test_each_strategy_replaces_the_release_without_dropping_service(
    world: World, strategy: str, extra: str, floor: int, ceiling: int
) -> None:
    first = deploy(world, world.spec(strategy=strategy, extra_rollout=extra))
    assert first.outcome == "succeeded"
    assert set(world.serving().values()) == {first.release}
    assert len(world.serving()) == 3

    world.watch.reset()
    second = deploy(world, world.spec(strategy=strategy, extra_rollout=extra, greeting="hi"))
    assert second.outcome == "succeeded"
    assert second.release != first.release
    assert second.previous_release == first.release
    # Every response now comes from release 2, and release 1's servers are gone.
    assert set(world.serving().values()) == {second.release}
    assert len(world.serving()) == 3
    assert releases_of(world) == {second.release}
    # Never below the availability floor, never above count + surge.
    assert world.watch.min_serving is not None and world.watch.min_serving >= floor
    assert world.watch.max_nodes <= ceiling
    # The new user-data carries the new release and greeting.
    node = world.live_servers()[0]
    assert "greeting=hi" in world.cloud.user_data(REGION, node.id)
    assert f"release={second.release}" in world.cloud.user_data(REGION, node.id)


def test_canary_serves_beside_the_old_release_during_the_bake(world: World) -> None:
    deploy(world, world.spec(strategy="canary", extra_rollout=CANARY))
    world.watch.reset()
    result = deploy(world, world.spec(strategy="canary", extra_rollout=CANARY, greeting="b"))
    mixed = [r for r in world.watch.serving_releases if len(r) == 2]
    assert mixed, "the canary never served beside the old release"
    assert result.seconds >= 30  # the bake time passed (by the fake clock)


def test_rerun_of_a_converged_deploy_changes_nothing(world: World) -> None:
    spec = world.spec()
    deploy(world, spec)
    creates = world.cloud.calls["compute.create_node"]
    again = deploy(world, spec)
    assert again.outcome == "unchanged"
    assert again.steps == 0
    assert world.cloud.calls["compute.create_node"] == creates


def test_names_and_tags_are_deterministic(world: World) -> None:
    result = deploy(world, world.spec())
    names = sorted(s.name for s in world.live_servers())
    assert names == [f"web-{result.release}-{i}" for i in range(3)]
    node = world.live_servers()[0]
    assert node.metadata["phoenix:app"] == "web"
    assert node.metadata["phoenix:release"] == result.release
    assert result.release.startswith("r1-")


def _crash_points(world: World) -> int:
    """How many mutations a clean second deploy makes (measured on a scratch run)."""
    deploy(world, world.spec())
    world.mutations = 0
    deploy(world, world.spec(greeting="v2"))
    return world.mutations


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_at_every_step_boundary_converges_on_rerun(
    tmp_path_factory: pytest.TempPathFactory, when: str
) -> None:
    probe = make_world(tmp_path_factory.mktemp("probe"))
    total = _crash_points(probe)
    assert total >= 10
    for k in range(1, total + 1):
        w = make_world(tmp_path_factory.mktemp(f"crash{k}"))
        first = deploy(w, w.spec())
        w.watch.reset()
        w.mutations = 0
        if when == "before":
            w.crash_before = k
        else:
            w.crash_after = k
        with pytest.raises(SimulatedCrash):
            deploy(w, w.spec(greeting="v2"))
        w.crash_before = w.crash_after = None
        w.clock.advance(1)
        result = deploy(w, w.spec(greeting="v2"))  # a new engine, the same cloud
        assert result.outcome in ("succeeded", "unchanged")
        serving = w.serving()
        assert set(serving.values()) == {result.release}, f"crash {when} mutation {k}"
        assert len(serving) == 3
        # No orphaned node, no stray member.
        assert releases_of(w) == {result.release}, f"crash {when} mutation {k}"
        assert {m.name for m in w.cloud.members(REGION, POOL)} == set(serving)
        assert w.watch.min_serving is not None and w.watch.min_serving >= 3
        assert first.release != result.release


def test_ten_percent_api_errors_still_converge(world: World) -> None:
    world.cloud.faults.api_error_rate = 0.10
    world.cloud.faults.lost_response_rate = 0.05
    with structlog.testing.capture_logs() as logs:
        first = deploy(world, world.spec())
        second = deploy(world, world.spec(greeting="v2"))
    assert first.outcome == second.outcome == "succeeded"
    world.cloud.faults.api_error_rate = world.cloud.faults.lost_response_rate = 0
    assert set(world.serving().values()) == {second.release}
    assert len(world.live_servers()) == 3
    assert {m.name for m in world.cloud.members(REGION, POOL)} == set(world.serving())
    retries = [e for e in logs if e["event"] == "transient provider error, retrying"]
    assert len(retries) >= 5


def test_boot_failure_of_a_whole_release_rolls_back(world: World) -> None:
    first = deploy(world, world.spec())
    world.watch.reset()
    world.cloud.faults.boot_fail_images.add("img-2")
    with pytest.raises(DeployFailed) as failed:
        deploy(world, world.spec(image="golden-v2"))
    assert failed.value.exit_code == ExitCode.DEPLOY_FAILED
    assert "failed 3 time(s)" in str(failed.value)
    assert set(world.serving().values()) == {first.release}
    assert len(world.serving()) == 3
    assert releases_of(world) == {first.release}
    assert world.watch.min_serving == 3


def test_one_bad_boot_is_replaced_and_the_deploy_succeeds(world: World) -> None:
    spec = world.spec()
    plan = phoenix.plan(spec, provider=world.provider(), clock=world.clock)
    world.cloud.faults.boot_fail_names.add(f"web-{plan.release}-1")
    result = deploy(world, spec)
    assert result.outcome == "succeeded"
    names = sorted(s.name for s in world.live_servers())
    assert f"web-{plan.release}-1-b1" in names
    assert len(names) == 3


def test_health_failure_rolls_back_with_the_old_release_serving(world: World) -> None:
    first = deploy(world, world.spec())
    world.cloud.faults.unhealthy_images.add("img-2")
    with pytest.raises(DeployFailed) as failed:
        deploy(world, world.spec(image="golden-v2"))
    assert "failed its health check" in str(failed.value)
    assert set(world.serving().values()) == {first.release}
    assert releases_of(world) == {first.release}
    history = phoenix.history(world.spec(), provider=world.provider(), clock=world.clock)
    assert [h.outcome for h in history] == ["succeeded", "rolled-back"]


def test_a_failed_first_deploy_leaves_nothing_behind(world: World) -> None:
    world.cloud.faults.unhealthy_images.add("img-1")
    with pytest.raises(DeployFailed):
        deploy(world, world.spec())
    assert world.live_servers() == []
    assert world.cloud.members(REGION, POOL) == []


def test_node_dying_after_the_switch_during_rollout_restores_old(world: World) -> None:
    """A failure after traffic moved: the old members come back first."""
    first = deploy(world, world.spec(strategy="rolling", extra_rollout=ROLLING))
    spec = world.spec(strategy="rolling", extra_rollout=ROLLING, image="golden-v2")
    plan = phoenix.plan(spec, provider=world.provider(), clock=world.clock)
    # The second new node never becomes healthy: by then the first already serves.
    world.cloud.faults.unhealthy_nodes.add(f"web-{plan.release}-1")
    with pytest.raises(DeployFailed):
        deploy(world, spec)
    assert set(world.serving().values()) == {first.release}
    assert len(world.serving()) == 3
    assert releases_of(world) == {first.release}


def test_quota_preflight_refuses_before_creating_anything(world: World) -> None:
    deploy(world, world.spec())
    world.cloud.set_quota(REGION, instances=5)
    creates = world.cloud.calls["compute.create_node"]
    with pytest.raises(QuotaExceeded) as refused:
        deploy(world, world.spec(greeting="v2"))
    assert "instances: needs 3, 2 left" in str(refused.value)
    assert world.cloud.calls["compute.create_node"] == creates


def test_a_held_lock_refuses_with_exit_code_4(world: World) -> None:
    spec = world.spec()
    provider = world.provider()
    from phoenix.lease import DeployLock

    other = DeployLock(provider.store, "web", "d-other")
    other.pid = 1  # a live process that is not us
    other.acquire(world.clock)
    with pytest.raises(LockHeld) as held:
        deploy(world, spec)
    assert held.value.exit_code == ExitCode.LOCKED
    assert world.cloud.calls["compute.create_node"] == 0


def test_interrupt_mid_deploy_leaves_the_old_release_serving(world: World) -> None:
    first = deploy(world, world.spec())
    engine = Engine(world.spec(greeting="v2"), world.provider(), clock=world.clock)
    sleeps = 0
    real_sleep = world.clock.sleep

    def interrupting_sleep(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == 2:
            raise KeyboardInterrupt
        real_sleep(seconds)

    world.clock.sleep = interrupting_sleep  # type: ignore[method-assign]
    with pytest.raises(Interrupted) as stopped:
        engine.deploy()
    world.clock.sleep = real_sleep  # type: ignore[method-assign]
    assert stopped.value.exit_code == ExitCode.INTERRUPTED
    assert set(world.serving().values()) == {first.release}
    assert releases_of(world) == {first.release}


def test_manual_rollback_rebuilds_the_previous_release_from_its_record(world: World) -> None:
    first = deploy(world, world.spec())
    second = deploy(world, world.spec(greeting="v2"))
    back = phoenix.rollback(world.spec(greeting="v2"), provider=world.provider(),
                            clock=world.clock)
    assert back.release == first.release
    assert back.previous_release == second.release
    assert set(world.serving().values()) == {first.release}
    node = world.live_servers()[0]
    assert "greeting=hello" in world.cloud.user_data(REGION, node.id)


def test_keep_previous_allows_a_rollback_without_booting(world: World) -> None:
    extra = "  keep_previous: 1"
    first = deploy(world, world.spec(extra_rollout=extra))
    deploy(world, world.spec(extra_rollout=extra, greeting="v2"))
    kept = [s for s in world.live_servers() if s.release == first.release]
    assert len(kept) == 3 and all(s.state is NodeState.ACTIVE for s in kept)
    creates = world.cloud.calls["compute.create_node"]
    phoenix.rollback(world.spec(extra_rollout=extra, greeting="v2"),
                     provider=world.provider(), clock=world.clock)
    assert world.cloud.calls["compute.create_node"] == creates
    assert set(world.serving().values()) == {first.release}


def test_deadline_rolls_back(world: World) -> None:
    first = deploy(world, world.spec())
    world.cloud.faults.slow_boot_seconds = 10_000
    with pytest.raises(DeployFailed) as failed:
        deploy(world, world.spec(greeting="slow"))
    assert "deadline" in str(failed.value)
    world.cloud.faults.slow_boot_seconds = 0
    assert set(world.serving().values()) == {first.release}


def test_destroy_leaves_nothing(world: World) -> None:
    deploy(world, world.spec())
    result = phoenix.destroy(world.spec(), provider=world.provider(), clock=world.clock)
    assert len(result.deleted_nodes) == 3
    assert world.cloud.servers(REGION) == []
    assert world.cloud.members(REGION, POOL) == []


def test_status_shows_serving_release_and_a_dead_node(world: World) -> None:
    result = deploy(world, world.spec())
    victim = f"web-{result.release}-2"
    world.cloud.faults.unhealthy_nodes.add(victim)
    report = phoenix.status(world.spec(), provider=world.provider(), clock=world.clock)
    region = report.regions[0]
    assert region.serving_release == result.release
    assert {n.name: n.health for n in region.nodes}[victim] == "UNHEALTHY"
    assert any(victim in p for p in report.problems)


def test_a_failed_release_is_never_kept_as_standby(world: World) -> None:
    extra = "  keep_previous: 1"
    first = deploy(world, world.spec(extra_rollout=extra))
    world.cloud.faults.unhealthy_images.add("img-2")
    with pytest.raises(DeployFailed):
        deploy(world, world.spec(extra_rollout=extra, image="golden-v2"))
    assert releases_of(world) == {first.release}


def test_a_check_that_fails_everywhere_leaves_the_old_fleet_untouched(world: World) -> None:
    """E.g. a wrong health port in the new spec: every node looks sick, old ones too."""
    first = deploy(world, world.spec())
    old_ids = {s.id for s in world.live_servers()}
    world.watch.reset()
    world.cloud.faults.unhealthy_images.update({"img-1", "img-2"})
    with pytest.raises(DeployFailed) as failed:
        deploy(world, world.spec(image="golden-v2"))
    assert failed.value.exit_code == ExitCode.DEPLOY_FAILED
    assert set(world.serving().values()) == {first.release}
    assert {s.id for s in world.live_servers()} == old_ids  # the very same servers
    assert world.watch.min_serving == 3


def test_a_cloud_that_ignores_a_step_is_not_hammered(world: World) -> None:
    """add_member accepted but never applied: the engine backs off until the deadline."""
    first = deploy(world, world.spec())
    spec = world.spec(greeting="v2", extra_rollout="  deadline: 60s")
    provider = world.provider()
    provider.load_balancer.add_member = lambda *args, **kwargs: None  # type: ignore[method-assign]
    provider.load_balancer.change_members = lambda *args, **kwargs: None  # type: ignore[method-assign]
    with pytest.raises(DeployFailed) as failed:
        phoenix.deploy(spec, provider=provider, clock=world.clock)
    assert "deadline" in str(failed.value)
    # Polled about once per second for 60 s, not thousands of times.
    assert world.cloud.calls["lb.list_members"] < 200
    assert set(world.serving().values()) == {first.release}
