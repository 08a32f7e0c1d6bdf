"""Latency and errors through the local load balancer: steady state vs during a deploy.

Run: ``python bench/bench_local_deploy.py [--balancer builtin|haproxy] [--requests 5000]``.
It copies examples/hello to a temporary directory, deploys it on the local provider,
measures a steady load, then redeploys a changed image while the same load runs, and
prints p50/p99 latency and the number of failed requests for both, plus the deploy time.
Everything runs on 127.0.0.0/8 and is destroyed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import structlog

import phoenix

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello"


class Load:
    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self, limit: int, workers: int = 8) -> None:
        async def worker(client: httpx.AsyncClient) -> None:
            while not self.stop.is_set() and len(self.latencies) < limit:
                start = time.perf_counter()
                try:
                    response = await client.get(self.url)
                    ok = response.status_code == 200 and response.text.startswith("release ")
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - start)
                self.failed += not ok

        async def main() -> None:
            async with httpx.AsyncClient(timeout=10) as client:
                await asyncio.gather(*(worker(client) for _ in range(workers)))

        asyncio.run(main())

    def summary(self) -> str:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        return (f"{len(ordered):>6} requests  p50 {pct(0.5):6.1f} ms  p99 {pct(0.99):6.1f} ms"
                f"  failed {self.failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--balancer", default="auto", choices=["auto", "builtin", "haproxy"])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "hello"
        shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".phoenix", "__pycache__"))
        with socket.socket() as probe:
            probe.bind(("127.1.255.254", 0))
            port = probe.getsockname()[1]
        spec_path = root / "phoenix.yaml"
        spec_path.write_text(
            spec_path.read_text()
            .replace("balancer: auto", f"balancer: {args.balancer}")
            .replace("lb_port: 8080", f"lb_port: {port}")
        )
        os.chdir(root)
        first = phoenix.deploy(phoenix.load_spec(spec_path))
        url = first.endpoint or ""
        try:
            steady = Load(url)
            steady.run(limit=args.requests)
            server = root / "image" / "server.py"
            server.write_text(server.read_text() + "\n# bench: a new release\n")
            during = Load(url)
            thread = threading.Thread(target=during.run, args=(10**9,))
            thread.start()
            started = time.perf_counter()
            second = phoenix.deploy(phoenix.load_spec(spec_path))
            took = time.perf_counter() - started
            while len(during.latencies) < args.requests:
                time.sleep(0.05)
            during.stop.set()
            thread.join()
            print(f"balancer {args.balancer}: {first.release} -> {second.release}"
                  f" in {took:.1f}s ({second.steps} steps)")
            print(f"  steady        {steady.summary()}")
            print(f"  during deploy {during.summary()}")
        finally:
            phoenix.destroy(phoenix.load_spec(spec_path), purge_records=True, timeout=30)


if __name__ == "__main__":
    main()
