"""The one module that knows about processes: whether one lives, what it runs, finding
Phoenix's detached helpers again, stopping them, and how Phoenix starts them.

Used by the deploy lock (a holder on this host that died is taken over at once) and by
the local provider's balancers, their supervisors and its nodes. Built on psutil, so no
other module parses ``/proc`` or escalates signals by hand (six parsers and four
SIGTERM-then-SIGKILL loops had grown apart before). Two rules hold throughout:

* a zombie (dead, not yet reaped by its parent; PID 1 in some sandboxes reaps late)
  counts as dead, which ``kill(pid, 0)`` alone would miss;
* a pid alone never names a process for long (pids are reused): a process is signalled
  only as the ``psutil.Process`` found by its arguments, environment or start time, and
  psutil refuses to signal one whose pid now belongs to another process.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from phoenix.clock import SystemClock
from phoenix.waiting import wait_until

if TYPE_CHECKING:  # a type only: the node agent and supervisor processes start lighter
    from phoenix.providers.base import Clock

__all__ = [
    "Process",
    "find",
    "get",
    "kill",
    "minimal_env",
    "pid_alive",
    "process_alive",
    "process_argv",
    "process_start_ticks",
    "python_child_env",
    "reap",
    "stop",
]

Process = psutil.Process
_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.02  # how often a stop looks whether its processes are gone


def get(pid: int | None) -> Process | None:
    """The live (non-zombie) process ``pid``, pinned by its start time; else None."""
    if not pid or pid <= 0:
        return None
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return None
    return process if _alive(process) else None


def pid_alive(pid: int) -> bool:
    """True for a running process; False for none, or a zombie waiting to be reaped."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() not in _GONE
    except psutil.AccessDenied:
        return True  # someone else's process: alive
    except psutil.NoSuchProcess:
        return _hidden(pid)
    except psutil.Error:
        return False


def _hidden(pid: int) -> bool:
    """Whether ``pid`` lives although procfs does not show it (someone else's process
    under ``hidepid``): what ``kill(pid, 0)`` says."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_argv(pid: int) -> list[bytes] | None:
    """The command line of a live (non-zombie) process, or None when there is none.

    Phoenix finds its detached helpers again by their arguments (a pool directory, a
    module name), so a pid reused by an unrelated program is never mistaken for one.
    """
    process = get(pid)
    if process is None:
        return None
    try:
        return _argv(process) or None  # a kernel thread's is empty
    except psutil.Error:
        return None


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone or a zombie.

    A pid with its start time names one process for good: pids are reused, start times
    of a reused pid differ. Ticks since boot, not psutil's seconds since the epoch: they
    are kept in node status files (by earlier versions too) and, unlike the epoch value,
    do not move when the system clock is set.
    """
    process = get(pid)
    if process is None:
        return None
    try:
        return round((process.create_time() - psutil.boot_time()) * _CLOCK_TICKS)
    except psutil.Error:
        return None


def process_alive(pid: int | None, start_ticks: int | None) -> bool:
    """True if the process ``pid`` that started at ``start_ticks`` is still running
    (``start_ticks`` None: any process of that pid)."""
    if not pid:
        return False
    ticks = process_start_ticks(pid)
    if ticks is None:
        return False
    return start_ticks is None or ticks == start_ticks


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is a dead child of ours, so that it does not
    linger as a zombie; nothing for anyone else's process."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def find(
    *,
    argv: Callable[[list[bytes]], bool] | None = None,
    environ: Mapping[str, str] | None = None,
    group: int | None = None,
) -> list[Process]:
    """Every live (non-zombie) process but this one that is in process group ``group``,
    or has one of ``environ``'s variables set to its value, or whose command line
    satisfies ``argv``. Processes that cannot be read (another user's) are skipped."""
    me = os.getpid()
    found = []
    for process in psutil.process_iter():
        if process.pid == me:
            continue
        try:
            with process.oneshot():
                if process.status() in _GONE:
                    continue
                if (
                    (group is not None and os.getpgid(process.pid) == group)
                    or (environ and _has_any(process.environ(), environ))
                    or (argv is not None and argv(_argv(process)))
                ):
                    found.append(process)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
    return found


