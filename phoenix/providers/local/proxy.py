"""The built-in load balancer: a zero-install HTTP/1.1 reverse proxy for the local provider.

Why it exists: the local provider needs a real load balancer so that a deploy moves real
traffic, but HAProxy is not always installed. It comes in three parts:

* the **process** (``python -m phoenix.providers.local.proxy <pool_dir>``, which runs
  ``proxy_server.main``): one asyncio event loop per pool that proxies each HTTP request
  round robin over the members that are SERVING and pass its own health check;
* its **control channel** (``proxy_control``): one JSON object per line over
  ``<pool_dir>/control.sock`` (ops ``add``/``drain``/``remove``/``batch``/``list``/``ping``);
* the **client**, :class:`BuiltinBalancer` (this module), the ``Balancer`` the local
  provider uses. Its ``ensure_running`` also starts the pool's supervisor
  (``supervisor.py``), which restarts a process that died; its ``list_members`` is a read
  and never starts one.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from phoenix import errors, processes
from phoenix.clock import SystemClock
from phoenix.files import atomic_write, locked
from phoenix.model import Member, MemberAction, MemberChange, MemberState
from phoenix.processes import python_child_env
from phoenix.providers.base import Clock
from phoenix.providers.local import proxy_control
from phoenix.providers.local import supervisor as supervision
from phoenix.providers.local.balancer import CONFIG_FILE, BalancerConfig, batch_order
from phoenix.providers.local.proxy_control import SOCKET_FILE
from phoenix.providers.local.proxy_server import FATAL, MODULE, PID_FILE, main
from phoenix.waiting import wait_until

__all__ = ["MODULE", "BuiltinBalancer", "main"]

LOG_FILE = "proxy.log"
LOCK_FILE = "proxy.lock"

CONTROL_TIMEOUT = 5.0  # one control request, including an add's first check
PING_TIMEOUT = 1.0
START_TIMEOUT = 5.0  # ensure_running: until the new process answers a ping
STOP_TIMEOUT = 15.0  # stop: SIGTERM, then SIGKILL (longer than the process's SHUTDOWN_GRACE)


def _pid_is_proxy(pid: int, pool_dir: Path) -> bool:
    """Whether ``pid`` is a live (not zombie) balancer process for ``pool_dir``.

    Checks the command line, so a pid reused by another program is never signalled.
    """
    return _proxy_process(pid, pool_dir) is not None


def _proxy_process(pid: int, pool_dir: Path) -> processes.Process | None:
    """The live balancer process ``pid`` of ``pool_dir``, or None (see ``_pid_is_proxy``)."""
    processes.reap(pid)  # it is our own dead child: not a zombie
    argv = processes.process_argv(pid)
    if argv is None or MODULE.encode() not in argv or str(pool_dir).encode() not in argv:
        return None
    return processes.get(pid)


class BuiltinBalancer:
    """The ``Balancer`` backed by this module's process; all state lives in ``pool_dir``.

    Every method is safe to call from several processes at once: starting and stopping
    hold an exclusive lock on ``<pool_dir>/proxy.lock``, and the process serialises
    membership changes in its event loop.
    """

    def __init__(self, config: BalancerConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._pool_dir = config.pool_dir.resolve()

    # -- Balancer --------------------------------------------------------------------

    def url(self) -> str:
        return f"http://{self.config.listen_host}:{self.config.listen_port}"

    def running(self) -> bool:
        pid = self._pid()
        return pid is not None and _pid_is_proxy(pid, self._pool_dir) and self._ping()

    def pid(self) -> int | None:
        """The pid of this pool's live proxy process (from its pid file), else None."""
        pid = self._pid()
        return pid if pid is not None and _pid_is_proxy(pid, self._pool_dir) else None

    def ensure_running(self) -> None:
        """Start the process unless it runs (members restored from members.json), and
        its supervisor (``config.supervise``), which restarts it if it dies."""
        self._pool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        supervision.clear_stopped(self._pool_dir)
        self.ensure_process()
        supervision.ensure_supervisor(self.config, "builtin")

    def ensure_process(self) -> bool:
        """``ensure_running`` without the supervisor (the supervisor's own restart); True
        when it started a process."""
        if self.running():
            return False
        self._pool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked():
            pid = self._pid()
            # A live process that is slow to answer is waited for, not replaced:
            # replacing it would cut the requests it is serving.
            if pid is not None and _pid_is_proxy(pid, self._pool_dir) and self._await_ping(
                lambda: _pid_is_proxy(pid, self._pool_dir)
            ):
                return False
            self._stop_leftover()
            self._start()
            return True

    def list_members(self) -> list[Member]:
        """The process's members; a read, so ``errors.Transient`` when it does not run
        (it is never started here)."""
        reply = self._call({"op": "list"}, start=False)
        try:
            return [
                Member(
                    name=str(entry["name"]),
                    address=str(entry["address"]),
                    port=int(entry["port"]),
                    state=MemberState(entry["state"]),
                    active_connections=int(entry["active_connections"]),
                    online=bool(entry["up"]),
                )
                for entry in reply["members"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.Transient(f"balancer in {self._pool_dir}: bad list reply: {exc!r}"
                                   ) from exc

    def add_member(self, name: str, address: str, port: int) -> None:
        self._call({"op": "add", "name": name, "address": address, "port": port})

    def drain_member(self, name: str) -> None:
        self._call({"op": "drain", "name": name})

    def remove_member(self, name: str) -> None:
        self._call({"op": "remove", "name": name})

    def change_members(self, changes: Sequence[MemberChange]) -> None:
        """The whole batch in one control message (one members.json write); a process
        started by an older Phoenix, which does not know ``batch``, gets the single
        calls instead."""
        body = proxy_control.encode_changes(changes)
        try:
            # "name": an older process checks it before the op, and must answer "unknown op".
            self._call({"op": "batch", "name": "*", "changes": body})
        except errors.BadRequest as exc:
            if "unknown op 'batch'" not in str(exc):
                raise
            for change in batch_order(changes):
                if change.action is MemberAction.ADD:
                    self.add_member(change.name, change.address, change.port)
                elif change.action is MemberAction.DRAIN:
                    with contextlib.suppress(errors.NotFound):
                        self.drain_member(change.name)
                else:
                    self.remove_member(change.name)

    def stop(self) -> None:
        """Stop the supervisor first (so it cannot restart the process), then the process:
        SIGTERM lets in-flight requests finish, SIGKILL after STOP_TIMEOUT."""
        if not self._pool_dir.is_dir():
            return
        supervision.stop_supervisor(self._pool_dir)
        with self._locked():
            self._stop_leftover()

    # -- process management ----------------------------------------------------------

    @property
    def _log_path(self) -> Path:
        return self._pool_dir / LOG_FILE

    def _pid(self) -> int | None:
        try:
            return int((self._pool_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self._pool_dir / LOCK_FILE)

    def _stop_leftover(self) -> None:
        """Stop whatever runs for this pool (possibly hung) and clear stale pid/socket."""
        pids = {self._pid()}
        with contextlib.suppress(errors.Transient):
            pids.add(int(self._request({"op": "ping"}, PING_TIMEOUT)["pid"]))
        found = [p for pid in pids if pid is not None
                 and (p := _proxy_process(pid, self._pool_dir)) is not None]
        # SIGTERM lets in-flight requests finish (the process's SHUTDOWN_GRACE).
        left = processes.stop(found, grace=STOP_TIMEOUT, kill_grace=5.0, clock=self.clock)
        if left:
            raise errors.Transient(
                f"balancer process {', '.join(map(str, sorted(left)))} for {self._pool_dir}"
                " survived SIGKILL"
            )
        for name in (PID_FILE, SOCKET_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self._pool_dir / name).unlink()

    def _start(self) -> None:
        config = {
            "listen_host": self.config.listen_host,
            "listen_port": self.config.listen_port,
            "check_path": self.config.check_path,
            "check_interval": self.config.check_interval,
            "check_rise": self.config.check_rise,
            "check_fall": self.config.check_fall,
        }
        atomic_write(self._pool_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n",
                     parents=True)
        with open(self._log_path, "ab") as log_file:
            log_offset = log_file.tell()
            process = subprocess.Popen(
                [sys.executable, "-m", MODULE, str(self._pool_dir)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                close_fds=True, start_new_session=True, cwd=self._pool_dir,
                env=python_child_env(),
            )
        atomic_write(self._pool_dir / PID_FILE, f"{process.pid}\n", parents=True)
        if self._await_ping(lambda: process.poll() is None):
            return
        code = process.poll()
        self._stop_leftover()
        if code is not None:
            raise self._start_failure(code, log_offset)
        raise errors.Transient(
            f"balancer for {self._pool_dir} did not answer within {START_TIMEOUT:g}s;"
            f" log: {self._log_tail(log_offset)}"
        )

    def _await_ping(self, alive: Callable[[], bool]) -> bool:
        """Whether the process answers a ping within START_TIMEOUT while ``alive()``."""
        answered = False

        def settled() -> bool:
            nonlocal answered
            if not alive():
                return True  # it died: no use waiting
            answered = self._ping()
            return answered

        wait_until(settled, START_TIMEOUT, self.clock, interval=0.02)
        return answered

    def _start_failure(self, code: int, log_offset: int) -> errors.PhoenixError:
        tail = self._log_tail(log_offset)
        fatal = [line.split(FATAL, 1)[1] for line in tail.splitlines() if FATAL in line]
        where = f"balancer for {self._pool_dir}"
        if code == errors.ExitCode.BAD_INPUT and fatal:
            return errors.InputError(f"{where}: {fatal[-1]}")
        return errors.Transient(f"{where} exited with code {code}; log ({self._log_path}):"
                                f"\n{tail}")

    def _log_tail(self, offset: int, limit: int = 4000) -> str:
        try:
            with open(self._log_path, "rb") as log_file:
                log_file.seek(max(offset, log_file.seek(0, os.SEEK_END) - limit))
                return log_file.read().decode("utf-8", "replace").strip()
        except OSError as exc:
            return f"(cannot read {self._log_path}: {exc})"

    # -- control socket --------------------------------------------------------------

    def _ping(self) -> bool:
        try:
            self._request({"op": "ping"}, PING_TIMEOUT)
        except errors.Transient:
            return False
        return True

    def _call(self, request: dict[str, Any], *, start: bool = True) -> dict[str, Any]:
        """One control request; ``start``: start the process first when it is not running
        (a change is an actor; a read is not)."""
        if start:
            self.ensure_running()
        reply = self._request(request, CONTROL_TIMEOUT)
        if reply.get("ok") is True:
            return reply
        message = f"balancer in {self._pool_dir}: {reply.get('message', reply)}"
        if reply.get("error") == "not_found":
            raise errors.NotFound(message)
        if reply.get("error") == "bad_request":
            raise errors.BadRequest(message)
        raise errors.Transient(message)

    def _request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Every control request of this client goes through here, pings included."""
        return proxy_control.request(self._pool_dir, request, timeout)


if __name__ == "__main__":
    sys.exit(main())
