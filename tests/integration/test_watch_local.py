"""Issue 14 with real processes: ``phoenix watch`` and ``phoenix repave`` on the local
provider, under load, behind both balancers.

* A node's service is SIGKILLed while a client sends ~50 requests/s through the
  balancer: watch (``--interval 1s``) reports one ``acting`` heal that succeeded, the
  pool is back to 3 healthy SERVING members (the killed one gone), ``phoenix_heals_total``
  says 1, and no request fails (the built-in proxy moves a refused connect to the next
  member and marks the member down; HAProxy retries and redispatches).
* The same with the service SIGSTOPped (a hung node: ACTIVE, its checks time out): watch
  heals it after unhealthy_threshold failed probes. Requests the balancer sent to it
  before its own checks marked it down hang (the load's client gives up after 10 s) and
  count as failed; none sent afterwards may fail.
* Two watchers of the same app: one acts for a heal, the other waits or finds it healthy;
  with the acting one SIGKILLed, the other heals the next sick node, within two lease
  TTLs and a heal.
* A deploy while watch runs: it converges, watch never undoes it and judges the new
  release healthy afterwards. A deploy started while watch holds the lease for a heal
  waits for the heal instead of failing, then ships its release.
* ``phoenix repave --yes`` under load: every node replaced, no failed request.

Every process runs with HOME and TMPDIR inside the test's directory, so
``kill_everything_under`` finds whatever a test started (watchers, node agents, apps,
balancers). Timings and failed requests are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.local_processes import kill_everything_under, wait_for
from tests.integration.test_lease_processes import (
    APP,
    COUNT,
    PRIMARY,
    Hello,
    destroyed,
    finish,
    primary,
    ready,
    serves,
)
from tests.integration.test_writes_stay_inside import copy_example, sandbox

INTERVAL = 1.0  # watch --interval
TTL = 5.0  # rollout.lease_ttl: the smallest the spec allows
UNHEALTHY_THRESHOLD = 2  # the example's health.unhealthy_threshold
# From the fault to watch's acting line: detection (a killed service makes the node
# ERROR, seen at the next round; a hung one fails unhealthy_threshold probes, one per
# round), a boot, the health gate (2 checks 0.5 s apart), joining the pool, draining and
# deleting the sick node. Measured at 1-3 s (killed) and 4-6 s (hung, its drain waits
# drain_timeout for the requests stuck on it) on 2 cores; the slack is for slow CI.
BOOT_AND_GATE = 1.0 + 2 * 0.5
DRAIN = 2.0  # rollout.drain_timeout in these tests
GRACE = 2.0  # health.grace: a booting node's failed checks do not count this long
HEAL_SLACK = 20.0
HEAL_BOUND = INTERVAL * UNHEALTHY_THRESHOLD + BOOT_AND_GATE + DRAIN + HEAL_SLACK
# When the balancer's own checks (every 0.5 s, fall 2) have marked a hung member down,
# at the latest: two checks, each waiting out its timeout (HAProxy's "timeout check 2s",
# the built-in proxy's 1 s), plus a check interval of phase.
# A hung node's heal takes longer: deleting it waits out the SIGTERM grace (5 s: a
# stopped process cannot exit), and with HAProxy removing it from the pool waits until
# HAProxy drops the requests stuck on it ("timeout server 30s"), not drain_timeout.
HUNG_EXTRA = {"builtin": 5.0, "haproxy": 30.0 + 5.0}
MARKED_DOWN = {"builtin": 2 * (0.5 + 1.0) + 0.5, "haproxy": 2 * (0.5 + 2.0) + 0.5}
RATE = 50.0  # requests/s the load sends, over CLIENTS clients
CLIENTS = 32  # threads (and connections) the load may have in flight at once
STEP_TIMEOUT = 180.0

BALANCERS = [
    "builtin",
    pytest.param("haproxy", marks=pytest.mark.skipif(
        shutil.which("haproxy") is None, reason="haproxy is not installed")),
]


# --- load -----------------------------------------------------------------------------

@dataclass
class Failure:
    at: float  # time.monotonic() when the request was sent
    took: float
    what: str


@dataclass
class Load:
    """``RATE`` requests/s through the balancer, open loop: a ticker starts each request
    on time on one of CLIENTS threads sharing a keep-alive client, so requests stuck on
    a hung node do not slow the load; every answer must be a 200 whose first line names
    a release. A request is sent (counted) when it is started."""

    url: str
    sent: int = 0
    failures: list[Failure] = field(default_factory=list)
    slowest: float = 0.0
    started: float = 0.0
    stopped: float = 0.0
    fault: float = 0.0  # when the test's fault happened (time.monotonic())
    _stop: threading.Event = field(default_factory=threading.Event)
    _ticker: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            assert self._ticker is not None
            self._ticker.join(60)
            self.stopped = time.monotonic()

    def _tick(self) -> None:
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        with httpx.Client(timeout=10.0, limits=limits) as client, ThreadPoolExecutor(
            CLIENTS, thread_name_prefix="load"
        ) as pool:
            next_at = time.monotonic()
            while not self._stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += 1 / RATE
                with self._lock:
                    self.sent += 1
                pool.submit(self._one, client)

    def _one(self, client: httpx.Client) -> None:
        sent = time.monotonic()
        what = ""
        try:
            response = client.get(self.url)
            first = response.text.split("\n", 1)[0]
            if response.status_code != 200 or not first.startswith("release "):
                what = f"{response.status_code}: {first[:80]!r}"
        except httpx.HTTPError as exc:
            what = f"{type(exc).__name__}: {exc}"
        took = time.monotonic() - sent
        with self._lock:
            self.slowest = max(self.slowest, took)
            if what:
                self.failures.append(Failure(sent, took, what))
                self.failures.sort(key=lambda f: f.at)

    @property
    def rate(self) -> float:
        return self.sent / max(1e-9, (self.stopped or time.monotonic()) - self.started)

    def summary(self, since: float) -> str:
        """The failures, relative to ``since`` (the moment of the fault)."""
        with self._lock:
            failures = list(self.failures)
        text = (f"{self.sent} requests at {self.rate:.0f}/s, {len(failures)} failed,"
                f" slowest {self.slowest:.2f}s")
        if failures:
            text += (f", from {failures[0].at - since:+.2f}s to {failures[-1].at - since:+.2f}s"
                     f" after the fault: {failures[0].what}")
        return text


# --- watch ----------------------------------------------------------------------------

@dataclass
class Line:
    at: float  # time.monotonic() when it was read
    report: dict[str, Any]


class Watch:
    """``phoenix watch --interval 1s --output json phoenix.yaml``; its lines, as read."""

    def __init__(self, hello: Hello, name: str) -> None:
        self.name = name
        self.stderr_path = hello.box.root / f"{name}.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                # Its /metrics on a port of its own: two watchers on one host.
                hello.command("watch", "--interval", f"{INTERVAL:g}s", "--output", "json",
                              "--listen", "127.0.0.1:0", "phoenix.yaml"),
                cwd=hello.root, env=hello.box.env, stdout=subprocess.PIPE, stderr=stderr,
                text=True)
        self.lines: list[Line] = []
        self.garbage: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                report = json.loads(raw)
            except ValueError:
                self.garbage.append(raw)
                continue
            with self._lock:
                self.lines.append(Line(time.monotonic(), report))

    def since(self, moment: float) -> list[Line]:
        with self._lock:
            return [line for line in self.lines if line.at >= moment]

    def wait(self, condition: Callable[[dict[str, Any]], bool], since: float,
             timeout: float, what: str) -> Line:
        """The first line read after ``since`` that meets ``condition``."""
        found: list[Line] = []

        def seen() -> bool:
            found[:] = [line for line in self.since(since) if condition(line.report)]
            if not found:
                assert self.process.poll() is None, f"{self.name} exited: {self.stderr()}"
            return bool(found)

        wait_for(seen, timeout, f"{self.name}: {what}")
        return found[0]

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text()[-3000:]
        except OSError:
            return ""

    def metric(self, name: str) -> float:
        """The sum of one metric's samples on the watcher's /metrics."""
        found = re.search(r"metrics at (http://\S+/metrics)", self.stderr_path.read_text())
        assert found, self.stderr()
        text = httpx.get(found.group(1), timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith((f"{name}{{", f"{name} ")))

    def stop(self) -> None:
        """SIGTERM (watch stops after its round), SIGKILL if that takes long."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(10)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._reader.join(10)


