"""The planner, as data in and steps out: tables for each situation, hypothesis for invariants."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from phoenix.model import (
    META_DRAIN_SINCE,
    META_SERVING_SINCE,
    Health,
    Member,
    MemberState,
    Node,
    NodeHealth,
    NodeState,
)
from phoenix.planner import Observed, Target, node_name, plan
from phoenix.rollout_math import surge_and_unavailable
from phoenix.spec import CanarySpec, HealthSpec, HttpCheck, RolloutSpec
from phoenix.steps import (
    AddMember,
    CreateNode,
    DeleteNode,
    DrainMember,
    Phase,
    RemoveMember,
    StampServing,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
OLD, NEW = "r1-aaaaaaaa", "r2-bbbbbbbb"
HEALTH = HealthSpec(http=HttpCheck(port=8080), deadline=300)


def target(count: int = 3, keep: tuple[str, ...] = (), **rollout: object) -> Target:
    return Target(
        app="web",
        region="r",
        release=NEW,
        count=count,
        rollout=RolloutSpec(**rollout),  # type: ignore[arg-type]
        health=HEALTH,
        member_port=8080,
        keep_releases=keep,
    )


def node(
    release: str,
    index: int,
    state: NodeState = NodeState.ACTIVE,
    *,
    attempt: int = 0,
    age: float = 60,
    serving_since: float | None = None,
    drain_since: float | None = None,
) -> Node:
    metadata = {}
    if serving_since is not None:
        metadata[META_SERVING_SINCE] = (NOW - timedelta(seconds=serving_since)).isoformat()
    if drain_since is not None:
        metadata[META_DRAIN_SINCE] = (NOW - timedelta(seconds=drain_since)).isoformat()
    name = node_name("web", release, index, attempt)
    return Node(
        id=f"id-{name}",
        name=name,
        region="r",
        app="web",
        release=release,
        index=index,
        state=state,
        created_at=NOW - timedelta(seconds=age),
        address=f"127.0.0.{index + 10}",
        attempt=attempt,
        fault="boom" if state is NodeState.ERROR else None,
        metadata=metadata,
    )


def member(n: Node, state: MemberState = MemberState.SERVING, conns: int | None = 0) -> Member:
    return Member(n.name, n.address or "", 8080, state, conns)


def observed(
    nodes: list[Node], members: list[Member], health: dict[str, Health] | None = None
) -> Observed:
    default = {n.name: Health.HEALTHY for n in nodes if n.state is NodeState.ACTIVE}
    default.update(health or {})
    return Observed(
        "r", tuple(nodes), tuple(members), {k: NodeHealth(v) for k, v in default.items()}
    )


def serving_fleet(release: str, count: int, since: float = 600) -> tuple[list[Node], list[Member]]:
    nodes = [node(release, i, serving_since=since) for i in range(count)]
    return nodes, [member(n) for n in nodes]


def kinds(steps: tuple[object, ...]) -> list[str]:
    return [type(s).__name__ for s in steps]


# --- tables ---------------------------------------------------------------------------


def test_empty_region_builds_every_node_with_deterministic_names() -> None:
    result = plan(target(), observed([], []), NOW)
    assert result.phase is Phase.PROGRESSING
    assert result.steps == tuple(CreateNode(f"web-{NEW}-{i}", i, 0) for i in range(3))


def test_building_nodes_mean_waiting() -> None:
    nodes = [node(NEW, i, NodeState.BUILD, age=5) for i in range(3)]
    result = plan(target(), observed(nodes, []), NOW)
    assert result.phase is Phase.WAITING
    assert f"web-{NEW}-0 to boot" in result.waiting_for


def test_healthy_new_nodes_join_the_pool_unhealthy_unknown_ones_wait() -> None:
    nodes = [node(NEW, i) for i in range(3)]
    health = {nodes[2].name: Health.UNKNOWN}
    result = plan(target(), observed(nodes, [], health), NOW)
    assert result.steps == (
        AddMember(nodes[0].name, "127.0.0.10", 8080),
        AddMember(nodes[1].name, "127.0.0.11", 8080),
    )


def test_serving_nodes_get_stamped() -> None:
    nodes = [node(NEW, i) for i in range(3)]
    result = plan(target(), observed(nodes, [member(n) for n in nodes]), NOW)
    assert kinds(result.steps) == ["StampServing"] * 3


def test_blue_green_keeps_old_serving_until_the_whole_new_fleet_serves() -> None:
    old_nodes, old_members = serving_fleet(OLD, 3)
    new_nodes = [node(NEW, i, serving_since=10) for i in range(2)] + [
        node(NEW, 2, NodeState.BUILD, age=5)
    ]
    result = plan(target(), observed(old_nodes + new_nodes, old_members + [
        member(n) for n in new_nodes[:2]
    ]), NOW)
    assert not any(isinstance(s, DrainMember | RemoveMember | DeleteNode) for s in result.steps)
    assert result.phase is Phase.WAITING


def test_blue_green_switches_all_at_once() -> None:
    old_nodes, old_members = serving_fleet(OLD, 3)
    new_nodes, new_members = serving_fleet(NEW, 3, since=10)
    result = plan(target(), observed(old_nodes + new_nodes, old_members + new_members), NOW)
    assert sorted(s.name for s in result.steps if isinstance(s, DrainMember)) == sorted(
        n.name for n in old_nodes
    )
    assert kinds(result.steps) == ["DrainMember"] * 3


def test_drained_member_leaves_when_idle_waits_while_busy_and_leaves_at_timeout() -> None:
    new_nodes, new_members = serving_fleet(NEW, 3, since=10)
    old = node(OLD, 0, drain_since=5)
    idle = plan(target(), observed([old, *new_nodes], [
        member(old, MemberState.DRAINING, 0), *new_members
    ]), NOW)
    assert idle.steps == (RemoveMember(old.name, "drained"),)

    busy = plan(target(drain_timeout=30), observed([old, *new_nodes], [
        member(old, MemberState.DRAINING, 4), *new_members
    ]), NOW)
    assert busy.phase is Phase.WAITING
    assert busy.wake_at == NOW + timedelta(seconds=25)

    late = plan(target(drain_timeout=3), observed([old, *new_nodes], [
        member(old, MemberState.DRAINING, 4), *new_members
    ]), NOW)
    assert late.steps == (RemoveMember(old.name, "drain timeout"),)


def test_old_nodes_out_of_the_pool_are_deleted_then_converged() -> None:
    new_nodes, new_members = serving_fleet(NEW, 3, since=10)
    old = node(OLD, 0, drain_since=5)
    result = plan(target(), observed([old, *new_nodes], new_members), NOW)
    assert result.steps == (DeleteNode(old.id, old.name, f"replaced by {NEW}"),)
    done = plan(target(), observed(new_nodes, new_members), NOW)
    assert done.phase is Phase.CONVERGED and done.steps == ()


def test_deleting_nodes_are_ignored_for_convergence() -> None:
    new_nodes, new_members = serving_fleet(NEW, 3, since=10)
    gone = node(OLD, 0, NodeState.DELETING)
    assert plan(target(), observed([gone, *new_nodes], new_members), NOW).converged


def test_boot_failure_is_replaced_then_the_failed_node_deleted() -> None:
    broken = node(NEW, 0, NodeState.ERROR)
    result = plan(target(count=1), observed([broken], []), NOW)
    assert result.steps == (
        CreateNode(f"web-{NEW}-0-b1", 0, 1, f"replaces {broken.name}: boom"),
    )
    replacement = node(NEW, 0, NodeState.BUILD, attempt=1, age=1)
    after = plan(target(count=1), observed([broken, replacement], []), NOW)
    assert after.steps == (DeleteNode(broken.id, broken.name, "failed to boot"),)


def test_boot_failures_beyond_the_retry_limit_fail_the_deploy() -> None:
    broken = node(NEW, 0, NodeState.ERROR, attempt=2)
    result = plan(target(count=1, max_boot_retries=2), observed([broken], []), NOW)
    assert result.phase is Phase.FAILED
    assert "failed 3 time(s)" in (result.failure or "")


def test_unhealthy_new_node_fails_the_deploy() -> None:
    old_nodes, old_members = serving_fleet(OLD, 2)
    sick = node(NEW, 0)
    result = plan(
        target(count=2), observed([*old_nodes, sick], old_members, {sick.name: Health.UNHEALTHY}),
        NOW,
    )
    assert result.phase is Phase.FAILED
    assert sick.name in (result.failure or "")


def test_health_deadline_fails_the_deploy() -> None:
    slow = node(NEW, 0, age=301)
    result = plan(target(count=1), observed([slow], [], {slow.name: Health.UNKNOWN}), NOW)
    assert result.phase is Phase.FAILED
    assert "health.deadline" in (result.failure or "")


def test_sick_serving_node_of_the_current_release_is_replaced() -> None:
    nodes, members = serving_fleet(NEW, 2, since=100)
    result = plan(target(count=2), observed(nodes, members, {nodes[1].name: Health.UNHEALTHY}),
                  NOW)
    assert result.steps == (
        CreateNode(
            f"web-{NEW}-1-b1", 1, 1, f"replaces {nodes[1].name}: no detail from the provider"
        ),
    )


def test_rolling_respects_surge_and_availability() -> None:
    old_nodes, old_members = serving_fleet(OLD, 4)
    t = target(count=4, strategy="rolling", max_surge=1, max_unavailable=0)
    first = plan(t, observed(old_nodes, old_members), NOW)
    assert first.steps == (CreateNode(f"web-{NEW}-0", 0, 0),)

    new0 = node(NEW, 0, serving_since=5)
    second = plan(t, observed([*old_nodes, new0], [*old_members, member(new0)]), NOW)
    drains = [s for s in second.steps if isinstance(s, DrainMember)]
    assert len(drains) == 1
    assert not any(isinstance(s, CreateNode) for s in second.steps)


def test_rolling_with_unavailability_drains_before_building() -> None:
    old_nodes, old_members = serving_fleet(OLD, 3)
    t = target(count=3, strategy="rolling", max_surge=0, max_unavailable=1)
    result = plan(t, observed(old_nodes, old_members), NOW)
    assert kinds(result.steps) == ["DrainMember"]


def test_canary_builds_one_bakes_then_builds_the_rest() -> None:
    old_nodes, old_members = serving_fleet(OLD, 3)
    t = target(strategy="canary", canary=CanarySpec(size=1, bake=60))
    first = plan(t, observed(old_nodes, old_members), NOW)
    assert first.steps == (CreateNode(f"web-{NEW}-0", 0, 0),)

    canary = node(NEW, 0, serving_since=20)
    baking = plan(t, observed([*old_nodes, canary], [*old_members, member(canary)]), NOW)
    assert baking.phase is Phase.WAITING
    assert baking.wake_at == NOW + timedelta(seconds=40)

    baked = node(NEW, 0, serving_since=61)
    rest = plan(t, observed([*old_nodes, baked], [*old_members, member(baked)]), NOW)
    assert rest.steps == (CreateNode(f"web-{NEW}-1", 1, 0), CreateNode(f"web-{NEW}-2", 2, 0))


def test_stray_member_is_removed() -> None:
    nodes, members = serving_fleet(NEW, 1, since=10)
    ghost = Member(f"web-{OLD}-7", "127.0.0.99", 8080)
    result = plan(target(count=1), observed(nodes, [*members, ghost]), NOW)
    assert result.steps == (RemoveMember(ghost.name, "its server is gone"),)


def test_kept_previous_release_stays_up_out_of_the_pool() -> None:
    new_nodes, new_members = serving_fleet(NEW, 2, since=10)
    standby = [node(OLD, i, drain_since=100) for i in range(2)]
    result = plan(target(count=2, keep=(OLD,), keep_previous=1),
                  observed([*standby, *new_nodes], new_members), NOW)
    assert result.converged


def test_rollback_target_re_enables_drained_members() -> None:
    """Rolling back means planning towards the old release: its drained members return."""
    old = [node(OLD, i, serving_since=600, drain_since=3) for i in range(2)]
    failed = [node(NEW, i, serving_since=10) for i in range(2)]
    members = [member(n, MemberState.DRAINING, 3) for n in old] + [member(n) for n in failed]
    back = Target("web", "r", OLD, 2, RolloutSpec(), HEALTH, 8080)
    result = plan(back, observed([*old, *failed], members), NOW)
    assert kinds(result.steps) == ["AddMember", "AddMember"]


def test_re_enabled_member_gets_restamped() -> None:
    old = node(OLD, 0, serving_since=600, drain_since=3)
    back = Target("web", "r", OLD, 1, RolloutSpec(), HEALTH, 8080)
    result = plan(back, observed([old], [member(old)]), NOW)
    assert result.steps == (StampServing(old.id, old.name),)


def test_unhealthy_old_members_are_not_drained_before_the_new_fleet_serves() -> None:
    """A wrong health check in the new spec must not take the old fleet down."""
    old_nodes, old_members = serving_fleet(OLD, 3)
    sick = {n.name: Health.UNHEALTHY for n in old_nodes}
    result = plan(target(), observed(old_nodes, old_members, sick), NOW)
    assert kinds(result.steps) == ["CreateNode"] * 3


def test_rolling_retires_unhealthy_old_members_first_as_replacements_serve() -> None:
    old_nodes, old_members = serving_fleet(OLD, 3)
    new0 = node(NEW, 0, serving_since=5)
    health = {old_nodes[0].name: Health.UNHEALTHY}
    t = target(count=3, strategy="rolling", max_surge=1, max_unavailable=0)
    result = plan(t, observed([*old_nodes, new0], [*old_members, member(new0)], health), NOW)
    drains = [s for s in result.steps if isinstance(s, DrainMember)]
    assert [d.name for d in drains] == [old_nodes[0].name]
    assert drains[0].reason.startswith("unhealthy")


def test_restore_takes_serving_members_as_they_are() -> None:
    old = [node(OLD, i, serving_since=600) for i in range(2)]
    failed = node(NEW, 0)
    back = Target("web", "r", OLD, 2, RolloutSpec(), HEALTH, 8080, restore=True)
    sick = {n.name: Health.UNHEALTHY for n in [*old, failed]}
    result = plan(back, observed([*old, failed], [member(n) for n in old], sick), NOW)
    assert result.steps == (DeleteNode(failed.id, failed.name, f"replaced by {OLD}"),)


def test_restore_re_enables_drained_members_whatever_the_check_says() -> None:
    old = node(OLD, 0, serving_since=600, drain_since=3)
    back = Target("web", "r", OLD, 1, RolloutSpec(), HEALTH, 8080, restore=True)
    result = plan(back, observed([old], [member(old, MemberState.DRAINING, 2)],
                                 {old.name: Health.UNHEALTHY}), NOW)
    assert kinds(result.steps) == ["AddMember"]


def test_old_members_stay_until_new_ones_are_online_in_the_load_balancer() -> None:
    """Added is not enough: the balancer's own check must let the new members in."""
    old_nodes, old_members = serving_fleet(OLD, 2)
    new_nodes, _ = serving_fleet(NEW, 2, since=5)
    pending = [Member(n.name, n.address or "", 8080, online=False) for n in new_nodes]
    result = plan(target(count=2), observed([*old_nodes, *new_nodes], [*old_members, *pending]),
                  NOW)
    assert result.phase is Phase.WAITING
    assert f"{new_nodes[0].name} to come online in the load balancer" in result.waiting_for
    online = [Member(n.name, n.address or "", 8080, online=True) for n in new_nodes]
    result = plan(target(count=2), observed([*old_nodes, *new_nodes], [*old_members, *online]),
                  NOW)
    assert kinds(result.steps) == ["DrainMember"] * 2


