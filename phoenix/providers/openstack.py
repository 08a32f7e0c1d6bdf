"""The OpenStack provider: Nova, Glance, Neutron, Octavia, Designate and Swift via openstacksdk.

Why it looks the way it does:

* **One boundary.** openstacksdk and keystoneauth raise their own exception types (and
  some calls answer with a plain ``requests.Response``). Every adapter method runs under
  ``@_translated``, which turns anything the SDK raises into a ``phoenix.errors`` type with
  the single function ``translate``. The engine never imports an SDK and decides retry /
  fail fast / fail over from the type alone (409 and 5xx are ``Transient``, a region whose
  API cannot be reached is ``RegionUnavailable``, bad credentials are ``AuthError``).
* **State lives in the cloud.** Servers carry Phoenix's ``phoenix:*`` keys as Nova
  metadata (keys may contain ``:``) plus two server *tags* (``phoenix-app=<app>``,
  ``phoenix-release=<release>``; Nova tags may not contain ``,`` or ``/`` and are at most
  60 characters), because Nova can filter a listing by tag but not by metadata.
  ``create_node`` is idempotent by name: it lists the app's servers first.
* **Octavia answers 409 while a load balancer is PENDING_*.** Every member write first
  waits (bounded, with the injected clock) for ``provisioning_status == ACTIVE``, and
  writes to one load balancer from this process are serialised so they do not collide.
  A poll's member changes go in one batch member update (``PUT .../members`` with the
  whole desired list): one PENDING_UPDATE cycle instead of one per member.
* **Swift holds the release records and the deploy lock.** ``create_exclusive`` is a PUT
  with ``If-None-Match: *`` (412 means the object exists), done with the connection's
  session-level request because the SDK's ``create_object`` has no such switch.
* **Any is contained.** openstacksdk is untyped; SDK objects are read through small
  helpers and never leave this module: callers get ``phoenix.model`` values.

One ``openstack.connect(cloud=..., region_name=...)`` per region, created lazily and
shared by worker threads; credentials come from clouds.yaml or ``OS_*`` variables and
are never logged.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import openstack
import openstack.config
import openstack.exceptions as os_exc
from keystoneauth1 import exceptions as ks_exc

from phoenix import errors
from phoenix.log import get_logger
from phoenix.model import (
    TAG_APP,
    TAG_ATTEMPT,
    TAG_INDEX,
    TAG_RELEASE,
    DnsRecord,
    Flavor,
    Image,
    Member,
    MemberAction,
    MemberChange,
    MemberState,
    Node,
    NodeRequest,
    NodeState,
    Quota,
)
from phoenix.provider_options import OpenStackOptions
from phoenix.providers.base import Clock, ImageQuery, Provider, Store
from phoenix.providers.http_errors import AuthHints, error_for_status
from phoenix.providers.openstack_requests import SessionCounter
from phoenix.providers.trusted_health import TrustedStateHealth
from phoenix.request_tally import RequestTally
from phoenix.spec import OpenStackProvider, Spec

__all__ = [
    "OpenStackCloud",
    "OpenStackCompute",
    "OpenStackDns",
    "OpenStackLoadBalancer",
    "SwiftStore",
    "app_tag",
    "open_openstack_provider",
    "release_tag",
    "translate",
]

log = get_logger("phoenix.providers.openstack")

DEFAULT_CONTAINER = "phoenix"
DEFAULT_LB_WAIT_SECONDS = 120.0
_MAX_TAG = 60  # Nova: tags are 1-60 characters without ',' or '/'
_MAX_META = 255  # Nova: metadata keys and values are at most 255 characters
_CLOUDS_YAML_SEARCH = (
    "./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml"
    " (or the file named by OS_CLIENT_CONFIG_FILE)"
)

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A", bound="_Adapter")


# --- error translation --------------------------------------------------------------------


def translate(
    exc: BaseException, *, region: str | None, cloud: str | None = None
) -> errors.PhoenixError:
    """The ``phoenix.errors`` type for an exception raised by openstacksdk or keystoneauth.

    ``region`` says where the call went (carried on provider errors and named in the
    message); ``cloud`` names the clouds.yaml entry for configuration errors.
    """
    if isinstance(exc, errors.PhoenixError):
        return exc
    where = f" in region {region}" if region else ""
    text = _describe(exc)

    # Configuration: nothing was sent anywhere yet.
    if isinstance(exc, os_exc.ConfigException | ks_exc.AuthPluginException):
        return errors.InputError(_config_message(text, cloud))

    status = _status_of(exc)
    if status is not None:
        return _from_status(status, text, _headers_of(exc), region=region, where=where)

    if "no valid host" in text.lower():
        return errors.CapacityError(
            f"no capacity{where}: {text}; try another flavor or availability zone, or"
            " let failover use the next region",
            region=region,
        )
    if isinstance(
        exc,
        os_exc.EndpointNotFound | ks_exc.EndpointNotFound | os_exc.ServiceDiscoveryException,
    ):
        return errors.RegionUnavailable(
            f"no endpoint for region {region!r} in the service catalog ({text}); check the"
            " spec's regions against `openstack region list` / `openstack catalog list`",
            region=region,
        )
    if isinstance(exc, ks_exc.AuthorizationFailure | ks_exc.MissingAuthMethods):
        return errors.AuthError(
            f"authentication failed{where}: {text}; check the credentials in clouds.yaml"
            " (provider.cloud) or the OS_* environment variables",
            region=region,
        )
    if isinstance(exc, ks_exc.ConnectTimeout):
        return errors.Transient(f"timed out connecting to the API{where}: {text}", region=region)
    if isinstance(exc, ks_exc.ConnectionError) and _dropped_mid_request(text):
        return errors.Transient(
            f"the API closed the connection without answering{where}: {text}", region=region
        )
    if isinstance(exc, ks_exc.ConnectionError):  # refused, no route, DNS, TLS, unknown
        return errors.RegionUnavailable(
            f"cannot reach the API{where}: {text}; check the network path to the endpoint"
            " (and cacert / verify settings in clouds.yaml for TLS errors)",
            region=region,
        )
    if isinstance(exc, ks_exc.DiscoveryFailure):
        return errors.RegionUnavailable(
            f"API version discovery failed{where}: {text}", region=region
        )
    if isinstance(exc, os_exc.ResourceTimeout):
        return errors.Transient(f"timed out waiting{where}: {text}", region=region)
    if isinstance(exc, os_exc.DuplicateResource):
        return errors.InputError(f"ambiguous name{where}: {text}; use the id instead")
    if isinstance(
        exc,
        os_exc.InvalidRequest
        | os_exc.ValidationException
        | os_exc.InvalidResourceQuery
        | os_exc.NotSupported
        | os_exc.MethodNotSupported,
    ):
        return errors.BadRequest(f"request refused{where}: {text}", region=region)
    if isinstance(exc, os_exc.InvalidResponse | ks_exc.InvalidResponse):
        return errors.Transient(f"invalid response from the API{where}: {text}", region=region)
    return errors.Permanent(f"OpenStack call failed{where}: {text}", region=region)


_DROPPED_MARKERS = (
    "connection aborted",
    "remotedisconnected",
    "connection reset",
    "broken pipe",
    "incompleteread",
)


def _dropped_mid_request(text: str) -> bool:
    """A connection that was made and then lost (a reset, a proxy or server restarting):
    worth a retry. A region is unavailable only when nothing answers at all (refused,
    unresolvable, unroutable), which failover acts on."""
    lowered = text.lower()
    return any(marker in lowered for marker in _DROPPED_MARKERS)


_AUTH_HINTS = AuthHints(
    unauthorized="check the credentials in clouds.yaml (provider.cloud) or the OS_*"
    " environment variables",
    forbidden="check the project's roles (e.g. member, load-balancer_member) and the"
    " cloud's policy",
)


def _from_status(
    status: int, text: str, headers: Mapping[str, str], *, region: str | None, where: str
) -> errors.PhoenixError:
    if "no valid host" in text.lower():
        return errors.CapacityError(
            f"no capacity{where}: {text}; try another flavor or availability zone",
            region=region,
        )
    return error_for_status(status, text, headers, region=region, where=where, hints=_AUTH_HINTS)


def _status_of(exc: BaseException) -> int | None:
    if isinstance(exc, os_exc.HttpException):
        status = exc.status_code
        if status is None and exc.response is not None:
            status = exc.response.status_code
        return int(status) if status is not None else None
    if isinstance(exc, ks_exc.HttpError):
        return int(exc.http_status) if exc.http_status else None
    return None


def _headers_of(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _describe(exc: BaseException) -> str:
    """The most useful one-line text of an SDK exception (never credentials)."""
    if isinstance(exc, os_exc.HttpException):
        details = exc.details or ""
        message = exc.message if exc.message and exc.message != "Error" else ""
        parts = [p for p in (message, str(details)) if p]
        text = ": ".join(dict.fromkeys(parts)) or exc.__class__.__name__
        method, url = _text_of(exc.method), _text_of(exc.url)
        if method and url:
            text = f"{text} ({method} {url})"
        return text
    if isinstance(exc, ks_exc.HttpError):
        return f"{exc.message}: {exc.details}" if exc.details else str(exc.message)
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _text_of(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def _config_message(text: str, cloud: str | None) -> str:
    if cloud:
        head = f"provider.cloud: cannot use OpenStack cloud {cloud!r} ({text})"
    else:
        head = (
            "provider.cloud is not set and the OS_* environment variables do not describe a"
            f" cloud ({text})"
        )
    return (
        f"{head}; clouds.yaml is searched in {_CLOUDS_YAML_SEARCH}: add the cloud there and"
        " name it in provider.cloud, or export OS_AUTH_URL, OS_USERNAME, OS_PASSWORD,"
        " OS_PROJECT_NAME (and domains)"
    )


_SDK_ERRORS: tuple[type[BaseException], ...] = (
    os_exc.SDKException,
    ks_exc.ClientException,
)


class _Adapter:
    """Base of the adapters: knows the cloud, and the region a call goes to."""

    def __init__(self, cloud: OpenStackCloud) -> None:
        self._cloud = cloud

    def _region_of_call(self, args: tuple[Any, ...]) -> str | None:
        first = args[0] if args else None
        return first if isinstance(first, str) else None

    def close(self) -> None:
        self._cloud.close()


def _translated(
    method: Callable[Concatenate[A, P], R],
) -> Callable[Concatenate[A, P], R]:
    """Run an adapter method so that no SDK exception escapes it."""

    @functools.wraps(method)
    def wrapper(self: A, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except _SDK_ERRORS as exc:
            region = self._region_of_call(tuple(args))
            raise translate(exc, region=region, cloud=self._cloud.cloud_name) from exc

    return wrapper


# --- the shared cloud: connections, options --------------------------------------------------


@dataclass(frozen=True)
class _PoolRef:
    pool_id: str
    lb_id: str
    listener_ids: tuple[str, ...]


class OpenStackCloud:
    """Lazily opened connections (one per region) and the provider's options."""

    def __init__(
        self,
        cloud: str | None,
        regions: Sequence[str],
        *,
        clock: Clock,
        interface: str | None = None,
        api_timeout: float | None = None,
        container: str = DEFAULT_CONTAINER,
        lb_wait_seconds: float = DEFAULT_LB_WAIT_SECONDS,
        store_region: str | None = None,
        dns_region: str | None = None,
        connect: Callable[..., Any] | None = None,
    ) -> None:
        self.cloud_name = cloud
        self.regions = tuple(regions)
        self.clock = clock
        self.container = container
        self.lb_wait_seconds = lb_wait_seconds
        self.store_region = store_region or self.regions[0]
        self.dns_region = dns_region
        self._extra: dict[str, Any] = {}
        if interface is not None:
            self._extra["interface"] = interface
        if api_timeout is not None:
            self._extra["api_timeout"] = api_timeout
        self._connect = connect if connect is not None else openstack.connect
        self.requests = RequestTally("openstack")
        # Names this process has asked Nova to create: only a retry of one of those can
        # find the server already there (see OpenStackCompute.create_node).
        self.create_sent: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._connections: dict[str, Any] = {}
        self._named_locks: dict[tuple[str, ...], threading.Lock] = {}
        # Positive lookups only: ids of images/flavors/networks do not change meaning.
        self.cache: dict[tuple[str, ...], Any] = {}

    def check_config(self) -> None:
        """Load clouds.yaml / OS_* for every region (no network I/O): bad input fails here."""
        for region in self.regions:
            try:
                openstack.config.get_cloud_region(
                    cloud=self.cloud_name, region_name=region, **self._extra
                )
            except _SDK_ERRORS as exc:
                raise translate(exc, region=region, cloud=self.cloud_name) from exc

    def conn(self, region: str) -> Any:
        """The region's connection, opened on first use (shared by threads)."""
        with self._lock:
            existing = self._connections.get(region)
            if existing is not None:
                return existing
            try:
                connection = self._connect(
                    cloud=self.cloud_name, region_name=region, **self._extra
                )
            except _SDK_ERRORS as exc:
                raise translate(exc, region=region, cloud=self.cloud_name) from exc
            self._connections[region] = connection
            SessionCounter(self.requests).attach(connection)
            log.debug("openstack.connected", cloud=self.cloud_name, region=region)
            return connection

    def named_lock(self, *key: str) -> threading.Lock:
        """One lock per key: serialises this process's writes to one resource."""
        with self._lock:
            lock = self._named_locks.get(key)
            if lock is None:
                lock = self._named_locks[key] = threading.Lock()
            return lock

    def close(self) -> None:
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
        for connection in connections:
            try:
                connection.close()
            except Exception as exc:  # closing must not fail a deploy's cleanup
                log.debug("openstack.close_failed", error=type(exc).__name__)


