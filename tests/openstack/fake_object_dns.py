"""A fake Swift object API and Designate v2 API on 127.0.0.1, for HTTP-level tests.

Our loopback OpenStack harness (``harness.py``) runs no Swift and no Designate, so the
provider's ``SwiftStore`` and ``OpenStackDns`` are tested against this server instead: the
real openstacksdk / keystoneauth / requests stack talks to it over real sockets, and it
answers the way the real services do for the subset Phoenix uses (checked against Swift's
and Designate's API references and source):

Swift (``/v1/AUTH_<project>/...``; ``GET /info`` anonymous, like Swift's)
  * ``PUT`` container: 201 Created, 202 Accepted when it exists. ``DELETE`` container: 204,
    404 when missing, 409 Conflict when not empty. ``HEAD`` container: 204 with counts.
  * ``GET`` container listing: ``format=json`` (or ``Accept: application/json``) answers 200
    with a JSON list, even an empty one; a plain listing answers newline-separated names,
    or 204 No Content when nothing matches. ``prefix``, ``marker``, ``end_marker``,
    ``delimiter`` (``subdir`` entries) and ``limit`` work as in Swift; at most
    ``page_size`` names per response (Swift's ``container_listing_limit``), and a ``limit``
    above it is 412. Names sort by their UTF-8 bytes. A missing container is 404.
  * ``PUT`` object: 201 with an ``ETag``; 404 when the container does not exist; 411
    without ``Content-Length`` or chunked encoding; ``If-None-Match: *`` answers 412
    Precondition Failed when the object exists (checked and written atomically under one
    lock, so concurrent writers get exactly one 201); any other ``If-None-Match`` value is
    400. Object names are at most 1024 bytes of UTF-8, container names 256 (else 400),
    and a path that is not UTF-8 is 412. Paths are not normalised (``a/../b`` is a name).
  * ``GET`` / ``HEAD`` object: 200 with body, ``ETag``, ``Last-Modified``, ``X-Timestamp``;
    404 when missing. ``DELETE`` object: 204, 404 when missing.

Designate (``GET /`` anonymous version document, ``/v2/...`` with a token)
  * ``GET /`` answers ``{"versions": {"values": [{"id": "v2", "status": "CURRENT",
    ...}]}}`` with an absolute link built from the ``Host`` header, which is what
    keystoneauth's discovery reads before the SDK's first DNS call.
  * ``GET /v2/zones?name=``; ``GET /v2/zones/{id}`` (400 ``invalid_uuid`` for an id that is
    not a UUID -- the SDK's ``find_zone`` tries the name as an id first -- and 404
    ``zone_not_found``). Zones are created by the test (``add_zone``), each with the SOA
    and NS recordsets Designate makes at the apex.
  * ``GET/POST /v2/zones/{id}/recordsets`` and ``GET/PUT/DELETE .../recordsets/{id}``:
    ``name``/``type`` filters (exact, or ``*`` wildcards); writes answer 202 with
    ``status: PENDING`` and ``action`` CREATE/UPDATE/DELETE (the worker then makes the
    recordset ACTIVE at once, and a deleted one disappears at once, as central does);
    409 ``duplicate_recordset`` for a second recordset with the same name and type; 400
    ``invalid_object`` for unknown or changed read-only/immutable keys, records that are
    not addresses of the type, a bad TTL, or a name outside the zone; AAAA records are
    stored in canonical form (Designate's ``IPV6AddressField`` does the same); SOA cannot
    be created, changed or deleted, nor the apex NS changed; 404 ``recordset_not_found``.
  * Lists are paged as Designate pages them: at most ``page_size`` items (``limit`` may
    ask for fewer, or ``max``), sorted by creation, ``links.next`` (absolute, with
    ``marker`` = the last id) whenever a page is full, ``metadata.total_count``; an unknown
    marker is 400 ``invalid_marker``, a bad limit 400 ``invalid_limit``.

Common to both
  * Every API request needs ``X-Auth-Token``: missing or unknown is 401; the reader token
    (``READER_TOKEN``) gets 403 on any write; a Swift account other than the token's
    project is 403. The anonymous documents (``/``, ``/info``) need none, as in the real
    services (keystoneauth sends no token for discovery).
  * ``requests`` is a log of every request (method, raw path, query, the headers that
    matter -- the token shown only as ``***`` -- and the answer, ``None`` when dropped).
  * Fault injection: ``fail_next(n, status)`` answers the next n matching requests with
    that status without touching state; ``drop_next(n)`` closes the connection without a
    response (``after_processing=True`` applies the request first: a lost response).

Not implemented (Phoenix does not use it): Swift object ``POST``/metadata, ranges,
conditional GETs, versioning, large objects, ACLs beyond the reader role, XML listings
(``format=xml`` answers as plain), account listings; Designate zone writes (zones come from
``add_zone``), ``/v2/recordsets`` across zones, sort keys other than creation order,
record types beyond A/AAAA/CNAME/TXT/MX/NS/SOA validation, CNAME exclusivity, quotas,
pools, a PENDING state observable on reads.

``write_clouds_yaml`` writes a clouds.yaml whose cloud uses keystoneauth's ``admin_token``
plugin (a fixed ``X-Auth-Token``; no Keystone needed) and per-region
``object_store_endpoint_override`` / ``dns_endpoint_override`` pointing here, or at a
closed port (a bound socket that never listens: connections are refused) for regions
named unreachable.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import ipaddress
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes, urlencode, urlsplit

import yaml

__all__ = [
    "ACCOUNT",
    "PROJECT_ID",
    "READER_TOKEN",
    "TOKEN",
    "FakeObjectDns",
    "Identity",
    "KeystoneTokens",
    "LoggedRequest",
    "listed_in_catalog",
]

PROJECT_ID = "5e2f3c1a9b8d4e7f8a6b5c4d3e2f1a0b"
ACCOUNT = f"AUTH_{PROJECT_ID}"
TOKEN = "fake-admin-token-0123456789"
READER_TOKEN = "fake-reader-token-0123456789"

MAX_OBJECT_NAME = 1024  # Swift's default max_object_name_length (bytes of UTF-8)
MAX_CONTAINER_NAME = 256  # Swift's default max_container_name_length
DESIGNATE_MAX_LIMIT = 1000  # Designate's default max_limit_v2
_RECORDSET_KEYS = (
    # Designate's RecordSetAPIv2Adapter fields; writable ones below.
    "id", "zone_id", "project_id", "name", "zone_name", "type", "records", "description",
    "ttl", "status", "action", "version", "created_at", "updated_at",
)
_RECORDSET_WRITABLE = ("records", "description", "ttl")
_RECORDSET_IMMUTABLE = ("name", "type")
_LOGGED_HEADERS = (
    "x-auth-token", "if-none-match", "if-match", "content-type", "content-length",
    "transfer-encoding", "accept", "x-auth-sudo-project-id", "x-auth-all-projects",
)


# --- who is calling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """What a valid token stands for: ``member`` may write, ``reader`` only read."""

    role: str
    project_id: str


TokenValidator = Callable[[str], Identity | None]


def _fixed_tokens(token: str) -> Identity | None:
    """The default: the two fixed tokens ``write_clouds_yaml`` hands out."""
    if token == TOKEN:
        return Identity("member", PROJECT_ID)
    if token == READER_TOKEN:
        return Identity("reader", PROJECT_ID)
    return None


class KeystoneTokens:
    """A ``TokenValidator`` that asks a real Keystone, as keystonemiddleware does for the
    real services: ``GET /v3/auth/tokens`` with the subject token, authorised by a service
    session (a keystoneauth session of an admin). Answers are cached per token."""

    def __init__(self, session: Any, identity_url: str) -> None:
        self._session = session
        self._url = identity_url.rstrip("/") + "/auth/tokens"
        self._cache: dict[str, Identity | None] = {}
        self._lock = threading.Lock()

    def __call__(self, token: str) -> Identity | None:
        with self._lock:
            if token in self._cache:
                return self._cache[token]
        response = self._session.get(
            self._url, headers={"X-Subject-Token": token}, raise_exc=False
        )
        identity: Identity | None = None
        if response.status_code == 200:
            body = response.json()["token"]
            roles = {str(r["name"]) for r in body.get("roles", [])}
            project = body.get("project", {}).get("id")
            if project and roles & {"member", "admin"}:
                identity = Identity("member", str(project))
            elif project and "reader" in roles:
                identity = Identity("reader", str(project))
        with self._lock:
            self._cache[token] = identity
        return identity


# --- what the test sees ----------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the fake saw it (the token itself is never kept)."""

    method: str
    path: str  # as sent on the wire, percent-encoded
    query: Mapping[str, tuple[str, ...]]
    headers: Mapping[str, str]  # lower-cased names, only those in _LOGGED_HEADERS
    service: str  # "swift", "swift-info", "designate", "designate-versions", "other"
    status: int | None  # None: the connection was closed without an answer
    body_size: int = 0
    json_body: Any = None  # Designate request bodies (never Swift object content)
    processed: bool = True  # False when a fault answered instead of the service

    @property
    def decoded_path(self) -> str:
        return unquote_to_bytes(self.path).decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class _Fault:
    kind: str  # "status" | "drop"
    remaining: int
    status: int
    after_processing: bool
    match: Callable[[str, str], bool]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


