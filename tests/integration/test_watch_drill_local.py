"""Issue 14's "Done when", automated: the outage drill with ``phoenix watch`` running.

The example app serves from local-a through the DNS front end (the local DNS stand-in)
with ``failover: {after: 2s}``; ``phoenix watch --interval 1s --listen off`` runs as a
subprocess; a client loads the front end. ``phoenix drill outage --region local-a``
SIGKILLs local-a's balancer and nodes and makes its API answer "unavailable". No other
Phoenix command follows: watch must notice that local-a cannot serve, wait out
``failover.after``, put the serving release into local-b (health-gated) and switch the
front end there. Asserted: watch's JSON report and ``history`` record the failover,
DNS points at local-b, local-b's pool has ``count`` healthy SERVING members of the
release that served before, requests succeed again and none fails after the switch, and
the failed-request window (first failure after the drill to the first success after
which nothing fails) stays under ``WINDOW_GOAL``. The window, failed and total requests
are printed (``pytest -s``) for the README; this replaces the hand measurement there.

Why a test: the hand measurement was one run on one balancer; this keeps the number
honest as the engine, watch and the local provider change, on both balancers.

It reuses the harnesses of ``tests/e2e/test_local_failover.py`` (the ``site`` fixture
with a DNS record, ``TimedLoad`` through ``under_load``, ``error_window``,
``phoenix_cli``) and ``tests/integration/test_watch_local.py`` (``Watch``, which runs the
real ``phoenix watch`` and reads its JSON lines). Real processes and sockets on
127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import phoenix
from phoenix.providers.local.outage import end_outage
from tests.e2e import test_local_failover
from tests.e2e.test_local_failover import (
    A,
    B,
    Site,
    TimedLoad,
    error_window,
    phoenix_cli,
    under_load,
)
from tests.e2e.test_local_failover import site as site
from tests.integration.test_lease_processes import Hello
from tests.integration.test_watch_local import INTERVAL, Watch, healthy, story
from tests.integration.test_writes_stay_inside import Sandbox

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAILOVER_AFTER = "2s"  # failover.after, as the README's hand measurement had it
WINDOW_GOAL = 15.0  # seconds: issue 14's goal for the failed-request window
# From the drill to watch's failover line: a round to see local-a down (INTERVAL),
# failover.after, another round, then the failover itself: three boots, the health gate
# (2 checks 0.5 s apart), joining the pool, the front end's switch. Measured at 4-6 s on
# 2 cores. Past twice the goal the window assertion would fail anyway: stop waiting.
FAILOVER_BOUND = 2 * WINDOW_GOAL
RATE = 25.0  # requests/s the load sends (the README's hand measurement had 20/s)
MIN_RATE = 20.0  # requests/s it must reach
DNS = {A: "127.1.255.254", B: "127.2.255.254"}  # each region's balancer address


class WatchedSite(Hello):
    """The ``site`` as ``Watch`` runs it: ``phoenix watch`` in the site's folder, JSON
    logs (for the front end's switch time) and no /metrics listener (``--listen off``)."""

    def command(self, *args: str) -> list[str]:
        given = list(args)
        if given[:1] == ["watch"]:
            at = given.index("--listen")
            given[at + 1] = "off"
            given[1:1] = ["--log-format", "json"]
        return super().command(*given)


class PacedClient(httpx.AsyncClient):
    """An ``AsyncClient`` whose GETs leave at ``rate`` per second over all its users."""

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gap = 1 / rate
        self.next_at = 0.0

    async def get(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        now = asyncio.get_running_loop().time()
        slot = max(now, self.next_at)
        self.next_at = slot + self.gap
        await asyncio.sleep(slot - now)
        return await super().get(url, **kwargs)


@dataclass
class PacedLoad(TimedLoad):
    """``TimedLoad`` at RATE requests/s: unpaced, its workers loop as fast as the front
    end fails (hundreds of 503s a second during the outage), which makes the failed
    count meaningless and takes the CPU the failover needs."""

    def run(self, workers: int = 8) -> None:
        async def main() -> None:
            limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
            async with PacedClient(RATE, timeout=5, limits=limits) as client:
                await asyncio.gather(*(self._worker(client) for _ in range(workers)))

        asyncio.run(main())


def watch_site(site: Site, tmp_path: Path) -> WatchedSite:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return WatchedSite(Sandbox(tmp_path, site.root, env), site.spec_path.read_text())


def switched_after(watcher: Watch, moment: float) -> float | None:
    """When (wall clock) watch's process switched the DNS front end, first after
    ``moment``, from its JSON log line; None if it has not."""
    for line in watcher.stderr_path.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError):
            entry = json.loads(line)
            if entry.get("event") == "dns front end switched":
                at = datetime.fromisoformat(entry["timestamp"]).timestamp()
                if at >= moment:
                    return at
    return None


def failed_span(load: TimedLoad, since: float) -> tuple[float, float] | None:
    """Seconds after ``since``: the first failed request's start, and the end of the
    first success after which no request failed (the failed-request window's ends);
    None when nothing failed."""
    outcomes = list(load.outcomes)
    failed = [o for o in outcomes if o.started >= since and not o.ok]
    if not failed:
        return None
    last = max(o.started for o in failed)
    recovered = [o.ended for o in outcomes if o.ok and o.started > last]
    end = min(recovered) if recovered else time.time()
    return min(o.started for o in failed) - since, end - since


def failed_over(report: dict[str, Any]) -> bool:
    return bool(report["action"] == "failover")


def test_watch_fails_over_after_the_outage_drill_under_load(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # under_load makes its own TimedLoad; this one is paced.
    monkeypatch.setattr(test_local_failover, "TimedLoad", PacedLoad)
    site.spec_path.write_text(site.spec_path.read_text()
                              + f"failover: {{after: {FAILOVER_AFTER}}}\n")
    spec = site.spec()
    assert spec.failover is not None and spec.dns is not None
    first, _ = phoenix_cli(site, "deploy")
    release = first["release"]
    assert first["region"] == A and first["dns"] == DNS[A], first

    watcher = Watch(watch_site(site, tmp_path), "watch")
    drilled = 0.0  # when the drill started (time.monotonic(), watch's lines' clock)
    try:
        watcher.wait(healthy(release), 0, 60, "a first healthy round")

        def drill_then_wait() -> tuple[dict[str, Any], float | None]:
            """The drill (the only command), then nothing but reading watch's lines."""
            nonlocal drilled
            drilled, wall = time.monotonic(), time.time()
            drill, _ = phoenix_cli(site, "drill", "outage", "--region", A)
            assert drill["region"] == A and drill["killed_pids"], drill
            line = watcher.wait(failed_over, drilled, FAILOVER_BOUND,
                                "a failover after the drill")
            return line.report, switched_after(watcher, wall)

        load, moved, cut, switched = under_load(site, drill_then_wait, outage=False)
        answer = httpx.get(site.front_end_url(), timeout=10)
        watcher.stop()
        assert watcher.process.returncode == 0, watcher.stderr()
        # Read while local-a is still down, as an operator would see it.
        records = phoenix_cli(site, "history")[0]["records"]
        status = phoenix.status(site.spec())
    finally:
        end_outage(site.state_dir, A)
        if watcher.process.poll() is None:
            watcher.kill()

    span = failed_span(load, cut)
    failed = load.failed_since(cut)
    starts = sorted(o.started for o in load.outcomes)
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    print(f"\n[{site.balancer}] drill outage with watch (failover.after {FAILOVER_AFTER},"
          f" --interval {INTERVAL:g}s): failed-request window"
          f" {span[1] - span[0] if span else 0.0:.2f}s (requests failed from"
          f" {span[0] if span else 0.0:+.2f}s to {span[1] if span else 0.0:+.2f}s after the"
          f" drill; {error_window(load, cut):.2f}s from the drill), {len(failed)} failed of"
          f" {len(load.outcomes)} requests at {rate:.0f}/s; DNS switched"
          f" {switched - cut:+.2f}s; {load.ok_since(switched)} ok after the switch;"
          f" failures: {Counter(o.error for o in failed).most_common(3)}\n"
          f"  watch: {story(watcher, drilled)}", flush=True)

    # Watch saw local-a down, waited failover.after, then moved the serving release by
    # itself; its report and the history say so.
    reports = [line.report for line in watcher.since(drilled)]
    assert any(r["state"] == "region-down" and r["region"] == A for r in reports), reports
    assert moved["state"] == "acting" and moved["outcome"] == "succeeded", moved
    assert moved["region"] == B and moved["release"] == release, moved
    moves = [r for r in records if r["action"] == "failover"]
    assert [(r["region"], r["release"], r["outcome"]) for r in moves] == [
        (B, release, "succeeded")], records

    # DNS points at local-b, whose pool serves the same release on count healthy nodes.
    assert status.serving_region == B and status.dns == DNS[B], status
    assert {r.region: r.dns_points_here for r in status.regions} == {A: False, B: True}
    (region_b,) = [r for r in status.regions if r.region == B]
    serving = [n for n in region_b.nodes if n.member == "SERVING"]
    assert len(serving) == spec.count, region_b
    assert all(n.release == release and n.health == "HEALTHY" for n in serving), region_b

    # Requests succeed again: none failed after the switch, and the front end answers.
    assert rate >= MIN_RATE
    assert failed, "the drill should have failed some requests"
    assert load.failed_since(switched) == [], load.failed_since(switched)[:5]
    assert load.ok_since(switched) > 20
    assert answer.status_code == 200 and answer.text.startswith(f"release {release} "), (
        answer.text)
    assert span is not None and span[1] - span[0] < WINDOW_GOAL, span
