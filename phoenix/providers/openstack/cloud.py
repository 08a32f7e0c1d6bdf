"""The cloud the adapters share: one lazily opened connection per region, named locks,
lookup caches and the request tally; and the adapters' base with its error boundary.

One ``openstack.connect(cloud=..., region_name=...)`` per region, created lazily and
shared by worker threads; credentials come from clouds.yaml or ``OS_*`` variables and
are never logged.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import openstack
import openstack.config

from phoenix.log import get_logger
from phoenix.providers.base import Clock
from phoenix.providers.openstack.request_counter import SessionCounter
from phoenix.providers.openstack.translate import SDK_ERRORS, translate
from phoenix.request_tally import RequestTally

log = get_logger("phoenix.providers.openstack")

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A", bound="Adapter")

DEFAULT_CONTAINER = "phoenix"
DEFAULT_LB_WAIT_SECONDS = 120.0


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
            except SDK_ERRORS as exc:
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
            except SDK_ERRORS as exc:
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


class Adapter:
    """Base of the adapters: knows the cloud, and the region a call goes to."""

    def __init__(self, cloud: OpenStackCloud) -> None:
        self._cloud = cloud

    def _region_of_call(self, args: tuple[Any, ...]) -> str | None:
        first = args[0] if args else None
        return first if isinstance(first, str) else None

    def close(self) -> None:
        self._cloud.close()


def translated(
    method: Callable[Concatenate[A, P], R],
) -> Callable[Concatenate[A, P], R]:
    """Run an adapter method so that no SDK exception escapes it."""

    @functools.wraps(method)
    def wrapper(self: A, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except SDK_ERRORS as exc:
            region = self._region_of_call(tuple(args))
            raise translate(exc, region=region, cloud=self._cloud.cloud_name) from exc

    return wrapper
