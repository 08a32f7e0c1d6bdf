"""The built-in balancer's process: one asyncio event loop per pool (see ``proxy``).

Run as ``python -m phoenix.providers.local.proxy <pool_dir>`` (``proxy`` runs this
module's :func:`main`, so the command line of a running balancer is what it always was).
It proxies each HTTP request -- not each TCP connection, so keep-alive clients are
re-balanced and draining works -- round robin over the members that are SERVING and pass
the balancer's own health check, and obeys the control socket (``proxy_control``: one JSON
object per line, ops ``add``/``drain``/``remove``/``batch``/``list``/``ping``; ``batch``
applies many changes with one members.json write).

Zero failed requests while members come and go is the point of it, hence:

* a member is picked and counted in flight in one step of the event loop, so once a
  ``drain`` or ``remove`` is answered no new request goes to it, and
  ``active_connections`` counts every request that may still be on it;
* every request opens a fresh connection to its member (a loopback connect is cheap, and
  no pooled connection can go stale under us). A failed connect has sent nothing, so the
  request moves to the next member whatever its method; an idempotent request without a
  body is also replayed when the member closed the connection before answering a single
  byte (as nginx does);
* ``add`` answers once the member's first check has passed (or failed), so a healthy new
  member takes traffic by the time ``add_member`` returns and the old ones can be drained;
* a restarted process checks its restored members before it starts listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

from phoenix import errors
from phoenix.files import atomic_write
from phoenix.model import MemberAction, MemberChange, MemberState
from phoenix.providers.local.balancer import BalancerConfig, batch_order, read_config
from phoenix.providers.local.proxy_control import SOCKET_FILE, address_and_port, parse_changes
from phoenix.providers.local.proxy_http import (
    IDEMPOTENT,
    PEER_ERRORS,
    Peer,
    end_to_end_headers,
    host_port,
    parse_status_line,
    request_has_body,
    upstream_request_headers,
)

__all__ = ["FATAL", "MODULE", "PID_FILE", "ProxyServer", "main"]

# The module a balancer process is started with (``proxy``, which runs ``main``): the
# client finds its processes by it in their command lines.
MODULE = "phoenix.providers.local.proxy"
MEMBERS_FILE = "members.json"
PID_FILE = "proxy.pid"

CONNECT_TIMEOUT = 2.0  # proxy -> member TCP connect
UPSTREAM_TIMEOUT = 300.0  # longest silence from a member while it owes us a response
CLIENT_IDLE_TIMEOUT = 60.0  # keep-alive: longest wait for a client's next request
CLIENT_READ_TIMEOUT = 60.0  # longest silence from a client in the middle of a request
SHUTDOWN_GRACE = 10.0  # SIGTERM: how long in-flight requests may take to finish
ADD_WAIT = 3.0  # an add answers after the member's first check, or after this long
MAX_HEAD_BYTES = 65536
LISTEN_BACKLOG = 1024

FATAL = "fatal: "  # prefix of the log line that says why the process could not start

log = logging.getLogger(MODULE)


@dataclass(eq=False)
class _Upstream:
    """One member inside the process; identity matters (a re-added member is a new one)."""

    name: str
    address: str
    port: int
    state: MemberState = MemberState.SERVING
    up: bool = False  # by the balancer's own check, after rise/fall
    in_flight: int = 0
    passes: int = 0
    fails: int = 0
    last_failure: str = ""
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # up, or a check failed
    checker: asyncio.Task[None] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "state": self.state.value,
            "active_connections": self.in_flight,
            "up": self.up,
        }

    def desired(self) -> dict[str, Any]:
        """What members.json keeps: the desired state, nothing measured."""
        return {"name": self.name, "address": self.address, "port": self.port,
                "state": self.state.value}


class _UpstreamFailed(Exception):
    """The member failed a request. ``replayable``: it sent back nothing and the request may
    safely go to another member."""

    def __init__(self, reason: str, *, replayable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.replayable = replayable



@dataclass(eq=False)
class _ClientConnection:
    task: asyncio.Task[Any] | None
    idle: bool = True  # waiting for the first byte of a request: safe to close at shutdown


class ProxyServer:
    """The balancer process's state and event loop; ``run`` returns the exit code."""

    def __init__(self, config: BalancerConfig) -> None:
        self.config = config
        self.members: dict[str, _Upstream] = {}
        self._next = 0  # round robin position in ``members``
        self._connections: set[_ClientConnection] = set()
        self._stopping = False
        self._stop = asyncio.Event()
        self._default_host = host_port(config.listen_host, config.listen_port).encode()
        self._check_timeout = min(max(config.check_interval, 1.0), 5.0)
        self.saves = 0  # members.json writes (reported by ``ping``)

    # -- membership ------------------------------------------------------------------

    def _restore(self) -> None:
        path = self.config.pool_dir / MEMBERS_FILE
        if not path.exists():
            return
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            # {name: {address, port, state}} (shared with HaproxyBalancer, so a pool can
            # switch balancer kind); a list of entries is the older form.
            entries = (
                [{"name": name, **fields} for name, fields in loaded.items()]
                if isinstance(loaded, dict)
                else loaded
            )
            for entry in entries:
                member = _Upstream(
                    name=str(entry["name"]),
                    address=str(entry["address"]),
                    port=int(entry["port"]),
                    state=MemberState(entry.get("state", MemberState.SERVING.value)),
                )
                self.members[member.name] = member
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.InputError(
                f"{path}: not a valid members file ({exc}); fix it, or delete it and add"
                " the members again"
            ) from exc
        log.info("restored %d member(s) from %s", len(self.members), path)

    def _save(self) -> None:
        members = {
            member.name: {k: v for k, v in member.desired().items() if k != "name"}
            for member in self.members.values()
        }
        atomic_write(self.config.pool_dir / MEMBERS_FILE, json.dumps(members, indent=2) + "\n",
                     parents=True)
        self.saves += 1

    def _start_checks(self, member: _Upstream) -> None:
        member.checker = asyncio.create_task(self._check_loop(member), name=f"check {member.name}")

    def _forget(self, member: _Upstream) -> None:
        """Out of selection at once; requests already on it carry on to the end."""
        if member.checker is not None:
            member.checker.cancel()
        member.up = False

    async def add(self, name: str, address: str, port: int) -> _Upstream:
        member = self._put(name, address, port)
        self._save()
        await self._settle([member])
        return member

    def drain(self, name: str) -> bool:
        member = self.members.get(name)
        if member is None:
            return False
        if self._set_draining(member):
            self._save()
        return True

    def remove(self, name: str) -> None:
        if self._pop(name):
            self._save()

    async def batch(self, changes: Sequence[MemberChange]) -> None:
        """Adds, then (once the new members' first checks concluded, so the pool keeps a
        member up) drains and removals, then one members.json write if anything changed;
        draining a missing member is ignored."""
        ordered = batch_order(changes)
        before = [member.desired() for member in self.members.values()]
        added = [self._put(c.name, c.address, c.port)
                 for c in ordered if c.action is MemberAction.ADD]
        await self._settle(added)
        for change in ordered:
            member = self.members.get(change.name)
            if change.action is MemberAction.DRAIN and member is not None:
                self._set_draining(member)
            elif change.action is MemberAction.REMOVE:
                self._pop(change.name)
        if [member.desired() for member in self.members.values()] != before:
            self._save()

    def _put(self, name: str, address: str, port: int) -> _Upstream:
        """Add a member, or make it SERVING again (not saved)."""
        member = self.members.get(name)
        if member is not None and (member.address, member.port) != (address, port):
            self._forget(member)
            del self.members[name]
            member = None
        if member is None:
            member = _Upstream(name=name, address=address, port=port)
            self.members[name] = member
            self._start_checks(member)
            log.info("member %s added at %s", name, host_port(address, port))
        elif member.state is not MemberState.SERVING:
            member.state = MemberState.SERVING
            log.info("member %s serving again", name)
        return member

    @staticmethod
    async def _settle(members: Sequence[_Upstream]) -> None:
        """Until each member's first check passed or failed, at most ADD_WAIT."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ADD_WAIT):
                await asyncio.gather(*(member.settled.wait() for member in members))

    def _set_draining(self, member: _Upstream) -> bool:
        """Draining (not saved); whether that changed anything."""
        if member.state is MemberState.DRAINING:
            return False
        member.state = MemberState.DRAINING
        log.info("member %s draining (%d in flight)", member.name, member.in_flight)
        return True

    def _pop(self, name: str) -> bool:
        """Out of the pool at once (not saved); whether it was in it."""
        member = self.members.pop(name, None)
        if member is None:
            return False
        self._forget(member)
        log.info("member %s removed (%d in flight)", name, member.in_flight)
        return True

    def pick(self, exclude: set[_Upstream]) -> _Upstream | None:
        """The next SERVING, up member after the last one picked, round robin."""
        members = list(self.members.values())
        for offset in range(len(members)):
            position = (self._next + offset) % len(members)
            member = members[position]
            if member.state is MemberState.SERVING and member.up and member not in exclude:
                self._next = position + 1
                return member
        return None

    # -- health checks ---------------------------------------------------------------

    async def _check_loop(self, member: _Upstream) -> None:
        while True:
            try:
                failure = await self._probe(member)
            except Exception as exc:  # a check must never die and leave the member stuck
                log.exception("member %s: check crashed", member.name)
                failure = f"check crashed: {exc!r}"
            self._record(member, failure)
            await asyncio.sleep(self.config.check_interval)

    async def _probe(self, member: _Upstream) -> str | None:
        """None when the member passes its check; otherwise why it failed."""
        path = self.config.check_path
        try:
            async with asyncio.timeout(self._check_timeout):
                reader, writer = await asyncio.open_connection(member.address, member.port)
                try:
                    if path is None:
                        return None
                    host = host_port(member.address, member.port)
                    writer.write(
                        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                        "User-Agent: phoenix-proxy-check\r\nConnection: close\r\n\r\n".encode()
                    )
                    await writer.drain()
                    line = await reader.readline()
                finally:
                    writer.close()
        except TimeoutError:
            return f"no answer within {self._check_timeout:g}s"
        except OSError as exc:
            return exc.strerror or type(exc).__name__
        except ValueError:  # readline: a status line longer than the stream limit
            return f"GET {path} answered something that is not HTTP"
        status = parse_status_line(line)
        if status is not None and 200 <= status < 400:
            return None
        return f"GET {path} answered {line.strip()[:80]!r}"

    def _record(self, member: _Upstream, failure: str | None) -> None:
        if failure is None:
            member.fails = 0
            member.passes += 1
            if not member.up and member.passes >= self.config.check_rise:
                member.up = True
                log.info("member %s up", member.name)
            if member.up:
                member.settled.set()
            return
        member.passes = 0
        member.fails += 1
        if member.up and member.fails >= self.config.check_fall:
            member.up = False
            log.warning("member %s down: %s", member.name, failure)
        elif failure != member.last_failure and not member.up:
            log.info("member %s check failed: %s", member.name, failure)
        member.last_failure = failure
        member.settled.set()

    def _mark_down(self, member: _Upstream, reason: str) -> None:
        """A failed connect is as good as failed checks: stop sending until checks pass."""
        member.passes = 0
        member.fails = max(member.fails, self.config.check_fall)
        if member.up:
            member.up = False
            log.warning("member %s down: %s", member.name, reason)

    # -- proxying --------------------------------------------------------------------

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                            ) -> None:
        state = _ClientConnection(asyncio.current_task())
        self._connections.add(state)
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        client = Peer(h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES),
                       reader, writer)

        def busy() -> None:
            state.idle = False

        try:
            while not self._stopping:
                state.idle = client.conn.trailing_data[0] == b""
                event = await client.next_event(CLIENT_IDLE_TIMEOUT, on_data=busy)
                state.idle = False
                if not isinstance(event, h11.Request):
                    break
                reusable = await self._proxy(client, event, client_ip)
                if not reusable or self._stopping:
                    break
                if client.conn.our_state is not h11.DONE or client.conn.their_state is not h11.DONE:
                    break
                client.conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(*PEER_ERRORS):
                await self._respond_error(client, b"GET", exc.error_status_hint, str(exc))
        except (OSError, TimeoutError):
            pass  # the client went away or stalled; nothing more to tell it
        except h11.LocalProtocolError as exc:
            log.warning("cannot relay to %s: %s", client_ip, exc)
        except Exception:
            log.exception("unexpected error serving %s", client_ip)
        finally:
            self._connections.discard(state)
            writer.close()

    async def _proxy(self, client: Peer, request: h11.Request, client_ip: str) -> bool:
        """Send one request to a member and its response back; whether the client connection
        may carry another request."""
        headers = upstream_request_headers(request.headers, client_ip, self._default_host)
        replayable = request.method in IDEMPOTENT and not request_has_body(request.headers)
        tried: set[_Upstream] = set()
        while True:
            chosen = await self._connect(tried)
            if chosen is None:
                if tried:
                    detail = f"no member could be reached (tried {len(tried)})"
                    return await self._respond_error(client, request.method, 502, detail)
                return await self._respond_error(
                    client, request.method, 503, "no healthy member in the pool"
                )
            member, upstream = chosen
            try:
                return await self._exchange(client, request, headers, member, upstream,
                                            replayable)
            except _UpstreamFailed as exc:
                upstream.abort()
                if exc.replayable:
                    tried.add(member)
                    self._mark_down(member, f"closed before answering: {exc.reason}")
                    continue
                log.warning("member %s failed a request: %s", member.name, exc.reason)
                return await self._respond_error(client, request.method, 502,
                                                 f"member {member.name} failed")
            finally:
                member.in_flight -= 1
                upstream.writer.close()

    async def _connect(self, tried: set[_Upstream]) -> tuple[_Upstream, Peer] | None:
        """A connection to the next member that accepts one; failed members join ``tried``."""
        while (member := self.pick(tried)) is not None:
            member.in_flight += 1  # in the same loop step as the pick: drain sees it
            connected = False
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    reader, writer = await asyncio.open_connection(member.address, member.port)
                connected = True
                return member, Peer(h11.Connection(h11.CLIENT), reader, writer)
            except (OSError, TimeoutError) as exc:
                tried.add(member)
                reason = "connect timed out" if isinstance(exc, TimeoutError) else (
                    f"connect failed: {exc.strerror or type(exc).__name__}")
                self._mark_down(member, reason)
            finally:
                if not connected:
                    member.in_flight -= 1
        return None

    async def _exchange(
        self,
        client: Peer,
        request: h11.Request,
        headers: list[tuple[bytes, bytes]],
        member: _Upstream,
        upstream: Peer,
        replayable: bool,
    ) -> bool:
        def failed(exc: BaseException) -> _UpstreamFailed:
            reason = str(exc) or type(exc).__name__
            return _UpstreamFailed(reason, replayable=replayable and not upstream.received)

        try:
            await upstream.send(
                h11.Request(method=request.method, target=request.target, headers=headers)
            )
        except PEER_ERRORS as exc:
            raise failed(exc) from exc
        while True:  # the request body, if any, as it arrives
            if client.conn.their_state is h11.DONE:  # a replay: its empty body is read
                outgoing: h11.Event = h11.EndOfMessage()
            else:
                if client.conn.they_are_waiting_for_100_continue:
                    await client.send(h11.InformationalResponse(status_code=100, headers=[]))
                event = await client.next_event(CLIENT_READ_TIMEOUT)
                if isinstance(event, h11.Data):
                    outgoing = h11.Data(data=event.data)
                elif isinstance(event, h11.EndOfMessage):
                    outgoing = h11.EndOfMessage()
                else:
                    return False
            try:
                await upstream.send(outgoing)
            except PEER_ERRORS as exc:
                raise failed(exc) from exc
            if isinstance(outgoing, h11.EndOfMessage):
                break
        try:
            response = await self._response_head(upstream)
        except PEER_ERRORS as exc:
            raise failed(exc) from exc
        response_headers = end_to_end_headers(response.headers)
        if self._stopping:
            response_headers.append((b"connection", b"close"))
        await client.send(
            h11.Response(status_code=response.status_code, headers=response_headers,
                         reason=response.reason)
        )
        while True:  # the response body, streamed; a failure now can only cut it short
            try:
                event = await upstream.next_event(UPSTREAM_TIMEOUT)
            except PEER_ERRORS as exc:
                log.warning("member %s cut a response short: %s", member.name,
                            str(exc) or type(exc).__name__)
                return False
            if isinstance(event, h11.Data):
                await client.send(h11.Data(data=event.data))
            elif isinstance(event, h11.EndOfMessage):
                await client.send(h11.EndOfMessage())
                return True
            else:
                return False

    @staticmethod
    async def _response_head(upstream: Peer) -> h11.Response:
        """The member's final response head; 1xx are dropped (the proxy answers Expect)."""
        while True:
            event = await upstream.next_event(UPSTREAM_TIMEOUT)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise h11.RemoteProtocolError("closed without a response")

    async def _respond_error(self, client: Peer, method: bytes, status: int, detail: str
                             ) -> bool:
        """A short plain-text error; whether the connection may carry another request."""
        if client.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False
        body = f"{status}: {detail}\n".encode()
        close = self._stopping or client.conn.their_state is not h11.DONE
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        if close:
            headers.append((b"connection", b"close"))
        await client.send(h11.Response(status_code=status, headers=headers))
        if method != b"HEAD":
            await client.send(h11.Data(data=body))
        await client.send(h11.EndOfMessage())
        return not close

    # -- control socket --------------------------------------------------------------

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                             ) -> None:
        try:
            while line := await reader.readline():
                reply = await self.control(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (OSError, ValueError):
            pass  # the client went away, or sent a line longer than the stream limit
        finally:
            writer.close()

    async def control(self, line: bytes) -> dict[str, Any]:
        """Answer one control request."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            op = request.get("op")
            if op == "ping":
                return {"ok": True, "pid": os.getpid(), "saves": self.saves,
                        "listen": host_port(self.config.listen_host, self.config.listen_port)}
            if op == "list":
                return {"ok": True, "members": [m.to_json() for m in self.members.values()]}
            if op == "batch":
                await self.batch(parse_changes(request.get("changes")))
                return {"ok": True}
            name = request.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError("'name' must be a non-empty string")
            if op == "add":
                address, port = address_and_port(request)
                member = await self.add(name, address, port)
                return {"ok": True, "member": member.to_json()}
            if op == "drain":
                if not self.drain(name):
                    return {"ok": False, "error": "not_found",
                            "message": f"no member {name!r} in this pool"}
                return {"ok": True}
            if op == "remove":
                self.remove(name)
                return {"ok": True}
            raise ValueError(f"unknown op {op!r}")
        except ValueError as exc:
            return {"ok": False, "error": "bad_request", "message": str(exc)}
        except OSError as exc:
            log.error("control request failed: %s", exc)
            return {"ok": False, "error": "internal", "message": str(exc)}

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> int:
        """Restore, check, listen, serve until SIGTERM/SIGINT, shut down gracefully."""
        self._restore()
        for member in self.members.values():
            self._start_checks(member)
        # So a restarted balancer serves from its first request.
        await self._settle(list(self.members.values()))
        where = host_port(self.config.listen_host, self.config.listen_port)
        try:
            server = await asyncio.start_server(
                self._serve_client, self.config.listen_host, self.config.listen_port,
                backlog=LISTEN_BACKLOG,
            )
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                why = {errno.EADDRINUSE: "the address is already in use by another process",
                       errno.EADDRNOTAVAIL: "the address is not on this machine",
                       errno.EACCES: "permission denied"}[exc.errno]
                log.error("%scannot listen on %s: %s; pick another listen_host/listen_port"
                          " or stop what is using it", FATAL, where, why)
                return int(errors.ExitCode.BAD_INPUT)
            raise
        # Bound relative to pool_dir (the cwd), so a deep pool_dir fits in sun_path.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET_FILE)
        control = await asyncio.start_unix_server(self._serve_control, path=SOCKET_FILE)
        os.chmod(SOCKET_FILE, 0o600)
        atomic_write(self.config.pool_dir / PID_FILE, f"{os.getpid()}\n", parents=True)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        log.info("listening on %s with %d member(s)", where, len(self.members))
        await self._stop.wait()
        await self._shutdown([server, control])
        return 0

    async def _shutdown(self, servers: Sequence[asyncio.Server]) -> None:
        log.info("stopping: no new connections; waiting up to %gs for in-flight requests",
                 SHUTDOWN_GRACE)
        self._stopping = True
        for server in servers:
            server.close()
        for member in self.members.values():
            if member.checker is not None:
                member.checker.cancel()
        for connection in list(self._connections):
            if connection.idle and connection.task is not None:
                connection.task.cancel()
        tasks = [c.task for c in self._connections if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("cut %d request(s) still in flight after %gs", len(pending),
                            SHUTDOWN_GRACE)
                await asyncio.wait(pending, timeout=1.0)
        pid_path = self.config.pool_dir / PID_FILE
        with contextlib.suppress(OSError, ValueError):
            if int(pid_path.read_text().strip()) == os.getpid():
                pid_path.unlink()
                os.unlink(SOCKET_FILE)
        log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m phoenix.providers.local.proxy <pool_dir>``: run one pool's balancer."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format="%(asctime)s %(levelname)s proxy[%(process)d] %(message)s",
    )
    if len(args) != 1:
        log.error("%susage: python -m %s <pool_dir>", FATAL, MODULE)
        return int(errors.ExitCode.BAD_INPUT)
    os.umask(0o077)
    pool_dir = Path(args[0]).resolve()
    try:
        os.chdir(pool_dir)
        config = read_config(pool_dir)
        return asyncio.run(ProxyServer(config).run())
    except errors.InputError as exc:
        log.error("%s%s", FATAL, exc)
        return int(errors.ExitCode.BAD_INPUT)
    except OSError as exc:
        log.error("%s%s", FATAL, exc)
        return 1

