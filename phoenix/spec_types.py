"""The spec's building blocks: durations as people write them, and the strict base model.

Shared by the spec's parts (``phoenix.spec``, ``phoenix.spec_hooks``,
``phoenix.spec_gates``) so each can live in a module of its own.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


def parse_duration(value: Any) -> float:
    """Accept seconds as a number or a string like ``30s``, ``5m``, ``1.5h``, ``7d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m or 2h, got a boolean")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError("expected a duration like 30s, 5m or 2h, got a huge number") from None
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise ValueError(f"expected a duration like 30s, 5m or 2h, got {shown}")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError("expected a duration like 30s, 5m or 2h, got a value that is not finite")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def show_seconds(seconds: float) -> str:
    """``604800`` -> ``7d``, ``0.01`` -> ``10ms``: a bound as a user would write it."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def within(low: float, high: float, *, zero: bool = False) -> AfterValidator:
    """Bounds for a :data:`Duration`: ``low <= seconds <= high``, or exactly 0 if ``zero``."""

    def check(seconds: float) -> float:
        if zero and seconds == 0:
            return seconds
        if seconds < low:
            allowed = f"at least {show_seconds(low)}"
            raise ValueError(
                f"must be {'0 or ' if zero else ''}{allowed}, got {show_seconds(seconds)}"
            )
        if seconds > high:
            raise ValueError(f"must be at most {show_seconds(high)}, got {show_seconds(seconds)}")
        return seconds

    return AfterValidator(check)



Duration = Annotated[float, BeforeValidator(parse_duration)]


class Strict(BaseModel):
    """Unknown keys are errors and a loaded spec does not change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
