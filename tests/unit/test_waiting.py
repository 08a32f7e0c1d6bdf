"""wait_until: the one polling loop, driven by the clock it is given (issue 16), so a
fake clock runs a fifteen-second wait in no real time."""

from __future__ import annotations

import time

import pytest

from phoenix.clock import FakeClock
from phoenix.waiting import wait_until


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}s for real: the fake clock should drive this")

    monkeypatch.setattr(time, "sleep", refuse)


def _elapsed(clock: FakeClock, start: FakeClock) -> float:
    return (clock.now() - start.now()).total_seconds()


def test_true_as_soon_as_the_predicate_is() -> None:
    clock, start = FakeClock(), FakeClock()
    looks: list[float] = []

    def ready() -> bool:
        looks.append(_elapsed(clock, start))
        return len(looks) == 4

    assert wait_until(ready, 15.0, clock, interval=0.5)
    assert looks == [0.0, 0.5, 1.0, 1.5]


def test_false_after_the_timeout_with_a_last_look_at_the_deadline() -> None:
    clock, start = FakeClock(), FakeClock()
    looks: list[float] = []

    def never() -> bool:
        looks.append(_elapsed(clock, start))
        return False

    assert not wait_until(never, 1.0, clock, interval=0.3)
    assert looks == pytest.approx([0.0, 0.3, 0.6, 0.9, 1.0])
    assert _elapsed(clock, start) == pytest.approx(1.0)


def test_a_zero_timeout_is_one_look() -> None:
    clock = FakeClock()
    looks: list[int] = []
    assert not wait_until(lambda: looks.append(1) is not None, 0.0, clock)
    assert looks == [1]
    assert wait_until(lambda: True, -1.0, clock)
