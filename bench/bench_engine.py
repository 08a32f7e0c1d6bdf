"""Benchmarks: planner cost per observation, and whole deploys on the in-memory cloud.

Run: ``python bench/bench_engine.py`` (add ``--quick`` for a smoke run). It prints, per
fleet size, the median time of one ``plan()`` call, and for a full blue-green redeploy the
wall time (boot latency is simulated by a fake clock, so this is Phoenix's own overhead)
and the number of control-plane calls the deploy made.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

import phoenix
from phoenix.clock import FakeClock
from phoenix.model import (
    META_SERVING_SINCE,
    Flavor,
    Health,
    Image,
    Member,
    Node,
    NodeHealth,
    NodeState,
)
from phoenix.planner import Observed, Target, node_name, plan
from phoenix.providers.memory import MemoryCloud
from phoenix.spec import HealthSpec, HttpCheck, RolloutSpec

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _fleet(release: str, count: int, serving: bool) -> tuple[list[Node], list[Member]]:
    nodes = [
        Node(
            id=f"{release}-{i}",
            name=node_name("bench", release, i),
            region="r",
            app="bench",
            release=release,
            index=i,
            state=NodeState.ACTIVE,
            created_at=NOW - timedelta(minutes=5),
            address=f"127.0.{i // 250}.{i % 250 + 1}",
            metadata={META_SERVING_SINCE: NOW.isoformat()},
        )
        for i in range(count)
    ]
    members = [Member(n.name, n.address or "", 80) for n in nodes] if serving else []
    return nodes, members


def bench_planner(count: int, rounds: int) -> float:
    """Median seconds of one plan() mid-switch: old fleet serving, new fleet healthy."""
    old_nodes, old_members = _fleet("r1-a", count, serving=True)
    new_nodes, _ = _fleet("r2-b", count, serving=False)
    nodes = old_nodes + new_nodes
    health = {n.name: NodeHealth(Health.HEALTHY) for n in nodes}
    observed = Observed("r", tuple(nodes), tuple(old_members), health)
    target = Target(
        "bench", "r", "r2-b", count, RolloutSpec(),
        HealthSpec(http=HttpCheck(port=80)), 80,
    )
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        plan(target, observed, NOW)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_deploy(count: int) -> tuple[float, int, int]:
    """(wall seconds, control-plane calls, steps) of a blue-green redeploy of ``count``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "t.j2").write_text(
            "#cloud-config\nwrite_files: [{path: /x, content: '{{ vars.v }}'}]\n"
        )
        spec_text = (
            "app: bench\nprovider: {name: memory}\nregions: [region-a]\n"
            "image: {name: golden}\nflavor: m1.small\n"
            f"count: {count}\ntemplate: t.j2\nvars: {{v: VALUE}}\n"
            "health: {http: {port: 80}, interval: 1s, timeout: 0.5s}\n"
            "load_balancer: {pool: p, member_port: 80}\n"
        )
        clock = FakeClock(NOW)
        cloud = MemoryCloud(["region-a"], clock=clock, boot_seconds=2)
        cloud.add_image(Image("img-golden", "golden", NOW - timedelta(days=1)))
        cloud.add_flavor(Flavor("m1.small", "m1.small"))
        (root / "phoenix.yaml").write_text(spec_text.replace("VALUE", "one"))
        phoenix.deploy(phoenix.load_spec(root / "phoenix.yaml"), provider=cloud.provider(),
                       clock=clock)
        before = cloud.total_calls()
        (root / "phoenix.yaml").write_text(spec_text.replace("VALUE", "two"))
        start = time.perf_counter()
        result = phoenix.deploy(phoenix.load_spec(root / "phoenix.yaml"),
                                provider=cloud.provider(), clock=clock)
        return time.perf_counter() - start, cloud.total_calls() - before, result.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    sizes = [10, 50] if args.quick else [10, 100, 500]
    print(f"{'nodes':>6} {'plan() median':>14} {'redeploy wall':>14} {'calls':>7} {'steps':>6}")
    for count in sizes:
        per_plan = bench_planner(count, rounds=5 if args.quick else 30)
        wall, calls, steps = bench_deploy(count)
        print(f"{count:>6} {per_plan * 1000:>12.2f}ms {wall:>13.2f}s {calls:>7} {steps:>6}")


if __name__ == "__main__":
    main()
