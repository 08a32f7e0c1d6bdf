"""The load-test gate on the local provider, under load: real Locust runs the example's
locustfile against the new nodes (through the test listener) before the switch. A
passing gate promotes the release; an impossible p95 threshold rolls it back, with the
old release serving and not one of the users' requests failed.

Run under ``flock /tmp/phoenix-local-tests.lock`` like every local-provider test."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import phoenix
from phoenix.errors import DeployFailed
from phoenix.results import HookOutcome

from .test_local_e2e import App, example_app, under_load

pytestmark = pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                                reason="Locust is the [load] extra (the test extra has it)")


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """examples/hello on the built-in balancer (HAProxy's runs are the local e2e's job;
    this does not depend on the balancer)."""
    with example_app(tmp_path, monkeypatch) as the_app:
        yield the_app


def gate(app: App, max_p95: str) -> None:
    app.set("hooks:\n", "gates:\n  load_test: {locustfile: loadtest/locustfile.py, users: 8,"
                        f" spawn_rate: 8, duration: 3s, max_p95: {max_p95}}}\nhooks:\n")


def load_test_runs(result: phoenix.DeployResult) -> list[tuple[str, HookOutcome]]:
    return [(h.moment, h.outcome) for h in result.hooks if h.hook.startswith("gate:")]


def test_a_passing_load_test_promotes_the_release(app: App) -> None:
    first = phoenix.deploy(app.spec())
    gate(app, "5s")
    app.change_image("release two")
    load, second = under_load(app, lambda: phoenix.deploy(app.spec()))
    assert isinstance(second, phoenix.DeployResult), second
    assert load.failed == [], load.failed[:5]
    assert second.release != first.release
    assert phoenix.status(app.spec()).regions[0].serving_release == second.release
    assert load_test_runs(second) == [("pre_switch", HookOutcome.OK)]
    (run,) = [h for h in second.hooks if h.hook.startswith("gate:")]
    requests = int(run.detail.split()[0])
    assert requests > 50, run.detail  # Locust really loaded the new nodes


def test_an_impossible_p95_rolls_back_dropping_nothing(app: App) -> None:
    first = phoenix.deploy(app.spec())
    gate(app, "1ms")
    app.change_image("release two")
    load, outcome = under_load(app, lambda: phoenix.deploy(app.spec()))
    assert isinstance(outcome, DeployFailed), outcome
    assert "gate: load test loadtest/locustfile.py failed" in str(outcome)
    assert "p95" in str(outcome) and "> 1 ms" in str(outcome)
    assert load.failed == [], load.failed[:5]
    assert set(load.releases) == {first.release}  # the new release never served a user
    report = phoenix.status(app.spec())
    assert report.regions[0].serving_release == first.release
    assert {n.release for n in report.regions[0].nodes} == {first.release}
    result = outcome.result
    assert isinstance(result, phoenix.DeployResult) and result.outcome == "rolled-back"
    assert load_test_runs(result) == [("pre_switch", HookOutcome.FAILED)]