# --- invariants ---------------------------------------------------------------------


@st.composite
def situations(draw: st.DrawFn) -> tuple[Target, Observed]:
    count = draw(st.integers(1, 5))
    strategy = draw(st.sampled_from(["blue-green", "rolling", "canary"]))
    rollout = RolloutSpec(
        strategy=strategy,
        max_surge=draw(st.sampled_from([0, 1, 2, "25%", "50%"])),
        max_unavailable=draw(st.sampled_from([0, 1, "25%"])),
        canary=CanarySpec(size=draw(st.integers(1, 3)), bake=draw(st.sampled_from([0, 30]))),
        max_boot_retries=draw(st.integers(0, 2)),
    )
    t = Target("web", "r", NEW, count, rollout, HEALTH, 8080)
    nodes: list[Node] = []
    members: list[Member] = []
    health: dict[str, NodeHealth] = {}
    for release in (OLD, NEW):
        for index in draw(st.sets(st.integers(0, 6), max_size=6)):
            state = draw(st.sampled_from(list(NodeState)))
            n = node(
                release,
                index,
                state,
                attempt=draw(st.integers(0, 2)),
                age=draw(st.sampled_from([1, 100, 400])),
                serving_since=draw(st.sampled_from([None, 5, 100])),
                drain_since=draw(st.sampled_from([None, None, 5, 100])),
            )
            nodes.append(n)
            membership = draw(st.sampled_from([None, MemberState.SERVING, MemberState.DRAINING]))
            if membership is not None and state is not NodeState.DELETING:
                m = member(n, membership, draw(st.sampled_from([0, 2, None])))
                members.append(
                    Member(m.name, m.address, m.port, m.state, m.active_connections,
                           draw(st.sampled_from([None, True, False])))
                )
            health[n.name] = NodeHealth(draw(st.sampled_from(list(Health))))
    # A watch's heal limit, a repave's replacement set, a restore: the same invariants.
    t = dataclasses.replace(
        t,
        heal_parallel=draw(st.sampled_from([None, 0, 1, 2])),
        replace=frozenset(n.name for n in nodes if draw(st.booleans())),
        restore=draw(st.sampled_from([False, False, True])),
    )
    return t, Observed("r", tuple(nodes), tuple(members), health)