def _find(finder: Callable[..., Any], name_or_id: str) -> Any:
    """``finder(name_or_id)`` or None when nothing matches. openstacksdk deprecates
    ``ignore_missing=True`` on find_* (its default flips in 6.0): ask for the exception."""
    try:
        return finder(name_or_id, ignore_missing=False)
    except os_exc.NotFoundException:
        return None


# --- small readers of SDK objects (Any stays here) ----------------------------------------------


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    value = getattr(obj, name, default)
    return default if value is None else value


def _str_map(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): str(v) for k, v in raw.items()}


def _parse_time(raw: Any) -> datetime | None:
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, str) and raw:
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _int_tag(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _safe_tag(text: str) -> str:
    cleaned = text.replace(",", "_").replace("/", "_")
    return cleaned[:_MAX_TAG]


def app_tag(app: str) -> str:
    """The Nova server tag that marks a server as the app's (used to filter listings)."""
    return _safe_tag(f"phoenix-app={app}")


def release_tag(release: str) -> str:
    """The Nova server tag that names a server's release (for people and other tools)."""
    return _safe_tag(f"phoenix-release={release}")


# Nova status -> NodeState; anything not listed is a server that cannot serve (ERROR).
_STATUS = {
    "BUILD": NodeState.BUILD,
    "REBUILD": NodeState.BUILD,
    "ACTIVE": NodeState.ACTIVE,
    # Transitional states of a running server: health checks judge whether it serves.
    "REBOOT": NodeState.ACTIVE,
    "HARD_REBOOT": NodeState.ACTIVE,
    "MIGRATING": NodeState.ACTIVE,
    "RESIZE": NodeState.ACTIVE,
    "VERIFY_RESIZE": NodeState.ACTIVE,
    "REVERT_RESIZE": NodeState.ACTIVE,
    "PASSWORD": NodeState.ACTIVE,
    "ERROR": NodeState.ERROR,
    "DELETED": NodeState.DELETING,
    "SOFT_DELETED": NodeState.DELETING,
}


def _first_fixed_ip(addresses: Any) -> str | None:
    if not isinstance(addresses, Mapping):
        return None
    found: list[tuple[int, str]] = []
    for entries in addresses.values():
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, Mapping) or not entry.get("addr"):
                continue
            if entry.get("OS-EXT-IPS:type", "fixed") != "fixed":
                continue
            found.append((0 if entry.get("version", 4) == 4 else 1, str(entry["addr"])))
    if not found:
        return None
    found.sort(key=lambda item: item[0])  # IPv4 first, otherwise in Nova's order
    return found[0][1]


