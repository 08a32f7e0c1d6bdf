"""Surge/unavailable/canary arithmetic, table-tested like Kubernetes' fenceposts."""

from __future__ import annotations

import pytest

from phoenix.rollout_math import canary_size, scaled, surge_and_unavailable
from phoenix.spec import CanarySpec, RolloutSpec


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [
        (3, 10, True, 3),
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("25%", 1, True, 1),
        ("25%", 1, False, 0),
        ("100%", 7, False, 7),
        ("0%", 7, True, 0),
        ("33%", 3, True, 1),
        ("34%", 3, False, 1),
    ],
)
def test_scaled_rounds_like_kubernetes(
    value: int | str, total: int, up: bool, expected: int
) -> None:
    assert scaled(value, total, round_up=up) == expected


@pytest.mark.parametrize(
    ("surge", "unavailable", "count", "expected"),
    [
        ("25%", 0, 4, (1, 0)),
        ("25%", "25%", 10, (3, 2)),
        (0, 0, 5, (0, 1)),  # both zero: unavailable becomes 1 so the rollout can move
        ("0%", "10%", 3, (0, 1)),  # 10% of 3 floors to 0 -> both zero -> 1
        (2, 10, 3, (2, 3)),  # unavailable capped at count
        (1, 1, 1, (1, 1)),
    ],
)
def test_rolling_surge_and_unavailable(
    surge: int | str, unavailable: int | str, count: int, expected: tuple[int, int]
) -> None:
    rollout = RolloutSpec(strategy="rolling", max_surge=surge, max_unavailable=unavailable)
    assert surge_and_unavailable(rollout, count) == expected


@pytest.mark.parametrize("strategy", ["blue-green", "canary"])
def test_blue_green_and_canary_build_a_whole_second_fleet(strategy: str) -> None:
    rollout = RolloutSpec(strategy=strategy, max_surge=1, max_unavailable=3)  # type: ignore[arg-type]
    assert surge_and_unavailable(rollout, 5) == (5, 0)


@pytest.mark.parametrize(
    ("size", "count", "expected"),
    [(1, 10, 1), ("10%", 10, 1), ("25%", 10, 3), ("1%", 10, 1), (20, 10, 10), ("100%", 4, 4)],
)
def test_canary_size(size: int | str, count: int, expected: int) -> None:
    rollout = RolloutSpec(strategy="canary", canary=CanarySpec(size=size))
    assert canary_size(rollout, count) == expected
