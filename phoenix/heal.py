"""What ``phoenix watch`` should do for one app this round: a pure judgement.

From the spec, the region as observed and the time, it says which nodes of the serving
release are sick (gone, in ERROR, or failing their health check past the tracker's
thresholds), which are older than ``max_node_age``, and whether the circuit is open:
more of the fleet sick at once than ``heal.max_unhealthy`` is an outage or a bad release,
and replacing nodes would only churn (AWS and GCE autohealing stop there too). The
engine then acts on the verdict through the planner (``Target.heal_parallel`` bounds
the replacements, ``Target.replace`` repaves by age), so watch gets every guarantee a
deploy has: health-gated, never below ``count`` serving, crash-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from phoenix.model import Health, Member, MemberState, Node, NodeState
from phoenix.planner import Observed, Target, incoming_nodes
from phoenix.rollout_math import scaled
from phoenix.spec import Spec


@dataclass(frozen=True)
class Verdict:
    """One app's state for watch, and what to do about it."""

    release: str | None  # the serving release (None: nothing serves here)
    sick: tuple[tuple[str, str], ...] = ()  # (node or index, why)
    too_old: tuple[str, ...] = ()  # nodes older than max_node_age, oldest first
    in_flight: int = 0  # replacements under way (a superseded boot still there)
    circuit_open: bool = False
    repave: frozenset[str] = frozenset()  # what to replace by age this round

    @property
    def idle(self) -> bool:
        """Nothing to do (or nothing that may be done: the circuit is open)."""
        return self.circuit_open or not (self.sick or self.repave or self.in_flight)

    def describe(self) -> str:
        if self.release is None:
            return "nothing serves"
        if self.circuit_open:
            return (f"circuit open: {len(self.sick)} sick at once, over heal.max_unhealthy;"
                    " replacing nothing (an outage or a bad release?)")
        parts = [f"{name}: {why}" for name, why in self.sick]
        if self.repave:
            parts.append(f"older than max_node_age: {', '.join(sorted(self.repave))}")
        if self.in_flight:
            parts.append(f"{self.in_flight} replacement(s) under way")
        return "; ".join(parts) or "healthy"


def judge(spec: Spec, target: Target, observed: Observed, now: datetime) -> Verdict:
    """The verdict for ``target`` (the serving release at ``count``) as observed."""
    current = {n.index: n for n in incoming_nodes(target, observed)}
    members = {m.name: m for m in observed.members}
    sick: list[tuple[str, str]] = []
    for index in range(target.count):
        node = current.get(index)
        if node is None:
            sick.append((f"index {index}", "its server is gone"))
        elif node.state is NodeState.ERROR:
            sick.append((node.name, node.fault or "in ERROR"))
        elif _failing_in_service(node, observed, members):
            known = observed.health.get(node.name)
            sick.append((node.name, known.detail if known and known.detail else "unhealthy"))
    in_flight = _superseded(target, observed, current)
    limit = scaled(spec.heal.max_unhealthy, target.count, round_up=False)
    if sick and len(sick) > limit:
        return Verdict(target.release, tuple(sick), circuit_open=True, in_flight=in_flight)
    too_old = _too_old(spec, current.values(), now)
    # One node at a time, and only when nothing else is being replaced: repaving never
    # competes with healing for the surge.
    repave = frozenset(too_old[:1]) if too_old and not sick and not in_flight else frozenset()
    return Verdict(target.release, tuple(sick), tuple(too_old), in_flight, False, repave)


def _failing_in_service(node: Node, observed: Observed, members: Mapping[str, Member]) -> bool:
    known = observed.health.get(node.name)
    member = members.get(node.name)
    serving = member is not None and member.state is MemberState.SERVING
    return serving and known is not None and known.status is Health.UNHEALTHY


def _superseded(target: Target, observed: Observed, current: dict[int, Node]) -> int:
    return sum(
        1 for n in observed.nodes
        if n.release == target.release and n.state is not NodeState.DELETING
        and (latest := current.get(n.index)) is not None and latest.attempt > n.attempt
    )


def _too_old(spec: Spec, nodes: Iterable[Node], now: datetime) -> list[str]:
    if spec.max_node_age is None:
        return []
    aged = [
        n for n in nodes
        if n.state is NodeState.ACTIVE
        and (now - n.created_at).total_seconds() > spec.max_node_age
    ]
    return [n.name for n in sorted(aged, key=lambda n: (n.created_at, n.index))]
