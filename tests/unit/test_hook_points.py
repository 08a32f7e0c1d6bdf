"""``HookPoints`` with a recording runner instead of processes: which steps get which
hooks, with which facts, and that a step planned again in a later poll is not hooked
twice."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phoenix.hook_points import HookPoints
from phoenix.hooks import HookFacts, HookResult
from phoenix.model import Node, NodeState
from phoenix.planner import Observed, Target
from phoenix.providers.memory import MemoryCloud
from phoenix.spec import Spec
from phoenix.spec_hooks import HOOK_MOMENTS
from phoenix.steps import AddMember, CreateNode, DeleteNode, DrainMember, StampServing

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def spec(tmp_path: Path) -> Spec:
    return Spec.model_validate({
        "app": "web", "regions": ["r1"], "image": {"name": "i"}, "flavor": "f", "count": 2,
        "template": "t", "health": {"http": {"port": 80}},
        "load_balancer": {"pool": "p", "member_port": 80},
        "hooks": {moment: [{"run": f"echo {moment}"}] for moment in HOOK_MOMENTS},
    })


def node(name: str, release: str, address: str | None) -> Node:
    return Node(id=f"id-{name}", name=name, region="r1", app="web", release=release, index=0,
                state=NodeState.ACTIVE, created_at=NOW, address=address)


class Recorder:
    def __init__(self) -> None:
        self.facts: list[HookFacts] = []

    def __call__(self, hook: Any, facts: HookFacts, **kwargs: Any) -> HookResult:
        self.facts.append(facts)
        return HookResult(True, 0.0, "")


def points(tmp_path: Path) -> tuple[HookPoints, Recorder]:
    recorder = Recorder()
    store = MemoryCloud(("r1",)).provider().store
    hook_points = HookPoints(spec(tmp_path), store, region="r1", deploy_id="d-1",
                             runner=recorder)
    return hook_points, recorder


def target(release: str) -> Target:
    s = spec(Path("."))
    return Target(app="web", region="r1", release=release, count=2, rollout=s.rollout,
                  health=s.health, member_port=80)


def test_each_step_gets_its_moment_with_the_nodes_facts(tmp_path: Path) -> None:
    hooks, recorder = points(tmp_path)
    hooks.begin("deploy", "r2", ("r1", 2), None)
    observed = Observed("r1", (node("web-r1-0", "r1", "10.0.0.1"),
                               node("web-r1-1", "r1", None),
                               node("web-r2-0", "r2", "10.0.0.3")), ())
    hooks.look(target("r2"), observed)
    hooks.before([CreateNode("web-r2-1", 1, 0), AddMember("web-r2-0", "10.0.0.3", 80),
                  StampServing("id-web-r2-0", "web-r2-0"),
                  DrainMember("id-web-r1-0", "web-r1-0", "replaced"),
                  DeleteNode("id-web-r1-0", "web-r1-0", "replaced"),
                  DeleteNode("id-web-r1-1", "web-r1-1", "replaced")])  # no address: no hook
    seen = sorted((f.moment, f.node_name, f.node_address, f.node_release)
                  for f in recorder.facts)
    assert seen == sorted([
        ("pre_create", "web-r2-1", None, "r2"),
        ("post_healthy", "web-r2-0", "10.0.0.3", "r2"),
        ("pre_switch", None, None, None),
        ("pre_drain", "web-r1-0", "10.0.0.1", "r1"),
        ("pre_terminate", "web-r1-0", "10.0.0.1", "r1"),
    ], key=str)
    assert {(f.release, f.previous_release, f.action) for f in recorder.facts} == {
        ("r2", "r1", "deploy")}


def test_a_step_planned_again_is_not_hooked_twice(tmp_path: Path) -> None:
    hooks, recorder = points(tmp_path)
    hooks.begin("deploy", "r2", ("r1", 2), None)
    hooks.look(target("r2"), Observed("r1", (node("web-r2-0", "r2", "10.0.0.3"),), ()))
    for _ in range(3):  # the balancer did not take the add: the next polls plan it again
        hooks.before([AddMember("web-r2-0", "10.0.0.3", 80)])
    assert [f.moment for f in recorder.facts] == ["post_healthy", "pre_switch"]
    assert [run.moment for run in hooks.runs] == ["post_healthy", "pre_switch"]


def test_a_restore_builds_the_old_release_without_switch_hooks(tmp_path: Path) -> None:
    hooks, recorder = points(tmp_path)
    hooks.begin("deploy", "r2", ("r1", 2), None)
    hooks.restoring()
    hooks.look(target("r1"), Observed("r1", (node("web-r1-0", "r1", "10.0.0.1"),), ()))
    hooks.before([CreateNode("web-r1-1", 1, 0), AddMember("web-r1-0", "10.0.0.1", 80)])
    assert sorted((f.moment, f.node_release) for f in recorder.facts) == [
        ("post_healthy", "r1"), ("pre_create", "r1")]


def test_pre_switch_waits_for_a_member_of_the_runs_release(tmp_path: Path) -> None:
    hooks, recorder = points(tmp_path)
    hooks.begin("deploy", "r2", ("r1", 2), None)
    hooks.look(target("r2"), Observed("r1", (node("web-r1-0", "r1", "10.0.0.1"),
                                              node("web-r2-0", "r2", "10.0.0.3")), ()))
    hooks.before([AddMember("web-r1-0", "10.0.0.1", 80)])  # an old member back: no switch
    assert [f.moment for f in recorder.facts] == ["post_healthy"]
    hooks.before([AddMember("web-r2-0", "10.0.0.3", 80)])
    assert [f.moment for f in recorder.facts] == ["post_healthy", "post_healthy", "pre_switch"]
