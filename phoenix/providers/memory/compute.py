"""``Compute`` over the memory cloud: servers that boot by the clock, images, flavors,
and quota counted the way Nova counts it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from phoenix import errors
from phoenix.model import TAG_APP, Flavor, Image, Node, NodeRequest, NodeState, Quota
from phoenix.providers.base import ImageQuery
from phoenix.providers.memory.core import CloudCore
from phoenix.providers.memory.state import CloudState, Server


class MemoryCompute:
    """``Compute`` over the memory cloud."""

    def __init__(self, cloud: CloudCore) -> None:
        self._cloud = cloud

    def close(self) -> None:
        self._cloud.close()

    def total_calls(self) -> int:
        """The cloud's API call count (the engine reports it when a provider offers it)."""
        return self._cloud.total_calls()

    def list_nodes(self, region: str, app: str) -> list[Node]:
        with self._cloud.call("compute.list_nodes", region) as state:
            return [
                s.to_node()
                for s in state.servers[region].values()
                if s.metadata.get(TAG_APP) == app
            ]

    def create_node(self, region: str, request: NodeRequest) -> Node:
        cloud = self._cloud
        with cloud.call("compute.create_node", region, mutating=True,
                         key=request.name) as state:
            servers = state.servers[region]
            app = request.metadata.get(TAG_APP)
            for existing in servers.values():
                if (
                    existing.name == request.name
                    and existing.metadata.get(TAG_APP) == app
                    and existing.state is not NodeState.DELETING
                ):
                    return existing.to_node()
            if region not in state.image_regions.get(request.image_id, set()):
                raise errors.UnknownResource(
                    f"image {request.image_id!r} not found in {region};"
                    " check the spec's image or upload the image to that region"
                )
            flavor = _lookup_flavor(state, region, request.flavor)
            _check_quota(state, region, flavor)
            now = cloud.clock.now()
            boot = cloud.boot_seconds + cloud.faults.slow_boot_seconds
            if cloud.latency.boot_jitter_seconds > 0:
                boot += cloud.latency.boot_jitter_seconds * cloud.uniform("boot", request.name)
            server = Server(
                id=cloud.new_server_id(),
                name=request.name,
                region=region,
                image_id=request.image_id,
                flavor_id=flavor.id,
                vcpus=flavor.vcpus,
                ram_mb=flavor.ram_mb,
                address=cloud.new_address(region),
                created_at=now,
                ready_at=now + timedelta(seconds=max(0.0, boot)),
                metadata=dict(request.metadata),
                user_data=request.user_data,
                boot_fail=cloud.chance(cloud.faults.boot_fail_rate, "boot", request.name),
            )
            servers[server.id] = server
            state.schedule(region, server.ready_at, server.id)
            cloud.dirty = True
            cloud.advance(region)  # a zero boot time means ACTIVE at once
            return server.to_node()

    def delete_node(self, region: str, node_id: str) -> None:
        cloud = self._cloud
        with cloud.call("compute.delete_node", region, mutating=True, key=node_id) as state:
            server = state.servers[region].get(node_id)
            if server is None or server.state is NodeState.DELETING:
                return
            server.state = NodeState.DELETING
            server.deleted_at = cloud.clock.now()
            server.changed()
            state.schedule(
                region, server.deleted_at + timedelta(seconds=cloud.delete_seconds), server.id
            )
            cloud.dirty = True
            cloud.advance(region)

    def set_metadata(self, region: str, node_id: str, metadata: Mapping[str, str]) -> None:
        cloud = self._cloud
        with cloud.call("compute.set_metadata", region, mutating=True, key=node_id) as state:
            server = state.servers[region].get(node_id)
            if server is None:
                raise errors.NotFound(f"no server {node_id!r} in {region}", region=region)
            server.metadata.update(metadata)
            server.changed()
            cloud.dirty = True

    def find_images(self, region: str, query: ImageQuery) -> list[Image]:
        with self._cloud.call("compute.find_images", region) as state:
            return [
                image
                for image in state.images.values()
                if region in state.image_regions.get(image.id, set())
                and (query.id is None or image.id == query.id)
                and (query.name is None or image.name == query.name)
                and all(image.properties.get(k) == v for k, v in query.properties.items())
            ]

    def delete_image(self, region: str, image_id: str) -> None:
        """Remove the image from ``region`` (Glance's images are per region); gone from
        every region, it is forgotten."""
        cloud = self._cloud
        with cloud.call("compute.delete_image", region, mutating=True, key=image_id) as state:
            regions = state.image_regions.get(image_id)
            if regions is None or region not in regions:
                return
            regions.discard(region)
            if not regions:
                del state.image_regions[image_id]
                state.images.pop(image_id, None)
            cloud.dirty = True

    def get_flavor(self, region: str, name: str) -> Flavor:
        with self._cloud.call("compute.get_flavor", region) as state:
            return _lookup_flavor(state, region, name)

    def quota(self, region: str) -> Quota:
        with self._cloud.call("compute.quota", region) as state:
            used = _usage(state, region)
            limits = state.limits[region]

            def headroom(limit: int | None, in_use: int) -> int | None:
                return None if limit is None else max(0, limit - in_use)

            return Quota(
                instances=headroom(limits.instances, used.instances),
                vcpus=headroom(limits.vcpus, used.vcpus),
                ram_mb=headroom(limits.ram_mb, used.ram_mb),
            )


@dataclass(frozen=True)
class _Usage:
    instances: int
    vcpus: int
    ram_mb: int


def _lookup_flavor(state: CloudState, region: str, name_or_id: str) -> Flavor:
    flavor = state.flavors.get(name_or_id)
    if flavor is not None:
        return flavor
    for candidate in state.flavors.values():
        if candidate.name == name_or_id:
            return candidate
    known = ", ".join(sorted(f.name for f in state.flavors.values())) or "none"
    raise errors.UnknownResource(
        f"flavor {name_or_id!r} not found in {region} (flavors: {known}); fix the spec's flavor"
    )


def _usage(state: CloudState, region: str) -> _Usage:
    # Like Nova, every server counts until it is gone: BUILD, ERROR and DELETING too.
    servers = state.servers[region].values()
    return _Usage(
        instances=len(servers),
        vcpus=sum(s.vcpus for s in servers),
        ram_mb=sum(s.ram_mb for s in servers),
    )


def _check_quota(state: CloudState, region: str, flavor: Flavor) -> None:
    limits = state.limits[region]
    if limits.instances is None and limits.vcpus is None and limits.ram_mb is None:
        return
    used = _usage(state, region)
    problems = []
    for what, limit, in_use, wanted in (
        ("instances", limits.instances, used.instances, 1),
        ("vcpus", limits.vcpus, used.vcpus, flavor.vcpus),
        ("ram_mb", limits.ram_mb, used.ram_mb, flavor.ram_mb),
    ):
        if limit is not None and in_use + wanted > limit:
            problems.append(f"{what}: {in_use} in use + {wanted} requested > limit {limit}")
    if problems:
        raise errors.QuotaExceeded(
            f"quota exceeded in {region}: {'; '.join(problems)};"
            " delete unused servers or ask for a higher quota",
            region=region,
        )
