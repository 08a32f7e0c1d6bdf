"""The built-in load balancer: a zero-install HTTP/1.1 reverse proxy for the local provider.

Why it exists: the local provider needs a real load balancer so that a deploy moves real
traffic, but HAProxy is not always installed. This module holds both halves of one:

* the **process** (``python -m phoenix.providers.local.proxy <pool_dir>``): one asyncio
  event loop per pool that proxies each HTTP request -- not each TCP connection, so
  keep-alive clients are re-balanced and draining works -- round robin over the members
  that are SERVING and pass the balancer's own health check, and obeys a control socket
  that speaks one JSON object per line (ops ``add``/``drain``/``remove``/``batch``/
  ``list``/``ping``; ``batch`` applies many changes with one members.json write);
* the **client**, :class:`BuiltinBalancer`, the ``Balancer`` the local provider uses.
  Its ``ensure_running`` also starts the pool's supervisor (``supervisor.py``), which
  restarts a process that died; its ``list_members`` is a read and never starts one.

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

HTTP parsing and framing (Content-Length, chunked, until-close, HEAD, 1xx/204/304,
pipelining) is h11's; this module only decides where each request goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

from phoenix import errors
from phoenix.model import Member, MemberAction, MemberChange, MemberState
from phoenix.processes import python_child_env
from phoenix.providers.local import supervisor as supervision
from phoenix.providers.local.balancer import BalancerConfig, batch_order, read_config
from phoenix.providers.local.store import atomic_write

__all__ = ["BuiltinBalancer", "main"]

CONFIG_FILE = "config.json"
MEMBERS_FILE = "members.json"
PID_FILE = "proxy.pid"
SOCKET_FILE = "control.sock"
LOG_FILE = "proxy.log"
LOCK_FILE = "proxy.lock"
MODULE = "phoenix.providers.local.proxy"

# Client side (BuiltinBalancer).
CONTROL_TIMEOUT = 5.0  # one control request, including an add's first check
PING_TIMEOUT = 1.0
START_TIMEOUT = 5.0  # ensure_running: until the new process answers a ping
STOP_TIMEOUT = 15.0  # stop: SIGTERM, then SIGKILL (longer than SHUTDOWN_GRACE)
# Process side.
CONNECT_TIMEOUT = 2.0  # proxy -> member TCP connect
UPSTREAM_TIMEOUT = 300.0  # longest silence from a member while it owes us a response
CLIENT_IDLE_TIMEOUT = 60.0  # keep-alive: longest wait for a client's next request
CLIENT_READ_TIMEOUT = 60.0  # longest silence from a client in the middle of a request
SHUTDOWN_GRACE = 10.0  # SIGTERM: how long in-flight requests may take to finish
ADD_WAIT = 3.0  # an add answers after the member's first check, or after this long
READ_CHUNK = 65536
MAX_HEAD_BYTES = 65536
LISTEN_BACKLOG = 1024
UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux; longer paths go through /proc

FATAL = "fatal: "  # prefix of the log line that says why the process could not start

# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business on each side. The
# framing headers stay: h11 re-frames bodies and needs them to know a request has one.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
_NEVER_DROPPED = frozenset({b"content-length", b"transfer-encoding", b"host"})
# Safe to replay when the member closed without answering (RFC 9110 9.2.2).
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

log = logging.getLogger(MODULE)


# --- pure helpers ------------------------------------------------------------------------


def end_to_end_headers(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` without hop-by-hop ones, including those named in ``Connection``."""
    headers = list(headers)
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    drop = _HOP_BY_HOP | (named - _NEVER_DROPPED)
    return [(name, value) for name, value in headers if name.lower() not in drop]


def upstream_request_headers(
    headers: Iterable[tuple[bytes, bytes]], client_ip: str, default_host: bytes
) -> list[tuple[bytes, bytes]]:
    """The headers a member sees: end to end ones, X-Forwarded-For, one request per connection.

    ``Expect`` is answered by the proxy itself (it sends ``100 Continue`` when it starts
    reading the body), so the member never sees it.
    """
    kept = [
        (name, value)
        for name, value in end_to_end_headers(headers)
        if name.lower() not in (b"expect", b"x-forwarded-for")
    ]
    forwarded = [value for name, value in headers if name.lower() == b"x-forwarded-for"]
    forwarded.append(client_ip.encode())
    kept.append((b"x-forwarded-for", b", ".join(forwarded)))
    if not any(name.lower() == b"host" for name, _ in kept):
        kept.append((b"host", default_host))
    kept.append((b"connection", b"close"))
    return kept


