"""What the memory cloud holds (servers, pools, images, flavors, quotas, DNS, objects)
and its JSON form in a state file."""

from __future__ import annotations

import base64
import heapq
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from phoenix.model import (
    DnsRecord,
    Flavor,
    Image,
    Member,
    MemberState,
    Node,
    NodeState,
    tag_fields,
)
from phoenix.provider_options import MEMORY_STATE_FILE

DEFAULT_STATE_FILE = Path(MEMORY_STATE_FILE)
STATE_VERSION = 1
"""The state file's format; a file of another version is refused, never guessed at."""
BOOT_FAILED = "boot failed"
NO_VALID_HOST = "No valid host was found. There are not enough hosts available. (simulated)"


@dataclass
class Server:
    """A server as the cloud stores it (mutable; ``Node`` is the frozen view)."""

    id: str
    name: str
    region: str
    image_id: str
    flavor_id: str
    vcpus: int
    ram_mb: int
    address: str
    created_at: datetime
    ready_at: datetime
    metadata: dict[str, str]
    user_data: str = ""
    state: NodeState = NodeState.BUILD
    fault: str | None = None
    boot_fail: bool = False
    deleted_at: datetime | None = None
    _node: Node | None = field(default=None, repr=False, compare=False)

    def changed(self) -> None:
        """Forget the cached ``Node``; call after every mutation."""
        self._node = None

    def to_node(self) -> Node:
        """The frozen view (cached: listing thousands of servers is a benchmark path)."""
        if self._node is None:
            self._node = self._build_node()
        return self._node

    def _build_node(self) -> Node:
        return Node(
            id=self.id,
            name=self.name,
            region=self.region,
            **tag_fields(self.metadata),
            state=self.state,
            created_at=self.created_at,
            address=self.address,
            fault=self.fault,
            metadata=dict(self.metadata),
            capacity_fault=self.fault == NO_VALID_HOST,
        )


@dataclass
class Limits:
    """A region's quota as total limits (not headroom); ``None``: unlimited."""

    instances: int | None = None
    vcpus: int | None = None
    ram_mb: int | None = None


@dataclass
class CloudState:
    """Everything a state file persists (faults, counters and config are per process)."""

    next_server: int = 1
    region_numbers: dict[str, int] = field(default_factory=dict)
    address_counters: dict[str, int] = field(default_factory=dict)
    servers: dict[str, dict[str, Server]] = field(default_factory=dict)  # region -> id ->
    pools: dict[str, dict[str, dict[str, Member]]] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    image_regions: dict[str, set[str]] = field(default_factory=dict)
    flavors: dict[str, Flavor] = field(default_factory=dict)
    limits: dict[str, Limits] = field(default_factory=dict)
    dns: dict[tuple[str, str], DnsRecord] = field(default_factory=dict)
    objects: dict[str, bytes] = field(default_factory=dict)
    # Not persisted: (due time, server id) of BUILD/DELETING servers per region, so a
    # call costs O(transitions due) rather than O(servers).
    due: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)

    def schedule(self, region: str, when: datetime, server_id: str) -> None:
        heapq.heappush(self.due.setdefault(region, []), (when, server_id))

    def add_region(self, region: str) -> bool:
        """Give a new region its stable address number; True when it was new."""
        if region in self.region_numbers:
            return False
        self.region_numbers[region] = max(self.region_numbers.values(), default=0) + 1
        self.address_counters.setdefault(region, 0)
        self.servers.setdefault(region, {})
        self.pools.setdefault(region, {})
        self.limits.setdefault(region, Limits())
        return True


# --- state file (de)serialization ---------------------------------------------------------


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def state_to_json(state: CloudState) -> dict[str, Any]:
    """The state file's JSON object (format ``STATE_VERSION``)."""
    return {
        "version": STATE_VERSION,
        "next_server": state.next_server,
        "region_numbers": state.region_numbers,
        "address_counters": state.address_counters,
        "servers": {
            region: [
                {
                    "id": s.id,
                    "name": s.name,
                    "image_id": s.image_id,
                    "flavor_id": s.flavor_id,
                    "vcpus": s.vcpus,
                    "ram_mb": s.ram_mb,
                    "address": s.address,
                    "created_at": _dt(s.created_at),
                    "ready_at": _dt(s.ready_at),
                    "metadata": s.metadata,
                    "user_data": s.user_data,
                    "state": s.state.value,
                    "fault": s.fault,
                    "boot_fail": s.boot_fail,
                    "deleted_at": _dt(s.deleted_at),
                }
                for s in servers.values()
            ]
            for region, servers in state.servers.items()
        },
        "pools": {
            region: {
                pool: [
                    {"name": m.name, "address": m.address, "port": m.port, "state": m.state.value}
                    for m in members.values()
                ]
                for pool, members in pools.items()
            }
            for region, pools in state.pools.items()
        },
        "images": [
            {
                "id": i.id,
                "name": i.name,
                "created_at": _dt(i.created_at),
                "properties": dict(i.properties),
                "regions": sorted(state.image_regions.get(i.id, set())),
            }
            for i in state.images.values()
        ],
        "flavors": [
            {"id": f.id, "name": f.name, "vcpus": f.vcpus, "ram_mb": f.ram_mb}
            for f in state.flavors.values()
        ],
        "quotas": {
            region: {"instances": q.instances, "vcpus": q.vcpus, "ram_mb": q.ram_mb}
            for region, q in state.limits.items()
        },
        "dns": [
            {"zone": r.zone, "name": r.name, "values": list(r.values), "ttl": r.ttl}
            for r in state.dns.values()
        ],
        "objects": {k: base64.b64encode(v).decode("ascii") for k, v in state.objects.items()},
    }


