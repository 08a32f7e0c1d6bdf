"""The planner: a pure function from (target, observed cloud, now) to the next steps.

Like Kubernetes' deployment controller, each call re-reads the world and takes one bounded
step towards the target; progress lives in the cloud (tags and metadata on servers, the
load balancer's members), never in memory. There is no I/O, clock or logging here: the
same code serves ``phoenix plan`` (a dry run) and ``phoenix deploy``.

Vocabulary used below:

* **incoming**: the target release's node for each index ``0..count-1`` (its latest boot
  attempt).
* **outgoing**: every other node: other releases, indexes beyond ``count``, superseded
  boot attempts. Outgoing nodes are drained, removed from the pool and deleted.
* **standby**: outgoing nodes of the releases kept for a fast rollback (``keep_previous``);
  they stay up out of the pool and do not count against the surge.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from phoenix.blast import BlastRadius
from phoenix.model import (
    META_DRAIN_SINCE,
    META_SERVING_SINCE,
    TAG_DEPLOY_ID,
    Health,
    Member,
    MemberState,
    Node,
    NodeHealth,
    NodeState,
)
from phoenix.rollout_math import canary_size, surge_and_unavailable
from phoenix.spec import HealthSpec, RolloutSpec
from phoenix.steps import (
    AddMember,
    Counts,
    CreateNode,
    DeleteNode,
    DrainMember,
    Phase,
    Plan,
    RemoveMember,
    StampServing,
    Step,
)
from phoenix.vocabulary import Wait, WaitReason

RETIRED = "retired: the app leaves the region"  # why nodes go when the target count is 0
# What a plan with nothing to do, yet not converged, waits for: the next look.
SETTLING = Wait(WaitReason.CLOUD_SETTLING, None, "the cloud to settle")


def node_name(app: str, release: str, index: int, attempt: int = 0) -> str:
    """Deterministic server name: the idempotency key of a create."""
    base = f"{app}-{release}-{index}"
    return base if attempt == 0 else f"{base}-b{attempt}"


@dataclass(frozen=True)
class Target:
    """What the region should run: one release, ``count`` nodes, behind ``pool``."""

    app: str
    region: str
    release: str
    count: int
    rollout: RolloutSpec
    health: HealthSpec
    member_port: int
    # Releases whose nodes are kept out of the pool for a fast rollback (newest first).
    keep_releases: tuple[str, ...] = ()
    # Putting a previous release back as it was (a rollback): members that already serve
    # count as they are, and sick ones are not replaced; new nodes still pass the gate.
    restore: bool = False
    # When this attempt started: the health gate's deadline runs from the later of this
    # and the node's creation, so nodes a crashed or earlier attempt built are judged
    # afresh by a rerun instead of being failed for their age. None: from creation.
    attempt_started: datetime | None = None
    # Per index, the boot attempt number this attempt's own boots start from: failed
    # boots an earlier (killed or failed) run left do not eat this run's
    # ``max_boot_retries`` (see ``boot_base``).
    boot_base: Mapping[int, int] = field(default_factory=dict)
    deploy_id: str | None = None  # the run acting (nodes carry their creator's id)
    # Nodes to replace by a fresh boot of the same release and index (a repave: by age,
    # or everything after a suspected compromise). Built within the surge budget; the
    # node they replace is drained once its replacement serves, as in any rollout.
    replace: frozenset[str] = frozenset()
    # At most this many sick serving nodes are replaced at once (watch's heal policy);
    # None: every sick one (a deploy finishing its own work).
    heal_parallel: int | None = None

    def gate_deadline(self, node: Node) -> datetime:
        """When ``node`` must have passed its health gate."""
        start = node.created_at
        if self.attempt_started is not None and self.attempt_started > start:
            start = self.attempt_started
        return start + timedelta(seconds=self.health.deadline)


@dataclass(frozen=True)
class Observed:
    """One region as observe() saw it."""

    region: str
    nodes: tuple[Node, ...]
    members: tuple[Member, ...]
    health: Mapping[str, NodeHealth] = field(default_factory=dict)


def incoming_nodes(target: Target, observed: Observed) -> list[Node]:
    """The node of each index ``0..count-1`` that counts for ``target`` (its latest boot)."""
    return [node for _, node in sorted(_View(target, observed).incoming.items())]


def progress_counts(target: Target, observed: Observed) -> Counts:
    """How many of the target's nodes are booted, healthy and in the pool.

    Judged as ``plan()`` judges them, so a converged plan's counts all equal the target:
    healthy means passing, or proven in service, or (putting a release back) serving as
    it did; in the pool means serving, online and healthy."""
    view = _View(target, observed)
    booted = [n for n in view.incoming.values() if n.state is NodeState.ACTIVE]
    healthy = [
        n for n in booted
        if view.health_of(n) is Health.HEALTHY or view.proven(n)
        or (target.restore and view.serving(n))
    ]
    return Counts(target=target.count, booted=len(booted), healthy=len(healthy),
                  in_pool=len(view.incoming_serving_healthy()))


def boot_base(target: Target, observed: Observed) -> dict[int, int]:
    """Where this attempt's boot count starts, per index, from its first observation.

    A node already in ERROR was an earlier run's failed boot: this run's first boot is
    its replacement. A node still booting or up counts as this run's first boot."""
    base: dict[int, int] = {}
    for index, node in _View(target, observed).incoming.items():
        base[index] = node.attempt + (1 if node.state is NodeState.ERROR else 0)
    return base


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return _parse_time(text)


