"""What a run reports: progress events as it goes, and its result at the end.

Apart from the engine so that what renders them (the CLI, watch, the GitHub summary)
and what produces them (the engine, the region mover) share the words without one
importing the other's machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from phoenix.blast import BlastRadius, RegionAttempt
from phoenix.vocabulary import EventKind, Outcome

__all__ = ["DeployResult", "Event", "EventSink"]


@dataclass(frozen=True)
class Event:
    """Progress for a person watching (the CLI renders these; the library may ignore them)."""

    kind: EventKind
    message: str
    lines: tuple[str, ...] = ()


EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class DeployResult:
    """What a deploy, rollback or failover did; rendered by ``--output json``."""

    app: str
    action: str
    deploy_id: str
    region: str
    release: str
    previous_release: str | None
    outcome: Outcome
    steps: int
    seconds: float
    nodes: tuple[str, ...]
    reason: str | None = None
    provider_calls: int | None = None  # API requests, all services (None: not counted)
    provider_requests: dict[str, int] | None = None  # the same, by service
    history: tuple[str, ...] = field(default_factory=tuple)
    endpoint: str | None = None  # where clients reach the app in this region
    radius: BlastRadius | None = None  # how far the failure reaches
    # Multi-region runs: every region tried, in order, and why each failed one was left.
    attempts: tuple[RegionAttempt, ...] = ()
    dns: str | None = None  # where the app's DNS record points afterwards, when it has one
