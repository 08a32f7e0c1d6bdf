"""Surge, unavailability and canary arithmetic, kept apart so it can be table-tested.

The rounding follows Kubernetes Deployments (``ResolveFenceposts``): a percentage surge
rounds up, a percentage unavailability rounds down, and when both come out as zero the
unavailability becomes one so that a rollout can always make progress.
"""

from __future__ import annotations

import math

from phoenix.spec import RolloutSpec


def scaled(value: int | str, total: int, *, round_up: bool) -> int:
    """A count, or a percentage of ``total`` rounded up or down."""
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    exact = percent * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def surge_and_unavailable(rollout: RolloutSpec, count: int) -> tuple[int, int]:
    """(extra nodes allowed above ``count``, serving nodes allowed below ``count``).

    Blue-green and canary build a whole second fleet and never go below ``count``.
    """
    if rollout.strategy != "rolling":
        return count, 0
    surge = scaled(rollout.max_surge, count, round_up=True)
    unavailable = min(scaled(rollout.max_unavailable, count, round_up=False), count)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def canary_size(rollout: RolloutSpec, count: int) -> int:
    """How many nodes make the canary batch: at least one, at most ``count``."""
    return max(1, min(count, scaled(rollout.canary.size, count, round_up=True)))