@functools.lru_cache(maxsize=65536)
def _parse_time(text: str) -> datetime | None:
    # Cached: a poll parses every node's stamps, which rarely change between polls.
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class _View:
    """Derived facts about one observation; built once per plan() call."""

    def __init__(self, target: Target, observed: Observed) -> None:
        self.target = target
        self.nodes = [n for n in observed.nodes if n.state is not NodeState.DELETING]
        self.deleting = {n.name for n in observed.nodes if n.state is NodeState.DELETING}
        self.members = {m.name: m for m in observed.members}
        self.health = observed.health
        self.by_name = {n.name: n for n in self.nodes}

        latest: dict[int, Node] = {}
        for node in self.nodes:
            if node.release == target.release and 0 <= node.index < target.count:
                held = latest.get(node.index)
                if held is None or node.attempt > held.attempt:
                    latest[node.index] = node
        if target.restore:
            # Putting the release back as it was: an index whose newest boot never
            # joined the pool (a repave or heal that failed) keeps the older boot that
            # still serves; the newer one is outgoing and goes.
            for node in self.nodes:
                held = latest.get(node.index)
                if (held is not None and node.release == target.release
                        and node.attempt < held.attempt and held.name not in self.members
                        and node.name in self.members
                        and self.members[node.name].state is MemberState.SERVING):
                    latest[node.index] = node
        self.incoming = latest
        incoming_names = {n.name for n in latest.values()}
        self.outgoing = [n for n in self.nodes if n.name not in incoming_names]
        keep = set(target.keep_releases)
        self.standby = {
            n.name
            for n in self.outgoing
            if n.release in keep
            and n.release != target.release
            and n.state is NodeState.ACTIVE
            and n.name not in self.members
        }

    def health_of(self, node: Node) -> Health:
        known = self.health.get(node.name)
        return known.status if known else Health.UNKNOWN

    def detail_of(self, node: Node) -> str:
        known = self.health.get(node.name)
        return known.detail if known else ""

    def serving(self, node: Node) -> bool:
        member = self.members.get(node.name)
        return member is not None and member.state is MemberState.SERVING

    def proven(self, node: Node) -> bool:
        """Already in service from an earlier pass (a rerun, a resumed deploy): it joined
        the pool after passing the gate and was stamped serving. It is not on trial
        again: unless its checks now fail, it counts as it is, so an unchanged rerun
        hours later does not wait out ``healthy_threshold`` probes, or fail the gate."""
        if node.state is not NodeState.ACTIVE or not self.serving(node):
            return False
        if self.members[node.name].online is False:
            return False
        if META_SERVING_SINCE not in node.metadata:
            return False
        if parse_time(node.metadata.get(META_DRAIN_SINCE)):
            return False
        known = self.health.get(node.name)
        if known is None:
            return False
        if known.status is Health.HEALTHY:
            return True
        return known.status is Health.UNKNOWN and known.passing is True

    def incoming_serving_healthy(self) -> list[Node]:
        return [
            n
            for n in self.incoming.values()
            if n.state is NodeState.ACTIVE
            and self.serving(n)
            and self.members[n.name].online is not False
            and (
                self.target.restore or self.health_of(n) is Health.HEALTHY or self.proven(n)
            )
        ]


