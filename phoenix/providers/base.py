"""The provider seam: a few narrow Protocols every backend implements.

Rules every implementation follows (the contract suite in tests/contract checks them):

* Methods are synchronous and may be called from worker threads concurrently.
* SDK exceptions never escape: they are translated into ``phoenix.errors`` types.
* ``create_node`` is idempotent by ``request.name``: if a node with that name and the same
  ``phoenix:app`` tag exists, it is returned instead of creating a second one. (A provider
  may check only for names it was itself asked for before, i.e. a retry after a lost answer:
  the engine asks for a name only after its listing showed none, under the app's lease.)
* ``delete_node``, ``remove_member`` and ``delete`` on a missing resource succeed silently;
  ``add_member`` of a present member succeeds (and makes it SERVING again).
* ``list_nodes`` returns only nodes tagged with the app, never another app's servers, and
  pages through the provider's listing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from phoenix.model import (
    DnsRecord,
    Flavor,
    Image,
    Member,
    MemberChange,
    Node,
    NodeHealth,
    NodeRequest,
    Quota,
)
from phoenix.request_tally import RequestTally


@dataclass(frozen=True)
class ImageQuery:
    """How the spec picks a golden image: by id, by name, or newest with properties."""

    id: str | None = None
    name: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Compute(Protocol):
    """Servers, images, flavors and quota of one provider (all regions)."""

    def list_nodes(self, region: str, app: str) -> list[Node]:
        """Every server tagged ``phoenix:app=app`` in the region, in any state."""
        ...

    def create_node(self, region: str, request: NodeRequest) -> Node:
        """Start building a server; returns at once (state BUILD or ACTIVE)."""
        ...

    def delete_node(self, region: str, node_id: str) -> None:
        """Delete a server; a missing server is not an error."""
        ...

    def set_metadata(self, region: str, node_id: str, metadata: Mapping[str, str]) -> None:
        """Merge metadata into a server's metadata (Phoenix's timestamps)."""
        ...

    def find_images(self, region: str, query: ImageQuery) -> list[Image]:
        """Images matching the query (all of them; the caller picks the newest)."""
        ...

    def get_flavor(self, region: str, name: str) -> Flavor:
        """The flavor by name or id; raises ``UnknownResource`` when there is none."""
        ...

    def quota(self, region: str) -> Quota:
        """Remaining headroom for new servers in the region."""
        ...


@runtime_checkable
class ImageImporter(Protocol):
    """A compute that can turn a local directory into an image (the local provider)."""

    def import_image(self, region: str, source: Path, name: str | None = None) -> Image:
        """Import ``source`` as an immutable image; the same content gives the same id."""
        ...


@runtime_checkable
class ImageDeleter(Protocol):
    """A compute that can delete an image (``phoenix image prune``)."""

    def delete_image(self, region: str, image_id: str) -> None:
        """Delete the image; a missing image is not an error."""
        ...


@runtime_checkable
class LoadBalancer(Protocol):
    """Members of one pool per region; members are named after their node."""

    def list_members(self, region: str, pool: str) -> list[Member]:
        ...

    def add_member(self, region: str, pool: str, name: str, address: str, port: int) -> None:
        """Add (or re-enable) a member so that it takes new requests."""
        ...

    def drain_member(self, region: str, pool: str, name: str) -> None:
        """Stop sending new requests to the member; in-flight ones finish."""
        ...

    def remove_member(self, region: str, pool: str, name: str) -> None:
        """Remove the member; a missing member is not an error."""
        ...


@runtime_checkable
class MemberBatcher(Protocol):
    """A load balancer that applies many member changes in one go: Octavia's batch
    member update (one PENDING_UPDATE cycle), HAProxy commands on one runtime-API
    connection, one message to the built-in proxy. A poll's changes then cost O(1)
    writes instead of one per member, and a 1,000-node switch does not wait out a
    thousand load-balancer updates."""

    def change_members(self, region: str, pool: str, changes: Sequence[MemberChange]) -> None:
        """Apply every change, each as idempotent as its single-member call (adding a
        present member, draining a draining one, removing a missing one: no-ops; draining
        a missing one: ignored). Adds go in before drains and removals. Not atomic: after
        an error some changes may have been applied; the caller reads and retries."""
        ...


@runtime_checkable
class PoolEndpoint(Protocol):
    """A load balancer that can say where clients reach a pool (shown after a deploy)."""

    def url(self, region: str, pool: str) -> str:
        ...


@runtime_checkable
class PoolDeleter(Protocol):
    """A load balancer whose pools belong to the app and go away with ``destroy``."""

    def delete_pool(self, region: str, pool: str) -> None:
        ...


@runtime_checkable
class PoolProblems(Protocol):
    """A load balancer that runs its pools itself (the local provider's processes) and
    can say what is wrong with one beyond its members, e.g. a balancer that is not
    running. A read for ``status``: it never repairs anything."""

    def pool_problems(self, region: str, pool: str) -> list[str]:
        ...


@runtime_checkable
class PoolKeeper(Protocol):
    """A load balancer whose pool an actor (a deploy) may have to bring back up first,
    because reads (``list_members``) never start one."""

    def ensure_pool(self, region: str, pool: str) -> None:
        ...


@runtime_checkable
class Dns(Protocol):
    """One record set in a zone; used by region failover."""

    def get_record(self, zone: str, name: str) -> DnsRecord | None:
        ...

    def set_record(self, zone: str, name: str, values: tuple[str, ...], ttl: int) -> None:
        ...


@runtime_checkable
class RecordFrontend(Protocol):
    """A DNS service that runs something per record (the local provider's front end),
    which ``destroy`` stops so that nothing is left running."""

    def stop_frontend(self, zone: str, name: str) -> None:
        ...


@runtime_checkable
class RecordProblems(Protocol):
    """A DNS service that serves records itself (the local front end) and can say what is
    wrong with one, e.g. a front end that is not running. A read: it repairs nothing."""

    def record_problems(self, zone: str, name: str) -> list[str]:
        ...


@runtime_checkable
class Store(Protocol):
    """A small object store for release records, history and the deploy lock."""

    def put(self, key: str, data: bytes) -> None:
        ...

    def get(self, key: str) -> bytes | None:
        ...

    def list(self, prefix: str) -> list[str]:
        ...

    def delete(self, key: str) -> None:
        ...

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create the object only if absent; True when this call created it (the lock)."""
        ...


@runtime_checkable
class HealthSource(Protocol):
    """A provider that can tell node health itself (memory cloud, LB-status mode)."""

    def node_health(self, region: str, node: Node) -> NodeHealth:
        ...


@dataclass
class Provider:
    """One backend, assembled: what the executor and observe are given."""

    name: str
    compute: Compute
    load_balancer: LoadBalancer
    store: Store
    dns: Dns | None = None
    health_source: HealthSource | None = None
    requests: RequestTally | None = None
    """The API requests this provider sent, by service, where it can see them."""

    def close(self) -> None:
        """Release connections; a no-op for most providers."""
        for part in (self.compute, self.load_balancer, self.store, self.dns):
            closer = getattr(part, "close", None)
            if callable(closer):
                closer()


class Clock(Protocol):
    """Time is passed in so waits and deadlines are testable without sleeping."""

    def now(self) -> datetime:
        ...

    def sleep(self, seconds: float) -> None:
        ...
