"""Progress a real deploy reports on the in-memory cloud: counts that reach the target,
waits with reason codes, and the waits a deadline failure names in its result."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

import phoenix
from phoenix.errors import DeployFailed
from phoenix.results import Event
from phoenix.steps import Counts
from phoenix.vocabulary import EventKind, WaitReason

from .conftest import World


def test_a_deploy_reports_progress_until_its_counts_reach_the_target(world: World) -> None:
    events: list[Event] = []
    spec = world.spec()
    result = phoenix.deploy(spec, provider=world.provider(), clock=world.clock,
                            on_event=events.append)

    assert result.outcome == "succeeded"
    progress = [e.progress for e in events if e.kind is EventKind.PROGRESS]
    assert all(p is not None for p in progress)
    reports = [p for p in progress if p is not None]
    assert len(reports) >= 3  # nothing, then booted, healthy and in the pool, at least
    assert reports[0].counts == Counts(3, 0, 0, 0)
    assert reports[-1].counts == Counts(3, 3, 3, 3)
    # Sent only when the counts change, on the engine's clock, against one deadline.
    assert all(a.counts != b.counts for a, b in itertools.pairwise(reports))
    assert [p.at for p in reports] == sorted(p.at for p in reports)
    assert {p.deadline - p.started for p in reports} == {
        timedelta(seconds=spec.rollout.deadline)}
    assert reports[-1].elapsed > 0
    # Each wait event carries its waits typed, the lines being their texts.
    waiting = [e for e in events if e.kind is EventKind.WAITING]
    assert waiting
    assert all(e.lines == tuple(w.text for w in e.waits) for e in waiting)
    assert WaitReason.BOOTING in {w.reason for e in waiting for w in e.waits}


def test_a_deadline_failure_names_what_it_waited_for(world: World) -> None:
    phoenix.deploy(world.spec(), provider=world.provider(), clock=world.clock)
    world.cloud.faults.slow_boot_seconds = 10_000

    with pytest.raises(DeployFailed) as failed:
        phoenix.deploy(world.spec(greeting="slow", extra_rollout="  deadline: 60s"),
                       provider=world.provider(), clock=world.clock)

    result = failed.value.result
    assert isinstance(result, phoenix.DeployResult)
    assert result.outcome == "rolled-back"
    assert result.reason is not None and "rollout.deadline" in result.reason
    assert result.waits
    assert {w.reason for w in result.waits} == {WaitReason.BOOTING, WaitReason.OLD_MEMBERS}
    assert sorted(w.node for w in result.waits if w.reason is WaitReason.BOOTING) == [
        f"web-{result.release}-{i}" for i in range(3)]
    assert result.reason.endswith("; ".join(w.text for w in result.waits))


def test_a_deploy_that_succeeds_has_no_waits_left(world: World) -> None:
    result = phoenix.deploy(world.spec(), provider=world.provider(), clock=world.clock)
    assert result.waits == ()
