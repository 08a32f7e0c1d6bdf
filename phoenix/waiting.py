"""The one polling loop: wait until something is true, or a timeout passes on a clock.

Phoenix waits for many things it cannot be told about (a process to exit, a balancer to
answer, a member to pass its first check, a lock to come free). Each used to be its own
``while time.monotonic() < deadline: ... time.sleep(...)`` loop, so a test's fake clock
could not drive it, and each had its own off-by-one at the deadline. Here the deadline is
measured on the ``Clock`` passed in, and the sleeping is the clock's: with a
``FakeClock`` the whole wait runs in no real time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: the node agent and supervisor processes start lighter
    from phoenix.providers.base import Clock

__all__ = ["wait_until"]


def wait_until(
    predicate: Callable[[], bool], timeout: float, clock: Clock, *, interval: float = 0.05
) -> bool:
    """True as soon as ``predicate()`` is; False when it is still false after ``timeout``
    seconds of ``clock`` time.

    The predicate is always asked at least once (so a timeout of 0 is one look) and once
    more at the deadline, so a wait never gives up just before the thing happened.
    Between looks the clock sleeps ``interval`` seconds (less, to land on the deadline).
    """
    deadline = clock.now() + timedelta(seconds=max(0.0, timeout))
    while True:
        if predicate():
            return True
        left = (deadline - clock.now()).total_seconds()
        if left <= 0:
            return False
        clock.sleep(min(interval, left))
