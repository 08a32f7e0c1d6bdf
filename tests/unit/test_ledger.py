"""The pool ledger (issue 15): the poll's stamps in one store object per region, so a
replaced node costs create + delete, not two metadata writes more."""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phoenix
from phoenix.clock import FakeClock
from phoenix.ledger import Ledger
from phoenix.model import (
    META_DRAIN_SINCE,
    META_SERVING_SINCE,
    Flavor,
    Image,
    Node,
    NodeState,
)
from phoenix.providers.base import Store
from phoenix.providers.memory import MemoryCloud
from phoenix.spec import Spec

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def node(node_id: str, **metadata: str) -> Node:
    return Node(id=node_id, name=f"web-r1-{node_id}", region="r", app="web", release="r1",
                index=0, state=NodeState.ACTIVE, created_at=T0, metadata=metadata)


def _app(root: Path, *, count: int, boot_seconds: float) -> tuple[
        FakeClock, MemoryCloud, Callable[[str], Spec]]:
    """A memory cloud with a golden image, and the app's spec for a template value
    (each value a new release)."""
    (root / "t.j2").write_text(
        "#cloud-config\nwrite_files: [{path: /x, content: '{{ vars.v }}'}]\n")
    clock = FakeClock(T0)
    cloud = MemoryCloud(["region-a"], clock=clock, boot_seconds=boot_seconds)
    cloud.add_image(Image("img-golden", "golden", T0))
    cloud.add_flavor(Flavor("m1.small", "m1.small"))
    text = ("app: web\nprovider: {name: memory}\nregions: [region-a]\n"
            f"image: {{name: golden}}\nflavor: m1.small\ncount: {count}\ntemplate: t.j2\n"
            "vars: {v: VALUE}\nhealth: {http: {port: 80}, interval: 1s}\n"
            "load_balancer: {pool: p, member_port: 80}\n")
    spec_file = root / "phoenix.yaml"

    def spec_of(value: str) -> Spec:
        spec_file.write_text(text.replace("VALUE", value))
        return phoenix.load_spec(spec_file)

    return clock, cloud, spec_of


def test_stamps_are_merged_over_metadata_and_gone_servers_are_dropped() -> None:
    store = MemoryCloud(["r"], clock=FakeClock(T0)).provider().store
    ledger = Ledger(store, "web", "r")
    a, b = node("a"), node("b", **{META_SERVING_SINCE: "old", META_DRAIN_SINCE: "old"})
    ledger.merged([a, b], ledger.read())
    ledger.stamp({"a": {META_SERVING_SINCE: "t1", META_DRAIN_SINCE: ""},
                  "b": {META_DRAIN_SINCE: "t2"}})

    merged_a, merged_b = ledger.merged([a, b], ledger.read())
    assert merged_a.metadata == {META_SERVING_SINCE: "t1"}  # "" clears
    assert merged_b.metadata == {META_SERVING_SINCE: "old", META_DRAIN_SINCE: "t2"}

    ledger.merged([a], ledger.read())  # b is gone
    ledger.stamp({"a": {META_DRAIN_SINCE: "t3"}})
    assert set(ledger.read()) == {"a"}


def test_an_unreadable_ledger_reads_as_empty() -> None:
    store = MemoryCloud(["r"], clock=FakeClock(T0)).provider().store
    store.put("apps/web/ledger/r.json", b"{not json")
    assert Ledger(store, "web", "r").read() == {}


def test_a_redeploy_writes_no_server_metadata() -> None:
    """Per replaced node: one create and one delete; the stamps go to the ledger."""

    with tempfile.TemporaryDirectory() as tmp:
        clock, cloud, spec_of = _app(Path(tmp), count=20, boot_seconds=2)
        for value in ("one", "two"):
            before = dict(cloud.calls)
            phoenix.deploy(spec_of(value), provider=cloud.provider(), clock=clock)
        delta = {k: v - before.get(k, 0) for k, v in cloud.calls.items()}

    assert delta.get("compute.set_metadata", 0) == 0
    assert delta["compute.create_node"] == 20 and delta["compute.delete_node"] == 20
    member_writes = sum(delta.get(f"lb.{m}", 0) for m in
                        ("add_member", "drain_member", "remove_member", "change_members"))
    assert member_writes <= 6  # a few polls' batches, not one per member


class _CountingStore:
    """A store that counts reads of each key."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.gets: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get(self, key: str) -> bytes | None:
        self.gets[key] += 1
        return self.inner.get(key)


def test_the_lease_holder_reads_the_ledger_once_per_run() -> None:
    """Only the lease holder writes the ledger, so while it holds the lease it reads it
    once and then trusts its own writes: one GET a run, not one a poll (issue 15: the
    store was a third of Phoenix's requests on OpenStack). Without the lease, every read
    goes to the store."""
    with tempfile.TemporaryDirectory() as tmp:
        clock, cloud, spec_of = _app(Path(tmp), count=3, boot_seconds=5)
        plain = cloud.provider()
        store = _CountingStore(plain.store)
        provider = dataclasses.replace(plain, store=store)  # type: ignore[arg-type]
        for value in ("one", "two"):
            result = phoenix.deploy(spec_of(value), provider=provider, clock=clock)
            assert result.steps > 3  # several polls
        key = "apps/web/ledger/region-a.json"
        assert store.gets[key] == 2  # once per deploy

        ledger = Ledger(store, "web", "region-a")  # no lease held: always the store
        ledger.read()
        ledger.read()
        assert store.gets[key] == 4
        served = {e.get(META_SERVING_SINCE) for e in ledger.read().values()}
        assert len(served) >= 1 and None not in served