def acted(report: dict[str, Any]) -> bool:
    return report["state"] == "acting"


def healed(report: dict[str, Any]) -> bool:
    return (report["state"] == "acting" and report["action"] == "heal"
            and report["outcome"] == "succeeded")


def healthy(release: str) -> Callable[[dict[str, Any]], bool]:
    return lambda report: report["state"] == "healthy" and report["release"] == release


# --- the cloud ------------------------------------------------------------------------

@dataclass
class Setup:
    hello: Hello
    watchers: list[Watch] = field(default_factory=list)

    def watch(self, name: str) -> Watch:
        watcher = Watch(self.hello, name)
        self.watchers.append(watcher)
        return watcher


@pytest.fixture(params=BALANCERS)
def balancer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _setup(tmp_path: Path, balancer: str) -> Iterator[Setup]:
    box = sandbox(tmp_path)
    copy_example(box, balancer)
    spec = box.spec_dir / "phoenix.yaml"
    text = spec.read_text()
    assert "drain_timeout: 10s" in text and f"unhealthy_threshold: {UNHEALTHY_THRESHOLD}" in text
    # copy_example gives health a 30 s grace (for strace): failures within a node's
    # first 30 s would not count, and watch could not tell a hung node for that long.
    assert "grace: 30s" in text
    text = text.replace("grace: 30s", f"grace: {GRACE:g}s")
    spec.write_text(text.replace("drain_timeout: 10s",
                                 f"drain_timeout: {DRAIN:g}s\n  lease_ttl: {TTL:g}s"))
    setup = Setup(Hello(box, spec.read_text()))
    try:
        yield setup
    finally:
        for watcher in setup.watchers:
            with contextlib.suppress(Exception):
                watcher.kill()
        kill_everything_under(box.root)


