"""A pool's load balancer as a real HAProxy process, driven through its runtime API.

Why HAProxy: Octavia's amphorae run HAProxy, so a local pool that is a real HAProxy
balances, health-checks, drains and removes members the way production does, and a
deploy tested locally meets the same behaviour (checks gate traffic, drains let in-flight
requests finish, deletes are refused while connections remain).

How it works:

* One HAProxy per pool, started detached with ``haproxy -D`` (plain daemon mode: one
  process, its pid in ``<pool_dir>/haproxy.pid``, its own session, so it outlives
  ``phoenix deploy`` and a Ctrl-C of it). ``<pool_dir>/haproxy.cfg`` is rewritten on every
  start and holds only the frontend and an empty backend; members are *dynamic servers*
  added over the admin socket ``<pool_dir>/admin.sock`` with Python's ``socket`` module.
* Dynamic servers are lost when HAProxy restarts, so the desired members live in
  ``<pool_dir>/members.json`` (written atomically on every change, under an ``fcntl``
  lock so several Phoenix processes can share a pool) and ``ensure_running`` re-adds them.
  members.json says which members exist; HAProxy says how they are doing.
* ``ensure_running`` also starts the pool's supervisor (``supervisor.py``), which runs
  ``ensure_process`` again when HAProxy dies, so a killed HAProxy is back with its
  members within about a second, without a Phoenix command. ``list_members`` is a read
  and never starts HAProxy.
* Every failure talking to HAProxy becomes ``errors.Transient`` naming the command and
  HAProxy's answer, so the engine retries instead of crashing.

HAProxy behaviours this module works around (measured on 2.6.12):

* A dynamic server does **not** inherit ``default-server``: without explicit
  ``inter/rise/fall`` it is checked every 2 s with rise 2, fall 3.
* A server leaving maintenance counts as UP *before its first check*, so a member whose
  health check fails would get traffic for one interval. New members therefore go
  maint -> drain (checks run, no traffic) -> ``health down`` -> ready: they take traffic
  only after a check passes.
* HAProxy binds with ``SO_REUSEPORT``, so a second HAProxy on a taken port starts
  "fine" and silently shares it; ``noreuseport`` makes a taken port an error.
* HAProxy refuses an absolute socket path over 97 bytes; the socket is configured
  relative to the pool_dir (HAProxy's start directory) so any pool_dir works.
* Health checks on dynamic servers need HAProxy 2.5 (``add server ... check``), hence
  the minimum version.
* ``experimental-mode on`` (needed for ``add/del server`` on 2.5 and 2.6) holds for one
  connection only: a one-shot line sends it before the command, separated by ``;``.
* A batch (``change_members``) keeps one connection in interactive mode (``prompt``):
  then every command, each ``;``-separated one too, answers with its text followed by
  ``\n> ``, and the connection stays open for the next line (and the waits between).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from phoenix import errors
from phoenix import log as plog
from phoenix.clock import SystemClock
from phoenix.model import Member, MemberAction, MemberChange, MemberState
from phoenix.processes import minimal_env, pid_alive
from phoenix.providers.base import Clock
from phoenix.providers.local import supervisor as supervision
from phoenix.providers.local.balancer import BalancerConfig, batch_order
from phoenix.providers.local.store import atomic_write

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

BACKEND = "pool"
FRONTEND = "listener"
CONFIG_FILE = "haproxy.cfg"
SOCKET_FILE = "admin.sock"
PID_FILE = "haproxy.pid"
MEMBERS_FILE = "members.json"
OUTPUT_FILE = "haproxy.out"
LOCK_FILE = ".lock"
SETTINGS_FILE = "config.json"

# A unix socket path must fit sun_path (108 bytes with its NUL). HAProxy also needs room
# for a ".<pid>.tmp" suffix while it binds, so it refuses absolute paths over 97 bytes; a
# pool_dir under a deep project directory easily exceeds that. HAProxy is therefore told a
# path relative to its start directory (the pool_dir), and we connect through
# /proc/self/fd/<pool_dir fd>/admin.sock when the absolute path is too long.
MAX_SUN_PATH = 107

# `show servers state` srv_admin_state bits (HAProxy's enum srv_admin).
_ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20  # forced, inherited, config, resolution failure
_ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited
# `show servers state` srv_check_result (HAProxy's enum chk_result): 0 unknown (no check
# concluded yet), 1 neutral, 2 failed, 3 passed, 4 conditionally passed.
_CHECK_FAILED = 2
# What interactive mode (``prompt``) prints after every command's answer.
_PROMPT = b"\n> "

_SAFE_NAME_CHARS = re.compile(r"[A-Za-z0-9.-]")
_CONFIG_WORD = re.compile(r"[A-Za-z0-9._~/%?=&:@+,;-]+")
_ESCAPE = re.compile(r"_([0-9a-f]{2})")
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


# --- pure helpers ---------------------------------------------------------------------


def server_name(member: str) -> str:
    """The HAProxy server name for a Phoenix member name (reversible, see ``member_name``).

    HAProxy accepts ``[A-Za-z0-9._:-]`` in names. Phoenix names (``[a-z0-9-]``) map to
    themselves; any other character becomes ``_xx`` per UTF-8 byte (``_`` itself too,
    so decoding is unambiguous).
    """
    if not member:
        raise errors.InputError("a load-balancer member needs a non-empty name")
    return "".join(
        ch if _SAFE_NAME_CHARS.fullmatch(ch) else "".join(f"_{b:02x}" for b in ch.encode())
        for ch in member
    )


def member_name(server: str) -> str:
    """The Phoenix member name for an HAProxy server name made by ``server_name``."""
    out = bytearray()
    pos = 0
    for escape in _ESCAPE.finditer(server):
        out += server[pos : escape.start()].encode()
        out.append(int(escape.group(1), 16))
        pos = escape.end()
    out += server[pos:].encode()
    return out.decode("utf-8", errors="replace")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _check_options(config: BalancerConfig) -> str:
    return (
        f"inter {_milliseconds(config.check_interval)}ms"
        f" rise {config.check_rise} fall {config.check_fall}"
    )


def _config_word(value: str, what: str) -> str:
    """``value`` if it is one plain word in HAProxy's config language, else InputError.

    The spec validates names and the check path already; this is the last line of
    defence, so no whitespace, quote, ``#``, ``$`` or backslash can end a line or start
    a directive (an injected ``stats socket ... level admin``) in a written config.
    """
    if not _CONFIG_WORD.fullmatch(value):
        raise errors.InputError(
            f"{what} {value[:80]!r} cannot go into an HAProxy config: use only letters,"
            " digits and ._~/%?=&:@+,;- (no spaces, quotes or line breaks)"
        )
    return value


def render_config(config: BalancerConfig) -> str:
    """The ``haproxy.cfg`` for a pool: a frontend and an empty backend (pure).

    Raises ``errors.InputError`` when a path, host or check path holds anything that
    HAProxy's config parser would read as more than one plain word.
    """
    pool_dir = config.pool_dir.resolve()
    _config_word(str(pool_dir), "the pool directory")
    _config_word(config.listen_host, "the listen host")
    if config.check_path is None:
        check = "    # no check_path: plain TCP connect checks"
    else:
        check = f"    option httpchk GET {_config_word(config.check_path, 'the check path')}"
    return f"""\