def request_has_body(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request's framing headers announce a body (h11 has validated them)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding" or (lowered == b"content-length" and int(value)):
            return True
    return False


def parse_status_line(line: bytes) -> int | None:
    """The status code in ``HTTP/1.1 200 OK``, or None when it is not a status line."""
    parts = line.split(maxsplit=2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- the process -------------------------------------------------------------------------


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


_PEER_ERRORS = (OSError, TimeoutError, h11.ProtocolError)


class _Peer:
    """One side of a proxied exchange: an h11 state machine over an asyncio stream."""

    def __init__(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self.received = False  # any byte from the peer in this exchange

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self, timeout: float, on_data: Callable[[], None] | None = None
                         ) -> h11.Event:
        while True:
            event = self.conn.next_event()
            if isinstance(event, h11.Event):
                return event
            if event is h11.PAUSED:
                raise h11.LocalProtocolError("read past the end of a message")
            async with asyncio.timeout(timeout):
                data = await self.reader.read(READ_CHUNK)
            if data:
                self.received = True
                if on_data is not None:
                    on_data()
            self.conn.receive_data(data)

    def abort(self) -> None:
        self.writer.transport.abort()


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
        self._default_host = _host_port(config.listen_host, config.listen_port).encode()
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
        atomic_write(self.config.pool_dir / MEMBERS_FILE, json.dumps(members, indent=2) + "\n")
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
            log.info("member %s added at %s", name, _host_port(address, port))
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
                    host = _host_port(member.address, member.port)
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
        client = _Peer(h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES),
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
            with contextlib.suppress(*_PEER_ERRORS):
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

    async def _proxy(self, client: _Peer, request: h11.Request, client_ip: str) -> bool:
        """Send one request to a member and its response back; whether the client connection
        may carry another request."""
        headers = upstream_request_headers(request.headers, client_ip, self._default_host)
        replayable = request.method in _IDEMPOTENT and not request_has_body(request.headers)
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

    async def _connect(self, tried: set[_Upstream]) -> tuple[_Upstream, _Peer] | None:
        """A connection to the next member that accepts one; failed members join ``tried``."""
        while (member := self.pick(tried)) is not None:
            member.in_flight += 1  # in the same loop step as the pick: drain sees it
            connected = False
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    reader, writer = await asyncio.open_connection(member.address, member.port)
                connected = True
                return member, _Peer(h11.Connection(h11.CLIENT), reader, writer)
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
        client: _Peer,
        request: h11.Request,
        headers: list[tuple[bytes, bytes]],
        member: _Upstream,
        upstream: _Peer,
        replayable: bool,
    ) -> bool:
        def failed(exc: BaseException) -> _UpstreamFailed:
            reason = str(exc) or type(exc).__name__
            return _UpstreamFailed(reason, replayable=replayable and not upstream.received)

        try:
            await upstream.send(
                h11.Request(method=request.method, target=request.target, headers=headers)
            )
        except _PEER_ERRORS as exc:
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
            except _PEER_ERRORS as exc:
                raise failed(exc) from exc
            if isinstance(outgoing, h11.EndOfMessage):
                break
        try:
            response = await self._response_head(upstream)
        except _PEER_ERRORS as exc:
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
            except _PEER_ERRORS as exc:
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
    async def _response_head(upstream: _Peer) -> h11.Response:
        """The member's final response head; 1xx are dropped (the proxy answers Expect)."""
        while True:
            event = await upstream.next_event(UPSTREAM_TIMEOUT)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise h11.RemoteProtocolError("closed without a response")

    async def _respond_error(self, client: _Peer, method: bytes, status: int, detail: str
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
                        "listen": _host_port(self.config.listen_host, self.config.listen_port)}
            if op == "list":
                return {"ok": True, "members": [m.to_json() for m in self.members.values()]}
            if op == "batch":
                await self.batch(_parse_changes(request.get("changes")))
                return {"ok": True}
            name = request.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError("'name' must be a non-empty string")
            if op == "add":
                address, port = _address_and_port(request)
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
        if self.members:  # so a restarted balancer serves from its first request
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ADD_WAIT):
                    await asyncio.gather(*(m.settled.wait() for m in self.members.values()))
        where = _host_port(self.config.listen_host, self.config.listen_port)
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
        atomic_write(self.config.pool_dir / PID_FILE, f"{os.getpid()}\n")
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


def _address_and_port(request: dict[str, Any]) -> tuple[str, int]:
    address, port = request.get("address"), request.get("port")
    if not isinstance(address, str) or not address:
        raise ValueError("'address' must be a non-empty string")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("'port' must be an integer in 1..65535")
    return address, port