def _available(t: Target, obs: Observed, drained: set[str]) -> int:
    members = {m.name: m for m in obs.members if m.state is MemberState.SERVING}
    live = [n for n in obs.nodes if n.state is not NodeState.DELETING and n.name in members]
    count = 0
    for n in live:
        if n.name in drained:
            continue
        status = obs.health[n.name].status
        if n.release == t.release and n.index < t.count and t.restore:
            count += 1  # a restore takes serving members as they are (Target.restore)
        elif n.release == t.release and n.index < t.count:
            count += status is Health.HEALTHY
        else:  # old members count unless known sick
            count += status is not Health.UNHEALTHY
    return count


@settings(max_examples=1500, deadline=None)
@given(situations())
def test_invariants_hold_for_any_observed_state(situation: tuple[Target, Observed]) -> None:
    t, obs = situation
    result = plan(t, obs, NOW)
    # Pure and deterministic.
    assert plan(t, obs, NOW) == result
    members = {m.name: m for m in obs.members}
    by_name = {n.name: n for n in obs.nodes}
    surge, unavailable = surge_and_unavailable(t.rollout, t.count)

    creates = [s for s in result.steps if isinstance(s, CreateNode)]
    deletes = {s.name for s in result.steps if isinstance(s, DeleteNode)}
    drains = {s.name for s in result.steps if isinstance(s, DrainMember)}

    # Names are deterministic and never reuse a live server's name.
    for step in creates:
        assert step.name == node_name(t.app, t.release, step.index, step.attempt)
        assert step.name not in by_name

    # A member is always removed from the pool before its server is deleted.
    assert not deletes & set(members)

    # Never more than count + surge nodes (replacements of failed boots aside).
    fresh = [s for s in creates if s.attempt == 0]
    alive = [
        n for n in obs.nodes
        if n.state not in (NodeState.DELETING, NodeState.ERROR) and n.name not in deletes
        and not (n.release != t.release and n.name not in members and n.release in t.keep_releases)
    ]
    if fresh:
        assert len(alive) + len(fresh) <= t.count + surge

    # Availability floor: drains never take healthy service below count - max_unavailable
    # (it may already be lower; then nothing healthy is drained).
    before = _available(t, obs, set())
    after = _available(t, obs, drains)
    assert after >= min(before, t.count - unavailable)

    # Blue-green and canary: a healthy old member is only drained once the whole new
    # release serves healthy; except a stray (a member of a release other than the one
    # that mostly serves, left by an interrupted run), while the main old release's
    # healthy members and the ready new ones still make count.
    if t.rollout.strategy != "rolling":
        healthy_old_drained = [
            name for name in drains
            if obs.health[name].status is not Health.UNHEALTHY
            and members[name].state is MemberState.SERVING
        ]
        if healthy_old_drained:
            ready = [
                n for n in obs.nodes
                if n.release == t.release and n.index < t.count
                and n.state is NodeState.ACTIVE
                and n.name in members and members[n.name].state is MemberState.SERVING
                and members[n.name].online is not False
                and (t.restore or obs.health[n.name].status is Health.HEALTHY)
            ]
            by_name = {n.name: n for n in obs.nodes}
            old_serving = [n for n in obs.nodes if n.release != t.release
                           and n.name in members
                           and members[n.name].state is MemberState.SERVING]
            ranked = Counter(n.release for n in old_serving).most_common()
            clear = len(ranked) >= 2 and ranked[0][1] > ranked[1][1]
            main = ranked[0][0] if clear else None
            healthy_main = [n for n in old_serving if n.release == main
                            and obs.health[n.name].status is Health.HEALTHY]
            strays_may_go = clear and len(healthy_main) + len(ready) >= t.count
            not_strays = [name for name in healthy_old_drained
                          if not (strays_may_go and by_name[name].release != main)]
            if not_strays:
                assert len({n.index for n in ready}) >= t.count

    # The incoming release is never drained or deleted while healthy and current.
    for name in drains | deletes:
        n = by_name[name]
        if n.release == t.release and n.index < t.count and n.state is NodeState.ACTIVE:
            latest = max(
                m.attempt for m in obs.nodes
                if m.release == t.release and m.index == n.index
                and m.state is not NodeState.DELETING
            )
            assert n.attempt < latest


