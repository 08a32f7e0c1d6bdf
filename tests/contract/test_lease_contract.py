"""Issue 13: the lease keeps one actor per app on every provider's real store (Swift
through the OpenStack harness, S3 through moto, the local directory, memory).

The exhaustive interleaving runs are in ``tests/unit/test_lease.py`` (in-process stores);
here each real store gets seeded random schedules of three contenders with crashes,
stalls and skewed clocks (``tests/lease_interleavings.py``), and real threads racing for
the same lease.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from itertools import count

from phoenix.clock import FakeClock
from phoenix.errors import LockHeld
from phoenix.lease import DeployLock
from phoenix.providers.base import Store
from tests.contract.conftest import ContractEnv
from tests.lease_interleavings import START, Actor, sample


class Prefixed:
    """A store seen under a prefix, so every run starts from an empty lease."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store, self.prefix = store, prefix

    def put(self, key: str, data: bytes) -> None:
        self.store.put(self.prefix + key, data)

    def get(self, key: str) -> bytes | None:
        return self.store.get(self.prefix + key)

    def list(self, prefix: str) -> list[str]:
        return [k[len(self.prefix):] for k in self.store.list(self.prefix + prefix)]

    def delete(self, key: str) -> None:
        self.store.delete(self.prefix + key)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        return self.store.create_exclusive(self.prefix + key, data)


def test_random_schedules_of_three_contenders_keep_one_actor(contract_env: ContractEnv) -> None:
    runs = count()

    def make_store() -> Store:
        return Prefixed(contract_env.provider.store, f"{contract_env.key_prefix}{next(runs)}/")

    def actors() -> list[Actor]:
        return [Actor("a", mutations=3), Actor("b", program="contend", skew=300.0),
                Actor("c", program="contend", skew=-300.0, mutations=1)]

    result = sample(make_store, actors, runs=12, seed=13)

    assert result.violations == []
    assert result.outcomes.get("refused", 0) + result.outcomes.get("lost", 0) > 0


def test_contenders_started_together_get_one_winner(contract_env: ContractEnv) -> None:
    store = Prefixed(contract_env.provider.store, contract_env.key_prefix)
    start = threading.Barrier(6)
    clock = FakeClock(START)

    def contend(i: int) -> int | None:
        lock = DeployLock(store, "web", f"d-{i}")  # type: ignore[arg-type]
        lock.host = f"host-{i}"  # alive to each other: nobody may take over
        start.wait()
        try:
            return lock.acquire(clock)
        except LockHeld:
            return None

    with ThreadPoolExecutor(max_workers=6) as pool:
        won = [g for g in pool.map(contend, range(6)) if g is not None]

    assert won == [1]
