"""One pool's HAProxy runtime API: the admin socket, its commands and its server table.

Every failure talking to HAProxy becomes ``errors.Transient`` naming the command and
HAProxy's answer, so the engine retries instead of crashing. A command goes over a
connection of its own, unless a batch opened one interactive connection for all of them
(:meth:`HaproxyRuntime.one_connection`).

HAProxy behaviours this module works around (measured on 2.6.12):

* HAProxy refuses an absolute socket path over 97 bytes; the socket is configured
  relative to the pool_dir (HAProxy's start directory), and reached through
  ``/proc/self/fd`` when its absolute path is too long for ``sun_path``.
* ``experimental-mode on`` (needed for ``add/del server`` on 2.5 and 2.6) holds for one
  connection only: a one-shot line sends it before the command, separated by ``;``.
* A batch keeps one connection in interactive mode (``prompt``): then every command, each
  ``;``-separated one too, answers with its text followed by ``\n> ``, and the connection
  stays open for the next line (and the waits between).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from phoenix import errors
from phoenix.providers.local.haproxy_config import BACKEND, SOCKET_FILE

__all__ = ["CHECK_FAILED", "HaproxyRuntime", "Server", "connect_admin_socket", "parse_servers"]

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
CHECK_FAILED = 2
# What interactive mode (``prompt``) prints after every command's answer.
_PROMPT = b"\n> "


@dataclass(frozen=True)
class Server:
    """One server as HAProxy reports it."""

    name: str  # HAProxy's name
    address: str
    port: int
    admin_state: int
    active: int | None  # scur: streams (in-flight requests) on the server
    op_state: int = 2  # srv_op_state: 0 stopped (check failing), 1 starting, 2 running
    check_result: int = 0  # srv_check_result: the last concluded check (CHECK_FAILED...)

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


def parse_servers(state_text: str, stat_text: str) -> dict[str, Server]:
    """Servers by HAProxy name from ``show servers state`` and ``show stat`` (pure)."""
    active: dict[str, int | None] = {}
    for row in _table(stat_text, sep=","):
        if row.get("pxname") == BACKEND and row.get("svname") not in ("BACKEND", "FRONTEND"):
            scur = row.get("scur", "")
            active[row.get("svname", "")] = int(scur) if scur.isdigit() else None
    servers: dict[str, Server] = {}
    for row in _table(state_text, sep=None):
        if row.get("be_name") != BACKEND:
            continue
        name = row["srv_name"]
        servers[name] = Server(
            name=name,
            address=row["srv_addr"],
            port=int(row["srv_port"]),
            admin_state=int(row["srv_admin_state"]),
            active=active.get(name),
            op_state=int(row.get("srv_op_state", _OP_RUNNING)),
            check_result=int(row.get("srv_check_result", 0)),
        )
    return servers


def connect_admin_socket(sock: socket.socket, path: Path) -> None:
    """Connect ``sock`` to the admin socket at ``path``, however deep its directory."""
    encoded = os.fsencode(path)
    if len(encoded) <= MAX_SUN_PATH:
        sock.connect(encoded)
        return
    # Too long for sun_path: reach it through a short alias of its directory (Linux).
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{dir_fd}/{path.name}")
    finally:
        os.close(dir_fd)


class HaproxyRuntime:
    """The runtime API of the HAProxy whose admin socket is ``<pool_dir>/admin.sock``.

    ``timeout`` bounds each socket operation; ``connect`` opens each connection (by
    default :func:`connect_admin_socket`), so its owner sees every one.
    """

    def __init__(
        self,
        pool_dir: Path,
        *,
        timeout: float,
        connect: Callable[[socket.socket], None] | None = None,
    ) -> None:
        self.sock_path = pool_dir.resolve() / SOCKET_FILE
        self.timeout = timeout
        self._connect = connect or (lambda sock: connect_admin_socket(sock, self.sock_path))
        # The open interactive connection of a batch, per thread (see ``one_connection``).
        self._local = threading.local()

    def command(self, command: str) -> str:
        """Send one command line to the admin socket and return HAProxy's whole answer:
        on the batch's open connection (``one_connection``) if there is one, else on a
        connection of its own."""
        session: _Session | None = getattr(self._local, "session", None)
        chunks: list[bytes] = []
        try:
            if session is not None:
                return session.send(command)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                self._connect(sock)
                sock.sendall(command.encode() + b"\n")
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise self._socket_error(command, exc) from exc
        return b"".join(chunks).decode("utf-8", errors="replace")

    def command_ok(self, command: str) -> None:
        """A command that answers nothing on success; any text is HAProxy's error."""
        answer = self.command(command).strip()
        if answer:
            raise errors.Transient(f"haproxy refused {command!r}: {answer!r}")

    def answers(self) -> bool:
        """Whether HAProxy answers on its admin socket."""
        try:
            return "Pid:" in self.command("show info")
        except errors.Transient:
            return False

    def pid(self) -> int | None:
        """HAProxy's pid as it reports it, or None when it does not answer."""
        try:
            info = self.command("show info")
        except errors.Transient:
            return None
        found = re.search(r"^Pid: (\d+)$", info, re.MULTILINE)
        return int(found.group(1)) if found else None

    def servers(self) -> dict[str, Server]:
        """The backend's servers by HAProxy name."""
        state = self.command(f"show servers state {BACKEND}")
        if not state.startswith("1\n"):
            raise errors.Transient(
                f"unexpected answer to 'show servers state {BACKEND}': {state.strip()!r}"
            )
        stat = self.command(f"show stat {BACKEND} 4 -1")
        if not stat.startswith("# "):
            raise errors.Transient(
                f"unexpected answer to 'show stat {BACKEND} 4 -1': {stat.strip()!r}"
            )
        try:
            return parse_servers(state, stat)
        except (KeyError, ValueError) as exc:
            raise errors.Transient(f"could not parse haproxy's server table: {exc}") from exc

    @contextlib.contextmanager
    def one_connection(self) -> Iterator[None]:
        """Every ``command`` inside (in this thread) goes over one interactive connection
        with ``experimental-mode`` on: a batch costs one connect, waits included.
        ``errors.Transient`` when HAProxy does not answer."""
        if getattr(self._local, "session", None) is not None:
            yield
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
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

    def _socket_error(self, command: str, exc: OSError) -> errors.Transient:
        hint = ""
        if isinstance(exc, FileNotFoundError | ConnectionRefusedError) or (
            exc.errno in (errno.ENOENT, errno.ECONNREFUSED)
        ):
            hint = " (is haproxy running? ensure_running() starts it)"
        return errors.Transient(
            f"haproxy admin socket {self.sock_path}: {command!r} failed: {exc}{hint}"
        )


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