def _node(server: Any, region: str, *, now: datetime) -> Node:
    metadata = _str_map(_attr(server, "metadata", {}))
    status = str(_attr(server, "status", "BUILD")).upper()
    state = _STATUS.get(status, NodeState.ERROR)
    task_state = str(_attr(server, "task_state", "")).lower()
    if task_state == "deleting":
        state = NodeState.DELETING
    fault: str | None = None
    if state is NodeState.ERROR:
        raw_fault = _attr(server, "fault")
        if isinstance(raw_fault, Mapping) and raw_fault.get("message"):
            fault = str(raw_fault["message"])
        elif status != "ERROR":
            fault = f"server is {status}"
        else:
            fault = "server is in ERROR (Nova gave no fault message)"
    return Node(
        id=str(server.id),
        name=str(_attr(server, "name", "")),
        region=region,
        app=metadata.get(TAG_APP, ""),
        release=metadata.get(TAG_RELEASE, ""),
        index=_int_tag(metadata.get(TAG_INDEX)),
        state=state,
        created_at=_parse_time(_attr(server, "created_at")) or now,
        address=_first_fixed_ip(_attr(server, "addresses")),
        attempt=_int_tag(metadata.get(TAG_ATTEMPT)),
        fault=fault,
        metadata=metadata,
        # Nova's scheduler found no host: the region is out of capacity, not the node bad.
        capacity_fault=fault is not None and "no valid host" in fault.lower(),
    )


# Glance's own fields: everything else on an image is a property.
_GLANCE_CORE = frozenset(
    {
        "id", "name", "status", "visibility", "protected", "checksum", "os_hash_algo",
        "os_hash_value", "owner", "size", "virtual_size", "min_ram", "min_disk",
        "created_at", "updated_at", "tags", "file", "schema", "self", "direct_url",
        "locations", "container_format", "disk_format", "os_hidden", "properties",
        "stores", "location", "owner_specified.openstack.md5",
    }
)


