"""What a run reports: progress events as it goes, and its result at the end.

Apart from the engine so that what renders them (the CLI, watch, the GitHub summary)
and what produces them (the engine, the region mover) share the words without one
importing the other's machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from phoenix.blast import BlastRadius, RegionAttempt
from phoenix.steps import Counts
from phoenix.vocabulary import EventKind, Outcome, Wait

__all__ = ["DeployResult", "Event", "EventSink", "HookOutcome", "HookRun", "Progress"]


@dataclass(frozen=True)
class Progress:
    """Where a run stands against its target and its deadline (an event's payload).

    Times are the engine's clock, so a display works out the time left from the event
    itself rather than from a wall clock the run may not be using."""

    counts: Counts
    started: datetime  # when this attempt started
    at: datetime  # when the counts were observed
    deadline: datetime  # when the attempt gives up (rollout.deadline)

    @property
    def elapsed(self) -> float:
        """Seconds since the attempt started."""
        return max(0.0, (self.at - self.started).total_seconds())

    @property
    def left(self) -> float:
        """Seconds until the deadline (0 once it has passed)."""
        return max(0.0, (self.deadline - self.at).total_seconds())


@dataclass(frozen=True)
class Event:
    """Progress for a person watching (the CLI renders these; the library may ignore them)."""

    kind: EventKind
    message: str
    lines: tuple[str, ...] = ()
    # WAITING: what the run waits for, typed (``lines`` holds the same as text).
    waits: tuple[Wait, ...] = ()
    # PROGRESS: the counts and the clock (``message`` holds the counts as text).
    progress: Progress | None = None


EventSink = Callable[[Event], None]


class HookOutcome(StrEnum):
    """How one lifecycle hook ended (``phoenix.hooks``)."""

    OK = "ok"  # it succeeded
    FAILED = "failed"  # it failed with on_failure: abort, and the run failed with it
    WARNED = "warned"  # it failed, and the run went on (on_failure: continue, or a restore)
    DONE_EARLIER = "done-earlier"  # a run that stopped half-way completed it: not rerun


@dataclass(frozen=True)
class HookRun:
    """One lifecycle hook a run ran (or found done), as its result and history show it."""

    moment: str  # pre_create, post_healthy, pre_switch, ... (phoenix.spec_hooks.HOOK_MOMENTS)
    node: str | None  # the node it concerned (per-node moments), else None
    hook: str  # which hook: "run: <command>" or "url: <url>", cut short
    outcome: HookOutcome
    seconds: float
    detail: str = ""  # why it failed, or the last line it printed (secrets masked)

    def describe(self) -> str:
        where = f" {self.node}" if self.node else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.moment}{where} [{self.hook}] {self.outcome} in {self.seconds:g}s{detail}"


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
    # What the run still waited for when it failed (its deadline passed), typed.
    waits: tuple[Wait, ...] = ()
    # The lifecycle hooks the run ran, in order (spec ``hooks:``).
    hooks: tuple[HookRun, ...] = ()