def state_from_json(data: Any) -> CloudState:
    """The state a state file's JSON holds; ``ValueError`` (or ``KeyError``, ``TypeError``)
    when it is not one of version ``STATE_VERSION``."""
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ValueError(f"expected an object with version {STATE_VERSION}")
    state = CloudState(next_server=int(data["next_server"]))
    for region, number in data["region_numbers"].items():
        state.region_numbers[str(region)] = int(number)
        state.servers[str(region)] = {}
        state.pools[str(region)] = {}
        state.limits[str(region)] = Limits()
    state.address_counters = {str(k): int(v) for k, v in data["address_counters"].items()}
    for region, servers in data["servers"].items():
        for s in servers:
            created_at = _parse_dt(s["created_at"])
            ready_at = _parse_dt(s["ready_at"])
            if created_at is None or ready_at is None:
                raise ValueError(f"server {s.get('id')!r} has no created_at/ready_at")
            server = Server(
                id=str(s["id"]),
                name=str(s["name"]),
                region=str(region),
                image_id=str(s["image_id"]),
                flavor_id=str(s["flavor_id"]),
                vcpus=int(s["vcpus"]),
                ram_mb=int(s["ram_mb"]),
                address=str(s["address"]),
                created_at=created_at,
                ready_at=ready_at,
                metadata={str(k): str(v) for k, v in s["metadata"].items()},
                user_data=str(s.get("user_data", "")),
                state=NodeState(s["state"]),
                fault=None if s.get("fault") is None else str(s["fault"]),
                boot_fail=bool(s.get("boot_fail", False)),
                deleted_at=_parse_dt(s.get("deleted_at")),
            )
            state.servers.setdefault(str(region), {})[server.id] = server
            if server.state is NodeState.BUILD:
                state.schedule(server.region, server.ready_at, server.id)
            elif server.state is NodeState.DELETING and server.deleted_at is not None:
                # CloudCore.advance re-schedules it by this process's delete_seconds.
                state.schedule(server.region, server.deleted_at, server.id)
    for region, pools in data["pools"].items():
        for pool, members in pools.items():
            state.pools.setdefault(str(region), {})[str(pool)] = {
                str(m["name"]): Member(
                    name=str(m["name"]),
                    address=str(m["address"]),
                    port=int(m["port"]),
                    state=MemberState(m["state"]),
                    active_connections=0,
                )
                for m in members
            }
    for i in data["images"]:
        image = Image(
            id=str(i["id"]),
            name=str(i["name"]),
            created_at=_parse_dt(i.get("created_at")),
            properties={str(k): str(v) for k, v in i.get("properties", {}).items()},
        )
        state.images[image.id] = image
        state.image_regions[image.id] = {str(r) for r in i["regions"]}
    for f in data["flavors"]:
        flavor = Flavor(
            id=str(f["id"]), name=str(f["name"]), vcpus=int(f["vcpus"]), ram_mb=int(f["ram_mb"])
        )
        state.flavors[flavor.id] = flavor
    for region, q in data["quotas"].items():
        state.limits[str(region)] = Limits(
            _opt_int(q.get("instances")), _opt_int(q.get("vcpus")), _opt_int(q.get("ram_mb"))
        )
    for r in data["dns"]:
        record = DnsRecord(
            zone=str(r["zone"]),
            name=str(r["name"]),
            values=tuple(str(v) for v in r["values"]),
            ttl=int(r["ttl"]),
        )
        state.dns[(record.zone, record.name)] = record
    state.objects = {
        str(k): base64.b64decode(str(v), validate=True) for k, v in data["objects"].items()
    }
    return state

