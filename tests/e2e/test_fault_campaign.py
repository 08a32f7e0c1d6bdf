"""Converge from anywhere (issue 11): a seeded fault campaign over every strategy,
``keep_previous`` and two regions with ``dns:`` (``tests/e2e/campaign.py`` says what is
drawn and what is checked), and self-tests showing the checker catches a broken engine.

The long run is ``python bench/bench_fault_campaign.py --deploys 2000 --seed 1``; a failure
here prints, per violation class, the command that replays one scenario showing it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from phoenix import engine as engine_module
from phoenix.engine import Engine
from phoenix.planner import Observed, Target
from phoenix.regions import RegionMover
from phoenix.steps import Phase, Plan, RemoveMember

from .campaign import Config, DeployFaults, Scenario, run_campaign

SEED = 1
DEPLOYS = 300  # about 15 s on two cores; the bench runs 2,000


def test_the_fault_campaign_finds_no_violation(tmp_path: Path) -> None:
    summary = run_campaign(SEED, deploys=DEPLOYS, tmp=tmp_path)
    assert summary.deploys >= DEPLOYS and summary.crashes and summary.exits["1"]
    reports = [found[0].report() for found in summary.violations.values()]
    assert not summary.violation_count, summary.render() + "\n\n" + "\n\n".join(reports)


@pytest.mark.parametrize("index", [3, 4, 6])
def test_a_scenario_replays_exactly_from_seed_and_index(tmp_path: Path, index: int) -> None:
    first = Scenario(SEED, index, tmp_path / "one").run()
    again = Scenario(SEED, index, tmp_path / "two").run()
    assert first.transcript == again.transcript
    assert first.deploys > 2


# --- the checker, mutation-checked: break Phoenix on purpose, the campaign must notice ---

BLUE_GREEN = Config("blue-green", "", count=3, keep_previous=0)


def _scripted(tmp: Path, steps: list[str], *, bad_image: bool = False) -> Scenario:
    scenario = Scenario(SEED, 0, tmp, config=BLUE_GREEN)

    def script(s: Scenario) -> None:
        s.converge(1)
        for step in steps:
            if step == "v2":
                s.converge(2)
            elif step == "v2 under faults":
                s.deploy_under(2, DeployFaults(bad_image="unhealthy" if bad_image else None))

    scenario.run(script)
    return scenario


def test_the_checker_catches_a_planner_that_stops_with_members_draining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _scripted(tmp_path / "control", ["v2"]).report.violation is None
    real_plan = engine_module.plan

    def skips_remove_member(target: Target, observed: Observed, now: object) -> Plan:
        found = real_plan(target, observed, now)  # type: ignore[arg-type]
        kept = tuple(s for s in found.steps if not isinstance(s, RemoveMember))
        if found.phase is Phase.PROGRESSING and not kept:
            return Plan(Phase.CONVERGED)  # "nothing left to do"
        return dataclasses.replace(found, steps=kept)

    monkeypatch.setattr(engine_module, "plan", skips_remove_member)
    violation = _scripted(tmp_path / "broken", ["v2"]).report.violation
    assert violation is not None
    assert violation.kind == "exit 0: member left draining", violation.report()
    assert "--seed 1 --index 0" in violation.command


def test_the_checker_catches_an_engine_that_skips_the_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    control = _scripted(tmp_path / "control", ["v2 under faults"], bad_image=True)
    assert control.report.violation is None, control.report.violation
    assert control.report.exits["1"] >= 1  # the bad image was rolled back
    monkeypatch.setattr(Engine, "_restore", lambda self, *args, **kwargs: True)
    violation = _scripted(tmp_path / "broken", ["v2 under faults"],
                          bad_image=True).report.violation
    assert violation is not None
    assert violation.kind.startswith("exit 1: "), violation.report()
    assert "failed release" in violation.detail


def test_the_checker_catches_a_region_move_without_a_region_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = Scenario(SEED, 0, tmp_path, config=BLUE_GREEN)

    def script(s: Scenario) -> None:
        s.converge(1)
        # A mover that tries the other region first: DNS moves with nothing wrong.
        monkeypatch.setattr(RegionMover, "_order",
                            lambda self, *, first: list(reversed(self.spec.regions)))
        s.deploy_under(2, DeployFaults())

    violation = scenario.run(script).violation
    assert violation is not None
    assert violation.kind.startswith("region move without a region fault"), violation.report()