def _parse_changes(raw: object) -> list[MemberChange]:
    """A ``batch`` request's ``changes``, all checked before any is applied."""
    if not isinstance(raw, list):
        raise ValueError("'changes' must be a list")
    changes = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise ValueError("each change must be a JSON object")
        action, name = MemberAction(str(entry.get("action"))), entry.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("'name' must be a non-empty string")
        if action is MemberAction.ADD:
            changes.append(MemberChange(action, name, *_address_and_port(entry)))
        else:
            changes.append(MemberChange(action, name))
    return changes


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


# --- the client --------------------------------------------------------------------------


def _pid_is_proxy(pid: int, pool_dir: Path) -> bool:
    """Whether ``pid`` is a live (not zombie) balancer process for ``pool_dir``.

    Checks the command line, so a pid reused by another program is never signalled.
    """
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own dead child
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():  # no procfs: trust the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
        return False
    return MODULE.encode() in cmdline and str(pool_dir).encode() in cmdline


def _pid_gone(pid: int) -> bool:
    """Whether ``pid`` has exited: reaped, or a zombie (an exiting process, whose command
    line already reads empty, still counts as running)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


class BuiltinBalancer:
    """The ``Balancer`` backed by this module's process; all state lives in ``pool_dir``.

    Every method is safe to call from several processes at once: starting and stopping
    hold an exclusive lock on ``<pool_dir>/proxy.lock``, and the process serialises
    membership changes in its event loop.
    """

    def __init__(self, config: BalancerConfig) -> None:
        self.config = config
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
        body = [
            {"action": c.action.value, "name": c.name, "address": c.address, "port": c.port}
            if c.action is MemberAction.ADD else {"action": c.action.value, "name": c.name}
            for c in changes
        ]
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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._pool_dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _stop_leftover(self) -> None:
        """Stop whatever runs for this pool (possibly hung) and clear stale pid/socket."""
        pids = {self._pid()}
        with contextlib.suppress(errors.Transient):
            pids.add(int(self._request({"op": "ping"}, PING_TIMEOUT)["pid"]))
        for pid in pids:
            if pid is not None and _pid_is_proxy(pid, self._pool_dir):
                self._terminate(pid)
        for name in (PID_FILE, SOCKET_FILE):
            with contextlib.suppress(FileNotFoundError):
                (self._pool_dir / name).unlink()

    def _terminate(self, pid: int) -> None:
        for signum, timeout in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if _pid_gone(pid):
                    return
                time.sleep(0.02)
        raise errors.Transient(f"balancer process {pid} for {self._pool_dir} survived SIGKILL")

    def _start(self) -> None:
        config = {
            "listen_host": self.config.listen_host,
            "listen_port": self.config.listen_port,
            "check_path": self.config.check_path,
            "check_interval": self.config.check_interval,
            "check_rise": self.config.check_rise,
            "check_fall": self.config.check_fall,
        }
        atomic_write(self._pool_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        with open(self._log_path, "ab") as log_file:
            log_offset = log_file.tell()
            process = subprocess.Popen(
                [sys.executable, "-m", MODULE, str(self._pool_dir)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                close_fds=True, start_new_session=True, cwd=self._pool_dir,
                env=python_child_env(),
            )
        atomic_write(self._pool_dir / PID_FILE, f"{process.pid}\n")
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
        deadline = time.monotonic() + START_TIMEOUT
        while alive():
            if self._ping():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return False

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
        path = str(self._pool_dir / SOCKET_FILE)
        dir_fd: int | None = None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                if len(path.encode()) > UNIX_PATH_MAX:  # too long for sun_path
                    dir_fd = os.open(self._pool_dir, os.O_RDONLY | os.O_DIRECTORY)
                    path = f"/proc/self/fd/{dir_fd}/{SOCKET_FILE}"
                sock.connect(path)
                sock.sendall(json.dumps(request).encode() + b"\n")
                buffer = b""
                while not buffer.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("the balancer closed the control connection")
                    buffer += chunk
            reply = json.loads(buffer)
        except (OSError, ValueError) as exc:
            raise errors.Transient(
                f"balancer in {self._pool_dir}: control request {request.get('op')!r}"
                f" failed: {exc!r}"
            ) from exc
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        if not isinstance(reply, dict):
            raise errors.Transient(f"balancer in {self._pool_dir}: bad reply {reply!r}")
        return reply


if __name__ == "__main__":
    sys.exit(main())