def plan(target: Target, observed: Observed, now: datetime) -> Plan:
    """The next steps towards ``target``; see the module docstring for the words used.

    One round reads as a chain of named phases over one accumulator (``_Round``): the
    health gate may end the round early (a failure, or new nodes still to be judged);
    otherwise every phase adds its steps and what it waits for."""
    round_ = _Round(target, observed, now)
    round_.members_of_gone_servers()
    verdict = round_.gate()
    if verdict is not None:
        return verdict
    round_.join_pool()
    round_.canary_window()
    round_.drain()
    round_.finish_drains()
    round_.delete()
    round_.create()
    round_.repave()
    return round_.result()


class _Round:
    """One plan() call: the observation's view, and the steps and waits found so far."""

    def __init__(self, target: Target, observed: Observed, now: datetime) -> None:
        self.target = target
        self.rollout = target.rollout
        self.count = target.count
        self.now = now
        self.view = view = _View(target, observed)
        self.steps: list[Step] = []
        self.waiting: list[Wait] = []
        self.wake: list[datetime] = []
        self.outgoing_serving = [n for n in view.outgoing if view.serving(n)]
        # A rollout is under way while another release (or a surplus) still serves.
        # When healing, the nodes being replaced serve until their replacements do: that
        # is not a rollout, and the other sick nodes wait for a slot rather than fail a
        # gate.
        self.deploying = (
            bool(self.outgoing_serving) if target.heal_parallel is None
            else any(n.release != target.release or n.index >= self.count
                     for n in self.outgoing_serving)
        )
        self.allowed_indexes = range(self.count)  # narrowed by the canary window
        self.bake_done = True
        self.fully_serving = False
        self.deleted: set[str] = set()
        self.budget = 0  # room left for new boots within the surge

    # 1. Members pointing at nothing (a node deleted behind our back) go first.
    def members_of_gone_servers(self) -> None:
        view, app = self.view, self.target.app
        for name in view.members:
            if name not in view.by_name and name.startswith(f"{app}-"):
                self.steps.append(RemoveMember(name, "its server is gone"))

    # 2. Boot failures and the health gate of the incoming release. A node that fails
    #    the gate fails the plan, but only once every other new node is judged too:
    #    whether *all* of them failed decides the blast radius (a bad region, or a bad
    #    node).
    def gate(self) -> Plan | None:
        """A final (FAILED) or early (new nodes still to be judged) plan, or None."""
        target, view, now = self.target, self.view, self.now
        gate_failures: list[str] = []
        undecided: list[Node] = []
        heal_slots = (
            None if target.heal_parallel is None
            else target.heal_parallel - len(_replacements_in_flight(view))
        )
        for index, node in sorted(view.incoming.items()):
            health = view.health_of(node)
            # A boot an earlier run started that is still not done after this attempt's
            # own gate deadline is stuck: replaced like a failed boot, not a reason to
            # roll back.
            stuck = (node.state is NodeState.BUILD and _inherited(target, node)
                     and now >= target.gate_deadline(node))
            broken = node.state is NodeState.ERROR or stuck
            sick_in_service = (
                health is Health.UNHEALTHY
                and view.serving(node)
                and not self.deploying
                and not target.restore
            )
            if broken and node.capacity_fault:
                return Plan(
                    Phase.FAILED,
                    failure=f"no capacity in {target.region} for {node.name}: {node.fault}",
                    radius=BlastRadius.REGION,
                )
            if sick_in_service and not broken and heal_slots is not None:
                if heal_slots <= 0:
                    self.waiting.append(Wait(
                        WaitReason.HEAL_SLOT, node.name,
                        f"a heal slot to replace {node.name} (heal.max_parallel)"))
                    continue
                heal_slots -= 1
            if broken or sick_in_service:
                failure = self._replace_boot(index, node, stuck)
                if failure is not None:
                    gate_failures.append(failure)
                else:
                    undecided.append(node)
                continue
            if target.restore and node.name in view.members and node.state is NodeState.ACTIVE:
                continue  # restoring: it serves (or served until the drain) as before
            if health is Health.UNHEALTHY:
                gate_failures.append(
                    f"{node.name} failed its health check: {view.detail_of(node)}")
                continue
            if health is Health.HEALTHY:
                if node.state is NodeState.BUILD:
                    self.waiting.append(Wait(WaitReason.BOOTING, node.name,
                                             f"{node.name} to boot"))
                continue
            if view.proven(node):
                continue  # serves and passes: not on trial
            deadline = target.gate_deadline(node)
            if now >= deadline:
                gate_failures.append(self._missed_deadline(node))
                continue
            self.waiting.append(
                Wait(WaitReason.BOOTING, node.name, f"{node.name} to boot")
                if node.state is NodeState.BUILD
                else Wait(WaitReason.HEALTH_CHECK, node.name,
                          f"{node.name} to pass its health check"))
            self.wake.append(deadline)
            undecided.append(node)
        if not gate_failures:
            return None
        if undecided:
            # Nothing else moves meanwhile, except the replacements of failed boots.
            judged = Wait(
                WaitReason.GATE_JUDGING, None,
                f"{len(undecided)} other new node(s) to be judged after: {gate_failures[0]}")
            return Plan(
                Phase.PROGRESSING if self.steps else Phase.WAITING,
                tuple(self.steps),
                waits=(judged,),
                wake_at=min(self.wake) if self.wake else None,
            )
        passed = len(view.incoming) - len(gate_failures)
        # Every new node failing points at the region (a broken network, say) only when
        # nothing there proves otherwise: old members that still pass their checks in
        # the same region show it is the release that fails, and another region would
        # not help.
        old_ones_pass = any(view.health_of(n) is Health.HEALTHY for n in self.outgoing_serving)
        return Plan(
            Phase.FAILED,
            failure=gate_failures[0]
            + (f" (and {len(gate_failures) - 1} more)" if len(gate_failures) > 1 else ""),
            radius=BlastRadius.NODE if passed or old_ones_pass else BlastRadius.REGION,
        )

    def _replace_boot(self, index: int, node: Node, stuck: bool) -> str | None:
        """A fresh boot for a broken or sick node, or why none is left (its failure)."""
        target, view = self.target, self.view
        why = (
            f"still BUILD {target.health.deadline:g}s after this attempt started" if stuck
            else node.fault or view.detail_of(node) or "no detail from the provider"
        )
        own_boots = node.attempt - target.boot_base.get(index, 0)
        if own_boots >= self.rollout.max_boot_retries:
            return f"{node.name} failed {own_boots + 1} time(s), the last with: {why}"
        replacement = node_name(target.app, target.release, index, node.attempt + 1)
        if replacement not in view.by_name and replacement not in view.deleting:
            self.steps.append(
                CreateNode(replacement, index, node.attempt + 1, f"replaces {node.name}: {why}")
            )
        return None

    def _missed_deadline(self, node: Node) -> str:
        target, view = self.target, self.view
        state = node.state.value if node.state is not NodeState.ACTIVE else "not healthy"
        detail = view.detail_of(node)
        known = view.health.get(node.name)
        if known is not None and known.last_failure and known.last_failure not in detail:
            detail = f"{detail}; the last failed check: {known.last_failure}"
        rerun = target.attempt_started is not None and target.attempt_started > node.created_at
        counted_from = "this attempt started" if rerun else "its creation"
        return (
            f"{node.name} still {state} {target.health.deadline:g}s after {counted_from}"
            f" (health.deadline){': ' + detail if detail else ''}"
        )

    # 3. Healthy incoming nodes join the pool; serving ones get their timestamp.
    def join_pool(self) -> None:
        target, view = self.target, self.view
        for node in sorted(view.incoming.values(), key=lambda n: n.index):
            member = view.members.get(node.name)
            was_serving = target.restore and member is not None  # drained by the failed deploy
            if node.state is not NodeState.ACTIVE or (
                view.health_of(node) is not Health.HEALTHY and not was_serving
            ):
                continue
            if not view.serving(node):
                if node.address is None:
                    self.waiting.append(Wait(WaitReason.ADDRESS, node.name,
                                             f"{node.name} to get an address"))
                    continue
                self.steps.append(AddMember(node.name, node.address, target.member_port))
            elif view.members[node.name].online is False:
                self.waiting.append(Wait(WaitReason.LB_ONLINE, node.name,
                                         f"{node.name} to come online in the load balancer"))
            elif META_SERVING_SINCE not in node.metadata or parse_time(
                node.metadata.get(META_DRAIN_SINCE)
            ):
                # Unstamped, or put back in service after a drain (a rollback).
                self.steps.append(StampServing(node.id, node.name))

    # 4. Canary window: with an old release still serving, only the canary batch is
    #    built until it has served, healthy, for the bake time.
    def canary_window(self) -> None:
        rollout, view = self.rollout, self.view
        if rollout.strategy != "canary" or not self.deploying:
            return
        size = canary_size(rollout, self.count)
        self.allowed_indexes = range(size)
        batch = [view.incoming.get(i) for i in range(size)]
        stamps = [
            parse_time(n.metadata.get(META_SERVING_SINCE)) if n and view.serving(n) else None
            for n in batch
        ]
        if not all(stamp is not None for stamp in stamps):
            self.bake_done = False
            self.waiting.append(Wait(WaitReason.CANARY_SERVING, None,
                                     f"the canary batch of {size} to serve"))
            return
        bake_end = max(s for s in stamps if s is not None) + timedelta(
            seconds=rollout.canary.bake)
        if self.now >= bake_end:
            self.allowed_indexes = range(self.count)
        else:
            self.bake_done = False
            self.waiting.append(Wait(WaitReason.CANARY_BAKE, None,
                                     f"the canary to bake until {bake_end.isoformat()}"))
            self.wake.append(bake_end)

    # 5. Drain outgoing members only as their replacements serve. Unhealthy ones go
    #    first, but a health verdict alone never retires the old fleet: the verdict may
    #    come from a wrong check in the new spec, and the load balancer's own monitor
    #    already keeps traffic off members that are really down.
    def drain(self) -> None:
        target, view = self.target, self.view
        serving_ready = view.incoming_serving_healthy()
        self.fully_serving = len(serving_ready) == self.count
        order = _drain_order(target)
        victims = sorted(
            self.outgoing_serving,
            key=lambda n: (view.health_of(n) is not Health.UNHEALTHY, *order(n)),
        )
        policy = _rolling_drains if self.rollout.strategy == "rolling" else _switch_drains
        chosen = policy(self, victims, serving_ready)
        for node in chosen:
            sick = view.health_of(node) is Health.UNHEALTHY
            why = "unhealthy, " if sick else ""
            goal = f"replaced by {target.release}" if self.count else RETIRED
            self.steps.append(DrainMember(node.id, node.name, f"{why}{goal}"))
        if len(chosen) < len(self.outgoing_serving):
            self.waiting.append(Wait(
                WaitReason.OLD_MEMBERS, None,
                f"{len(self.outgoing_serving) - len(chosen)} old member(s) to be replaced"))

    # 6. Drained members leave the pool once idle or after the drain timeout.
    def finish_drains(self) -> None:
        view = self.view
        for node in view.outgoing:
            draining = view.members.get(node.name)
            if draining is None or draining.state is not MemberState.DRAINING:
                continue
            since = parse_time(node.metadata.get(META_DRAIN_SINCE))
            if draining.active_connections == 0 or node.state is not NodeState.ACTIVE:
                self.steps.append(RemoveMember(node.name, "drained"))
            elif since is None:
                self.steps.append(DrainMember(node.id, node.name, "drain start not recorded"))
            elif self.now >= since + timedelta(seconds=self.rollout.drain_timeout):
                self.steps.append(RemoveMember(node.name, "drain timeout"))
            else:
                self.waiting.append(Wait(WaitReason.DRAINING, node.name, f"{node.name} to drain"))
                self.wake.append(since + timedelta(seconds=self.rollout.drain_timeout))

    # 7. Outgoing nodes out of the pool are deleted (standby nodes excepted).
    def delete(self) -> None:
        view = self.view
        for node in view.outgoing:
            if node.name in view.members or node.name in view.standby:
                continue
            self.steps.append(DeleteNode(node.id, node.name, _delete_reason(node, self.target)))
            self.deleted.add(node.name)

    # 8. Build missing incoming nodes within the surge budget (nodes deleted above no
    #    longer count; replacements of failed boots do not count either).
    def create(self) -> None:
        target, view = self.target, self.view
        surge, _ = surge_and_unavailable(self.rollout, self.count)
        counted = [
            n
            for n in view.nodes
            if n.name not in view.standby
            and n.state is not NodeState.ERROR
            and n.name not in self.deleted
        ]
        budget = max(0, self.count + surge - len(counted))
        missing = [i for i in self.allowed_indexes if i not in view.incoming]
        for index in missing[:budget]:
            name = node_name(target.app, target.release, index)
            if name in view.deleting:
                self.waiting.append(Wait(WaitReason.DELETING, name,
                                         f"the old {name} to finish deleting"))
                continue
            self.steps.append(CreateNode(name, index, 0))
        if len(missing) > budget:
            self.waiting.append(Wait(WaitReason.SURGE_ROOM, None,
                                     f"room to build {len(missing) - budget} more node(s)"))
        self.budget = max(0, budget - len(missing))

    # 9. Repave: fresh boots of the nodes to replace, oldest first, within what is left
    #    of the budget (the node replaced is outgoing from then on, drained as usual).
    def repave(self) -> None:
        target, view, budget = self.target, self.view, self.budget
        repave = sorted(
            (n for n in view.incoming.values() if n.name in target.replace),
            key=lambda n: (n.created_at, n.index),
        )
        for node in repave[:budget]:
            name = node_name(target.app, target.release, node.index, node.attempt + 1)
            if name in view.deleting:
                self.waiting.append(Wait(WaitReason.DELETING, name,
                                         f"the old {name} to finish deleting"))
                continue
            self.steps.append(
                CreateNode(name, node.index, node.attempt + 1, f"repaves {node.name}"))
        if len(repave) > budget:
            self.waiting.append(Wait(WaitReason.SURGE_ROOM, None,
                                     f"room to repave {len(repave) - budget} more node(s)"))

    def result(self) -> Plan:
        if self.steps:
            return Plan(Phase.PROGRESSING, tuple(self.steps), tuple(self.waiting))
        if self.fully_serving and not self.waiting and _all_stamped(self.view):
            return Plan(Phase.CONVERGED)
        return Plan(
            Phase.WAITING,
            waits=tuple(self.waiting) or (SETTLING,),
            wake_at=min(self.wake) if self.wake else None,
        )


