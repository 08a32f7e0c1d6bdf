"""Counting the HTTP requests openstacksdk sends, by OpenStack service, at the wire.

openstacksdk sends every request (its proxies', Keystone's token requests, version
discovery, each page of a listing, the Octavia batch PUT Phoenix sends through the SDK's
session) through one keystoneauth ``Session``, which wraps a ``requests.Session``. A
``response`` hook on that session sees each of them once, after it was answered, so the
count is what the cloud's control plane served, whichever code path asked.

A response names only its URL, so the service is found from the URL: Keystone's own
address (the ``auth_url``) is ``identity``; any other address is looked up in the
service catalog, read once from the session's token (already fetched by then: a request
to a catalog service needs one) and matched by host, port and first path segment, as
clouds that serve every API behind one address (``/compute``, ``/image``) tell them apart.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from phoenix.request_tally import RequestTally

# OpenStack service types -> the names Phoenix counts under (its Protocol's parts).
SERVICE_NAMES = {
    "compute": "compute",
    "image": "image",
    "network": "network",
    "load-balancer": "load_balancer",
    "dns": "dns",
    "object-store": "store",
    "identity": "identity",
}
UNKNOWN = "other"


def _key(url: str) -> tuple[str, str]:
    """(scheme://host:port, first path segment) of ``url``."""
    parts = urlsplit(url)
    first = parts.path.strip("/").split("/", 1)[0]
    return f"{parts.scheme}://{parts.netloc}".lower(), first


class SessionCounter:
    """Counts one connection's requests into ``tally``; attach with ``attach(conn)``."""

    def __init__(self, tally: RequestTally) -> None:
        self._tally = tally
        self._lock = threading.Lock()
        self._conn: Any = None
        self._identity: tuple[str, str] | None = None
        self._catalog: dict[tuple[str, str], str] | None = None

    def attach(self, conn: Any) -> bool:
        """Hook ``conn``'s session; False when it has none to hook (a test double)."""
        hooks = getattr(getattr(getattr(conn, "session", None), "session", None), "hooks", None)
        if not isinstance(hooks, dict):
            return False
        self._conn = conn
        auth_url = _auth_url(conn)
        self._identity = _key(auth_url) if auth_url else None
        hooks.setdefault("response", []).append(self._on_response)
        return True

    def _on_response(self, response: Any, *args: Any, **kwargs: Any) -> None:
        url = str(getattr(getattr(response, "request", None), "url", "") or "")
        self._tally.count(self.service_of(url))

    def service_of(self, url: str) -> str:
        """The service ``url`` belongs to (``other`` when the catalog does not say)."""
        base, first = _key(url)
        if self._identity is not None and base == self._identity[0]:
            segment = self._identity[1]
            # Keystone at the root of its address (auth_url .../v3) owns every path there;
            # behind a shared address (.../identity/v3) only its own prefix.
            if not segment or _is_version(segment) or first == segment:
                return "identity"
        catalog = self._catalog_map()
        return catalog.get((base, first)) or catalog.get((base, "")) or UNKNOWN

    def _catalog_map(self) -> dict[tuple[str, str], str]:
        with self._lock:
            if self._catalog is None:
                found = _read_catalog(self._conn)
                if not found:  # no token yet: ask again next time
                    return found
                self._catalog = found
            return self._catalog


def _is_version(segment: str) -> bool:
    return len(segment) > 1 and segment[0] == "v" and segment[1].isdigit()


def _auth_url(conn: Any) -> str:
    try:
        auth = conn.config.get_auth_args()
    except Exception:  # a connection built without clouds.yaml auth args
        return ""
    return str(auth.get("auth_url") or "")


def _read_catalog(conn: Any) -> dict[tuple[str, str], str]:
    """(base, first segment) -> service name, for every endpoint in the token's catalog.

    An endpoint's own first segment keys it (``/v2.1``, ``/compute``); one with an empty
    path also answers every path on its address. When two services share an address and
    segment, the first listed wins; a miss counts as ``other``, never as a crash."""
    # The token the session already holds, never a new one: this runs inside a response
    # hook, where fetching a token would send a request from within a request.
    try:
        access = getattr(conn.session.auth, "auth_ref", None)
        catalog = access.service_catalog.catalog if access is not None else None
    except Exception:  # an unusual auth plugin: its requests count as "other"
        return {}
    found: dict[tuple[str, str], str] = {}
    by_address: dict[str, set[str]] = {}
    for service in catalog or []:
        name = SERVICE_NAMES.get(str(service.get("type", "")), UNKNOWN)
        for endpoint in service.get("endpoints", []):
            url = str(endpoint.get("url", ""))
            if not url:
                continue
            base, first = _key(url)
            found.setdefault((base, first), name)
            by_address.setdefault(base, set()).add(name)
    # An address only one service uses claims all its paths (its version document at /).
    for base, names in by_address.items():
        if len(names) == 1:
            found.setdefault((base, ""), next(iter(names)))
    return found
