"""Small readers of openstacksdk objects: ``Any`` stays here and in the adapters, callers
get ``phoenix.model`` values.

Servers carry Phoenix's ``phoenix:*`` keys as Nova metadata (keys may contain ``:``) plus
two server *tags* (``phoenix-app=<app>``, ``phoenix-release=<release>``; Nova tags may
not contain ``,`` or ``/`` and are at most 60 characters), because Nova can filter a
listing by tag but not by metadata.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import openstack.exceptions as os_exc

from phoenix.model import (
    Image,
    Node,
    NodeState,
    tag_fields,
)

_MAX_TAG = 60  # Nova: tags are 1-60 characters without ',' or '/'


def find(finder: Callable[..., Any], name_or_id: str) -> Any:
    """``finder(name_or_id)`` or None when nothing matches. openstacksdk deprecates
    ``ignore_missing=True`` on find_* (its default flips in 6.0): ask for the exception."""
    try:
        return finder(name_or_id, ignore_missing=False)
    except os_exc.NotFoundException:
        return None


def attr(obj: Any, name: str, default: Any = None) -> Any:
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


def node_of(server: Any, region: str, *, now: datetime) -> Node:
    metadata = _str_map(attr(server, "metadata", {}))
    status = str(attr(server, "status", "BUILD")).upper()
    state = _STATUS.get(status, NodeState.ERROR)
    task_state = str(attr(server, "task_state", "")).lower()
    if task_state == "deleting":
        state = NodeState.DELETING
    fault: str | None = None
    if state is NodeState.ERROR:
        raw_fault = attr(server, "fault")
        if isinstance(raw_fault, Mapping) and raw_fault.get("message"):
            fault = str(raw_fault["message"])
        elif status != "ERROR":
            fault = f"server is {status}"
        else:
            fault = "server is in ERROR (Nova gave no fault message)"
    return Node(
        id=str(server.id),
        name=str(attr(server, "name", "")),
        region=region,
        **tag_fields(metadata),
        state=state,
        created_at=_parse_time(attr(server, "created_at")) or now,
        address=_first_fixed_ip(attr(server, "addresses")),
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


def image_of(raw: Any) -> Image:
    body = raw.to_dict(headers=False, computed=False, ignore_none=True, original_names=True)
    properties = {
        str(k): _prop_text(v) for k, v in body.items() if k not in _GLANCE_CORE
    }
    properties.update({str(k): _prop_text(v) for k, v in _str_any(body.get("properties"))})
    return Image(
        id=str(raw.id),
        name=str(attr(raw, "name", "")),
        created_at=_parse_time(attr(raw, "created_at")),
        properties=properties,
    )


def _str_any(raw: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(raw, Mapping):
        yield from raw.items()


def _prop_text(value: Any) -> str:
    if isinstance(value, bool):  # Glance writes booleans in properties as true/false
        return "true" if value else "false"
    return str(value)


def canonical_ip(value: str) -> str:
    """An address as Designate stores it (``2001:DB8::1`` -> ``2001:db8::1``)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value
