"""The steps a plan is made of: plain data, executed only by ``phoenix.executor``.

Every step is idempotent against the cloud: creating a node is keyed by its deterministic
name, member operations are keyed by the node's name, deletes of missing things succeed.
That is what lets a crashed deploy be resumed by simply running it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from phoenix.blast import BlastRadius


@dataclass(frozen=True)
class CreateNode:
    name: str
    index: int
    attempt: int
    reason: str = "missing"

    def describe(self) -> str:
        return f"create {self.name} ({self.reason})"


@dataclass(frozen=True)
class DeleteNode:
    node_id: str
    name: str
    reason: str

    def describe(self) -> str:
        return f"delete {self.name} ({self.reason})"


@dataclass(frozen=True)
class AddMember:
    name: str
    address: str
    port: int

    def describe(self) -> str:
        return f"add {self.name} ({self.address}:{self.port}) to the load balancer"


@dataclass(frozen=True)
class StampServing:
    """Record in the node's metadata when it started serving (for canary bake times)."""

    node_id: str
    name: str

    def describe(self) -> str:
        return f"mark {self.name} as serving"


@dataclass(frozen=True)
class DrainMember:
    """Stamp the drain start on the node, then stop new requests to its member."""

    node_id: str
    name: str
    reason: str

    def describe(self) -> str:
        return f"drain {self.name} ({self.reason})"


@dataclass(frozen=True)
class RemoveMember:
    name: str
    reason: str

    def describe(self) -> str:
        return f"remove {self.name} from the load balancer ({self.reason})"


Step = CreateNode | DeleteNode | AddMember | StampServing | DrainMember | RemoveMember


class Phase(StrEnum):
    CONVERGED = "converged"  # the cloud matches the target; nothing to do
    PROGRESSING = "progressing"  # steps to execute
    WAITING = "waiting"  # nothing to do but wait (boots, health, bake, drains)
    FAILED = "failed"  # the target cannot be reached: roll back


@dataclass(frozen=True)
class Plan:
    phase: Phase
    steps: tuple[Step, ...] = ()
    waiting_for: tuple[str, ...] = ()
    failure: str | None = None
    # How far a FAILED plan's failure reaches (phoenix.blast.BlastRadius): a region-level
    # one makes a multi-region deploy try the next region.
    radius: BlastRadius | None = None
    # The earliest moment a wait in this plan can end (bake, drain timeout), when known.
    wake_at: datetime | None = None

    @property
    def converged(self) -> bool:
        return self.phase is Phase.CONVERGED

    def describe(self) -> list[str]:
        return [step.describe() for step in self.steps]
