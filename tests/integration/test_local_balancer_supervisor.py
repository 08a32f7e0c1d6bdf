"""The local balancers' supervisors, with real processes on loopback (issue 11, item 5).

A region pool's balancer or a DNS record's front end (built-in proxy or HAProxy) that is
SIGKILLed between deploys is back within two seconds, under load, with no Phoenix call:
its supervisor restarts it from config.json and members.json. A supervisor backs off
when the balancer cannot start, leaves a region's balancer down during a drill outage
and brings it back at recover, and goes away with ``stop()``/``delete_pool``; two never
run for one pool. Reads never repair: ``list_members`` on a dead balancer starts nothing
and ``pool_problems``/``record_problems`` say what is down.

Each test seeds a random region number and a free ``lb_port``; every process it starts
is SIGKILLed in teardown, failures included.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from phoenix.clock import SystemClock
from phoenix.errors import RegionUnavailable
from phoenix.model import Member
from phoenix.processes import python_child_env
from phoenix.providers.local import supervisor
from phoenix.providers.local.frontend import LocalDns
from phoenix.providers.local.haproxy import haproxy_available
from phoenix.providers.local.outage import end_outage, start_outage
from phoenix.providers.local.provider import LocalCloud, LocalLoadBalancer

from .local_processes import (
    BACKEND,
    alive,
    free_port,
    kill_everything_under,
    processes_mentioning,
    wait_for,
)

pytestmark = pytest.mark.integration

KINDS = ["builtin"] + (["haproxy"] if shutil.which("haproxy") and haproxy_available() else [])
REGION, POOL = "sv-a", "web"
ZONE, NAME = "test.", "www"
RECOVERY_LIMIT = 2.0  # seconds from the SIGKILL to the first answered request

def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def balancer_pid(pool_dir: Path) -> int | None:
    """The pool's live balancer process (HAProxy's or the built-in proxy's pid file)."""
    for name in ("haproxy.pid", "proxy.pid"):
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int((pool_dir / name).read_text())
            if alive(pid):
                return pid
    return None


def supervised(pool_dir: Path) -> int:
    """The pool's one supervisor, once it runs."""
    wait_for(lambda: supervisor.supervisor_pids(pool_dir) != set(), 10,
             f"a supervisor of {pool_dir}")
    (pid,) = supervisor.supervisor_pids(pool_dir)
    return pid