# --- the drain choice, per strategy ------------------------------------------------------


def _rolling_drains(round_: _Round, victims: list[Node], serving_ready: list[Node]) -> list[Node]:
    """Rolling: keep ``count - max_unavailable`` serving; sick old members may go beyond
    that floor, healthy ones only as new ones serve."""
    view = round_.view
    _, unavailable = surge_and_unavailable(round_.rollout, round_.count)
    floor = round_.count - unavailable
    outgoing_serving = round_.outgoing_serving
    healthy_out = [n for n in outgoing_serving if view.health_of(n) is not Health.UNHEALTHY]
    retire = max(0, len(serving_ready) + len(outgoing_serving) - floor)
    healthy_budget = max(0, len(serving_ready) + len(healthy_out) - floor)
    chosen = []
    for node in victims[:retire]:
        if view.health_of(node) is not Health.UNHEALTHY:
            if healthy_budget == 0:
                continue
            healthy_budget -= 1
        chosen.append(node)
    return chosen


def _switch_drains(round_: _Round, victims: list[Node], serving_ready: list[Node]) -> list[Node]:
    """Blue-green and canary: the old fleet goes at once, when the new one serves in full
    (and the canary has baked); before that only strays of a third release."""
    if round_.fully_serving and round_.bake_done:
        return victims
    return _strays(round_.view, round_.target.release, round_.outgoing_serving,
                   serving_ready, round_.count)


