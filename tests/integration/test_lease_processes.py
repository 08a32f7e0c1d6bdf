"""Issue 13 with real processes: the app's fenced lease on the local provider.

* Ten rounds of two ``phoenix deploy`` of the same spec released together from a
  barrier (both already imported, so they reach the lease within a millisecond or so of
  each other): every round exactly one converges and the other exits 4 ("holds the
  lock"), and the winner's release serves.
* A deploy waiting on its health gate is SIGSTOPped (inside its poll's sleep) past its
  TTL (``rollout.lease_ttl: 5s``); another deploy takes over and ships a newer release;
  SIGCONT: the stopped one exits 4 ("lost the lock") and the cloud and the store are
  byte for byte what they were before it woke up.
* ``phoenix unlock`` refuses a live holder; ``--force`` breaks it, the holder stops at
  its next poll without rolling back, and the next deploy cleans up after it.

Every process runs with HOME and TMPDIR inside the test's directory, so
``kill_everything_under`` finds whatever a test started (node agents, apps, balancers).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.local_processes import (
    alive,
    kill_everything_under,
    processes_mentioning,
    wait_for,
)
from tests.integration.test_writes_stay_inside import Sandbox, copy_example, sandbox

APP = "hello"
PRIMARY = "local-a"
COUNT = 3
TTL = 5.0  # rollout.lease_ttl of the SIGSTOP test: the smallest the spec allows
STEP_TIMEOUT = 180.0  # per command: generous for slow CI machines
# Syscalls a thread sleeping in ``time.sleep`` shows in /proc/PID/syscall.
SLEEPS = {"x86_64": {35, 230}, "aarch64": {101, 115}}.get(os.uname().machine, set())

# Imports Phoenix, then waits for the barrier file to appear, then runs the CLI: two of
# these start acting within a millisecond or so of each other, not a Python startup apart.
BARRIER = """
import os, runpy, sys, time
import phoenix.cli
barrier = sys.argv.pop(1)
open(f"{barrier}.ready-{os.getpid()}", "w").close()
while not os.path.exists(barrier):
    time.sleep(0.0005)
sys.argv[0] = "phoenix"
runpy.run_module("phoenix", run_name="__main__", alter_sys=True)
"""


@dataclass
class Hello:
    """examples/hello in a sandbox (HOME and TMPDIR inside it), run by the CLI."""

    box: Sandbox
    base: str  # the spec as copy_example wrote it

    @property
    def root(self) -> Path:
        return self.box.spec_dir

    @property
    def url(self) -> str:
        port = re.search(r"lb_port: (\d+)", self.base)
        assert port
        return f"http://127.1.255.254:{port.group(1)}/"

    def write(self, name: str, greeting: str, *, stuck: bool = False) -> str:
        """A spec file ``name`` serving ``greeting``; ``stuck``: its /healthz fails and
        the health gate waits (a grace and a deadline of 10 minutes, no mutation
        meanwhile) instead of failing; its poll is 2 s, nearly all of it asleep."""
        text = self.base.replace("greeting: Hello from Phoenix!", f"greeting: {greeting}")
        if stuck:
            for old, new in [("healthy: true", "healthy: false"),
                             ("deadline: 60s\n  grace: 30s", "deadline: 10m\n  grace: 10m"),
                             ("interval: 0.5s", "interval: 2s")]:
                assert old in text, old
                text = text.replace(old, new)
        (self.root / name).write_text(text)
        return name

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "phoenix", *args]

    def run(self, *args: str, timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), cwd=self.root, env=self.box.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, *args: str, barrier: Path | None = None) -> subprocess.Popen[str]:
        command = self.command(*args)
        if barrier is not None:
            command = [sys.executable, "-c", BARRIER, str(barrier), *args]
        return subprocess.Popen(command, cwd=self.root, env=self.box.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ok(self, *args: str) -> dict[str, Any]:
        """Run ``args`` with ``--output json``; it must exit 0; its JSON document."""
        done = self.run(*args[:1], "--output", "json", *args[1:])
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        document: dict[str, Any] = json.loads(done.stdout)
        return document

    def status(self) -> dict[str, Any]:
        return self.ok("status", "phoenix.yaml")

    def answer(self) -> str:
        """The release the balancer's URL serves now (first line "release R node N")."""
        response = httpx.get(self.url, timeout=10)
        assert response.status_code == 200, response.text
        first = response.text.split("\n")[0].split()
        assert first[0] == "release", response.text
        return first[1]

    def store(self) -> dict[str, bytes]:
        """Every object in the local store (the lease's generations, records...)."""
        store = self.box.state_dir / "store"
        return {p.name: p.read_bytes() for p in sorted(store.iterdir())
                if not p.name.startswith(".tmp-")}


