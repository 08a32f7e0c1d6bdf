"""A local balancer's supervisor: it restarts the balancer process when the process dies.

Why: a cloud's load balancer does not vanish when nobody is looking. Without this, a
built-in proxy or HAProxy that died between deploys was a full outage until someone ran
a Phoenix command. So every balancer process has one small detached companion,
``python -m phoenix.providers.local.supervisor_process <pool_dir> --kind
haproxy|builtin [--hold FILE]`` (the process side lives there: it makes balancers, which
use this module's functions to start their supervisors), started with it by
``ensure_supervisor`` (called from the balancer's ``ensure_running``), the way the node
agents keep nodes:

* it polls the balancer's pid every ``POLL_SECONDS`` and, when the process is gone,
  restarts it from ``config.json`` and ``members.json`` through the balancer's own
  ``ensure_process``: the code and the pool lock a Phoenix call uses, so a deploy and the
  supervisor restarting at the same moment start one process, not two;
* it backs off when a restart fails or the process dies again soon after one (0.5 s,
  1 s, 2 s, ... up to ``BACKOFF_MAX``), so a balancer that cannot start costs a few
  attempts a minute, not a hot loop;
* it leaves the balancer dead while ``--hold`` names a file that exists: the region's
  outage marker, so ``phoenix drill outage`` is not undone behind the drill's back, and
  ``drill recover`` (the marker removed) brings the balancer back;
* it exits when the pool is stopped on purpose (``stop_supervisor`` writes
  ``<pool_dir>/stopped`` first, then signals it) or when its pool directory is gone;
* there is one per pool: it holds an ``flock`` on ``<pool_dir>/supervisor.lock`` for its
  whole life and a second one exits at once; the lock dies with its holder, so no stale
  lock can keep a pool unsupervised;
* restarts, failures and holds are logged to ``<pool_dir>/supervisor.log``.

It watches for death only: a balancer that lives but does not answer is left to the
next writer, whose ``ensure_running`` waits for it or replaces it, as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from phoenix import errors, processes
from phoenix.clock import SystemClock
from phoenix.files import atomic_write, lock_held, locked
from phoenix.processes import python_child_env
from phoenix.providers.local.balancer import Balancer, BalancerConfig

__all__ = [
    "KINDS",
    "LOG_FILE",
    "MODULE",
    "PID_FILE",
    "STOPPED_FILE",
    "Supervisor",
    "backoff",
    "clear_stopped",
    "ensure_supervisor",
    "stop_supervisor",
    "stopped_on_purpose",
    "supervisor_pids",
]

MODULE = "phoenix.providers.local.supervisor_process"
# What supervisors started by earlier versions run: still recognised, so that stopping a
# pool after an upgrade stops its old supervisor too.
_EARLIER_MODULES = ("phoenix.providers.local.supervisor",)
PID_FILE = "supervisor.pid"
LOCK_FILE = "supervisor.lock"  # held (flock) by the running supervisor for its whole life
SPAWN_LOCK_FILE = ".supervisor-spawn.lock"  # serialises ensure_supervisor across processes
LOG_FILE = "supervisor.log"
STOPPED_FILE = "stopped"  # the balancer was stopped on purpose: do not bring it back
KINDS = ("haproxy", "builtin")

POLL_SECONDS = 0.1  # how often the balancer's pid is looked at
BACKOFF_FIRST = 0.5  # the wait after the first failed (or short-lived) restart
BACKOFF_MAX = 30.0
STABLE_SECONDS = 10.0  # a restarted balancer that lived this long was a good restart
LOCK_WAIT = 1.0  # a new supervisor waits this long for one that is exiting
STOP_TIMEOUT = 15.0  # SIGTERM grace: longer than a restart in progress (HAProxy's is 10 s)
KILL_TIMEOUT = 5.0

log = logging.getLogger("phoenix.providers.local.supervisor")


# --- pure -------------------------------------------------------------------------------


def backoff(failures: int) -> float:
    """Seconds to wait before the next restart after ``failures`` bad ones in a row."""
    if failures <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1)))


# --- the client side: start, find and stop a pool's supervisor ----------------------------


def ensure_supervisor(config: BalancerConfig, kind: str) -> None:
    """Start the pool's supervisor unless one runs (nothing when ``config.supervise`` is
    off). Called after every successful ``ensure_running``, so a supervisor that was
    killed comes back with the next writer; cheap when one runs (a file and /proc read).
    """
    if not config.supervise:
        return
    if kind not in KINDS:
        raise errors.InputError(f"balancer kind {kind!r}: use one of {', '.join(KINDS)}")
    pool_dir = config.pool_dir.resolve()
    if _pid_file_supervisor(pool_dir) is not None:
        return
    with locked(pool_dir / SPAWN_LOCK_FILE):
        if _pid_file_supervisor(pool_dir) is not None or lock_held(pool_dir / LOCK_FILE):
            return
        argv = [sys.executable, "-m", MODULE, str(pool_dir), "--kind", kind]
        if config.hold_file is not None:
            argv += ["--hold", os.path.abspath(config.hold_file)]
        with open(pool_dir / LOG_FILE, "ab") as log_file:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                close_fds=True, start_new_session=True, cwd=pool_dir, env=python_child_env(),
            )
        # Written here too (the supervisor rewrites it once it holds its lock), so the
        # next caller sees one that is still starting up and does not start another.
        atomic_write(pool_dir / PID_FILE, f"{process.pid}\n", parents=True)
    # Reaped when it exits, so a long-running deploy collects no zombie; once this
    # process exits the supervisor is adopted by init and lives on.
    threading.Thread(target=process.wait, name=f"reap-supervisor-{process.pid}",
                     daemon=True).start()


def stop_supervisor(pool_dir: Path) -> None:
    """Stop the pool's supervisor for good, before its balancer is stopped.

    ``stopped`` is written first, so a supervisor that is starting up, or is in the middle
    of a restart, exits instead of bringing the balancer back; then every supervisor of
    the pool gets SIGTERM (SIGKILL after ``STOP_TIMEOUT``). ``errors.Transient`` if one
    survives SIGKILL.
    """
    pool_dir = pool_dir.resolve()
    if not pool_dir.is_dir():
        return
    atomic_write(pool_dir / STOPPED_FILE, "stopped on purpose; ensure_running clears this\n",
                 parents=True)
    pids = processes.stop(_supervisors(pool_dir), grace=STOP_TIMEOUT, kill_grace=KILL_TIMEOUT)
    if pids:
        raise errors.Transient(
            f"supervisor process(es) {', '.join(map(str, sorted(pids)))} of {pool_dir}"
            " survived SIGKILL; retry the stop"
        )
    with contextlib.suppress(FileNotFoundError):
        (pool_dir / PID_FILE).unlink()


def clear_stopped(pool_dir: Path) -> None:
    """Forget a stop on purpose: the balancer is wanted again (``ensure_running``)."""
    with contextlib.suppress(FileNotFoundError):
        (pool_dir / STOPPED_FILE).unlink()


def stopped_on_purpose(pool_dir: Path) -> bool:
    """Whether the pool's balancer was stopped on purpose (and is meant to stay down)."""
    return (pool_dir / STOPPED_FILE).exists()