def _strays(
    view: _View, release: str, outgoing_serving: list[Node], serving_ready: list[Node],
    count: int,
) -> list[Node]:
    """Members of an old release other than the one that mostly serves (what an
    interrupted run left: its canary, say), while the rest still serve ``count`` healthy
    nodes.

    A blue-green or canary deploy keeps the old fleet whole until the new one serves,
    and builds at most ``count`` nodes beyond it; a stray third release would take that
    room for good (the deploy waits for room it never gets). Draining strays first
    costs no capacity."""
    older = [n for n in outgoing_serving if n.release != release]
    ranked = Counter(n.release for n in older).most_common()
    if len(ranked) < 2 or ranked[0][1] == ranked[1][1]:
        return []  # one old release, or no clear main one: nothing is a stray
    main = ranked[0][0]
    healthy_main = [n for n in older
                    if n.release == main and view.health_of(n) is Health.HEALTHY]
    if len(healthy_main) + len(serving_ready) < count:
        return []
    return [n for n in older if n.release != main]


def _replacements_in_flight(view: _View) -> list[Node]:
    """Nodes of the target release superseded by a newer boot of their index that are
    still there (serving, draining or waiting to be deleted): a replacement under way."""
    return [
        n for n in view.outgoing
        if n.release == view.target.release
        and (latest := view.incoming.get(n.index)) is not None
        and latest.attempt > n.attempt
    ]