def test_a_gate_deadline_names_the_last_failed_check_too() -> None:
    nodes = [node(NEW, i, age=10_000) for i in range(3)]
    health = {n.name: NodeHealth(Health.UNKNOWN, "HTTP 200 (1/2 successes)", passing=True,
                                 last_failure="connect refused") for n in nodes}
    result = plan(target(), Observed("r", tuple(nodes), (), health), NOW)
    assert result.phase is Phase.FAILED
    assert "HTTP 200 (1/2 successes); the last failed check: connect refused" in (
        result.failure or "")


# --- heal and repave (issue 14) ---------------------------------------------------------


def test_heal_replaces_at_most_heal_parallel_sick_nodes_at_once() -> None:
    nodes, members = serving_fleet(NEW, 3)
    sick = {n.name: Health.UNHEALTHY for n in nodes[:2]}
    healing = dataclasses.replace(target(), heal_parallel=1)

    first = plan(healing, observed(nodes, members, sick), NOW)

    assert [s.name for s in first.steps if isinstance(s, CreateNode)] == [f"web-{NEW}-0-b1"]
    assert any("heal.max_parallel" in w for w in first.waiting_for)
    # While that replacement is under way (the sick node still there), no second one.
    booting = node(NEW, 0, NodeState.BUILD, attempt=1, age=1)
    second = plan(healing, observed([*nodes, booting], members, sick), NOW)
    assert not [s for s in second.steps if isinstance(s, CreateNode)]
    # Without a limit (a deploy), every sick node is replaced at once.
    every = plan(target(), observed(nodes, members, sick), NOW)
    assert len([s for s in every.steps if isinstance(s, CreateNode)]) == 2