def primary(status: dict[str, Any]) -> dict[str, Any]:
    region: dict[str, Any] = next(r for r in status["regions"] if r["region"] == PRIMARY)
    return region


def serves(hello: Hello, release: str) -> None:
    """``release`` serves on COUNT nodes in the primary, the lock is free, and the
    balancer answers with it."""
    status = hello.status()
    region = primary(status)
    assert status["lock_holder"] is None, status
    assert region["serving_release"] == release, status
    members = [n for n in region["nodes"] if n["member"] == "SERVING"]
    assert sorted(n["release"] for n in members) == [release] * COUNT, status
    assert all(n["health"] == "HEALTHY" for n in members), status
    assert {hello.answer() for _ in range(COUNT)} == {release}


def cloud(hello: Hello) -> dict[str, Any]:
    """What a stopped deploy must not change: nodes, members, DNS and the lock per
    ``status`` (not the live health, which is probed anew each time)."""
    status = hello.status()
    keep = ("name", "release", "index", "state", "address", "member", "fault")
    return {
        "dns": status["dns"],
        "lock_holder": status["lock_holder"],
        "serving_region": status["serving_region"],
        "regions": [
            {**{k: r[k] for k in ("region", "serving_release", "stray_members", "error",
                                  "endpoint", "dns_points_here")},
             "nodes": [{k: n[k] for k in keep} for n in r["nodes"]]}
            for r in status["regions"]
        ],
    }


def nodes_of(status: dict[str, Any], release: str) -> list[dict[str, Any]]:
    return [n for n in primary(status)["nodes"] if n["release"] == release]


def finish(process: subprocess.Popen[str], timeout: float = STEP_TIMEOUT) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def stuck_nodes(hello: Hello, process: subprocess.Popen[str], serving: str
                ) -> tuple[str, list[dict[str, Any]]]:
    """Wait until ``process`` (a stuck deploy) has created its COUNT nodes and they run,
    out of the pool; its release and those nodes."""
    found: dict[str, Any] = {}

    def created() -> bool:
        assert process.poll() is None, f"the stuck deploy exited: {finish(process)}"
        status = hello.status()
        new = [n for n in primary(status)["nodes"]
               if n["release"] != serving and n["state"] == "ACTIVE"]
        found.update(status=status, new=new)
        return len(new) == COUNT

    wait_for(created, 120, "the stuck deploy's nodes")
    new = found["new"]
    assert len({n["release"] for n in new}) == 1, found["status"]
    assert all(n["member"] is None for n in new), found["status"]
    return new[0]["release"], new


def sleeping(pid: int) -> bool:
    """The (stopped) process's main thread is inside a sleep, not between a fence
    check and a mutation (the one window the lease cannot close, see phoenix/lease.py).
    True when that cannot be told here."""
    try:
        number = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    except (OSError, IndexError):
        return True
    if not SLEEPS or not number.isdigit():
        return True
    return int(number) in SLEEPS