def kill_and_wait(pid: int) -> None:
    """SIGKILL, and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 5, f"pid {pid} to die")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def desired(members: list[Member]) -> list[tuple[str, str, int, str]]:
    """What members.json keeps of each member (no measured state)."""
    return sorted((m.name, m.address, m.port, m.state.value) for m in members)


# --- the world --------------------------------------------------------------------------


@dataclass
class World:
    cloud: LocalCloud
    lb: LocalLoadBalancer
    dns: LocalDns
    root: Path
    backends: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.cloud.state_dir

    @property
    def pool_dir(self) -> Path:
        return self.state_dir / "regions" / REGION / "pools" / POOL

    @property
    def frontend_dir(self) -> Path:
        return self.state_dir / "frontends" / f"{NAME}.{ZONE}"

    @property
    def url(self) -> str:
        return self.lb.url(REGION, POOL)

    def start_backend(self, name: str, host: str) -> int:
        process = subprocess.Popen(
            [sys.executable, "-c", BACKEND, name, host], stdout=subprocess.PIPE, text=True
        )
        self.backends.append(process)
        assert process.stdout is not None
        return int(process.stdout.readline())

    def members(self) -> list[Member]:
        return self.lb.list_members(REGION, POOL)

    def supervisor_log(self, pool_dir: Path) -> str:
        return (pool_dir / supervisor.LOG_FILE).read_text()


@pytest.fixture(params=KINDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """One region pool with two healthy backends, serving; everything killed at the end."""
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    number = random.randint(100, 249)
    (state_dir / "regions.json").write_text(json.dumps({REGION: number}))
    lb_port = free_port([f"127.{number}.255.254", "127.0.1.254"])
    cloud = LocalCloud(state_dir.resolve(), clock=SystemClock(), balancer=request.param,
                       lb_port=lb_port)
    made = World(cloud, LocalLoadBalancer(cloud), LocalDns(cloud), tmp_path.resolve())
    try:
        for index, name in enumerate(("a", "b"), start=1):
            host = f"127.{number}.0.{index}"
            port = made.start_backend(name, host)
            made.lb.add_member(REGION, POOL, name, host, port)
        wait_for(lambda: answers(made.url), what="the pool to serve")
        yield made
    finally:
        end_outage(made.state_dir, REGION)
        with contextlib.suppress(Exception):
            made.dns.stop_frontend(ZONE, NAME)
        with contextlib.suppress(Exception):
            made.lb.delete_pool(REGION, POOL)
        for process in made.backends:
            process.kill()
            process.wait(timeout=10)
        kill_everything_under(made.root)


@dataclass
class Load:
    """One client sending GETs in a loop (keep-alive), recording when each one ran."""

    url: str
    results: list[tuple[float, float, bool]] = field(default_factory=list)  # sent, done, ok
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.results.append((sent, time.monotonic(), ok))
                if not ok:
                    time.sleep(0.01)  # a refused connection fails at once

    def first_ok_after(self, moment: float) -> float | None:
        done = [ended for sent, ended, ok in self.results if sent >= moment and ok]
        return min(done) if done else None


@contextlib.contextmanager
def under_load(url: str) -> Iterator[Load]:
    load = Load(url)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        yield load
    finally:
        load.stop.set()
        thread.join(timeout=30)


# --- the tests --------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["pool", "frontend"])
def test_a_killed_balancer_is_back_within_two_seconds_under_load(
    world: World, target: str
) -> None:
    if target == "frontend":
        world.dns.set_record(ZONE, NAME, (world.cloud.lb_host(REGION),), 30)
        url, pool_dir = world.dns.url(ZONE, NAME), world.frontend_dir
        members_of = world.dns._balancer(f"{NAME}.{ZONE}", 1).list_members
    else:
        url, pool_dir = world.url, world.pool_dir
        members_of = world.members
    watcher = supervised(pool_dir)
    before = desired(members_of())
    pid = balancer_pid(pool_dir)
    assert pid is not None

    with under_load(url) as load:
        time.sleep(0.5)
        assert load.results and all(ok for _, _, ok in load.results)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)  # the balancer, not its supervisor; no Phoenix call
        wait_for(lambda: load.first_ok_after(killed_at) is not None, 10, "traffic again")
        back_at = load.first_ok_after(killed_at)
        assert back_at is not None
        time.sleep(1.0)

    recovery = back_at - killed_at
    failed = [sent for sent, _, ok in load.results if sent >= killed_at and not ok]
    print(f"\n[{world.cloud.balancer_kind} {target}] SIGKILL -> serving again in"
          f" {recovery:.2f}s ({len(failed)} failed request(s) meanwhile)")
    assert recovery < RECOVERY_LIMIT
    late = [ok for sent, _, ok in load.results if sent > back_at]
    assert len(late) > 20 and all(late), "requests failed after the balancer came back"
    assert balancer_pid(pool_dir) not in (None, pid)
    assert desired(members_of()) == before
    assert supervisor.supervisor_pids(pool_dir) == {watcher}
    assert "restarted the balancer" in world.supervisor_log(pool_dir)


def test_a_balancer_that_cannot_start_is_retried_with_backoff(world: World) -> None:
    pool_dir = world.pool_dir
    watcher = supervised(pool_dir)
    members_file = pool_dir / "members.json"
    saved = members_file.read_text()
    members_file.write_text("{not json")  # every restart now fails (InputError)
    pid = balancer_pid(pool_dir)
    assert pid is not None
    cpu_before = cpu_seconds(watcher)
    os.kill(pid, signal.SIGKILL)
    time.sleep(6.0)

    text = world.supervisor_log(pool_dir)
    failures = re.findall(r"^(\S+ \S+) ERROR .*restart failed", text, re.MULTILINE)
    used = cpu_seconds(watcher) - cpu_before
    print(f"\n[{world.cloud.balancer_kind}] 6 s of a balancer that cannot start:"
          f" {len(failures)} attempt(s), supervisor CPU {used:.2f}s")
    assert 2 <= len(failures) <= 6, text
    stamps = [time.mktime(time.strptime(s.split(",")[0], "%Y-%m-%d %H:%M:%S"))
              + int(s.split(",")[1]) / 1000 for s in failures]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert used < 1.0, "the supervisor spins"
    assert balancer_pid(pool_dir) is None
    assert alive(watcher)

    members_file.write_text(saved)  # fixed: the next attempt (at most 8 s away) succeeds
    wait_for(lambda: answers(world.url), 20, "the supervisor's next attempt")
    assert {m.name for m in world.members()} == {"a", "b"}


def test_stop_and_delete_pool_leave_no_process(world: World) -> None:
    world.dns.set_record(ZONE, NAME, (world.cloud.lb_host(REGION),), 30)
    for pool_dir in (world.pool_dir, world.frontend_dir):
        supervised(pool_dir)
        assert balancer_pid(pool_dir) is not None

    world.lb.delete_pool(REGION, POOL)
    world.dns.stop_frontend(ZONE, NAME)
    for pool_dir in (world.pool_dir, world.frontend_dir):
        assert not processes_mentioning(pool_dir), f"left running for {pool_dir}"
    time.sleep(1.5)  # several polls: nothing restarts a balancer stopped on purpose
    for pool_dir in (world.pool_dir, world.frontend_dir):
        assert not processes_mentioning(pool_dir), f"restarted after the stop: {pool_dir}"
        assert not (pool_dir / supervisor.PID_FILE).exists()
    assert world.lb.pool_problems(REGION, POOL) == []  # stopped on purpose: no problem
    assert world.dns.record_problems(ZONE, NAME) == []

    world.lb.ensure_pool(REGION, POOL)  # a writer wants it again: both come back
    assert balancer_pid(world.pool_dir) is not None
    supervised(world.pool_dir)


def test_a_drill_outage_is_not_undone_and_recover_brings_it_back(world: World) -> None:
    pool_dir = world.pool_dir
    supervised(pool_dir)
    before = desired(world.members())
    pid = balancer_pid(pool_dir)

    killed = start_outage(world.state_dir, REGION, reason="drill")
    assert pid in killed
    time.sleep(2.0)  # many polls of the supervisor
    assert balancer_pid(pool_dir) is None, "the supervisor undid the outage"
    assert not answers(world.url)
    assert supervisor.supervisor_pids(pool_dir), "the supervisor should wait, not die"
    assert "stays down" in world.supervisor_log(pool_dir)
    with pytest.raises(RegionUnavailable):
        world.members()
    assert start_outage(world.state_dir, REGION) == []  # nothing came back meanwhile

    recovered_at = time.monotonic()
    assert end_outage(world.state_dir, REGION)
    wait_for(lambda: answers(world.url), 5, "the balancer back after recover")
    print(f"\n[{world.cloud.balancer_kind}] recover -> serving in"
          f" {time.monotonic() - recovered_at:.2f}s, with no Phoenix call")
    assert desired(world.members()) == before


def test_reads_on_a_dead_balancer_start_nothing_and_report_it(world: World) -> None:
    world.dns.set_record(ZONE, NAME, (world.cloud.lb_host(REGION),), 30)
    before = desired(world.members())
    for pool_dir in (world.pool_dir, world.frontend_dir):
        kill_and_wait(supervised(pool_dir))  # the supervisor first, then its balancer
        pid = balancer_pid(pool_dir)
        assert pid is not None
        kill_and_wait(pid)

    members = world.members()  # what `phoenix status` and a deploy's observe read
    assert desired(members) == before
    assert {(m.online, m.active_connections) for m in members} == {(False, None)}
    problems = world.lb.pool_problems(REGION, POOL)
    assert len(problems) == 1 and problems[0].startswith(
        f"load balancer of pool {POOL} in region {REGION} ({world.url}) is not running"
    ), problems
    assert "no supervisor" in problems[0]
    assert world.dns.get_record(ZONE, NAME) is not None
    assert world.dns.url(ZONE, NAME)
    (front_problem,) = world.dns.record_problems(ZONE, NAME)
    assert f"DNS front end of {NAME}.{ZONE}" in front_problem and "not running" in front_problem
    time.sleep(1.0)
    for pool_dir in (world.pool_dir, world.frontend_dir):
        assert not processes_mentioning(pool_dir), f"a read started something for {pool_dir}"

    world.lb.ensure_pool(REGION, POOL)  # an actor's call: the balancer and its supervisor
    assert balancer_pid(world.pool_dir) is not None
    supervised(world.pool_dir)
    assert world.lb.pool_problems(REGION, POOL) == []
    wait_for(lambda: all(m.online for m in world.members()), 10, "members online")
    assert desired(world.members()) == before


def test_only_one_supervisor_runs_per_pool(world: World) -> None:
    pool_dir = world.pool_dir
    watcher = supervised(pool_dir)
    for _ in range(5):  # every writer makes sure one runs; none starts a second
        world.lb.ensure_pool(REGION, POOL)
    kind = world.cloud.balancer_kind
    second = subprocess.run(
        [sys.executable, "-m", supervisor.MODULE, str(pool_dir), "--kind", kind],
        capture_output=True, text=True, timeout=30, check=False, env=python_child_env(),
    )
    assert second.returncode == 0
    assert "another supervisor holds" in second.stderr
    assert supervisor.supervisor_pids(pool_dir) == {watcher}
    assert int((pool_dir / supervisor.PID_FILE).read_text()) == watcher