def stop(
    targets: Iterable[Process] | Callable[[], Iterable[Process]],
    *,
    grace: float,
    kill_grace: float,
    group: int | None = None,
    clock: Clock | None = None,
    interval: float = POLL_SECONDS,
) -> set[int]:
    """SIGTERM, ``grace`` seconds to exit, then SIGKILL and ``kill_grace`` seconds more;
    the pids still alive after that (empty when every process is gone).

    ``targets`` is a list, or a function that finds them anew (called on every look,
    so processes started meanwhile are stopped too; each one found is followed until it
    is gone, even once it no longer matches: an exiting process has no environment).
    ``group`` is a process group signalled along with them. A child of this process
    that exits is reaped here (its exit status is not left for anyone else), so it
    does not linger as a zombie; a process whose pid now names another is never
    signalled.
    """
    return _escalate(targets, ((signal.SIGTERM, grace), (signal.SIGKILL, kill_grace)),
                     group, clock, interval)


def kill(
    targets: Iterable[Process] | Callable[[], Iterable[Process]],
    *,
    timeout: float,
    group: int | None = None,
    clock: Clock | None = None,
    interval: float = POLL_SECONDS,
) -> set[int]:
    """SIGKILL at once (a power cut: nobody gets to clean up) and wait up to ``timeout``
    seconds for them to go; the pids still alive (see ``stop`` for ``targets``)."""
    return _escalate(targets, ((signal.SIGKILL, timeout),), group, clock, interval)


def _escalate(
    targets: Iterable[Process] | Callable[[], Iterable[Process]],
    steps: Iterable[tuple[signal.Signals, float]],
    group: int | None,
    clock: Clock | None,
    interval: float,
) -> set[int]:
    look = targets if callable(targets) else _fixed(list(targets))
    seen: set[Process] = set()

    def left() -> list[Process]:
        seen.update(look())
        for process in seen:
            reap(process.pid)  # our own child (a balancer we started): not a zombie
        return [process for process in seen if _alive(process)]

    wait_clock = clock if clock is not None else SystemClock()
    for sig, wait in steps:
        found = left()
        if not found:
            return set()
        if group is not None:
            _signal_group(group, sig)
        _signal(found, sig)

        def gone(sig: signal.Signals = sig) -> bool:
            remaining = left()
            if sig == signal.SIGKILL:
                _signal(remaining, sig)  # one found since (a child forked just before)
            return not remaining

        wait_until(gone, wait, wait_clock, interval=interval)
    return {process.pid for process in left()}


def _fixed(processes: list[Process]) -> Callable[[], list[Process]]:
    return lambda: processes


def _signal(processes: Iterable[Process], sig: signal.Signals) -> None:
    for process in processes:
        # NoSuchProcess also when the pid now belongs to another process: not signalled.
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _alive(process: Process) -> bool:
    """Still this process (not a reused pid), and not a zombie."""
    try:
        return process.is_running() and process.status() not in _GONE
    except psutil.AccessDenied:
        return True
    except psutil.Error:
        return False


def _argv(process: Process) -> list[bytes]:
    return [os.fsencode(arg) for arg in process.cmdline()]


def _has_any(environment: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return any(environment.get(name) == value for name, value in wanted.items())


# What a detached helper (a balancer, its supervisor, HAProxy) may see of the deployer's
# environment: enough to find programs and decode text, nothing else. The deployer's
# environment holds cloud credentials and secret vars; a process that outlives the deploy
# would keep them in /proc/<pid>/environ, readable by every process of the same user
# (node services included).
_KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def minimal_env() -> dict[str, str]:
    """A detached process's environment: PATH and locale only (see _KEPT_VARIABLES)."""
    env = {name: os.environ[name] for name in _KEPT_VARIABLES if name in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    return env


def python_child_env() -> dict[str, str]:
    """``minimal_env``, with this copy of phoenix importable from any working directory.

    Detached helpers (``python -m phoenix...``) run from their state directory, so a
    Phoenix used from a source checkout rather than an installed package must be put on
    their ``PYTHONPATH``.
    """
    env = minimal_env()
    root = str(Path(__file__).resolve().parents[1])  # the directory holding ``phoenix``
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    # Phoenix writes only inside its state dir: not bytecode into its own source tree.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env
