"""Release records, history and the deploy lock, on the in-memory store."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from phoenix.clock import FakeClock
from phoenix.errors import LockHeld
from phoenix.providers.memory import Faults, MemoryCloud
from phoenix.records import DeployLock, DeployRecord, Records

NOW = datetime(2026, 4, 1, tzinfo=UTC)


def store():  # type: ignore[no-untyped-def]
    return MemoryCloud(["r"], clock=FakeClock(NOW)).provider().store


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lock_is_exclusive_between_live_holders() -> None:
    s = store()
    first = DeployLock(s, "web", "d-1")
    first.pid = 1  # init: alive, and not us
    first.acquire(NOW)
    second = DeployLock(s, "web", "d-2")
    with pytest.raises(LockHeld) as held:
        second.acquire(NOW)
    assert "d-1@" in str(held.value)
    second.release()  # not ours: must not free it
    assert second.holder() is not None and second.holder().deploy_id == "d-1"  # type: ignore[union-attr]


def test_a_dead_holder_on_this_host_is_taken_over_at_once() -> None:
    s = store()
    crashed = DeployLock(s, "web", "d-crashed")
    crashed.pid = dead_pid()
    crashed.acquire(NOW)
    rerun = DeployLock(s, "web", "d-rerun")
    rerun.acquire(NOW + timedelta(seconds=1))
    assert rerun.holder().deploy_id == "d-rerun"  # type: ignore[union-attr]


def test_an_expired_lease_is_taken_over() -> None:
    s = store()
    elsewhere = DeployLock(s, "web", "d-away", ttl=60)
    elsewhere.host = "another-machine"
    elsewhere.acquire(NOW)
    mine = DeployLock(s, "web", "d-mine")
    with pytest.raises(LockHeld):
        mine.acquire(NOW + timedelta(seconds=30))
    mine.acquire(NOW + timedelta(seconds=61))
    assert mine.holder().deploy_id == "d-mine"  # type: ignore[union-attr]
    mine.release()
    assert mine.holder() is None


def test_lost_response_on_lock_create_is_recognised_as_ours() -> None:
    cloud = MemoryCloud(["r"], clock=FakeClock(NOW), faults=Faults(lost_response_rate=1.0))
    from phoenix.executor import Executor, RetryingStore

    executor = Executor(cloud.provider(), region="r", pool="p", clock=cloud.clock,
                        build_request=lambda step: None)  # type: ignore[arg-type,return-value]
    s = RetryingStore(cloud.provider().store, executor)
    lock = DeployLock(s, "web", "d-1")
    cloud.faults.lost_response_rate = 0.0
    # Simulate: the create succeeded but the caller never heard back.
    cloud.provider().store.create_exclusive(lock.key, lock._info(NOW))
    lock.acquire(NOW)  # finds its own deploy id: takes it instead of LockHeld
    assert lock.holder().deploy_id == "d-1"  # type: ignore[union-attr]


def test_history_is_ordered_and_last_good_release_skips_failures() -> None:
    records = Records(store(), "web")
    for i, (release, outcome) in enumerate(
        [("r1-a", "succeeded"), ("r2-b", "succeeded"), ("r3-c", "rolled-back")]
    ):
        records.save_deploy(DeployRecord(
            deploy_id=f"d-{i}", app="web", action="deploy", release=release, region="r",
            strategy="blue-green", started_at=(NOW + timedelta(minutes=i)).isoformat(),
            finished_at=(NOW + timedelta(minutes=i, seconds=30)).isoformat(), outcome=outcome,
        ))
    assert [d.release for d in records.deploys()] == ["r1-a", "r2-b", "r3-c"]
    assert records.last_good_release() == "r2-b"
    assert records.last_good_release(excluding="r2-b") == "r1-a"


def test_lock_acquired_when_every_other_store_write_loses_its_response() -> None:
    """Every other write acts, then its response is lost (the retry sees the result):
    the lease is ours at once, never a spurious LockHeld with no holder."""
    from phoenix.errors import Transient
    from phoenix.executor import Executor, RetryingStore

    cloud = MemoryCloud(["r"], clock=FakeClock(NOW))
    plain = cloud.provider().store

    class LosesFirstResponse:
        def __init__(self) -> None:
            self.lost: set[str] = set()

        def __getattr__(self, name: str) -> Any:
            attr = getattr(plain, name)
            if name not in ("put", "delete", "create_exclusive"):
                return attr

            def call(*args: Any) -> Any:
                result = attr(*args)
                key = f"{name} {args[0]}"
                if key in self.lost:
                    self.lost.discard(key)
                    return result
                self.lost.add(key)
                raise Transient(f"{name}: the response was lost (test)")

            return call

    executor = Executor(cloud.provider(), region="r", pool="p", clock=cloud.clock,
                        build_request=lambda step: None)  # type: ignore[arg-type,return-value]
    lock = DeployLock(RetryingStore(LosesFirstResponse(), executor), "web", "d-1")  # type: ignore[arg-type]
    lock.acquire(NOW)
    assert lock.holder().deploy_id == "d-1"  # type: ignore[union-attr]
