"""Lifecycle hooks on the local provider, under load: the example's pre_terminate hook
really backs up every old node's data before the node is deleted, and an abort hook
that fails rolls back with the old release serving and not one failed request.

Run under ``flock /tmp/phoenix-local-tests.lock`` like every local-provider test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import phoenix
from phoenix.errors import DeployFailed
from phoenix.results import HookOutcome

from .test_local_e2e import App, alive, example_app, steady_latency, under_load


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """examples/hello on the built-in balancer (HAProxy's runs are the local e2e's job;
    this does not depend on the balancer)."""
    with example_app(tmp_path, monkeypatch) as the_app:
        yield the_app


def visits(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_pre_terminate_backs_up_every_old_nodes_data_under_load(app: App) -> None:
    first = phoenix.deploy(app.spec())
    assert first.hooks == ()  # nothing was terminated
    old_nodes = set(first.nodes)
    assert len(old_nodes) == 3
    steady = steady_latency(app)  # the old nodes log these visits
    assert not steady.failed

    app.change_image("release two")
    load, second = under_load(app, lambda: phoenix.deploy(app.spec()))
    assert isinstance(second, phoenix.DeployResult), second
    assert load.failed == [], load.failed[:5]
    assert load.ok >= 5000

    # One backup per old node, each holding that node's whole log: every visit the old
    # release answered (before and during the deploy) is in exactly one backup.
    backups = app.root / "backups"
    assert {p.name for p in backups.iterdir()} == old_nodes
    saved = {node: visits((backups / node / "visits.log").read_text()) for node in old_nodes}
    for node, lines in saved.items():
        assert lines and all(line.split()[1] == node for line in lines), node
    answered_by_old = steady.ok + load.releases.count(first.release)
    assert sum(len(lines) for lines in saved.values()) == answered_by_old
    # Each backup was made while its node still ran: the nodes are gone now.
    region = phoenix.status(app.spec()).regions[0]
    assert region.serving_release == second.release
    assert not old_nodes & {n.name for n in region.nodes}

    terminated = [h for h in second.hooks if h.moment == "pre_terminate"]
    assert {h.node for h in terminated} == old_nodes
    assert {h.outcome for h in terminated} == {HookOutcome.OK}
    assert all(h.detail.startswith("backed up ") for h in terminated)
    record = phoenix.history(app.spec())[-1]
    assert {h["node"] for h in record.hooks if h["moment"] == "pre_terminate"} == old_nodes


@pytest.mark.parametrize("moment", ["pre_switch", "post_switch"])
def test_an_abort_hook_failing_rolls_back_under_load_dropping_nothing(
    app: App, moment: str
) -> None:
    first = phoenix.deploy(app.spec())
    # pre_switch fails before any traffic moved; post_switch once all of it had moved,
    # so the restore must move it back. Neither may cost a request.
    app.set("hooks:\n", f"hooks:\n  {moment}:\n"
                        "    - {run: 'echo smoke test failed; exit 1', on_failure: abort}\n")
    app.change_image("release two")
    load, outcome = under_load(app, lambda: phoenix.deploy(app.spec()))
    assert isinstance(outcome, DeployFailed), outcome
    assert f"{moment} hook" in str(outcome) and "smoke test failed" in str(outcome)
    assert load.ok >= 5000
    assert load.failed == [], load.failed[:5]
    if moment == "pre_switch":
        assert set(load.releases) == {first.release}
    report = phoenix.status(app.spec())
    assert report.regions[0].serving_release == first.release
    assert {n.release for n in report.regions[0].nodes} == {first.release}
    after = {httpx.get(app.url).text.split()[1] for _ in range(6)}
    assert after == {first.release}
    result = outcome.result
    assert isinstance(result, phoenix.DeployResult) and result.outcome == "rolled-back"
    assert [h.outcome for h in result.hooks if h.moment == moment] == [HookOutcome.FAILED]
    # The restore deleted the failed release's nodes: its backups ran too.
    assert {h.moment for h in result.hooks} >= {moment, "pre_terminate"}


def test_the_hooks_leave_no_process_behind(app: App) -> None:
    """A hook that times out takes what it started with it (its process group)."""
    phoenix.deploy(app.spec())
    app.set("hooks:\n", "hooks:\n  pre_switch:\n"
                        "    - {run: 'sleep 300 & echo $! > bg.pid; sleep 300', timeout: 1s,"
                        " on_failure: abort}\n")
    app.change_image("release two")
    with pytest.raises(DeployFailed, match="timed out after 1s"):
        phoenix.deploy(app.spec())
    child = int((app.root / "bg.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