# --- state -----------------------------------------------------------------------------------


@dataclass
class _Object:
    data: bytes
    content_type: str
    timestamp: float

    @property
    def etag(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


@dataclass
class _Container:
    created: float
    objects: dict[str, _Object] = field(default_factory=dict)


@dataclass
class _Recordset:
    id: str
    zone_id: str
    zone_name: str
    name: str
    type: str
    records: list[str]
    ttl: int | None
    description: str | None
    seq: int
    created_at: str
    status: str = "ACTIVE"
    action: str = "NONE"
    version: int = 1
    updated_at: str | None = None

    def view(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "zone_id": self.zone_id,
            "project_id": PROJECT_ID,
            "name": self.name,
            "zone_name": self.zone_name,
            "type": self.type,
            "records": list(self.records),
            "description": self.description,
            "ttl": self.ttl,
            "status": self.status,
            "action": self.action,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "links": {"self": f"{base}/v2/zones/{self.zone_id}/recordsets/{self.id}"},
        }


@dataclass
class _Zone:
    id: str
    name: str
    email: str
    ttl: int
    seq: int
    created_at: str
    serial: int = 1
    recordsets: dict[str, _Recordset] = field(default_factory=dict)

    def view(self, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "pool_id": "794ccc2c-d751-44fe-b57f-8894c9f5c842",
            "project_id": PROJECT_ID,
            "name": self.name,
            "email": self.email,
            "description": None,
            "ttl": self.ttl,
            "serial": self.serial,
            "status": "ACTIVE",
            "action": "NONE",
            "version": self.serial,
            "attributes": {},
            "type": "PRIMARY",
            "masters": [],
            "shared": False,
            "transferred_at": None,
            "created_at": self.created_at,
            "updated_at": None,
            "links": {"self": f"{base}/v2/zones/{self.id}"},
        }


class _DesignateError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000", time.gmtime())


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _html(status: int, text: str) -> _Reply:
    phrase = HTTPStatus(status).phrase
    body = f"<html><h1>{phrase}</h1><p>{text}</p></html>".encode()
    return _Reply(status, body, {"Content-Type": "text/html; charset=UTF-8"})


# --- the server ------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' pool expects
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _any(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeObjectDns) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class FakeObjectDns:
    """Swift + Designate on one loopback port; a context manager (starts and stops).

    ``page_size`` caps every listing page (Swift's ``container_listing_limit`` and
    Designate's ``default_limit_v2``); make it small to force paging.
    """

    def __init__(
        self, *, page_size: int = 1000, token_validator: TokenValidator | None = None
    ) -> None:
        self.page_size = page_size
        self._validate = token_validator or _fixed_tokens
        self._lock = threading.RLock()
        self._log: list[LoggedRequest] = []
        self._faults: list[_Fault] = []
        self._containers: dict[str, _Container] = {}
        self._zones: dict[str, _Zone] = {}
        self._seq = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._closed_socket: socket.socket | None = None

    # --- lifecycle ---

    def start(self) -> FakeObjectDns:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        # A port that refuses connections: bound (so nobody else gets it), never listening.
        self._closed_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._closed_socket.bind(("127.0.0.1", 0))
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._closed_socket is not None:
            self._closed_socket.close()
        self._server = self._thread = self._closed_socket = None

    def __enter__(self) -> FakeObjectDns:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake is not running"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def swift_endpoint(self) -> str:
        return f"{self.url}/v1/{ACCOUNT}"

    @property
    def dns_endpoint(self) -> str:
        return f"{self.url}/"  # unversioned, as in a real catalog: discovery finds /v2

    @property
    def unreachable_url(self) -> str:
        assert self._closed_socket is not None, "the fake is not running"
        return f"http://127.0.0.1:{self._closed_socket.getsockname()[1]}"

    # --- clouds.yaml ---

    def write_clouds_yaml(
        self,
        directory: Path,
        *,
        cloud: str = "fake",
        regions: Sequence[str] = ("RegionOne",),
        unreachable: Iterable[str] = (),
        token: str = TOKEN,
        status_code_retries: int | None = None,
        connect_retries: int | None = None,
        retry_delay: float = 0.01,
        filename: str = "clouds.yaml",
    ) -> Path:
        """A clouds.yaml for ``cloud``: admin_token auth, endpoints overridden per region.

        Regions in ``unreachable`` get endpoints on a port that refuses connections.
        ``status_code_retries`` / ``connect_retries`` are keystoneauth's retry knobs
        (openstacksdk's defaults retry nothing for object-store and dns).
        """
        down = set(unreachable)
        entries = []
        for region in regions:
            base = self.unreachable_url if region in down else self.url
            entries.append(
                {
                    "name": region,
                    "values": {
                        "object_store_endpoint_override": f"{base}/v1/{ACCOUNT}",
                        "dns_endpoint_override": f"{base}/",
                    },
                }
            )
        entry: dict[str, Any] = {
            # keystoneauth's "admin_token" plugin: a fixed token sent as X-Auth-Token, no
            # Keystone round trip ("token_endpoint" is its old alias). auth_type "none"
            # would send no token at all.
            "auth_type": "admin_token",
            "auth": {"endpoint": f"{self.unreachable_url}/no-catalog", "token": token},
            "regions": entries,
        }
        if status_code_retries is not None:
            entry["status_code_retries"] = status_code_retries
            entry["status_code_retry_delay"] = retry_delay
        if connect_retries is not None:
            entry["connect_retries"] = connect_retries
            entry["connect_retry_delay"] = retry_delay
        path = directory / filename
        path.write_text(yaml.safe_dump({"clouds": {cloud: entry}}, sort_keys=False))
        return path

    # --- the request log and faults ---

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def api_requests(self, method: str | None = None, service: str | None = None) -> list[
        LoggedRequest
    ]:
        """Logged requests to the APIs (not the anonymous documents), optionally filtered."""
        return [
            r
            for r in self.requests
            if r.service in ("swift", "designate")
            and (method is None or r.method == method)
            and (service is None or r.service == service)
        ]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def fail_next(
        self,
        count: int,
        status: int = 503,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (state untouched);
        ``headers`` are added to the answer (e.g. ``Retry-After``)."""
        self._add_fault("status", count, status, False, method, path_contains, headers)

    def drop_next(
        self,
        count: int,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """Close the connection of the next ``count`` matching requests without answering
        (with ``after_processing``, the request takes effect first: a lost response)."""
        self._add_fault("drop", count, 0, after_processing, method, path_contains, None)

    def _add_fault(
        self,
        kind: str,
        count: int,
        status: int,
        after: bool,
        method: str | None,
        path_contains: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        def match(m: str, path: str) -> bool:
            return (method is None or m == method) and (
                path_contains is None or path_contains in path
            )

        with self._lock:
            self._faults.append(_Fault(kind, count, status, after, match, dict(headers or {})))

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.match(method, path):
                    fault.remaining -= 1
                    return fault
            return None

    # --- test-side access to the state (no HTTP) ---

    def add_zone(self, name: str, *, ttl: int = 3600, email: str = "admin@example.org") -> str:
        """Create a zone (with its apex SOA and NS recordsets); returns its id."""
        if not name.endswith("."):
            name += "."
        with self._lock:
            zone = _Zone(
                id=str(uuid.uuid4()), name=name, email=email, ttl=ttl, seq=self._next_seq(),
                created_at=_now_iso(),
            )
            self._zones[zone.id] = zone
            self._insert_recordset(
                zone, name, "SOA",
                [f"ns1.example.net. {email.replace('@', '.')}. 1 3584 600 86400 3600"], ttl,
            )
            self._insert_recordset(zone, name, "NS", ["ns1.example.net."], ttl)
            return zone.id

    def add_recordset(
        self, zone: str, name: str, type_: str, records: Sequence[str], ttl: int | None = None
    ) -> str:
        """Create a recordset directly (as another tool would have); returns its id."""
        with self._lock:
            found = self._zone_by_name(zone)
            return self._insert_recordset(found, name, type_, list(records), ttl).id

    def recordsets(self, zone: str, *, types: Iterable[str] = ("A", "AAAA")) -> list[
        dict[str, Any]
    ]:
        """The zone's recordsets of ``types`` as plain dicts, in creation order."""
        wanted = set(types)
        with self._lock:
            found = self._zone_by_name(zone)
            return [
                {"name": rs.name, "type": rs.type, "records": sorted(rs.records), "ttl": rs.ttl}
                for rs in sorted(found.recordsets.values(), key=lambda r: r.seq)
                if rs.type in wanted
            ]

    def objects(self, container: str) -> dict[str, bytes]:
        with self._lock:
            found = self._containers.get(container)
            return {} if found is None else {k: o.data for k, o in found.objects.items()}

    def has_container(self, container: str) -> bool:
        with self._lock:
            return container in self._containers

    def remove_container(self, container: str) -> None:
        """Delete a container and its objects behind the client's back."""
        with self._lock:
            self._containers.pop(container, None)

    def _zone_by_name(self, name: str) -> _Zone:
        fqdn = name if name.endswith(".") else name + "."
        for zone in self._zones.values():
            if zone.name == fqdn:
                return zone
        raise KeyError(f"no zone {fqdn}")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _insert_recordset(
        self, zone: _Zone, name: str, type_: str, records: list[str], ttl: int | None
    ) -> _Recordset:
        rs = _Recordset(
            id=str(uuid.uuid4()), zone_id=zone.id, zone_name=zone.name, name=name, type=type_,
            records=records, ttl=ttl, description=None, seq=self._next_seq(),
            created_at=_now_iso(),
        )
        zone.recordsets[rs.id] = rs
        return rs

    # --- serving ---

    def _serve(self, handler: _Handler) -> None:
        method = handler.command
        split = urlsplit(handler.path)
        path = split.path
        query = {k: tuple(v) for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {
            name: ("***" if name == "x-auth-token" else value)
            for name in _LOGGED_HEADERS
            if (value := handler.headers.get(name)) is not None
        }
        body = self._read_body(handler)
        service = self._service_of(path)
        json_body: Any = None
        if service == "designate" and body:
            with contextlib.suppress(ValueError):
                json_body = json.loads(body)

        def record(status: int | None, processed: bool) -> None:
            entry = LoggedRequest(
                method=method, path=path, query=query, headers=headers, service=service,
                status=status, body_size=len(body or b""), json_body=json_body, processed=processed,
            )
            with self._lock:
                self._log.append(entry)

        fault = self._take_fault(method, path)
        if fault is not None and not fault.after_processing:
            if fault.kind == "drop":
                record(None, False)
                self._drop(handler)
                return
            reply = _html(fault.status, "injected fault")
            reply.headers.update(fault.headers)
            record(fault.status, False)
            self._send(handler, method, reply)
            return

        if body is None:
            reply = _html(411, "Missing Content-Length or Transfer-Encoding: chunked.")
        else:
            try:
                reply = self._dispatch(method, path, split.query, handler, body, service)
            except Exception as exc:  # a bug in the fake: answer 500 and keep serving
                reply = _html(500, f"fake server error: {type(exc).__name__}: {exc}")
        if fault is not None:  # after_processing: the work is done, the answer is lost
            record(None, True)
            self._drop(handler)
            return
        record(reply.status, True)
        self._send(handler, method, reply)

    @staticmethod
    def _read_body(handler: _Handler) -> bytes | None:
        length = handler.headers.get("Content-Length")
        if length is not None:
            return handler.rfile.read(int(length)) if int(length) > 0 else b""
        if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    handler.rfile.readline()
                    break
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
            return b"".join(chunks)
        if handler.command in ("PUT", "POST"):
            return None  # Swift: 411 Length Required
        return b""

    @staticmethod
    def _drop(handler: _Handler) -> None:
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _send(handler: _Handler, method: str, reply: _Reply) -> None:
        handler.send_response(reply.status)
        headers = {"X-Trans-Id": f"tx{uuid.uuid4().hex[:21]}", **reply.headers}
        headers.setdefault("Content-Length", str(len(reply.body)))
        headers["Date"] = formatdate(usegmt=True)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if method != "HEAD" and reply.body:
            handler.wfile.write(reply.body)

    @staticmethod
    def _service_of(path: str) -> str:
        if path == "/info":
            return "swift-info"
        if path.startswith("/v1/") or path == "/v1":
            return "swift"
        if path == "/":
            return "designate-versions"
        if path.startswith("/v2/") or path == "/v2":
            return "designate"
        return "other"

    def _dispatch(
        self, method: str, path: str, raw_query: str, handler: _Handler, body: bytes,
        service: str,
    ) -> _Reply:
        host = handler.headers.get("Host") or f"127.0.0.1:{self.port}"
        base = f"http://{host}"
        if service == "swift-info":
            return self._json(200, {"swift": {"version": "2.34.0",
                                              "container_listing_limit": self.page_size,
                                              "max_object_name_length": MAX_OBJECT_NAME}})
        if service == "designate-versions":
            if method not in ("GET", "HEAD"):
                return self._json(405, {"code": 405, "type": "method_not_allowed"})
            return self._json(200, {"versions": {"values": [{
                "id": "v2", "status": "CURRENT",
                "links": [{"href": f"{base}/v2", "rel": "self"}],
            }]}})
        if service == "other":
            return _html(404, "The resource could not be found.")
        token = handler.headers.get("X-Auth-Token")
        identity = self._validate(token) if token else None
        role = identity.role if identity else None
        if service == "swift":
            if identity is None:
                return _html(401, "This server could not verify that you are authorized to"
                                  " access the document you requested.")
            return self._swift(method, path, raw_query, handler, body, identity)
        if role is None:
            return self._json(401, {"error": {"code": 401, "title": "Unauthorized",
                                              "message": "The request you have made requires"
                                                         " authentication."}})
        try:
            return self._designate(method, path, raw_query, body, role, base)
        except _DesignateError as err:
            return self._json(err.status, {"code": err.status, "type": err.kind,
                                           "message": err.message,
                                           "request_id": f"req-{uuid.uuid4()}"})

    @staticmethod
    def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Reply:
        return _Reply(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    # --- Swift ---

    def _swift(
        self, method: str, path: str, raw_query: str, handler: _Handler, body: bytes,
        identity: Identity,
    ) -> _Reply:
        role = identity.role
        try:
            decoded = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            return _html(412, "Invalid UTF8 or contains NULL")
        if "\x00" in decoded:
            return _html(412, "Invalid UTF8 or contains NULL")
        parts = decoded.split("/", 4)  # ["", "v1", account, container, object]
        account = parts[2] if len(parts) > 2 else ""
        container = parts[3] if len(parts) > 3 else ""
        obj = parts[4] if len(parts) > 4 else ""
        if account != f"AUTH_{identity.project_id}":
            return _html(403, "Access was denied to this resource.")
        if method not in ("GET", "HEAD") and role != "member":
            return _html(403, "Access was denied to this resource.")
        if not container:
            return _html(405 if method != "GET" else 501, "Account requests are not faked.")
        if len(container.encode()) > MAX_CONTAINER_NAME:
            return _html(400, f"Container name length of {len(container)} longer than"
                              f" {MAX_CONTAINER_NAME}")
        if len(obj.encode()) > MAX_OBJECT_NAME:
            return _html(400, f"Object name length of {len(obj.encode())} longer than"
                              f" {MAX_OBJECT_NAME}")
        params = parse_qs(raw_query, keep_blank_values=True)
        with self._lock:  # every check-then-write below is atomic
            if not obj:
                return self._swift_container(method, container, params, handler)
            return self._swift_object(method, container, obj, handler, body)

    def _swift_container(
        self, method: str, name: str, params: dict[str, list[str]], handler: _Handler
    ) -> _Reply:
        found = self._containers.get(name)
        if method == "PUT":
            if found is not None:
                return _html(202, "The request is accepted for processing.")
            self._containers[name] = _Container(created=time.time())
            return _html(201, "")
        if found is None:
            return _html(404, "The resource could not be found.")
        counts = {
            "X-Container-Object-Count": str(len(found.objects)),
            "X-Container-Bytes-Used": str(sum(len(o.data) for o in found.objects.values())),
            "X-Timestamp": f"{found.created:.5f}",
        }
        if method == "DELETE":
            if found.objects:
                return _html(409, "There was a conflict when trying to complete your request.")
            del self._containers[name]
            return _Reply(204, b"", {})
        if method == "HEAD":
            return _Reply(204, b"", counts)
        if method != "GET":
            return _html(405, "The method is not allowed for this resource.")
        return self._swift_listing(found, params, handler, counts)

    def _swift_listing(
        self,
        container: _Container,
        params: dict[str, list[str]],
        handler: _Handler,
        headers: dict[str, str],
    ) -> _Reply:
        def one(name: str) -> str:
            return params.get(name, [""])[0]

        limit = self.page_size
        if one("limit"):
            try:
                limit = int(one("limit"))
            except ValueError:
                return _html(412, "Value of limit must be a positive integer")
            if limit < 0:
                return _html(412, "Value of limit must be a positive integer")
            if limit > self.page_size:
                return _html(412, f"Maximum limit is {self.page_size}")
        prefix, marker, end_marker, delimiter = (
            one("prefix"), one("marker"), one("end_marker"), one("delimiter")
        )
        entries: list[dict[str, Any]] = []
        seen_subdirs: set[str] = set()
        for name in sorted(container.objects, key=lambda n: n.encode()):
            if len(entries) >= limit:
                break
            if not name.startswith(prefix):
                continue
            if marker and name.encode() <= marker.encode():
                continue
            if end_marker and name.encode() >= end_marker.encode():
                continue
            if delimiter:
                cut = name.find(delimiter, len(prefix))
                if cut >= 0:
                    subdir = name[: cut + len(delimiter)]
                    if subdir not in seen_subdirs and (
                        not marker or subdir.encode() > marker.encode()
                    ):
                        seen_subdirs.add(subdir)
                        entries.append({"subdir": subdir})
                    continue
            item = container.objects[name]
            entries.append({
                "name": name,
                "hash": item.etag,
                "bytes": len(item.data),
                "content_type": item.content_type,
                "last_modified": time.strftime(
                    "%Y-%m-%dT%H:%M:%S.000000", time.gmtime(item.timestamp)
                ),
            })
        fmt = one("format").lower()
        accept = handler.headers.get("Accept") or ""
        if fmt == "json" or (not fmt and "application/json" in accept):
            return self._json(200, entries, {**headers, "Content-Type":
                                             "application/json; charset=utf-8"})
        if not entries:
            return _Reply(204, b"", headers)
        text = "".join(f"{e.get('name', e.get('subdir'))}\n" for e in entries)
        return _Reply(200, text.encode(), {**headers,
                                           "Content-Type": "text/plain; charset=utf-8"})

    def _swift_object(
        self, method: str, container: str, name: str, handler: _Handler, body: bytes
    ) -> _Reply:
        found = self._containers.get(container)
        if found is None:
            return _html(404, "The resource could not be found.")
        current = found.objects.get(name)
        if method == "PUT":
            condition = handler.headers.get("If-None-Match")
            if condition is not None:
                if condition.strip() != "*":
                    return _html(400, "If-None-Match only supports *")
                if current is not None:
                    return _html(412, "A precondition for this request was not met.")
            item = _Object(
                data=body,
                content_type=handler.headers.get("Content-Type") or "application/octet-stream",
                timestamp=time.time(),
            )
            found.objects[name] = item
            return _Reply(201, b"", {
                "ETag": item.etag,
                "Last-Modified": formatdate(item.timestamp, usegmt=True),
                "Content-Type": "text/html; charset=UTF-8",
            })
        if current is None:
            return _html(404, "The resource could not be found.")
        if method == "DELETE":
            del found.objects[name]
            return _Reply(204, b"", {})
        if method in ("GET", "HEAD"):
            return _Reply(200, current.data, {
                "Content-Type": current.content_type,
                "ETag": current.etag,
                "Last-Modified": formatdate(current.timestamp, usegmt=True),
                "X-Timestamp": f"{current.timestamp:.5f}",
                "Accept-Ranges": "bytes",
            })
        return _html(405, "The method is not allowed for this resource.")

    # --- Designate ---

    def _designate(
        self, method: str, path: str, raw_query: str, body: bytes, role: str, base: str
    ) -> _Reply:
        parts = [p for p in path.split("/") if p][1:]  # drop "v2"
        params = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        if method not in ("GET", "HEAD") and role != "member":
            raise _DesignateError(403, "forbidden", "You are not authorized to perform"
                                                    " this action")
        with self._lock:
            if parts == ["zones"]:
                if method != "GET":
                    raise _DesignateError(405, "method_not_allowed", "Zone writes are not"
                                                                     " faked")
                zones = sorted(self._zones.values(), key=lambda z: z.seq)
                items = [z for z in zones if self._matches(z.name, params.get("name"))]
                return self._paged("zones", items, zones, params, path, base)
            if len(parts) >= 2 and parts[0] == "zones":
                if not _is_uuid(parts[1]):
                    raise _DesignateError(400, "invalid_uuid", f"Invalid UUID zone_id:"
                                                               f" {parts[1]}")
                zone = self._zones.get(parts[1])
                if zone is None:
                    raise _DesignateError(404, "zone_not_found", "Could not find Zone")
                if len(parts) == 2:
                    if method != "GET":
                        raise _DesignateError(405, "method_not_allowed", "Not faked")
                    return self._json(200, zone.view(base))
                if parts[2] == "recordsets" and len(parts) == 3:
                    return self._recordsets(method, zone, params, body, path, base)
                if parts[2] == "recordsets" and len(parts) == 4:
                    return self._recordset(method, zone, parts[3], body, base)
            raise _DesignateError(404, "not_found", "The resource could not be found.")

    @staticmethod
    def _matches(value: str, wanted: str | None) -> bool:
        if wanted is None:
            return True
        if "*" in wanted:
            return fnmatch.fnmatchcase(value, wanted)
        return value == wanted

    def _paged(
        self,
        key: str,
        items: Sequence[_Zone | _Recordset],
        everything: Iterable[_Zone | _Recordset],
        params: Mapping[str, str],
        path: str,
        base: str,
    ) -> _Reply:
        """One page of ``items`` (filtered, in creation order), as Designate pages lists."""
        limit = self.page_size  # Designate's default_limit_v2
        raw_limit = params.get("limit")
        if raw_limit == "max":
            limit = DESIGNATE_MAX_LIMIT
        elif raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                limit = 0
            if limit <= 0:
                raise _DesignateError(400, "invalid_limit", "limit should be an integer"
                                                            " between 1 and 2147483647")
            limit = min(limit, DESIGNATE_MAX_LIMIT)
        start = 0
        marker = params.get("marker")
        if marker:
            anchor = next((i for i in everything if i.id == marker), None)
            if anchor is None:
                raise _DesignateError(400, "invalid_marker", f"Marker {marker} could not be"
                                                             " found")
            start = next((n for n, i in enumerate(items) if i.seq > anchor.seq), len(items))
        page = items[start : start + limit]
        query = dict(params)
        links = {"self": f"{base}{path}" + (f"?{urlencode(query)}" if query else "")}
        if page and len(page) == limit:  # Designate: a full page always has a next link
            links["next"] = f"{base}{path}?" + urlencode({**query, "marker": page[-1].id})
        return self._json(200, {
            key: [i.view(base) for i in page],
            "links": links,
            "metadata": {"total_count": len(items)},
        })

    def _recordsets(
        self, method: str, zone: _Zone, params: Mapping[str, str], body: bytes, path: str,
        base: str,
    ) -> _Reply:
        if method == "GET":
            ordered = sorted(zone.recordsets.values(), key=lambda r: r.seq)
            items = [
                rs for rs in ordered
                if self._matches(rs.name, params.get("name"))
                and self._matches(rs.type, params.get("type"))
            ]
            return self._paged("recordsets", items, ordered, params, path, base)
        if method != "POST":
            raise _DesignateError(405, "method_not_allowed", "Method not allowed")
        values = self._body_object(body)
        unknown = sorted(set(values) - set(_RECORDSET_WRITABLE) - set(_RECORDSET_IMMUTABLE))
        if unknown:
            raise _DesignateError(400, "invalid_object", "Provided object does not match"
                                  f" schema.  Keys {unknown} are not valid for recordset")
        name, type_ = values.get("name"), values.get("type")
        if not isinstance(name, str) or not isinstance(type_, str):
            raise _DesignateError(400, "invalid_object", "Provided object does not match"
                                                         " schema: name and type required")
        type_ = type_.upper()
        if type_ == "SOA":
            raise _DesignateError(400, "bad_request", "Creating a SOA recordset is not"
                                                      " allowed")
        if not name.endswith(".") or not (name == zone.name or name.endswith("." + zone.name)):
            raise _DesignateError(400, "invalid_recordset_location", "RecordSet is not"
                                  " contained within it's parent zone")
        records = self._valid_records(type_, values.get("records"))
        ttl = self._valid_ttl(values.get("ttl"))
        if any(rs.name == name and rs.type == type_ for rs in zone.recordsets.values()):
            raise _DesignateError(409, "duplicate_recordset", "Duplicate RecordSet")
        rs = self._insert_recordset(zone, name, type_, records, ttl)
        rs.description = values.get("description")
        zone.serial += 1
        view = rs.view(base) | {"status": "PENDING", "action": "CREATE"}
        return self._json(202, view, {"Location": view["links"]["self"]})

    def _recordset(
        self, method: str, zone: _Zone, rs_id: str, body: bytes, base: str
    ) -> _Reply:
        if not _is_uuid(rs_id):
            raise _DesignateError(400, "invalid_uuid", f"Invalid UUID recordset_id: {rs_id}")
        rs = zone.recordsets.get(rs_id)
        if rs is None:
            raise _DesignateError(404, "recordset_not_found", "Could not find RecordSet")
        if method == "GET":
            return self._json(200, rs.view(base))
        if method == "DELETE":
            if rs.type == "SOA":
                raise _DesignateError(400, "bad_request", "Deleting a SOA recordset is not"
                                                          " allowed")
            del zone.recordsets[rs.id]
            zone.serial += 1
            view = rs.view(base) | {"status": "PENDING", "action": "DELETE"}
            return self._json(202, view)
        if method != "PUT":
            raise _DesignateError(405, "method_not_allowed", "Method not allowed")
        if rs.type == "SOA":
            raise _DesignateError(400, "bad_request", "Updating SOA recordsets is not allowed")
        if rs.type == "NS" and rs.name == zone.name:
            raise _DesignateError(400, "bad_request", "Updating a root zone NS record is not"
                                                      " allowed")
        values = self._body_object(body)
        current = rs.view(base)
        bad = sorted(
            key for key, value in values.items()
            if key not in _RECORDSET_KEYS
            or (key not in _RECORDSET_WRITABLE and value != current.get(key))
        )
        if bad:
            raise _DesignateError(400, "invalid_object", "Provided object does not match"
                                  f" schema.  Keys {bad} are not valid for recordset")
        if "records" in values:
            rs.records = self._valid_records(rs.type, values["records"])
        if "ttl" in values:
            rs.ttl = self._valid_ttl(values["ttl"])
        if "description" in values:
            rs.description = values["description"]
        rs.version += 1
        rs.updated_at = _now_iso()
        zone.serial += 1
        return self._json(202, rs.view(base) | {"status": "PENDING", "action": "UPDATE"})

    @staticmethod
    def _body_object(body: bytes) -> dict[str, Any]:
        try:
            values = json.loads(body or b"null")
        except ValueError as exc:
            raise _DesignateError(400, "invalid_json", "Invalid JSON body") from exc
        if not isinstance(values, dict):
            raise _DesignateError(400, "invalid_object", "Provided object does not match"
                                                         " schema")
        return values

    @staticmethod
    def _valid_records(type_: str, records: Any) -> list[str]:
        if not isinstance(records, list) or not records or not all(
            isinstance(r, str) for r in records
        ):
            raise _DesignateError(400, "invalid_object", f"'{records}' is not a valid list of"
                                                         " records")
        out: list[str] = []
        for record in records:
            try:
                if type_ == "A":
                    out.append(str(ipaddress.IPv4Address(record)))
                elif type_ == "AAAA":
                    out.append(str(ipaddress.IPv6Address(record)))  # canonical, like Designate
                else:
                    out.append(record)
            except ValueError as exc:
                raise _DesignateError(400, "invalid_object", f"Provided object does not match"
                                      f" schema: {record!r} is not a valid {type_} record"
                                      ) from exc
        if len(set(out)) != len(out):
            raise _DesignateError(400, "invalid_object", "Duplicate record in recordset")
        return out

    @staticmethod
    def _valid_ttl(ttl: Any) -> int | None:
        if ttl is None:
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 2147483647:
            raise _DesignateError(400, "invalid_object", f"Provided object does not match"
                                                         f" schema: ttl {ttl!r}")
        return ttl



# --- a place in a real cloud's catalog ---------------------------------------------------------

CATALOG_SERVICES = (
    # (service name, type, endpoint path; Keystone fills in %(project_id)s per token)
    ("phoenix-fake-swift", "object-store", "/v1/AUTH_%(project_id)s"),
    ("phoenix-fake-designate", "dns", "/"),
)


def _remove_from_catalog(identity: Any) -> None:
    names = {name for name, _, _ in CATALOG_SERVICES}
    for service in list(identity.services()):
        if service.name in names:
            for endpoint in list(identity.endpoints(service_id=service.id)):
                identity.delete_endpoint(endpoint, ignore_missing=True)
            identity.delete_service(service, ignore_missing=True)


@contextlib.contextmanager
def listed_in_catalog(admin: Any, fake: FakeObjectDns, region: str) -> Iterator[None]:
    """List the fake in a real Keystone's catalog as the cloud's object-store and dns
    services, the way a deployment lists Swift and Designate, so openstacksdk finds them
    by service type like on any cloud. ``admin`` is an openstacksdk connection with the
    admin role. Stale entries (a crashed session's) are replaced; ours go afterwards."""
    identity = admin.identity
    _remove_from_catalog(identity)
    try:
        for name, kind, path in CATALOG_SERVICES:
            service = identity.create_service(name=name, type=kind, enabled=True)
            identity.create_endpoint(
                service_id=service.id, interface="public", url=f"{fake.url}{path}",
                region_id=region,
            )
        yield
    finally:
        _remove_from_catalog(identity)