# Written by Phoenix (phoenix.providers.local.haproxy) on every start; do not edit.
# Members are dynamic servers added over the admin socket, restored from members.json.
global
    # Relative to the start directory (the pool_dir, {pool_dir}):
    # an absolute path would limit how deep the pool_dir may be.
    stats socket unix@{SOCKET_FILE} mode 600 level admin
    stats timeout 30s
    pidfile {pool_dir / PID_FILE}
    # A taken port must fail the start instead of being shared with its owner.
    noreuseport

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
    # Keep-alive on both sides; every request is load-balanced on its own
    # (no prefer-last-server), so draining works for keep-alive clients too.
    option http-keep-alive
    # A failed connect is retried, each time on another server.
    retries 3
    option redispatch 1

frontend {FRONTEND}
    bind {_host_port(config.listen_host, config.listen_port)}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
{check}
    # Dynamic servers do not inherit this; add_member passes the same options.
    default-server {_check_options(config)}
"""


@dataclass(frozen=True)
class _Desired:
    """One member as members.json records it."""

    address: str
    port: int
    state: MemberState


@dataclass(frozen=True)
class _Server:
    """One server as HAProxy reports it."""

    name: str  # HAProxy's name
    address: str
    port: int
    admin_state: int
    active: int | None  # scur: streams (in-flight requests) on the server
    op_state: int = 2  # srv_op_state: 0 stopped (check failing), 1 starting, 2 running
    check_result: int = 0  # srv_check_result: the last concluded check (_CHECK_FAILED...)

    @property
    def online(self) -> bool:
        """HAProxy's own check lets it take traffic (Octavia's operating_status ONLINE)."""
        return self.op_state == _OP_RUNNING and not self.maint

    @property
    def maint(self) -> bool:
        return bool(self.admin_state & _ADMIN_MAINT)

    @property
    def drain(self) -> bool:
        return bool(self.admin_state & _ADMIN_DRAIN)

    @property
    def ready(self) -> bool:
        return not (self.maint or self.drain)


def _table(text: str, *, sep: str | None) -> list[dict[str, str]]:
    """Rows of a runtime-API table whose header line starts with ``# ``."""
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("# "):
            header = line[2:].split(sep)
        elif header is not None and line.strip():
            rows.append(dict(zip(header, line.split(sep), strict=False)))
    return rows


