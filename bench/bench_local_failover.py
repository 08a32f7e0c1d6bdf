"""Region failover on the local provider: how long clients see errors, and how long the
moves take.

Run: ``python bench/bench_local_failover.py [--balancer builtin|haproxy] [--runs 3]``.
Each run copies examples/hello to a temporary directory with a DNS record, deploys it to
local-a, sends a steady load to the global front end (the DNS stand-in), cuts local-a's
power (its balancer and nodes SIGKILLed), fails over to local-b, ends the outage and
fails back. It prints, per run: the error window (outage to the first request answered
again), requests that failed after the DNS switch (must be 0), the failover and
failback durations, and failed requests during the failback (must be 0). Everything
runs on 127.0.0.0/8 and is destroyed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import structlog

import phoenix
from phoenix.clock import SystemClock
from phoenix.engine import Event
from phoenix.providers.local.outage import end_outage, start_outage
from phoenix.providers.local.provider import open_local_provider

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hello"
ZONE, RECORD = "bench.test.", "hello"


@dataclass
class Timeline:
    """(start, end, ok) of every request, by wall clock."""

    url: str
    requests: list[tuple[float, float, bool]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, workers: int = 4) -> None:
        async def worker(client: httpx.AsyncClient) -> None:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    response = await client.get(self.url)
                    ok = response.status_code == 200 and response.text.startswith("release ")
                except httpx.HTTPError:
                    ok = False
                self.requests.append((start, time.monotonic(), ok))
                if not ok:
                    await asyncio.sleep(0.01)

        async def main() -> None:
            async with httpx.AsyncClient(timeout=5) as client:
                await asyncio.gather(*(worker(client) for _ in range(workers)))

        asyncio.run(main())

    def failed_after(self, moment: float) -> int:
        return sum(1 for start, _, ok in self.requests if start >= moment and not ok)

    def error_window(self, since: float) -> float:
        failed = [start for start, _, ok in self.requests if start >= since and not ok]
        if not failed:
            return 0.0
        back = [end for start, end, ok in self.requests if ok and start > failed[-1]]
        return (min(back) if back else time.monotonic()) - since


def under_load(url: str, action: object, outage: Path | None) -> tuple[Timeline, float, float,
                                                                        float]:
    """The load, the cut moment, the DNS switch moment and the action's duration."""
    load = Timeline(url)
    thread = threading.Thread(target=load.run)
    thread.start()
    switched: list[float] = []

    def on_event(event: Event) -> None:
        if event.kind == "steps" and event.message == "dns":
            switched.append(time.monotonic())

    try:
        time.sleep(1.0)
        cut = time.monotonic()
        if outage is not None:
            start_outage(outage, "local-a", reason="bench")
        action(on_event)  # type: ignore[operator]
        took = time.monotonic() - cut
        time.sleep(2.0)
    finally:
        load.stop.set()
        thread.join()
    return load, cut, switched[-1], took


def one_run(balancer: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "hello"
        shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".phoenix", "__pycache__"))
        with socket.socket() as probe:
            probe.bind(("127.1.255.254", 0))
            port = probe.getsockname()[1]
        spec_path = root / "phoenix.yaml"
        spec_path.write_text(
            spec_path.read_text()
            .replace("balancer: auto", f"balancer: {balancer}")
            .replace("lb_port: 8080", f"lb_port: {port}")
            .replace("drain_timeout: 10s", "drain_timeout: 1s")
            + f"\ndns: {{zone: {ZONE}, record: {RECORD}, ttl: 1}}\n"
        )
        os.chdir(root)
        spec = phoenix.load_spec(spec_path)
        state_dir = root / ".phoenix" / "local"
        try:
            phoenix.deploy(spec)
            provider = open_local_provider(spec.provider.options, spec.regions,
                                           clock=SystemClock())
            url = str(provider.dns.url(ZONE, RECORD)) + "/"  # type: ignore[union-attr]
            out, cut, switched, failover_took = under_load(
                url, lambda on_event: phoenix.failover(spec, to="local-b", on_event=on_event),
                state_dir,
            )
            end_outage(state_dir, "local-a")
            back, _, _, failback_took = under_load(
                url, lambda on_event: phoenix.failback(spec, on_event=on_event), None
            )
            return {
                "error window s": out.error_window(cut),
                "failed after switch": out.failed_after(switched),
                "failover s": failover_took,
                "failback s": failback_took,
                "failed during failback": back.failed_after(0.0),
                "requests": len(out.requests) + len(back.requests),
            }
        finally:
            end_outage(state_dir, "local-a")
            phoenix.destroy(spec, purge_records=True, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--balancer", default="auto", choices=["auto", "builtin", "haproxy"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    runs = [one_run(args.balancer) for _ in range(args.runs)]
    print(f"balancer {args.balancer}, {args.runs} run(s): median (min-max)")
    for key in runs[0]:
        values = [r[key] for r in runs]
        print(f"  {key:<24} {statistics.median(values):8.2f}"
              f"  ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