@pytest.fixture
def each(tmp_path: Path, balancer: str) -> Iterator[Setup]:
    """examples/hello behind ``balancer``, drain 2 s, lease TTL 5 s."""
    yield from _setup(tmp_path, balancer)


@pytest.fixture
def builtin(tmp_path: Path) -> Iterator[Setup]:
    """The same behind the built-in balancer."""
    yield from _setup(tmp_path, "builtin")


def deployed(hello: Hello, greeting: str = "One!") -> str:
    release = hello.ok("deploy", hello.write("phoenix.yaml", greeting))["release"]
    assert isinstance(release, str)
    serves(hello, release)
    return release


def members(hello: Hello) -> list[dict[str, Any]]:
    return [n for n in primary(hello.status())["nodes"] if n["member"] == "SERVING"]


def back_to_count(hello: Hello, release: str, without: set[str]) -> list[dict[str, Any]]:
    """COUNT healthy SERVING members of ``release`` again, none of them in ``without``
    (the node records are gone too), the lease free; those members."""
    found: list[dict[str, Any]] = []

    def back() -> bool:
        status = hello.status()
        region = primary(status)
        found[:] = [n for n in region["nodes"] if n["member"] == "SERVING"]
        return (status["lock_holder"] is None and len(found) == COUNT
                and all(n["health"] == "HEALTHY" and n["release"] == release for n in found)
                and not {n["name"] for n in region["nodes"]} & without)

    wait_for(back, 60, f"{COUNT} healthy members without {sorted(without)}")
    serves(hello, release)
    return found


def node_dir(hello: Hello, name: str) -> Path:
    return hello.box.state_dir / "regions" / PRIMARY / "apps" / APP / "nodes" / name


def kill_service(hello: Hello, name: str, sig: int = signal.SIGKILL) -> float:
    """Signal node ``name``'s app (the service its agent runs, not the agent): SIGKILL
    and the agent marks the node ERROR; SIGSTOP and the node stays ACTIVE but hangs, so
    only health checks tell. When it was sent (time.monotonic())."""
    status = json.loads((node_dir(hello, name) / "status.json").read_text())
    pid = status["service_pid"]
    assert status["state"] == "ACTIVE" and isinstance(pid, int), status
    assert b"server.py" in Path(f"/proc/{pid}/cmdline").read_bytes(), pid
    os.kill(pid, sig)
    return time.monotonic()


def lease(hello: Hello) -> dict[str, Any] | None:
    """The newest generation of the app's lease, read from the local store's files."""
    store = hello.box.state_dir / "store"
    generations = sorted(p for p in store.glob(f"apps%2F{APP}%2Flease%2F*")
                         if p.name[-12:].isdigit())
    if not generations:
        return None
    with contextlib.suppress(OSError, ValueError):
        held: dict[str, Any] = json.loads(generations[-1].read_text())
        return held
    return None


def heal_records(hello: Hello) -> list[dict[str, Any]]:
    records = hello.ok("history", "phoenix.yaml")["records"]
    return [r for r in records if r["action"] == "heal"]


def report(text: str) -> None:
    print(f"\n[watch-local] {text}", flush=True)


def story(watcher: Watch, since: float) -> str:
    """The watcher's lines after ``since``: seconds, state, action and outcome."""
    return "; ".join(
        f"{line.at - since:+.1f}s {line.report['state']}"
        + (f" {line.report['action']}:{line.report['outcome']}" if line.report["action"] else "")
        + (f" ({line.report['detail'][:100]})" if line.report["state"] != "healthy" else "")
        for line in watcher.since(since))