_OP_RUNNING = 2


def parse_servers(state_text: str, stat_text: str) -> dict[str, _Server]:
    """Servers by HAProxy name from ``show servers state`` and ``show stat`` (pure)."""
    active: dict[str, int | None] = {}
    for row in _table(stat_text, sep=","):
        if row.get("pxname") == BACKEND and row.get("svname") not in ("BACKEND", "FRONTEND"):
            scur = row.get("scur", "")
            active[row.get("svname", "")] = int(scur) if scur.isdigit() else None
    servers: dict[str, _Server] = {}
    for row in _table(state_text, sep=None):
        if row.get("be_name") != BACKEND:
            continue
        name = row["srv_name"]
        servers[name] = _Server(
            name=name,
            address=row["srv_addr"],
            port=int(row["srv_port"]),
            admin_state=int(row["srv_admin_state"]),
            active=active.get(name),
            op_state=int(row.get("srv_op_state", _OP_RUNNING)),
            check_result=int(row.get("srv_check_result", 0)),
        )
    return servers


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
        self.socket_timeout = socket_timeout
        # The open interactive connection of a batch, per thread (see ``_one_connection``).
        self._local = threading.local()
        pool_dir = config.pool_dir.resolve()
        self._cfg_path = pool_dir / CONFIG_FILE
        self._sock_path = pool_dir / SOCKET_FILE
        self._pid_path = pool_dir / PID_FILE
        self._members_path = pool_dir / MEMBERS_FILE

    # --- Balancer -------------------------------------------------------------------

    def url(self) -> str:
        """Where clients send requests, e.g. ``http://127.1.255.254:8080``."""
        return f"http://{_host_port(self.config.listen_host, self.config.listen_port)}"

    def running(self) -> bool:
        """True when this pool's HAProxy process is alive and answers on its socket."""
        pid = self._read_pid()
        return pid is not None and pid_alive(pid) and self._answers()

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
            if self._answers():
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
        servers = self._servers()
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
        address = _validate_member(name, address, port)
        with self._locked():
            desired = self._load()
            want = _Desired(address, port, MemberState.SERVING)
            desired[name] = want
            self._save(desired)
            self._require_running(f"add_member({name!r})")
            server = self._servers().get(server_name(name))
            if server is not None and (server.address, server.port) != (address, port):
                self._delete(name, server)  # it moved: re-create it at its new address
                server = None
            if server is None:
                self._create(name, want)
            elif server.maint:
                self._bring_up(server.name)
            elif server.drain:
                self._command_ok(f"set server {BACKEND}/{server.name} state ready")

    def drain_member(self, name: str) -> None:
        """No new requests; in-flight ones finish. Missing member: ``errors.NotFound``."""
        with self._locked():
            desired = self._load()
            if name not in desired:
                raise errors.NotFound(
                    f"member {name!r} is not in the pool at {self.config.pool_dir}"
                )
            want = _Desired(desired[name].address, desired[name].port, MemberState.DRAINING)
            desired[name] = want
            self._save(desired)
            self._require_running(f"drain_member({name!r})")
            server = self._servers().get(server_name(name))
            if server is None:
                self._create(name, want)
            elif server.ready:
                self._command_ok(f"set server {BACKEND}/{server.name} state drain")

    def remove_member(self, name: str) -> None:
        """Remove; a missing member is not an error.

        The server goes to maintenance (no new requests) and is deleted once its
        in-flight requests finished, waiting up to ``remove_wait``. Still busy after
        that: it stays in maintenance (listed as DRAINING) and ``errors.Transient`` asks
        the caller to retry. With HAProxy not running it is only dropped from
        members.json: a stopped balancer serves nobody and will not restore it.
        """
        with self._locked():
            desired = self._load()
            if name in desired and desired[name].state is MemberState.SERVING:
                # If the delete is interrupted, a restart must not bring it back serving.
                entry = desired[name]
                desired[name] = _Desired(entry.address, entry.port, MemberState.DRAINING)
                self._save(desired)
            if self._answers():
                server = self._servers().get(server_name(name))
                if server is not None:
                    self._delete(name, server)
            if name in desired:
                del desired[name]
                self._save(desired)

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
            # Write ahead, as the single calls do: a member being drained or removed is
            # saved DRAINING first, so a restart in between does not bring it back serving.
            drains: list[tuple[str, _Desired]] = []
            removals: list[str] = []
            for change in ordered:
                entry = desired.get(change.name)
                if change.action is MemberAction.ADD:
                    continue
                if change.action is MemberAction.REMOVE:
                    removals.append(change.name)
                if entry is None:
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
                connection.enter_context(self._one_connection())
            except errors.Transient as exc:
                # Not running: a stopped balancer serves nobody, so removals only leave
                # members.json; ensure_running applies the rest from it.
                for name in removals:
                    desired.pop(name, None)
                if desired != saved:
                    self._save(desired)
                if adds or drains:
                    raise self._not_running("change_members") from exc
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
        servers = self._servers()
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
                self._command_ok(f"set server {BACKEND}/{server.name} state ready")
        going = [servers.get(server_name(name)) for name in (*(n for n, _ in drains), *removals)]
        if fresh and any(server is not None and server.ready for server in going):
            self._await_first_checks(fresh)
        if adds:
            servers = self._servers()
        for name, want in drains:
            server = servers.get(server_name(name))
            if server is None:  # HAProxy lost it: back, but draining
                self._create(name, want)
            elif server.ready:
                self._command_ok(f"set server {BACKEND}/{server.name} state drain")
        present = {name: servers[server_name(name)] for name in removals
                   if server_name(name) in servers}
        return self._delete_all(present)

    def _await_first_checks(self, fresh: Sequence[str]) -> None:
        """Until every one of ``fresh`` passed a check (takes traffic) or failed one, or
        ``add_wait`` passed; a sick new member must not hold the batch for long."""
        deadline = self.clock.now() + timedelta(seconds=self.add_wait)
        while self.clock.now() < deadline:
            servers = self._servers()
            if all(
                server is None or server.online or server.check_result == _CHECK_FAILED
                for server in (servers.get(name) for name in fresh)
            ):
                return
            self.clock.sleep(0.05)

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
        deadline = started + timedelta(seconds=self.start_timeout)
        while not self._answers():
            if self.clock.now() >= deadline:
                self._kill()
                raise errors.Transient(
                    f"haproxy for {self.config.pool_dir} started but its admin socket"
                    f" {self._sock_path} did not answer within {self.start_timeout}s;"
                    f" output: {output_text or '(none)'}"
                )
            self.clock.sleep(0.01)
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
            pid = self._pid_from_socket()
        if pid is not None and self._is_ours(pid):
            self._terminate(pid)
        for path in (self._sock_path, self._pid_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _terminate(self, pid: int) -> None:
        for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = self.clock.now() + timedelta(seconds=grace)
            while pid_alive(pid):
                if self.clock.now() >= deadline:
                    break
                self.clock.sleep(0.01)
            else:
                return
        if pid_alive(pid):
            raise errors.Transient(f"haproxy (pid {pid}) survived SIGKILL; try again")

    def _is_ours(self, pid: int) -> bool:
        """Is ``pid`` alive and this pool's HAProxy (not a process that reused the pid)?"""
        if not pid_alive(pid):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            return False
        except OSError:
            return True  # no /proc: a live pid from our pidfile is the best we know
        return os.fsencode(self._cfg_path) in argv

    def _read_pid(self) -> int | None:
        try:
            text = self._pid_path.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return int(text) if text.isdigit() else None

    def _pid_from_socket(self) -> int | None:
        try:
            info = self._command("show info")
        except errors.Transient:
            return None
        found = re.search(r"^Pid: (\d+)$", info, re.MULTILINE)
        return int(found.group(1)) if found else None

    def _repair_pidfile(self) -> None:
        pid = self._pid_from_socket()
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
        address = _host_port(want.address, want.port)
        # experimental-mode: 2.5 still hides add/del server behind it; harmless later.
        command = (
            f"experimental-mode on; add server {BACKEND}/{server} {address}"
            f" check {_check_options(self.config)}"
        )
        answer = self._command(command)
        if "New server registered" not in answer and "Already exists" not in answer:
            raise errors.Transient(f"haproxy refused {command!r}: {answer.strip()!r}")
        self._command_ok(f"enable health {BACKEND}/{server}")
        if want.state is MemberState.DRAINING:
            self._command_ok(f"set server {BACKEND}/{server} state drain")
        else:
            self._bring_up(server)

    def _bring_up(self, server: str) -> None:
        # Leaving maintenance marks a server UP before any check; via drain (checks run,
        # no traffic) and "health down", it stays out until a check passes.
        self._command_ok(f"set server {BACKEND}/{server} state drain")
        self._command_ok(f"set server {BACKEND}/{server} health down")
        self._command_ok(f"set server {BACKEND}/{server} state ready")

    def _delete(self, name: str, server: _Server) -> None:
        """Maintenance, wait (bounded) for in-flight requests, then ``del server``."""
        busy = self._delete_all({name: server})
        if busy:
            raise errors.Transient(busy[name])

    def _delete_all(self, servers: Mapping[str, _Server]) -> dict[str, str]:
        """Maintenance for all, then ``del server`` each once its in-flight requests
        finished, all within one ``remove_wait``; the members left (why), by name."""
        for server in servers.values():
            if not server.maint:
                self._command_ok(f"set server {BACKEND}/{server.name} state maint")
        pending = dict(servers)
        failed: dict[str, str] = {}
        answers: dict[str, str] = {}
        deadline = self.clock.now() + timedelta(seconds=self.remove_wait)
        while pending:
            current = self._servers()
            for name, server in list(pending.items()):
                now = current.get(server.name)
                if now is None:
                    del pending[name]
                    continue
                pending[name] = now
                if now.active:
                    continue
                command = f"experimental-mode on; del server {BACKEND}/{server.name}"
                answer = self._command(command).strip()
                if "Server deleted" in answer or "No such server" in answer:
                    del pending[name]
                elif "still has connections" in answer:
                    answers[name] = answer
                else:
                    failed[name] = f"haproxy refused {command!r}: {answer!r}"
                    del pending[name]
            if pending and self.clock.now() >= deadline:
                for name, server in pending.items():
                    command = f"del server {BACKEND}/{server.name}"
                    failed[name] = (
                        f"member {name!r} still has {server.active or 0} request(s) in flight"
                        f" after {self.remove_wait}s (last answer to {command!r}:"
                        f" {answers.get(name) or 'not sent'!r}); it is in maintenance and"
                        " takes no new requests; retry remove_member"
                    )
                return failed
            if pending:
                self.clock.sleep(0.05)
        return failed

    def _servers(self) -> dict[str, _Server]:
        state = self._command(f"show servers state {BACKEND}")
        if not state.startswith("1\n"):
            raise errors.Transient(
                f"unexpected answer to 'show servers state {BACKEND}': {state.strip()!r}"
            )
        stat = self._command(f"show stat {BACKEND} 4 -1")
        if not stat.startswith("# "):
            raise errors.Transient(
                f"unexpected answer to 'show stat {BACKEND} 4 -1': {stat.strip()!r}"
            )
        try:
            return parse_servers(state, stat)
        except (KeyError, ValueError) as exc:
            raise errors.Transient(f"could not parse haproxy's server table: {exc}") from exc

    def _require_running(self, what: str) -> None:
        if not self._answers():
            raise self._not_running(what)

    def _not_running(self, what: str) -> errors.Transient:
        return errors.Transient(
            f"{what}: haproxy for {self.config.pool_dir} is not running; the change is"
            " saved in members.json and applied by ensure_running()"
        )

    # --- runtime API ----------------------------------------------------------------

    def _command(self, command: str) -> str:
        """Send one command line to the admin socket and return HAProxy's whole answer:
        on the batch's open connection (``_one_connection``) if there is one, else on a
        connection of its own."""
        session: _Session | None = getattr(self._local, "session", None)
        chunks: list[bytes] = []
        try:
            if session is not None:
                return session.send(command)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.socket_timeout)
                self._connect(sock)
                sock.sendall(command.encode() + b"\n")
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise self._socket_error(command, exc) from exc
        return b"".join(chunks).decode("utf-8", errors="replace")

    def _socket_error(self, command: str, exc: OSError) -> errors.Transient:
        hint = ""
        if isinstance(exc, FileNotFoundError | ConnectionRefusedError) or (
            exc.errno in (errno.ENOENT, errno.ECONNREFUSED)
        ):
            hint = " (is haproxy running? ensure_running() starts it)"
        return errors.Transient(
            f"haproxy admin socket {self._sock_path}: {command!r} failed: {exc}{hint}"
        )

    @contextlib.contextmanager
    def _one_connection(self) -> Iterator[None]:
        """Every ``_command`` inside (in this thread) goes over one interactive connection
        with ``experimental-mode`` on: a batch costs one connect, waits included.
        ``errors.Transient`` when HAProxy does not answer."""
        if getattr(self._local, "session", None) is not None:
            yield
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.socket_timeout)
            self._connect(sock)
            session = _Session(sock)
            session.send("prompt")
            session.send("experimental-mode on")
        except OSError as exc:
            sock.close()
            raise self._socket_error("prompt", exc) from exc
        self._local.session = session
        try:
            yield
        finally:
            self._local.session = None
            sock.close()

    def _connect(self, sock: socket.socket) -> None:
        path = os.fsencode(self._sock_path)
        if len(path) <= MAX_SUN_PATH:
            sock.connect(path)
            return
        # Too long for sun_path: reach it through a short alias of its directory (Linux).
        dir_fd = os.open(self.config.pool_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            sock.connect(f"/proc/self/fd/{dir_fd}/{SOCKET_FILE}")
        finally:
            os.close(dir_fd)

    def _command_ok(self, command: str) -> None:
        """A command that answers nothing on success; any text is HAProxy's error."""
        answer = self._command(command).strip()
        if answer:
            raise errors.Transient(f"haproxy refused {command!r}: {answer!r}")

    def _answers(self) -> bool:
        try:
            return "Pid:" in self._command("show info")
        except errors.Transient:
            return False

    # --- files ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise changes to this pool across threads and processes."""
        self.config.pool_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.config.pool_dir / LOCK_FILE, "a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

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


class _Session:
    """One runtime-API connection in interactive mode (``prompt``): each command line is
    answered by one ``\\n> `` prompt per ``;``-separated command, and the connection stays
    open for the next line."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, command: str) -> str:
        """The answer to ``command``, as a one-shot connection would have returned it."""
        self._sock.sendall(command.encode() + b"\n")
        prompts = command.count(";") + 1
        buffer = b""
        while buffer.count(_PROMPT) < prompts:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("haproxy closed the runtime-API connection")
            buffer += chunk
        return buffer.replace(_PROMPT, b"\n").decode("utf-8", errors="replace")


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
