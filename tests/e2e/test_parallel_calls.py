"""``rollout.max_parallel_calls``: how many creates and deletes a region has in flight.

A cloud that rate-limits its API (or a small project's quota on concurrent builds) wants
fewer calls at once; a big fleet on a generous cloud wants more (issue 15). Measured here
with a compute API that takes real time to answer, so that calls overlap as they would
against a real cloud.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest

import phoenix
from tests.e2e.conftest import World


class _SlowCompute:
    """A compute API whose creates and deletes take 30 ms; it records how many overlap."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.in_flight = 0
        self.most = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _timed(self, call: Any) -> Any:
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(0.03)
            return call()
        finally:
            with self._lock:
                self.in_flight -= 1

    def create_node(self, region: str, request: Any) -> Any:
        return self._timed(lambda: self.inner.create_node(region, request))

    def delete_node(self, region: str, node_id: str) -> None:
        self._timed(lambda: self.inner.delete_node(region, node_id))


@pytest.mark.parametrize("limit", [1, 3, 12])
def test_creates_and_deletes_in_flight_never_exceed_the_limit(world: World, limit: int) -> None:
    spec = world.spec(count=12, extra_rollout=f"  max_parallel_calls: {limit}\n"
                      "  max_surge: 100%")
    plain = world.cloud.provider()
    phoenix.deploy(spec, provider=plain, clock=world.clock)
    slow = _SlowCompute(plain.compute)
    provider = dataclasses.replace(plain, compute=slow)

    # A new release: 12 creates, then 12 deletes, in as few polls as the surge allows.
    result = phoenix.deploy(world.spec(count=12, greeting="again", extra_rollout=(
        f"  max_parallel_calls: {limit}\n  max_surge: 100%")), provider=provider,
        clock=world.clock)

    assert result.outcome == "succeeded"
    assert len(result.nodes) == 12
    # The limit is reached (the planner hands over all 12 at once) and never passed.
    assert slow.most == limit


def test_the_limit_is_checked_when_the_spec_is_read(world: World) -> None:
    with pytest.raises(phoenix.InputError, match=r"rollout\.max_parallel_calls"):
        world.spec(extra_rollout="  max_parallel_calls: 0")
