"""Region failover on the local provider, under load: two regions, the app serving from
local-a through the global front end (the DNS stand-in); local-a's load balancer and
nodes are killed (an outage); `failover` (or a `deploy`, which must notice local-a is
down) brings the app up in local-b and the front end follows. The error window is
measured; no request started after the DNS switch fails. Failback restores local-a
without a single failed request."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import phoenix
from phoenix.clock import SystemClock
from phoenix.providers.local.outage import end_outage, start_outage
from phoenix.providers.local.provider import open_local_provider
from tests.e2e.test_local_e2e import BALANCERS, App, alive, copy_example

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ZONE, RECORD = "example.test.", "hello"
A, B = "local-a", "local-b"


@dataclass
class Outcome:
    started: float
    ended: float
    ok: bool
    region: str | None = None  # which region's node answered (from the node's address)
    error: str | None = None


@dataclass
class TimedLoad:
    """Workers GET the front end until stopped, recording when each request ran."""

    url: str
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            started = time.time()
            try:
                response = await client.get(self.url)
                ok = response.status_code == 200 and response.text.startswith("release ")
                error = None if ok else f"{response.status_code} {response.text[:60]!r}"
                self.outcomes.append(Outcome(started, time.time(), ok, None, error))
            except httpx.HTTPError as exc:
                self.outcomes.append(
                    Outcome(started, time.time(), False, None, f"{type(exc).__name__}")
                )
                await asyncio.sleep(0.01)  # a refused connection returns at once

    def run(self, workers: int = 4) -> None:
        async def main() -> None:
            limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
            async with httpx.AsyncClient(timeout=5, limits=limits) as client:
                await asyncio.gather(*(self._worker(client) for _ in range(workers)))

        asyncio.run(main())

    def failed_since(self, moment: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.started >= moment and not o.ok]

    def ok_since(self, moment: float) -> int:
        return sum(1 for o in self.outcomes if o.started >= moment and o.ok)


class Site(App):
    """The hello example with a DNS record, reached through the local front end."""

    def front_end_url(self) -> str:
        spec = self.spec()
        provider = open_local_provider(spec.provider.options, spec.regions,
                                       clock=SystemClock())
        return str(provider.dns.url(ZONE, RECORD)) + "/"  # type: ignore[union-attr]

    @property
    def state_dir(self) -> Path:
        return self.state()

    def pids(self) -> set[int]:
        """Every node and balancer (region and front end) process of the site."""
        found = self.agent_pids()
        for path in self.state_dir.rglob("*.pid"):
            text = path.read_text().strip()
            if text.isdigit():
                found.add(int(text))
        return found


@pytest.fixture(params=BALANCERS)
def site(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[Site]:
    root, port = copy_example(
        tmp_path, request.param, drain_timeout="1s",
        append=f"\ndns: {{zone: {ZONE}, record: {RECORD}, ttl: 1}}\n",
    )
    monkeypatch.chdir(root)
    made = Site(root, request.param, port)
    try:
        yield made
    finally:
        for region in (A, B):
            end_outage(made.state_dir, region)
        try:
            phoenix.destroy(made.spec(), purge_records=True, timeout=30)
        finally:
            for pid in made.pids():
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def phoenix_cli(site: Site, *args: str) -> tuple[dict[str, Any], float | None]:
    """Run the real ``phoenix`` CLI; its JSON result and when the DNS front end switched
    (wall clock, from its JSON log line), if it did."""
    done = subprocess.run(
        [sys.executable, "-m", "phoenix", "--output", "json", "--log-format", "json", *args,
         str(site.spec_path)],
        cwd=site.root, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    switched = None
    for line in done.stderr.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "dns front end switched":
                switched = datetime.fromisoformat(entry["timestamp"]).timestamp()
    result: dict[str, Any] = json.loads(done.stdout)
    return result, switched


def under_load(
    site: Site, action: Callable[[], tuple[dict[str, Any], float | None]], *, outage: bool
) -> tuple[TimedLoad, dict[str, Any], float, float]:
    """Run the load; optionally cut local-a's power; run ``action``; keep loading 2 s past
    the DNS switch. Returns the load, the result, the outage and the switch moments."""
    load = TimedLoad(site.front_end_url())
    thread = threading.Thread(target=load.run)
    thread.start()
    try:
        time.sleep(1.0)
        cut = time.time()
        if outage:
            start_outage(site.state_dir, A)
        result, switched = action()
        assert switched is not None, "the DNS record was never switched"
        while time.time() < switched + 2.0:
            time.sleep(0.05)
    finally:
        load.stop.set()
        thread.join(timeout=30)
    return load, result, cut, switched


def error_window(load: TimedLoad, since: float) -> float:
    """From the outage to the first request that succeeded after it failed."""
    failed = [o for o in load.outcomes if o.started >= since and not o.ok]
    if not failed:
        return 0.0
    recovered = [o.ended for o in load.outcomes if o.ok and o.started > failed[-1].started]
    return (min(recovered) if recovered else time.time()) - since


def test_outage_then_failover_moves_the_app_and_failback_restores_it(site: Site) -> None:
    first, _ = phoenix_cli(site, "deploy")
    assert first["region"] == A and first["dns"] == "127.1.255.254"

    load, moved, cut, switched = under_load(
        site, lambda: phoenix_cli(site, "failover", "--to", B, "--yes"), outage=True
    )
    assert moved["region"] == B and moved["release"] == first["release"]
    assert moved["dns"] == "127.2.255.254"
    assert load.failed_since(switched) == [], load.failed_since(switched)[:5]
    assert load.ok_since(switched) > 20
    window = error_window(load, cut)
    failed = load.failed_since(cut)
    print(f"\n[{site.balancer}] outage -> failover: error window {window:.2f}s,"
          f" {len(failed)} failed of {len(load.outcomes)} requests,"
          f" {load.ok_since(switched)} ok after the switch")
    assert failed, "killing local-a should have failed some requests"
    assert window < 30
    status = phoenix.status(site.spec())
    assert status.serving_region == B
    assert {r.region: r.dns_points_here for r in status.regions} == {A: False, B: True}
    assert any(A in problem for problem in status.problems)  # down, and not cleaned up

    # The region is back: failback is health-gated and drops nothing.
    end_outage(site.state_dir, A)
    load, back, _, switched = under_load(
        site, lambda: phoenix_cli(site, "failback", "--yes"), outage=False
    )
    assert back["region"] == A and back["action"] == "failback"
    assert [o for o in load.outcomes if not o.ok] == []
    assert load.ok_since(switched) > 20
    print(f"[{site.balancer}] failback: {len(load.outcomes)} requests, 0 failed")
    status = phoenix.status(site.spec())
    assert status.serving_region == A
    nodes_b = [n for r in status.regions if r.region == B for n in r.nodes]
    assert all(n.state == "DELETING" for n in nodes_b)
    nodes_a = [n for r in status.regions if r.region == A for n in r.nodes]
    assert len([n for n in nodes_a if n.member == "SERVING"]) == 3
    assert status.problems == ()


def test_a_deploy_notices_the_outage_and_lands_in_the_next_region(site: Site) -> None:
    phoenix_cli(site, "deploy")

    def cut_then_deploy() -> tuple[dict[str, Any], float | None]:
        drill, _ = phoenix_cli(site, "drill", "outage", "--region", A)
        assert drill["region"] == A and drill["killed_pids"]
        return phoenix_cli(site, "deploy")

    load, result, cut, switched = under_load(site, cut_then_deploy, outage=False)
    assert result["region"] == B
    first = result["attempts"][0]
    assert (first["region"], first["outcome"], first["radius"]) == (A, "failed", "region")
    assert "unavailable" in (first["reason"] or "")
    assert load.failed_since(switched) == []
    print(f"\n[{site.balancer}] outage -> deploy: error window {error_window(load, cut):.2f}s")