def stop_while_asleep(process: subprocess.Popen[str]) -> None:
    """SIGSTOP ``process`` at a moment its main thread sleeps between two polls."""
    for _ in range(200):
        os.kill(process.pid, signal.SIGSTOP)
        wait_for(lambda: Path(f"/proc/{process.pid}/stat").read_text()
                 .rsplit(")", 1)[1].split()[0] == "T", 10, "the deploy to stop")
        if sleeping(process.pid):
            return
        os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.137)
    raise AssertionError("the deploy was never caught asleep")


def ready(root: Path, barrier: Path, racers: list[subprocess.Popen[str]]) -> None:
    """Wait until every racer has imported Phoenix and polls ``barrier``."""
    wait_for(lambda: len(list(root.glob(f"{barrier.name}.ready-*"))) == len(racers)
             or any(r.poll() is not None for r in racers), 60, "the racers to be ready")


def lease_of(record: dict[str, Any]) -> int:
    lease = record["lease"]
    assert isinstance(lease, int), record
    return lease


@pytest.fixture
def hello(tmp_path: Path) -> Iterator[Hello]:
    box = sandbox(tmp_path)
    copy_example(box, "builtin")
    spec = box.spec_dir / "phoenix.yaml"
    text = spec.read_text()
    assert "drain_timeout: 10s" in text
    spec.write_text(text.replace("drain_timeout: 10s", "drain_timeout: 2s"))
    try:
        yield Hello(box, spec.read_text())
    finally:
        kill_everything_under(box.root)


def destroyed(hello: Hello) -> None:
    hello.ok("destroy", "--yes", "phoenix.yaml")
    wait_for(lambda: not processes_mentioning(hello.box.root), 30, "every process to exit")


# --- the tests -------------------------------------------------------------------------

def test_two_deploys_started_together_one_wins_every_round(hello: Hello) -> None:
    releases: list[str] = []
    for round_ in range(10):
        hello.write("phoenix.yaml", f"Round {round_}!")
        barrier = hello.root / f"go-{round_}"
        racers = [hello.start("deploy", "--output", "json", "phoenix.yaml", barrier=barrier)
                  for _ in range(2)]
        ready(hello.root, barrier, racers)
        assert all(r.poll() is None for r in racers), [finish(r) for r in racers]
        barrier.touch()
        results = [finish(r) for r in racers]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 4], f"round {round_}: exit codes {codes}, stderr:\n" + "\n".join(
            err[-1500:] for _, _, err in results)
        (_, out, _), (_, _, lost) = sorted(results, key=lambda r: r[0])
        assert "holds the lock" in lost, f"round {round_}: {lost}"
        release = json.loads(out)["release"]
        assert release not in releases, f"round {round_} did not change the release"
        releases.append(release)
        serves(hello, release)
    destroyed(hello)


