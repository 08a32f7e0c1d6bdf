"""Blast radius: how far a failure reaches, which decides what Phoenix does next.

Like SkyPilot's failover handler, a failure is classified by the smallest place that
contains it. A **node** failure (one server failed to boot or its health check) is
handled in the region: the node is replaced, or the deploy rolls back there. A
**region** failure (quota, no capacity, the region's API unreachable or failing beyond
retries, every new node of the region failing its gate) means the region cannot host the
release now: what was half-built there is torn down and the next region is tried. A
**provider** failure (credentials, bad input) would fail in every region alike, so
trying elsewhere only spreads the damage: Phoenix stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from phoenix.errors import (
    AuthError,
    CapacityError,
    InputError,
    QuotaExceeded,
    RegionUnavailable,
    Transient,
)


class BlastRadius(StrEnum):
    NODE = "node"
    REGION = "region"
    PROVIDER = "provider"


def radius_of(error: BaseException) -> BlastRadius:
    """The blast radius of an exception a provider call (or the engine) raised."""
    if isinstance(error, AuthError | InputError):
        return BlastRadius.PROVIDER
    # A Transient that reaches this point has outlived the executor's retries: the
    # region's API keeps failing (5xx, timeouts), which is an outage for our purposes.
    if isinstance(error, QuotaExceeded | CapacityError | RegionUnavailable | Transient):
        return BlastRadius.REGION
    return BlastRadius.PROVIDER


@dataclass(frozen=True)
class RegionAttempt:
    """One region tried by a deploy, failover or failback, and why it was left.

    ``cleaned_up`` is False when what the attempt built could not be torn down (the
    region stopped answering): the next deploy or failback that reaches it removes it.
    """

    region: str
    outcome: str  # an Outcome: succeeded | unchanged | failed
    release: str | None
    reason: str | None = None
    radius: BlastRadius | None = None  # how far the failure reached
    cleaned_up: bool = True

    def describe(self) -> str:
        if self.outcome in ("succeeded", "unchanged"):
            return f"{self.region}: {self.release} {self.outcome}"
        left = "" if self.cleaned_up else " (not cleaned up: unreachable)"
        return f"{self.region}: {self.radius or 'failed'}-level failure: {self.reason}{left}"