# --- the tests ------------------------------------------------------------------------

def heal_under_load(setup: Setup, balancer: str, sig: int, bound: float) -> Load:
    """Deploy, watch, load; ``sig`` to one node's app: watch heals it and the pool is
    whole again. The load, for the caller to judge."""
    hello = setup.hello
    release = deployed(hello)
    watcher = setup.watch("watch")
    watcher.wait(healthy(release), 0, 60, "a first healthy round")
    with Load(hello.url) as load:
        time.sleep(GRACE)  # and the nodes are older than their grace
        victim = members(hello)[0]["name"]
        fault = kill_service(hello, victim, sig)
        line = watcher.wait(acted, fault, bound, "an acting line")
        back = back_to_count(hello, release, {victim})
        watcher.wait(healthy(release), line.at, 30, "a healthy round after the heal")
        time.sleep(2.0)  # the load goes on over the new pool
    took = line.at - fault
    report(f"{balancer}, {signal.Signals(sig).name}: heal of {victim} reported {took:.1f}s"
           f" after the fault (bound {bound:g}s); load: {load.summary(fault)}\n"
           f"  watch: {story(watcher, fault)}")

    assert healed(line.report), line.report
    assert victim in line.report["detail"] and line.report["release"] == release, line.report
    assert took < bound
    assert victim not in {n["name"] for n in back}
    assert [r["outcome"] for r in heal_records(hello)] == ["succeeded"]
    assert watcher.metric("phoenix_heals_total") == 1
    assert load.rate >= 20, load.summary(fault)
    watcher.stop()
    assert watcher.process.returncode == 0, watcher.stderr()
    destroyed(hello)
    load.fault = fault
    return load


def test_watch_replaces_a_killed_node_under_load(each: Setup, balancer: str) -> None:
    load = heal_under_load(each, balancer, signal.SIGKILL, HEAL_BOUND)
    # A refused connect is moved to another member by both balancers (the built-in
    # proxy also marks the member down at once; HAProxy retries with redispatch).
    assert not load.failures, load.summary(load.fault)


def test_watch_replaces_a_hung_node_under_load(each: Setup, balancer: str) -> None:
    load = heal_under_load(each, balancer, signal.SIGSTOP, HEAL_BOUND + HUNG_EXTRA[balancer])
    # Requests the balancer sent to the hung member before its checks marked it down
    # wait on it; none sent afterwards may fail.
    late = [f for f in load.failures if f.at > load.fault + MARKED_DOWN[balancer]]
    assert not late, load.summary(load.fault)


def test_two_watchers_one_acts(builtin: Setup) -> None:
    hello = builtin.hello
    release = deployed(hello)
    first, second = builtin.watch("watch-1"), builtin.watch("watch-2")
    for watcher in (first, second):
        watcher.wait(healthy(release), 0, 60, "a first healthy round")

    # One sick node: exactly one watcher acts, the other waits or finds it healthy.
    victim = members(hello)[0]["name"]
    killed = kill_service(hello, victim)
    back_to_count(hello, release, {victim})
    done = time.monotonic()
    for watcher in (first, second):
        watcher.wait(healthy(release), done, 30, "a healthy round after the heal")
    acting = [(w, line) for w in (first, second) for line in w.since(killed)
              if acted(line.report)]
    assert len(acting) == 1, [(w.name, line.report) for w, line in acting]
    actor, line = acting[0]
    other = second if actor is first else first
    assert healed(line.report), line.report
    states = {line.report["state"] for line in other.since(killed)}
    assert states <= {"waiting", "healthy"}, [line.report for line in other.since(killed)]
    assert len(heal_records(hello)) == 1
    report(f"two watchers: {actor.name} healed {victim} {line.at - killed:.1f}s after the"
           f" kill; {other.name} said {sorted(states)}")

    # The one that acted dies; the other heals the next sick node.
    actor.kill()
    victim = members(hello)[0]["name"]
    killed = kill_service(hello, victim)
    bound = 2 * TTL + HEAL_BOUND
    line = other.wait(acted, killed, bound, "the remaining watcher to act")
    assert healed(line.report), line.report
    assert victim in line.report["detail"], line.report
    back_to_count(hello, release, {victim})
    report(f"two watchers: after SIGKILL of {actor.name}, {other.name} healed {victim}"
           f" {line.at - killed:.1f}s after the kill (bound {bound:g}s)")
    assert [r["outcome"] for r in heal_records(hello)] == ["succeeded"] * 2
    other.stop()
    assert other.process.returncode == 0, other.stderr()
    destroyed(hello)


