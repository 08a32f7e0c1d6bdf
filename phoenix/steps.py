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
from phoenix.vocabulary import Wait


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
    waits: tuple[Wait, ...] = ()  # what the plan waits for, each with its reason code
    failure: str | None = None
    # How far a FAILED plan's failure reaches (phoenix.blast.BlastRadius): a region-level
    # one makes a multi-region deploy try the next region.
    radius: BlastRadius | None = None
    # The earliest moment a wait in this plan can end (bake, drain timeout), when known.
    wake_at: datetime | None = None

    @property
    def converged(self) -> bool:
        return self.phase is Phase.CONVERGED

    @property
    def waiting_for(self) -> tuple[str, ...]:
        """The waits as a person reads them (logs, messages, the deadline's failure)."""
        return tuple(wait.text for wait in self.waits)

    def describe(self) -> list[str]:
        return [step.describe() for step in self.steps]


@dataclass(frozen=True)
class Counts:
    """How far the target release has come, node by node: what a progress display shows
    (booted 2/3, healthy 1/3, in the pool 1/3). Each count includes the next one's nodes:
    a node in the pool is healthy, a healthy one is booted."""

    target: int  # the nodes the target wants
    booted: int  # its nodes up (ACTIVE)
    healthy: int  # ...and passing their health check (or proven in service)
    in_pool: int  # ...and serving in the load balancer

    def describe(self) -> str:
        return (f"booted {self.booted}/{self.target}, healthy {self.healthy}/{self.target},"
                f" in pool {self.in_pool}/{self.target}")
