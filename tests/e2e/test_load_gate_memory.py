"""The load-test gate in a deploy on the in-memory cloud: it runs once, at the switch,
against the joining nodes (through a test listener when there are several); a miss rolls
back with the old release serving; it is in the result and history. Locust itself is
replaced here (memory nodes serve nothing); tests/e2e/test_local_gates.py runs it for
real."""

from __future__ import annotations

from pathlib import Path

import pytest

import phoenix
from phoenix import gate_points
from phoenix.errors import DeployFailed
from phoenix.load_gate import LoadResult, LoadTest
from phoenix.results import HookOutcome

from .conftest import World, make_world

GATE = ("gates:\n  load_test: {locustfile: locustfile.py, users: 5, duration: 2s,"
        " max_p95: 200ms}")


@pytest.fixture
def world(tmp_path: Path) -> World:
    made = make_world(tmp_path)
    (tmp_path / "locustfile.py").write_text("# the test replaces Locust\n")
    return made


class FakeLocust:
    """Stands in for ``run_load_test``: records the calls, answers ``passed``."""

    def __init__(self, passed: bool) -> None:
        self.passed = passed
        self.calls: list[tuple[LoadTest, str]] = []

    def __call__(self, test: LoadTest, host: str, *, cwd: Path) -> LoadResult:
        self.calls.append((test, host))
        return LoadResult(host, 100, 0 if self.passed else 100, 12.0, self.passed,
                          "100 requests" if self.passed else "100 requests, 100 failed")


def deploy(world: World, spec: phoenix.Spec) -> phoenix.DeployResult:
    return phoenix.deploy(spec, provider=world.provider(), clock=world.clock)


def test_a_passing_gate_runs_once_at_the_switch(world: World,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    first = deploy(world, world.spec())
    locust = FakeLocust(passed=True)
    monkeypatch.setattr(gate_points, "run_load_test", locust)
    second = deploy(world, world.spec(greeting="v2", extra_rollout=GATE))
    assert second.outcome == "succeeded"
    assert set(world.serving().values()) == {second.release}
    (test, host), = locust.calls  # once, for the three joining nodes
    assert host.startswith("http://127.0.0.1:")  # the test listener in front of them
    assert (test.users, test.seconds, test.max_p95_ms) == (5, 2.0, 200.0)
    assert test.locustfile == Path("locustfile.py")
    gate_runs = [r for r in second.hooks if r.hook.startswith("gate:")]
    assert [(r.moment, r.outcome) for r in gate_runs] == [("pre_switch", HookOutcome.OK)]
    recorded = phoenix.history(world.spec(), provider=world.provider(), clock=world.clock)
    assert any(str(r["hook"]).startswith("gate:") for r in recorded[-1].hooks)
    assert first.release != second.release

    # An unchanged rerun switches nothing: no load test.
    assert deploy(world, world.spec(greeting="v2", extra_rollout=GATE)).outcome == "unchanged"
    assert len(locust.calls) == 1


def test_a_failing_gate_rolls_back_before_any_traffic_moves(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    first = deploy(world, world.spec())
    locust = FakeLocust(passed=False)
    monkeypatch.setattr(gate_points, "run_load_test", locust)
    world.watch.reset()
    with pytest.raises(DeployFailed, match=r"gate: load test locustfile\.py failed") as failed:
        deploy(world, world.spec(greeting="v2", extra_rollout=GATE))
    assert failed.value.result is not None
    assert failed.value.result.outcome == "rolled-back"
    assert set(world.serving().values()) == {first.release}
    # The new release never served: every observation saw only the first.
    assert all(releases <= {first.release} for releases in world.watch.serving_releases)
    assert len(locust.calls) == 1  # the restore does not load-test the old release


def test_one_node_is_loaded_directly(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    deploy(world, world.spec(count=1))
    locust = FakeLocust(passed=True)
    monkeypatch.setattr(gate_points, "run_load_test", locust)
    deploy(world, world.spec(count=1, greeting="v2", extra_rollout=GATE))
    (_, host), = locust.calls
    node = next(iter(world.live_servers()))
    assert host == f"http://{node.address}:8080"


CANARY = "  canary: {size: 1, bake: 30s}\n"


def test_a_canary_is_load_tested_during_its_bake(world: World,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    first = deploy(world, world.spec(strategy="canary", extra_rollout=CANARY.rstrip()))
    locust = FakeLocust(passed=False)
    seen: list[dict[str, str]] = []

    def measured(test: LoadTest, host: str, *, cwd: Path) -> LoadResult:
        seen.append(dict(world.serving()))  # the pool at the time of the load test
        return locust(test, host, cwd=cwd)

    monkeypatch.setattr(gate_points, "run_load_test", measured)
    with pytest.raises(DeployFailed, match="gate: load test"):
        deploy(world, world.spec(strategy="canary", greeting="v2",
                                 extra_rollout=CANARY + GATE))
    (_, host), = locust.calls  # the one canary node, directly
    (pool,) = seen
    # It ran while the canary served beside the baseline (its bake), not before.
    assert sorted(pool.values()).count(first.release) == 3
    canary = [name for name, release in pool.items() if release != first.release]
    assert len(canary) == 1 and host.endswith(":8080")
    assert set(world.serving().values()) == {first.release}  # rolled back