def supervisor_pids(pool_dir: Path) -> set[int]:
    """The live supervisors of ``pool_dir`` (normally none or one): the pid file's, and
    any process whose command line says it supervises this pool (a lost pid file)."""
    return {process.pid for process in _supervisors(pool_dir.resolve())}


def supervisor_running(pool_dir: Path) -> bool:
    """Whether a supervisor watches the pool (it holds the pool's supervisor lock)."""
    pool_dir = pool_dir.resolve()
    return _pid_file_supervisor(pool_dir) is not None or lock_held(pool_dir / LOCK_FILE)


# --- the process ------------------------------------------------------------------------


class Supervisor:
    """Watches one balancer and restarts it when its process dies; ``run`` returns the
    exit code. ``reload`` re-reads the balancer from its pool directory before each
    restart (a writer may have changed config.json since); ``clock`` and ``sleep`` are
    injected so the backoff can be tested without waiting."""

    def __init__(
        self,
        balancer: Balancer,
        *,
        hold_file: Path | None = None,
        reload: Callable[[], Balancer] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.balancer = balancer
        self.reload = reload
        self.pool_dir = balancer.config.pool_dir
        self.hold_file = hold_file
        self.clock = clock
        self.sleep = sleep if sleep is not None else SystemClock().sleep
        self.stopping = False  # set by SIGTERM/SIGINT
        self.failures = 0  # bad restarts in a row: failed, or the process died soon after
        self.next_try = 0.0  # clock() before which no restart is tried
        self.restarts = 0
        self.restarted_at: float | None = None  # when this supervisor last started it
        self.dead_since: float | None = None
        self.watched: int | None = None  # the pid last seen alive
        self.held = False

    def run(self) -> int:
        """Watch until stopped on purpose, signalled, or the pool directory is gone."""
        log.info("supervising the balancer of %s", self.pool_dir)
        while True:
            reason = self.exit_reason()
            if reason is not None:
                log.info("exiting: %s (%d restart(s))", reason, self.restarts)
                return 0
            try:
                self.step()
            except Exception:  # an unsupervised balancer is worse than a logged bug
                log.exception("unexpected error while watching the balancer")
            self.sleep(POLL_SECONDS)

    def exit_reason(self) -> str | None:
        if self.stopping:
            return "asked to stop"
        if not self.pool_dir.is_dir():
            return f"the pool directory {self.pool_dir} is gone"
        if stopped_on_purpose(self.pool_dir):
            return "the balancer was stopped on purpose"
        return None

    def hold_reason(self) -> str | None:
        """Why the balancer must stay down (its region's outage), or None."""
        if self.hold_file is None:
            return None
        try:
            text = self.hold_file.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return f"{self.hold_file} exists but cannot be read ({exc})"
        reason = "unknown reason"
        with contextlib.suppress(ValueError, AttributeError):
            reason = str(json.loads(text).get("reason", reason))
        return f"{self.hold_file} says it is down: {reason}"

    def step(self) -> None:
        """One look at the balancer; restarts it when it is dead and nothing holds it."""
        pid = self.balancer.pid()
        now = self.clock()
        if pid is not None:
            if pid != self.watched:
                log.info("balancer process %d is running", pid)
                self.watched = pid
            self.dead_since = None
            self.held = False
            if self.restarted_at is not None and now - self.restarted_at >= STABLE_SECONDS:
                self.failures = 0  # that restart held: the next death restarts at once
            return
        hold = self.hold_reason()
        if hold is not None:
            if not self.held:
                log.warning("balancer process %s is down and stays down: %s",
                            self.watched or "(none)", hold)
                self.held = True
            return
        if self.held:
            log.info("the hold is lifted: bringing the balancer back")
            self.held = False
            self.failures, self.next_try, self.restarted_at = 0, 0.0, None
        if self.dead_since is None:
            self.dead_since = now
            if self.restarted_at is not None and now - self.restarted_at < STABLE_SECONDS:
                # It died again soon after our restart: do not turn a crash loop into a
                # hot loop.
                self.failures += 1
                self.next_try = now + backoff(self.failures)
            wait = max(0.0, self.next_try - now)
            log.warning("balancer process %s is gone; %s", self.watched or "(none)",
                        f"restarting in {wait:.1f}s" if wait else "restarting")
        if now >= self.next_try:
            self.restart()

    def restart(self) -> None:
        started = self.clock()
        try:
            if self.reload is not None:
                self.balancer = self.reload()
            did_start = self.balancer.ensure_process()
        except Exception as exc:  # a supervisor must outlive any one failed restart
            self.failures += 1
            wait = backoff(self.failures)
            self.next_try = self.clock() + wait
            log.error("restart failed (%d in a row): %s; next try in %.1fs",
                      self.failures, exc, wait)
            return
        pid = self.balancer.pid()
        hold = self.hold_reason()
        if did_start and hold is not None and pid is not None:
            # The outage began while we were starting it: a power cut takes it down again
            # (the outage's own sweep may have run before the process existed).
            process = processes.get(pid)
            if process is not None:
                processes.kill([process], timeout=0)
            log.warning("killed the balancer just restarted (pid %d): %s", pid, hold)
            return
        if did_start:
            self.restarts += 1
            self.restarted_at = self.clock()
            log.info("restarted the balancer (pid %s) in %.2fs; restart %d",
                     pid, self.restarted_at - started, self.restarts)
        else:
            log.info("the balancer runs again (pid %s), started by another caller", pid)
        self.dead_since = None
        self.watched = pid


# --- helpers ----------------------------------------------------------------------------


def _is_supervisor(argv: list[bytes], pool_dir: Path) -> bool:
    if os.fsencode(pool_dir) not in argv:
        return False
    return any(module.encode() in argv for module in (MODULE, *_EARLIER_MODULES))


def _supervisors(pool_dir: Path) -> list[processes.Process]:
    """The live supervisor processes of ``pool_dir`` (which is resolved)."""
    return processes.find(argv=lambda argv: _is_supervisor(argv, pool_dir))


def _pid_file_supervisor(pool_dir: Path) -> int | None:
    pid = read_pid(pool_dir / PID_FILE)
    if pid is None:
        return None
    argv = processes.process_argv(pid)
    return pid if argv is not None and _is_supervisor(argv, pool_dir) else None


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, ValueError):
        return None
    return int(text) if text.isdigit() else None