def test_repave_builds_fresh_boots_oldest_first_within_the_surge() -> None:
    nodes = [node(NEW, i, serving_since=600, age=age) for i, age in enumerate((50, 300, 200))]
    members = [member(n) for n in nodes]
    repave = dataclasses.replace(
        target(strategy="rolling", max_surge=1, max_unavailable=0),
        replace=frozenset(n.name for n in nodes),
    )

    result = plan(repave, observed(nodes, members), NOW)

    assert result.steps == (CreateNode(f"web-{NEW}-1-b1", 1, 1, f"repaves {nodes[1].name}"),)
    assert "room to repave 2 more node(s)" in result.waiting_for
    # The replacement serves: the node it replaces is drained, the next one waits.
    fresh = node(NEW, 1, attempt=1, serving_since=5, age=10)
    after = plan(repave, observed([*nodes, fresh], [*members, member(fresh)]), NOW)
    assert [s.name for s in after.steps if isinstance(s, DrainMember)] == [nodes[1].name]
    assert not [s for s in after.steps if isinstance(s, CreateNode)]


def test_restore_keeps_the_old_boot_that_serves_over_a_replacement_that_never_joined() -> None:
    nodes, members = serving_fleet(NEW, 2)
    failed = node(NEW, 0, attempt=1, age=30)  # a repave's replacement, never in the pool
    restore = dataclasses.replace(target(count=2), restore=True)

    result = plan(restore, observed([*nodes, failed], members, {failed.name: Health.UNHEALTHY}),
                  NOW)

    assert [s.name for s in result.steps] == [failed.name]  # deleted; the old ones stay
    assert isinstance(result.steps[0], DeleteNode)
