"""The words a run reports with: how it ended, what kind of progress an event is, and
why a plan waits.

They are ``StrEnum``s, so they compare equal to (and serialise as) the strings that the
JSON output, the history records and the metrics' labels have always carried; code that
reads them gets a closed set to match on instead of string literals to keep in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """How a deploy, rollback, failover, repave, heal or retire ended."""

    SUCCEEDED = "succeeded"  # it changed the cloud and reached its target
    UNCHANGED = "unchanged"  # the target held already: nothing was done
    ROLLED_BACK = "rolled-back"  # it failed, and what served before serves again
    FAILED = "failed"  # it failed, and could not put the previous state back
    INTERRUPTED = "interrupted"  # stopped (a signal, a lost lease) before it finished

    @property
    def ok(self) -> bool:
        return self in (Outcome.SUCCEEDED, Outcome.UNCHANGED)


class EventKind(StrEnum):
    """What a progress event tells a person watching."""

    STEPS = "steps"  # the steps of one poll, about to run
    WAITING = "waiting"  # what the run waits for, when that changes
    CONVERGED = "converged"  # the target is reached
    FAILED = "failed"  # the run failed; a rollback may follow
    ROLLBACK = "rollback"  # restoring what served before
    PROGRESS = "progress"  # the target release's counts (booted, healthy, in the pool)


class WaitReason(StrEnum):
    """Why a plan has nothing to do but wait: one code per kind of wait the planner
    reports, so a script reading ``--output json`` matches on a closed set instead of
    parsing the sentence a person reads (Kubernetes' progress reasons, in spirit)."""

    BOOTING = "booting"  # a new node is still building
    HEALTH_CHECK = "health_check"  # a booted node has yet to pass its health check
    GATE_JUDGING = "gate_judging"  # a node failed the gate; the others are judged first
    HEAL_SLOT = "heal_slot"  # a sick node waits for a free heal slot (heal.max_parallel)
    ADDRESS = "address"  # a healthy node has no address to join the pool with yet
    LB_ONLINE = "lb_online"  # a member was added, the load balancer has yet to use it
    CANARY_SERVING = "canary_serving"  # the canary batch has yet to serve in full
    CANARY_BAKE = "canary_bake"  # the canary serves; its bake time runs
    OLD_MEMBERS = "old_members"  # old members stay until their replacements serve
    DRAINING = "draining"  # an old member drains its connections
    DELETING = "deleting"  # an old server of the same name is still being deleted
    SURGE_ROOM = "surge_room"  # no room within max_surge for more boots (or repaves)
    CLOUD_SETTLING = "cloud_settling"  # nothing to do, yet not converged: look again


@dataclass(frozen=True)
class Wait:
    """One thing a plan waits for: a code to match on, the node it concerns (when it
    concerns one), and the sentence a person reads, which is also its ``str()`` so that
    every text rendering reads as it always has."""

    reason: WaitReason
    node: str | None
    text: str

    def __str__(self) -> str:
        return self.text