def test_a_deploy_and_watch_at_once_do_not_fight(builtin: Setup) -> None:
    hello = builtin.hello
    first = deployed(hello)
    watcher = builtin.watch("watch")
    watcher.wait(healthy(first), 0, 60, "a first healthy round")

    # A deploy of a new release while watch runs: it converges, watch waits or finds the
    # fleet healthy meanwhile, then judges the new release healthy and never acts.
    started = time.monotonic()
    second = hello.ok("deploy", hello.write("phoenix-r2.yaml", "Two!"))["release"]
    ended = time.monotonic()
    assert second != first
    serves(hello, second)
    watcher.wait(healthy(second), ended, 30, "the new release judged healthy")
    time.sleep(3 * INTERVAL)
    serves(hello, second)
    during = [line.report for line in watcher.since(started)]
    report(f"deploy with watch running: {ended - started:.1f}s; watch said"
           f" {sorted({(r['state'], r['release']) for r in during})}")
    assert not [r for r in during if r["state"] not in ("healthy", "waiting")], during
    after = [line.report for line in watcher.since(ended + 2 * INTERVAL)]
    assert after and all(r["release"] == second for r in after), after
    assert not heal_records(hello)

    # A deploy started while watch holds the lease for a heal waits for the heal (it
    # does not fail with "holds the lock") and then ships its release. The deploy has
    # imported Phoenix already and starts within milliseconds of the barrier, which is
    # lifted as soon as watch's lease generation appears in the store.
    barrier = hello.root / "go"
    deploy = hello.start("deploy", "--output", "json", hello.write("phoenix-r3.yaml", "Three!"),
                         barrier=barrier)
    ready(hello.root, barrier, [deploy])
    victim = members(hello)[0]["name"]
    killed = kill_service(hello, victim)

    def watch_holds() -> bool:
        held = lease(hello)
        return held is not None and held["deploy_id"].startswith("watch-") and not held[
            "released"]

    wait_for(watch_holds, HEAL_BOUND, "watch to take the lease for the heal")
    barrier.touch()
    held = time.monotonic()
    lifted = datetime.now(UTC)
    code, out, err = finish(deploy)
    ended = time.monotonic()
    assert code == 0, (code, err[-3000:])
    third = json.loads(out)["release"]
    heal = watcher.wait(acted, killed, 30, "the heal's line")
    assert healed(heal.report) and heal.report["release"] == second, heal.report
    serves(hello, third)
    watcher.wait(healthy(third), ended, 30, "the third release judged healthy")
    records = hello.ok("history", "phoenix.yaml")["records"]
    (heal_record,) = [r for r in records if r["action"] == "heal"]
    (deploy_record,) = [r for r in records if r["release"] == third]
    healed_at = datetime.fromisoformat(heal_record["finished_at"])
    report(f"deploy released {held - killed:.1f}s after the kill, watch holding the lease;"
           f" the heal went on {(healed_at - lifted).total_seconds():.1f}s more; the deploy"
           f" exited {code} after {ended - held:.1f}s")
    # The heal was still under way when the deploy started; the deploy acted after it.
    assert healed_at > lifted
    assert datetime.fromisoformat(deploy_record["started_at"]) >= healed_at
    assert deploy_record["lease"] > heal_record["lease"]
    assert [(r["release"], r["outcome"]) for r in heal_records(hello)] == [
        (second, "succeeded")]
    watcher.stop()
    assert watcher.process.returncode == 0, watcher.stderr()
    destroyed(hello)


def test_repave_under_load_fails_no_request(each: Setup, balancer: str) -> None:
    hello = each.hello
    release = deployed(hello)
    before = {n["name"] for n in members(hello)}
    with Load(hello.url) as load:
        time.sleep(2.0)
        started = time.monotonic()
        done = hello.run("repave", "--yes", "--output", "json", "phoenix.yaml")
        took = time.monotonic() - started
        time.sleep(2.0)
    report(f"{balancer}: repave took {took:.1f}s; load: {load.summary(started)}")
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    result = json.loads(done.stdout)
    assert result["release"] == release and result["action"] == "repave", result
    after = back_to_count(hello, release, before)
    assert len({n["name"] for n in after}) == COUNT
    records = hello.ok("history", "phoenix.yaml")["records"]
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("deploy", "succeeded"), ("repave", "succeeded")], records
    assert load.rate >= 20, load.summary(started)
    assert not load.failures, load.summary(started)
    destroyed(hello)
