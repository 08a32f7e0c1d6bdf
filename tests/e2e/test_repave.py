"""`phoenix repave` (issue 14): every node of the serving release replaced by a fresh
boot of the same release, rolling and health-gated, never below ``count`` serving; a
replacement that fails puts the old nodes back; a repave killed half-way is finished by
the next run. On the memory cloud with the fake clock."""

from __future__ import annotations

import pytest

import phoenix
from phoenix.errors import DeployFailed, InputError
from phoenix.spec import Spec

from .conftest import POOL, REGION, SimulatedCrash, World

ROLLING = "  max_surge: 1\n  max_unavailable: 0"


def spec_of(world: World, **overrides: object) -> Spec:
    return world.spec(extra_rollout=ROLLING, **overrides)


def test_a_repave_replaces_every_node_one_at_a_time_never_below_count(world: World) -> None:
    spec = spec_of(world)
    first = phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    before = sorted(world.serving())
    world.watch.reset()

    result = phoenix.repave(spec, provider=world.provider(), clock=world.clock)

    assert result.outcome == "succeeded" and result.action == "repave"
    assert result.release == first.release  # the same release, fresh servers
    after = world.serving()
    assert set(after.values()) == {first.release} and len(after) == 3
    assert set(after).isdisjoint(before)  # every server is new
    assert world.watch.min_serving is not None and world.watch.min_serving >= 3
    assert world.watch.max_nodes <= 4  # count + max_surge
    assert {m.name for m in world.cloud.members(REGION, POOL)} == set(after)
    history = phoenix.history(spec, provider=world.provider(), clock=world.clock)
    assert [r.action for r in history] == ["deploy", "repave"]
    # Nothing left to do: an unchanged deploy afterwards changes nothing.
    world.mutations = 0
    again = phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    assert again.outcome == "unchanged" and world.mutations == 0


def test_a_replacement_that_fails_its_gate_puts_the_old_nodes_back(world: World) -> None:
    spec = spec_of(world)
    first = phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    before = world.serving()
    # The first replacement never passes its health check.
    world.cloud.faults.unhealthy_nodes = {f"{name}-b1" for name in before}

    with pytest.raises(DeployFailed) as failed:
        phoenix.repave(spec, provider=world.provider(), clock=world.clock)

    assert failed.value.result.outcome == "rolled-back"  # type: ignore[union-attr]
    assert world.serving() == before  # the very same servers serve
    assert {s.name for s in world.live_servers()} == set(before)
    assert first.release in failed.value.result.previous_release  # type: ignore[union-attr,operator]


def test_a_repave_killed_half_way_is_finished_by_the_next_deploy(world: World) -> None:
    spec = spec_of(world)
    first = phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    before = set(world.serving())
    world.mutations = 0
    world.crash_after = 6  # the first replacement serves; the second is under way
    with pytest.raises(SimulatedCrash):
        phoenix.repave(spec, provider=world.provider(), clock=world.clock)
    world.crash_after = None
    assert before - set(world.serving())  # half-way: some old servers are gone
    world.watch.reset()

    result = phoenix.deploy(spec, provider=world.provider(), clock=world.clock)

    assert result.outcome == "succeeded" and result.release == first.release
    assert len(world.serving()) == 3
    assert world.watch.min_serving is not None and world.watch.min_serving >= 3


def test_nothing_to_repave_before_a_deploy(world: World) -> None:
    with pytest.raises(InputError, match="nothing to repave"):
        phoenix.repave(spec_of(world), provider=world.provider(), clock=world.clock)
