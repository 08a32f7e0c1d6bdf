"""Release records and history, on the in-memory store (the lease: test_lease.py)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

from phoenix.clock import FakeClock
from phoenix.providers.memory import MemoryCloud
from phoenix.records import DeployRecord, Records

NOW = datetime(2026, 4, 1, tzinfo=UTC)


def store():  # type: ignore[no-untyped-def]
    return MemoryCloud(["r"], clock=FakeClock(NOW)).provider().store


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




def test_records_carry_a_schema_version_and_ignore_fields_they_do_not_know() -> None:
    """A newer Phoenix's records (more fields) must not break an older one's history."""
    records = Records(store(), "web")
    record = DeployRecord(
        deploy_id="d-1", app="web", action="deploy", release="r1-a", region="r",
        strategy="blue-green", started_at=NOW.isoformat(), finished_at=NOW.isoformat(),
        outcome="succeeded", lease=7,
    )
    written = json.loads(record.to_json())
    assert written["schema_version"] == 1 and written["lease"] == 7

    newer = {**written, "schema_version": 2, "canary_metrics": {"p99": 0.2}, "actor": "w-1"}
    records.store.put("apps/web/deploys/2026-04-01-d-2.json", json.dumps(newer).encode())

    [read] = [d for d in records.deploys() if d.release == "r1-a"]
    assert read.lease == 7 and read.outcome == "succeeded"


def test_history_is_one_object_read_with_one_get() -> None:
    """Not one list plus one GET per record (several times per deploy)."""
    plain = store()
    calls: list[str] = []

    class Counting:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            def call(*args):  # type: ignore[no-untyped-def]
                calls.append(name)
                return getattr(plain, name)(*args)
            return call

    records = Records(Counting(), "web")  # type: ignore[arg-type]
    for i in range(30):
        records.save_deploy(DeployRecord(
            deploy_id=f"d-{i}", app="web", action="deploy", release=f"r{i}-a", region="r",
            strategy="blue-green", started_at=(NOW + timedelta(minutes=i)).isoformat(),
            finished_at=(NOW + timedelta(minutes=i, seconds=9)).isoformat(),
            outcome="succeeded", events=["create web-r1-a-0"], lease=i + 1,
        ))
    calls.clear()

    history = records.deploys()

    assert calls == ["get"]
    assert [d.release for d in history] == [f"r{i}-a" for i in range(30)]
    assert [d.lease for d in history] == list(range(1, 31))
    assert records.last_good_release() == "r29-a"


def test_history_written_by_an_older_phoenix_is_still_read() -> None:
    """A store without the index (records one by one) reads as before, and the next save
    carries those records into the index."""
    records = Records(store(), "web")
    old = DeployRecord(
        deploy_id="d-old", app="web", action="deploy", release="r1-old", region="r",
        strategy="blue-green", started_at=NOW.isoformat(), finished_at=NOW.isoformat(),
        outcome="succeeded",
    )
    records.store.put("apps/web/deploys/old.json", old.to_json())

    assert [d.release for d in records.deploys()] == ["r1-old"]
    records.save_deploy(dataclasses.replace(
        old, deploy_id="d-new", release="r2-new",
        started_at=(NOW + timedelta(minutes=1)).isoformat()))
    records.store.delete("apps/web/deploys/old.json")
    assert [d.release for d in records.deploys()] == ["r1-old", "r2-new"]