def _inherited(target: Target, node: Node) -> bool:
    """Built by an earlier run (killed or failed), not by the one acting now."""
    creator = node.metadata.get(TAG_DEPLOY_ID)
    if creator and target.deploy_id is not None:
        return creator != target.deploy_id
    return target.attempt_started is not None and node.created_at < target.attempt_started


def _drain_order(target: Target) -> Callable[[Node], tuple[int, str, int]]:
    """Drain surplus of the target release first, then the oldest releases, high index first."""

    def key(node: Node) -> tuple[int, str, int]:
        return (0 if node.release == target.release else 1, node.release, -node.index)

    return key


def _delete_reason(node: Node, target: Target) -> str:
    if node.state is NodeState.ERROR:
        # A boot that failed, or a server that died later (its process killed, say).
        return "failed to boot" if META_SERVING_SINCE not in node.metadata else "in ERROR"
    if node.release == target.release:
        return "superseded" if node.index < target.count else "scaled down"
    if target.count == 0:
        return RETIRED
    return f"replaced by {target.release}"


def _all_stamped(view: _View) -> bool:
    return all(
        META_SERVING_SINCE in n.metadata and not parse_time(n.metadata.get(META_DRAIN_SINCE))
        for n in view.incoming.values()
    )


def serving_counts(observed: Observed) -> Counter[str]:
    """How many SERVING pool members each release has."""
    serving = {m.name for m in observed.members if m.state is MemberState.SERVING}
    return Counter(node.release for node in observed.nodes if node.name in serving)


def serving_release(observed: Observed) -> str | None:
    """The release most serving members run (None: nothing serves)."""
    counts = serving_counts(observed)
    return counts.most_common(1)[0][0] if counts else None
