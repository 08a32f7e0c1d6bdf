"""Issue 15's table: what Phoenix adds on top of the cloud's own critical path, by size.

Run: ``.venv/bin/python -m bench.bench_scale`` (``--sizes 10 100`` for a quick look).
For 10 / 100 / 1,000 / 10,000 nodes it prints:

* ``plan()`` median milliseconds, mid-switch (the pure planner, ``bench_engine``);
* Phoenix's CPU per node over a whole blue-green redeploy on the memory cloud;
* the simulated deploy time divided by the critical path. The memory cloud runs with
  its latency model (``phoenix.providers.memory.Latency``): boots of 20-30 s, a load
  balancer PENDING_UPDATE for 2 s after each member write (Octavia-like: writes
  meanwhile get 409). The critical path is what no tool can avoid: the slowest boot,
  the health gate (``healthy_threshold`` probes ``interval`` apart), and two
  load-balancer updates (the join must finish before the drain can be written, the drain
  before the removal; a drain with no request in flight ends at once, as the memory
  balancer's members have none);
* control-plane requests per node (every Protocol call but health probes) and
  load-balancer member writes per deploy (batched: O(polls), not O(nodes)).

The clock is the fake one (time passes only when Phoenix waits), so "simulated" seconds
are the cloud's and the CPU seconds are Phoenix's own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import structlog

import phoenix
from bench.bench_engine import NOW, bench_planner
from phoenix.clock import FakeClock
from phoenix.model import Flavor, Image
from phoenix.providers.memory import Latency, MemoryCloud

BOOT, JITTER, LB_UPDATE = 20.0, 10.0, 2.0
INTERVAL, THRESHOLD, DRAIN = 1.0, 2, 10.0
SPEC = f"""\
app: bench
provider: {{name: memory}}
regions: [region-a]
image: {{name: golden}}
flavor: m1.small
count: COUNT
template: t.j2
vars: {{v: VALUE}}
health: {{http: {{port: 80}}, interval: {INTERVAL:g}s, timeout: 0.5s,
         healthy_threshold: {THRESHOLD}, deadline: 1h}}
rollout: {{strategy: blue-green, drain_timeout: {DRAIN:g}s, deadline: 2h}}
load_balancer: {{pool: p, member_port: 80}}
"""
AFTER_BOOT = THRESHOLD * INTERVAL + 2 * LB_UPDATE
LB_WRITES = ("lb.add_member", "lb.drain_member", "lb.remove_member", "lb.change_members")


def bench_redeploy(count: int) -> dict[str, float]:
    """One blue-green redeploy of ``count`` nodes (after a first deploy that sets up)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "t.j2").write_text(
            "#cloud-config\nwrite_files: [{path: /x, content: '{{ vars.v }}'}]\n")
        clock = FakeClock(NOW)
        cloud = MemoryCloud(["region-a"], clock=clock, boot_seconds=BOOT,
                            latency=Latency(boot_jitter_seconds=JITTER,
                                            lb_update_seconds=LB_UPDATE))
        cloud.add_image(Image("img-golden", "golden", NOW - timedelta(days=1)))
        cloud.add_flavor(Flavor("m1.small", "m1.small"))
        spec_file = root / "phoenix.yaml"

        def deploy(value: str) -> None:
            spec_file.write_text(SPEC.replace("COUNT", str(count)).replace("VALUE", value))
            phoenix.deploy(phoenix.load_spec(spec_file), provider=cloud.provider(), clock=clock)

        deploy("one")
        calls_before = dict(cloud.calls)
        simulated_before, cpu_before = clock.now(), time.process_time()
        deploy("two")
        cpu = time.process_time() - cpu_before
        simulated = (clock.now() - simulated_before).total_seconds()
        delta = {k: v - calls_before.get(k, 0) for k, v in cloud.calls.items()}
        new = [s for s in cloud.servers("region-a") if s.created_at >= simulated_before]
        slowest = max(BOOT + JITTER * cloud.uniform("boot", s.name) for s in new)
        critical = slowest + AFTER_BOOT
        control = sum(v for k, v in delta.items() if not k.startswith("health."))
        return {
            "cpu_ms_per_node": cpu * 1000 / count,
            "ratio": simulated / critical,
            "critical_s": critical,
            "simulated_s": simulated,
            "requests_per_node": control / count,
            "lb_writes": sum(delta.get(k, 0) for k in LB_WRITES),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    print(f"critical path: the slowest boot ({BOOT:g}-{BOOT + JITTER:g} s) + gate"
          f" {THRESHOLD}x{INTERVAL:g} s + 2 LB updates of {LB_UPDATE:g} s")
    print(f"{'nodes':>6} {'plan() ms':>10} {'CPU ms/node':>12} {'time/critical':>14}"
          f" {'simulated s':>12} {'critical s':>11} {'requests/node':>14} {'LB writes':>10}")
    for count in args.sizes:
        plan_ms = bench_planner(count, rounds=5 if count >= 10000 else 20) * 1000
        row = bench_redeploy(count)
        print(f"{count:>6} {plan_ms:>10.1f} {row['cpu_ms_per_node']:>12.2f}"
              f" {row['ratio']:>14.2f} {row['simulated_s']:>12.1f} {row['critical_s']:>11.1f}"
              f" {row['requests_per_node']:>14.1f} {row['lb_writes']:>10.0f}")


if __name__ == "__main__":
    main()
