"""The CPU an idle `phoenix watch` round costs per app, by fleet size (issue 14).

An app of N healthy nodes on the in-memory cloud (fake clock, so only Phoenix's own
work is measured: observe, the health tracker, the verdict, the metrics), deployed once,
then R watch rounds in which nothing is to be done. Prints the CPU seconds per round.

Run: ``python bench/bench_watch_idle.py --nodes 10 100 1000 --rounds 20``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import phoenix
from phoenix.watch import Watcher
from tests.e2e.conftest import make_world


def measure(nodes: int, rounds: int) -> tuple[float, float]:
    """(CPU seconds of the deploy, CPU seconds per idle round) for ``nodes`` nodes."""
    world = make_world(Path(tempfile.mkdtemp()) / "app")
    world.tmp.mkdir()
    spec = world.spec(count=nodes)
    started = time.process_time()
    phoenix.deploy(spec, provider=world.provider(), clock=world.clock)
    deploy_cpu = time.process_time() - started
    with Watcher([spec], clock=world.clock, providers={"web": world.provider()}) as watcher:
        watcher.round()  # the first look probes up to unhealthy_threshold times
        started = time.process_time()
        for _ in range(rounds):
            [report] = watcher.round()
            assert report.state == "healthy", report
            world.clock.advance(10)
        per_round = (time.process_time() - started) / rounds
    return deploy_cpu, per_round


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    print(f"{'nodes':>6} {'deploy CPU s':>13} {'idle round CPU ms':>18}")
    for nodes in args.nodes:
        deploy_cpu, per_round = measure(nodes, args.rounds)
        print(f"{nodes:>6} {deploy_cpu:>13.2f} {per_round * 1000:>18.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