def test_a_deploy_stopped_past_its_ttl_stops_without_touching_anything_when_resumed(
    hello: Hello,
) -> None:
    hello.base = hello.base.replace("drain_timeout: 2s", "drain_timeout: 2s\n  lease_ttl: 5s")
    hello.write("phoenix.yaml", "One!")
    first = hello.ok("deploy", "phoenix.yaml")["release"]
    serves(hello, first)

    # A: release 2, whose health gate waits 10 minutes; stopped once its nodes run.
    a = hello.start("deploy", hello.write("phoenix-r2.yaml", "Two!", stuck=True))
    second, _ = stuck_nodes(hello, a, first)
    time.sleep(1.0)  # a poll or so after the last create: A only waits now
    stop_while_asleep(a)
    stopped = time.monotonic()
    try:
        hello.write("phoenix-r3.yaml", "Three!")
        time.sleep(max(0.0, stopped + 2 * TTL + 0.5 - time.monotonic()))
        took = time.monotonic()
        third = hello.ok("deploy", "phoenix-r3.yaml")["release"]
        # The takeover waited for the lease to stay unchanged one TTL by its own clock.
        assert time.monotonic() - took >= TTL
        assert len({first, second, third}) == 3
        serves(hello, third)
        before, store_before = cloud(hello), hello.store()
        assert not nodes_of(hello.status(), second), "B did not clean up A's nodes"
    finally:
        os.kill(a.pid, signal.SIGCONT)
    woke = time.monotonic()
    try:
        code, _, err = finish(a, 30)
    except subprocess.TimeoutExpired:  # what it did meanwhile is checked first
        code, err = None, "still running 30 s after SIGCONT"
    took = time.monotonic() - woke

    assert hello.store() == store_before, "A wrote to the store after it woke up"
    assert cloud(hello) == before, "A changed the cloud after it woke up"
    assert code == 4 and "lost the lock" in err, (code, err)
    assert took < 10, f"A took {took:.1f}s to notice"
    serves(hello, third)

    records = hello.ok("history", "phoenix.yaml")["records"]
    mine = [r for r in records if r["action"] == "deploy" and r["outcome"] == "succeeded"]
    assert [r["release"] for r in mine] == [first, third], records
    b_lease = lease_of(mine[1])
    assert lease_of(mine[0]) < b_lease
    assert f"(generation {b_lease})" in err, f"A should name B's generation {b_lease}: {err}"
    # A stopped without recording anything (LeaseLost skips the record and the rollback);
    # B found A's attempt and recorded it as interrupted, with the generation A held.
    (interrupted,) = [r for r in records if r["release"] == second]
    assert interrupted["outcome"] == "interrupted", interrupted
    assert interrupted["deploy_id"] != mine[1]["deploy_id"], interrupted
    assert f"{mine[1]['deploy_id']} took over" in interrupted["reason"], interrupted
    assert interrupted["lease"] == b_lease - 1, interrupted
    destroyed(hello)


def test_unlock_refuses_a_live_deploy_and_force_stops_it(hello: Hello) -> None:
    hello.write("phoenix.yaml", "One!")
    first = hello.ok("deploy", "phoenix.yaml")["release"]

    a = hello.start("deploy", hello.write("phoenix-r2.yaml", "Two!", stuck=True))
    second, stuck = stuck_nodes(hello, a, first)
    try:
        refused = hello.run("unlock", "--yes", "phoenix.yaml")
        assert refused.returncode == 4, refused
        assert re.search(rf"@[^ ]+:{a.pid}\b", refused.stderr), refused  # names A
        assert "looks alive" in refused.stderr, refused
        assert a.poll() is None

        forced = hello.run("unlock", "--yes", "--force", "phoenix.yaml")
        assert forced.returncode == 0, forced
        assert re.search(rf"@[^ ]+:{a.pid}\b", forced.stdout), forced
        broke = time.monotonic()
        code, _, err = finish(a, 60)
        assert code == 4 and "lost the lock" in err and "unlock --force" in err, (code, err)
        assert time.monotonic() - broke < 10, "A took long to notice"
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()

    # No rollback: A's nodes are still there as they were, out of the pool; the first
    # release still serves.
    status = hello.status()
    keep = ("name", "state", "address", "member")
    assert [{k: n[k] for k in keep} for n in nodes_of(status, second)] == [
        {k: n[k] for k in keep} for n in stuck]
    serves(hello, first)
    records = hello.ok("history", "phoenix.yaml")["records"]
    assert [(r["release"], r["outcome"]) for r in records] == [(first, "succeeded")], records

    # The next deploy takes the released lease at once and cleans up.
    third = hello.ok("deploy", hello.write("phoenix-r3.yaml", "Three!"))["release"]
    serves(hello, third)
    assert not nodes_of(hello.status(), second)
    records = hello.ok("history", "phoenix.yaml")["records"]
    assert [(r["release"], r["outcome"]) for r in records] == [
        (first, "succeeded"), (second, "interrupted"), (third, "succeeded")], records
    assert not alive(a.pid)
    destroyed(hello)
