"""The metric gate in a canary deploy on the in-memory cloud: asked while the canary
bakes beside the baseline and once more before promotion; a bad canary rolls back with
the baseline serving; a canary nobody measured is not promoted. Prometheus is replaced
here (tests/integration/test_metric_gate.py asks a real one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import phoenix
from phoenix import gate_points
from phoenix.errors import DeployFailed, SpecError
from phoenix.metric_gate import MetricCheck, MetricVerdict
from phoenix.results import HookOutcome

from .conftest import World, make_world

CANARY = "  canary: {size: 1, bake: 30s}"
GATE = (CANARY + "\ngates:\n  metrics:\n    prometheus: http://127.0.0.1:9\n    interval: 1s\n"
        "    checks:\n      - {name: error-ratio, max_vs_baseline: 2, tolerance: 0.01,\n"
        "         query: 'errors{release=\"{{ release }}\"}'}")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


class FakePrometheus:
    """Stands in for ``metric_gate.evaluate``: ``passed`` is the canary's verdict."""

    def __init__(self, passed: bool | None) -> None:
        self.passed = passed
        self.asked: list[tuple[str, str | None]] = []

    def __call__(self, check: MetricCheck, prometheus: str, *, canary: str,
                 baseline: str | None) -> MetricVerdict:
        self.asked.append((canary, baseline))
        value = None if self.passed is None else (0.01 if self.passed else 0.5)
        detail = (f"{check.name}: no data yet" if value is None
                  else f"{check.name}: canary {value}, baseline 0.01")
        return MetricVerdict(check.name, value, 0.01, self.passed, detail)


def deploy(world: World, spec: phoenix.Spec) -> phoenix.DeployResult:
    return phoenix.deploy(spec, provider=world.provider(), clock=world.clock)


def canary(world: World, **values: Any) -> phoenix.Spec:
    return world.spec(strategy="canary", extra_rollout=GATE, **values)


def test_a_good_canary_is_promoted_after_its_last_look(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    first = deploy(world, world.spec(strategy="canary", extra_rollout=CANARY))
    prometheus = FakePrometheus(passed=True)
    monkeypatch.setattr(gate_points, "evaluate_check", prometheus)
    second = deploy(world, canary(world, greeting="v2"))
    assert second.outcome == "succeeded"
    assert set(world.serving().values()) == {second.release}
    assert prometheus.asked and set(prometheus.asked) == {(second.release, first.release)}
    runs = [h for h in second.hooks if h.hook == "gate: metric error-ratio"]
    assert runs and {h.outcome for h in runs} == {HookOutcome.OK}
    assert {h.moment for h in runs} == {"canary_bake"}


def test_a_bad_canary_rolls_back_to_the_baseline(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    first = deploy(world, world.spec(strategy="canary", extra_rollout=CANARY))
    monkeypatch.setattr(gate_points, "evaluate_check", FakePrometheus(passed=False))
    with pytest.raises(DeployFailed, match="gate: metric error-ratio failed") as failed:
        deploy(world, canary(world, greeting="v2"))
    assert failed.value.result is not None and failed.value.result.outcome == "rolled-back"
    # Caught while the canary baked: long before its 30 s bake was over.
    assert failed.value.result.seconds < 30, failed.value.result.seconds
    assert set(world.serving().values()) == {first.release}
    assert {s.release for s in world.live_servers()} == {first.release}


def test_a_canary_nobody_measured_is_not_promoted(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    first = deploy(world, world.spec(strategy="canary", extra_rollout=CANARY))
    monkeypatch.setattr(gate_points, "evaluate_check", FakePrometheus(passed=None))
    with pytest.raises(DeployFailed, match="no data yet when the bake ended"):
        deploy(world, canary(world, greeting="v2"))
    assert set(world.serving().values()) == {first.release}


def test_the_metric_gate_needs_a_canary(world: World) -> None:
    with pytest.raises(SpecError, match=r"gates\.metrics: the metrics gate compares a canary"):
        world.spec(extra_rollout=GATE.removeprefix(CANARY + "\n"))
