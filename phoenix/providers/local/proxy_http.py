"""HTTP/1.1 pieces of the built-in balancer process (``proxy_server``), pure or nearly so.

Which headers a member sees and which the client gets back, and one side of a proxied
exchange (:class:`Peer`, an h11 state machine over an asyncio stream). HTTP parsing and
framing (Content-Length, chunked, until-close, HEAD, 1xx/204/304, pipelining) is h11's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import h11

__all__ = [
    "IDEMPOTENT",
    "PEER_ERRORS",
    "Peer",
    "end_to_end_headers",
    "host_port",
    "parse_status_line",
    "request_has_body",
    "upstream_request_headers",
]

READ_CHUNK = 65536

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
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


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



def host_port(host: str, port: int) -> str:
    """``host:port``, or ``[host]:port`` for an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


PEER_ERRORS = (OSError, TimeoutError, h11.ProtocolError)


class Peer:
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

