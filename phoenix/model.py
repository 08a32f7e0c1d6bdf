"""Values passed between observe, planner, executor and providers.

Everything here is an immutable value. The cloud is the source of truth: a ``Node`` is
what a provider reported, a ``Member`` is what the load balancer reported, and all
progress of a deploy is derivable from them (plus health, which Phoenix measures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypedDict

# Tag / metadata keys Phoenix puts on every server it creates.
TAG_APP = "phoenix:app"
TAG_RELEASE = "phoenix:release"
TAG_INDEX = "phoenix:index"
TAG_ATTEMPT = "phoenix:attempt"
TAG_SPEC_DIGEST = "phoenix:spec-digest"
TAG_DEPLOY_ID = "phoenix:deploy-id"
TAG_LEASE = "phoenix:lease"  # the lease generation of the actor that created the server


class TagFields(TypedDict):
    """What Phoenix's tags on a server say about it (the fields of ``Node`` they fill)."""

    app: str
    release: str
    index: int
    attempt: int


def tag_fields(tags: Mapping[str, str]) -> TagFields:
    """Decode a server's Phoenix tags: the one decoder every provider uses.

    A server Phoenix did not make (or a tag someone edited into a non-number) reads as
    index 0, attempt 0, rather than failing the listing it appears in."""
    return {
        "app": tags.get(TAG_APP, ""),
        "release": tags.get(TAG_RELEASE, ""),
        "index": _tag_int(tags.get(TAG_INDEX)),
        "attempt": _tag_int(tags.get(TAG_ATTEMPT)),
    }


def _tag_int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0
# Timestamps the executor writes so that waits survive a crash of the engine.
META_SERVING_SINCE = "phoenix:serving-since"
META_DRAIN_SINCE = "phoenix:drain-since"


class NodeState(StrEnum):
    """Lifecycle of a server as the provider reports it."""

    BUILD = "BUILD"
    ACTIVE = "ACTIVE"
    ERROR = "ERROR"
    DELETING = "DELETING"


class MemberState(StrEnum):
    """A load-balancer member either takes new requests or is draining."""

    SERVING = "SERVING"
    DRAINING = "DRAINING"


class Health(StrEnum):
    """What Phoenix's health checks concluded about a node, after thresholds."""

    UNKNOWN = "UNKNOWN"  # not enough checks yet (or still in grace)
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    created_at: datetime | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Flavor:
    id: str
    name: str
    vcpus: int = 1
    ram_mb: int = 512


@dataclass(frozen=True)
class Node:
    """A server as the provider sees it, with Phoenix's tags decoded."""

    id: str
    name: str
    region: str
    app: str
    release: str
    index: int
    state: NodeState
    created_at: datetime
    address: str | None = None
    attempt: int = 0
    fault: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # The cloud could not place the server at all (Nova's "No valid host was found"):
    # retrying the boot in this region will not help, so it is a region-level failure.
    capacity_fault: bool = False

    @property
    def spec_digest(self) -> str | None:
        return self.metadata.get(TAG_SPEC_DIGEST)


@dataclass(frozen=True)
class NodeRequest:
    """Everything a provider needs to build one server. ``name`` is the idempotency key."""

    name: str
    image_id: str
    flavor: str
    network: str | None
    user_data: str
    metadata: Mapping[str, str]
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    availability_zone: str | None = None
    server_group: str | None = None


@dataclass(frozen=True)
class Member:
    """A load-balancer pool member; named after the node it points at."""

    name: str
    address: str
    port: int
    state: MemberState = MemberState.SERVING
    active_connections: int | None = None  # None: the provider cannot tell
    # Whether the load balancer's own health monitor lets it take traffic (Octavia's
    # operating_status ONLINE). None: the provider cannot tell, taken as online.
    online: bool | None = None


class MemberAction(StrEnum):
    """What a ``MemberChange`` does (the single-member calls of ``LoadBalancer``)."""

    ADD = "add"  # take new requests (add, or re-enable a draining member)
    DRAIN = "drain"  # no new requests; in-flight ones finish
    REMOVE = "remove"  # out of the pool


@dataclass(frozen=True)
class MemberChange:
    """One change to one pool member; a poll's changes go to the balancer together."""

    action: MemberAction
    name: str
    address: str = ""  # ADD only
    port: int = 0  # ADD only


@dataclass(frozen=True)
class ResourceNeeds:
    """What a deploy will add at its peak, for the quota preflight."""

    instances: int
    vcpus: int
    ram_mb: int


@dataclass(frozen=True)
class Quota:
    """Remaining headroom in a region; ``None`` means unlimited."""

    instances: int | None
    vcpus: int | None
    ram_mb: int | None


@dataclass(frozen=True)
class DnsRecord:
    zone: str
    name: str
    values: tuple[str, ...]
    ttl: int


@dataclass(frozen=True)
class NodeHealth:
    """Health of one node as measured by Phoenix (or trusted from the provider)."""

    status: Health
    detail: str = ""
    # Whether the latest conclusive probe passed (None: no conclusive probe yet). A node
    # that already serves is not put on trial again by a rerun: one passing probe is
    # enough to leave it be, while ``status`` still waits for the thresholds.
    passing: bool | None = field(default=None, compare=False)
    # The latest failed probe's detail ("connect refused"), kept after a later success so
    # that a gate that runs out of time says what went wrong, not only the last "HTTP 200".
    last_failure: str | None = field(default=None, compare=False)
