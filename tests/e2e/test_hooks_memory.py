"""Lifecycle hooks end to end on the in-memory cloud: each moment fires with its facts,
in order; an abort hook rolls back with the old release serving; continue only warns;
a rerun after a crash does not run a completed hook again; a restore never stops for a
failing hook. The hooks are real shell commands that append to a file in the spec's
folder (where hooks run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import phoenix
from phoenix.errors import DeployFailed
from phoenix.results import HookOutcome

from .conftest import REGION, SimulatedCrash, World, make_world

MOMENTS = ("pre_create", "post_healthy", "pre_switch", "post_switch", "pre_drain",
           "pre_terminate", "post_deploy", "on_rollback")
# One line per hook run: the moment and the facts, as the hook saw them in its env.
LOG = ('echo "$PHOENIX_HOOK_MOMENT|${PHOENIX_NODE_NAME-}|${PHOENIX_NODE_ADDRESS-}|'
       '$PHOENIX_RELEASE|$PHOENIX_PREVIOUS_RELEASE|$PHOENIX_APP|$PHOENIX_REGION" >> hooks.log')


def hooks_yaml(extra: dict[str, list[str]] | None = None, *, log: bool = True) -> str:
    """A top-level ``hooks:`` with the logging hook at every moment, plus ``extra``
    hooks (YAML flow mappings) after it at their moments."""
    lines = ["hooks:"]
    for moment in MOMENTS:
        items = ([f"{{run: {json.dumps(LOG)}}}"] if log else []) + (extra or {}).get(moment, [])
        if items:
            lines.append(f"  {moment}:")
            lines += [f"    - {item}" for item in items]
    return "\n".join(lines)


def deploy(world: World, spec: phoenix.Spec) -> phoenix.DeployResult:
    return phoenix.deploy(spec, provider=world.provider(), clock=world.clock)


def ran(world: World) -> list[list[str]]:
    path = world.tmp / "hooks.log"
    return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []


def moments(world: World) -> list[str]:
    return [fields[0] for fields in ran(world)]


def spec_with(world: World, hooks: str, **values: Any) -> phoenix.Spec:
    return world.spec(extra_rollout=hooks, **values)


def first_release(world: World, hooks: str = "") -> phoenix.DeployResult:
    result = deploy(world, spec_with(world, hooks))
    (world.tmp / "hooks.log").unlink(missing_ok=True)
    return result


def old_and_new_serving(world: World, old: str) -> None:
    assert set(world.serving().values()) == {old}
    assert len(world.serving()) == 3
    assert {s.release for s in world.live_servers()} == {old}


def test_each_moment_fires_with_its_facts_in_order(world: World) -> None:
    first = first_release(world, hooks_yaml())
    old_nodes = {s.name: s.address for s in world.live_servers()}
    second = deploy(world, spec_with(world, hooks_yaml(), greeting="v2"))
    new, old = second.release, first.release
    seen = moments(world)
    # Blue-green: the new fleet is built and proven, the switch, the old fleet leaves.
    assert seen == (["pre_create"] * 3 + ["post_healthy"] * 3 + ["pre_switch"]
                    + ["pre_drain"] * 3 + ["post_switch"] + ["pre_terminate"] * 3
                    + ["post_deploy"])
    for moment, node, address, release, previous, app, region in ran(world):
        assert (release, previous, app, region) == (new, old, "web", REGION)
        if moment in ("pre_create", "post_healthy"):
            assert node.startswith(f"web-{new}-")
        elif moment in ("pre_drain", "pre_terminate"):
            assert node in old_nodes and address == old_nodes[node] and address
        else:
            assert node == "" and address == ""  # per-release moments name no node
    # The result and the history record list every hook, in the order they ran.
    assert [(h.moment, h.outcome) for h in second.hooks] == [
        (m, HookOutcome.OK) for m in seen]
    assert {h.node for h in second.hooks if h.moment == "pre_terminate"} == set(old_nodes)
    record = phoenix.history(world.spec(), provider=world.provider(), clock=world.clock)[-1]
    assert [h["moment"] for h in record.hooks] == seen
    assert record.hooks[0]["hook"].startswith("run: echo")
    # The marks of a run that ended cleanly are gone from the store.
    assert not world.cloud.provider().store.list("apps/web/hooks/")


def test_the_facts_come_as_json_on_stdin_and_hooks_run_in_the_spec_folder(
    world: World,
) -> None:
    first_release(world)
    hooks = hooks_yaml({"pre_terminate": ['{run: "cat >> stdin.jsonl; pwd > where"}']},
                       log=False)
    result = deploy(world, spec_with(world, hooks, greeting="v2"))
    facts = [json.loads(line) for line in (world.tmp / "stdin.jsonl").read_text().splitlines()]
    assert len(facts) == 3
    assert {f["moment"] for f in facts} == {"pre_terminate"}
    assert {f["release"] for f in facts} == {result.release}
    assert {f["node"]["release"] for f in facts} == {result.previous_release}
    assert all(f["node"]["address"] and f["app"] == "web" for f in facts)
    assert Path((world.tmp / "where").read_text().strip()) == world.tmp.resolve()


def test_an_unchanged_rerun_runs_no_switch_hooks(world: World) -> None:
    spec = spec_with(world, hooks_yaml())
    deploy(world, spec)
    (world.tmp / "hooks.log").unlink()
    again = deploy(world, spec)
    assert again.outcome == "unchanged"
    assert moments(world) == ["post_deploy"]  # nothing built, switched or removed


@pytest.mark.parametrize("moment", ["post_healthy", "pre_switch", "post_switch",
                                    "pre_drain", "pre_terminate", "post_deploy"])
def test_an_abort_hook_failing_rolls_back_with_the_old_release_serving(
    world: World, moment: str
) -> None:
    first = first_release(world)
    hooks = hooks_yaml({moment: ['{run: "echo no way; exit 3", on_failure: abort}']})
    with pytest.raises(DeployFailed) as failed:
        deploy(world, spec_with(world, hooks, greeting="v2"))
    assert f"{moment} hook [run: echo no way; exit 3] failed" in str(failed.value)
    assert "exit 3: no way" in str(failed.value)
    old_and_new_serving(world, first.release)
    result = failed.value.result
    assert isinstance(result, phoenix.DeployResult) and result.outcome == "rolled-back"
    failures = [h for h in result.hooks if h.outcome is HookOutcome.FAILED]
    # Per-node moments: every node of the poll tried (each one failed), none went on.
    assert failures and {(h.moment, h.detail) for h in failures} == {(moment, "exit 3: no way")}
    assert moments(world)[-1] == "on_rollback"
    record = phoenix.history(world.spec(), provider=world.provider(), clock=world.clock)[-1]
    assert record.outcome == "rolled-back"
    assert "failed" in [h["outcome"] for h in record.hooks if h["moment"] == moment]


def test_a_continue_hook_failing_only_warns(world: World) -> None:
    first_release(world)
    hooks = hooks_yaml({"pre_terminate": ['{run: "exit 1", on_failure: continue}'],
                        "pre_switch": ['{run: "exit 2", on_failure: continue}']}, log=False)
    result = deploy(world, spec_with(world, hooks, greeting="v2"))
    assert result.outcome == "succeeded"
    assert set(world.serving().values()) == {result.release}
    assert [(h.moment, h.outcome) for h in result.hooks] == (
        [("pre_switch", HookOutcome.WARNED)] + [("pre_terminate", HookOutcome.WARNED)] * 3)


def test_a_timeout_fails_the_hook(world: World) -> None:
    first = first_release(world)
    hooks = hooks_yaml({"pre_switch": ['{run: "sleep 30", timeout: 0.3s}']}, log=False)
    with pytest.raises(DeployFailed) as failed:
        deploy(world, spec_with(world, hooks, greeting="v2"))
    assert "timed out after 0.3s" in str(failed.value)
    old_and_new_serving(world, first.release)


def test_a_restore_never_stops_for_a_failing_hook(world: World) -> None:
    first = first_release(world)
    # Every moment a restore meets fails, abort or not: the restore goes on regardless.
    failing = '{run: "exit 9", on_failure: abort}'
    hooks = hooks_yaml({m: [failing] for m in
                        ("pre_switch", "pre_drain", "pre_terminate", "on_rollback",
                         "post_healthy")})
    with pytest.raises(DeployFailed) as failed:
        deploy(world, spec_with(world, hooks, greeting="v2"))
    old_and_new_serving(world, first.release)
    result = failed.value.result
    assert isinstance(result, phoenix.DeployResult)
    # The post_healthy failures (one per new node) stopped the deploy; every failure of
    # the restore after them was a warning.
    outcomes = [(h.moment, h.outcome) for h in result.hooks if h.hook == "run: exit 9"]
    assert outcomes[:3] == [("post_healthy", HookOutcome.FAILED)] * 3
    assert {o for _, o in outcomes[3:]} == {HookOutcome.WARNED}
    # The restore deleted the new nodes: their pre_terminate hooks ran (and only warned).
    assert {"pre_terminate", "on_rollback"} <= {m for m, _ in outcomes[3:]}


def test_phoenix_rollback_treats_failing_hooks_as_warnings(world: World) -> None:
    first = first_release(world)
    deploy(world, world.spec(greeting="v2"))
    failing = '{run: "exit 4", on_failure: abort}'
    hooks = hooks_yaml({m: [failing] for m in MOMENTS})
    back = phoenix.rollback(spec_with(world, hooks, greeting="v2"), provider=world.provider(),
                            clock=world.clock)
    assert back.outcome == "succeeded" and back.release == first.release
    old_and_new_serving(world, first.release)
    failed = [h for h in back.hooks if h.hook == "run: exit 4"]
    assert failed and {h.outcome for h in failed} == {HookOutcome.WARNED}
    assert "on_rollback" in {h.moment for h in failed}
    assert "post_deploy" not in moments(world)
    assert moments(world)[-1] == "on_rollback"


def _first_delete(tmp: Path, hooks: str) -> int:
    """The number of the first server delete in a second deploy (a scratch run)."""
    probe = make_world(tmp)
    deploy(probe, spec_with(probe, hooks))
    probe.mutations = 0
    probe.trace.clear()
    deploy(probe, spec_with(probe, hooks, greeting="v2"))
    return probe.trace.index("delete_node") + 1


def test_a_rerun_after_a_crash_does_not_run_completed_hooks_again(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    hooks = hooks_yaml()
    crash_at = _first_delete(tmp_path_factory.mktemp("probe"), hooks)
    world = make_world(tmp_path_factory.mktemp("crash"))
    first = first_release(world, hooks)
    world.mutations = 0
    world.crash_before = crash_at  # killed right before the first old server's delete
    with pytest.raises(SimulatedCrash):
        deploy(world, spec_with(world, hooks, greeting="v2"))
    before = moments(world)
    assert before.count("pre_terminate") == 3  # the poll's hooks ran, then the crash
    world.crash_before = None
    world.clock.advance(1)
    result = deploy(world, spec_with(world, hooks, greeting="v2"))  # the rerun
    assert set(world.serving().values()) == {result.release} != {first.release}
    after = moments(world)[len(before):]
    # Nothing that completed ran again: only post_deploy (the rerun's own success).
    assert after == ["post_deploy"]
    # What the rerun found done: the switch, and the hooks of the deletes it still had
    # to make (the crash stopped one delete; the poll's others went through).
    earlier = [h for h in result.hooks if h.outcome is HookOutcome.DONE_EARLIER]
    assert earlier[0].moment == "post_switch"
    assert earlier[1:] and {h.moment for h in earlier[1:]} == {"pre_terminate"}
    assert {h.node for h in earlier[1:]} <= {
        line[1] for line in ran(world) if line[0] == "pre_terminate"}


def test_a_crash_while_nodes_boot_does_not_rerun_their_pre_create(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    hooks = hooks_yaml()
    world = make_world(tmp_path_factory.mktemp("boot"))
    first_release(world, hooks)
    world.mutations = 0
    world.crash_before = 1  # killed right before the first create (the others go on)
    with pytest.raises(SimulatedCrash):
        deploy(world, spec_with(world, hooks, greeting="v2"))
    assert moments(world) == ["pre_create"] * 3
    world.crash_before = None
    world.clock.advance(1)
    result = deploy(world, spec_with(world, hooks, greeting="v2"))
    assert result.outcome == "succeeded"
    assert moments(world).count("pre_create") == 3
    rerun = [h.outcome for h in result.hooks if h.moment == "pre_create"]
    assert rerun and set(rerun) == {HookOutcome.DONE_EARLIER}


def test_a_fresh_deploy_after_a_rollback_runs_its_hooks_again(world: World) -> None:
    """Marks belong to a run: the rolled-back run's do not silence the next attempt."""
    first_release(world)
    hooks = hooks_yaml({"pre_switch": ['{run: "test -e ok"}']})
    with pytest.raises(DeployFailed):
        deploy(world, spec_with(world, hooks, greeting="v2"))
    assert moments(world).count("pre_create") == 3
    (world.tmp / "ok").write_text("")
    result = deploy(world, spec_with(world, hooks, greeting="v2"))
    assert result.outcome == "succeeded"
    assert moments(world).count("pre_create") == 6
    assert all(h.outcome is HookOutcome.OK for h in result.hooks)


def test_a_repave_runs_the_node_hooks_but_no_release_hooks(world: World) -> None:
    """A repave replaces nodes without changing the release: each old node is still
    backed up before it goes, but nothing is switched or deployed."""
    spec = spec_with(world, hooks_yaml())
    first = deploy(world, spec)
    (world.tmp / "hooks.log").unlink()
    result = phoenix.repave(spec, provider=world.provider(), clock=world.clock)
    assert result.outcome == "succeeded"
    seen = moments(world)
    assert set(seen) == {"pre_create", "post_healthy", "pre_drain", "pre_terminate"}
    assert seen.count("pre_terminate") == 3
    assert {line[3] for line in ran(world)} == {first.release}
