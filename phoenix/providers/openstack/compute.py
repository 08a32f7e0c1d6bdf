"""``Compute`` over Nova, with Glance for images and Neutron for networks.

``create_node`` is idempotent by name: a retry of a create this process sent looks the
server up first.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import openstack.exceptions as os_exc

from phoenix import errors
from phoenix.model import (
    TAG_APP,
    TAG_RELEASE,
    Flavor,
    Image,
    Node,
    NodeRequest,
    NodeState,
    Quota,
    tag_fields,
)
from phoenix.providers.base import ImageQuery
from phoenix.providers.openstack.cloud import Adapter, translated
from phoenix.providers.openstack.readers import (
    app_tag,
    attr,
    find,
    image_of,
    node_of,
    release_tag,
)

_MAX_META = 255  # Nova: metadata keys and values are at most 255 characters


class OpenStackCompute(Adapter):
    """``Compute`` over Nova, Glance and Neutron."""

    @translated
    def list_nodes(self, region: str, app: str) -> list[Node]:
        return [n for n in self._servers(region, app) if n.app == app]

    def _servers(self, region: str, app: str) -> list[Node]:
        conn = self._cloud.conn(region)
        now = self._cloud.clock.now()
        # The generator follows Nova's "next" links, so every page is read.
        return [
            node_of(server, region, now=now)
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
            node = node_of(server, region, now=now)
            if node.name == name and node.app == app and node.state is not NodeState.DELETING:
                return node
        return None

    @translated
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
                **tag_fields(request.metadata),
                state=NodeState.BUILD,
                created_at=self._cloud.clock.now(),
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
            found = find(conn.network.find_network, network)
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
            found = find(conn.compute.find_server_group, name_or_id)
            if found is None:
                raise errors.UnknownResource(
                    f"server group {name_or_id!r} not found in {region}; create it"
                    " (`openstack server group create --policy anti-affinity ...`) or fix"
                    " server.server_group"
                )
            self._cloud.cache[key] = str(found.id)
        return str(self._cloud.cache[key])

    @translated
    def delete_node(self, region: str, node_id: str) -> None:
        try:
            self._cloud.conn(region).compute.delete_server(node_id, ignore_missing=True)
        except os_exc.NotFoundException:
            return

    @translated
    def set_metadata(self, region: str, node_id: str, metadata: Mapping[str, str]) -> None:
        for key, value in metadata.items():
            _check_meta_item(key, value, where=node_id, region=region)
        self._cloud.conn(region).compute.set_server_metadata(node_id, **dict(metadata))

    @translated
    def find_images(self, region: str, query: ImageQuery) -> list[Image]:
        images = self._cloud.conn(region).image
        if query.id is not None:
            try:
                found = [image_of(images.get_image(query.id))]
            except os_exc.NotFoundException:
                return []
        elif query.name is not None:
            found = [image_of(raw) for raw in images.images(name=query.name)]
        else:
            # Glance cannot filter by arbitrary properties server-side: page through the
            # active images and compare here.
            found = [image_of(raw) for raw in images.images(status="active")]
        return [
            image
            for image in found
            if (query.name is None or image.name == query.name)
            and all(image.properties.get(k) == str(v) for k, v in query.properties.items())
        ]

    @translated
    def delete_image(self, region: str, image_id: str) -> None:
        """Delete the image from the region's Glance; a missing one is not an error."""
        self._cloud.conn(region).image.delete_image(image_id, ignore_missing=True)

    @translated
    def get_flavor(self, region: str, name: str) -> Flavor:
        key = ("flavor", region, name)
        cached = self._cloud.cache.get(key)
        if isinstance(cached, Flavor):
            return cached
        compute = self._cloud.conn(region).compute
        raw = find(compute.find_flavor, name)
        if raw is None:
            known = sorted(str(attr(f, "name", "")) for f in compute.flavors())
            raise errors.UnknownResource(
                f"flavor {name!r} not found in {region} (flavors: {', '.join(known) or 'none'});"
                " fix the spec's flavor"
            )
        flavor = Flavor(
            id=str(raw.id),
            name=str(attr(raw, "name", name)),
            vcpus=int(attr(raw, "vcpus", 1)),
            ram_mb=int(attr(raw, "ram", 0)),
        )
        self._cloud.cache[key] = flavor
        return flavor

    @translated
    def quota(self, region: str) -> Quota:
        absolute = attr(self._cloud.conn(region).compute.get_limits(), "absolute")

        def headroom(limit_name: str, used_name: str) -> int | None:
            limit = attr(absolute, limit_name)
            if limit is None or int(limit) < 0:  # -1: unlimited
                return None
            return max(0, int(limit) - int(attr(absolute, used_name, 0)))

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
