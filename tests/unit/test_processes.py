"""pid_alive: running processes, gone ones, and zombies (which count as dead); and the
rest of the process toolkit: finding, checking and stopping real child processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import psutil

from phoenix import processes
from phoenix.clock import FakeClock
from phoenix.processes import pid_alive


def test_running_gone_and_zombie() -> None:
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # exited but not reaped: a zombie
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] == "Z":
                break
        time.sleep(0.01)
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)
    assert not pid_alive(0)


# --- the process toolkit (issue 16): one place that finds, checks and stops processes ----

# Children say which signals reach them (stop() reaps its own children, so their exit
# status is not left for Popen to read).
_CHILD = """
import signal, sys, time
def on_term(signum, frame):
    print("TERM", flush=True)
    if sys.argv[1] == "obeys":
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(60)
"""


def _child(behaviour: str, *args: str, **options: Any) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, behaviour, *args],
                             stdout=subprocess.PIPE, text=True, **options)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def _said(child: subprocess.Popen[str]) -> list[str]:
    """What the child printed after "ready", once it is gone."""
    assert child.stdout is not None
    return child.stdout.read().split()


def _ended(child: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.kill()
    child.wait()


def test_stop_escalates_to_sigkill_for_a_process_that_ignores_sigterm() -> None:
    child = _child("ignores")
    try:
        found = processes.get(child.pid)
        assert found is not None
        started = time.monotonic()
        assert processes.stop([found], grace=0.5, kill_grace=10.0) == set()
        assert time.monotonic() - started >= 0.5  # it had its grace first
        assert not pid_alive(child.pid)
        assert _said(child) == ["TERM"]  # asked first, then killed
    finally:
        _ended(child)


def test_stop_lets_a_process_that_obeys_sigterm_exit_without_sigkill() -> None:
    child = _child("obeys")
    try:
        found = processes.get(child.pid)
        assert found is not None
        started = time.monotonic()
        assert processes.stop([found], grace=30.0, kill_grace=10.0) == set()
        assert time.monotonic() - started < 10.0  # not the whole grace: it was gone
        assert _said(child) == ["TERM"]
    finally:
        _ended(child)


_GROUP_LEADER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the member it starts
member = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(member.pid, flush=True)
time.sleep(60)
"""


def test_stop_signals_the_process_group_and_follows_what_a_finder_finds() -> None:
    """A node: its agent leads a process group and is found by a finder; a member of
    the group that the finder does not see goes down with the group."""
    unique = f"phoenix-test-group-{os.getpid()}-{time.monotonic_ns()}"
    leader = subprocess.Popen([sys.executable, "-c", _GROUP_LEADER, unique],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    member = None
    try:
        assert leader.stdout is not None
        member = int(leader.stdout.readline())

        def agent() -> list[processes.Process]:
            return processes.find(argv=lambda argv: unique.encode() in argv)

        assert [p.pid for p in agent()] == [leader.pid]
        assert sorted(p.pid for p in processes.find(group=leader.pid)) == sorted(
            [leader.pid, member])
        assert processes.stop(agent, grace=0.2, kill_grace=10.0, group=leader.pid) == set()
        assert agent() == []
        deadline = time.monotonic() + 10
        while pid_alive(member) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not pid_alive(member)
    finally:
        _ended(leader)
        if member is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)


def test_kill_is_sigkill_at_once() -> None:
    child = _child("obeys")
    try:
        found = processes.get(child.pid)
        assert found is not None
        assert processes.kill([found], timeout=10.0) == set()
        assert not pid_alive(child.pid)
        assert _said(child) == []  # no SIGTERM first: a power cut
    finally:
        _ended(child)


def test_a_stop_on_a_fake_clock_escalates_without_waiting_for_real() -> None:
    child = _child("ignores")
    try:
        found = processes.get(child.pid)
        assert found is not None
        clock = FakeClock()
        start = clock.now()
        started = time.monotonic()
        assert processes.stop([found], grace=15.0, kill_grace=5.0, clock=clock) == set()
        assert time.monotonic() - started < 10.0
        assert (clock.now() - start).total_seconds() >= 15.0
        assert _said(child) == ["TERM"]
    finally:
        _ended(child)


def test_find_by_arguments_and_start_ticks_name_one_process() -> None:
    unique = f"phoenix-test-argv-{os.getpid()}-{time.monotonic_ns()}"
    child = _child("obeys", unique, env={**os.environ, "PHOENIX_TEST_MARKER": unique})
    try:
        found = processes.find(argv=lambda argv: unique.encode() in argv)
        assert [p.pid for p in found] == [child.pid]
        by_marker = processes.find(environ={"PHOENIX_TEST_MARKER": unique, "PATH": "/x"})
        assert [p.pid for p in by_marker] == [child.pid]
        argv = processes.process_argv(child.pid)
        assert argv == [os.fsencode(sys.executable), b"-c", _CHILD.encode(), b"obeys",
                        unique.encode()]
        ticks = processes.process_start_ticks(child.pid)
        assert ticks is not None
        with open(f"/proc/{child.pid}/stat", "rb") as stat:  # what earlier versions stored
            assert ticks == int(stat.read().rsplit(b")", 1)[1].split()[19])
        assert processes.process_alive(child.pid, ticks)
        assert not processes.process_alive(child.pid, ticks + 1)  # a reused pid
    finally:
        _ended(child)
    assert processes.process_argv(child.pid) is None
    assert processes.process_start_ticks(child.pid) is None
    assert processes.find(argv=lambda argv: unique.encode() in argv) == []


_PARENT_OF_A_ZOMBIE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "pass"])  # never waited for: a zombie
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_zombie_is_dead_to_every_helper() -> None:
    """Someone else's zombie (its parent never reaps it) is neither found, nor got, nor
    waited for by a stop."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT_OF_A_ZOMBIE],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert parent.stdout is not None
        zombie = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while psutil.Process(zombie).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert processes.get(zombie) is None
        assert [p.pid for p in processes.find(group=parent.pid)] == [parent.pid]
        started = time.monotonic()
        assert processes.stop([psutil.Process(zombie)], grace=30.0, kill_grace=30.0) == set()
        assert time.monotonic() - started < 10.0
    finally:
        parent.kill()
        parent.wait()
