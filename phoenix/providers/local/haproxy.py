"""A pool's load balancer as a real HAProxy process, driven through its runtime API.

Why HAProxy: Octavia's amphorae run HAProxy, so a local pool that is a real HAProxy
balances, health-checks, drains and removes members the way production does, and a
deploy tested locally meets the same behaviour (checks gate traffic, drains let in-flight
requests finish, deletes are refused while connections remain).

How it works:

* One HAProxy per pool, started detached with ``haproxy -D`` (plain daemon mode: one
  process, its pid in ``<pool_dir>/haproxy.pid``, its own session, so it outlives
  ``phoenix deploy`` and a Ctrl-C of it). ``<pool_dir>/haproxy.cfg`` is rewritten on every
  start (``haproxy_config``) and holds only the frontend and an empty backend; members
  are *dynamic servers* added over the admin socket ``<pool_dir>/admin.sock``
  (``haproxy_runtime``).
* Dynamic servers are lost when HAProxy restarts, so the desired members live in
  ``<pool_dir>/members.json`` (written atomically on every change, under an ``fcntl``
  lock so several Phoenix processes can share a pool) and ``ensure_running`` re-adds them.
  members.json says which members exist; HAProxy says how they are doing.
* ``ensure_running`` also starts the pool's supervisor (``supervisor.py``), which runs
  ``ensure_process`` again when HAProxy dies, so a killed HAProxy is back with its
  members within about a second, without a Phoenix command. ``list_members`` is a read
  and never starts HAProxy.
* Every member change goes through one path, the batch (``change_members``): a single
  ``add_member``/``drain_member``/``remove_member`` is a batch of one.
* Every failure talking to HAProxy becomes ``errors.Transient`` naming the command and
  HAProxy's answer, so the engine retries instead of crashing.

HAProxy behaviours this module works around (measured on 2.6.12; the runtime API's own
are in ``haproxy_runtime``):

* A dynamic server does **not** inherit ``default-server``: without explicit
  ``inter/rise/fall`` it is checked every 2 s with rise 2, fall 3.
* A server leaving maintenance counts as UP *before its first check*, so a member whose
  health check fails would get traffic for one interval. New members therefore go
  maint -> drain (checks run, no traffic) -> ``health down`` -> ready: they take traffic
  only after a check passes.
* HAProxy binds with ``SO_REUSEPORT``, so a second HAProxy on a taken port starts
  "fine" and silently shares it; ``noreuseport`` makes a taken port an error.
* Health checks on dynamic servers need HAProxy 2.5 (``add server ... check``), hence
  the minimum version.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from phoenix import errors, processes
from phoenix import log as plog
from phoenix.clock import SystemClock
from phoenix.files import atomic_write, locked
from phoenix.model import Member, MemberAction, MemberChange, MemberState
from phoenix.processes import minimal_env, pid_alive
from phoenix.providers.base import Clock
from phoenix.providers.local import supervisor as supervision
from phoenix.providers.local.balancer import BalancerConfig, batch_order
from phoenix.providers.local.haproxy_config import (
    BACKEND,
    CONFIG_FILE,
    PID_FILE,
    SOCKET_FILE,
    check_options,
    host_port,
    member_name,
    render_config,
    server_name,
)
from phoenix.providers.local.haproxy_runtime import (
    CHECK_FAILED,
    HaproxyRuntime,
    Server,
    connect_admin_socket,
)
from phoenix.waiting import wait_until

__all__ = [
    "MIN_VERSION",
    "HaproxyBalancer",
    "haproxy_available",
    "haproxy_version",
    "member_name",
    "render_config",
    "server_name",
]

log = plog.get_logger("phoenix.providers.local.haproxy")

MIN_VERSION = (2, 5)
"""Oldest HAProxy whose dynamic servers (``add server``) support health checks."""

MEMBERS_FILE = "members.json"
OUTPUT_FILE = "haproxy.out"
LOCK_FILE = ".lock"
SETTINGS_FILE = "config.json"

_VERSION = re.compile(r"version (\d+)\.(\d+)(?:\.(\d+))?")
_BIND_ERROR = re.compile(r"cannot bind socket \(([^)]*)\) for \[([^\]]*)\]")


# --- discovery ----------------------------------------------------------------------


def haproxy_version(binary: str = "haproxy") -> tuple[int, int, int] | None:
    """``haproxy -v`` as (major, minor, patch), or None when it is missing or unreadable."""
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    found = _VERSION.search(done.stdout + done.stderr)
    if found is None:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


@functools.cache
def haproxy_available() -> bool:
    """True when ``haproxy`` is on PATH and new enough (>= 2.5) for checked dynamic servers.

    Cached: the answer does not change while Phoenix runs.
    """
    version = haproxy_version()
    return version is not None and version[:2] >= MIN_VERSION


# --- members.json ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Desired:
    """One member as members.json records it."""

    address: str
    port: int
    state: MemberState


def _desired_to_json(members: Mapping[str, _Desired]) -> str:
    body = {
        name: {"address": m.address, "port": m.port, "state": m.state.value}
        for name, m in members.items()
    }
    return json.dumps(body, indent=1) + "\n"


def _desired_from_json(text: str) -> dict[str, _Desired]:
    """Read ``{name: {address, port, state}}``; a list of ``{name, ...}`` is read too."""
    raw = json.loads(text)
    if isinstance(raw, list):  # the built-in balancer's layout: the pool may switch kind
        raw = {entry["name"]: entry for entry in raw}
    if not isinstance(raw, dict):
        raise TypeError("expected an object of members")
    return {
        str(name): _Desired(
            address=str(entry["address"]),
            port=int(entry["port"]),
            state=MemberState(entry.get("state", MemberState.SERVING.value)),
        )
        for name, entry in raw.items()
    }


# --- the balancer -------------------------------------------------------------------


class HaproxyBalancer:
    """One pool's HAProxy process (implements ``balancer.Balancer``).

    ``clock`` times the bounded waits (start-up, connections draining before a delete);
    ``start_timeout`` bounds how long HAProxy may take to answer on its socket;
    ``remove_wait`` how long ``remove_member`` waits for in-flight requests to finish;
    ``add_wait`` how long a batch that adds members and takes serving ones away waits
    for the new members' first checks before it takes the old ones away.
    """

    def __init__(
        self,
        config: BalancerConfig,
        *,
        binary: str = "haproxy",
        clock: Clock | None = None,
        start_timeout: float = 10.0,
        remove_wait: float = 5.0,
        add_wait: float = 3.0,
        socket_timeout: float = 5.0,
    ) -> None:
        if config.check_path is not None and (
            not config.check_path.startswith("/") or re.search(r"\s", config.check_path)
        ):
            raise errors.InputError(
                f"check_path {config.check_path!r}: must start with '/' and contain no spaces"
            )
        if config.check_interval <= 0 or config.check_rise < 1 or config.check_fall < 1:
            raise errors.InputError(
                "check_interval must be > 0 and check_rise/check_fall >= 1"
                f" (got {config.check_interval}, {config.check_rise}, {config.check_fall})"
            )
        self.config = config
        self.binary = binary
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.start_timeout = start_timeout
        self.remove_wait = remove_wait
        self.add_wait = add_wait
        pool_dir = config.pool_dir.resolve()
        self._cfg_path = pool_dir / CONFIG_FILE
        self._sock_path = pool_dir / SOCKET_FILE
        self._pid_path = pool_dir / PID_FILE
        self._members_path = pool_dir / MEMBERS_FILE
        self._runtime = HaproxyRuntime(pool_dir, timeout=socket_timeout,
                                       connect=lambda sock: self._connect(sock))

    @property
    def socket_timeout(self) -> float:
        """How long one runtime-API socket operation may take."""
        return self._runtime.timeout

    @socket_timeout.setter
    def socket_timeout(self, seconds: float) -> None:
        self._runtime.timeout = seconds

    # --- Balancer -------------------------------------------------------------------

    def url(self) -> str:
        """Where clients send requests, e.g. ``http://127.1.255.254:8080``."""
        return f"http://{host_port(self.config.listen_host, self.config.listen_port)}"

    def running(self) -> bool:
        """True when this pool's HAProxy process is alive and answers on its socket."""
        pid = self._read_pid()
        return pid is not None and pid_alive(pid) and self._runtime.answers()

    def pid(self) -> int | None:
        """The pid of this pool's live HAProxy (from its pidfile), else None; no request."""
        pid = self._read_pid()
        return pid if pid is not None and self._is_ours(pid) else None

    def ensure_running(self) -> None:
        """Start HAProxy unless it runs, then re-add every member from members.json; and
        start its supervisor (``config.supervise``), which restarts it if it dies.

        A port someone else holds raises ``errors.InputError`` naming host:port; an
        HAProxy that does not come up raises ``errors.Transient`` with its output.
        """
        self._prepare_dir()
        supervision.clear_stopped(self.config.pool_dir)
        self.ensure_process()
        supervision.ensure_supervisor(self.config, "haproxy")

    def ensure_process(self) -> bool:
        """``ensure_running`` without the supervisor (the supervisor's own restart); True
        when it started HAProxy."""
        self._prepare_dir()
        with self._locked():
            if self._runtime.answers():
                self._repair_pidfile()
                return False
            self._clean_stale()
            self._start()
            try:
                for name, desired in self._load().items():
                    self._create(name, desired)
            except errors.PhoenixError:
                # A half-restored HAProxy would look "running" to the next call, which
                # would then skip the restore: stop it so a retry starts clean.
                self._kill()
                raise
            return True

    def list_members(self) -> list[Member]:
        """Members of members.json, with HAProxy's state and in-flight request count.

        A read: ``errors.Transient`` when HAProxy does not answer; it never starts it.
        """
        desired = self._load()
        servers = self._runtime.servers()
        members: list[Member] = []
        for name, want in desired.items():
            server = servers.get(server_name(name))
            if server is None:  # HAProxy lost it (restarted behind our back)
                members.append(Member(name, want.address, want.port, want.state, None))
                continue
            state = MemberState.SERVING if server.ready else MemberState.DRAINING
            members.append(
                Member(name, server.address, server.port, state, server.active, server.online)
            )
        return members

    def add_member(self, name: str, address: str, port: int) -> None:
        """Add, or make SERVING again; it takes traffic once its health check passes.

        The change is saved to members.json first; with HAProxy not running this raises
        ``errors.Transient`` and ``ensure_running`` applies it (so does ``drain_member``).
        """
        self._change([MemberChange(MemberAction.ADD, name, address, port)],
                     f"add_member({name!r})")

    def drain_member(self, name: str) -> None:
        """No new requests; in-flight ones finish. Missing member: ``errors.NotFound``."""
        self._change([MemberChange(MemberAction.DRAIN, name)], f"drain_member({name!r})",
                     strict=True)

    def remove_member(self, name: str) -> None:
        """Remove; a missing member is not an error.

        The server goes to maintenance (no new requests) and is deleted once its
        in-flight requests finished, waiting up to ``remove_wait``. Still busy after
        that: it stays in maintenance (listed as DRAINING) and ``errors.Transient`` asks
        the caller to retry. With HAProxy not running it is only dropped from
        members.json: a stopped balancer serves nobody and will not restore it.
        """
        self._change([MemberChange(MemberAction.REMOVE, name)], f"remove_member({name!r})")

    def change_members(self, changes: Sequence[MemberChange]) -> None:
        """Apply a batch (``MemberBatcher``): one lock, one load of members.json, one
        save before HAProxy is touched (a second once removed members are gone), and every
        runtime command on one connection.

        Adds go in first and take traffic only once a check passes; when the batch also
        takes serving members away, that waits (up to ``add_wait``) for the new members'
        first checks, so the pool is not left without a server in between. Draining a
        missing member is ignored. Removals wait together (up to ``remove_wait``) for
        their in-flight requests; members still busy stay in maintenance (DRAINING) and
        ``errors.Transient`` names them after everything else was applied.
        """
        self._change(changes, "change_members")

    def _change(self, changes: Sequence[MemberChange], what: str, *, strict: bool = False
                ) -> None:
        """``change_members``, and every single-member call as a batch of one; ``what``
        names the call in errors; ``strict``: draining a missing member raises
        ``errors.NotFound`` instead of being ignored."""
        ordered = batch_order(changes)
        adds = [
            (c.name, _Desired(_validate_member(c.name, c.address, c.port), c.port,
                              MemberState.SERVING))
            for c in ordered if c.action is MemberAction.ADD
        ]
        with self._locked():
            desired = self._load()
            before = dict(desired)
            desired.update(adds)
            # Write ahead: a member being drained or removed is saved DRAINING first, so a
            # restart in between does not bring it back serving.
            drains: list[tuple[str, _Desired]] = []
            removals: list[str] = []
            for change in ordered:
                entry = desired.get(change.name)
                if change.action is MemberAction.ADD:
                    continue
                if change.action is MemberAction.REMOVE:
                    removals.append(change.name)
                if entry is None:
                    if strict and change.action is MemberAction.DRAIN:
                        raise errors.NotFound(
                            f"member {change.name!r} is not in the pool at"
                            f" {self.config.pool_dir}"
                        )
                    continue  # removing a missing member: HAProxy may still have it
                entry = _Desired(entry.address, entry.port, MemberState.DRAINING)
                desired[change.name] = entry
                if change.action is MemberAction.DRAIN:
                    drains.append((change.name, entry))
            saved = dict(desired)
            if saved != before:
                self._save(saved)
            connection = contextlib.ExitStack()
            try:
                connection.enter_context(self._runtime.one_connection())
            except errors.Transient as exc:
                # Not running: a stopped balancer serves nobody, so removals only leave
                # members.json; ensure_running applies the rest from it.
                for name in removals:
                    desired.pop(name, None)
                if desired != saved:
                    self._save(desired)
                if adds or drains:
                    raise self._not_running(what) from exc
                return
            with connection:
                busy = self._apply_batch(adds, drains, removals)
            for name in removals:
                if name not in busy:
                    desired.pop(name, None)
            if desired != saved:
                self._save(desired)
            if busy:
                raise errors.Transient("; ".join(busy.values()))

    def _apply_batch(
        self, adds: Sequence[tuple[str, _Desired]], drains: Sequence[tuple[str, _Desired]],
        removals: Sequence[str],
    ) -> dict[str, str]:
        """The runtime commands of ``change_members``; the removals still busy (why)."""
        servers = self._runtime.servers()
        fresh: list[str] = []  # servers that take traffic once their first check passes
        for name, want in adds:
            server = servers.get(server_name(name))
            if server is not None and (server.address, server.port) != (want.address, want.port):
                self._delete(name, server)  # it moved: re-create it at its new address
                server = None
            if server is None:
                self._create(name, want)
                fresh.append(server_name(name))
            elif server.maint:
                self._bring_up(server.name)
                fresh.append(server.name)
            elif server.drain:
                self._runtime.command_ok(f"set server {BACKEND}/{server.name} state ready")
        going = [servers.get(server_name(name)) for name in (*(n for n, _ in drains), *removals)]
        if fresh and any(server is not None and server.ready for server in going):
            self._await_first_checks(fresh)
        if adds and (drains or removals):
            servers = self._runtime.servers()
        for name, want in drains:
            server = servers.get(server_name(name))
            if server is None:  # HAProxy lost it: back, but draining
                self._create(name, want)
            elif server.ready:
                self._runtime.command_ok(f"set server {BACKEND}/{server.name} state drain")
        present = {name: servers[server_name(name)] for name in removals
                   if server_name(name) in servers}
        return self._delete_all(present)

    def _await_first_checks(self, fresh: Sequence[str]) -> None:
        """Until every one of ``fresh`` passed a check (takes traffic) or failed one, or
        ``add_wait`` passed; a sick new member must not hold the batch for long."""

        def checked() -> bool:
            servers = self._runtime.servers()
            return all(
                server is None or server.online or server.check_result == CHECK_FAILED
                for server in (servers.get(name) for name in fresh)
            )

        wait_until(checked, self.add_wait, self.clock)

    def stop(self) -> None:
        """Stop the supervisor, then HAProxy (SIGTERM, then SIGKILL), and remove its
        socket and pidfile; the supervisor goes first so that it cannot restart it.

        members.json is kept, so the next ``ensure_running`` restores the members.
        """
        if not self.config.pool_dir.exists():
            return
        supervision.stop_supervisor(self.config.pool_dir)
        with self._locked():
            self._kill()

    # --- process --------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        pool_dir = self.config.pool_dir
        pool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(pool_dir, 0o700)

    def _start(self) -> None:
        atomic_write(self._cfg_path, render_config(self.config))
        atomic_write(self.config.pool_dir / SETTINGS_FILE, self._settings_json())
        binary = shutil.which(self.binary)
        if binary is None:
            raise errors.InputError(
                f"{self.binary!r} is not on PATH: install HAProxy >= 2.5"
                " (e.g. apt-get install haproxy) or use the built-in balancer"
            )
        output_path = self.config.pool_dir / OUTPUT_FILE
        started = self.clock.now()
        try:
            # -D: HAProxy forks, calls setsid and closes stdio, so the parent returns as
            # soon as the listeners are bound (or failed to bind) and the daemon lives on.
            with open(output_path, "wb") as output:
                done = subprocess.run(
                    [binary, "-D", "-f", str(self._cfg_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=self._cfg_path.parent,  # where the relative socket path points
                    env=minimal_env(),  # a daemon that outlives us keeps no credentials
                    start_new_session=True,
                    timeout=self.start_timeout,
                    check=False,
                )
        except (OSError, subprocess.SubprocessError) as exc:
            raise errors.Transient(f"could not run {binary} -D -f {self._cfg_path}: {exc}") from exc
        output_text = output_path.read_text(errors="replace").strip()
        if done.returncode != 0:
            bind = _BIND_ERROR.search(output_text)
            if bind is not None:
                raise errors.InputError(
                    f"the load balancer cannot listen on {bind.group(2)}: {bind.group(1)};"
                    " another process holds it — stop that process or choose another"
                    f" listen address or port (haproxy said: {bind.group(0)})"
                )
            raise errors.Transient(
                f"haproxy -D -f {self._cfg_path} exited with {done.returncode}: {output_text}"
            )
        waited = (self.clock.now() - started).total_seconds()
        if not wait_until(self._runtime.answers, self.start_timeout - waited, self.clock,
                          interval=0.01):
            self._kill()
            raise errors.Transient(
                f"haproxy for {self.config.pool_dir} started but its admin socket"
                f" {self._sock_path} did not answer within {self.start_timeout}s;"
                f" output: {output_text or '(none)'}"
            )
        self._repair_pidfile()
        log.info(
            "haproxy started",
            pool_dir=str(self.config.pool_dir),
            pid=self._read_pid(),
            seconds=round((self.clock.now() - started).total_seconds(), 3),
        )

    def _clean_stale(self) -> None:
        """Before a start: end a wedged HAProxy of this pool, drop stale pid and socket."""
        pid = self._read_pid()
        if pid is not None and self._is_ours(pid):
            self._terminate(pid)
        for path in (self._pid_path, self._sock_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _kill(self) -> None:
        pid = self._read_pid()
        if pid is None:
            pid = self._runtime.pid()
        if pid is not None and self._is_ours(pid):
            self._terminate(pid)
        for path in (self._sock_path, self._pid_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _terminate(self, pid: int) -> None:
        process = processes.get(pid)
        left = set() if process is None else processes.stop(
            [process], grace=3.0, kill_grace=2.0, clock=self.clock, interval=0.01)
        if left:
            raise errors.Transient(f"haproxy (pid {pid}) survived SIGKILL; try again")

    def _is_ours(self, pid: int) -> bool:
        """Is ``pid`` alive and this pool's HAProxy (not a process that reused the pid)?"""
        argv = processes.process_argv(pid)
        return argv is not None and os.fsencode(self._cfg_path) in argv

    def _read_pid(self) -> int | None:
        try:
            text = self._pid_path.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return int(text) if text.isdigit() else None

    def _repair_pidfile(self) -> None:
        pid = self._runtime.pid()
        if pid is not None and self._read_pid() != pid:
            atomic_write(self._pid_path, f"{pid}\n")

    def _settings_json(self) -> str:
        c = self.config
        settings = {
            "balancer": "haproxy",
            "listen_host": c.listen_host,
            "listen_port": c.listen_port,
            "check_path": c.check_path,
            "check_interval": c.check_interval,
            "check_rise": c.check_rise,
            "check_fall": c.check_fall,
        }
        return json.dumps(settings, indent=1) + "\n"

    # --- members --------------------------------------------------------------------

    def _create(self, name: str, want: _Desired) -> None:
        """Add a dynamic server; it takes traffic only once a check passes."""
        server = server_name(name)
        address = host_port(want.address, want.port)
        # experimental-mode: 2.5 still hides add/del server behind it; harmless later.
        command = (
            f"experimental-mode on; add server {BACKEND}/{server} {address}"
            f" check {check_options(self.config)}"
        )
        answer = self._runtime.command(command)
        if "New server registered" not in answer and "Already exists" not in answer:
            raise errors.Transient(f"haproxy refused {command!r}: {answer.strip()!r}")
        self._runtime.command_ok(f"enable health {BACKEND}/{server}")
        if want.state is MemberState.DRAINING:
            self._runtime.command_ok(f"set server {BACKEND}/{server} state drain")
        else:
            self._bring_up(server)

    def _bring_up(self, server: str) -> None:
        # Leaving maintenance marks a server UP before any check; via drain (checks run,
        # no traffic) and "health down", it stays out until a check passes.
        self._runtime.command_ok(f"set server {BACKEND}/{server} state drain")
        self._runtime.command_ok(f"set server {BACKEND}/{server} health down")
        self._runtime.command_ok(f"set server {BACKEND}/{server} state ready")

    def _delete(self, name: str, server: Server) -> None:
        """Maintenance, wait (bounded) for in-flight requests, then ``del server``."""
        busy = self._delete_all({name: server})
        if busy:
            raise errors.Transient(busy[name])

    def _delete_all(self, servers: Mapping[str, Server]) -> dict[str, str]:
        """Maintenance for all, then ``del server`` each once its in-flight requests
        finished, all within one ``remove_wait``; the members left (why), by name."""
        for server in servers.values():
            if not server.maint:
                self._runtime.command_ok(f"set server {BACKEND}/{server.name} state maint")
        pending = dict(servers)
        failed: dict[str, str] = {}
        answers: dict[str, str] = {}

        def deleted() -> bool:
            current = self._runtime.servers()
            for name, server in list(pending.items()):
                now = current.get(server.name)
                if now is None:
                    del pending[name]
                    continue
                pending[name] = now
                if now.active:
                    continue
                command = f"experimental-mode on; del server {BACKEND}/{server.name}"
                answer = self._runtime.command(command).strip()
                if "Server deleted" in answer or "No such server" in answer:
                    del pending[name]
                elif "still has connections" in answer:
                    answers[name] = answer
                else:
                    failed[name] = f"haproxy refused {command!r}: {answer!r}"
                    del pending[name]
            return not pending

        if not pending or wait_until(deleted, self.remove_wait, self.clock):
            return failed
        for name, server in pending.items():
            command = f"del server {BACKEND}/{server.name}"
            failed[name] = (
                f"member {name!r} still has {server.active or 0} request(s) in flight"
                f" after {self.remove_wait}s (last answer to {command!r}:"
                f" {answers.get(name) or 'not sent'!r}); it is in maintenance and"
                " takes no new requests; retry remove_member"
            )
        return failed

    def _not_running(self, what: str) -> errors.Transient:
        return errors.Transient(
            f"{what}: haproxy for {self.config.pool_dir} is not running; the change is"
            " saved in members.json and applied by ensure_running()"
        )

    # --- runtime API ----------------------------------------------------------------

    def _connect(self, sock: socket.socket) -> None:
        """Every runtime-API connection of this balancer is opened here."""
        connect_admin_socket(sock, self._sock_path)

    def _command(self, command: str) -> str:
        """One runtime-API command line and HAProxy's whole answer (a shortcut to the
        runtime's ``command``)."""
        return self._runtime.command(command)

    # --- files ----------------------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Serialise changes to this pool across threads and processes."""
        self.config.pool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return locked(self.config.pool_dir / LOCK_FILE)

    def _load(self) -> dict[str, _Desired]:
        try:
            text = self._members_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            return _desired_from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.InputError(
                f"{self._members_path}: not a valid members file ({exc}); fix it, or delete"
                " it and re-add the members"
            ) from exc

    def _save(self, members: Mapping[str, _Desired]) -> None:
        atomic_write(self._members_path, _desired_to_json(members))


def _validate_member(name: str, address: str, port: int) -> str:
    """The member's address in HAProxy's spelling (``::1``, not ``0::1``); InputError if bad."""
    server_name(name)  # non-empty
    try:
        normal = str(ipaddress.ip_address(address))
    except ValueError as exc:
        raise errors.InputError(
            f"member {name!r}: address {address!r} is not an IP address"
            " (HAProxy would resolve a host name only once)"
        ) from exc
    if not 0 < port < 65536:
        raise errors.InputError(f"member {name!r}: port {port} is not in 1..65535")
    return normal