def _image(raw: Any) -> Image:
    body = raw.to_dict(headers=False, computed=False, ignore_none=True, original_names=True)
    properties = {
        str(k): _prop_text(v) for k, v in body.items() if k not in _GLANCE_CORE
    }
    properties.update({str(k): _prop_text(v) for k, v in _str_any(body.get("properties"))})
    return Image(
        id=str(raw.id),
        name=str(_attr(raw, "name", "")),
        created_at=_parse_time(_attr(raw, "created_at")),
        properties=properties,
    )


def _str_any(raw: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(raw, Mapping):
        yield from raw.items()


def _prop_text(value: Any) -> str:
    if isinstance(value, bool):  # Glance writes booleans in properties as true/false
        return "true" if value else "false"
    return str(value)


# --- Compute: Nova (+ Glance for images, Neutron for networks) ---------------------------------


class OpenStackCompute(_Adapter):
    """``Compute`` over Nova, Glance and Neutron."""

    @_translated
    def list_nodes(self, region: str, app: str) -> list[Node]:
        return [n for n in self._servers(region, app) if n.app == app]

    def _servers(self, region: str, app: str) -> list[Node]:
        conn = self._cloud.conn(region)
        now = self._cloud.clock.now()
        # The generator follows Nova's "next" links, so every page is read.
        return [
            _node(server, region, now=now)
            for server in conn.compute.servers(details=True, tags=app_tag(app))
        ]

    def _existing(self, region: str, app: str, name: str) -> Node | None:
        """The app's live server called ``name``, if any (one filtered listing)."""
        conn = self._cloud.conn(region)
        now = self._cloud.clock.now()
        # Nova's name filter is a regular expression: anchor it and escape the name.
        for server in conn.compute.servers(
            details=True, tags=app_tag(app), name=f"^{re.escape(name)}$"
        ):
            node = _node(server, region, now=now)
            if node.name == name and node.app == app and node.state is not NodeState.DELETING:
                return node
        return None

    @_translated
    def create_node(self, region: str, request: NodeRequest) -> Node:
        app = request.metadata.get(TAG_APP, "")
        if not app:
            raise errors.BadRequest(
                f"{request.name}: a server needs the {TAG_APP} metadata key", region=region
            )
        metadata = _checked_metadata(request, region)
        with self._cloud.named_lock("create", region, request.name):
            # The engine asks for a name only after a listing showed no such server, and
            # the lease keeps other actors out; so only a retry of a create this process
            # sent (whose answer was lost) can find it there. Looking it up on every
            # create would list the app's servers once per server (O(n^2) a deploy).
            sent = (region, request.name)
            if sent in self._cloud.create_sent:
                existing = self._existing(region, app, request.name)
                if existing is not None:
                    return existing
            conn = self._cloud.conn(region)
            flavor = self.get_flavor(region, request.flavor)
            self._check_image(conn, region, request.image_id)
            attrs: dict[str, Any] = {
                "name": request.name,
                "image_id": request.image_id,
                "flavor_id": flavor.id,
                "networks": self._networks(conn, region, request.network),
                "user_data": base64.b64encode(request.user_data.encode("utf-8")).decode(
                    "ascii"
                ),
                "metadata": metadata,
                "tags": [app_tag(app)]
                + ([release_tag(r)] if (r := request.metadata.get(TAG_RELEASE)) else []),
            }
            if request.key_name:
                attrs["key_name"] = request.key_name
            if request.security_groups:
                attrs["security_groups"] = [{"name": sg} for sg in request.security_groups]
            if request.availability_zone:
                attrs["availability_zone"] = request.availability_zone
            if request.server_group:
                attrs["scheduler_hints"] = {
                    "group": self._server_group(conn, region, request.server_group)
                }
            self._cloud.create_sent.add(sent)
            created = conn.compute.create_server(**attrs)
            # Nova's answer holds only the id; the server is BUILDing, with no address
            # yet. The next poll's listing reads it whole, so no GET per server here.
            return Node(
                id=str(created.id),
                name=request.name,
                region=region,
                app=app,
                release=request.metadata.get(TAG_RELEASE, ""),
                index=_int_tag(request.metadata.get(TAG_INDEX)),
                state=NodeState.BUILD,
                created_at=self._cloud.clock.now(),
                attempt=_int_tag(request.metadata.get(TAG_ATTEMPT)),
                metadata=dict(metadata),
            )

    def _check_image(self, conn: Any, region: str, image_id: str) -> None:
        key = ("image", region, image_id)
        if key in self._cloud.cache:
            return
        try:
            conn.image.get_image(image_id)
        except os_exc.NotFoundException as exc:
            raise errors.UnknownResource(
                f"image {image_id!r} not found in {region}; check the spec's image, or"
                " upload the image to that region"
            ) from exc
        self._cloud.cache[key] = True

    def _networks(self, conn: Any, region: str, network: str | None) -> Any:
        if network is None or network.lower() == "auto":
            # Compute API >= 2.37 requires the field; "auto" lets Nova pick the project's
            # only network (or allocate one), which is what omitting it used to mean.
            return "auto"
        if network.lower() == "none":
            return "none"
        key = ("network", region, network)
        if key not in self._cloud.cache:
            found = _find(conn.network.find_network, network)
            if found is None:
                raise errors.UnknownResource(
                    f"network {network!r} not found in {region}; check the spec's network"
                    " (`openstack network list`)"
                )
            self._cloud.cache[key] = str(found.id)
        return [{"uuid": self._cloud.cache[key]}]

    def _server_group(self, conn: Any, region: str, name_or_id: str) -> str:
        key = ("server_group", region, name_or_id)
        if key not in self._cloud.cache:
            found = _find(conn.compute.find_server_group, name_or_id)
            if found is None:
                raise errors.UnknownResource(
                    f"server group {name_or_id!r} not found in {region}; create it"
                    " (`openstack server group create --policy anti-affinity ...`) or fix"
                    " server.server_group"
                )
            self._cloud.cache[key] = str(found.id)
        return str(self._cloud.cache[key])

    @_translated
    def delete_node(self, region: str, node_id: str) -> None:
        try:
            self._cloud.conn(region).compute.delete_server(node_id, ignore_missing=True)
        except os_exc.NotFoundException:
            return

    @_translated
    def set_metadata(self, region: str, node_id: str, metadata: Mapping[str, str]) -> None:
        for key, value in metadata.items():
            _check_meta_item(key, value, where=node_id, region=region)
        self._cloud.conn(region).compute.set_server_metadata(node_id, **dict(metadata))

    @_translated
    def find_images(self, region: str, query: ImageQuery) -> list[Image]:
        images = self._cloud.conn(region).image
        if query.id is not None:
            try:
                found = [_image(images.get_image(query.id))]
            except os_exc.NotFoundException:
                return []
        elif query.name is not None:
            found = [_image(raw) for raw in images.images(name=query.name)]
        else:
            # Glance cannot filter by arbitrary properties server-side: page through the
            # active images and compare here.
            found = [_image(raw) for raw in images.images(status="active")]
        return [
            image
            for image in found
            if (query.name is None or image.name == query.name)
            and all(image.properties.get(k) == str(v) for k, v in query.properties.items())
        ]

    @_translated
    def get_flavor(self, region: str, name: str) -> Flavor:
        key = ("flavor", region, name)
        cached = self._cloud.cache.get(key)
        if isinstance(cached, Flavor):
            return cached
        compute = self._cloud.conn(region).compute
        raw = _find(compute.find_flavor, name)
        if raw is None:
            known = sorted(str(_attr(f, "name", "")) for f in compute.flavors())
            raise errors.UnknownResource(
                f"flavor {name!r} not found in {region} (flavors: {', '.join(known) or 'none'});"
                " fix the spec's flavor"
            )
        flavor = Flavor(
            id=str(raw.id),
            name=str(_attr(raw, "name", name)),
            vcpus=int(_attr(raw, "vcpus", 1)),
            ram_mb=int(_attr(raw, "ram", 0)),
        )
        self._cloud.cache[key] = flavor
        return flavor

    @_translated
    def quota(self, region: str) -> Quota:
        absolute = _attr(self._cloud.conn(region).compute.get_limits(), "absolute")

        def headroom(limit_name: str, used_name: str) -> int | None:
            limit = _attr(absolute, limit_name)
            if limit is None or int(limit) < 0:  # -1: unlimited
                return None
            return max(0, int(limit) - int(_attr(absolute, used_name, 0)))

        return Quota(
            instances=headroom("instances", "instances_used"),
            vcpus=headroom("total_cores", "total_cores_used"),
            ram_mb=headroom("total_ram", "total_ram_used"),
        )


def _check_meta_item(key: str, value: str, *, where: str, region: str) -> None:
    if not key or len(key) > _MAX_META or len(str(value)) > _MAX_META:
        raise errors.BadRequest(
            f"{where}: metadata {key[:40]!r}: Nova allows keys and values of 1-{_MAX_META}"
            " characters",
            region=region,
        )


def _checked_metadata(request: NodeRequest, region: str) -> dict[str, str]:
    for key, value in request.metadata.items():
        _check_meta_item(key, value, where=request.name, region=region)
    return {str(k): str(v) for k, v in request.metadata.items()}


# --- LoadBalancer: Octavia ------------------------------------------------------------------


class OpenStackLoadBalancer(_Adapter):
    """``LoadBalancer``, ``MemberBatcher`` and ``PoolEndpoint`` over Octavia; the pool
    exists beforehand."""

    def _pool(self, region: str, pool: str) -> _PoolRef:
        key = ("pool", region, pool)
        cached = self._cloud.cache.get(key)
        if isinstance(cached, _PoolRef):
            return cached
        raw = _find(self._cloud.conn(region).load_balancer.find_pool, pool)
        if raw is None:
            raise errors.UnknownResource(
                f"load balancer pool {pool!r} not found in {region}; create it (`openstack"
                " loadbalancer pool create ...`) or fix load_balancer.pool"
            )
        lbs = [str(lb["id"]) for lb in _attr(raw, "loadbalancers", []) if "id" in lb]
        if not lbs and _attr(raw, "loadbalancer_id"):
            lbs = [str(raw.loadbalancer_id)]
        if not lbs:
            raise errors.UnknownResource(
                f"load balancer pool {pool!r} in {region} belongs to no load balancer"
            )
        listeners = tuple(
            str(item["id"]) for item in _attr(raw, "listeners", []) if "id" in item
        )
        ref = _PoolRef(pool_id=str(raw.id), lb_id=lbs[0], listener_ids=listeners)
        self._cloud.cache[key] = ref
        return ref

    def _members(self, region: str, ref: _PoolRef) -> list[Any]:
        return list(self._cloud.conn(region).load_balancer.members(ref.pool_id))

    def _wait_active(self, region: str, ref: _PoolRef) -> bool:
        """Octavia refuses writes (409) while the load balancer is PENDING_*: wait it out.
        True when it had to wait (what was read before may have changed since)."""
        clock = self._cloud.clock
        octavia = self._cloud.conn(region).load_balancer
        deadline = clock.now() + timedelta(seconds=self._cloud.lb_wait_seconds)
        delay = 0.25
        waited = False
        while True:
            status = str(_attr(octavia.get_load_balancer(ref.lb_id), "provisioning_status", ""))
            if status == "ACTIVE":
                return waited
            if not status.startswith("PENDING"):
                raise errors.Permanent(
                    f"load balancer {ref.lb_id} in {region} is {status or 'in no state'};"
                    " it needs an operator (`openstack loadbalancer failover` or recreate it)",
                    region=region,
                )
            if clock.now() >= deadline:
                raise errors.Transient(
                    f"load balancer {ref.lb_id} in {region} still {status} after"
                    f" {self._cloud.lb_wait_seconds:g}s; retry",
                    region=region,
                )
            clock.sleep(delay)
            waited = True
            delay = min(delay * 2, 2.0)

    @_translated
    def list_members(self, region: str, pool: str) -> list[Member]:
        return [_member(raw) for raw in self._members(region, self._pool(region, pool))]

    @_translated
    def add_member(self, region: str, pool: str, name: str, address: str, port: int) -> None:
        ref = self._pool(region, pool)
        octavia = self._cloud.conn(region).load_balancer
        with self._cloud.named_lock("lb", region, ref.lb_id):
            mine = [m for m in self._members(region, ref) if _attr(m, "name") == name]
            for stale in mine:
                # Octavia cannot change a member's address or port: replace it.
                if _attr(stale, "address") != address or _attr(stale, "protocol_port") != port:
                    self._wait_active(region, ref)
                    octavia.delete_member(stale.id, ref.pool_id, ignore_missing=True)
            mine = [
                m
                for m in mine
                if _attr(m, "address") == address and _attr(m, "protocol_port") == port
            ]
            if mine:
                self._serve(region, ref, mine[0])
                return
            self._wait_active(region, ref)
            try:
                octavia.create_member(
                    ref.pool_id,
                    name=name,
                    address=address,
                    protocol_port=port,
                    weight=1,
                    admin_state_up=True,
                )
            except os_exc.ConflictException as exc:
                # "Another member on this pool is already using ip ... on protocol_port ..."
                if "already" not in _describe(exc).lower():
                    raise
                same = [
                    m
                    for m in self._members(region, ref)
                    if _attr(m, "address") == address and _attr(m, "protocol_port") == port
                ]
                if not same:
                    raise
                self._serve(region, ref, same[0])

    def _serve(self, region: str, ref: _PoolRef, member: Any) -> None:
        if _attr(member, "weight", 1) != 0 and _attr(member, "is_admin_state_up", True):
            return
        self._wait_active(region, ref)
        self._cloud.conn(region).load_balancer.update_member(
            member.id, ref.pool_id, weight=1, admin_state_up=True
        )

    @_translated
    def drain_member(self, region: str, pool: str, name: str) -> None:
        ref = self._pool(region, pool)
        with self._cloud.named_lock("lb", region, ref.lb_id):
            mine = [m for m in self._members(region, ref) if _attr(m, "name") == name]
            if not mine:
                raise errors.NotFound(
                    f"no member {name!r} in pool {pool!r} in {region}", region=region
                )
            for member in mine:
                if _attr(member, "weight", 1) == 0:
                    continue
                self._wait_active(region, ref)
                self._cloud.conn(region).load_balancer.update_member(
                    member.id, ref.pool_id, weight=0
                )

    @_translated
    def remove_member(self, region: str, pool: str, name: str) -> None:
        ref = self._pool(region, pool)
        with self._cloud.named_lock("lb", region, ref.lb_id):
            for member in [m for m in self._members(region, ref) if _attr(m, "name") == name]:
                self._wait_active(region, ref)
                try:
                    self._cloud.conn(region).load_balancer.delete_member(
                        member.id, ref.pool_id, ignore_missing=True
                    )
                except os_exc.NotFoundException:
                    continue

    @_translated
    def change_members(self, region: str, pool: str, changes: Sequence[MemberChange]) -> None:
        """``MemberBatcher`` through Octavia's batch member update: one ``PUT
        /lbaas/pools/{id}/members`` with the whole desired list (one PENDING_UPDATE cycle
        for any number of changes), none when the pool already looks as asked."""
        ref = self._pool(region, pool)
        with self._cloud.named_lock("lb", region, ref.lb_id):
            current = self._member_bodies(region, ref)
            desired = _desired_members(current, changes)
            if desired == current:
                return
            if self._wait_active(region, ref):
                # It was PENDING_*: the members read may have moved on since.
                current = self._member_bodies(region, ref)
                desired = _desired_members(current, changes)
                if desired == current:
                    return
            response = self._cloud.conn(region).load_balancer.put(
                f"/lbaas/pools/{quote(ref.pool_id, safe='')}/members",
                json={"members": list(desired.values())},
            )
            os_exc.raise_from_response(response)

    def _member_bodies(self, region: str, ref: _PoolRef) -> dict[_MemberKey, dict[str, Any]]:
        """The pool's members as batch-update entries, by (address, port): the key Octavia
        matches a batch by. Members on their way out (PENDING_DELETE) count as gone."""
        return {
            _member_key(body): body
            for body in (_member_body(raw) for raw in self._members(region, ref)
                         if _attr(raw, "provisioning_status") != "PENDING_DELETE")
        }

    @_translated
    def url(self, region: str, pool: str) -> str:
        ref = self._pool(region, pool)
        octavia = self._cloud.conn(region).load_balancer
        lb = octavia.get_load_balancer(ref.lb_id)
        vip = str(_attr(lb, "vip_address", ""))
        listener_ids = ref.listener_ids or tuple(
            str(item["id"]) for item in _attr(lb, "listeners", []) if "id" in item
        )
        if not vip or not listener_ids:
            raise errors.UnknownResource(
                f"pool {pool!r} in {region} has no listener or VIP to reach it by"
            )
        listener = octavia.get_listener(listener_ids[0])
        protocol = str(_attr(listener, "protocol", "HTTP")).upper()
        scheme = "https" if protocol in ("HTTPS", "TERMINATED_HTTPS") else "http"
        host = f"[{vip}]" if ":" in vip else vip
        return f"{scheme}://{host}:{int(_attr(listener, 'protocol_port', 80))}"


_MemberKey = tuple[str, int]
_BATCH_ORDER = {MemberAction.ADD: 0, MemberAction.DRAIN: 1, MemberAction.REMOVE: 2}


def _member_key(body: Mapping[str, Any]) -> _MemberKey:
    return _canonical_ip(str(body["address"])), int(body["protocol_port"])


def _member_body(raw: Any) -> dict[str, Any]:
    """A member as a batch-update entry that leaves it exactly as it is: Octavia resets
    every field a batch entry leaves out to its create default (weight 1, admin up, no
    backup, no monitor address), so everything that is set is sent back."""
    body: dict[str, Any] = {
        "name": str(_attr(raw, "name", "")),
        "address": str(_attr(raw, "address", "")),
        "protocol_port": int(_attr(raw, "protocol_port", 0)),
        "weight": int(_attr(raw, "weight", 1)),
        "admin_state_up": bool(_attr(raw, "is_admin_state_up", True)),
        "backup": bool(_attr(raw, "backup", False)),
    }
    for field in ("subnet_id", "monitor_address", "monitor_port"):
        value = _attr(raw, field)
        if value is not None:
            body[field] = value
    tags = _attr(raw, "tags", [])
    if tags:
        body["tags"] = list(tags)
    return body


def _desired_members(
    current: Mapping[_MemberKey, dict[str, Any]], changes: Sequence[MemberChange]
) -> dict[_MemberKey, dict[str, Any]]:
    """The pool after ``changes``, as the single-member calls would leave it: adds, then
    drains, then removals. ADD replaces a same-named member at another address or port
    and serves a draining one (weight 1, admin up); DRAIN sets weight 0 (as
    ``drain_member``) and ignores a missing member; REMOVE leaves the member out."""
    desired = {key: dict(body) for key, body in current.items()}
    for change in sorted(changes, key=lambda c: _BATCH_ORDER[c.action]):
        named = [key for key, body in desired.items() if body["name"] == change.name]
        if change.action is MemberAction.ADD:
            key = (_canonical_ip(change.address), change.port)
            for stale in named:
                if stale != key:  # Octavia cannot move a member: replace it
                    del desired[stale]
            body = desired.setdefault(key, {
                "name": change.name, "address": change.address,
                "protocol_port": change.port, "weight": 1, "admin_state_up": True,
            })
            body["name"] = change.name
            if body["weight"] == 0 or not body["admin_state_up"]:
                body.update(weight=1, admin_state_up=True)
        elif change.action is MemberAction.DRAIN:
            for key in named:
                desired[key]["weight"] = 0
        else:
            for key in named:
                del desired[key]
    return desired


def _member(raw: Any) -> Member:
    weight = _attr(raw, "weight", 1)
    serving = weight != 0 and _attr(raw, "is_admin_state_up", True)
    operating = str(_attr(raw, "operating_status", "")).upper()
    online = None if operating in ("", "NO_MONITOR") else operating == "ONLINE"
    return Member(
        name=str(_attr(raw, "name", "")),
        address=str(_attr(raw, "address", "")),
        port=int(_attr(raw, "protocol_port", 0)),
        state=MemberState.SERVING if serving else MemberState.DRAINING,
        active_connections=None,
        online=online,
    )


# --- Dns: Designate ---------------------------------------------------------------------------


def _fqdn(name: str, zone: str) -> str:
    zone_fqdn = zone if zone.endswith(".") else zone + "."
    if name.endswith("."):
        return name
    bare = zone_fqdn.rstrip(".")
    if name == bare or name.endswith("." + bare):
        return name + "."
    return f"{name}.{zone_fqdn}"


def _record_type(values: Sequence[str], zone: str, name: str) -> str:
    try:
        versions = {ipaddress.ip_address(v).version for v in values}
    except ValueError as exc:
        raise errors.BadRequest(f"{name} in {zone}: record values must be IP addresses") from exc
    if len(versions) > 1:
        raise errors.BadRequest(f"{name} in {zone}: mix of IPv4 and IPv6 values")
    return "AAAA" if versions == {6} else "A"


def _canonical_ip(value: str) -> str:
    """An address as Designate stores it (``2001:DB8::1`` -> ``2001:db8::1``)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


class OpenStackDns(_Adapter):
    """``Dns`` over Designate. Zones are global: the first reachable region answers."""

    def _region_of_call(self, args: tuple[Any, ...]) -> str | None:
        return self._cloud.dns_region or self._cloud.regions[0]

    def _each_region(self) -> Iterator[str]:
        if self._cloud.dns_region:
            yield self._cloud.dns_region
        else:
            yield from self._cloud.regions

    def _in_some_region(self, call: Callable[[Any, str], R]) -> R:
        """Run against the first region whose Designate answers (failover needs DNS
        exactly when the primary region is down)."""
        failure: errors.PhoenixError | None = None
        for region in self._each_region():
            try:
                return call(self._cloud.conn(region).dns, region)
            except _SDK_ERRORS as exc:
                translated = translate(exc, region=region, cloud=self._cloud.cloud_name)
                if not isinstance(translated, errors.RegionUnavailable):
                    raise translated from exc
                failure = translated
            except errors.RegionUnavailable as exc:
                failure = exc
        assert failure is not None
        raise failure

    @staticmethod
    def _zone(dns: Any, zone: str, region: str) -> Any:
        zone_fqdn = zone if zone.endswith(".") else zone + "."
        found = _find(dns.find_zone, zone_fqdn)
        if found is None:
            raise errors.UnknownResource(
                f"DNS zone {zone_fqdn!r} not found (Designate, {region}); create it or fix"
                " dns.zone"
            )
        return found

    @staticmethod
    def _recordsets(dns: Any, zone_obj: Any, fqdn: str) -> list[Any]:
        return [
            rs
            for rs in dns.recordsets(zone_obj, name=fqdn)
            if str(_attr(rs, "type", "")).upper() in ("A", "AAAA")
        ]

    @_translated
    def get_record(self, zone: str, name: str) -> DnsRecord | None:
        def call(dns: Any, region: str) -> DnsRecord | None:
            zone_obj = self._zone(dns, zone, region)
            found = self._recordsets(dns, zone_obj, _fqdn(name, zone))
            if not found:
                return None
            rs = found[0]
            ttl = _attr(rs, "ttl") or _attr(zone_obj, "ttl", 0)
            values = tuple(sorted(str(v) for v in _attr(rs, "records", [])))
            return DnsRecord(zone=zone, name=name, values=values, ttl=int(ttl))

        return self._in_some_region(call)

    @_translated
    def set_record(self, zone: str, name: str, values: tuple[str, ...], ttl: int) -> None:
        kind = _record_type(values, zone, name)
        fqdn = _fqdn(name, zone)
        # Designate stores addresses canonically: compare (and send) them that way, or an
        # IPv6 value written as "2001:DB8::1" would be rewritten on every call.
        wanted = sorted({_canonical_ip(v) for v in values})

        def call(dns: Any, region: str) -> None:
            zone_obj = self._zone(dns, zone, region)
            existing = self._recordsets(dns, zone_obj, fqdn)

            def type_of(rs: Any) -> str:
                return str(_attr(rs, "type", "")).upper()

            same = [rs for rs in existing if type_of(rs) == kind]
            if same:
                rs = same[0]
                current = sorted(_canonical_ip(str(v)) for v in _attr(rs, "records", []))
                if current != wanted or _attr(rs, "ttl") != ttl:
                    dns.update_recordset(rs, records=wanted, ttl=ttl)
            else:
                dns.create_recordset(zone_obj, name=fqdn, type=kind, records=wanted, ttl=ttl)
            # A <-> AAAA switch: the old type goes only once the new one is in place, so
            # the name never resolves to nothing (nor stays so when the create fails).
            for other in existing:
                if type_of(other) != kind:
                    dns.delete_recordset(other, zone_obj, ignore_missing=True)

        self._in_some_region(call)


# --- Store: Swift ------------------------------------------------------------------------------


def _object_path(key: str) -> str:
    """``key`` quoted for a Swift URL, each ``/``-separated segment kept.

    ``.`` and ``..`` segments are percent-encoded: requests (urllib3) resolves dot segments
    of a URL before sending it (RFC 3986), which would turn the key ``a/../b`` into the
    object ``b``; encoded, they reach Swift as written and Swift keeps them in the name.
    """
    return "/".join(
        segment.replace(".", "%2E") if segment in (".", "..") else quote(segment, safe="")
        for segment in key.split("/")
    )


class SwiftStore(_Adapter):
    """``Store`` over one Swift container, through session-level requests.

    Objects are small (release records, the lock), so plain PUT/GET/DELETE suffice and
    ``If-None-Match: *`` gives ``create_exclusive``. Threads of this process contend on a
    per-key lock first; between processes Swift's 412 decides.
    """

    def __init__(self, cloud: OpenStackCloud) -> None:
        super().__init__(cloud)
        self._container_ready = False

    def _region_of_call(self, args: tuple[Any, ...]) -> str | None:
        return self._cloud.store_region

    @property
    def _region(self) -> str:
        return self._cloud.store_region

    def _swift(self) -> Any:
        return self._cloud.conn(self._region).object_store

    def _path(self, key: str) -> str:
        if not key:  # "/<container>/" would address the container itself
            raise errors.BadRequest("a store key cannot be empty")
        return f"/{quote(self._cloud.container, safe='')}/{_object_path(key)}"

    def _ensure_container(self) -> None:
        if self._container_ready:
            return
        response = self._swift().put(f"/{quote(self._cloud.container, safe='')}")
        os_exc.raise_from_response(response)
        self._container_ready = True

    def _put(self, key: str, data: bytes, headers: Mapping[str, str]) -> Any:
        path = self._path(key)
        self._ensure_container()
        response = self._swift().put(path, data=data, headers=dict(headers))
        if response.status_code == 404:  # the container went away: make it again
            self._container_ready = False
            self._ensure_container()
            response = self._swift().put(path, data=data, headers=dict(headers))
        return response

    @_translated
    def put(self, key: str, data: bytes) -> None:
        response = self._put(key, bytes(data), {"Content-Type": "application/octet-stream"})
        os_exc.raise_from_response(response)

    @_translated
    def get(self, key: str) -> bytes | None:
        response = self._swift().get(self._path(key))
        if response.status_code == 404:
            return None
        os_exc.raise_from_response(response)
        return bytes(response.content)

    @_translated
    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        marker = ""
        container = f"/{quote(self._cloud.container, safe='')}"
        while True:
            params = {"format": "json", "prefix": prefix}
            if marker:
                params["marker"] = marker
            response = self._swift().get(container, params=params)
            if response.status_code == 404:
                return []
            os_exc.raise_from_response(response)
            if response.status_code == 204 or not response.content:
                break
            page = [str(item["name"]) for item in response.json() if "name" in item]
            if not page:
                break
            keys.extend(page)
            marker = page[-1]
        return sorted(keys)

    @_translated
    def delete(self, key: str) -> None:
        response = self._swift().delete(self._path(key))
        if response.status_code == 404:
            return
        os_exc.raise_from_response(response)

    @_translated
    def create_exclusive(self, key: str, data: bytes) -> bool:
        with self._cloud.named_lock("store", key):
            response = self._put(
                key,
                bytes(data),
                {"If-None-Match": "*", "Content-Type": "application/octet-stream"},
            )
            if response.status_code == 412:
                return False
            os_exc.raise_from_response(response)
            return True


# --- opening from a spec ---------------------------------------------------------------------


def _store(options: OpenStackOptions, cloud: OpenStackCloud) -> Store:
    """Swift by default; ``options.store_dir`` keeps records and the lock in a directory
    instead, for clouds without Swift (then only this machine can resume or roll back)."""
    if options.store_dir is None:
        return SwiftStore(cloud)
    from phoenix.providers.local.store import DirectoryStore

    return DirectoryStore(Path(options.store_dir).expanduser().resolve())


def open_openstack_provider(spec: Spec, *, clock: Clock) -> Provider:
    """The OpenStack provider for ``spec`` (``provider: {name: openstack, cloud: ...}``).

    Credentials come from clouds.yaml (``provider.cloud`` names the entry) or, without a
    cloud name, from ``OS_*`` variables. The options are
    ``phoenix.provider_options.OpenStackOptions`` (interface, api_timeout, container,
    lb_wait_timeout, store_region, dns_region, store_dir).
    The configuration is loaded for every region now (no network I/O), so a missing
    cloud or region raises ``InputError`` before anything is touched.
    """
    if not isinstance(spec.provider, OpenStackProvider):
        raise errors.InputError(f"provider.name: {spec.provider.name!r} is not openstack")
    options = spec.provider.options
    store_region = options.store_region
    dns_region = options.dns_region
    regions = list(spec.regions)
    extra_regions = [r for r in (store_region, dns_region) if r and r not in regions]
    cloud = OpenStackCloud(
        spec.provider.cloud,
        regions + extra_regions,
        clock=clock,
        interface=options.interface,
        api_timeout=options.api_timeout,
        container=options.container,
        lb_wait_seconds=options.lb_wait_timeout,
        store_region=store_region,
        dns_region=dns_region,
    )
    cloud.check_config()
    # Failover walks only the spec's regions; extra ones serve the store or DNS.
    cloud.regions = tuple(regions)
    return Provider(
        name="openstack",
        compute=OpenStackCompute(cloud),
        load_balancer=OpenStackLoadBalancer(cloud),
        store=_store(options, cloud),
        dns=OpenStackDns(cloud) if spec.dns is not None else None,
        health_source=TrustedStateHealth("Nova") if spec.health.mode == "provider" else None,
        requests=cloud.requests,
    )
